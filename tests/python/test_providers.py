"""Every provider plugin (Anthropic, Gemini, Bedrock, Azure OpenAI) through both official SDKs:
the `openai` SDK on `/v1/chat/completions` and the `anthropic` SDK on `/v1/messages`. Plain and
streamed answers, tool calls, and an upstream 429 that keeps its status.

The upstream is `provider_mock`, which refuses requests without `PROVIDER_UPSTREAM_KEY` in the
provider's own authentication (`x-api-key`, `x-goog-api-key`, SigV4 access key id, `api-key`).
The groups are `PROVIDER_GROUPS` of `conftest.py`.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import anthropic
import openai
import pytest

from conftest import AZURE_API_VERSION, CLIENT_KEY, PROVIDER_UPSTREAM_KEY, Gateway, Mock, header
from helpers import MOCK_TOOL_ARGUMENTS, collect

#: Providers whose groups are `prov-<provider>` (and `prov-<provider>-429`).
OPENAI_SDK_PROVIDERS = ["anthropic", "gemini", "bedrock", "azure"]
#: Providers the Anthropic SDK is driven against here (native Anthropic, OpenAI and Gemini are
#: covered by `test_anthropic.py`).
ANTHROPIC_SDK_PROVIDERS = ["bedrock", "azure"]

#: Two tools, the first of which the mock calls when the user text contains "use tool".
OPENAI_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    },
]
ANTHROPIC_TOOLS: list[dict[str, Any]] = [
    {"name": f["name"], "description": f["description"], "input_schema": f["parameters"]}
    for f in (t["function"] for t in OPENAI_TOOLS)
]

BEDROCK_MODEL_PATH = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0"

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


def group(provider: str) -> str:
    return f"prov-{provider}"


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def upstream_path(provider: str, stream: bool) -> str:
    if provider == "anthropic":
        return "/v1/messages"
    if provider == "gemini":
        return f"/v1beta/models/gemini-2.5-flash:{'streamGenerateContent' if stream else 'generateContent'}"
    if provider == "bedrock":
        return f"{BEDROCK_MODEL_PATH}/{'converse-stream' if stream else 'converse'}"
    return "/openai/deployments/my-gpt4o-deployment/chat/completions"


def only_request(mock: Mock) -> dict[str, Any]:
    reqs = mock.requests()
    assert len(reqs) == 1, f"expected exactly one upstream request, got {len(reqs)}: {reqs}"
    return reqs[0]


def assert_reached(mock: Mock, provider: str, stream: bool) -> dict[str, Any]:
    """Exactly one upstream request, to the provider's path, with the deployment's credentials
    in the provider's way and never the client's key."""
    sent = only_request(mock)
    assert sent["method"] == "POST"
    assert sent["path"] == upstream_path(provider, stream), sent["path"]
    assert CLIENT_KEY not in json.dumps(sent["headers"]), "the client's key leaked upstream"
    assert CLIENT_KEY not in (sent["query"] or "")
    if provider == "anthropic":
        assert header(sent, "x-api-key") == PROVIDER_UPSTREAM_KEY
    elif provider == "gemini":
        assert header(sent, "x-goog-api-key") == PROVIDER_UPSTREAM_KEY
    elif provider == "bedrock":
        auth = header(sent, "authorization") or ""
        assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={PROVIDER_UPSTREAM_KEY}/"), auth
        assert "/us-east-1/bedrock/aws4_request" in auth, auth
    else:
        assert header(sent, "api-key") == PROVIDER_UPSTREAM_KEY
        assert sent["query"] == f"api-version={AZURE_API_VERSION}"
    return sent


@pytest.fixture
def oclient(gateway: Gateway) -> Iterator[openai.OpenAI]:
    c = gateway.client()
    yield c
    c.close()


@pytest.fixture
def aclient(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    c = gateway.anthropic_client()
    yield c
    c.close()


# --- the openai SDK on /v1/chat/completions -----------------------------------------------


@pytest.mark.parametrize("provider", OPENAI_SDK_PROVIDERS)
def test_openai_sdk_chat(oclient: openai.OpenAI, provider_upstream: Mock, provider: str) -> None:
    text = "hello from the openai sdk"
    resp = oclient.chat.completions.create(model=group(provider), messages=user(text), max_tokens=100)
    assert resp.object == "chat.completion"
    assert len(resp.choices) == 1
    msg = resp.choices[0].message
    assert msg.role == "assistant"
    assert msg.content == f"echo: {text}"
    assert not msg.tool_calls
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens == 6  # "echo: hello from the openai sdk"
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert_reached(provider_upstream, provider, stream=False)


@pytest.mark.parametrize("provider", OPENAI_SDK_PROVIDERS)
def test_openai_sdk_stream(oclient: openai.OpenAI, provider_upstream: Mock, provider: str) -> None:
    text = "the quick  brown fox\tjumps over"
    params: dict[str, Any] = dict(model=group(provider), messages=user(text), max_tokens=100)
    plain = oclient.chat.completions.create(**params)
    assert plain.choices[0].message.content == f"echo: {text}"
    provider_upstream.clear()

    got = collect(oclient.chat.completions.create(**params, stream=True, stream_options={"include_usage": True}))
    assert got.content == plain.choices[0].message.content
    assert sum(1 for ch in got.chunks if ch.choices and ch.choices[0].delta.content) > 1, (
        "the text should arrive in several deltas"
    )
    assert got.finish_reason == "stop"
    assert got.tool_calls == {}
    assert got.usage_chunks == 1
    last = got.chunks[-1]
    assert last.usage is not None, f"the last chunk must carry usage: {last}"
    assert last.choices == []
    assert last.usage.completion_tokens == plain.usage.completion_tokens
    assert last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    for ch in got.chunks:
        if provider == "azure" and getattr(ch, "prompt_filter_results", None) is not None:
            # Azure's prompt-filter annotation, passed through as Azure sends it.
            assert ch.choices == [] and ch.usage is None, ch
            continue
        assert ch.object == "chat.completion.chunk", ch
    assert_reached(provider_upstream, provider, stream=True)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("provider", OPENAI_SDK_PROVIDERS)
def test_openai_sdk_tool_call(oclient: openai.OpenAI, provider_upstream: Mock, provider: str, stream: bool) -> None:
    params: dict[str, Any] = dict(model=group(provider), messages=user("please use tool"), tools=OPENAI_TOOLS)
    if stream:
        got = collect(oclient.chat.completions.create(**params, stream=True))
        assert got.finish_reason == "tool_calls"
        assert list(got.tool_calls) == [0], got.tool_calls
        call = got.tool_calls[0]
        call_id, name, arguments = call["id"], call["name"], call["arguments"]
    else:
        resp = oclient.chat.completions.create(**params)
        choice = resp.choices[0]
        assert choice.finish_reason == "tool_calls"
        calls = choice.message.tool_calls
        assert calls is not None and len(calls) == 1, choice.message
        assert calls[0].type == "function"
        call_id, name, arguments = calls[0].id, calls[0].function.name, calls[0].function.arguments
    assert call_id
    assert name == "get_weather"
    assert arguments == MOCK_TOOL_ARGUMENTS

    sent = assert_reached(provider_upstream, provider, stream)
    body = json.dumps(sent["body"])
    assert "get_weather" in body and "search" in body, "both tools should reach the upstream"


@pytest.mark.parametrize("provider", OPENAI_SDK_PROVIDERS)
def test_openai_sdk_upstream_429(oclient: openai.OpenAI, provider_upstream: Mock, provider: str) -> None:
    with pytest.raises(openai.RateLimitError) as ei:
        oclient.chat.completions.create(model=f"{group(provider)}-429", messages=user("too many"))
    assert ei.value.status_code == 429
    assert provider_upstream.requests(), "the request should have reached the upstream"


# --- the anthropic SDK on /v1/messages ----------------------------------------------------


def text_of(msg: Any) -> str:
    return "".join(b.text for b in msg.content if b.type == "text")


@pytest.mark.parametrize("provider", ANTHROPIC_SDK_PROVIDERS)
def test_anthropic_sdk_messages(aclient: anthropic.Anthropic, provider_upstream: Mock, provider: str) -> None:
    msg = aclient.messages.create(
        model=group(provider), max_tokens=100, system="be brief", messages=user("hello from the anthropic sdk")
    )
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert msg.id
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "echo: hello from the anthropic sdk"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0
    assert msg.usage.output_tokens == 6
    assert_reached(provider_upstream, provider, stream=False)


@pytest.mark.parametrize("provider", ANTHROPIC_SDK_PROVIDERS)
def test_anthropic_sdk_stream(aclient: anthropic.Anthropic, provider_upstream: Mock, provider: str) -> None:
    params: dict[str, Any] = dict(model=group(provider), max_tokens=100, messages=user("the quick  brown fox"))
    plain = aclient.messages.create(**params)
    assert text_of(plain) == "echo: the quick  brown fox"
    provider_upstream.clear()

    with aclient.messages.stream(**params) as stream:
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
    assert_reached(provider_upstream, provider, stream=True)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("provider", ANTHROPIC_SDK_PROVIDERS)
def test_anthropic_sdk_tool_use(
    aclient: anthropic.Anthropic, provider_upstream: Mock, provider: str, stream: bool
) -> None:
    params: dict[str, Any] = dict(
        model=group(provider), max_tokens=100, tools=ANTHROPIC_TOOLS, messages=user("please use tool")
    )
    if stream:
        with aclient.messages.stream(**params) as s:
            msg = s.get_final_message()
    else:
        msg = aclient.messages.create(**params)
    assert msg.stop_reason == "tool_use"
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert len(uses) == 1, msg.content
    assert uses[0].id
    assert uses[0].name == "get_weather"
    assert uses[0].input == {"q": "mock"}

    sent = assert_reached(provider_upstream, provider, stream)
    body = json.dumps(sent["body"])
    assert "get_weather" in body and "search" in body, "both tools should reach the upstream"
