"""Chat completions through the gateway: plain, streamed, tools, images, big agent requests."""

from __future__ import annotations

import json
import uuid
from typing import Any

import openai

from conftest import CLIENT_KEY, MAIN_DEPLOYMENT_ID, MAIN_GROUPS, UPSTREAM_KEY, Gateway, Mock, header
from helpers import (
    MOCK_TOOL_ARGUMENTS,
    PNG_DATA_URL,
    agent_tools,
    big_system_prompt,
    canonical,
    collect,
    without,
)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# --- non-streamed -------------------------------------------------------------------------


def test_completion_echoes_with_usage_and_headers(client: openai.OpenAI, upstream: Mock) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=user("hello world"))
    assert raw.status_code == 200
    assert raw.headers.get("x-litellm-model-id") == MAIN_DEPLOYMENT_ID
    call_id = raw.headers.get("x-litellm-call-id")
    assert call_id, "x-litellm-call-id missing"
    uuid.UUID(call_id)

    resp = raw.parse()
    assert resp.object == "chat.completion"
    assert len(resp.choices) == 1
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == "echo: hello world"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens == 3  # "echo: hello world"
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens

    sent = upstream.only_chat_request()
    assert sent["method"] == "POST"
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["model"] == "mock-gpt", "the gateway must send the upstream model name"
    assert sent["body"]["messages"] == user("hello world")


def test_call_ids_are_unique(client: openai.OpenAI) -> None:
    ids = {
        client.chat.completions.with_raw_response.create(model="gpt-4o", messages=user(f"n{i}")).headers[
            "x-litellm-call-id"
        ]
        for i in range(3)
    }
    assert len(ids) == 3


def test_upstream_gets_config_key_not_client_key(gateway: Gateway, upstream: Mock) -> None:
    with gateway.client(organization="org-e2e") as c:
        c.chat.completions.create(model="gpt-4o", messages=user("keys"))
    sent = upstream.only_chat_request()
    assert header(sent, "authorization") == f"Bearer {UPSTREAM_KEY}"
    assert CLIENT_KEY not in json.dumps(sent["headers"]), "the client's key leaked upstream"
    assert (header(sent, "content-type") or "").startswith("application/json")
    assert header(sent, "openai-organization") == "org-e2e"


def test_request_body_passes_through(client: openai.OpenAI, upstream: Mock) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": [{"type": "text", "text": "sec"}, {"type": "text", "text": "ond"}]},
    ]
    params: dict[str, Any] = dict(
        messages=messages,
        temperature=0.25,
        top_p=0.5,
        max_tokens=77,
        seed=7,
        stop=["\n\n"],
        user="user-42",
        response_format={"type": "text"},
        metadata={"trace": "t1"},
    )
    resp = client.chat.completions.create(model="gpt-4o", extra_body={"vendor_field": {"a": [1, 2]}}, **params)
    assert resp.choices[0].message.content == "echo: second"
    body = upstream.only_chat_request()["body"]
    assert body["model"] == "mock-gpt"
    expected = {**params, "vendor_field": {"a": [1, 2]}}
    assert canonical(without(body, "model")) == canonical(expected)


def test_litellm_params_defaults_and_extra_headers(client_v1: openai.OpenAI, upstream: Mock) -> None:
    # The deployment sets temperature 0.1, max_tokens 100 and an X-Team header.
    client_v1.chat.completions.create(model="with-defaults", messages=user("defaults"))
    client_v1.chat.completions.create(model="with-defaults", messages=user("mine"), temperature=0.9, max_tokens=5)
    first, second = upstream.chat_requests()
    assert first["body"]["temperature"] == 0.1
    assert first["body"]["max_tokens"] == 100
    assert second["body"]["temperature"] == 0.9, "the client's value wins over the config default"
    assert second["body"]["max_tokens"] == 5
    for r in (first, second):
        assert header(r, "x-team") == "e2e-team"
        assert r["body"]["messages"][0]["role"] == "user"


def test_nested_model_and_stream_keys_untouched(client: openai.OpenAI, upstream: Mock) -> None:
    """Only the top-level `model` is rewritten, and only the top-level `stream` counts, even
    when nested objects (which the SDK serialises before `model`) carry the same keys."""
    tricky = '{"model": "evil", "stream": true, "stream_options": {"include_usage": true}}'
    messages = [{"role": "user", "content": [{"type": "text", "text": tricky, "model": "part-level"}]}]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "configure",
                "parameters": {
                    "type": "object",
                    "properties": {"model": {"type": "string", "default": "gpt-4o"}, "stream": {"type": "boolean"}},
                },
            },
        }
    ]
    metadata = {"model": "nested", "stream": "true"}
    resp = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools, metadata=metadata)
    assert resp.choices[0].message.content == f"echo: {tricky}"
    body = upstream.only_chat_request()["body"]
    assert body["model"] == "mock-gpt"
    assert body["messages"] == messages
    assert body["tools"] == tools
    assert body["metadata"] == metadata
    assert "stream" not in body and "stream_options" not in body


def test_tool_result_turn(client: openai.OpenAI, upstream: Mock) -> None:
    tools = agent_tools()
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "please use tool"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": '{"path":"a"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "file contents"},
        {"role": "user", "content": "thanks, summarise"},
    ]
    resp = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    assert resp.choices[0].message.content == "echo: thanks, summarise"
    assert resp.choices[0].message.tool_calls in (None, [])
    body = upstream.only_chat_request()["body"]
    assert body["messages"] == messages
    assert body["tools"] == tools


def test_cached_tokens_reported(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="cached-model", messages=user("cache me " * 50))
    assert resp.usage is not None
    details = resp.usage.prompt_tokens_details
    assert details is not None
    assert details.cached_tokens == resp.usage.prompt_tokens // 2
    assert details.cached_tokens > 0


# --- streamed -----------------------------------------------------------------------------


def test_stream_with_usage_matches_plain(client: openai.OpenAI, upstream: Mock) -> None:
    text = "the quick  brown fox\tjumps"
    plain = client.chat.completions.create(model="gpt-4o", messages=user(text))
    upstream.clear()

    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=user(text), stream=True, stream_options={"include_usage": True}
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers.get("content-type", "").startswith("text/event-stream")
        assert resp.headers.get("x-litellm-model-id") == MAIN_DEPLOYMENT_ID
        assert resp.headers.get("x-litellm-call-id")
        got = collect(resp.parse())

    assert got.content == plain.choices[0].message.content == f"echo: {text}"
    assert len(got.chunks) > 3, "the answer should arrive in several chunks"
    assert got.finish_reason == "stop"
    assert got.usage_chunks == 1
    last = got.chunks[-1]
    assert last.usage is not None, "the last chunk must carry usage"
    assert last.choices == []
    assert last.usage.completion_tokens == plain.usage.completion_tokens
    assert last.usage.prompt_tokens > 0
    for ch in got.chunks:
        assert ch.object == "chat.completion.chunk"

    body = upstream.only_chat_request()["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_stream_without_usage_hides_usage_chunk(client: openai.OpenAI, upstream: Mock) -> None:
    stream = client.chat.completions.create(model="gpt-4o", messages=user("no usage please"), stream=True)
    got = collect(stream)
    assert got.content == "echo: no usage please"
    assert got.finish_reason == "stop"
    assert got.usage_chunks == 0, f"a chunk carried usage: {got.chunks[-1]}"
    assert all(ch.choices for ch in got.chunks), "an empty usage-only chunk leaked to the client"

    body = upstream.only_chat_request()["body"]
    assert body["stream"] is True
    assert body["stream_options"]["include_usage"] is True, "the gateway should ask the upstream for usage"


def test_stream_include_usage_false_hides_usage_chunk(client_v1: openai.OpenAI, upstream: Mock) -> None:
    stream = client_v1.chat.completions.create(
        model="gpt-4o", messages=user("explicitly false"), stream=True, stream_options={"include_usage": False}
    )
    got = collect(stream)
    assert got.content == "echo: explicitly false"
    assert got.usage_chunks == 0
    assert upstream.only_chat_request()["body"]["stream_options"]["include_usage"] is True


# --- tools --------------------------------------------------------------------------------


def test_tool_call(client: openai.OpenAI, upstream: Mock) -> None:
    tools = agent_tools()
    assert len(tools) == 14
    resp = client.chat.completions.create(model="gpt-4o", messages=user("please use tool"), tools=tools)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].function.name == "read"
    assert json.loads(calls[0].function.arguments) == {"q": "mock"}
    assert upstream.only_chat_request()["body"]["tools"] == tools


def test_tool_call_streamed(client: openai.OpenAI, upstream: Mock) -> None:
    tools = agent_tools()
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=user("please use tool"),
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "web_search"}},
        stream=True,
        stream_options={"include_usage": True},
    )
    got = collect(stream)
    assert got.finish_reason == "tool_calls"
    assert list(got.tool_calls) == [0]
    call = got.tool_calls[0]
    assert call["name"] == "web_search"
    assert call["id"]
    assert call["arguments"] == MOCK_TOOL_ARGUMENTS
    assert json.loads(call["arguments"]) == {"q": "mock"}
    assert got.usage is not None
    body = upstream.only_chat_request()["body"]
    assert body["tools"] == tools
    assert body["tool_choice"] == {"type": "function", "function": {"name": "web_search"}}


# --- images -------------------------------------------------------------------------------


def test_image_parts_reach_upstream_unchanged(client: openai.OpenAI, upstream: Mock) -> None:
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "low"}},
    ]
    resp = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": content}])
    assert resp.choices[0].message.content == "echo: what is this[image]"
    body = upstream.only_chat_request()["body"]
    assert body["messages"] == [{"role": "user", "content": content}]


def test_large_image_streamed(client_v1: openai.OpenAI, upstream: Mock) -> None:
    # ~3 MB of base64, as a screenshot would be.
    url = "data:image/png;base64," + ("A" * (3 << 20))
    content = [{"type": "text", "text": "screenshot"}, {"type": "image_url", "image_url": {"url": url}}]
    got = collect(
        client_v1.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": content}], stream=True
        )
    )
    assert got.content == "echo: screenshot[image]"
    body = upstream.only_chat_request()["body"]
    assert body["messages"][0]["content"][1]["image_url"]["url"] == url


# --- an agent-sized request ---------------------------------------------------------------


def test_openclaw_sized_request(client: openai.OpenAI, upstream: Mock) -> None:
    system = big_system_prompt(50_000)
    assert len(system.encode()) >= 50_000
    tools = agent_tools()
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "user", "content": "[Telegram user] hi there, what can you do?"},
    ]
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o",
        messages=messages,
        tools=tools,
        max_completion_tokens=64000,
        stream=True,
        stream_options={"include_usage": True},
    ) as resp:
        assert resp.status_code == 200
        got = collect(resp.parse())

    assert got.content == "echo: [Telegram user] hi there, what can you do?"
    assert got.finish_reason == "stop"
    assert got.usage is not None
    assert got.usage.prompt_tokens > 12_000, "usage should reflect the ~50 KB prompt"

    body = upstream.only_chat_request()["body"]
    assert body["model"] == "mock-gpt"
    assert body["messages"] == messages
    assert body["messages"][0]["content"] == system
    assert body["tools"] == tools
    assert body["max_completion_tokens"] == 64000
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    expected = dict(
        messages=messages,
        tools=tools,
        max_completion_tokens=64000,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert canonical(without(body, "model")) == canonical(expected)


# --- models -------------------------------------------------------------------------------


def test_models_list(client: openai.OpenAI, gateway: Gateway) -> None:
    ids = [m.id for m in client.models.list()]
    expected = {d["model_name"] for d in gateway.config["model_list"]}  # type: ignore[index]
    assert set(ids) == expected
    assert len(ids) == len(expected)
    assert set(MAIN_GROUPS) <= set(ids)


# --- SDK conveniences and odd text ----------------------------------------------------------


def test_sdk_stream_helper(client: openai.OpenAI) -> None:
    """`client.chat.completions.stream()` accumulates chunks itself and checks their shape."""
    with client.chat.completions.stream(
        model="gpt-4o", messages=user("helper text"), stream_options={"include_usage": True}
    ) as s:
        kinds = {e.type for e in s}
        final = s.get_final_completion()
    assert {"chunk", "content.delta", "content.done"} <= kinds
    assert final.choices[0].message.content == "echo: helper text"
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.completion_tokens == 3

    strict_tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string"}},
                "required": ["q"],
                "additionalProperties": False,
            },
        },
    }
    with client.chat.completions.stream(model="gpt-4o", messages=user("use tool"), tools=[strict_tool]) as s:
        final = s.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup"
    assert call.function.parsed_arguments == {"q": "mock"}


def test_unicode_round_trip(client: openai.OpenAI, upstream: Mock) -> None:
    text = "naïve café — 東京 🚀 \"quoted\" back\\slash\n\ttabbed \u2028 end"
    plain = client.chat.completions.create(model="gpt-4o", messages=user(text))
    assert plain.choices[0].message.content == f"echo: {text}"
    got = collect(client.chat.completions.create(model="gpt-4o", messages=user(text), stream=True))
    assert got.content == f"echo: {text}"
    for r in upstream.chat_requests():
        assert r["body"]["messages"] == user(text)


def test_openai_prefixed_path(gateway: Gateway) -> None:
    """`/openai/v1/chat/completions` is served too (LiteLLM's OpenAI passthrough path)."""
    with openai.OpenAI(base_url=f"{gateway.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30) as c:
        resp = c.chat.completions.create(model="gpt-4o", messages=user("prefixed"))
    assert resp.choices[0].message.content == "echo: prefixed"
