// Real-browser test of tine's server-sent events, run by hello's
// tests/browser_sse.rs against `hello --workers 4` (it lives here to share
// this folder's playwright-core install with the todo test).
//
// Opens pages, each with an EventSource on /sse/browser, until their
// streams are held by at least two worker processes (each stream's first
// event names its worker), then publishes with POST /publish/browser
// (plain, and with event ids) and checks that every page's EventSource
// receives every message, with its id as `lastEventId`.
//
// Environment: BASE_URL and CHROMIUM (see common.mjs).

import assert from 'node:assert/strict';
import { BASE_URL, begin, eventually, launch, run } from './common.mjs';

const OVERALL_MS = 90_000;
/** How long each thing awaited may take. */
const WAIT_MS = 10_000;

const log = begin('sse', OVERALL_MS);

/** A page (own browser context, own connections) listening on the topic. */
async function listener(browser) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (e) => {
    console.error(`[sse] uncaught page error: ${e.message}`);
    process.exitCode = 1;
  });
  await page.goto(`${BASE_URL}/plaintext`);
  await page.evaluate(() => {
    window.got = [];
    window.pid = null;
    window.opened = 0;
    const es = new EventSource('/sse/browser');
    es.onopen = () => { window.opened += 1; };
    es.addEventListener('hello', (e) => { window.pid = e.data; });
    es.onmessage = (e) => window.got.push({ data: e.data, id: e.lastEventId });
  });
  const pid = await eventually('the stream says hello', async () => {
    const p = await page.evaluate(() => window.pid);
    assert.ok(p, 'no hello yet');
    return p;
  }, WAIT_MS);
  return { context, page, pid };
}

async function publish(body, id) {
  const url = `${BASE_URL}/publish/browser${id ? `?id=${id}` : ''}`;
  const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'text/plain' } });
  assert.equal(res.status, 202, `POST ${url}`);
}

async function main() {
  const browser = await launch();
  log(`Chromium ${browser.version()}`);
  try {
    const pages = [];
    const pids = new Set();
    for (let i = 0; i < 24 && (pages.length < 4 || pids.size < 2); i += 1) {
      const l = await listener(browser);
      pages.push(l);
      pids.add(l.pid);
    }
    log(`${pages.length} EventSources on ${pids.size} workers: ${[...pids].join(', ')}`);
    assert.ok(pids.size >= 2, `all streams on one worker: ${[...pids]}`);

    const plain = ['one', 'two', 'three'];
    for (const text of plain) await publish(text);
    for (const [i, l] of pages.entries()) {
      await eventually(`page ${i} (${l.pid}) got the plain messages`, async () => {
        const got = await l.page.evaluate(() => window.got.map((m) => m.data));
        assert.deepEqual([...got].sort(), [...plain].sort());
      }, WAIT_MS);
    }
    await publish('with an id', '42');
    for (const [i, l] of pages.entries()) {
      await eventually(`page ${i} got the event with id 42`, async () => {
        const last = await l.page.evaluate(() => window.got[window.got.length - 1]);
        assert.deepEqual(last, { data: 'with an id', id: '42' });
      }, WAIT_MS);
      assert.equal(await l.page.evaluate(() => window.opened), 1, 'one open, no reconnects');
    }
  } finally {
    await browser.close();
  }
  log('all checks passed');
}

run('sse', main);
