"""Request payloads and stream helpers shared by the tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

#: A 1x1 PNG.
PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
PNG_DATA_URL = f"data:image/png;base64,{PNG_1X1}"

#: The mock's tool call arguments.
MOCK_TOOL_ARGUMENTS = '{"q":"mock"}'


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


def agent_tools() -> list[dict[str, Any]]:
    """14 function tools, shaped like a coding/assistant agent's (OpenClaw-like)."""
    s = {"type": "string"}
    i = {"type": "integer"}
    b = {"type": "boolean"}
    return [
        _tool("read", "Read a file from the workspace.", {"path": s, "offset": i, "limit": i}, ["path"]),
        _tool("write", "Create or overwrite a file.", {"path": s, "content": s}, ["path", "content"]),
        _tool(
            "edit",
            "Replace exact text in a file.",
            {"path": s, "old_string": s, "new_string": s, "replace_all": b},
            ["path", "old_string", "new_string"],
        ),
        _tool("exec", "Run a shell command.", {"command": s, "timeout_ms": i, "background": b}, ["command"]),
        _tool(
            "process",
            "Manage background processes.",
            {"action": {"type": "string", "enum": ["list", "poll", "kill", "write"]}, "id": s, "input": s},
            ["action"],
        ),
        _tool("web_search", "Search the web.", {"query": s, "count": i}, ["query"]),
        _tool("web_fetch", "Fetch a URL as markdown.", {"url": s, "max_chars": i}, ["url"]),
        _tool(
            "browser",
            "Control a headless browser.",
            {"action": {"type": "string", "enum": ["open", "click", "type", "screenshot"]}, "target": s, "text": s},
            ["action"],
        ),
        _tool("canvas", "Render HTML on the canvas.", {"html": s, "title": s}, ["html"]),
        _tool(
            "nodes",
            "Query paired devices.",
            {"node": s, "command": s, "params": {"type": "object", "additionalProperties": True}},
            ["command"],
        ),
        _tool(
            "cron",
            "Schedule a job.",
            {"schedule": s, "prompt": s, "enabled": b, "tags": {"type": "array", "items": s}},
            ["schedule", "prompt"],
        ),
        _tool("message", "Send a message to a channel.", {"channel": s, "to": s, "text": s}, ["channel", "text"]),
        _tool("sessions_list", "List chat sessions.", {"limit": i, "active_only": b}, []),
        _tool("memory_search", "Search long-term memory (ÄÖÜ ✓ 日本語).", {"q": s, "top_k": i}, ["q"]),
    ]


def anthropic_tools() -> list[dict[str, Any]]:
    """The same 14 tools in Anthropic's shape (`name`, `description`, `input_schema`)."""
    return [
        {"name": f["name"], "description": f["description"], "input_schema": f["parameters"]}
        for f in (t["function"] for t in agent_tools())
    ]


def big_system_prompt(target_bytes: int = 50_000) -> str:
    """A deterministic system prompt of about `target_bytes` UTF-8 bytes, with markdown,
    code, quotes, backslashes and non-ASCII text (what real agent prompts contain)."""
    parts = [
        "You are a personal assistant running inside OpenClaw.\n\n## Tooling\n",
        "Tool availability (filtered by policy): read, write, edit, exec, process, web_search, "
        "web_fetch, browser, canvas, nodes, cron, message, sessions_list, memory_search.\n",
    ]
    n = 0
    while sum(len(p.encode()) for p in parts) < target_bytes:
        n += 1
        parts.append(
            f"\n### Section {n}\n"
            f"- Rule {n}: prefer `edit` over `write` for files larger than {n * 10} lines.\n"
            f'- Quote: "never run `rm -rf /`" \\ path C:\\Users\\agent\\{n}\n'
            f"- Unicode: café naïve — 東京 {n} ✓ 🚀\n"
            "```json\n"
            f'{{"example": {n}, "nested": {{"list": [1, 2, 3], "ok": true}}}}\n'
            "```\n"
        )
    return "".join(parts)


@dataclass
class StreamResult:
    """What a client saw on a chat-completions stream."""

    chunks: list[Any]
    content: str = ""
    finish_reason: str | None = None
    usage: Any = None
    usage_chunks: int = 0
    tool_calls: dict[int, dict[str, str]] = field(default_factory=dict)


def collect(chunks: Iterable[Any]) -> StreamResult:
    """Assemble streamed chunks: content, finish reason, usage, tool calls by index."""
    res = StreamResult(chunks=[])
    for ch in chunks:
        res.chunks.append(ch)
        if getattr(ch, "usage", None) is not None:
            res.usage = ch.usage
            res.usage_chunks += 1
        for choice in ch.choices:
            d = choice.delta
            if d.content:
                res.content += d.content
            if choice.finish_reason:
                res.finish_reason = choice.finish_reason
            for tc in d.tool_calls or []:
                acc = res.tool_calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                if tc.id:
                    acc["id"] = tc.id
                if tc.function is not None:
                    if tc.function.name:
                        acc["name"] += tc.function.name
                    if tc.function.arguments:
                        acc["arguments"] += tc.function.arguments
    return res


def without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def canonical(v: Any) -> str:
    """JSON text independent of key order, for comparing request bodies."""
    return json.dumps(v, sort_keys=True, ensure_ascii=False)
