// llmgate provider plugin `compat`, written in JavaScript: OpenAI-compatible hosted
// inference providers the Rust `openai` plugin does not serve (SambaNova, Hyperbolic).
//
// Chat completions, whole and streamed. The plugin points the request at the deployment's
// upstream model, fills `litellm_params` defaults the client did not set, adds
// `extra_headers`, asks streams for their usage (and hides that usage chunk from clients
// that did not ask for it), reports usage so the gateway can cost the call, and maps
// upstream errors to llmgate's error classes. The host applies the API key (`auth: bearer`):
// no secret ever reaches the plugin.
//
// Build: `scripts/build-plugins.sh` installs the locked build tools here (`npm install
// --no-save`), then runs `npm run build`: `jco componentize --backend qjs` (QuickJS, through
// componentize-qjs) against ../../wit, world `provider-plugin`, which writes
// plugins/dist/provider-compat.wasm. `--backend-qjs-disable-async` is required: the host
// does not enable the component-model async feature.
//
// Binding conventions (componentize-qjs): the exported interface `provider` is the exported
// object `provider`, with `describe` and the resource `exchange` as the class `Exchange`;
// record fields are camelCase (`apiBase`, `paramsJson`); enums are their WIT names as
// strings (`'chat-completions'`, `'sse'`); a variant is `{tag, val}`; a `tuple` is an
// array; an `option` is the value or `null`; `list<u8>` arrives as a `Uint8Array`; a
// method returning `result` returns its `ok` value and throws its `err` value.

import * as utf8 from './utf8.js';

const NAME = 'compat';
const VERSION = '0.1.0';

/** The providers served: one row each. */
const PREFIXES = [
  { name: 'sambanova', defaultApiBase: 'https://api.sambanova.ai/v1', apiKeyEnv: ['SAMBANOVA_API_KEY'] },
  { name: 'hyperbolic', defaultApiBase: 'https://api.hyperbolic.xyz/v1', apiKeyEnv: ['HYPERBOLIC_API_KEY'] },
];

/** `litellm_params` that become request defaults when the client did not set them. */
const DEFAULT_PARAMS = [
  'temperature', 'top_p', 'max_tokens', 'max_completion_tokens', 'seed', 'stop',
  'frequency_penalty', 'presence_penalty', 'response_format', 'user', 'n',
];

/** Error class of an upstream HTTP status; anything else is `upstream`. */
const STATUS_CLASS = {
  400: 'bad-request', 422: 'bad-request', 401: 'auth', 403: 'permission', 404: 'not-found',
  408: 'timeout', 504: 'timeout', 413: 'context-length', 429: 'rate-limited',
  503: 'overloaded', 529: 'overloaded',
};

/** A provider error code or message that says more than its status. */
const CODE_CLASS = [
  [/context_length_exceeded|maximum context length|prompt is too long|too many tokens/, 'context-length'],
  [/content_filter|content_policy|content management policy/, 'content-filter'],
  [/insufficient_quota|rate_limit/, 'rate-limited'],
  [/overloaded/, 'overloaded'],
];

const JSON_HEADERS = [['content-type', 'application/json']];

/** A gateway error (what a `result`'s `err` carries). */
function gatewayError(cls, status, message, code = null, retryAfterMs = null) {
  return { class: cls, status, message, code, retryAfterMs };
}

/** A header's value, by case-insensitive name. */
function header(headers, name) {
  return headers.find(([k]) => k.toLowerCase() === name)?.[1] ?? null;
}

/** The upstream's `Retry-After` (or `retry-after-ms`), in milliseconds. */
function retryAfterMs(headers) {
  const ms = Number.parseFloat(header(headers, 'retry-after-ms'));
  const secs = Number.parseFloat(header(headers, 'retry-after'));
  const value = Number.isFinite(ms) ? ms : secs * 1000;
  return Number.isFinite(value) ? Math.round(Math.min(Math.max(value, 0), 0xffff_ffff)) : null;
}

/** An OpenAI-shaped error answer as a gateway error (the upstream's status kept). */
function upstreamError(status, headers, body) {
  const text = utf8.decode(body).trim();
  let error;
  try {
    error = JSON.parse(text).error;
  } catch {
    // Not JSON: described below.
  }
  const retry = retryAfterMs(headers);
  const cls = STATUS_CLASS[status] ?? 'upstream';
  if (error === null || typeof error !== 'object') {
    const message = text
      ? `upstream answered ${status}: ${text.slice(0, 300)}`
      : `upstream answered ${status} with an empty body`;
    return gatewayError(cls, status, message, null, retry);
  }
  const code = error.code != null ? String(error.code) : (error.type ?? null);
  const message = error.message || `upstream answered ${status}`;
  const refined = CODE_CLASS.find(([re]) => re.test(code ?? '') || re.test(message))?.[1];
  return gatewayError(refined ?? cls, status, message, code, retry);
}

/** An OpenAI `usage` object in llmgate's terms (`input` excludes cached tokens). */
function usageOf(u) {
  if (u === null || typeof u !== 'object') return null;
  const cacheRead = u.prompt_tokens_details?.cached_tokens ?? 0;
  const cacheWrite = u.prompt_tokens_details?.cache_creation_tokens ?? 0;
  return {
    input: Math.max((u.prompt_tokens ?? 0) - cacheRead - cacheWrite, 0),
    output: u.completion_tokens ?? 0,
    cacheRead,
    cacheWrite,
    reasoning: u.completion_tokens_details?.reasoning_tokens ?? 0,
  };
}

/** One attempt: the plan, then the answer, whole or event by event. */
class Exchange {
  constructor(req) {
    this.req = req;
    /** We asked for streamed usage: hide the usage-only chunk from the client. */
    this.hideUsageChunk = false;
    this.usage = null;
    /** The stream ended properly (`[DONE]`, or a chunk with a `finish_reason`). */
    this.complete = false;
  }

  buildRequest() {
    const { req } = this;
    const { deployment } = req;
    if (req.api !== 'chat-completions') {
      throw gatewayError('bad-request', 400, `the ${NAME} plugin serves /v1/chat/completions only`);
    }
    let body;
    try {
      body = JSON.parse(utf8.decode(req.body));
    } catch (e) {
      throw gatewayError('bad-request', 400, `request body is not valid JSON: ${e.message}`);
    }
    const params = JSON.parse(deployment.paramsJson || '{}');
    body.model = deployment.model;
    for (const key of DEFAULT_PARAMS) {
      if (params[key] !== undefined && body[key] === undefined) body[key] = params[key];
    }
    if (req.stream && body.stream_options?.include_usage !== true) {
      this.hideUsageChunk = true;
      body.stream_options = { ...body.stream_options, include_usage: true };
    }
    const headers = [...JSON_HEADERS];
    for (const [name, value] of Object.entries(params.extra_headers ?? {})) {
      if (typeof value === 'string') headers.push([name.toLowerCase(), value]);
    }
    const base = deployment.apiBase ?? PREFIXES.find((p) => p.name === deployment.provider)?.defaultApiBase;
    if (!base) {
      throw gatewayError('bad-request', 400, `deployment ${deployment.id} needs api_base`);
    }
    const url = base.replace(/\/+$/, '').replace(/\/chat\/completions$/, '');
    return {
      method: 'POST',
      url: `${url}/chat/completions`,
      headers,
      body: utf8.encode(JSON.stringify(body)),
      auth: { tag: 'bearer' },
      framing: req.stream ? 'sse' : 'none',
    };
  }

  onBody(status, headers, body) {
    if (status < 200 || status > 299) throw upstreamError(status, headers, body);
    let answer;
    try {
      answer = JSON.parse(utf8.decode(body));
    } catch {
      throw gatewayError('upstream', 502, `upstream answered ${status} with a body that is not JSON`);
    }
    return { status, headers: JSON_HEADERS, body, usage: usageOf(answer.usage), model: answer.model ?? null };
  }

  onStreamStart(_status, _headers) {
    return [];
  }

  onEvent(event) {
    const data = event.data.trim();
    if (data === '') return [];
    if (data === '[DONE]') {
      this.complete = true;
      return [event];
    }
    let chunk;
    try {
      chunk = JSON.parse(data);
    } catch {
      throw gatewayError('upstream', 502, 'upstream sent a stream chunk that is not JSON');
    }
    // An error mid-stream is the provider's own event: the client gets it as it is.
    if (chunk.error != null) return [event];
    const choices = chunk.choices ?? [];
    if (choices.some((c) => c.finish_reason != null)) this.complete = true;
    if (chunk.usage != null) {
      this.usage = usageOf(chunk.usage);
      if (this.hideUsageChunk && choices.length === 0) return [];
    }
    return [event];
  }

  finish() {
    if (!this.complete) {
      throw gatewayError('upstream', 502, 'upstream stream ended before the response was complete');
    }
    return [[], this.usage];
  }
}

export const provider = {
  describe() {
    const apis = ['chat-completions'];
    return { name: NAME, version: VERSION, prefixes: PREFIXES, apis, nativeApis: apis };
  },
  Exchange,
};
