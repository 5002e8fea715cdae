"""The Anthropic-compatible route `POST /v1/messages`, driven by the official Anthropic SDK
(`ANTHROPIC_API_BASE=<gateway>`), in front of a native Anthropic upstream and of upstreams the
gateway translates to (OpenAI chat completions, Gemini).

The upstreams are `provider_mock`, which refuses requests without the configured key in the
provider's own auth header (`x-api-key`, `Authorization: Bearer`, `x-goog-api-key`).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterator

import anthropic
import httpx
import pytest

from conftest import CLIENT_KEY, PROVIDER_UPSTREAM_KEY, Gateway, Mock, header
from helpers import PNG_1X1, PNG_DATA_URL, anthropic_tools, big_system_prompt, canonical, without

#: Passes `/v1/messages` through to an Anthropic upstream (same model name upstream).
NATIVE = "claude-sonnet-4-20250514"
#: Translated to OpenAI chat completions (`mock-gpt`) and back.
VIA_OPENAI = "claude-via-openai"
#: Translated to Gemini `generateContent` (`gemini-2.5-flash`) and back.
VIA_GEMINI = "claude-via-gemini"
GROUPS = [NATIVE, VIA_OPENAI, VIA_GEMINI]
GROUP_IDS = ["native", "openai", "gemini"]

#: `anthropic-version` for the raw requests (the SDK sends its own, see `sdk_version`).
ANTHROPIC_VERSION = "2023-06-01"
BETA = "prompt-caching-2024-07-31"

#: Two tools, the first of which the mock calls when the user text contains "use tool".
TOOLS: list[dict[str, Any]] = [
    {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
    {
        "name": "search",
        "description": "Search the web.",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    },
]


# The SDK warns about dated model names such as the one of the native group.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


@pytest.fixture
def aclient(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    c = gateway.anthropic_client()
    yield c
    c.close()


def sdk_version(c: anthropic.Anthropic) -> str:
    """The `anthropic-version` header the SDK sends."""
    v = c.default_headers["anthropic-version"]
    assert isinstance(v, str) and v
    return v


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def text_of(msg: Any) -> str:
    return "".join(b.text for b in msg.content if b.type == "text")


def cached_system(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]


def only_request(mock: Mock) -> dict[str, Any]:
    reqs = mock.requests()
    assert len(reqs) == 1, f"expected exactly one upstream request, got {len(reqs)}: {reqs}"
    return reqs[0]


def upstream_path(group: str, stream: bool) -> str:
    if group == NATIVE:
        return "/v1/messages"
    if group == VIA_OPENAI:
        return "/v1/chat/completions"
    method = "streamGenerateContent" if stream else "generateContent"
    return f"/v1beta/models/gemini-2.5-flash:{method}"


def assert_upstream_auth(sent: dict[str, Any], group: str) -> None:
    """The upstream got the deployment's key in its provider's header, never the client's."""
    assert CLIENT_KEY not in json.dumps(sent["headers"]), "the client's key leaked upstream"
    assert CLIENT_KEY not in (sent["query"] or "")
    if group == NATIVE:
        assert header(sent, "x-api-key") == PROVIDER_UPSTREAM_KEY
        assert header(sent, "authorization") is None
    elif group == VIA_OPENAI:
        assert header(sent, "authorization") == f"Bearer {PROVIDER_UPSTREAM_KEY}"
        assert header(sent, "x-api-key") is None
    else:
        assert header(sent, "x-goog-api-key") == PROVIDER_UPSTREAM_KEY or f"key={PROVIDER_UPSTREAM_KEY}" in (
            sent["query"] or ""
        )
        assert header(sent, "x-api-key") is None


def event_types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def assert_event_grammar(types: list[str]) -> None:
    """message_start, then blocks (start, deltas, stop), then message_delta and message_stop."""
    types = [t for t in types if t != "ping"]
    assert types[0] == "message_start", types
    assert types[-2:] == ["message_delta", "message_stop"], types
    open_block = False
    for t in types[1:-2]:
        if t == "content_block_start":
            assert not open_block, types
            open_block = True
        elif t == "content_block_delta":
            assert open_block, types
        elif t == "content_block_stop":
            assert open_block, types
            open_block = False
        else:
            pytest.fail(f"unexpected event {t!r} in {types}")
    assert not open_block, types


# --- 1. plain messages ---------------------------------------------------------------------


@pytest.mark.parametrize("group", GROUPS, ids=GROUP_IDS)
def test_messages_create(aclient: anthropic.Anthropic, provider_upstream: Mock, group: str) -> None:
    system = cached_system("You are a terse assistant.")
    messages = user("hello anthropic")
    raw = aclient.messages.with_raw_response.create(
        model=group,
        max_tokens=1024,
        system=system,
        messages=messages,
        extra_headers={"anthropic-beta": BETA},
    )
    assert raw.http_response.status_code == 200
    assert raw.headers.get("content-type", "").startswith("application/json")
    assert raw.headers.get("x-litellm-call-id")
    msg = raw.parse()
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert msg.id
    assert msg.model == group
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "echo: hello anthropic"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens is not None and msg.usage.input_tokens > 0
    assert msg.usage.output_tokens == 3  # "echo: hello anthropic"

    sent = only_request(provider_upstream)
    assert sent["method"] == "POST"
    assert sent["path"] == upstream_path(group, stream=False)
    assert_upstream_auth(sent, group)
    body = sent["body"]
    if group == NATIVE:
        # Passed through untouched (the upstream model name is the same here).
        assert body == {"model": NATIVE, "max_tokens": 1024, "system": system, "messages": messages}
        assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
        assert header(sent, "anthropic-version") == sdk_version(aclient)
        assert header(sent, "anthropic-beta") == BETA
    elif group == VIA_OPENAI:
        assert body["model"] == "mock-gpt"
        assert body["messages"] == [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "hello anthropic"},
        ]
        assert body.get("max_tokens", body.get("max_completion_tokens")) == 1024
    else:
        assert body["contents"][-1]["parts"] == [{"text": "hello anthropic"}]
        assert "terse" in json.dumps(body.get("systemInstruction") or body.get("system_instruction"))


# --- 2. streams ----------------------------------------------------------------------------


@pytest.mark.parametrize("group", GROUPS, ids=GROUP_IDS)
def test_messages_stream(aclient: anthropic.Anthropic, provider_upstream: Mock, group: str) -> None:
    system = cached_system("You are a terse assistant.")
    messages = user("the quick  brown fox\tjumps")
    params: dict[str, Any] = dict(model=group, max_tokens=1024, system=system, messages=messages)
    plain = aclient.messages.create(**params)
    assert text_of(plain) == "echo: the quick  brown fox\tjumps"
    provider_upstream.clear()

    with aclient.messages.stream(**params, extra_headers={"anthropic-beta": BETA}) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers.get("content-type", "").startswith("text/event-stream")
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1, "the text should arrive in several deltas"
    assert "".join(pieces) == text_of(final) == text_of(plain)
    assert [b.type for b in final.content] == ["text"]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.input_tokens > 0

    sent = only_request(provider_upstream)
    assert sent["path"] == upstream_path(group, stream=True)
    assert_upstream_auth(sent, group)
    if group == NATIVE:
        assert sent["body"] == {**params, "stream": True}
        assert header(sent, "anthropic-beta") == BETA
        assert header(sent, "anthropic-version") == sdk_version(aclient)
    elif group == VIA_OPENAI:
        assert sent["body"]["stream"] is True

    # The raw events follow Anthropic's grammar.
    events = list(aclient.messages.create(**params, stream=True))
    assert_event_grammar(event_types(events))
    start = events[0]
    assert start.message.role == "assistant"
    assert start.message.model == group
    stop = [e for e in events if e.type == "message_delta"][0]
    assert stop.delta.stop_reason == "end_turn"


# --- 3. tool use ---------------------------------------------------------------------------


def tool_use_blocks(msg: Any) -> list[Any]:
    return [b for b in msg.content if b.type == "tool_use"]


@pytest.mark.parametrize("group", GROUPS, ids=GROUP_IDS)
def test_tool_use(aclient: anthropic.Anthropic, provider_upstream: Mock, group: str) -> None:
    msg = aclient.messages.create(model=group, max_tokens=1024, tools=TOOLS, messages=user("please use tool"))
    assert msg.stop_reason == "tool_use"
    uses = tool_use_blocks(msg)
    assert len(uses) == 1, msg.content
    assert uses[0].name == "get_weather"
    assert uses[0].input == {"q": "mock"}
    assert uses[0].id

    sent = only_request(provider_upstream)
    if group == NATIVE:
        assert sent["body"]["tools"] == TOOLS
    elif group == VIA_OPENAI:
        assert [t["function"]["name"] for t in sent["body"]["tools"]] == ["get_weather", "search"]
        assert sent["body"]["tools"][0]["function"]["parameters"] == TOOLS[0]["input_schema"]


@pytest.mark.parametrize("group", GROUPS, ids=GROUP_IDS)
def test_tool_use_streamed(aclient: anthropic.Anthropic, provider_upstream: Mock, group: str) -> None:
    # Forced choice of the second tool.
    with aclient.messages.stream(
        model=group,
        max_tokens=1024,
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "search"},
        messages=user("please use tool"),
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    uses = tool_use_blocks(final)
    assert len(uses) == 1, final.content
    assert uses[0].name == "search"
    assert uses[0].input == {"q": "mock"}
    assert uses[0].id
    partial = "".join(e.partial_json for e in events if e.type == "input_json")
    assert json.loads(partial) == {"q": "mock"}

    sent = only_request(provider_upstream)
    assert sent["path"] == upstream_path(group, stream=True)
    if group == NATIVE:
        assert sent["body"]["tool_choice"] == {"type": "tool", "name": "search"}
    elif group == VIA_OPENAI:
        assert sent["body"]["tool_choice"] == {"type": "function", "function": {"name": "search"}}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("group", GROUPS, ids=GROUP_IDS)
def test_tool_result_turn(aclient: anthropic.Anthropic, provider_upstream: Mock, group: str, stream: bool) -> None:
    first = aclient.messages.create(model=group, max_tokens=1024, tools=TOOLS, messages=user("please use tool"))
    (use,) = tool_use_blocks(first)
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "please use tool"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 °C"},
                {"type": "text", "text": "thanks, summarise"},
            ],
        },
    ]
    provider_upstream.clear()
    if stream:
        with aclient.messages.stream(model=group, max_tokens=1024, tools=TOOLS, messages=messages) as s:
            second = s.get_final_message()
    else:
        second = aclient.messages.create(model=group, max_tokens=1024, tools=TOOLS, messages=messages)
    assert second.stop_reason == "end_turn"
    assert tool_use_blocks(second) == []
    assert text_of(second) == "echo: thanks, summarise"

    body = only_request(provider_upstream)["body"]
    if group == NATIVE:
        assert body["messages"] == messages
    elif group == VIA_OPENAI:
        roles = [m["role"] for m in body["messages"]]
        assert roles == ["user", "assistant", "tool", "user"], body["messages"]
        assert body["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
        call_id = body["messages"][1]["tool_calls"][0]["id"]
        assert body["messages"][2]["tool_call_id"] == call_id
        assert "sunny, 21 °C" in json.dumps(body["messages"][2]["content"], ensure_ascii=False)
    else:
        text = json.dumps(body["contents"], ensure_ascii=False)
        assert "functionCall" in text or "function_call" in text
        assert "functionResponse" in text or "function_response" in text
        assert "sunny, 21 °C" in text


# --- 4. extended thinking (native) ---------------------------------------------------------


def test_thinking(aclient: anthropic.Anthropic, provider_upstream: Mock) -> None:
    params: dict[str, Any] = dict(
        model=NATIVE,
        max_tokens=64000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=user("think it over"),
    )
    msg = aclient.messages.create(**params)
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == "mock thinking"
    assert msg.content[0].signature == "sig_mock"
    assert msg.content[1].text == "echo: think it over"
    assert msg.stop_reason == "end_turn"
    assert only_request(provider_upstream)["body"] == params
    provider_upstream.clear()

    with aclient.messages.stream(**params) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "mock thinking"
    assert final.content[0].signature == "sig_mock"
    assert final.content[1].text == "echo: think it over"
    assert "".join(e.thinking for e in events if e.type == "thinking") == "mock thinking"
    assert [e.signature for e in events if e.type == "signature"] == ["sig_mock"]
    assert only_request(provider_upstream)["body"] == {**params, "stream": True}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_thinking_via_gemini(aclient: anthropic.Anthropic, provider_upstream: Mock, stream: bool) -> None:
    """Extended thinking asked of a translated Gemini upstream: its thought parts come back as
    a thinking block ahead of the text."""
    params: dict[str, Any] = dict(
        model=VIA_GEMINI,
        max_tokens=8192,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=user("think it over"),
    )
    if stream:
        with aclient.messages.stream(**params) as s:
            msg = s.get_final_message()
    else:
        msg = aclient.messages.create(**params)
    assert [b.type for b in msg.content] == ["thinking", "text"], msg.content
    assert msg.content[0].thinking == "mock thinking"
    assert msg.content[1].text == "echo: think it over"
    assert msg.stop_reason == "end_turn"
    body = only_request(provider_upstream)["body"]
    config = body.get("generationConfig") or body.get("generation_config")
    assert config["thinkingConfig"]["includeThoughts"] is True


# --- 5. prompt caching (native) ------------------------------------------------------------


def test_prompt_caching(aclient: anthropic.Anthropic, provider_upstream: Mock) -> None:
    # A system prompt no other request used: the first request writes the cache.
    system = cached_system(f"cache test {uuid.uuid4()} " + "lorem ipsum " * 200)
    params: dict[str, Any] = dict(
        model=NATIVE,
        max_tokens=1024,
        system=system,
        messages=user("cache me"),
        extra_headers={"anthropic-beta": BETA},
    )
    first = aclient.messages.create(**params)
    second = aclient.messages.create(**params)
    assert (first.usage.cache_creation_input_tokens or 0) > 0
    assert not first.usage.cache_read_input_tokens
    assert (second.usage.cache_read_input_tokens or 0) > 0
    assert not second.usage.cache_creation_input_tokens
    assert second.usage.input_tokens > 0

    with aclient.messages.stream(**params) as stream:
        streamed = stream.get_final_message()
    assert (streamed.usage.cache_read_input_tokens or 0) > 0
    assert not streamed.usage.cache_creation_input_tokens

    reqs = provider_upstream.requests()
    assert len(reqs) == 3
    for r in reqs:
        assert r["body"]["system"] == system
        assert header(r, "anthropic-beta") == BETA


# --- 6. errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_unknown_model(aclient: anthropic.Anthropic, provider_upstream: Mock, stream: bool) -> None:
    with pytest.raises(anthropic.NotFoundError) as ei:
        aclient.messages.create(model="claude-no-such-model", max_tokens=16, messages=user("hi"), stream=stream)
    e = ei.value
    assert e.status_code == 404
    assert isinstance(e.body, dict)
    assert e.body["type"] == "error"
    assert e.body["error"]["type"] == "not_found_error"
    assert "claude-no-such-model" in e.body["error"]["message"]
    assert provider_upstream.requests() == [], "an unknown model must not reach any upstream"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_rate_limited(aclient: anthropic.Anthropic, provider_upstream: Mock, stream: bool) -> None:
    with pytest.raises(anthropic.RateLimitError) as ei:
        aclient.messages.create(model="claude-error-429", max_tokens=16, messages=user("hi"), stream=stream)
    e = ei.value
    assert e.status_code == 429
    assert isinstance(e.body, dict)
    assert e.body["type"] == "error"
    assert e.body["error"]["type"] == "rate_limit_error"
    assert e.response.headers.get("retry-after") == "1"
    reqs = provider_upstream.requests()
    assert reqs, "the upstream was not called"
    for r in reqs:
        assert r["path"] == "/v1/messages"
        assert r["body"]["model"] == "claude-error-429"
        assert header(r, "x-api-key") == PROVIDER_UPSTREAM_KEY


@pytest.mark.parametrize(
    "group,path",
    [
        ("claude-via-openai-error-429", "/v1/chat/completions"),
        ("claude-via-gemini-error-429", "/v1beta/models/gemini-error-429:generateContent"),
    ],
    ids=["openai", "gemini"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_rate_limited_translated(
    aclient: anthropic.Anthropic, provider_upstream: Mock, group: str, path: str, stream: bool
) -> None:
    """A translated upstream's 429 reaches the Anthropic client in Anthropic's error shape."""
    with pytest.raises(anthropic.RateLimitError) as ei:
        aclient.messages.create(model=group, max_tokens=16, messages=user("hi"), stream=stream)
    e = ei.value
    assert e.status_code == 429
    assert isinstance(e.body, dict)
    assert e.body["type"] == "error"
    assert e.body["error"]["type"] == "rate_limit_error"
    assert e.body["error"]["message"]
    reqs = provider_upstream.requests()
    assert reqs, "the upstream was not called"
    if stream:
        path = path.replace(":generateContent", ":streamGenerateContent")
    assert {r["path"] for r in reqs} == {path}


def test_malformed_json(gateway: Gateway, provider_upstream: Mock) -> None:
    r = httpx.post(
        f"{gateway.url}/v1/messages",
        content=b'{"model": "claude-sonnet-4-20250514", "max_tokens": 16, "messages": [',
        headers={
            "content-type": "application/json",
            "x-api-key": CLIENT_KEY,
            "anthropic-version": ANTHROPIC_VERSION,
        },
        timeout=30,
    )
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert provider_upstream.requests() == []


@pytest.mark.parametrize(
    "group",
    ["claude-malformed", "claude-via-openai-malformed", "claude-via-gemini-malformed"],
    ids=GROUP_IDS,
)
def test_malformed_upstream_body(aclient: anthropic.Anthropic, group: str) -> None:
    """An upstream 200 whose body is not JSON: 502 in Anthropic's shape, naming the deployment
    once."""
    with pytest.raises(anthropic.InternalServerError) as ei:
        aclient.messages.create(model=group, max_tokens=16, messages=user("hi"))
    e = ei.value
    assert e.status_code == 502
    assert isinstance(e.body, dict)
    assert e.body["type"] == "error"
    assert e.body["error"]["type"] == "api_error"
    assert e.body["error"]["message"].count("(deployment ") == 1, e.body


def test_malformed_upstream_stream_event(aclient: anthropic.Anthropic) -> None:
    """A broken upstream event ends the stream with an Anthropic `error` event, which the SDK
    raises; the message names the deployment once."""
    with pytest.raises(anthropic.APIStatusError) as ei:
        with aclient.messages.stream(model="claude-malformed", max_tokens=16, messages=user("hi")) as s:
            s.get_final_message()
    e = ei.value
    assert isinstance(e.body, dict)
    assert e.body["type"] == "error"
    assert e.body["error"]["type"] == "api_error"
    message = e.body["error"]["message"]
    assert "not JSON" in message
    assert message.count("(deployment ") == 1, f"the deployment is named more than once: {message!r}"


def test_midstream_disconnect(aclient: anthropic.Anthropic) -> None:
    """The upstream drops the connection after a few deltas: the client gets what was sent,
    then an error event (the SDK raises), never a clean `message_stop`."""
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as ei:
        with aclient.messages.stream(
            model="claude-disconnect", max_tokens=64, messages=user("one two three four five six")
        ) as s:
            for event in s:
                seen.append(event.type)
    assert "message_stop" not in seen
    assert "text" in seen, seen
    assert isinstance(ei.value.body, dict)
    assert ei.value.body["type"] == "error"
    assert ei.value.body["error"]["type"] == "api_error"


def test_wrong_method_answers_in_anthropic_shape(gateway: Gateway) -> None:
    """`GET /v1/messages` is refused in the route's (Anthropic) error shape, as unknown paths
    under `/v1/messages` are."""
    unknown = httpx.post(f"{gateway.url}/v1/messages/nope", json={}, timeout=30)
    assert unknown.status_code == 404
    assert unknown.json().get("type") == "error", unknown.text
    r = httpx.get(f"{gateway.url}/v1/messages", timeout=30)
    assert r.status_code == 405
    assert r.json().get("type") == "error", f"not Anthropic's error shape: {r.text}"
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_raw_request_without_version_header(gateway: Gateway, provider_upstream: Mock) -> None:
    """A bare HTTP client (no SDK, no `anthropic-version`) still gets an answer: the gateway
    supplies the version the upstream requires."""
    r = httpx.post(
        f"{gateway.url}/v1/messages",
        json={"model": NATIVE, "max_tokens": 16, "messages": user("raw")},
        headers={"x-api-key": CLIENT_KEY},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["content"] == [{"type": "text", "text": "echo: raw"}]
    sent = only_request(provider_upstream)
    assert header(sent, "anthropic-version") == ANTHROPIC_VERSION
    assert_upstream_auth(sent, NATIVE)


# --- 7. count_tokens (native) --------------------------------------------------------------


def test_count_tokens(aclient: anthropic.Anthropic, provider_upstream: Mock) -> None:
    system = "You are a terse assistant."
    messages = user("how many tokens is this?")
    counted = aclient.messages.count_tokens(model=NATIVE, system=system, messages=messages, tools=TOOLS)
    assert counted.input_tokens > 0
    sent = only_request(provider_upstream)
    assert sent["path"] == "/v1/messages/count_tokens"
    assert sent["body"] == {"model": NATIVE, "system": system, "messages": messages, "tools": TOOLS}
    assert_upstream_auth(sent, NATIVE)
    assert header(sent, "anthropic-version") == sdk_version(aclient)


# --- 8. images -----------------------------------------------------------------------------


@pytest.mark.parametrize("group", GROUPS, ids=GROUP_IDS)
def test_image_block(aclient: anthropic.Anthropic, provider_upstream: Mock, group: str) -> None:
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_1X1}},
    ]
    messages = [{"role": "user", "content": content}]
    msg = aclient.messages.create(model=group, max_tokens=1024, messages=messages)
    assert text_of(msg) == "echo: what is this[image]"
    body = only_request(provider_upstream)["body"]
    if group == NATIVE:
        assert body["messages"] == messages
    elif group == VIA_OPENAI:
        parts = body["messages"][-1]["content"]
        assert {"type": "text", "text": "what is this"} in parts
        images = [p for p in parts if p["type"] == "image_url"]
        assert len(images) == 1 and images[0]["image_url"]["url"] == PNG_DATA_URL
    else:
        assert PNG_1X1 in json.dumps(body["contents"])


# --- an OpenClaw-like request (native) -------------------------------------------------------


def test_openclaw_sized_request(aclient: anthropic.Anthropic, provider_upstream: Mock) -> None:
    system_text = big_system_prompt(50_000)
    assert len(system_text.encode()) >= 50_000
    tools = anthropic_tools()
    assert len(tools) == 14
    tools[-1]["cache_control"] = {"type": "ephemeral"}
    system = [
        {"type": "text", "text": system_text, "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": f"Session {uuid.uuid4()}"},
    ]
    params: dict[str, Any] = dict(
        model=NATIVE,
        max_tokens=64000,
        system=system,
        tools=tools,
        tool_choice={"type": "auto"},
        thinking={"type": "enabled", "budget_tokens": 2048},
        metadata={"user_id": "openclaw-session-1"},
        messages=[
            {"role": "user", "content": "[Telegram user] earlier question"},
            {"role": "assistant", "content": "earlier answer"},
            {"role": "user", "content": [{"type": "text", "text": "[Telegram user] hi there, what can you do?"}]},
        ],
    )
    with aclient.messages.stream(**params, extra_headers={"anthropic-beta": BETA}) as stream:
        assert stream.response.status_code == 200
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: [Telegram user] hi there, what can you do?"
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.stop_reason == "end_turn"
    u = final.usage
    prompt = u.input_tokens + (u.cache_creation_input_tokens or 0) + (u.cache_read_input_tokens or 0)
    assert prompt > 12_000, f"usage should reflect the ~50 KB prompt: {u}"

    sent = only_request(provider_upstream)
    assert sent["path"] == "/v1/messages"
    assert_upstream_auth(sent, NATIVE)
    assert header(sent, "anthropic-beta") == BETA
    body = sent["body"]
    assert body["model"] == NATIVE
    assert body["system"][0]["text"] == system_text
    assert canonical(without(body, "model")) == canonical({**without(params, "model"), "stream": True})

