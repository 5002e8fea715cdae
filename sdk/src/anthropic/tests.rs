//! Tests for the Anthropic <-> OpenAI conversion, on realistic wire fixtures.

use serde_json::{Value, json};

use super::*;
use crate::{ErrorClass as Class, GatewayError};

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn data(e: &SseEvent) -> Value {
    serde_json::from_str(&e.data).unwrap()
}

/// An Anthropic request as Claude Code sends it: system blocks with cache_control, images,
/// two tools, thinking, a tool_use/tool_result exchange.
const ANTHROPIC_REQUEST: &str = r#"{
  "model": "claude-sonnet-4-5",
  "max_tokens": 32000,
  "system": [
    {"type": "text", "text": "You are Claude Code."},
    {"type": "text", "text": "Be concise.", "cache_control": {"type": "ephemeral"}}
  ],
  "messages": [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": [
      {"type": "text", "text": "What is in these images, and what's the weather in Paris?"},
      {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
      {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}, "cache_control": {"type": "ephemeral"}}
    ]},
    {"role": "assistant", "content": [
      {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQBCgIYAhIM"},
      {"type": "redacted_thinking", "data": "EmwKAhgBEgy3"},
      {"type": "text", "text": "Let me check both."},
      {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"zeta": "Paris", "alpha": "celsius"}},
      {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}}
    ]},
    {"role": "user", "content": [
      {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C, sunny"},
      {"type": "tool_result", "tool_use_id": "toolu_01B", "is_error": true,
       "content": [{"type": "text", "text": "timezone"}, {"type": "text", "text": "unknown"}]},
      {"type": "text", "text": "Thanks", "cache_control": {"type": "ephemeral"}}
    ]}
  ],
  "tools": [
    {"name": "get_weather", "description": "Weather for a city",
     "input_schema": {"type": "object", "properties": {"zeta": {"type": "string"}, "alpha": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["zeta"]}},
    {"name": "get_time", "description": "Current time",
     "input_schema": {"type": "object", "properties": {}}, "cache_control": {"type": "ephemeral"}}
  ],
  "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
  "temperature": 0.5,
  "top_p": 0.9,
  "stop_sequences": ["\n\nHuman:"],
  "stream": true,
  "metadata": {"user_id": "user-42"},
  "thinking": {"type": "enabled", "budget_tokens": 10000}
}"#;

#[test]
fn anthropic_request_to_chat() {
    let out = messages_to_chat_request(ANTHROPIC_REQUEST.as_bytes(), "gpt-5").unwrap();
    let v = parse(&out);
    assert_eq!(v["model"], "gpt-5");
    assert_eq!(v["max_completion_tokens"], 32000);
    assert!(v.get("max_tokens").is_none());
    assert_eq!(v["temperature"], 0.5);
    assert_eq!(v["top_p"], 0.9);
    assert_eq!(v["stop"], json!(["\n\nHuman:"]));
    assert_eq!(v["stream"], true);
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
    assert_eq!(v["user"], "user-42");
    assert_eq!(v["reasoning_effort"], "medium");
    assert_eq!(v["tool_choice"], "required");
    assert_eq!(v["parallel_tool_calls"], false);

    let m = v["messages"].as_array().unwrap();
    assert_eq!(m.len(), 8, "{m:#?}");
    assert_eq!(
        m[0],
        json!({"role": "system", "content": "You are Claude Code.\n\nBe concise."})
    );
    assert_eq!(m[1], json!({"role": "user", "content": "Hi"}));
    assert_eq!(
        m[2],
        json!({"role": "assistant", "content": "Hello! How can I help?"})
    );
    assert_eq!(m[3]["role"], "user");
    assert_eq!(
        m[3]["content"],
        json!([
            {"type": "text", "text": "What is in these images, and what's the weather in Paris?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
        ])
    );
    // Thinking dropped; text and both tool calls kept.
    assert_eq!(m[4]["role"], "assistant");
    assert_eq!(m[4]["content"], "Let me check both.");
    let calls = m[4]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["id"], "toolu_01A");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args = calls[0]["function"]["arguments"].as_str().unwrap();
    assert_eq!(
        args, r#"{"zeta": "Paris", "alpha": "celsius"}"#,
        "verbatim input"
    );
    assert_eq!(calls[1]["function"]["arguments"], "{}");
    assert_eq!(
        m[5],
        json!({"role": "tool", "tool_call_id": "toolu_01A", "content": "18C, sunny"})
    );
    assert_eq!(
        m[6],
        json!({"role": "tool", "tool_call_id": "toolu_01B", "content": "Error: timezone\nunknown"})
    );
    assert_eq!(m[7], json!({"role": "user", "content": "Thanks"}));

    let tools = v["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0]["type"], "function");
    assert_eq!(tools[0]["function"]["name"], "get_weather");
    assert_eq!(tools[0]["function"]["description"], "Weather for a city");
    assert_eq!(
        tools[0]["function"]["parameters"]["required"],
        json!(["zeta"])
    );
    assert!(tools[1]["function"].get("cache_control").is_none());
    assert!(tools[1].get("cache_control").is_none());
    // Schemas are copied verbatim: property order survives.
    let text = String::from_utf8(out).unwrap();
    assert!(text.find("\"zeta\": {").unwrap() < text.find("\"alpha\": {").unwrap());
    assert!(!text.contains("cache_control"));
    assert!(!text.contains("thinking"));
}

#[test]
fn anthropic_request_options() {
    let body = br#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"x"}],
        "tools":[{"name":"t","input_schema":{"type":"object"}}],
        "tool_choice":{"type":"tool","name":"t"},"thinking":{"type":"enabled","budget_tokens":2048},
        "stream":false,"system":"Be brief."}"#;
    let v = parse(&messages_to_chat_request(body, "u").unwrap());
    assert_eq!(
        v["tool_choice"],
        json!({"type": "function", "function": {"name": "t"}})
    );
    assert!(v.get("parallel_tool_calls").is_none());
    assert_eq!(v["reasoning_effort"], "low");
    assert!(v.get("stream").is_none());
    assert!(v.get("stream_options").is_none());
    assert_eq!(
        v["messages"][0],
        json!({"role":"system","content":"Be brief."})
    );

    for (budget, effort) in [
        (4095, "low"),
        (4096, "medium"),
        (16383, "medium"),
        (16384, "high"),
    ] {
        let body = format!(
            r#"{{"model":"m","max_tokens":50000,"messages":[{{"role":"user","content":"x"}}],"thinking":{{"type":"enabled","budget_tokens":{budget}}}}}"#
        );
        let v = parse(&messages_to_chat_request(body.as_bytes(), "u").unwrap());
        assert_eq!(v["reasoning_effort"], effort, "budget {budget}");
    }

    for (choice, expected) in [
        (r#"{"type":"auto"}"#, json!("auto")),
        (r#"{"type":"none"}"#, json!("none")),
    ] {
        let body = format!(
            r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":"x"}}],"tools":[{{"name":"t","input_schema":{{}}}}],"tool_choice":{choice}}}"#
        );
        let v = parse(&messages_to_chat_request(body.as_bytes(), "u").unwrap());
        assert_eq!(v["tool_choice"], expected);
    }

    // Tool results with images: the images follow in a user message.
    let body = br#"{"model":"m","max_tokens":5,"messages":[
        {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"shot","input":{}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[
            {"type":"text","text":"screenshot"},
            {"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"AAAA"}}]}]},
        {"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="}}]}]}"#;
    let v = parse(&messages_to_chat_request(body, "u").unwrap());
    let m = v["messages"].as_array().unwrap();
    assert_eq!(m[0]["content"], Value::Null);
    assert_eq!(
        m[1],
        json!({"role":"tool","tool_call_id":"t1","content":"screenshot"})
    );
    assert_eq!(
        m[2]["content"],
        json!([{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,AAAA"}}])
    );
    assert_eq!(
        m[3]["content"],
        json!([{"type":"file","file":{"filename":"document.pdf","file_data":"data:application/pdf;base64,JVBERi0="}}])
    );
}

/// An OpenAI request with system and developer messages, images, two parallel tool calls
/// and their results, and reasoning.
const CHAT_REQUEST: &str = r#"{
  "model": "gpt-4o",
  "messages": [
    {"role": "system", "content": "You are helpful."},
    {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
    {"role": "user", "content": "Hi"},
    {"role": "user", "content": [
      {"type": "text", "text": "Describe these, then get the weather."},
      {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "high"}},
      {"type": "image_url", "image_url": {"url": "https://example.com/dog.png"}}
    ]},
    {"role": "assistant", "content": "Checking.", "tool_calls": [
      {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"zeta\":\"Paris\",\"alpha\":\"c\"}"}},
      {"id": "functions.get_time:1", "type": "function", "function": {"name": "get_time", "arguments": ""}}
    ]},
    {"role": "tool", "tool_call_id": "call_abc", "content": "18C"},
    {"role": "tool", "tool_call_id": "functions.get_time:1", "content": [{"type": "text", "text": "12:00"}]},
    {"role": "user", "content": "Thanks!"}
  ],
  "tools": [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"zeta": {"type": "string"}, "alpha": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_time"}}
  ],
  "tool_choice": "auto",
  "parallel_tool_calls": false,
  "max_completion_tokens": 2000,
  "reasoning_effort": "high",
  "temperature": 0.2,
  "stop": "END",
  "stream": true,
  "stream_options": {"include_usage": true},
  "user": "u-7"
}"#;

#[test]
fn chat_request_to_anthropic() {
    let out = chat_to_messages_request(CHAT_REQUEST.as_bytes(), "claude-opus-4-1").unwrap();
    let v = parse(&out);
    assert_eq!(v["model"], "claude-opus-4-1");
    assert_eq!(v["system"], "You are helpful.\n\nAnswer in English.");
    // budget 24576 >= 2000, so max_tokens is raised to budget + 4096.
    assert_eq!(
        v["thinking"],
        json!({"type": "enabled", "budget_tokens": 24576})
    );
    assert_eq!(v["max_tokens"], 24576 + 4096);
    assert!(v.get("temperature").is_none(), "dropped with thinking");
    assert_eq!(v["stop_sequences"], json!(["END"]));
    assert_eq!(v["stream"], true);
    assert_eq!(v["metadata"], json!({"user_id": "u-7"}));
    assert_eq!(
        v["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert!(v.get("stream_options").is_none());

    let m = v["messages"].as_array().unwrap();
    assert_eq!(m.len(), 3, "{m:#?}");
    // The two user messages are merged.
    assert_eq!(m[0]["role"], "user");
    assert_eq!(
        m[0]["content"],
        json!([
            {"type": "text", "text": "Hi"},
            {"type": "text", "text": "Describe these, then get the weather."},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/dog.png"}}
        ])
    );
    assert_eq!(m[1]["role"], "assistant");
    assert_eq!(
        m[1]["content"],
        json!([
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"zeta": "Paris", "alpha": "c"}},
            {"type": "tool_use", "id": "functions_get_time_1", "name": "get_time", "input": {}}
        ])
    );
    // Both tool messages and the following user text are one user message.
    assert_eq!(m[2]["role"], "user");
    assert_eq!(
        m[2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "call_abc", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "functions_get_time_1", "content": "12:00"},
            {"type": "text", "text": "Thanks!"}
        ])
    );
    let tools = v["tools"].as_array().unwrap();
    assert_eq!(tools[0]["name"], "get_weather");
    assert_eq!(tools[0]["description"], "Weather");
    assert_eq!(tools[0]["input_schema"]["type"], "object");
    assert_eq!(
        tools[1],
        json!({"name": "get_time", "input_schema": {"type": "object", "properties": {}}})
    );
    let text = String::from_utf8(out).unwrap();
    assert!(text.find(r#""zeta": {"#).unwrap() < text.find(r#""alpha": {"#).unwrap());
    assert!(text.find(r#""zeta":"Paris""#).unwrap() < text.find(r#""alpha":"c""#).unwrap());
}

#[test]
fn chat_request_options() {
    let v = parse(
        &chat_to_messages_request(
            br#"{"model":"x","messages":[{"role":"user","content":"hi"}],"max_tokens":100,
                "stop":["a","b"],"temperature":1.7,"top_p":1}"#,
            "c",
        )
        .unwrap(),
    );
    assert_eq!(v["max_tokens"], 100);
    assert_eq!(v["stop_sequences"], json!(["a", "b"]));
    assert_eq!(v["temperature"], 1.0);
    assert!(v.get("top_p").is_none());
    assert_eq!(v["messages"], json!([{"role": "user", "content": "hi"}]));
    assert!(v.get("system").is_none());
    assert!(v.get("stream").is_none());

    let v = parse(
        &chat_to_messages_request(br#"{"messages":[{"role":"user","content":"hi"}]}"#, "c")
            .unwrap(),
    );
    assert_eq!(v["max_tokens"], DEFAULT_MAX_TOKENS);

    for (effort, budget, max) in [("low", 1024, 8000), ("medium", 8192, 12288)] {
        let body = format!(
            r#"{{"messages":[{{"role":"user","content":"hi"}}],"max_tokens":8000,"reasoning_effort":"{effort}"}}"#
        );
        let v = parse(&chat_to_messages_request(body.as_bytes(), "c").unwrap());
        assert_eq!(v["thinking"]["budget_tokens"], budget);
        assert_eq!(v["max_tokens"], max);
    }

    // A forced tool wins over thinking.
    let v = parse(
        &chat_to_messages_request(
            br#"{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"low",
                "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
                "tool_choice":{"type":"function","function":{"name":"f"}}}"#,
            "c",
        )
        .unwrap(),
    );
    assert_eq!(v["tool_choice"], json!({"type": "tool", "name": "f"}));
    assert!(v.get("thinking").is_none());

    let v = parse(
        &chat_to_messages_request(
            br#"{"messages":[{"role":"user","content":"hi"}],
                "tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required"}"#,
            "c",
        )
        .unwrap(),
    );
    assert_eq!(v["tool_choice"], json!({"type": "any"}));

    // A prefill loses its trailing whitespace; blank messages are skipped.
    let v = parse(
        &chat_to_messages_request(
            br#"{"messages":[{"role":"user","content":"hi"},{"role":"user","content":"  "},
                {"role":"assistant","content":"{\n  "}]}"#,
            "c",
        )
        .unwrap(),
    );
    assert_eq!(
        v["messages"],
        json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "{"}])
    );
}

#[test]
fn request_round_trip() {
    let chat = messages_to_chat_request(ANTHROPIC_REQUEST.as_bytes(), "gpt").unwrap();
    let back = parse(&chat_to_messages_request(&chat, "claude").unwrap());
    let original: Value = serde_json::from_str(ANTHROPIC_REQUEST).unwrap();
    assert_eq!(back["system"], "You are Claude Code.\n\nBe concise.");
    assert_eq!(back["max_tokens"], 32000);
    assert_eq!(back["stop_sequences"], original["stop_sequences"]);
    assert_eq!(back["metadata"], original["metadata"]);
    // The tool choice was "any", so thinking (medium) is dropped on the way back.
    assert_eq!(
        back["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    let m = back["messages"].as_array().unwrap();
    assert_eq!(m.len(), 5);
    let assistant = &m[3]["content"];
    assert_eq!(assistant[1]["id"], "toolu_01A");
    assert_eq!(
        assistant[1]["input"],
        json!({"zeta": "Paris", "alpha": "celsius"})
    );
    assert_eq!(assistant[2]["id"], "toolu_01B");
    assert_eq!(m[4]["content"][0]["tool_use_id"], "toolu_01A");
    assert_eq!(m[4]["content"][1]["content"], "Error: timezone\nunknown");
    assert_eq!(
        m[4]["content"][2],
        json!({"type": "text", "text": "Thanks"})
    );
    assert_eq!(m[2]["content"][1]["source"]["data"], "iVBORw0KGgo=");
    assert_eq!(
        m[2]["content"][2]["source"]["url"],
        "https://example.com/cat.jpg"
    );
    for (a, b) in back["tools"]
        .as_array()
        .unwrap()
        .iter()
        .zip(original["tools"].as_array().unwrap())
    {
        assert_eq!(a["name"], b["name"]);
        assert_eq!(a["input_schema"], b["input_schema"]);
    }

    // The other way round.
    let anthropic = chat_to_messages_request(CHAT_REQUEST.as_bytes(), "c").unwrap();
    let chat = parse(&messages_to_chat_request(&anthropic, "gpt").unwrap());
    let m = chat["messages"].as_array().unwrap();
    assert_eq!(m[0]["role"], "system");
    assert_eq!(m[2]["tool_calls"][0]["id"], "call_abc");
    assert_eq!(
        m[2]["tool_calls"][0]["function"]["arguments"],
        r#"{"zeta":"Paris","alpha":"c"}"#
    );
    assert_eq!(m[3]["role"], "tool");
    assert_eq!(m[4]["tool_call_id"], "functions_get_time_1");
    assert_eq!(m[5], json!({"role": "user", "content": "Thanks!"}));
    assert_eq!(chat["reasoning_effort"], "high");
    assert_eq!(chat["parallel_tool_calls"], false);
}

#[test]
fn bad_requests_are_errors() {
    let bad_anthropic: &[&[u8]] = &[
        b"",
        b"not json",
        b"[]",
        br#"{"model":"m"}"#,
        br#"{"messages":{}}"#,
        br#"{"messages":[{"role":"system","content":"x"}]}"#,
        br#"{"messages":[{"role":"user"}]}"#,
        br#"{"messages":[{"role":"user","content":42}]}"#,
        br#"{"messages":[{"role":"user","content":[{"type":"audio"}]}]}"#,
        br#"{"messages":[{"role":"user","content":[{"type":"text"}]}]}"#,
        br#"{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}"#,
        br#"{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64"}}]}]}"#,
        br#"{"messages":[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]}"#,
        br#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","name":"x","input":{}}]}]}"#,
        br#"{"messages":[],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#,
        br#"{"messages":[],"tools":[{"name":"t"}],"tool_choice":{"type":"tool"}}"#,
        br#"{"messages":[],"system":[{"type":"image"}]}"#,
    ];
    for body in bad_anthropic {
        let e = messages_to_chat_request(body, "m").unwrap_err();
        assert!(!e.message.is_empty());
    }
    let e = messages_to_chat_request(
        br#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"video"}]}]}"#,
        "m",
    )
    .unwrap_err();
    assert!(e.message.contains("messages[0].content[1]"), "{e:?}");
    assert!(e.message.contains("video"), "{e:?}");
    // A request that cannot be converted is the client's error.
    assert_eq!((e.class, e.status), (crate::ErrorClass::BadRequest, 400));

    let bad_chat: &[&[u8]] = &[
        b"{",
        br#"{"messages":"hi"}"#,
        br#"{"messages":[]}"#,
        br#"{"messages":[{"role":"system","content":"only system"}]}"#,
        br#"{"messages":[{"role":"function","content":"x","name":"f"}]}"#,
        br#"{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#,
        br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x"}}]}]}"#,
        br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,abc"}}]}]}"#,
        br#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}"#,
        br#"{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\":"}}]}]}"#,
        br#"{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}"#,
        br#"{"messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]}"#,
        br#"{"messages":[{"role":"tool","content":"x"}]}"#,
        br#"{"messages":[{"role":"user","content":"x"}],"reasoning_effort":"extreme"}"#,
        br#"{"messages":[{"role":"user","content":"x"}],"n":2}"#,
        br#"{"messages":[{"role":"user","content":"x"}],"stop":5}"#,
        br#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"custom","custom":{}}]}"#,
        br#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"}"#,
    ];
    for body in bad_chat {
        let e = chat_to_messages_request(body, "m").unwrap_err();
        assert!(!e.message.is_empty());
    }
    let e = chat_to_messages_request(bad_chat[9], "m").unwrap_err();
    assert!(
        e.message
            .contains("messages[0].tool_calls[0].function.arguments"),
        "{e}"
    );
}

/// An OpenAI completion with reasoning, text and two tool calls, with cached prompt tokens.
const CHAT_RESPONSE: &str = r#"{
  "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  "object": "chat.completion",
  "created": 1741570283,
  "model": "gpt-4o-2024-08-06",
  "choices": [{
    "index": 0,
    "message": {
      "role": "assistant",
      "content": "I'll look both up.",
      "reasoning_content": "Two lookups needed.",
      "refusal": null,
      "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"zeta\":\"Paris\",\"alpha\":\"c\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{not json"}}
      ]
    },
    "logprobs": null,
    "finish_reason": "tool_calls"
  }],
  "usage": {
    "prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 10, "audio_tokens": 0}
  },
  "system_fingerprint": "fp_fc9f1d7035"
}"#;

#[test]
fn chat_response_to_anthropic() {
    let (out, usage) = chat_response_to_messages(CHAT_RESPONSE.as_bytes(), "claude-x").unwrap();
    assert_eq!(
        usage,
        Usage {
            input: 93,
            output: 46,
            cache_read: 1024,
            cache_write: 0,
            reasoning: 10
        }
    );
    let v = parse(&out);
    assert_eq!(v["id"], "msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG");
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-x");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["stop_sequence"], Value::Null);
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 93, "output_tokens": 46, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 0})
    );
    assert_eq!(
        v["content"],
        json!([
            {"type": "thinking", "thinking": "Two lookups needed.", "signature": ""},
            {"type": "text", "text": "I'll look both up."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"zeta": "Paris", "alpha": "c"}},
            {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
        ])
    );
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with(r#"{"id":"msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG","type":"message""#));

    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("function_call", "tool_use"),
    ] {
        let body = format!(
            r#"{{"id":"chatcmpl-1","choices":[{{"message":{{"role":"assistant","content":"x"}},"finish_reason":"{finish}"}}]}}"#
        );
        let (out, usage) = chat_response_to_messages(body.as_bytes(), "m").unwrap();
        assert_eq!(parse(&out)["stop_reason"], stop);
        assert_eq!(usage, Usage::default());
    }

    // A refusal becomes text with stop_reason "refusal".
    let (out, _) = chat_response_to_messages(
        br#"{"choices":[{"message":{"role":"assistant","content":null,"refusal":"I can't."},"finish_reason":"stop"}]}"#,
        "m",
    )
    .unwrap();
    let v = parse(&out);
    assert_eq!(v["content"], json!([{"type": "text", "text": "I can't."}]));
    assert_eq!(v["stop_reason"], "refusal");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));

    for bad in [
        &b"{"[..],
        br#"{"choices":[]}"#,
        br#"{"object":"chat.completion"}"#,
        br#"{"error":{"message":"boom"}}"#,
        br#"{"choices":[{"finish_reason":"stop"}]}"#,
        br#"{"choices":[{"message":{"tool_calls":[{"id":"x","function":{"arguments":"{}"}}]}}]}"#,
    ] {
        assert!(chat_response_to_messages(bad, "m").is_err());
    }
}

/// An Anthropic message with thinking, text and two tool calls.
const ANTHROPIC_RESPONSE: &str = r#"{
  "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-5-20250929",
  "content": [
    {"type": "thinking", "thinking": "Need two tools.", "signature": "EqQBCgIYAhIM"},
    {"type": "text", "text": "Checking "},
    {"type": "text", "text": "both."},
    {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"zeta": "Paris", "alpha": "c"}},
    {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}}
  ],
  "stop_reason": "tool_use",
  "stop_sequence": null,
  "usage": {"input_tokens": 100, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 1000, "output_tokens": 50, "service_tier": "standard"}
}"#;

#[test]
fn anthropic_response_to_chat() {
    let (out, usage) = messages_response_to_chat(ANTHROPIC_RESPONSE.as_bytes(), "gpt-x").unwrap();
    assert_eq!(
        usage,
        Usage {
            input: 100,
            output: 50,
            cache_read: 1000,
            cache_write: 20,
            reasoning: 0
        }
    );
    let v = parse(&out);
    assert_eq!(v["id"], "chatcmpl-01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(v["model"], "gpt-x");
    let c = &v["choices"][0];
    assert_eq!(c["index"], 0);
    assert_eq!(c["logprobs"], Value::Null);
    assert_eq!(c["finish_reason"], "tool_calls");
    assert_eq!(c["message"]["role"], "assistant");
    assert_eq!(c["message"]["content"], "Checking both.");
    assert_eq!(c["message"]["reasoning_content"], "Need two tools.");
    assert_eq!(
        c["message"]["tool_calls"],
        json!([
            {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": "{\"zeta\": \"Paris\", \"alpha\": \"c\"}"}},
            {"id": "toolu_01B", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
        ])
    );
    assert_eq!(
        v["usage"],
        json!({
            "prompt_tokens": 1120, "completion_tokens": 50, "total_tokens": 1170,
            "prompt_tokens_details": {"cached_tokens": 1000, "cache_creation_tokens": 20},
            "completion_tokens_details": {"reasoning_tokens": 0}
        })
    );
    // llmgate's OpenAI usage reader agrees with the returned usage.
    assert_eq!(crate::openai::usage_and_model(&out).0, Some(usage));

    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ] {
        let body = format!(
            r#"{{"id":"msg_1","type":"message","content":[{{"type":"text","text":"x"}}],"stop_reason":"{stop}","usage":{{"input_tokens":1,"output_tokens":2}}}}"#
        );
        let (out, _) = messages_response_to_chat(body.as_bytes(), "m").unwrap();
        let v = parse(&out);
        assert_eq!(v["choices"][0]["finish_reason"], finish);
        assert_eq!(v["choices"][0]["message"]["content"], "x");
        assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    }

    for bad in [
        &b"nope"[..],
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        br#"{"id":"msg_1","type":"message"}"#,
        br#"{"content":[{"type":"tool_use","input":{}}]}"#,
        br#"{"content":"text"}"#,
    ] {
        assert!(messages_response_to_chat(bad, "m").is_err());
    }
}

#[test]
fn response_round_trip() {
    let (anthropic, u1) = chat_response_to_messages(CHAT_RESPONSE.as_bytes(), "c").unwrap();
    let (chat, u2) = messages_response_to_chat(&anthropic, "g").unwrap();
    assert_eq!(
        (u1.input, u1.cache_read, u1.output),
        (u2.input, u2.cache_read, u2.output)
    );
    let v = parse(&chat);
    let original: Value = serde_json::from_str(CHAT_RESPONSE).unwrap();
    assert_eq!(v["id"], original["id"]);
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], original["choices"][0]["message"]["content"]);
    assert_eq!(
        m["reasoning_content"],
        original["choices"][0]["message"]["reasoning_content"]
    );
    assert_eq!(
        m["tool_calls"][0],
        original["choices"][0]["message"]["tool_calls"][0]
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["usage"]["prompt_tokens"], 1117);
}

// ---------------------------------------------------------------------------------------
// Streams.

/// A realistic OpenAI stream: reasoning, text, two tool calls whose arguments arrive in
/// pieces, the finish chunk, then the usage-only chunk.
fn chat_stream_chunks() -> Vec<String> {
    let head = r#""id":"chatcmpl-C1","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o""#;
    let delta = |d: &str, finish: &str| {
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{d},"logprobs":null,"finish_reason":{finish}}}],"usage":null}}"#
        )
    };
    let tool = |i: u32, body: &str| {
        delta(
            &format!(r#"{{"tool_calls":[{{"index":{i},{body}}}]}}"#),
            "null",
        )
    };
    vec![
        delta(
            r#"{"role":"assistant","content":"","refusal":null}"#,
            "null",
        ),
        delta(r#"{"reasoning_content":"Two "}"#, "null"),
        delta(r#"{"reasoning_content":"lookups."}"#, "null"),
        delta(r#"{"content":"Checking"}"#, "null"),
        delta(r#"{"content":" both."}"#, "null"),
        tool(
            0,
            r#""id":"call_A","type":"function","function":{"name":"get_weather","arguments":""}"#,
        ),
        tool(0, r#""function":{"arguments":"{\"zeta\""}"#),
        tool(0, r#""function":{"arguments":":\"Par"}"#),
        tool(0, r#""function":{"arguments":"is\",\"alpha\":\"c\"}"}"#),
        tool(
            1,
            r#""id":"call_B","type":"function","function":{"name":"get_time","arguments":""}"#,
        ),
        tool(1, r#""function":{"arguments":"{\"tz"}"#),
        tool(1, r#""function":{"arguments":"\":\"Europe/"}"#),
        tool(1, r#""function":{"arguments":"Paris\"}"}"#),
        delta("{}", r#""tool_calls""#),
        format!(
            r#"{{{head},"choices":[],"usage":{{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{{"cached_tokens":1024}},"completion_tokens_details":{{"reasoning_tokens":10}}}}}}"#
        ),
        "[DONE]".to_owned(),
    ]
}

#[test]
fn chat_stream_to_anthropic_events() {
    let mut conv = ChatStreamToMessages::new("claude-x");
    let mut events = Vec::new();
    let mut per_chunk = Vec::new();
    for c in chat_stream_chunks() {
        let e = conv.on_chunk(&c).unwrap();
        per_chunk.push(e.len());
        events.extend(e);
    }
    let (tail, usage) = conv.finish().unwrap();
    assert!(tail.is_empty());
    assert_eq!(
        usage,
        Some(Usage {
            input: 93,
            output: 46,
            cache_read: 1024,
            cache_write: 0,
            reasoning: 10
        })
    );
    // Nothing closes the message before [DONE]: the usage chunk comes after finish_reason.
    assert_eq!(per_chunk[per_chunk.len() - 2], 0);

    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    let mut expected = vec!["message_start"];
    expected.extend([
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
    ]);
    expected.push("content_block_stop");
    expected.extend([
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
    ]);
    expected.push("content_block_stop");
    expected.push("content_block_start");
    expected.extend(["content_block_delta"; 3]);
    expected.push("content_block_stop");
    expected.push("content_block_start");
    expected.extend(["content_block_delta"; 3]);
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    for e in &events {
        assert_eq!(data(e)["type"], e.event.as_deref().unwrap(), "{}", e.data);
    }

    assert_eq!(
        data(&events[0]),
        json!({"type": "message_start", "message": {
            "id": "msg_C1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}
        }})
    );
    assert_eq!(
        data(&events[1]),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
    );
    assert_eq!(
        data(&events[2]),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Two "}})
    );
    assert_eq!(
        data(&events[4]),
        json!({"type": "content_block_stop", "index": 0})
    );
    assert_eq!(
        data(&events[5]),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(
        data(&events[7]),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": " both."}})
    );
    assert_eq!(
        data(&events[9]),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {}}})
    );
    assert_eq!(
        data(&events[14]),
        json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "call_B", "name": "get_time", "input": {}}})
    );
    let partial = |index: u64| -> String {
        events
            .iter()
            .map(data)
            .filter(|d| d["type"] == "content_block_delta" && d["index"] == index)
            .map(|d| {
                assert_eq!(d["delta"]["type"], "input_json_delta");
                d["delta"]["partial_json"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    assert_eq!(partial(2), r#"{"zeta":"Paris","alpha":"c"}"#);
    assert_eq!(partial(3), r#"{"tz":"Europe/Paris"}"#);
    let n = events.len();
    assert_eq!(
        data(&events[n - 3]),
        json!({"type": "content_block_stop", "index": 3})
    );
    assert_eq!(
        data(&events[n - 2]),
        json!({"type": "message_delta",
               "delta": {"stop_reason": "tool_use", "stop_sequence": null},
               "usage": {"input_tokens": 93, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024, "output_tokens": 46}})
    );
    assert_eq!(data(&events[n - 1]), json!({"type": "message_stop"}));
    assert_eq!(
        events[n - 1].to_sse(),
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    );

    // Anything after the end is ignored.
    assert!(conv.on_chunk("[DONE]").unwrap().is_empty());
}

#[test]
fn chat_stream_without_done_or_usage() {
    // Text only, no [DONE], no usage: finish() closes the message.
    let mut conv = ChatStreamToMessages::new("m");
    let mut events = Vec::new();
    for c in [
        r#"{"id":"chatcmpl-2","choices":[{"index":0,"delta":{"role":"assistant"}}]}"#,
        r#"{"id":"chatcmpl-2","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
        r#"{"id":"chatcmpl-2","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
    ] {
        events.extend(conv.on_chunk(c).unwrap());
    }
    let (tail, usage) = conv.finish().unwrap();
    assert_eq!(usage, None);
    events.extend(tail);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(data(&events[4])["delta"]["stop_reason"], "max_tokens");
    // finish() again adds nothing.
    assert!(conv.finish().unwrap().0.is_empty());

    // Several calls on index 0, each complete in one delta, and no finish_reason: [DONE]
    // closes the message.
    let mut conv = ChatStreamToMessages::new("m");
    let mut events = Vec::new();
    for c in [
        r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{\"x\":1}"}}]}}]}"#,
        r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"b","function":{"name":"g","arguments":"{}"}}]}}]}"#,
        "[DONE]",
    ] {
        events.extend(conv.on_chunk(c).unwrap());
    }
    events.extend(conv.finish().unwrap().0);
    let starts: Vec<Value> = events
        .iter()
        .map(data)
        .filter(|d| d["type"] == "content_block_start")
        .collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0]["content_block"]["id"], "a");
    assert_eq!(starts[1]["content_block"]["id"], "b");
    assert_eq!(starts[1]["index"], 1);
    let delta = events
        .iter()
        .map(data)
        .find(|d| d["type"] == "message_delta");
    assert_eq!(delta.unwrap()["delta"]["stop_reason"], "tool_use");
    assert!(
        data(&events[0])["message"]["id"]
            .as_str()
            .unwrap()
            .starts_with("msg_")
    );
}

#[test]
fn chat_stream_failures() {
    // Nothing received at all.
    let mut conv = ChatStreamToMessages::new("m");
    assert!(conv.finish().is_err());
    let mut conv = ChatStreamToMessages::new("m");
    assert!(conv.on_chunk("[DONE]").unwrap().is_empty());
    assert!(conv.finish().is_err());

    // Cut off: chunks, then the upstream closes with neither a finish_reason nor [DONE].
    // That is a failure, never a complete message.
    let mut conv = ChatStreamToMessages::new("m");
    let events = conv
        .on_chunk(r#"{"id":"x","choices":[{"index":0,"delta":{"content":"par"}}]}"#)
        .unwrap();
    assert!(
        events
            .iter()
            .all(|e| e.event.as_deref() != Some("message_stop"))
    );
    assert!(conv.finish().is_err());

    // Garbage is an error, not a panic.
    let mut conv = ChatStreamToMessages::new("m");
    assert!(conv.on_chunk("{not json").is_err());
    assert!(conv.on_chunk(r#"{"choices":"x"}"#).is_err());

    // An upstream error mid-stream becomes an Anthropic error event.
    let mut conv = ChatStreamToMessages::new("m");
    conv.on_chunk(r#"{"id":"x","choices":[{"index":0,"delta":{"content":"a"}}]}"#)
        .unwrap();
    let events = conv
        .on_chunk(r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#)
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.as_deref(), Some("error"));
    assert_eq!(
        data(&events[0]),
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}})
    );
    assert!(conv.on_chunk("[DONE]").unwrap().is_empty());
    assert!(conv.finish().is_err());
}

/// A realistic Anthropic stream: thinking with a signature, text, two tool calls whose
/// input arrives in pieces.
const ANTHROPIC_STREAM: &[(&str, &str)] = &[
    (
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_01Z","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":100,"cache_creation_input_tokens":20,"cache_read_input_tokens":1000,"output_tokens":1}}}"#,
    ),
    (
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
    ),
    ("ping", r#"{"type": "ping"}"#),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Two "}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"tools."}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM"}}"#,
    ),
    (
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ),
    (
        "content_block_start",
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Checking"}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":" both."}}"#,
    ),
    (
        "content_block_stop",
        r#"{"type":"content_block_stop","index":1}"#,
    ),
    (
        "content_block_start",
        r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{}}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"zeta\": \"Pa"}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"ris\", \"alph"}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"a\": \"c\"}"}}"#,
    ),
    (
        "content_block_stop",
        r#"{"type":"content_block_stop","index":2}"#,
    ),
    (
        "content_block_start",
        r#"{"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_01B","name":"get_time","input":{}}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{\"tz\":"}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":" \"Europe/"}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"Paris\"}"}}"#,
    ),
    (
        "content_block_stop",
        r#"{"type":"content_block_stop","index":3}"#,
    ),
    (
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
    ),
    ("message_stop", r#"{"type":"message_stop"}"#),
];

#[test]
fn anthropic_stream_to_chat_chunks() {
    let mut conv = MessagesStreamToChat::new("gpt-x", true);
    let mut events = Vec::new();
    for (name, payload) in ANTHROPIC_STREAM {
        events.extend(conv.on_event(Some(name), payload).unwrap());
    }
    let (tail, usage) = conv.finish().unwrap();
    assert!(tail.is_empty());
    assert_eq!(
        usage,
        Some(Usage {
            input: 100,
            output: 89,
            cache_read: 1000,
            cache_write: 20,
            reasoning: 0
        })
    );
    assert!(events.iter().all(|e| e.event.is_none()));
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(data).collect();
    // role, 2 thinking, 2 text, tool A start + 3 pieces, tool B start + 3 pieces, finish, usage
    assert_eq!(chunks.len(), 1 + 2 + 2 + 4 + 4 + 1 + 1, "{chunks:#?}");
    let created = chunks[0]["created"].clone();
    for c in &chunks {
        assert_eq!(c["id"], "chatcmpl-01Z");
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gpt-x");
        assert_eq!(c["created"], created);
        assert!(
            c.get("usage").is_some(),
            "include_usage: usage on every chunk"
        );
    }
    assert_eq!(
        chunks[0]["choices"],
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}])
    );
    assert_eq!(chunks[0]["usage"], Value::Null);
    assert_eq!(
        chunks[1]["choices"][0]["delta"],
        json!({"reasoning_content": "Two "})
    );
    assert_eq!(
        chunks[3]["choices"][0]["delta"],
        json!({"content": "Checking"})
    );
    assert_eq!(
        chunks[5]["choices"][0]["delta"],
        json!({"tool_calls": [{"index": 0, "id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})
    );
    assert_eq!(
        chunks[6]["choices"][0]["delta"],
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"zeta\": \"Pa"}}]})
    );
    assert_eq!(
        chunks[9]["choices"][0]["delta"]["tool_calls"][0]["id"],
        "toolu_01B"
    );
    assert_eq!(
        chunks[9]["choices"][0]["delta"]["tool_calls"][0]["index"],
        1
    );
    let arguments = |k: u64| -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"].get(0))
            .filter_map(|c| c["delta"]["tool_calls"].get(0))
            .filter(|t| t["index"] == k)
            .map(|t| t["function"]["arguments"].as_str().unwrap().to_owned())
            .collect()
    };
    let a: Value = serde_json::from_str(&arguments(0)).unwrap();
    assert_eq!(a, json!({"zeta": "Paris", "alpha": "c"}));
    assert_eq!(arguments(1), r#"{"tz": "Europe/Paris"}"#);
    assert_eq!(
        chunks[13]["choices"],
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "tool_calls"}])
    );
    assert_eq!(chunks[14]["choices"], json!([]));
    assert_eq!(
        chunks[14]["usage"],
        json!({"prompt_tokens": 1120, "completion_tokens": 89, "total_tokens": 1209,
               "prompt_tokens_details": {"cached_tokens": 1000, "cache_creation_tokens": 20},
               "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    assert_eq!(events[0].to_sse(), format!("data: {}\n\n", events[0].data));
}

#[test]
fn anthropic_stream_details() {
    // Without include_usage: no usage key at all and no usage chunk; names may come from
    // the event line only; a tool without input still gets "{}".
    let mut conv = MessagesStreamToChat::new("m", false);
    let mut events = Vec::new();
    for (name, payload) in [
        (
            Some("message_start"),
            r#"{"message":{"id":"msg_9","usage":{"input_tokens":5,"output_tokens":1}}}"#,
        ),
        (
            None,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"now","input":{}}}"#,
        ),
        (
            None,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}"#,
        ),
        (None, r#"{"type":"content_block_stop","index":0}"#),
        (
            Some("message_delta"),
            r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":7}}"#,
        ),
        (Some("some_future_event"), r#"{"type":"some_future_event"}"#),
        (Some("message_stop"), r#"{"type":"message_stop"}"#),
    ] {
        events.extend(conv.on_event(name, payload).unwrap());
    }
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(data).collect();
    assert_eq!(chunks.len(), 4);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(
        chunks[2]["choices"][0]["delta"],
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})
    );
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "length");
    assert_eq!(
        conv.finish().unwrap().1,
        Some(Usage {
            input: 5,
            output: 7,
            ..Usage::default()
        })
    );
}

#[test]
fn anthropic_stream_failures() {
    // Cut short.
    let mut conv = MessagesStreamToChat::new("m", true);
    for (name, payload) in &ANTHROPIC_STREAM[..10] {
        conv.on_event(Some(name), payload).unwrap();
    }
    let e = conv.finish().unwrap_err();
    assert!(e.message.contains("message_stop"), "{e}");
    // An answer that cannot be converted is the upstream's.
    assert_eq!((e.class, e.status), (crate::ErrorClass::Upstream, 502));

    // Nothing at all.
    assert!(MessagesStreamToChat::new("m", true).finish().is_err());

    // Content before message_start, garbage, missing fields.
    let mut conv = MessagesStreamToChat::new("m", true);
    assert!(
        conv.on_event(
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"x"}}"#
        )
        .is_err()
    );
    assert!(conv.on_event(Some("message_start"), "{oops").is_err());
    assert!(conv.on_event(None, r#"{"index":0}"#).is_err());
    assert!(conv.on_event(Some("message_start"), "{}").is_err());
    assert!(conv.on_event(Some("content_block_delta"), "").is_err());
    assert!(conv.on_event(Some("ping"), "").unwrap().is_empty());

    // An error event.
    let mut conv = MessagesStreamToChat::new("m", true);
    conv.on_event(Some("message_start"), ANTHROPIC_STREAM[0].1)
        .unwrap();
    let events = conv
        .on_event(
            Some("error"),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, None);
    assert_eq!(
        data(&events[0]),
        json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null}})
    );
    assert!(
        conv.on_event(Some("message_stop"), r#"{"type":"message_stop"}"#)
            .unwrap()
            .is_empty()
    );
    let e = conv.finish().unwrap_err();
    assert!(e.message.contains("Overloaded"), "{e}");
}

#[test]
fn stream_round_trip() {
    // Anthropic -> OpenAI -> Anthropic keeps the blocks and the tool inputs.
    let mut to_chat = MessagesStreamToChat::new("g", true);
    let mut back = ChatStreamToMessages::new("c");
    let mut events = Vec::new();
    for (name, payload) in ANTHROPIC_STREAM {
        for chunk in to_chat.on_event(Some(name), payload).unwrap() {
            events.extend(back.on_chunk(&chunk.data).unwrap());
        }
    }
    let (_, usage) = back.finish().unwrap();
    assert_eq!(usage, to_chat.finish().unwrap().1);
    let starts: Vec<Value> = events
        .iter()
        .map(data)
        .filter(|d| d["type"] == "content_block_start")
        .map(|d| d["content_block"]["type"].clone())
        .collect();
    assert_eq!(starts, ["thinking", "text", "tool_use", "tool_use"]);
    let last = data(&events[events.len() - 2]);
    assert_eq!(last["delta"]["stop_reason"], "tool_use");
    assert_eq!(last["usage"]["output_tokens"], 89);
    assert_eq!(last["usage"]["cache_read_input_tokens"], 1000);
}

// ---------------------------------------------------------------------------------------
// Errors.

#[test]
fn anthropic_error_bodies() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (529, "overloaded_error"),
    ] {
        let v = parse(&error_to_anthropic(status, "went \"wrong\""));
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": kind, "message": "went \"wrong\""}})
        );
    }
    assert!(
        String::from_utf8(error_to_anthropic(400, "x"))
            .unwrap()
            .starts_with(r#"{"type":"error","error":{"type":"invalid_request_error""#)
    );
}

#[test]
fn reads_anthropic_errors() {
    let e = GatewayError::from_status(
        529,
        &[],
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#,
    );
    assert_eq!(e.class, Class::Overloaded);
    assert_eq!(e.message, "Overloaded");
    assert_eq!(e.code.as_deref(), Some("overloaded_error"));
    // The type wins over an unusual status.
    let e = GatewayError::from_status(
        500,
        &[],
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    );
    assert_eq!(e.class, Class::Overloaded);
    let e = GatewayError::from_status(
        429,
        &[],
        br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#,
    );
    assert_eq!(e.class, Class::RateLimited);
    let e = GatewayError::from_status(
        400,
        &[],
        br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 215000 tokens > 200000 maximum"}}"#,
    );
    assert_eq!(e.class, Class::ContextLength);
    let e = GatewayError::from_status(
        400,
        &[],
        br#"{"type":"error","error":{"type":"invalid_request_error","message":"input length and `max_tokens` exceed context limit: 197000 + 32000 > 200000"}}"#,
    );
    assert_eq!(e.class, Class::ContextLength);
    let e = GatewayError::from_status(
        400,
        &[],
        br#"{"type":"error","error":{"type":"invalid_request_error","message":"messages: roles must alternate"}}"#,
    );
    assert_eq!(e.class, Class::BadRequest);
    let e = GatewayError::from_status(
        401,
        &[],
        br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
    );
    assert_eq!(e.class, Class::Auth);
    let e = GatewayError::from_status(
        500,
        &[],
        br#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
    );
    assert_eq!(e.class, Class::Upstream);

    // Other bodies: OpenAI's reader.
    let e = GatewayError::from_status(502, &[], b"<html>Bad Gateway</html>");
    assert_eq!(e.class, Class::Upstream);
    assert!(e.message.contains("Bad Gateway"));
    let e = GatewayError::from_status(503, &[], b"");
    assert_eq!(e.class, Class::Overloaded);
    let e = GatewayError::from_status(
        400,
        &[],
        br#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
    );
    assert_eq!(e.class, Class::ContextLength);
    assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
}

#[test]
fn garbage_never_panics() {
    let inputs: &[&[u8]] = &[
        b"",
        b"null",
        b"0",
        b"\"s\"",
        b"[]",
        b"{}",
        b"{\"messages\":null}",
        b"{\"messages\":[null]}",
        b"{\"messages\":[{}]}",
        b"{\"choices\":[null]}",
        b"{\"content\":[null]}",
        b"{\"type\":\"error\"}",
        &[0xff, 0xfe, 0x00],
        b"{\"messages\":[{\"role\":\"user\",\"content\":[{}]}]}",
        b"{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\",\"name\":\"b\",\"input\":\"str\"}]}]}",
    ];
    for input in inputs {
        let _ = messages_to_chat_request(input, "m");
        let _ = chat_to_messages_request(input, "m");
        let _ = chat_response_to_messages(input, "m");
        let _ = messages_response_to_chat(input, "m");
        let _ = GatewayError::from_status(500, &[], input);
        let text = String::from_utf8_lossy(input);
        let _ = ChatStreamToMessages::new("m").on_chunk(&text);
        let _ = MessagesStreamToChat::new("m", true).on_event(None, &text);
        let _ = MessagesStreamToChat::new("m", true).on_event(Some("message_start"), &text);
    }
}
