"""Gateways with their own setup: upstream keys, `--model` quick start, shutdown."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any, Iterator

import openai
import pytest

from conftest import CLIENT_KEY, Gateway, Mock, deployment, header, start_gateway, start_mock
from helpers import collect

UPSTREAM_SECRET = "sk-upstream"


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# --- upstream authentication --------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_mock(logs_dir: Path) -> Iterator[Mock]:
    m = start_mock(logs_dir, "mock-keyed", "--require-key", UPSTREAM_SECRET)
    yield m
    m.proc.stop()


@pytest.fixture(scope="module")
def keyed_gateway(logs_dir: Path, keyed_mock: Mock) -> Iterator[Gateway]:
    config = {
        "model_list": [
            deployment("good-key", "mock-gpt", keyed_mock.v1, api_key="os.environ/MOCK_KEY"),
            deployment("wrong-key", "mock-gpt", keyed_mock.v1, api_key="sk-wrong-key-123456"),
            deployment("no-key", "mock-gpt", keyed_mock.v1, api_key=None),
        ],
        "llmgate": {"shutdown_grace_seconds": 2},
    }
    gw = start_gateway(logs_dir, "gateway-keyed", config, env={"MOCK_KEY": UPSTREAM_SECRET})
    yield gw
    gw.proc.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_key_from_environment(keyed_gateway: Gateway, keyed_mock: Mock, stream: bool) -> None:
    keyed_mock.clear()
    with keyed_gateway.client() as c:
        if stream:
            content = collect(c.chat.completions.create(model="good-key", messages=user("auth"), stream=True)).content
        else:
            content = c.chat.completions.create(model="good-key", messages=user("auth")).choices[0].message.content
    assert content == "echo: auth"
    sent = keyed_mock.only_chat_request()
    assert header(sent, "authorization") == f"Bearer {UPSTREAM_SECRET}"


@pytest.mark.parametrize("model", ["wrong-key", "no-key"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_rejects_key(keyed_gateway: Gateway, keyed_mock: Mock, model: str, stream: bool) -> None:
    keyed_mock.clear()
    with keyed_gateway.client() as c:
        with pytest.raises(openai.AuthenticationError) as ei:
            c.chat.completions.create(model=model, messages=user("auth"), stream=stream)
        assert ei.value.status_code == 401
        assert ei.value.code == "invalid_api_key"
        assert UPSTREAM_SECRET not in str(ei.value.body)
        # The failure is per deployment: the good one still works.
        ok = c.chat.completions.create(model="good-key", messages=user("after"))
        assert ok.choices[0].message.content == "echo: after"
    for r in keyed_mock.chat_requests():
        assert CLIENT_KEY not in (header(r, "authorization") or "")


# --- quick start --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_gateway(logs_dir: Path, mock_server: Mock) -> Iterator[Gateway]:
    gw = start_gateway(
        logs_dir,
        "gateway-quick",
        args=["--model", "openai/mock-gpt", "--api_base", mock_server.v1],
        env={"OPENAI_API_KEY": "sk-from-env"},
    )
    yield gw
    gw.proc.stop()


@pytest.mark.parametrize("model", ["openai/mock-gpt", "gpt-4o", "claude-3-5-sonnet", "anything/at-all"])
@pytest.mark.parametrize("v1", [True, False], ids=["v1", "root"])
def test_quick_start_answers_any_model(quick_gateway: Gateway, upstream: Mock, model: str, v1: bool) -> None:
    with quick_gateway.client(v1=v1) as c:
        resp = c.chat.completions.create(model=model, messages=user("quick"))
        assert resp.choices[0].message.content == "echo: quick"
        got = collect(
            c.chat.completions.create(
                model=model, messages=user("quick"), stream=True, stream_options={"include_usage": True}
            )
        )
        assert got.content == "echo: quick"
        assert got.usage is not None
    reqs = upstream.chat_requests()
    assert len(reqs) == 2
    for r in reqs:
        assert r["body"]["model"] == "mock-gpt"
        assert header(r, "authorization") == "Bearer sk-from-env"


def test_quick_start_models_list(quick_gateway: Gateway) -> None:
    with quick_gateway.client() as c:
        assert [m.id for m in c.models.list()] == ["openai/mock-gpt"]


# --- shutdown -----------------------------------------------------------------------------


def test_sigterm_stops_cleanly(logs_dir: Path, mock_server: Mock) -> None:
    gw = start_gateway(
        logs_dir,
        "gateway-shutdown",
        # A grace far longer than the wait below: with nothing in flight the gateway must exit
        # at once, not wait the grace out. The wait is generous (60 s), so only a gateway that
        # waits for the grace (or never stops) fails, never a slow machine.
        {
            "model_list": [deployment("gpt-4o", "mock-gpt", mock_server.v1)],
            "llmgate": {"shutdown_grace_seconds": 600},
        },
    )
    try:
        with gw.client() as c:
            assert c.chat.completions.create(model="gpt-4o", messages=user("bye")).choices[0].message.content
        gw.proc.popen.send_signal(signal.SIGTERM)
        rc = gw.proc.popen.wait(timeout=60)
        assert rc == 0, f"exit status {rc}"
    except subprocess.TimeoutExpired:
        pytest.fail("the gateway did not exit within 60s of SIGTERM though nothing was in flight")
    finally:
        gw.proc.stop()


def test_sigterm_lets_stream_in_flight_finish(logs_dir: Path, mock_server: Mock) -> None:
    gw = start_gateway(
        logs_dir,
        "gateway-drain",
        {
            "model_list": [deployment("slow", "mock-slow-1000", mock_server.v1)],
            "llmgate": {"shutdown_grace_seconds": 10},
        },
    )
    try:
        with gw.client() as c:
            with c.chat.completions.with_streaming_response.create(
                model="slow", messages=user("drain me"), stream=True
            ) as resp:
                # Headers are in; the first chunk is ~1 s away.
                gw.proc.popen.send_signal(signal.SIGTERM)
                got = collect(resp.parse())
        assert got.content == "echo: drain me"
        assert gw.proc.popen.wait(timeout=15) == 0
    finally:
        gw.proc.stop()
