#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target (fuzz/corpus/TARGET/seed-*), from the request,
response and stream bodies the repository's own tests use (sdk/src/anthropic/tests.rs, the
host's unit tests, the mock upstream's streams) and the README's config examples. Run it
again after changing it; libFuzzer grows the corpus from these seeds on every run."""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

root = Path(__file__).resolve().parent.parent
corpus = root / "fuzz" / "corpus"


def raw_literals(path: Path) -> list[str]:
    """Raw string literals (`r#"..."#`, `br#"..."#`) of a Rust file that are JSON documents."""
    text = path.read_text()
    out = []
    for m in re.finditer(r'b?r#"(.*?)"#', text, re.S):
        s = m.group(1)
        if "{{" in s:  # a format! template
            continue
        try:
            json.loads(s)
        except ValueError:
            continue
        out.append(s)
    return out


def write(target: str, seeds: list[bytes]) -> None:
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("seed-*"):
        old.unlink()
    for i, s in enumerate(dict.fromkeys(seeds)):
        (d / f"seed-{i:02}").write_bytes(s)


docs = raw_literals(root / "sdk/src/anthropic/tests.rs")
requests = [d for d in docs if '"messages"' in d]
responses = [d for d in docs if '"choices"' in d or '"type":"message"' in d.replace(" ", "") or '"content"' in d and '"messages"' not in d]
chunks = [d for d in docs if "chat.completion.chunk" in d or '"delta"' in d]

chat = {"model": "gpt-4o", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
        "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 100, "user": "u1",
        "metadata": {"tags": ["a"], "user_id": "u2"}}
tools = {"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text", "text": "please use tool"},
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
         {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
          "function": {"name": "lookup", "arguments": "{\"q\":\"mock\"}"}}]},
         {"role": "tool", "tool_call_id": "call_1", "content": "found"}],
         "tools": [{"type": "function", "function": {"name": "lookup", "description": "Look a word up",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}],
         "tool_choice": "auto", "reasoning_effort": "low"}
messages = {"model": "claude-sonnet-4-20250514", "max_tokens": 1024, "system": [{"type": "text", "text": "be brief",
            "cache_control": {"type": "ephemeral"}}], "messages": [{"role": "user", "content": "hello there"}],
            "thinking": {"type": "enabled", "budget_tokens": 2048}, "stream": True}
bodies = [json.dumps(b) for b in (chat, tools, messages)] + requests
extra = ['{"model":"text-embedding-3-small","input":["a","b"]}', '{"model":"dall-e-3","prompt":"a cat","n":1}',
         '{"model":"m","messages":[]}', '{"model":"","messages":[{"role":"user","content":"x"}]}',
         '{"model":"m","stream":"yes","messages":[1]}', '  {"model" : "m" , "messages" : [ ] }  ']

# request_summary: API selector byte (0 chat, 1 messages, 2 count tokens, 3 images, 4 edits, 5 embeddings).
write("request_summary", [bytes([i % 6]) + b.encode() for i, b in enumerate(bodies + extra)])

form = (b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-image-1\r\n"
        b"--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nadd a hat\r\n"
        b"--XyZ\r\nContent-Disposition: form-data; name=\"image[]\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
        b"\x89PNG\r\n\x1a\n\x00\x00\r\n--XyZ--\r\n")
write("multipart", [
    b"multipart/form-data; boundary=XyZ\n" + form,
    b"multipart/form-data; boundary=\"XyZ\"; charset=utf-8\n" + form,
    b"multipart/form-data; boundary=b\n--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--b--",
    b"multipart/form-data; boundary=XyZ\n" + form.replace(b"image[]", b"image"),
    b"multipart/form-data; boundary=XyZ\n--XyZ\r\n\r\n--XyZ--",
    b"text/plain\nmodel=x",
])

openai_stream = "".join(f"data: {c}\n\n" for c in chunks) + "data: [DONE]\n\n"
anthropic_events = [
    ("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
                       "content": [], "stop_reason": None, "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 3}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Two "}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"q\":"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"mock\"}"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 2}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
    ("message_stop", {"type": "message_stop"}),
]
anthropic_sse = "".join(f"event: {n}\ndata: {json.dumps(d)}\n\n" for n, d in anthropic_events)
write("sse", [
    b"\x00" + openai_stream.encode(),
    b"\x06" + anthropic_sse.encode(),
    b"\x00" + anthropic_sse.replace("\n", "\r\n").encode(),
    b"\x02" + b": comment\r\nevent: x\rdata: a\rdata: b\r\rdata: tail",
    b"\x01" + b"".join(json.dumps(json.loads(c)).encode() + b"\n" for c in chunks[:4]),
    b"\x03" + b'{"candidates":[{"content":{"parts":[{"text":"hi"}]}}]}\r\n\r\n{"usageMetadata":{}}',
])


def aws_frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    h = b"".join(bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode() for k, v in headers)
    total = 16 + len(h) + len(payload)
    prelude = struct.pack(">II", total, len(h))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + h + payload
    return body + struct.pack(">I", zlib.crc32(body))


def ev(kind: str, payload: dict) -> tuple[list[tuple[str, str]], bytes]:
    return [(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")], json.dumps(payload).encode()


bedrock = [ev("messageStart", {"role": "assistant"}), ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
           ev("contentBlockStop", {"contentBlockIndex": 0}), ev("messageStop", {"stopReason": "end_turn"}),
           ev("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}})]
exception = ([(":exception-type", "throttlingException"), (":message-type", "exception")], b'{"message":"slow down"}')


def spec(frames: list[tuple[list[tuple[str, str]], bytes]]) -> bytes:
    """The structured mode's input: headers \\0\\1 payload, frames separated by \\0\\0."""
    parts = []
    for headers, payload in frames:
        h = b"".join(bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode() for k, v in headers)
        parts.append(h + b"\0\x01" + payload)
    return b"\0\0".join(parts)


write("aws_eventstream", [
    b"\x00" + b"".join(aws_frame(h, p) for h, p in bedrock),
    b"\x0e" + b"".join(aws_frame(h, p) for h, p in bedrock[:2]) + aws_frame(*exception),
    b"\x02" + aws_frame([], b""),
    b"\x01" + spec(bedrock[:3]),
    b"\x03" + spec([exception]),
    b"\x05" + b"\x04ab:c\x00\x03\x00\x07\x06\x00\x02hi\x08\x01\x02\x03\x04\x05\x06\x07\x08\0\x01{}",
])

write("anthropic_request", [bytes([i % 2]) + b.encode() for i, b in enumerate(bodies)] + [b"\x01" + json.dumps(chat).encode(), b"\x01" + json.dumps(tools).encode()])
write("anthropic_response", [bytes([0 if '"choices"' in r else 1]) + r.encode() for r in responses])
write("anthropic_stream", [
    b"\x00" + "\n".join(chunks + ["[DONE]"]).encode(),
    b"\x00" + "\n".join(chunks[:3] + ['{"error":{"message":"boom","type":"server_error"}}']).encode(),
    b"\x03" + "\n".join(f"{n}\t{json.dumps(d)}" for n, d in anthropic_events).encode(),
    b"\x01" + "\n".join(json.dumps(d) for _, d in anthropic_events[:5]).encode(),
    b"\x03" + b'error\t{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
])

readme = (root / "README.md").read_text()
yamls = re.findall(r"```yaml\n(.*?)```", readme, re.S)
write("config", [y.encode() for y in yamls] + [
    b"model_list:\n  - model_name: gpt-4o\n    litellm_params: {model: openai/gpt-4o, api_key: os.environ/FUZZ_KEY, timeout: 1}\n"
    b"general_settings: {master_key: sk-1234}\nenvironment_variables: {A: b}\n",
    b"",
    b"model_list: [{model_name: x, litellm_params: {model: mystery}}]\nllmgate: {nope: 1}\n",
])
print("seeds written to", corpus)
