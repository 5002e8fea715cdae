"""Virtual keys and budgets through the official OpenAI and Anthropic SDKs: a key generated with
`POST /key/generate` (LiteLLM's route) is used as the SDK's `api_key`; its spend shows up in
`/key/info` and `/spend/logs`; an unknown key and an exhausted budget raise the SDKs' own
exception types.

The gateway of this module has a master key and explicit prices that are powers of two, so
every cost is exact in floating point and compared with `==`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx
import openai
import pytest

from conftest import (
    PROVIDER_UPSTREAM_KEY,
    Gateway,
    Mock,
    deployment,
    start_gateway,
)

MASTER = "sk-master-python-keys"
#: USD per input / output token (2^-10, 2^-9).
IN = 2.0**-10
OUT = 2.0**-9
#: OpenAI-compatible group (upstream `mock-gpt` on the session mock).
PRICED = "priced"
#: Native Anthropic group (on the keyed provider mock).
CLAUDE = "claude-priced"
#: Anthropic clients on an OpenAI-compatible upstream (translated).
CLAUDE_VIA_OPENAI = "claude-via-openai-priced"

PRICES = {"input_cost_per_token": IN, "output_cost_per_token": OUT}

# The SDK warns about dated model names.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def keyed_gateway(logs_dir: Path, mock_server: Mock, provider_mock: Mock) -> Iterator[Gateway]:
    config: dict[str, Any] = {
        "model_list": [
            deployment(PRICED, "mock-gpt", mock_server.v1, **PRICES),
            deployment(CLAUDE_VIA_OPENAI, "mock-gpt", mock_server.v1, **PRICES),
            {
                "model_name": CLAUDE,
                "litellm_params": {
                    "model": "anthropic/claude-sonnet-4-20250514",
                    "api_base": provider_mock.url,
                    "api_key": PROVIDER_UPSTREAM_KEY,
                    **PRICES,
                },
            },
        ],
        "general_settings": {"master_key": MASTER},
        # The routing policy the plugins folder has (the default may be another one).
        "llmgate": {"shutdown_grace_seconds": 2, "routing": {"default_policy": "ordered"}},
    }
    gw = start_gateway(logs_dir, "gateway-keys", config)
    yield gw
    gw.proc.stop()


@pytest.fixture(scope="module")
def admin(keyed_gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=keyed_gateway.url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=30
    ) as c:
        yield c


def generate(admin: httpx.Client, **fields: Any) -> str:
    r = admin.post("/key/generate", json=fields)
    assert r.status_code == 200, r.text
    key = r.json()["key"]
    assert key.startswith("sk-")
    return key


def key_info(admin: httpx.Client, key: str) -> dict[str, Any]:
    r = admin.get("/key/info", params={"key": key})
    assert r.status_code == 200, r.text
    return r.json()["info"]


def spend_rows(admin: httpx.Client, key: str) -> list[dict[str, Any]]:
    r = admin.get("/spend/logs", params={"api_key": key})
    assert r.status_code == 200, r.text
    return r.json()


def cost(prompt: int, completion: int) -> float:
    return prompt * IN + completion * OUT


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_openai_sdk_with_a_generated_key_sync_and_streaming(
    keyed_gateway: Gateway, admin: httpx.Client
) -> None:
    key = generate(admin, key_alias="python-openai", max_budget=10.0)
    with keyed_gateway.client(api_key=key) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=PRICED, messages=[{"role": "user", "content": "hello from the sdk"}], max_tokens=16
        )
        completion = raw.parse()
        assert completion.choices[0].message.content == "echo: hello from the sdk"
        assert completion.usage is not None
        c1 = cost(completion.usage.prompt_tokens, completion.usage.completion_tokens)
        assert float(raw.headers["x-litellm-response-cost"]) == c1
        assert float(raw.headers["x-litellm-key-spend"]) == c1
        assert raw.headers["x-litellm-call-id"]

        chunks = list(
            client.chat.completions.create(
                model=PRICED,
                messages=[{"role": "user", "content": "stream it please"}],
                max_tokens=16,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "echo: stream it please"
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens > 0
        c2 = cost(usage.prompt_tokens, usage.completion_tokens)

    info = key_info(admin, key)
    assert info["spend"] == c1 + c2
    assert info["key_alias"] == "python-openai"
    rows = spend_rows(admin, key)
    assert len(rows) == 2, rows
    assert {r["status"] for r in rows} == {"success"}
    assert {r["api_key"] for r in rows} == {sha256(key)}
    assert sorted(r["spend"] for r in rows) == sorted([c1, c2])
    assert sum(r["spend"] for r in rows) == info["spend"]
    assert {r["model_group"] for r in rows} == {PRICED}
    # A key reads its own info.
    r = httpx.get(f"{keyed_gateway.url}/key/info", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["info"]["spend"] == c1 + c2


def test_invalid_or_missing_key_raises_authentication_error(keyed_gateway: Gateway) -> None:
    with keyed_gateway.client(api_key="sk-not-a-generated-key") as client:
        with pytest.raises(openai.AuthenticationError) as e:
            client.chat.completions.create(model=PRICED, messages=[{"role": "user", "content": "x"}])
        assert e.value.status_code == 401
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    with keyed_gateway.anthropic_client(api_key="sk-not-a-generated-key") as ac:
        with pytest.raises(anthropic.AuthenticationError) as ae:
            ac.messages.create(model=CLAUDE, max_tokens=16, messages=[{"role": "user", "content": "x"}])
        assert ae.value.status_code == 401
        assert ae.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_virtual_key_cannot_use_admin_routes(keyed_gateway: Gateway, admin: httpx.Client) -> None:
    key = generate(admin)
    r = httpx.post(
        f"{keyed_gateway.url}/key/generate", headers={"Authorization": f"Bearer {key}"}, json={}, timeout=30
    )
    assert r.status_code == 403, r.text
    r = httpx.get(f"{keyed_gateway.url}/spend/logs", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 403, r.text


def test_budget_exceeded_raises_bad_request_error(keyed_gateway: Gateway, admin: httpx.Client) -> None:
    # A budget smaller than one request: the first is admitted, then the budget is spent.
    key = generate(admin, max_budget=2.0**-12)
    with keyed_gateway.client(api_key=key) as client:
        first = client.chat.completions.create(
            model=PRICED, messages=[{"role": "user", "content": "spend it"}], max_tokens=16
        )
        assert first.usage is not None
        spent = cost(first.usage.prompt_tokens, first.usage.completion_tokens)
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(
                model=PRICED, messages=[{"role": "user", "content": "again"}], max_tokens=16
            )
        assert e.value.status_code == 400
        assert e.value.code == "budget_exceeded"
        assert e.value.type == "budget_exceeded"
        assert "Budget has been exceeded" in e.value.message
        assert f"Current cost: {spent}" in e.value.message or f"Current cost: {spent:g}" in e.value.message
        # Streams are refused before they start, with the same error.
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(
                model=PRICED, messages=[{"role": "user", "content": "again"}], max_tokens=16, stream=True
            )
        assert e.value.code == "budget_exceeded"
    # The refused requests cost nothing.
    assert key_info(admin, key)["spend"] == spent
    assert len(spend_rows(admin, key)) == 1


def test_anthropic_sdk_with_a_generated_key(keyed_gateway: Gateway, admin: httpx.Client) -> None:
    key = generate(admin, key_alias="python-anthropic", max_budget=10.0)
    total = 0.0
    with keyed_gateway.anthropic_client(api_key=key) as ac:
        for model in (CLAUDE, CLAUDE_VIA_OPENAI):
            raw = ac.messages.with_raw_response.create(
                model=model, max_tokens=16, messages=[{"role": "user", "content": "hello claude"}]
            )
            msg = raw.parse()
            assert msg.type == "message"
            text = "".join(b.text for b in msg.content if b.type == "text")
            assert text == "echo: hello claude", model
            c = cost(msg.usage.input_tokens, msg.usage.output_tokens)
            assert float(raw.headers["x-litellm-response-cost"]) == c, model
            total += c
        # Streamed.
        with ac.messages.stream(
            model=CLAUDE, max_tokens=16, messages=[{"role": "user", "content": "stream claude"}]
        ) as s:
            final = s.get_final_message()
        assert "".join(b.text for b in final.content if b.type == "text") == "echo: stream claude"
        total += cost(final.usage.input_tokens, final.usage.output_tokens)
    assert key_info(admin, key)["spend"] == total
    rows = spend_rows(admin, key)
    assert len(rows) == 3, rows
    assert {r["call_type"] for r in rows} == {"anthropic_messages"}
    assert sum(r["spend"] for r in rows) == total


def test_anthropic_sdk_over_budget_raises_bad_request_error(
    keyed_gateway: Gateway, admin: httpx.Client
) -> None:
    key = generate(admin, max_budget=2.0**-12)
    with keyed_gateway.anthropic_client(api_key=key) as ac:
        ac.messages.create(model=CLAUDE, max_tokens=16, messages=[{"role": "user", "content": "spend"}])
        with pytest.raises(anthropic.BadRequestError) as e:
            ac.messages.create(model=CLAUDE, max_tokens=16, messages=[{"role": "user", "content": "again"}])
        assert e.value.status_code == 400
        body = e.value.body
        assert isinstance(body, dict) and body["type"] == "error", body
        assert body["error"]["type"] == "invalid_request_error"
        assert "Budget has been exceeded" in body["error"]["message"]
        # Translated groups are refused the same way (the budget is the key's).
        with pytest.raises(anthropic.BadRequestError):
            ac.messages.create(
                model=CLAUDE_VIA_OPENAI, max_tokens=16, messages=[{"role": "user", "content": "again"}]
            )
    # Raising the budget lets the key in again.
    r = admin.post("/key/update", json={"key": key, "max_budget": 10.0})
    assert r.status_code == 200, r.text
    with keyed_gateway.anthropic_client(api_key=key) as ac:
        msg = ac.messages.create(model=CLAUDE, max_tokens=16, messages=[{"role": "user", "content": "ok"}])
        assert msg.type == "message"
