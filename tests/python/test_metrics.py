"""Prometheus `/metrics` with LiteLLM's metric names and labels, read by the official Python
Prometheus client's text-format parser (`prometheus_client.parser`), as a scrape would.

The gateway of this module turns metrics on the LiteLLM way (`litellm_settings.callbacks:
["prometheus"]`, `require_auth_for_metrics_endpoint: true`); requests go through the
official OpenAI SDK with a virtual key; each test scrapes before and after and checks that
the series moved by exactly what was served (prices are powers of two, so costs compare
with `==`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import UPSTREAM_KEY, Gateway, Mock, deployment, start_gateway

MASTER = "sk-master-python-metrics"
IN = 2.0**-10
OUT = 2.0**-9
PRICES = {"input_cost_per_token": IN, "output_cost_per_token": OUT}
#: Answers.
PRICED = "priced"
#: Always answers 500; falls back to `PRICED`.
BROKEN = "broken"
#: Always answers 500; no fallback.
FAILING = "failing"


@pytest.fixture(scope="module")
def metrics_gateway(logs_dir: Path, mock_server: Mock) -> Iterator[Gateway]:
    config: dict[str, Any] = {
        "model_list": [
            deployment(PRICED, "mock-gpt", mock_server.v1, **PRICES),
            deployment(BROKEN, "mock-error-500", mock_server.v1, **PRICES),
            deployment(FAILING, "mock-error-500", mock_server.v1, **PRICES),
        ],
        "router_settings": {
            "fallbacks": [{BROKEN: [PRICED]}],
            "num_retries": 0,
            "allowed_fails": 0,
            "cooldown_time": 60,
        },
        "litellm_settings": {
            "callbacks": ["prometheus"],
            "require_auth_for_metrics_endpoint": True,
        },
        "general_settings": {"master_key": MASTER},
        "llmgate": {"shutdown_grace_seconds": 2},
    }
    gw = start_gateway(logs_dir, "gateway-metrics", config)
    yield gw
    gw.proc.stop()


@pytest.fixture(scope="module")
def admin(metrics_gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=metrics_gateway.url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=30
    ) as c:
        yield c


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(admin: httpx.Client) -> tuple[Samples, str]:
    r = admin.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, r.text


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def one(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    hits = [v for (n, ls), v in samples.items() if n == name and want <= ls]
    assert len(hits) == 1, f"{name} {labels}: {len(hits)} series"
    return hits[0]


def test_metrics_ask_for_the_master_key(metrics_gateway: Gateway) -> None:
    r = httpx.get(f"{metrics_gateway.url}/metrics", timeout=30)
    assert r.status_code == 401
    assert "error" in r.json()


def test_counters_move_as_requests_are_served(admin: httpx.Client, metrics_gateway: Gateway) -> None:
    r = admin.post(
        "/key/generate",
        json={"key_alias": "metrics-key", "max_budget": 1.0, "rpm_limit": 100, "tpm_limit": 100000},
    )
    assert r.status_code == 200, r.text
    key = r.json()["key"]
    hashed = hashlib.sha256(key.encode()).hexdigest()
    who = {"hashed_api_key": hashed, "api_key_alias": "metrics-key"}
    before, _ = scrape(admin)

    client = metrics_gateway.client(api_key=key)
    for _ in range(2):
        client.chat.completions.create(model=PRICED, messages=[{"role": "user", "content": "hi"}])
    stream = client.chat.completions.create(
        model=PRICED,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert any(c.choices and c.choices[0].delta.content for c in stream)
    # Falls back from BROKEN's 500 to PRICED.
    client.chat.completions.create(model=BROKEN, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=FAILING, messages=[{"role": "user", "content": "hi"}])

    after, text = scrape(admin)
    logs = admin.get("/spend/logs", params={"api_key": key}).json()
    assert len(logs) == 5, logs

    # Requests: by status, and the failures by exception class.
    name = "litellm_proxy_total_requests_metric_total"
    assert moved(before, after, name, requested_model=PRICED, status_code="200", **who) == 3
    assert moved(before, after, name, requested_model=BROKEN, status_code="200", **who) == 1
    assert moved(before, after, name, requested_model=FAILING, status_code="500", **who) == 1
    assert moved(before, after, name, route="/v1/chat/completions", **who) == 5
    failed = "litellm_proxy_failed_requests_metric_total"
    assert (
        moved(
            before,
            after,
            failed,
            requested_model=FAILING,
            exception_status="500",
            exception_class="InternalServerError",
            **who,
        )
        == 1
    )
    assert moved(before, after, failed, requested_model=PRICED, **who) == 0

    # Spend and tokens equal the spend logs'.
    spend = sum(row["spend"] for row in logs)
    assert spend > 0
    assert moved(before, after, "litellm_spend_metric_total", **who) == spend
    prompt = sum(row["prompt_tokens"] for row in logs)
    completion = sum(row["completion_tokens"] for row in logs)
    assert moved(before, after, "litellm_input_tokens_metric_total", **who) == prompt
    assert moved(before, after, "litellm_output_tokens_metric_total", **who) == completion
    assert moved(before, after, "litellm_total_tokens_metric_total", **who) == prompt + completion

    # Latencies: one observation per answered request; TTFT for the stream.
    for hist in ["litellm_request_total_latency_metric", "litellm_llm_api_latency_metric"]:
        assert moved(before, after, f"{hist}_count", **who) == 4, hist
        assert moved(before, after, f"{hist}_bucket", le="+Inf", **who) == 4, hist
    assert moved(before, after, "litellm_llm_api_time_to_first_token_metric_count", **who) == 1
    assert moved(before, after, "litellm_overhead_latency_metric_count", **who) == 4

    # Deployments: BROKEN's failed once (then fell back), PRICED's answered four times.
    ok = "litellm_deployment_success_responses_total"
    bad = "litellm_deployment_failure_responses_total"
    assert moved(before, after, ok, model_group=PRICED, **who) == 4
    assert moved(before, after, ok, model_group=BROKEN, **who) == 0
    assert (
        moved(before, after, bad, model_group=BROKEN, exception_status="500", **who) == 1
    )
    assert moved(before, after, "litellm_deployment_total_requests_total", **who) == 6
    assert (
        moved(
            before,
            after,
            "litellm_deployment_successful_fallbacks_total",
            requested_model=BROKEN,
            fallback_model=PRICED,
            exception_status="500",
            **who,
        )
        == 1
    )

    # Deployment state: the failing ones are cooling down (allowed_fails 0), PRICED is up.
    state = "litellm_deployment_state"
    assert one(after, state, litellm_model_name="openai/mock-gpt") == 0
    for model in ["openai/mock-error-500"]:
        assert total(after, state, litellm_model_name=model) == 4  # two deployments, state 2
    assert total(after, "litellm_deployment_cooled_down_total", exception_status="500") >= 2

    # The key's budget and limits.
    info = admin.get("/key/info", params={"key": key}).json()["info"]
    assert one(after, "litellm_api_key_max_budget_metric", **who) == 1.0
    assert one(after, "litellm_remaining_api_key_budget_metric", **who) == 1.0 - info["spend"]
    # What is left of the key's rpm after each model's last request (one series per model).
    left = [
        v
        for (n, ls), v in after.items()
        if n == "litellm_remaining_api_key_requests_for_model" and set(who.items()) <= ls
    ]
    assert left and all(0 <= v < 100 for v in left), left

    # llmgate's own.
    assert moved(before, after, "llmgate_plugin_calls_total") >= 5
    assert ("llmgate_store_queue_depth", frozenset()) in after
    assert total(after, "llmgate_event_loop_connections") >= 1
    assert total(after, "llmgate_plugin_pool_max_instances") > 0

    # No secret in the scrape.
    for secret in [key, MASTER, UPSTREAM_KEY]:
        assert secret not in text
