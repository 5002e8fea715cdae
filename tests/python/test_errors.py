"""Errors keep their meaning through the gateway and the SDK; broken upstreams do not hang it."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from conftest import MAX_REQUEST_BODY_BYTES, Gateway, Mock
from helpers import agent_tools, collect


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def assert_gateway_still_serves(c: openai.OpenAI) -> None:
    resp = c.chat.completions.create(model="gpt-4o", messages=user("still alive?"))
    assert resp.choices[0].message.content == "echo: still alive?"


# --- upstream errors ----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_rate_limit(client: openai.OpenAI, upstream: Mock, stream: bool) -> None:
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model="rate-limited", messages=user("hi"), stream=stream)
    e = ei.value
    assert e.status_code == 429
    assert e.code == "rate_limit_exceeded"
    assert "429" in e.message
    assert e.response.headers.get("retry-after") == "1"
    assert upstream.chat_requests(), "the upstream was not called"
    assert all(r["body"]["model"] == "mock-error-429" for r in upstream.chat_requests())


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_server_error(client: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model="server-error", messages=user("hi"), stream=stream)
    assert ei.value.status_code == 500
    assert "500" in ei.value.message


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_context_length(client: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="context-error", messages=user("hi"), stream=stream)
    e = ei.value
    assert e.status_code == 400
    assert e.code == "context_length_exceeded"
    assert "maximum context length" in e.message


def test_unknown_model(client: openai.OpenAI, upstream: Mock) -> None:
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="no-such-model", messages=user("hi"))
    assert ei.value.status_code == 404
    assert "no-such-model" in ei.value.message
    assert upstream.chat_requests() == [], "an unknown model must not reach any upstream"


def test_empty_messages_refused_by_gateway(client_v1: openai.OpenAI, upstream: Mock) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        client_v1.chat.completions.create(model="gpt-4o", messages=[])
    assert ei.value.status_code == 400
    assert upstream.chat_requests() == []


def test_body_over_limit(client_v1: openai.OpenAI, upstream: Mock) -> None:
    big = "x" * (MAX_REQUEST_BODY_BYTES + 1024)
    with pytest.raises(openai.APIStatusError) as ei:
        client_v1.chat.completions.create(model="gpt-4o", messages=user(big))
    assert ei.value.status_code == 413
    assert upstream.chat_requests() == []
    assert_gateway_still_serves(client_v1)


def test_upstream_unreachable(client: openai.OpenAI) -> None:
    # A 502, not the client's own timeout (which raises APITimeoutError, not a status error).
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model="unreachable", messages=user("hi"), timeout=60)
    assert ei.value.status_code == 502
    assert_gateway_still_serves(client)


def test_upstream_unreachable_stream(client_v1: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as ei:
        client_v1.chat.completions.create(model="unreachable", messages=user("hi"), stream=True)
    assert ei.value.status_code == 502
    assert_gateway_still_serves(client_v1)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_timeout(client_v1: openai.OpenAI, stream: bool) -> None:
    # The `hanging` deployment has `timeout: 1`; its upstream never answers (for an hour), so a
    # 504 is that timeout firing. The client waits a generous 60 s (its own timeout raises
    # APITimeoutError, not a status error); only the lower bound is checked: the gateway waited
    # the deployment's timeout out. How soon after it answered is not asserted.
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as ei:
        client_v1.chat.completions.create(model="hanging", messages=user("hi"), stream=stream, timeout=60)
    elapsed = time.monotonic() - started
    assert ei.value.status_code == 504
    assert elapsed >= 0.9, f"answered after {elapsed:.1f}s; the deployment timeout is 1s"
    assert_gateway_still_serves(client_v1)


def test_malformed_upstream_body(client_v1: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as ei:
        client_v1.chat.completions.create(model="malformed", messages=user("hi"))
    assert ei.value.status_code == 502
    assert_gateway_still_serves(client_v1)


# --- breaks inside a stream ---------------------------------------------------------------


def test_midstream_disconnect_in_tool_call(client_v1: openai.OpenAI) -> None:
    stream = client_v1.chat.completions.create(
        model="disconnecting",
        messages=user("please use tool"),
        tools=agent_tools()[:2],
        stream=True,
        timeout=15,
    )
    seen: list[Any] = []
    with pytest.raises(openai.APIError) as ei:
        for chunk in stream:
            seen.append(chunk)
    assert not isinstance(ei.value, openai.APIConnectionError)
    partial = collect(seen).tool_calls[0]["arguments"]
    assert partial and partial != '{"q":"mock"}'
    assert_gateway_still_serves(client_v1)


def test_midstream_disconnect_raises(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="disconnecting", messages=user("one two three four five"), stream=True, timeout=60
    )
    seen: list[Any] = []
    with pytest.raises(openai.APIError) as ei:
        for chunk in stream:
            seen.append(chunk)
    e = ei.value
    assert not isinstance(e, openai.APIConnectionError), f"the stream timed out or broke instead: {e!r}"
    assert e.message, "the error event should say what happened"
    content = collect(seen).content
    assert content and "echo: one two three four five".startswith(content), content
    assert content != "echo: one two three four five"
    assert_gateway_still_serves(client)


def test_malformed_stream_event_raises(client_v1: openai.OpenAI) -> None:
    """The upstream sends one good chunk, then `data: {not json}`, then `[DONE]`. The client
    should see an API error (like any other break of an upstream stream), not a raw
    JSON-decoding failure."""
    stream = client_v1.chat.completions.create(model="malformed", messages=user("hi"), stream=True, timeout=15)
    with pytest.raises(openai.APIError) as ei:
        for _ in stream:
            pass
    assert not isinstance(ei.value, openai.APIConnectionError)
    assert_gateway_still_serves(client_v1)


def test_gateway_survives_client_abort(gateway: Gateway) -> None:
    """A client that goes away mid-stream does not disturb the next requests."""
    with gateway.client() as c:
        for _ in range(3):
            stream = c.chat.completions.create(model="slow-model", messages=user("a b c d e f"), stream=True)
            next(iter(stream))
            stream.close()
        assert_gateway_still_serves(c)
