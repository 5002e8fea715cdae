// The dashboard at /ui end to end: the real `llmgate` in front of the real `llmgate-mock`,
// driven in Debian's headless Chromium through playwright-core.
//
// Environment (optional): LLMGATE_BIN, LLMGATE_MOCK_BIN (default: $CARGO_TARGET_DIR or
// target, /debug/...), LLMGATE_PLUGINS_DIR (default plugins/dist), CHROMIUM (default
// /usr/bin/chromium). scripts/ui-tests.sh installs what this needs and runs it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, createWriteStream, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const TARGET = resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target');
const BIN = process.env.LLMGATE_BIN || join(TARGET, 'debug/llmgate');
const MOCK_BIN = process.env.LLMGATE_MOCK_BIN || join(TARGET, 'debug/llmgate-mock');
const PLUGINS = process.env.LLMGATE_PLUGINS_DIR || join(ROOT, 'plugins/dist');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const MASTER = 'sk-master-ui-test-5678';
const UPSTREAM_KEY = 'sk-upstream-ui-test';
/** USD per token, powers of two so sums are exact. */
const IN = 2 ** -10;
const OUT = 2 ** -9;
const PROMPT = 'hello from the dashboard test';

const tmp = mkdtempSync(join(tmpdir(), 'llmgate-ui-'));
const children = [];

/** Starts `bin` and resolves its URL once it prints `... listening on http://...`. */
function start(name, bin, args, env = {}) {
  const log = createWriteStream(join(tmp, `${name}.log`));
  const child = spawn(bin, args, {
    env: { ...process.env, NO_COLOR: '1', LLMGATE_LOG: 'llmgate=debug,info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  child.stderr.pipe(log);
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`${name} did not listen within 60 s; see ${tmp}/${name}.log`)), 60000);
    let out = '';
    child.stdout.on('data', (b) => {
      out += b;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); ok(m[1].replace(/\/$/, '')); }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`${name} exited (${code}) before listening:\n${readFileSync(join(tmp, `${name}.log`), 'utf8')}`));
    });
  });
}

let gw; let browser; let page;
const cspViolations = [];
const pageErrors = [];

/** A chat completion with `key`; the Response. */
function chat(key, text) {
  return fetch(`${gw}/v1/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-ui', max_tokens: 16, messages: [{ role: 'user', content: text }] }),
  });
}

/** An admin call with the master key; the parsed JSON. */
async function admin(path) {
  const r = await fetch(`${gw}${path}`, { headers: { Authorization: `Bearer ${MASTER}` } });
  assert.equal(r.status, 200, `${path}: ${await r.clone().text()}`);
  return r.json();
}

async function go(hash) {
  await page.evaluate((h) => { location.hash = h; }, hash);
}

/** With UI_SCREENSHOTS=<dir>, a full-page screenshot named `name` (for a human to look at). */
async function shot(name) {
  if (process.env.UI_SCREENSHOTS) await page.screenshot({ path: join(process.env.UI_SCREENSHOTS, `${name}.png`), fullPage: true });
}

describe('the dashboard at /ui', { timeout: 240000 }, () => {
  before(async () => {
    const mock = await start('mock', MOCK_BIN, ['--host', '127.0.0.1', '--port', '0', '--require-key', UPSTREAM_KEY]);
    const config = `model_list:
  - model_name: gpt-ui
    litellm_params:
      model: openai/mock-gpt
      api_base: ${mock}/v1
      api_key: ${UPSTREAM_KEY}
      input_cost_per_token: ${IN}
      output_cost_per_token: ${OUT}
    model_info:
      id: dep-ui
general_settings:
  master_key: ${MASTER}
  store_prompts_in_spend_logs: true
llmgate:
  routing:
    default_policy: ordered
`;
    writeFileSync(join(tmp, 'config.yaml'), config);
    gw = await start('llmgate', BIN, ['--host', '127.0.0.1', '--port', '0', '--plugins-dir', PLUGINS,
      '--config', join(tmp, 'config.yaml')], { LLMGATE_DB: join(tmp, 'ui.db') });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.setDefaultTimeout(15000);
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) cspViolations.push(m.text());
    });
    page.on('pageerror', (e) => pageErrors.push(String(e)));
  });

  after(async () => {
    await browser?.close();
    for (const c of children) c.kill('SIGTERM');
  });

  test('the shell is served with its policy and holds no data', async () => {
    for (const path of ['/ui', '/ui/', '/ui/app.js', '/ui/vendor/preact.mjs', '/ui/app.css']) {
      const r = await fetch(`${gw}${path}`);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get('content-security-policy'), /default-src 'self'; script-src 'self'/);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
      assert.ok(r.headers.get('cache-control'), path);
    }
    assert.match((await fetch(`${gw}/ui`)).headers.get('content-type'), /^text\/html/);
    assert.match((await fetch(`${gw}/ui/app.js`)).headers.get('content-type'), /^text\/javascript/);
    assert.match((await fetch(`${gw}/ui/app.css`)).headers.get('content-type'), /^text\/css/);
    const missing = await fetch(`${gw}/ui/nope.js`);
    assert.equal(missing.status, 404);
    assert.ok((await missing.json()).error.message);
    // The data routes the dashboard reads refuse a caller without the master key.
    const r = await fetch(`${gw}/key/list`);
    assert.equal(r.status, 401);
  });

  test('without a key only the login form shows; a wrong key is refused with a message', async () => {
    await page.goto(`${gw}/ui`);
    await page.getByLabel('Master key').waitFor();
    assert.equal(await page.getByRole('navigation').count(), 0, 'no navigation before login');
    assert.equal(await page.locator('table').count(), 0, 'no data before login');
    await page.getByLabel('Master key').fill('sk-not-the-master');
    await page.getByRole('button', { name: 'Log in' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    assert.match(await alert.textContent(), /not the master key/);
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  });

  test('the master key logs in, kept in sessionStorage only', async () => {
    await page.getByLabel('Master key').fill(MASTER);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('navigation', { name: 'Dashboard' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('llmgate.master')), MASTER);
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    assert.ok(!page.url().includes(MASTER), 'the key is never in a URL');
  });

  let key;
  test('a key is created in the UI and shown once', async () => {
    await go('#/keys');
    await page.getByLabel('Alias').fill('ui-key');
    await page.locator('form').first().getByLabel('RPM limit').fill('100');
    await page.locator('form').first().getByLabel('Models (comma-separated; empty = all)').fill('gpt-ui');
    await page.getByRole('button', { name: 'Create key' }).click();
    const shown = page.locator('#new-key');
    await shown.waitFor();
    key = (await shown.textContent()).trim();
    assert.match(key, /^sk-/);
    const row = page.locator('tr[data-key="ui-key"]');
    await row.waitFor();
    assert.match(await row.textContent(), /active/);
    assert.match(await row.textContent(), /gpt-ui/);
    // Edit the budget.
    await page.getByRole('button', { name: 'Edit ui-key' }).click();
    await page.locator('tr').filter({ has: page.getByRole('button', { name: 'Save' }) }).getByLabel('Max budget (USD)').fill('5');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Key updated.').waitFor();
    await page.locator('tr[data-key="ui-key"]', { hasText: '$5' }).waitFor();
    const info = await admin(`/key/info?key=${encodeURIComponent(key)}`);
    assert.equal(info.info.max_budget, 5);
    assert.equal(info.info.rpm_limit, 100);
  });

  let spent = 0;
  test('traffic shows in the log, with prompts, and in the spend charts', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await chat(key, `${PROMPT} ${i}`);
      assert.equal(r.status, 200, await r.clone().text());
    }
    // The spend log is written in the background: wait until the API has the rows.
    let rows = [];
    for (let i = 0; i < 100 && rows.length < 3; i++) {
      rows = await admin(`/spend/logs?api_key=${encodeURIComponent(key)}`);
      if (rows.length < 3) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(rows.length, 3);
    spent = rows.reduce((s, r) => s + r.spend, 0);
    assert.ok(spent > 0);

    await go('#/logs');
    await page.locator('input[name=key]').fill(key);
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.locator('tr[data-request]').nth(2).waitFor();
    assert.equal(await page.locator('tr[data-request]').count(), 3);
    const cells = await page.locator('tr[data-request] td[data-spend]').evaluateAll((tds) => tds.map((t) => Number(t.dataset.spend)));
    assert.equal(cells.reduce((a, b) => a + b, 0), spent);
    await page.locator('tr[data-request]').first().getByRole('button', { name: 'Details' }).click();
    const messages = page.locator('pre.messages');
    await messages.waitFor();
    assert.match(await messages.textContent(), new RegExp(PROMPT));
    assert.ok((await page.locator('pre.response').textContent()).length > 2);
    // The status filter: no failures.
    await page.getByLabel('Status').selectOption('failure');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.getByText('No requests match.').waitFor();

    await go('#/spend');
    await page.locator('.chart canvas').first().waitFor();
    const keyRow = page.locator('#spend-by-key tr[data-name="ui-key"] td[data-spend]');
    await keyRow.waitFor();
    assert.equal(Number(await keyRow.getAttribute('data-spend')), spent);
    const modelRow = page.locator('#spend-by-model tr[data-name="gpt-ui"] td[data-spend]');
    assert.equal(Number(await modelRow.getAttribute('data-spend')), spent);
    const total = page.locator('[data-stat="total-spend"]');
    assert.equal(Number(await total.getAttribute('data-value')), spent);
    assert.equal((await page.locator('[data-stat="total-requests"]').textContent()).trim(), '3');
    await shot('spend');

    await go('#/overview');
    await page.locator('[data-stat="requests"]', { hasText: '3' }).waitFor();
  });

  test('deployments show their health; plugins their versions', async () => {
    await go('#/deployments');
    const row = page.locator('tr[data-deployment="dep-ui"]');
    await row.waitFor();
    assert.match(await row.textContent(), /healthy/);
    assert.match(await row.textContent(), /3 \/ 0/);
    await go('#/plugins');
    const openai = page.locator('tr[data-plugin="openai"]');
    await openai.waitFor();
    assert.match(await openai.textContent(), /provider/);
    assert.match(await openai.textContent(), /\d+\.\d+/);
    await shot('plugins');
  });

  test('a key blocked in the UI is refused on its next request', async () => {
    await go('#/keys');
    await page.getByRole('button', { name: 'Block ui-key' }).click();
    await page.getByText('Key ui-key blocked.').waitFor();
    await page.locator('tr[data-key="ui-key"]', { hasText: 'blocked' }).waitFor();
    const r = await chat(key, 'after the block');
    assert.ok(r.status === 401 || r.status === 403, `status ${r.status}`);
    const e = (await r.json()).error;
    assert.match(e.message, /blocked/);
    assert.ok(e.type);
    assert.ok(!JSON.stringify(e).includes(key), 'the error must not echo the key');
    // Delete another key, with confirmation.
    await page.getByLabel('Alias').fill('doomed');
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.locator('tr[data-key="doomed"]').waitFor();
    page.once('dialog', (d) => d.accept());
    await page.getByRole('button', { name: 'Delete doomed' }).click();
    await page.getByText('Key doomed deleted.').waitFor();
    assert.equal(await page.locator('tr[data-key="doomed"]').count(), 0);
  });

  test('a phone-width viewport has no horizontal overflow', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const hash of ['#/keys', '#/logs', '#/deployments']) {
      await go(hash);
      await page.locator('.table-wrap tbody tr').first().waitFor();
      const over = await page.evaluate(() => ({
        doc: document.documentElement.scrollWidth - document.documentElement.clientWidth,
        wrap: Math.max(...[...document.querySelectorAll('.table-wrap')].map((w) => w.getBoundingClientRect().right)) - window.innerWidth,
      }));
      assert.ok(over.doc <= 0, `${hash}: the page overflows by ${over.doc}px`);
      assert.ok(over.wrap <= 0, `${hash}: a table container overflows by ${over.wrap}px`);
      await shot(`phone-${hash.slice(2)}`);
    }
    await page.getByRole('link', { name: 'Spend' }).click();
    await page.locator('.chart canvas').first().waitFor();
  });

  test('log out forgets the key', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('Master key').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.deepEqual(cspViolations, [], 'no CSP violations');
    assert.deepEqual(pageErrors, [], 'no script errors');
  });
});
