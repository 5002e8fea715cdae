"""The async SDK client: concurrent streams through one gateway."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai

from conftest import Gateway, Mock
from helpers import collect

N = 20


async def _stream(c: openai.AsyncOpenAI, model: str, i: int) -> tuple[str, Any, str]:
    async with c.chat.completions.with_streaming_response.create(
        model=model,
        messages=[{"role": "user", "content": f"request number {i}"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as resp:
        call_id = resp.headers.get("x-litellm-call-id", "")
        chunks = [ch async for ch in await resp.parse()]
    got = collect(chunks)
    return got.content, got.usage, call_id


def _run_concurrently(gateway: Gateway, model: str, v1: bool = True) -> list[tuple[str, Any, str]]:
    async def main() -> list[tuple[str, Any, str]]:
        async with gateway.async_client(v1=v1) as c:
            return await asyncio.gather(*(_stream(c, model, i) for i in range(N)))

    return asyncio.run(main())


def test_concurrent_streams(gateway: Gateway, upstream: Mock) -> None:
    results = _run_concurrently(gateway, "gpt-4o")
    for i, (content, usage, _) in enumerate(results):
        assert content == f"echo: request number {i}"
        assert usage is not None and usage.completion_tokens == 4
    assert len({cid for _, _, cid in results}) == N, "call ids must be distinct"
    sent = upstream.chat_requests()
    assert len(sent) == N
    assert sorted(r["body"]["messages"][0]["content"] for r in sent) == sorted(
        f"request number {i}" for i in range(N)
    )


def test_concurrent_slow_streams_run_in_parallel(gateway: Gateway, upstream: Mock) -> None:
    # Each upstream stream waits 300 ms before its first chunk; every one is answered.
    results = _run_concurrently(gateway, "slow-model", v1=False)
    assert [c for c, _, _ in results] == [f"echo: request number {i}" for i in range(N)]

    # In parallel, shown by behaviour rather than by a stopwatch: N streams whose upstream
    # never answers must all reach the upstream at once. A gateway that served them one after
    # another would leave all but the first waiting; the deadline is generous (60 s), so only
    # that fails, never a slow machine.
    wanted = {f"parallel {i}" for i in range(N)}

    def at_upstream() -> set[str]:
        return {
            r["body"]["messages"][0]["content"]
            for r in upstream.chat_requests()
            if r["body"].get("model") == "mock-hang"
        }

    async def open_stream(c: openai.AsyncOpenAI, i: int) -> None:
        await c.chat.completions.create(
            model="hanging-long", messages=[{"role": "user", "content": f"parallel {i}"}], stream=True
        )

    async def main() -> set[str]:
        async with gateway.async_client(v1=False, timeout=120.0) as c:
            tasks = [asyncio.create_task(open_stream(c, i)) for i in range(N)]
            try:
                deadline = time.monotonic() + 60
                while not wanted <= (seen := await asyncio.to_thread(at_upstream)):
                    if time.monotonic() > deadline:
                        return seen
                    await asyncio.sleep(0.05)
                return seen
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    seen = asyncio.run(main())
    assert wanted <= seen, f"only {len(seen & wanted)} of {N} concurrent streams reached the upstream: {sorted(seen)}"


def test_concurrent_mixed_outcomes(gateway: Gateway) -> None:
    """Failing requests next to good ones: every request gets its own, right answer."""

    async def one(c: openai.AsyncOpenAI, i: int) -> str:
        model = ["gpt-4o", "rate-limited", "server-error", "disconnecting"][i % 4]
        try:
            stream = await c.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"m{i}"}], stream=True
            )
            text = ""
            async for ch in stream:
                for choice in ch.choices:
                    text += choice.delta.content or ""
            return text
        except openai.APIStatusError as e:
            return f"status {e.status_code}"
        except openai.APIConnectionError as e:
            return f"connection error {e!r}"
        except openai.APIError:
            return "stream error"

    async def main() -> list[str]:
        async with gateway.async_client() as c:
            return await asyncio.gather(*(one(c, i) for i in range(N)))

    results = asyncio.run(main())
    expected = ["echo: m{i}", "status 429", "status 500", "stream error"]
    for i, r in enumerate(results):
        assert r == expected[i % 4].format(i=i), f"request {i}: {r}"
