"""Fixtures for the end-to-end tests: the real `llmgate` binary, driven through the official
OpenAI and Anthropic Python SDKs, in front of the real `llmgate-mock` binary as its upstream.

Environment (paths relative to the repository root unless absolute):
- LLMGATE_BIN          the gateway binary  (default: $CARGO_TARGET_DIR or target, /release/llmgate)
- LLMGATE_MOCK_BIN     the mock upstream   (default: .../release/llmgate-mock)
- LLMGATE_PLUGINS_DIR  the built plugins   (default: plugins/dist)

Processes are started once per session where possible (one mock, one gateway whose config
covers every model group the tests need); their stderr goes to a log file whose new part is
attached to the report of any failing test.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import anthropic
import openai
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

#: How long a process may take to print its "listening on" line.
STARTUP_TIMEOUT_S = 60.0
#: How long a process may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 15.0
#: The key clients present to the gateway (the gateway does not check it; it must never
#: reach the upstream).
CLIENT_KEY = "sk-client-key-not-for-upstream"
#: The upstream key of the main gateway's deployments.
UPSTREAM_KEY = "sk-upstream-main"


def _path_from_env(var: str, default: str) -> Path:
    p = Path(os.environ.get(var) or default)
    return p if p.is_absolute() else REPO_ROOT / p


_TARGET = os.environ.get("CARGO_TARGET_DIR") or "target"
LLMGATE_BIN = _path_from_env("LLMGATE_BIN", f"{_TARGET}/release/llmgate")
LLMGATE_MOCK_BIN = _path_from_env("LLMGATE_MOCK_BIN", f"{_TARGET}/release/llmgate-mock")
LLMGATE_PLUGINS_DIR = _path_from_env("LLMGATE_PLUGINS_DIR", "plugins/dist")


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = []
    for what, path in [("LLMGATE_BIN", LLMGATE_BIN), ("LLMGATE_MOCK_BIN", LLMGATE_MOCK_BIN)]:
        if not (path.is_file() and os.access(path, os.X_OK)):
            missing.append(f"{what}: no executable at {path}")
    if not LLMGATE_PLUGINS_DIR.is_dir() or not any(LLMGATE_PLUGINS_DIR.glob("*.wasm")):
        missing.append(f"LLMGATE_PLUGINS_DIR: no *.wasm plugins in {LLMGATE_PLUGINS_DIR}")
    else:
        for plugin in REQUIRED_PLUGINS:
            if not (LLMGATE_PLUGINS_DIR / f"{plugin}.wasm").is_file():
                missing.append(f"LLMGATE_PLUGINS_DIR: no {plugin}.wasm in {LLMGATE_PLUGINS_DIR}")
    if missing:
        pytest.exit(
            "llmgate e2e tests need built binaries and plugins:\n  "
            + "\n  ".join(missing)
            + "\nBuild them with `cargo build --release -p llmgate -p llmgate-mock` and "
            "`scripts/build-plugins.sh`, or point the variables above at them.",
            returncode=4,
        )


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------

_PROCS: list["Proc"] = []


class Proc:
    """A child process that prints `... listening on http://HOST:PORT` on stdout when ready."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.url = ""
        self._stdout_lines: list[str] = []
        self._ready: "queue.Queue[str]" = queue.Queue()
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=REPO_ROOT,
        )
        _PROCS.append(self)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._wait_ready()

    def _read_stdout(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._stdout_lines.append(line)
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self._ready.put(m.group(1))

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                self.url = self._ready.get(timeout=0.1).rstrip("/")
                return
            except queue.Empty:
                pass
            rc = self.popen.poll()
            if rc is not None:
                time.sleep(0.2)  # let the reader thread and the log catch up
                raise RuntimeError(
                    f"{self.name} exited with status {rc} before listening.\n"
                    f"command: {' '.join(self.argv)}\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name} did not print its listening line within {STARTUP_TIMEOUT_S:.0f}s.\n"
                    f"command: {' '.join(self.argv)}\n{self.log_text()}"
                )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_text(self, since: int = 0, limit: int = 20_000) -> str:
        try:
            data = self.log_path.read_bytes()[since:]
        except OSError as e:
            return f"(cannot read {self.log_path}: {e})"
        text = data.decode("utf-8", "replace")
        if len(text) > limit:
            text = "...(cut)...\n" + text[-limit:]
        out = f"--- {self.name} stderr ({self.log_path}) ---\n{text}"
        if self._stdout_lines:
            out += f"--- {self.name} stdout ---\n" + "\n".join(self._stdout_lines) + "\n"
        return out

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL. Returns the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=STOP_TIMEOUT_S)
        self._log.close()
        return self.popen.returncode


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    item._llmgate_log_offsets = {id(p): p.log_size() for p in _PROCS}  # type: ignore[attr-defined]
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        offsets: dict[int, int] = getattr(item, "_llmgate_log_offsets", {})
        for p in _PROCS:
            started_during_test = id(p) not in offsets
            logged_during_test = p.log_size() > offsets.get(id(p), 0)
            if started_during_test or logged_during_test or p.popen.returncode not in (None, 0):
                rep.sections.append((f"{p.name} log", p.log_text(since=offsets.get(id(p), 0))))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: ours without provider keys, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and not k.endswith("_MASTER_KEY")
    }
    env.setdefault("RUST_BACKTRACE", "1")
    # Debug logs of the gateway itself (one line per request), shown for failing tests.
    env.setdefault("LLMGATE_LOG", "llmgate=debug,info")
    env.setdefault("NO_COLOR", "1")
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------
# The mock upstream
# --------------------------------------------------------------------------------------


class Mock:
    """A running `llmgate-mock`, with access to the requests it recorded."""

    def __init__(self, proc: Proc):
        self.proc = proc
        self.url = proc.url

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def requests(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/_mock/requests", timeout=10) as r:
            return json.load(r)

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests() if r["path"].endswith("/chat/completions")]

    def only_chat_request(self) -> dict[str, Any]:
        reqs = self.chat_requests()
        assert len(reqs) == 1, f"expected exactly one upstream request, got {len(reqs)}: {reqs}"
        return reqs[0]

    def clear(self) -> None:
        req = urllib.request.Request(f"{self.url}/_mock/requests", method="DELETE")
        with urllib.request.urlopen(req, timeout=10):
            pass


def header(recorded: dict[str, Any], name: str) -> str | None:
    """The first value of header `name` in a recorded upstream request."""
    for k, v in recorded["headers"]:
        if k == name.lower():
            return v
    return None


def start_mock(tmp: Path, name: str, *args: str) -> Mock:
    argv = [str(LLMGATE_MOCK_BIN), "--host", "127.0.0.1", "--port", "0", *args]
    return Mock(Proc(name, argv, tmp / f"{name}.log", env=base_env()))


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llmgate-e2e")


@pytest.fixture(scope="session")
def mock_server(logs_dir: Path) -> Iterator[Mock]:
    m = start_mock(logs_dir, "mock")
    yield m
    m.proc.stop()


@pytest.fixture
def upstream(mock_server: Mock) -> Mock:
    """The session's mock upstream, with its request log cleared for this test."""
    mock_server.clear()
    return mock_server


@pytest.fixture(scope="session")
def provider_mock(logs_dir: Path) -> Iterator[Mock]:
    """A second mock for the upstreams of `ANTHROPIC_GROUPS` and `PROVIDER_GROUPS` (Anthropic,
    OpenAI, Gemini, Bedrock, Azure); it answers only requests carrying `PROVIDER_UPSTREAM_KEY`
    in each provider's auth header (for Bedrock: as the SigV4 access key id)."""
    m = start_mock(logs_dir, "mock-providers", "--require-key", PROVIDER_UPSTREAM_KEY)
    yield m
    m.proc.stop()


@pytest.fixture
def provider_upstream(provider_mock: Mock) -> Mock:
    """`provider_mock`, with its request log cleared for this test."""
    provider_mock.clear()
    return provider_mock


# --------------------------------------------------------------------------------------
# Gateways
# --------------------------------------------------------------------------------------


class Gateway:
    """A running `llmgate`."""

    def __init__(self, proc: Proc, config: dict[str, Any] | None = None):
        self.proc = proc
        self.url = proc.url
        self.config = config

    def client(self, *, v1: bool = True, **kw: Any) -> openai.OpenAI:
        kw.setdefault("api_key", CLIENT_KEY)
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 30.0)
        return openai.OpenAI(base_url=f"{self.url}/v1" if v1 else self.url, **kw)

    def async_client(self, *, v1: bool = True, **kw: Any) -> openai.AsyncOpenAI:
        kw.setdefault("api_key", CLIENT_KEY)
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 30.0)
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1" if v1 else self.url, **kw)

    def anthropic_client(self, **kw: Any) -> anthropic.Anthropic:
        """The official Anthropic SDK on the gateway, as `ANTHROPIC_API_BASE=<gateway>` sets it
        up: the SDK posts to `{base_url}/v1/messages`."""
        kw.setdefault("api_key", CLIENT_KEY)
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 30.0)
        return anthropic.Anthropic(base_url=self.url, **kw)


def start_gateway(
    tmp: Path,
    name: str,
    config: dict[str, Any] | None = None,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Gateway:
    argv = [
        str(LLMGATE_BIN),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--plugins-dir",
        str(LLMGATE_PLUGINS_DIR),
    ]
    if config is not None:
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        argv += ["--config", str(path)]
    argv += args or []
    # Each gateway gets its own database unless the test names one.
    env = {"LLMGATE_DB": str(tmp / f"{name}.db"), **(env or {})}
    return Gateway(Proc(name, argv, tmp / f"{name}.log", env=base_env(**env)), config)


def deployment(
    model_name: str, upstream_model: str, api_base: str, api_key: str | None = UPSTREAM_KEY, **params: Any
) -> dict[str, Any]:
    litellm_params: dict[str, Any] = {"model": f"openai/{upstream_model}", "api_base": api_base}
    if api_key is not None:
        litellm_params["api_key"] = api_key
    litellm_params.update(params)
    return {"model_name": model_name, "litellm_params": litellm_params}


#: Model groups of the main gateway: client-facing name -> upstream (mock) model.
MAIN_GROUPS = {
    "gpt-4o": "mock-gpt",
    "cached-model": "mock-cached",
    "slow-model": "mock-slow-300",
    "rate-limited": "mock-error-429",
    "server-error": "mock-error-500",
    "context-error": "mock-error-context",
    "disconnecting": "mock-disconnect",
    "malformed": "mock-malformed",
}
#: Model groups of the main gateway for Anthropic clients (`POST /v1/messages`), all on the
#: keyed mock (`provider_mock`): client-facing name -> `litellm_params` without `api_base` and
#: `api_key` (`main_config` adds them). `anthropic/` groups pass Messages through natively;
#: `openai/` and `gemini/` ones are translated.
ANTHROPIC_GROUPS: dict[str, dict[str, Any]] = {
    "claude-sonnet-4-20250514": {"model": "anthropic/claude-sonnet-4-20250514"},
    "claude-via-openai": {"model": "openai/mock-gpt"},
    "claude-via-gemini": {"model": "gemini/gemini-2.5-flash"},
    "claude-error-429": {"model": "anthropic/claude-error-429"},
    "claude-malformed": {"model": "anthropic/claude-malformed"},
    "claude-disconnect": {"model": "anthropic/claude-disconnect"},
    "claude-via-openai-error-429": {"model": "openai/mock-error-429"},
    "claude-via-gemini-error-429": {"model": "gemini/gemini-error-429"},
    "claude-via-openai-malformed": {"model": "openai/mock-malformed"},
    "claude-via-gemini-malformed": {"model": "gemini/gemini-malformed"},
}
#: The upstream key of the Anthropic-client groups; `provider_mock` refuses any other.
PROVIDER_UPSTREAM_KEY = "sk-upstream-providers"
#: Model groups of the main gateway for `test_providers.py`, one normal and one answering 429
#: per non-OpenAI provider, all on the keyed mock (`provider_mock`): client-facing name ->
#: `litellm_params` without `api_base` and credentials (`provider_params` adds them).
PROVIDER_GROUPS: dict[str, dict[str, Any]] = {
    "prov-anthropic": {"model": "anthropic/claude-sonnet-4-20250514"},
    "prov-gemini": {"model": "gemini/gemini-2.5-flash"},
    "prov-bedrock": {"model": "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"},
    "prov-azure": {"model": "azure/my-gpt4o-deployment"},
    "prov-anthropic-429": {"model": "anthropic/claude-error-429"},
    "prov-gemini-429": {"model": "gemini/gemini-error-429"},
    "prov-bedrock-429": {"model": "bedrock/anthropic.claude-error-429-v1:0"},
    "prov-azure-429": {"model": "azure/mock-error-429"},
}
#: `api_version` of the Azure deployments.
AZURE_API_VERSION = "2024-10-21"
#: AWS region of the Bedrock deployments.
AWS_REGION = "us-east-1"
#: Plugins the session's gateways need in `LLMGATE_PLUGINS_DIR`.
REQUIRED_PLUGINS = ["openai", "anthropic", "gemini", "bedrock", "azure"]


def provider_params(provider_mock: "Mock", params: dict[str, Any]) -> dict[str, Any]:
    """Complete `litellm_params` of a group on `provider_mock`, with each provider's credentials:
    Bedrock signs with SigV4 (the mock checks that the access key id is its key), Azure needs an
    `api_version`, the others take `api_key`."""
    model = params["model"]
    out = {**params, "api_base": _provider_api_base(provider_mock, model)}
    if model.startswith("bedrock/"):
        out.update(
            aws_access_key_id=PROVIDER_UPSTREAM_KEY,
            aws_secret_access_key="mock-secret-access-key",
            aws_region_name=AWS_REGION,
        )
    else:
        out["api_key"] = PROVIDER_UPSTREAM_KEY
        if model.startswith("azure/"):
            out.setdefault("api_version", AZURE_API_VERSION)
    return out
#: The main gateway's request body limit.
MAX_REQUEST_BODY_BYTES = 8 << 20
#: Deployment id of the `gpt-4o` group (`model_info.id`), expected in `x-litellm-model-id`.
MAIN_DEPLOYMENT_ID = "mock-main"


def _provider_api_base(provider_mock: Mock, model: str) -> str:
    """`api_base` as LiteLLM configs spell it per provider: OpenAI-compatible bases end in
    `/v1`, Anthropic and Gemini ones are the bare origin."""
    return provider_mock.v1 if model.startswith("openai/") else provider_mock.url


@pytest.fixture(scope="session")
def main_config(mock_server: Mock, provider_mock: Mock) -> dict[str, Any]:
    model_list = []
    for name, up in MAIN_GROUPS.items():
        d = deployment(name, up, mock_server.v1)
        if name == "gpt-4o":
            d["model_info"] = {"id": MAIN_DEPLOYMENT_ID}
        model_list.append(d)
    # Upstream that never answers, with a 1 s timeout.
    model_list.append(deployment("hanging", "mock-hang", mock_server.v1, timeout=1))
    # The same, with the default timeout (600 s): requests stay in flight until the client
    # goes (test_async's parallelism check).
    model_list.append(deployment("hanging-long", "mock-hang", mock_server.v1))
    # `litellm_params` that become request defaults, and extra upstream headers.
    model_list.append(
        deployment(
            "with-defaults",
            "mock-gpt",
            mock_server.v1,
            temperature=0.1,
            max_tokens=100,
            extra_headers={"X-Team": "e2e-team"},
        )
    )
    # Nothing listens there.
    model_list.append(deployment("unreachable", "mock-gpt", f"http://127.0.0.1:{free_port()}/v1"))
    # Groups for Anthropic clients, on the keyed mock.
    for name, params in ANTHROPIC_GROUPS.items():
        litellm_params = {
            **params,
            "api_base": _provider_api_base(provider_mock, params["model"]),
            "api_key": PROVIDER_UPSTREAM_KEY,
        }
        model_list.append({"model_name": name, "litellm_params": litellm_params})
    # Groups of every provider plugin (Anthropic, Gemini, Bedrock, Azure), on the keyed mock.
    for name, params in PROVIDER_GROUPS.items():
        model_list.append({"model_name": name, "litellm_params": provider_params(provider_mock, params)})
    llmgate = {"shutdown_grace_seconds": 2, "max_request_body_bytes": MAX_REQUEST_BODY_BYTES}
    return {"model_list": model_list, "llmgate": llmgate}


@pytest.fixture(scope="session")
def gateway(logs_dir: Path, main_config: dict[str, Any]) -> Iterator[Gateway]:
    gw = start_gateway(logs_dir, "gateway", main_config)
    yield gw
    gw.proc.stop()


@pytest.fixture(params=["v1", "root"])
def client(request: pytest.FixtureRequest, gateway: Gateway) -> Iterator[openai.OpenAI]:
    """An SDK client on the main gateway, once with `base_url=.../v1`, once without `/v1`."""
    c = gateway.client(v1=request.param == "v1")
    yield c
    c.close()


@pytest.fixture
def client_v1(gateway: Gateway) -> Iterator[openai.OpenAI]:
    c = gateway.client()
    yield c
    c.close()
