// Real-browser test of the todo example, run by tests/browser.rs.
//
// Drives Debian's Chromium (nothing is downloaded: playwright-core only)
// in two separate browser contexts, as two users would, against a running
// server. Environment:
//
//   BASE_URL    the app, e.g. http://127.0.0.1:PORT (required)
//   SCREENSHOT  where to save a screenshot of the populated page (optional)
//   CHROMIUM    the browser binary (default /usr/bin/chromium)
//   TODO_LIVE=1 also check that each change shows up in the other context
//               without a reload (needs the server's live updates)
//
// Exits non-zero on the first failed check, with the reason on stderr.

import assert from 'node:assert/strict';
import { BASE_URL, begin, eventually, launch, run } from './common.mjs';

const SCREENSHOT = process.env.SCREENSHOT;
const LIVE = process.env.TODO_LIVE === '1';
/** How long a change may take to reach the other browser. */
const LIVE_WITHIN_MS = 2000;
/** Upper bound for the whole run. */
const OVERALL_MS = 120_000;

const log = begin('browser', OVERALL_MS);

/** The texts of the items shown, in order. */
async function texts(page) {
  return page.locator('#list .todo-item .todo-text').allTextContents();
}

function item(page, text) {
  return page.locator('#list .todo-item').filter({
    has: page.locator('.todo-text', { hasText: new RegExp(`^${escapeRegExp(text)}$`) }),
  });
}

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function expectTexts(page, expected, what, timeoutMs) {
  await eventually(what, async () => assert.deepEqual(await texts(page), expected), timeoutMs);
}

async function expectCount(page, expected, what) {
  await eventually(what, async () =>
    assert.equal((await page.locator('#count').textContent()).trim(), expected));
}

async function isDone(page, text) {
  const li = item(page, text);
  const cls = await li.getAttribute('class');
  const checked = await li.locator('.toggle').isChecked();
  assert.equal(cls.split(/\s+/).includes('done'), checked, `class and checkbox agree for ${text}`);
  return checked;
}

async function expectDone(page, text, done, what, timeoutMs) {
  await eventually(what, async () => assert.equal(await isDone(page, text), done), timeoutMs);
}

async function open(browser, name) {
  const context = await browser.newContext({ viewport: { width: 760, height: 720 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => {
    console.error(`[browser] ${name}: uncaught page error: ${e.message}`);
    process.exitCode = 1;
  });
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/\/ws\b|WebSocket/.test(msg.text()) && !LIVE) {
      // WebSocket failures are expected until live updates land.
      log(`${name} console: ${msg.text()}`);
    }
  });
  await page.goto(BASE_URL);
  await page.waitForSelector('html[data-loaded="true"]');
  return page;
}

async function add(page, text) {
  await page.fill('#new-todo', text);
  await page.press('#new-todo', 'Enter');
  await eventually(`"${text}" added`, async () => assert.ok((await texts(page)).includes(text)));
  assert.equal(await page.inputValue('#new-todo'), '', 'the input is cleared after adding');
}

/**
 * Before acting in one context on what the other changed: without live
 * updates, reload to see it (with them, the change is already there).
 */
async function catchUp(page) {
  if (LIVE) return;
  await page.reload();
  await page.waitForSelector('html[data-loaded="true"]');
}

/** In the other context: the change appears without a reload (live mode). */
async function seenLive(what, check) {
  if (!LIVE) return;
  await check(LIVE_WITHIN_MS);
  log(`  live: ${what} reached the other browser`);
}

/** A crisp (2x) picture of the page in a fresh context, cropped to it. */
async function screenshot(browser, path) {
  const context = await browser.newContext({ viewport: { width: 720, height: 600 }, deviceScaleFactor: 2 });
  try {
    const page = await context.newPage();
    await page.goto(BASE_URL);
    await page.waitForSelector('html[data-loaded="true"]');
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    const bottom = await page.evaluate(() => document.querySelector('.hint').getBoundingClientRect().bottom);
    await page.setViewportSize({ width: 720, height: Math.ceil(bottom) + 40 });
    await page.screenshot({ path, animations: 'disabled' });
  } finally {
    await context.close();
  }
}

async function main() {
  const browser = await launch();
  log(`Chromium ${browser.version()}; live checks ${LIVE ? 'ON' : 'off (TODO_LIVE unset)'}`);
  try {
    const a = await open(browser, 'A');
    const b = await open(browser, 'B');

    log('the page: empty list, counter, live indicator');
    for (const page of [a, b]) {
      assert.deepEqual(await texts(page), []);
      assert.equal((await page.locator('#count').textContent()).trim(), '0 items left');
      assert.ok(await page.locator('#empty').isVisible(), 'the empty-list message shows');
      const state = await page.locator('#live').getAttribute('data-state');
      assert.ok(['connecting', 'live', 'reconnecting', 'offline'].includes(state), `indicator state ${state}`);
    }
    if (LIVE) {
      for (const page of [a, b]) {
        await eventually('the indicator says live', async () =>
          assert.equal(await page.locator('#live').getAttribute('data-state'), 'live'));
      }
    }

    log('add (A)');
    await add(a, 'Buy oat milk');
    await add(a, 'Walk the dog');
    await expectTexts(a, ['Buy oat milk', 'Walk the dog'], 'A lists both');
    await expectCount(a, '2 items left', 'A counts 2');
    await seenLive('two adds', (t) => expectTexts(b, ['Buy oat milk', 'Walk the dog'], 'B sees A\'s adds', t));

    log('add (B)');
    await add(b, 'Write the release notes');
    await expectCount(b, '3 items left', 'B counts 3');
    await seenLive('B\'s add', (t) =>
      expectTexts(a, ['Buy oat milk', 'Walk the dog', 'Write the release notes'], 'A sees B\'s add', t));

    log('toggle (A)');
    await item(a, 'Buy oat milk').locator('.toggle').check();
    await expectDone(a, 'Buy oat milk', true, 'A shows it done');
    await expectCount(a, '2 items left', 'A counts 2 left');
    await seenLive('toggle', (t) => expectDone(b, 'Buy oat milk', true, 'B sees it done', t));

    log('edit by double-click (B)');
    await item(b, 'Write the release notes').locator('.todo-text').dblclick();
    const field = b.locator('#list .edit-input');
    await field.waitFor();
    assert.equal(await field.inputValue(), 'Write the release notes');
    await field.fill('Write the release notes for 0.2');
    await field.press('Enter');
    await expectTexts(b, ['Buy oat milk', 'Walk the dog', 'Write the release notes for 0.2'], 'B shows the edit');
    assert.equal(await b.locator('#list .edit-input').count(), 0, 'the edit field is gone');
    await seenLive('edit', (t) =>
      expectTexts(a, ['Buy oat milk', 'Walk the dog', 'Write the release notes for 0.2'], 'A sees B\'s edit', t));

    log('edit by the edit button, Escape cancels (A)');
    await catchUp(a);
    await item(a, 'Walk the dog').hover();
    await item(a, 'Walk the dog').locator('.edit').click();
    await a.locator('#list .edit-input').fill('something else');
    await a.locator('#list .edit-input').press('Escape');
    await expectTexts(a, ['Buy oat milk', 'Walk the dog', 'Write the release notes for 0.2'], 'Escape keeps the text');

    log('filters (A)');
    await a.click('.filters a[data-filter="active"]');
    await expectTexts(a, ['Walk the dog', 'Write the release notes for 0.2'], 'Active hides done items');
    await a.click('.filters a[data-filter="done"]');
    await expectTexts(a, ['Buy oat milk'], 'Done shows only done items');
    assert.ok(a.url().endsWith('#/done'), 'the filter is in the URL');
    await a.click('.filters a[data-filter="all"]');
    await expectTexts(a, ['Buy oat milk', 'Walk the dog', 'Write the release notes for 0.2'], 'All shows all');

    log('untoggle (B)');
    await catchUp(b);
    await expectDone(b, 'Buy oat milk', true, 'B sees A\'s toggle');
    await item(b, 'Buy oat milk').locator('.toggle').uncheck();
    await expectDone(b, 'Buy oat milk', false, 'B shows it not done');
    await expectCount(b, '3 items left', 'B counts 3 left');
    await seenLive('untoggle', (t) => expectDone(a, 'Buy oat milk', false, 'A sees it not done', t));

    log('delete (A)');
    await catchUp(a);
    await item(a, 'Walk the dog').hover();
    await item(a, 'Walk the dog').locator('.delete').click();
    await expectTexts(a, ['Buy oat milk', 'Write the release notes for 0.2'], 'A no longer lists it');
    await expectCount(a, '2 items left', 'A counts 2');
    await seenLive('delete', (t) =>
      expectTexts(b, ['Buy oat milk', 'Write the release notes for 0.2'], 'B sees the delete', t));

    log('a rejected input shows an error and changes nothing (A)');
    await a.evaluate(() => {
      // Bypass the input's maxlength, as a script could.
      document.querySelector('#new-todo').removeAttribute('maxlength');
    });
    await a.fill('#new-todo', 'x'.repeat(501));
    await a.press('#new-todo', 'Enter');
    await eventually('the error shows', async () => {
      assert.ok(await a.locator('#error').isVisible());
      assert.match(await a.locator('#error').textContent(), /too long/);
    });
    await expectTexts(a, ['Buy oat milk', 'Write the release notes for 0.2'], 'nothing was added');
    await a.fill('#new-todo', '');

    log('every worker sees the same database (B reloads a few times)');
    for (let i = 0; i < 4; i += 1) {
      await b.reload();
      await b.waitForSelector('html[data-loaded="true"]');
      await expectTexts(b, ['Buy oat milk', 'Write the release notes for 0.2'], `B after reload ${i + 1}`);
    }

    if (SCREENSHOT) {
      log('screenshot');
      for (const text of ['Book the dentist', 'Renew the passport', 'Water the plants']) await add(a, text);
      await item(a, 'Water the plants').locator('.toggle').check();
      await expectDone(a, 'Water the plants', true, 'done before the screenshot');
      await screenshot(browser, SCREENSHOT);
      log(`saved ${SCREENSHOT}`);
    }
  } finally {
    await browser.close();
  }
  log(`all checks passed${LIVE ? ', live checks included' : ''}`);
}

run('browser', main);
