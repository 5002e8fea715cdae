use super::*;
use llmgate_sdk::ErrorClass as Class;

fn convert(req: Value) -> Value {
    chat_to_gemini(&req, "gemini-2.5-flash").unwrap()
}

fn chunks_json(chunks: &[String]) -> Vec<Value> {
    chunks
        .iter()
        .filter(|c| c.as_str() != "[DONE]")
        .map(|c| serde_json::from_str(c).unwrap())
        .collect()
}

// ----- URLs -----

#[test]
fn urls() {
    assert_eq!(
        endpoint_url(DEFAULT, None, "gemini-2.5-flash", false).unwrap(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(
        endpoint_url(&format!("{DEFAULT}/"), None, "gemini-2.5-flash", true).unwrap(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(
        endpoint_url("http://mock:1/v1beta/", None, "models/gemini-pro", false).unwrap(),
        "http://mock:1/v1beta/models/gemini-pro:generateContent"
    );
    assert_eq!(
        endpoint_url("http://mock:1", Some("v1"), "tunedModels/x", false).unwrap(),
        "http://mock:1/v1/tunedModels/x:generateContent"
    );
    // A model is one segment: it cannot climb out of the path or add a query.
    assert_eq!(
        endpoint_url(DEFAULT, None, "x?y=1#", false).unwrap(),
        "https://generativelanguage.googleapis.com/v1beta/models/x%3Fy%3D1%23:generateContent"
    );
    for bad in ["..", "../../../../fail/418/x?y=1#", "models/../../x", "."] {
        assert!(endpoint_url(DEFAULT, None, bad, false).is_err(), "{bad}");
    }
}

const DEFAULT: &str = "https://generativelanguage.googleapis.com";

// ----- Requests -----

#[test]
fn system_and_user_text() {
    let g = convert(json!({
        "model": "gpt",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": "Hello"},
            {"role": "user", "content": [{"type": "text", "text": "again"}]},
        ]
    }));
    assert_eq!(
        g["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}, {"text": "Use French."}]})
    );
    // Consecutive user messages merge into one content.
    assert_eq!(
        g["contents"],
        json!([{"role": "user", "parts": [{"text": "Hello"}, {"text": "again"}]}])
    );
    assert!(g.get("generationConfig").is_none());
    assert!(g.get("tools").is_none());
}

#[test]
fn images() {
    let g = convert(json!({
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=2"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/photo"}},
        ]}]
    }));
    assert_eq!(
        g["contents"][0]["parts"],
        json!([
            {"text": "What is this?"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=2"}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
        ])
    );
    let e = chat_to_gemini(
        &json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}
        ]}]}),
        "gemini-2.5-flash",
    )
    .unwrap_err();
    assert_eq!(e.class, Class::BadRequest);
    assert!(
        e.message.contains("messages[0].content[0]"),
        "{}",
        e.message
    );
}

#[test]
fn data_urls() {
    let parts = |url: &str| {
        chat_to_gemini(
            &json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}
            ]}]}),
            "gemini-2.5-flash",
        )
        .map(|g| g["contents"][0]["parts"][0].clone())
    };
    // The media type is lowercased and the scheme read in any case.
    assert_eq!(
        parts("DATA:Image/PNG;base64,iVBOR").unwrap(),
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBOR"}})
    );
    // No media type: refused (it was guessed as image/jpeg), like the other converters.
    let e = parts("data:;base64,iVBOR").unwrap_err();
    assert_eq!((e.class, e.status), (Class::BadRequest, 400));
    assert!(e.message.contains("media type"), "{}", e.message);
    // `;base64` must be the last parameter (RFC 2397).
    let e = parts("data:image/png;base64;x=y,iVBOR").unwrap_err();
    assert!(e.message.contains("base64"), "{}", e.message);
}

#[test]
fn tools_and_schema_cleaning() {
    let g = convert(json!({
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [
            {"type": "function", "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "strict": true,
                "parameters": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "city": {"type": "string", "description": "City", "format": "uri"},
                        "unit": {"type": ["string", "null"], "enum": ["c", "f"], "default": "c"},
                        "when": {"$ref": "#/$defs/When"},
                        "tags": {"type": "array", "items": {"type": "string", "additionalProperties": false}},
                        "opts": {"anyOf": [{"type": "object", "properties": {"x": {"type": "integer", "exclusiveMinimum": 0}}}, {"type": "null"}]},
                    },
                    "required": ["city", "ghost"],
                    "$defs": {"When": {"type": "string", "format": "date-time"}}
                }
            }},
            {"type": "function", "function": {"name": "no_args", "parameters": {"type": "object", "properties": {}}}},
        ],
        "tool_choice": "required",
    }));
    let decls = &g["tools"][0]["functionDeclarations"];
    assert_eq!(
        decls[0],
        json!({
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City"},
                    "unit": {"type": "string", "enum": ["c", "f"], "default": "c", "nullable": true},
                    "when": {"type": "string", "format": "date-time"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "opts": {"type": "object", "properties": {"x": {"type": "integer"}}, "nullable": true},
                },
                "required": ["city"],
            }
        })
    );
    // An argument-less function has no `parameters` (Gemini rejects empty properties).
    assert_eq!(decls[1], json!({"name": "no_args"}));
    assert_eq!(
        g["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );

    for (choice, expected) in [
        (
            json!("auto"),
            json!({"functionCallingConfig": {"mode": "AUTO"}}),
        ),
        (
            json!("none"),
            json!({"functionCallingConfig": {"mode": "NONE"}}),
        ),
        (
            json!({"type": "function", "function": {"name": "get_weather"}}),
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}),
        ),
    ] {
        let g = convert(json!({
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": choice,
        }));
        assert_eq!(g["toolConfig"], expected);
    }
    let e = chat_to_gemini(
        &json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]}),
        "gemini-2.5-flash",
    )
    .unwrap_err();
    assert!(e.message.contains("tools[0]"), "{}", e.message);
}

#[test]
fn tool_round_trip() {
    let g = convert(json!({
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\":21}"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "sunny"}]},
            {"role": "assistant", "content": "Paris 21, Rome sunny."},
            {"role": "user", "content": "Thanks"},
        ]
    }));
    assert_eq!(
        g["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"content": {"temp": 21}}}},
                {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}},
            ]},
            {"role": "model", "parts": [{"text": "Paris 21, Rome sunny."}]},
            {"role": "user", "parts": [{"text": "Thanks"}]},
        ])
    );

    // Gemini 3 needs a thought signature on the first call of each model turn.
    let g = chat_to_gemini(
        &json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [
                {"id": "1", "type": "function", "function": {"name": "f", "arguments": ""}},
                {"id": "2", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "1", "content": "a"},
            {"role": "tool", "tool_call_id": "2", "content": "b"},
        ]}),
        "gemini-3-pro-preview",
    )
    .unwrap();
    let parts = &g["contents"][1]["parts"];
    assert_eq!(parts[0]["thoughtSignature"], DUMMY_THOUGHT_SIGNATURE);
    assert_eq!(parts[0]["functionCall"]["args"], json!({}));
    assert!(parts[1].get("thoughtSignature").is_none());

    // An unknown tool call id is a clear client error.
    let e = chat_to_gemini(
        &json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "nope", "content": "a"},
        ]}),
        "gemini-2.5-flash",
    )
    .unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.message.contains("nope"), "{}", e.message);
    // Bad arguments too.
    let e = chat_to_gemini(
        &json!({"messages": [
            {"role": "assistant", "tool_calls": [
                {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{oops"}},
            ]},
        ]}),
        "gemini-2.5-flash",
    )
    .unwrap_err();
    assert!(
        e.message.contains("messages[0].tool_calls[0]"),
        "{}",
        e.message
    );
}

#[test]
fn generation_config_and_reasoning() {
    let g = convert(json!({
        "messages": [{"role": "user", "content": "x"}],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 100,
        "max_completion_tokens": 200,
        "stop": "END",
        "n": 2,
        "seed": 7,
        "reasoning_effort": "medium",
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true, "schema": {
            "type": "object", "additionalProperties": false,
            "properties": {"a": {"type": "integer"}}, "required": ["a"]
        }}},
        "stream_options": {"include_usage": true},
    }));
    assert_eq!(
        g["generationConfig"],
        json!({
            "temperature": 0.2,
            "topP": 0.9,
            "maxOutputTokens": 200,
            "candidateCount": 2,
            "seed": 7,
            "stopSequences": ["END"],
            "responseMimeType": "application/json",
            "responseSchema": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": true},
        })
    );
    for (effort, budget) in [("low", 1024), ("high", 24576)] {
        let g = convert(
            json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": effort}),
        );
        assert_eq!(
            g["generationConfig"]["thinkingConfig"]["thinkingBudget"],
            budget
        );
    }
    let g = convert(json!({
        "messages": [{"role": "user", "content": "x"}],
        "stop": ["a", "b"],
        "response_format": {"type": "json_object"},
    }));
    assert_eq!(
        g["generationConfig"],
        json!({"stopSequences": ["a", "b"], "responseMimeType": "application/json"})
    );
    let e = chat_to_gemini(
        &json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"}),
        "gemini-2.5-flash",
    )
    .unwrap_err();
    assert!(e.message.contains("reasoning_effort"));
    let e = chat_to_gemini(
        &json!({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
        "gemini-2.5-flash",
    )
    .unwrap_err();
    assert!(e.message.contains("temperature"));
}

#[test]
fn invalid_requests() {
    for (req, needle) in [
        (json!([]), "JSON object"),
        (json!({}), "messages"),
        (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            "wizard",
        ),
        (
            json!({"messages": [{"role": "system", "content": "x"}]}),
            "at least one",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]}),
            "video",
        ),
    ] {
        let e = chat_to_gemini(&req, "gemini-2.5-flash").unwrap_err();
        assert_eq!(e.class, Class::BadRequest);
        assert!(e.message.contains(needle), "{needle}: {}", e.message);
    }
}

// ----- Responses -----

#[test]
fn response_text_and_usage() {
    let resp = json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": "Hello "}, {"text": "world"}]},
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": {
            "promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 150,
            "thoughtsTokenCount": 30, "cachedContentTokenCount": 60,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "abc123",
    });
    let (chat, usage) = gemini_to_chat(&resp, "my-group").unwrap();
    assert_eq!(
        chat,
        json!({
            "id": "chatcmpl-abc123",
            "object": "chat.completion",
            "created": 0,
            "model": "my-group",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hello world"},
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "total_tokens": 150,
                "prompt_tokens_details": {"cached_tokens": 60},
                "completion_tokens_details": {"reasoning_tokens": 30},
            },
        })
    );
    assert_eq!(
        usage,
        Usage {
            input: 40,
            output: 50,
            cache_read: 60,
            cache_write: 0,
            reasoning: 30
        }
    );
    // The SDK's OpenAI usage reader agrees with the llmgate usage.
    let (read, _) = llmgate_sdk::openai::usage_and_model(&serde_json::to_vec(&chat).unwrap());
    assert_eq!(read, Some(usage));
}

#[test]
fn response_thoughts_length_and_created() {
    let resp = json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Let me think.", "thought": true},
                {"text": "42"},
            ]},
            "finishReason": "MAX_TOKENS",
        }],
        "createTime": "2025-01-02T03:04:05.678Z",
    });
    let (chat, usage) = gemini_to_chat(&resp, "m").unwrap();
    assert_eq!(chat["id"], "chatcmpl-gemini");
    assert_eq!(chat["created"], 1_735_787_045);
    let msg = &chat["choices"][0]["message"];
    assert_eq!(msg["content"], "42");
    assert_eq!(msg["reasoning_content"], "Let me think.");
    assert_eq!(chat["choices"][0]["finish_reason"], "length");
    assert_eq!(usage, Usage::default());

    let resp =
        json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "SAFETY"}]});
    assert_eq!(
        gemini_to_chat(&resp, "m").unwrap().0["choices"][0]["finish_reason"],
        "content_filter"
    );
}

#[test]
fn response_function_calls() {
    let resp = json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "get_time", "args": {}}},
            ]},
            "finishReason": "STOP",
        }],
        "responseId": "r1",
    });
    let (chat, _) = gemini_to_chat(&resp, "m").unwrap();
    let choice = &chat["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Checking.");
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([
            {"id": "call_r1_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_r1_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ])
    );
    // Without a responseId, plain `call_<n>`; the calls convert back to the same request.
    let resp = json!({"candidates": [{"content": {"parts": [
        {"functionCall": {"name": "f", "args": {"a": [1, 2]}}}
    ]}, "finishReason": "STOP"}]});
    let (chat, _) = gemini_to_chat(&resp, "m").unwrap();
    let msg = &chat["choices"][0]["message"];
    assert_eq!(msg["content"], Value::Null);
    assert_eq!(msg["tool_calls"][0]["id"], "call_0");
    let back = convert(json!({"messages": [
        {"role": "user", "content": "go"},
        msg.clone(),
        {"role": "tool", "tool_call_id": "call_0", "content": "done"},
    ]}));
    assert_eq!(
        back["contents"][1]["parts"][0],
        json!({"functionCall": {"name": "f", "args": {"a": [1, 2]}}})
    );
    assert_eq!(
        back["contents"][2]["parts"][0]["functionResponse"]["name"],
        "f"
    );
}

#[test]
fn response_blocked_prompt() {
    let resp = json!({
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 5},
    });
    let e = gemini_to_chat(&resp, "m").unwrap_err();
    assert_eq!(e.class, Class::ContentFilter);
    assert_eq!(e.status, 400);
    assert_eq!(e.code.as_deref(), Some("PROHIBITED_CONTENT"));
    let e = gemini_to_chat(&json!({"candidates": []}), "m").unwrap_err();
    assert_eq!(e.class, Class::Upstream);
}

// ----- Streams -----

fn sse_chunks() -> Vec<String> {
    [
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Thinking...", "thought": true}]}, "index": 0}],
               "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10}, "modelVersion": "gemini-2.5-flash", "responseId": "s1"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "The quick "}]}, "index": 0}],
               "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 3, "thoughtsTokenCount": 4}, "responseId": "s1"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "brown fox."}]}, "index": 0}],
               "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 4}, "responseId": "s1"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}],
               "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 6, "thoughtsTokenCount": 4, "cachedContentTokenCount": 2}, "responseId": "s1"}),
    ]
    .iter()
    .map(Value::to_string)
    .collect()
}

#[test]
fn stream_text_with_usage() {
    let mut s = StreamToChat::new("my-group", true);
    let mut out = Vec::new();
    for c in sse_chunks() {
        out.extend(s.on_chunk(&c).unwrap());
    }
    assert!(s.on_chunk("").unwrap().is_empty());
    let (tail, usage) = s.finish().unwrap();
    out.extend(tail);
    assert_eq!(out.last().map(String::as_str), Some("[DONE]"));
    let chunks = chunks_json(&out);
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], "chatcmpl-s1");
        assert_eq!(c["model"], "my-group");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    // OpenAI clients get usage only in the final chunk.
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c.get("usage").is_none())
    );
    let field = |name: &str| -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][name].as_str())
            .collect()
    };
    assert_eq!(field("content"), "The quick brown fox.");
    assert_eq!(field("reasoning_content"), "Thinking...");
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter(|c| c["choices"][0]["finish_reason"].is_string())
        .collect();
    assert_eq!(finishes.len(), 1);
    assert_eq!(finishes[0]["choices"][0]["delta"], json!({}));
    assert_eq!(finishes[0]["choices"][0]["finish_reason"], "stop");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"],
        json!({
            "prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 2},
            "completion_tokens_details": {"reasoning_tokens": 4},
        })
    );
    assert_eq!(
        usage,
        Some(Usage {
            input: 8,
            output: 10,
            cache_read: 2,
            cache_write: 0,
            reasoning: 4
        })
    );
}

#[test]
fn stream_early_usage_for_messages() {
    let mut s = StreamToChat::new("m", true).with_early_usage();
    let out = s.on_chunk(&sse_chunks()[0]).unwrap();
    let first: Value = serde_json::from_str(&out[0]).unwrap();
    assert_eq!(first["usage"]["prompt_tokens"], 10);
    let second: Value = serde_json::from_str(&out[1]).unwrap();
    assert!(second.get("usage").is_none());
}

#[test]
fn stream_without_usage_chunk() {
    let mut s = StreamToChat::new("m", false);
    for c in sse_chunks() {
        s.on_chunk(&c).unwrap();
    }
    let (tail, usage) = s.finish().unwrap();
    assert_eq!(tail, vec!["[DONE]".to_string()]);
    assert_eq!(usage.map(|u| u.output), Some(10));
}

#[test]
fn stream_tool_calls() {
    let mut s = StreamToChat::new("m", false);
    let mut out = s
        .on_chunk(
            &json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            ]}, "index": 0}], "responseId": "t"})
            .to_string(),
        )
        .unwrap();
    out.extend(
        s.on_chunk(
            &json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}},
            ]}, "finishReason": "STOP", "index": 0}], "responseId": "t",
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}})
            .to_string(),
        )
        .unwrap(),
    );
    out.extend(s.finish().unwrap().0);
    let chunks = chunks_json(&out);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(
        calls,
        vec![
            &json!({"index": 0, "id": "call_t_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}),
            &json!({"index": 1, "id": "call_t_1", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":\"CET\"}"}}),
        ]
    );
    let finish = chunks
        .iter()
        .find(|c| c["choices"][0]["finish_reason"].is_string())
        .unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(out.last().map(String::as_str), Some("[DONE]"));
}

#[test]
fn stream_errors() {
    // Cut short: no finishReason.
    let mut s = StreamToChat::new("m", true);
    s.on_chunk(&sse_chunks()[1]).unwrap();
    let e = s.finish().unwrap_err();
    assert_eq!(e.class, Class::Upstream);
    // Non-JSON chunk.
    let mut s = StreamToChat::new("m", true);
    assert_eq!(s.on_chunk("not json").unwrap_err().class, Class::Upstream);
    // An error object mid-stream.
    let e = s
        .on_chunk(
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
        )
        .unwrap_err();
    assert_eq!(e.class, Class::Overloaded);
    assert_eq!(e.status, 503);
    // A blocked prompt.
    let e = s
        .on_chunk(r#"{"promptFeedback":{"blockReason":"SAFETY"}}"#)
        .unwrap_err();
    assert_eq!(e.class, Class::ContentFilter);
}

// ----- Errors -----

#[test]
fn errors() {
    let e = parse_error(
        429,
        br#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#,
    );
    assert_eq!(e.class, Class::RateLimited);
    assert_eq!(e.status, 429);
    assert_eq!(e.code.as_deref(), Some("RESOURCE_EXHAUSTED"));

    let e = parse_error(
        400,
        br#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
    );
    assert_eq!(e.class, Class::ContextLength);

    let e = parse_error(
        400,
        br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#,
    );
    assert_eq!(e.class, Class::Auth);

    let e = parse_error(
        403,
        br#"[{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}]"#,
    );
    assert_eq!(e.class, Class::Auth);
    assert_eq!(e.status, 403);

    let e = parse_error(
        503,
        br#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
    );
    assert_eq!(e.class, Class::Overloaded);

    let e = parse_error(
        400,
        br#"{"error":{"code":400,"message":"Invalid JSON payload received.","status":"INVALID_ARGUMENT"}}"#,
    );
    assert_eq!(e.class, Class::BadRequest);
    assert_eq!(e.message, "Invalid JSON payload received.");

    let e = parse_error(500, b"<html>oops</html>");
    assert_eq!(e.class, Class::Upstream);
    assert!(e.message.contains("oops"));
    assert_eq!(parse_error(404, b"").class, Class::NotFound);
}
