// What the browser tests in this folder share (test.mjs, the todo app's;
// sse.mjs, hello's server-sent events): the environment they read, their
// overall time limit, the Chromium they launch, and polling a check until
// it passes.
//
//   BASE_URL   the server, e.g. http://127.0.0.1:PORT (required)
//   CHROMIUM   the browser binary (default /usr/bin/chromium)

import { chromium } from 'playwright-core';

export const BASE_URL = process.env.BASE_URL;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/**
 * Starts a test script tagged `tag` (its log lines begin `[tag]`): exits
 * with status 2 without BASE_URL, fails the run once it has taken longer
 * than `overallMs`, and returns the script's logger.
 */
export function begin(tag, overallMs) {
  if (!BASE_URL) {
    console.error('BASE_URL is not set');
    process.exit(2);
  }
  setTimeout(() => {
    console.error(`[${tag}] FAILED: the run took longer than ${overallMs / 1000} s`);
    process.exit(1);
  }, overallMs).unref();
  return (...args) => console.log(`[${tag}]`, ...args);
}

/** Runs the script's `main`; a failure is reported on stderr, exit status 1. */
export function run(tag, main) {
  main().catch((e) => {
    console.error(`[${tag}] FAILED: ${e.stack || e}`);
    process.exit(1);
  });
}

/** Debian's Chromium (nothing downloaded), headless, quiet. */
export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Polls `check` (which throws while not yet true) until it passes. */
export async function eventually(what, check, timeoutMs = 5000) {
  const start = Date.now();
  let last;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      last = e;
    }
    if (Date.now() - start > timeoutMs) {
      throw new Error(`${what}: not true within ${timeoutMs} ms: ${last && last.message}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
