// llmgate dashboard. Every datum comes from the admin API, called with the master key the
// operator typed into the login form; the key lives in this tab's sessionStorage only.
import { h, render } from './vendor/preact.mjs';
import { useState, useEffect, useRef, useCallback } from './vendor/hooks.mjs';
import htm from './vendor/htm.mjs';

const html = htm.bind(h);
const KEY = 'llmgate.master';
const DAY = 86400000;

// ---------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------

/** An error the API answered: its HTTP status and message (OpenAI's error shape). */
class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Calls `path` with the master key; the parsed JSON, or an ApiFailure with the API's message. */
async function api(path, { method = 'GET', body, key } = {}) {
  const master = key ?? sessionStorage.getItem(KEY);
  const headers = { Authorization: `Bearer ${master}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiFailure(0, `the gateway did not answer (${e.message})`);
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const msg = data?.error?.message ?? (text || resp.statusText);
    throw new ApiFailure(resp.status, `${method} ${path.split('?')[0]}: ${resp.status} ${msg}`);
  }
  return data;
}

/** Loads `fn()` on mount and when `deps` change: {data, error, loading, reload}. */
function useLoad(fn, deps) {
  const [state, set] = useState({ data: null, error: null, loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    set((s) => ({ ...s, loading: true }));
    fn().then(
      (data) => live && set({ data, error: null, loading: false }),
      (error) => live && set({ data: null, error, loading: false }),
    );
    return () => { live = false; };
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

// ---------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------

const usd = (v) => (v == null ? '—' : `$${Number(v).toFixed(6).replace(/0{1,4}$/, '')}`);
const num = (v) => (v == null ? '—' : Number(v).toLocaleString('en-US'));
const ms = (v) => (v == null ? '—' : `${Number(v).toFixed(1)} ms`);
const when = (v) => (v == null ? '—' : new Date(v).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC'));
const isoDay = (t) => new Date(t).toISOString().slice(0, 10);
const rfc3339 = (t) => new Date(t).toISOString().replace(/\.\d+Z$/, 'Z');
const short = (s) => (s && s.length > 16 ? `${s.slice(0, 10)}…${s.slice(-4)}` : s || '—');

/** A list field from a comma-separated input: trimmed, empty entries dropped. */
const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
/** A number field: null when empty, else the number (NaN is refused by the API). */
const optNum = (s) => (String(s).trim() === '' ? null : Number(s));

function Alert({ error }) {
  if (!error) return null;
  return html`<p class="alert" role="alert">${error.message ?? String(error)}</p>`;
}

function Loading({ on }) {
  return on ? html`<p class="muted" role="status">Loading…</p>` : null;
}

function StateBadge({ state }) {
  const cls = state === 'healthy' ? 'ok' : state === 'partial_outage' ? 'warn' : 'bad';
  return html`<span class=${`badge ${cls}`}>${state ?? 'unknown'}</span>`;
}

// ---------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------

function Login({ onIn }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function submit(ev) {
    ev.preventDefault();
    const key = ev.target.elements.master.value.trim();
    setBusy(true);
    setError(null);
    try {
      // An admin route answers only to the master key.
      await api('/key/list?size=1', { key });
      sessionStorage.setItem(KEY, key);
      onIn();
    } catch (e) {
      const wrong = e.status === 401 || e.status === 403;
      setError(new Error(wrong ? `That is not the master key (${e.message})` : e.message));
    } finally {
      setBusy(false);
    }
  }
  return html`<main class="login" id="main">
    <h1>llmgate dashboard</h1>
    <p>Log in with the gateway's master key. It is kept in this browser tab only and sent to the
      gateway's admin API.</p>
    <form class="stack" onSubmit=${submit} aria-describedby="login-error">
      <label>Master key<input name="master" type="password" autocomplete="current-password" required autofocus /></label>
      <button type="submit" disabled=${busy}>Log in</button>
    </form>
    <div id="login-error" aria-live="assertive"><${Alert} error=${error} /></div>
  </main>`;
}

// ---------------------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------------------

function Overview() {
  const today = isoDay(Date.now());
  const act = useLoad(() => api(`/user/daily/activity?start_date=${today}&end_date=${today}`), []);
  const ready = useLoad(() => api('/health/readiness'), []);
  const m = act.data?.metadata;
  const deps = ready.data?.deployments ?? [];
  const up = deps.filter((d) => d.state === 'healthy').length;
  return html`<h2>Overview</h2>
    <${Alert} error=${act.error} /><${Alert} error=${ready.error} />
    <${Loading} on=${act.loading || ready.loading} />
    <h3>Today (UTC)</h3>
    <dl class="cards" aria-label="Today">
      <div><dt>Requests</dt><dd data-stat="requests">${num(m?.total_api_requests)}</dd></div>
      <div><dt>Spend</dt><dd data-stat="spend">${usd(m?.total_spend)}</dd></div>
      <div><dt>Errors</dt><dd data-stat="errors">${num(m?.total_failed_requests)}</dd></div>
      <div><dt>Tokens</dt><dd>${num(m?.total_tokens)}</dd></div>
    </dl>
    <h3>Deployments</h3>
    <dl class="cards" aria-label="Deployments">
      <div><dt>Up</dt><dd data-stat="up">${up}</dd></div>
      <div><dt>Down or failing</dt><dd data-stat="down">${deps.length - up}</dd></div>
      <div><dt>Version</dt><dd>${ready.data?.llmgate_version ?? '—'}</dd></div>
    </dl>`;
}

// ---------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------

/** The fields a key form edits, as the API takes them. */
function keyFields(form) {
  const e = form.elements;
  const body = {
    max_budget: optNum(e.max_budget.value),
    rpm_limit: optNum(e.rpm_limit.value),
    tpm_limit: optNum(e.tpm_limit.value),
    models: list(e.models.value),
  };
  if (e.key_alias) body.key_alias = e.key_alias.value.trim() || null;
  if (e.duration && e.duration.value.trim()) body.duration = e.duration.value.trim();
  if (e.user_id && e.user_id.value.trim()) body.user_id = e.user_id.value.trim();
  return body;
}

function KeyForm({ id, rec, submitLabel, onSubmit, onCancel, create }) {
  return html`<form class="grid" onSubmit=${(ev) => { ev.preventDefault(); onSubmit(keyFields(ev.target)); }}>
    ${create && html`<label>Alias<input name="key_alias" id=${`${id}-alias`} /></label>`}
    ${create && html`<label>User id<input name="user_id" /></label>`}
    <label>Max budget (USD)<input name="max_budget" type="number" step="any" min="0" value=${rec?.max_budget ?? ''} /></label>
    <label>RPM limit<input name="rpm_limit" type="number" min="0" step="1" value=${rec?.rpm_limit ?? ''} /></label>
    <label>TPM limit<input name="tpm_limit" type="number" min="0" step="1" value=${rec?.tpm_limit ?? ''} /></label>
    <label>Models (comma-separated; empty = all)<input name="models" value=${(rec?.models ?? []).join(', ')} /></label>
    ${create && html`<label>Duration (e.g. 30d; empty = never expires)<input name="duration" /></label>`}
    <div class="actions">
      <button type="submit">${submitLabel}</button>
      ${onCancel && html`<button type="button" class="secondary" onClick=${onCancel}>Cancel</button>`}
    </div>
  </form>`;
}

function Keys() {
  const [page, setPage] = useState(1);
  const keys = useLoad(() => api(`/key/list?return_full_object=true&size=25&page=${page}`), [page]);
  const [error, setError] = useState(null);
  const [shown, setShown] = useState(null); // {label, key}: a new key, shown once
  const [editing, setEditing] = useState(null);
  const [notice, setNotice] = useState(null);

  async function act(fn, done) {
    setError(null);
    setNotice(null);
    try {
      const out = await fn();
      if (done) done(out);
      keys.reload();
    } catch (e) {
      setError(e);
    }
  }
  const create = (body) => act(() => api('/key/generate', { method: 'POST', body }),
    (v) => setShown({ label: v.key_alias || v.key_name, key: v.key }));
  const save = (token, body) => act(() => api('/key/update', { method: 'POST', body: { key: token, ...body } }),
    () => { setEditing(null); setNotice('Key updated.'); });
  const block = (k, on) => act(() => api(on ? '/key/block' : '/key/unblock', { method: 'POST', body: { key: k.token } }),
    () => setNotice(`Key ${k.key_alias || k.key_name} ${on ? 'blocked' : 'unblocked'}.`));
  const regenerate = (k) => {
    if (!confirm(`Regenerate ${k.key_alias || k.key_name}? The old key stops working now.`)) return;
    act(() => api('/key/regenerate', { method: 'POST', body: { key: k.token } }),
      (v) => setShown({ label: v.key_alias || v.key_name, key: v.key }));
  };
  const remove = (k) => {
    if (!confirm(`Delete ${k.key_alias || k.key_name}? This cannot be undone.`)) return;
    act(() => api('/key/delete', { method: 'POST', body: { keys: [k.token] } }),
      () => setNotice(`Key ${k.key_alias || k.key_name} deleted.`));
  };

  const rows = keys.data?.keys ?? [];
  return html`<h2>Keys</h2>
    <div aria-live="assertive"><${Alert} error=${error} /><${Alert} error=${keys.error} /></div>
    <div aria-live="polite">${notice && html`<p class="notice">${notice}</p>`}</div>
    ${shown && html`<section class="panel" aria-labelledby="new-key-title">
      <h3 id="new-key-title">New key for ${shown.label}</h3>
      <p>Copy it now: it is shown only once.</p>
      <p><output id="new-key" class="secret">${shown.key}</output></p>
      <button type="button" class="secondary" onClick=${() => setShown(null)}>I have copied it</button>
    </section>`}
    <section class="panel" aria-labelledby="create-title">
      <h3 id="create-title">Create a key</h3>
      <${KeyForm} id="create" create submitLabel="Create key" onSubmit=${create} />
    </section>
    <${Loading} on=${keys.loading} />
    <div class="table-wrap" id="keys-table">
      <table>
        <caption class="visually-hidden">Virtual keys</caption>
        <thead><tr><th scope="col">Alias</th><th scope="col">Key</th><th scope="col" class="num">Spend / budget</th>
          <th scope="col" class="num">RPM / TPM</th><th scope="col">Models</th><th scope="col">Status</th><th scope="col">Actions</th></tr></thead>
        <tbody>
          ${rows.map((k) => html`<tr key=${k.token} data-key=${k.key_alias || k.key_name}>
            <td>${k.key_alias || '—'}${k.user_id ? html`<br /><span class="muted">user ${k.user_id}</span>` : ''}</td>
            <td><code class="nowrap">${k.key_name}</code></td>
            <td class="num">${usd(k.spend)} / ${k.max_budget == null ? '∞' : usd(k.max_budget)}</td>
            <td class="num">${k.rpm_limit ?? '∞'} / ${k.tpm_limit ?? '∞'}</td>
            <td>${k.models.length ? k.models.join(', ') : 'all'}</td>
            <td>${k.blocked ? html`<span class="badge bad">blocked</span>` : html`<span class="badge ok">active</span>`}</td>
            <td><div class="actions">
              <button type="button" class="secondary" onClick=${() => setEditing(k.token)} aria-label=${`Edit ${k.key_alias || k.key_name}`}>Edit</button>
              <button type="button" class="secondary" onClick=${() => block(k, !k.blocked)}
                aria-label=${`${k.blocked ? 'Unblock' : 'Block'} ${k.key_alias || k.key_name}`}>${k.blocked ? 'Unblock' : 'Block'}</button>
              <button type="button" class="secondary" onClick=${() => regenerate(k)} aria-label=${`Regenerate ${k.key_alias || k.key_name}`}>Regenerate</button>
              <button type="button" class="danger" onClick=${() => remove(k)} aria-label=${`Delete ${k.key_alias || k.key_name}`}>Delete</button>
            </div></td>
          </tr>
          ${editing === k.token && html`<tr key=${`${k.token}-edit`}><td colspan="7">
            <${KeyForm} id=${`edit-${k.token}`} rec=${k} submitLabel="Save" onSubmit=${(b) => save(k.token, b)} onCancel=${() => setEditing(null)} />
          </td></tr>`}`)}
          ${!keys.loading && rows.length === 0 && html`<tr><td colspan="7" class="muted">No keys yet.</td></tr>`}
        </tbody>
      </table>
    </div>
    <${Pager} page=${page} pages=${keys.data?.total_pages ?? 1} total=${keys.data?.total_count} setPage=${setPage} />`;
}

function Pager({ page, pages, total, setPage }) {
  return html`<nav class="pager" aria-label="Pages">
    <button type="button" class="secondary" disabled=${page <= 1} onClick=${() => setPage(page - 1)}>Previous</button>
    <span>Page ${page} of ${Math.max(pages, 1)}${total != null ? ` (${total} in all)` : ''}</span>
    <button type="button" class="secondary" disabled=${page >= pages} onClick=${() => setPage(page + 1)}>Next</button>
  </nav>`;
}

// ---------------------------------------------------------------------------------------
// Spend
// ---------------------------------------------------------------------------------------

/** A uPlot bar chart of `values` per day (`days`: unix seconds), as wide as its box. */
function DayChart({ days, values, label }) {
  const box = useRef(null);
  useEffect(() => {
    if (!box.current || !window.uPlot) return undefined;
    const width = Math.max(box.current.clientWidth, 200);
    const opts = {
      width, height: 220, title: label,
      scales: { x: { time: true, range: [days[0] - 43200, days[days.length - 1] + 43200] } },
      axes: [{}, { values: (u, ticks) => ticks.map((t) => `$${t}`) }],
      series: [{}, { label: 'Spend (USD)', stroke: '#0b5cad', fill: 'rgba(11,92,173,0.35)',
        paths: window.uPlot.paths.bars({ size: [0.7, 40] }), points: { show: false } }],
    };
    const plot = new window.uPlot(opts, [days, values], box.current);
    return () => plot.destroy();
  }, [days.join(','), values.join(',')]);
  return html`<figure class="chart">
    <div ref=${box} role="img" aria-label=${`${label}: ${days.length} days`}></div>
    <figcaption class="visually-hidden">${label}</figcaption>
  </figure>`;
}

/** A ranked table of spend by `name`, with a meter for each row's share. */
function SpendTable({ title, rows, id }) {
  const max = Math.max(0, ...rows.map((r) => r.spend));
  return html`<section class="panel" aria-labelledby=${`${id}-title`}>
    <h3 id=${`${id}-title`}>${title}</h3>
    <div class="table-wrap"><table id=${id}>
      <thead><tr><th scope="col">Name</th><th scope="col" class="num">Spend</th><th scope="col" class="num">Requests</th><th scope="col">Share</th></tr></thead>
      <tbody>${rows.map((r) => html`<tr data-name=${r.name}>
        <td>${r.name}</td><td class="num" data-spend=${r.spend}>${usd(r.spend)}</td><td class="num">${num(r.requests)}</td>
        <td><meter min="0" max=${max || 1} value=${r.spend} aria-label=${`${r.name} share`}></meter></td>
      </tr>`)}
      ${rows.length === 0 && html`<tr><td colspan="4" class="muted">No spend in this range.</td></tr>`}</tbody>
    </table></div>
  </section>`;
}

/** Sums `results[].breakdown[field]` over the days: [{name, spend, requests}], highest first. */
function sumBreakdown(results, field, nameOf) {
  const by = new Map();
  for (const day of results) {
    for (const [k, v] of Object.entries(day.breakdown?.[field] ?? {})) {
      const name = nameOf ? nameOf(k, v) : k;
      const t = by.get(name) ?? { name, spend: 0, requests: 0 };
      t.spend += v.metrics.spend;
      t.requests += v.metrics.api_requests;
      by.set(name, t);
    }
  }
  return [...by.values()].sort((a, b) => b.spend - a.spend);
}

function Spend() {
  const [range, setRange] = useState(30);
  const end = isoDay(Date.now());
  const start = isoDay(Date.now() - (range - 1) * DAY);
  const act = useLoad(() => api(`/user/daily/activity?start_date=${start}&end_date=${end}&page_size=1000`), [start, end]);
  const users = useLoad(() => api(`/global/spend/report?group_by=customer&start_date=${start}&end_date=${end}`), [start, end]);
  const results = act.data?.results ?? [];
  // Every day of the range, those without traffic at 0, so the axis spans the range.
  const spendOn = new Map(results.map((d) => [d.date, d.metrics.spend]));
  const days = [];
  const values = [];
  for (let t = Date.parse(`${start}T00:00:00Z`); t <= Date.parse(`${end}T00:00:00Z`); t += DAY) {
    days.push(t / 1000);
    values.push(spendOn.get(isoDay(t)) ?? 0);
  }
  const byUser = new Map();
  for (const day of users.data ?? []) {
    for (const c of day.customers ?? []) {
      const name = c.customer || '(no user)';
      const t = byUser.get(name) ?? { name, spend: 0, requests: null };
      t.spend += c.total_spend;
      byUser.set(name, t);
    }
  }
  const m = act.data?.metadata;
  return html`<h2>Spend</h2>
    <div aria-live="assertive"><${Alert} error=${act.error} /><${Alert} error=${users.error} /></div>
    <label class="inline">Range (UTC days)
      <select value=${range} onChange=${(e) => setRange(Number(e.target.value))}>
        <option value="1">Today</option><option value="7">Last 7 days</option><option value="30">Last 30 days</option><option value="90">Last 90 days</option>
      </select></label>
    <${Loading} on=${act.loading} />
    <dl class="cards" aria-label="Totals">
      <div><dt>Spend</dt><dd data-stat="total-spend" data-value=${m?.total_spend}>${usd(m?.total_spend)}</dd></div>
      <div><dt>Requests</dt><dd data-stat="total-requests">${num(m?.total_api_requests)}</dd></div>
      <div><dt>Failed</dt><dd>${num(m?.total_failed_requests)}</dd></div>
      <div><dt>Tokens</dt><dd>${num(m?.total_tokens)}</dd></div>
    </dl>
    <section class="panel" aria-labelledby="by-day-title">
      <h3 id="by-day-title">Spend by day</h3>
      ${results.length ? html`<${DayChart} days=${days} values=${values} label="Spend by day (USD)" />` : html`<p class="muted">No spend in this range.</p>`}
      <details><summary>Spend by day as a table</summary>
        <div class="table-wrap"><table id="spend-by-day"><thead><tr><th scope="col">Day</th><th scope="col" class="num">Spend</th><th scope="col" class="num">Requests</th></tr></thead>
        <tbody>${results.map((d) => html`<tr><td>${d.date}</td><td class="num">${usd(d.metrics.spend)}</td><td class="num">${num(d.metrics.api_requests)}</td></tr>`)}</tbody></table></div>
      </details>
    </section>
    <${SpendTable} id="spend-by-model" title="By model" rows=${sumBreakdown(results, 'models')} />
    <${SpendTable} id="spend-by-key" title="By key" rows=${sumBreakdown(results, 'api_keys', (k, v) => v.metadata?.key_alias || short(k))} />
    <${SpendTable} id="spend-by-user" title="By user" rows=${[...byUser.values()].sort((a, b) => b.spend - a.spend)} />`;
}

// ---------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------

/** A `datetime-local` value for unix ms `t` in the browser's zone. */
const localInput = (t) => {
  const d = new Date(t - new Date(t).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
};

const stored = (v) => v && !(typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0);

function Logs() {
  const [filters, setFilters] = useState(() => ({
    status: '', model: '', key: '',
    from: localInput(Date.now() - DAY), to: localInput(Date.now() + 3600000),
  }));
  const [page, setPage] = useState(1);
  const [open, setOpen] = useState(null);
  const q = new URLSearchParams({
    start_date: rfc3339(new Date(filters.from).getTime()),
    end_date: rfc3339(new Date(filters.to).getTime()),
    page: String(page), page_size: '25',
  });
  if (filters.status) q.set('status_filter', filters.status);
  if (filters.model) q.set('model', filters.model);
  if (filters.key) q.set('api_key', filters.key);
  const logs = useLoad(() => api(`/spend/logs/ui?${q}`), [q.toString()]);
  function apply(ev) {
    ev.preventDefault();
    const e = ev.target.elements;
    setPage(1);
    setFilters({ status: e.status.value, model: e.model.value.trim(), key: e.key.value.trim(), from: e.from.value, to: e.to.value });
  }
  const rows = logs.data?.data ?? [];
  return html`<h2>Request log</h2>
    <form class="grid" onSubmit=${apply} aria-label="Filters">
      <label>Status<select name="status" value=${filters.status}>
        <option value="">Any</option><option value="success">Success</option><option value="failure">Failure</option></select></label>
      <label>Model<input name="model" value=${filters.model} /></label>
      <label>Key (sk-… or hash)<input name="key" value=${filters.key} autocomplete="off" /></label>
      <label>From<input name="from" type="datetime-local" value=${filters.from} required /></label>
      <label>To<input name="to" type="datetime-local" value=${filters.to} required /></label>
      <div class="actions"><button type="submit">Apply filters</button>
        <button type="button" class="secondary" onClick=${logs.reload}>Refresh</button></div>
    </form>
    <div aria-live="assertive"><${Alert} error=${logs.error} /></div>
    <${Loading} on=${logs.loading} />
    <div class="table-wrap" id="logs-table">
      <table>
        <caption class="visually-hidden">Requests, newest first</caption>
        <thead><tr><th scope="col">Time</th><th scope="col">Status</th><th scope="col">Model</th><th scope="col">Key</th>
          <th scope="col" class="num">Tokens</th><th scope="col" class="num">Spend</th><th scope="col">Request</th></tr></thead>
        <tbody>${rows.map((r) => html`<tr key=${r.request_id} data-request=${r.request_id}>
            <td>${when(r.startTime)}</td>
            <td>${r.status === 'success' ? html`<span class="badge ok">success</span>` : html`<span class="badge bad">${r.status}</span>`}</td>
            <td>${r.model_group || r.model}</td>
            <td><code title=${r.api_key}>${r.metadata?.user_api_key_alias || short(r.api_key)}</code></td>
            <td class="num">${num(r.prompt_tokens)} + ${num(r.completion_tokens)}</td>
            <td class="num" data-spend=${r.spend}>${usd(r.spend)}</td>
            <td><button type="button" class="secondary" aria-expanded=${open === r.request_id}
              onClick=${() => setOpen(open === r.request_id ? null : r.request_id)}>Details</button></td>
          </tr>
          ${open === r.request_id && html`<tr key=${`${r.request_id}-d`}><td colspan="7"><${LogDetail} row=${r} /></td></tr>`}`)}
        ${!logs.loading && rows.length === 0 && html`<tr><td colspan="7" class="muted">No requests match.</td></tr>`}</tbody>
      </table>
    </div>
    <${Pager} page=${page} pages=${logs.data?.total_pages ?? 1} total=${logs.data?.total} setPage=${setPage} />`;
}

function LogDetail({ row }) {
  return html`<div class="log-detail">
    <p><strong>Request id</strong> <code>${row.request_id}</code> · <strong>Deployment</strong> ${row.model_id || '—'}
      (${row.custom_llm_provider || '—'}) · <strong>User</strong> ${row.user || '—'} · <strong>Ended</strong> ${when(row.endTime)}</p>
    ${stored(row.metadata?.error_information) && html`<h4>Error</h4><pre>${JSON.stringify(row.metadata.error_information, null, 2)}</pre>`}
    <h4>Messages</h4>
    ${stored(row.messages) ? html`<pre class="messages">${JSON.stringify(row.messages, null, 2)}</pre>`
      : html`<p class="muted">Not stored (turn on <code>store_prompts_in_spend_logs</code> to keep prompts).</p>`}
    <h4>Response</h4>
    ${stored(row.response) ? html`<pre class="response">${JSON.stringify(row.response, null, 2)}</pre>`
      : html`<p class="muted">Not stored.</p>`}
  </div>`;
}

// ---------------------------------------------------------------------------------------
// Deployments and plugins
// ---------------------------------------------------------------------------------------

const KNOWN_READINESS = new Set(['db', 'db_path', 'deployments', 'event_loops', 'llmgate_version', 'model_groups',
  'open_connections_per_loop', 'policies', 'providers', 'status']);

function probeText(p) {
  if (!p) return '—';
  if (typeof p !== 'object') return String(p);
  const parts = [];
  if (p.status ?? p.state) parts.push(p.status ?? p.state);
  if (p.at_ms ?? p.time_ms ?? p.at) parts.push(when(p.at_ms ?? p.time_ms ?? p.at));
  if (p.latency_ms != null) parts.push(ms(p.latency_ms));
  if (p.error) parts.push(p.error);
  return parts.length ? parts.join(' · ') : JSON.stringify(p);
}

function Deployments() {
  const ready = useLoad(() => api('/health/readiness'), []);
  const deps = ready.data?.deployments ?? [];
  const extra = Object.entries(ready.data ?? {}).filter(([k]) => !KNOWN_READINESS.has(k));
  return html`<h2>Deployments</h2>
    <div aria-live="assertive"><${Alert} error=${ready.error} /></div>
    <div class="actions"><button type="button" class="secondary" onClick=${ready.reload}>Refresh</button></div>
    <${Loading} on=${ready.loading} />
    <div class="table-wrap" id="deployments-table"><table>
      <caption class="visually-hidden">Deployments and their live health</caption>
      <thead><tr><th scope="col">Model group</th><th scope="col">Deployment</th><th scope="col">State</th>
        <th scope="col" class="num">Latency</th><th scope="col" class="num">TTFT</th><th scope="col" class="num">OK / failed</th>
        <th scope="col" class="num">In flight</th><th scope="col">Cooldown until</th><th scope="col">Cooldowns</th><th scope="col">Last probe</th></tr></thead>
      <tbody>${deps.map((d) => html`<tr data-deployment=${d.model_id}>
        <td>${d.model_name}</td>
        <td><code>${d.model_id}</code><br /><span class="muted">${d.provider}/${d.model}${d.api_base ? ` · ${d.api_base}` : ''}</span></td>
        <td><${StateBadge} state=${d.state} /></td>
        <td class="num">${ms(d.latency_ms)}</td><td class="num">${ms(d.ttft_ms)}</td>
        <td class="num">${num(d.successes)} / ${num(d.failures)}</td><td class="num">${num(d.in_flight)}</td>
        <td>${d.cooldown_until_ms ? when(d.cooldown_until_ms) : '—'}</td>
        <td>${(d.cooldowns ?? []).length ? d.cooldowns.map(([s, n]) => `${s}: ${n}`).join(', ') : '—'}</td>
        <td>${probeText(d.last_probe)}</td>
      </tr>`)}
      ${!ready.loading && deps.length === 0 && html`<tr><td colspan="10" class="muted">No deployments.</td></tr>`}</tbody>
    </table></div>
    <h3>Gateway</h3>
    <dl class="cards">
      <div><dt>Status</dt><dd>${ready.data?.status ?? '—'}</dd></div>
      <div><dt>Database</dt><dd>${ready.data?.db ?? '—'}</dd></div>
      <div><dt>Model groups</dt><dd>${num(ready.data?.model_groups)}</dd></div>
      <div><dt>Event loops</dt><dd>${num(ready.data?.event_loops)}</dd></div>
    </dl>
    ${extra.map(([k, v]) => html`<h3>${k.replace(/_/g, ' ')}</h3><pre>${JSON.stringify(v, null, 2)}</pre>`)}`;
}

function Plugins() {
  const p = useLoad(() => api('/plugins'), []);
  const rows = p.data?.plugins ?? [];
  return html`<h2>Plugins</h2>
    <div aria-live="assertive"><${Alert} error=${p.error} /></div>
    <div class="actions"><button type="button" class="secondary" onClick=${p.reload}>Refresh</button></div>
    <${Loading} on=${p.loading} />
    <div class="table-wrap" id="plugins-table"><table>
      <caption class="visually-hidden">Loaded plugins</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Version</th><th scope="col">Kind</th><th scope="col">File</th>
        <th scope="col">Loaded</th><th scope="col">Load error</th></tr></thead>
      <tbody>${rows.map((r) => html`<tr data-plugin=${r.name}>
        <td>${r.name}</td><td>${r.version ?? '—'}</td><td>${r.kind ?? '—'}</td>
        <td><code>${r.file}</code><br /><span class="muted mono">sha256 ${short(r.sha256)}</span></td>
        <td>${r.loaded_at ? when(r.loaded_at * 1000) : '—'}</td>
        <td>${r.last_error ? html`<span class="badge bad">error</span> ${r.last_error}` : '—'}</td>
      </tr>`)}
      ${!p.loading && rows.length === 0 && html`<tr><td colspan="6" class="muted">No plugins.</td></tr>`}</tbody>
    </table></div>
    <dl class="cards">
      <div><dt>Hot reload</dt><dd>${p.data ? (p.data.hot_reload.enabled ? 'on' : 'off') : '—'}</dd></div>
      <div><dt>Rescans</dt><dd>${num(p.data?.hot_reload.rescans)}</dd></div>
      <div><dt>Instance pool</dt><dd>${num(p.data?.instance_pool.max_instances)}</dd></div>
      <div><dt>Pool exhausted</dt><dd>${num(p.data?.instance_pool.exhausted_total)}</dd></div>
    </dl>`;
}

// ---------------------------------------------------------------------------------------
// The shell
// ---------------------------------------------------------------------------------------

const PAGES = [
  ['overview', 'Overview', Overview], ['keys', 'Keys', Keys], ['spend', 'Spend', Spend],
  ['logs', 'Logs', Logs], ['deployments', 'Deployments', Deployments], ['plugins', 'Plugins', Plugins],
];

const route = () => (location.hash.replace(/^#\/?/, '') || 'overview');

function App() {
  const [authed, setAuthed] = useState(() => Boolean(sessionStorage.getItem(KEY)));
  const [page, setPage] = useState(route);
  useEffect(() => {
    const on = () => setPage(route());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  const logout = () => { sessionStorage.removeItem(KEY); setAuthed(false); };
  if (!authed) return html`<${Login} onIn=${() => setAuthed(true)} />`;
  const found = PAGES.find(([id]) => id === page) ?? PAGES[0];
  const Page = found[2];
  return html`<header class="top">
      <h1>llmgate</h1>
      <nav aria-label="Dashboard"><ul>${PAGES.map(([id, label]) => html`<li>
        <a href=${`#/${id}`} aria-current=${id === found[0] ? 'page' : undefined}>${label}</a></li>`)}</ul></nav>
      <span class="spacer"></span>
      <button type="button" class="secondary" onClick=${logout}>Log out</button>
    </header>
    <main id="main"><${Page} key=${found[0]} /></main>`;
}

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
