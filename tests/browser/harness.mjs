// What the browser test scripts (run.mjs, nodes.mjs) share: the environment and its
// preflight, child processes that are always ended, waiting, a broker, the browser, pages
// that record their errors, and the runner of named tests with screenshots.
//
// Environment:
//   FABRIK             the fabrik binary (required); its web-static/ (beside it or one up)
//                      is what the engine serves
//   FABRIK_SOURCE_DIR  the source tree (default: two folders up from this file)
//   BUILD_DIR          screenshots go to BUILD_DIR/browser-screenshots/NAME.png
//                      (default: the folder of FABRIK)
//   CHROMIUM           the browser (default /usr/bin/chromium); nothing is downloaded
//   BROWSER_TESTS      comma-separated test names to run (default: all, in order)
//   KEEP_TMP=1         keep the temporary folder also when everything passed
//
// A test whose prerequisite failed is skipped. The runner prints one PASS/FAIL/SKIP line
// per test and closes with "N passed, N failed[, N skipped]"; exit status 0 only if none
// failed. Every process started here is ended on exit, on failure, on SIGINT/SIGTERM and
// on the overall deadline.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const DEADLINE_MS = 540_000; // CTest's TIMEOUT is 600 s: end (and clean up) before it kills

// ------------------------------------------------------------------ preflight

export function die(msg) {
  console.error(`browser tests: ${msg}`);
  process.exit(1);
}

export const FABRIK = process.env.FABRIK;
if (!FABRIK) die('set FABRIK to the fabrik binary');
if (!fs.existsSync(FABRIK)) die(`FABRIK=${FABRIK} does not exist; build it first`);
export const SOURCE = path.resolve(process.env.FABRIK_SOURCE_DIR || path.join(here, '..', '..'));
export const BUILD = path.resolve(process.env.BUILD_DIR || path.dirname(FABRIK));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const SHOTS = path.join(BUILD, 'browser-screenshots');
export const PYTHON = '/usr/bin/python3';
export const PUBLISHER = path.join(SOURCE, 'bench', 'assets', 'pcb_publisher.py');

if (!fs.existsSync(path.join(here, 'node_modules', 'playwright-core')))
  die(`${path.join(here, 'node_modules')} has no playwright-core: run scripts/setup.sh ` +
      '(it runs npm ci in tests/browser)');
if (!fs.existsSync(CHROMIUM))
  die(`no ${CHROMIUM}: run scripts/setup.sh (it installs Debian's chromium)`);
for (const [what, p] of [['python3', PYTHON], ['the PCB publisher', PUBLISHER]])
  if (!fs.existsSync(p)) die(`no ${what} at ${p}`);
if (spawnSync('sh', ['-c', 'command -v mosquitto'], { stdio: 'ignore' }).status !== 0)
  die('no mosquitto on PATH: run scripts/setup.sh');
{
  const exeDir = path.dirname(path.resolve(FABRIK));
  const pages = [path.join(exeDir, 'web-static'), path.join(exeDir, '..', 'web-static')];
  if (!pages.some((d) => fs.existsSync(path.join(d, 'index.html'))))
    die(`no web-static/index.html beside ${FABRIK} (or one folder up): the build copies ` +
        'web-static/ there; for a binary built without that, copy it by hand');
}

const { chromium } = await import('playwright-core');

// ------------------------------------------------------------------ processes

export const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'fabrik-browser-'));
const children = []; // {name, proc, log, exited}
const shownOnFailure = []; // the children whose log tails a failure prints
let browser = null;
let cleaningUp = null;
let stopping = ''; // the signal that stops the run

/** Starts a program in its own process group, stdout and stderr to TMP/NAME.log. */
export function start(name, cmd, args) {
  const log = path.join(TMP, `${name}.log`);
  const fd = fs.openSync(log, 'a');
  const proc = spawn(cmd, args, { cwd: TMP, stdio: ['ignore', fd, fd], detached: true });
  fs.closeSync(fd);
  const child = { name, proc, log, exited: false, code: null, signal: null };
  child.done = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      Object.assign(child, { exited: true, code, signal });
      resolve(child);
    });
    proc.on('error', (err) => {
      fs.appendFileSync(log, `\n[${path.basename(process.argv[1])}] cannot start ${cmd}: ${err.message}\n`);
      Object.assign(child, { exited: true, code: 127 });
      resolve(child);
    });
  });
  children.push(child);
  return child;
}

/** The log of `child` is printed (its tail) when setup or a test fails. */
export function showOnFailure(child) {
  shownOnFailure.push(child);
}

/** SIGTERM to the process (fabrik stops its workers itself), then SIGKILL to its group. */
export async function stop(child, graceMs = 10_000) {
  if (child.exited) return;
  try { process.kill(child.proc.pid, 'SIGTERM'); } catch { /* gone */ }
  await Promise.race([child.done, delay(graceMs)]);
  // Whatever is left in its group (itself if it did not stop, a worker, a python) goes too.
  try { process.kill(-child.proc.pid, 'SIGKILL'); } catch { /* none left */ }
}

function cleanup() {
  if (!cleaningUp) {
    cleaningUp = (async () => {
      if (browser) await Promise.race([browser.close().catch(() => {}), delay(10_000)]);
      // Publishers first, then the engines, the broker last.
      const order = ['publisher', 'fabrik', 'mosquitto'];
      const rank = (c) => order.findIndex((p) => c.name.startsWith(p));
      for (const c of [...children].sort((a, b) => rank(a) - rank(b))) await stop(c);
    })();
  }
  return cleaningUp;
}

const results = []; // {name, ok: true|false|null (skipped)}
const summary = (extraFailed = 0) =>
  `${results.filter((r) => r.ok === true).length} passed, ` +
  `${results.filter((r) => r.ok === false).length + extraFailed} failed`;

// Synchronous last resort: if node exits without cleanup() having finished.
process.on('exit', () => {
  for (const c of children)
    if (!c.exited) try { process.kill(-c.proc.pid, 'SIGKILL'); } catch { /* gone */ }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, async () => {
    if (stopping) return;
    stopping = sig;
    console.log(`browser tests: ${sig}, stopping everything`);
    await cleanup();
    console.log(`kept ${TMP} (logs, flow, data)`);
    console.log(summary(1));
    process.exit(128 + os.constants.signals[sig]);
  });
}
const deadline = setTimeout(async () => {
  if (stopping) return;
  stopping = 'deadline';
  console.error(`browser tests: over the ${DEADLINE_MS / 1000} s deadline, stopping`);
  printLogTails();
  await cleanup();
  console.log(summary(1));
  process.exit(1);
}, DEADLINE_MS);
deadline.unref();

// ------------------------------------------------------------------ helpers

export const delay = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn (sync or async) until it returns a truthy value; throws `what` on timeout. */
export async function waitFor(what, fn, timeoutMs, intervalMs = 250) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      if (e.fatal) throw e;
      last = e;
    }
    if (Date.now() > end)
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}` +
                      (last ? ` (last error: ${last.message})` : ''));
    await delay(intervalMs);
  }
}

/** An error that ends a waitFor at once. */
export function fatal(msg) {
  const e = new Error(msg);
  e.fatal = true;
  return e;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

export const readLog = (child) => { try { return fs.readFileSync(child.log, 'utf8'); } catch { return ''; } };

export function tail(text, lines) {
  return text.split('\n').slice(-lines).join('\n');
}

function printLogTails(lines = 60) {
  for (const c of shownOnFailure) {
    console.log(`----- the last ${lines} lines of ${c.log} -----`);
    console.log(tail(readLog(c), lines));
    console.log(`----- end of the ${c.name} log -----`);
  }
}

/** Runs a program to its end; its output; throws if it fails. */
export async function runToEnd(name, cmd, args, timeoutMs) {
  const c = start(name, cmd, args);
  const r = await Promise.race([c.done, delay(timeoutMs).then(() => null)]);
  if (!r) {
    await stop(c, 1000);
    throw new Error(`${name} did not finish in ${timeoutMs / 1000} s:\n${tail(readLog(c), 20)}`);
  }
  if (r.code !== 0)
    throw new Error(`${name} failed (${r.code ?? r.signal}):\n${tail(readLog(c), 20)}`);
  return readLog(c);
}

/** mosquitto on a free loopback port, without persistence; its port. */
export async function startBroker(name = 'mosquitto') {
  const port = await freePort();
  const conf = path.join(TMP, `${name}.conf`);
  fs.writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n` +
                         (process.getuid?.() === 0 ? 'user root\n' : ''));
  const mosquitto = start(name, 'mosquitto', ['-c', conf]);
  await waitFor(`mosquitto on 127.0.0.1:${port}`, async () => {
    if (mosquitto.exited) throw fatal(`mosquitto exited:\n${readLog(mosquitto)}`);
    return canConnect(port);
  }, 10_000, 100);
  return port;
}

/** Debian's headless Chromium (ended by the cleanup). */
export async function launchBrowser() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--no-first-run'],
    handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
    timeout: 60_000,
  });
  return browser;
}

/** A page that records its uncaught exceptions and failed API calls. */
export async function newPage(ctx) {
  const page = await ctx.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(`uncaught: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(`console: ${m.text()}`); });
  // A page, script, style or vendored file that is not there (the API's answers are the
  // tests' business).
  page.on('response', (r) => {
    if (r.status() >= 400 && !new URL(r.url()).pathname.startsWith('/api/'))
      page.errors.push(`missing: ${r.url()} answered ${r.status()}`);
  });
  return page;
}

/** The tbody rows of a table that hold data: not a lone "nothing yet" placeholder cell. */
export async function dataRows(page, table) {
  return page.locator(`${table} tbody tr`).evaluateAll((rows) => rows.filter(
    (r) => r.cells.length > 1 && !r.classList.contains('empty') &&
           !r.querySelector('.empty, [colspan]')).length);
}

// ------------------------------------------------------------------ the runner

const tests = [];
/** A test `name`, run after the tests `needs` passed; fn(shot) sets shot.page. */
export const test = (name, needs, fn) => tests.push({ name, needs, fn });

/**
 * Runs setUp, then the tests in order (those BROWSER_TESTS names), then cleans up.
 * `ownContext` is the browser context whose pages the runner closes after each test.
 * Ends the process with 0 when none failed.
 */
export function runTests(setUp, ownContext = () => null) {
  main(setUp, ownContext).then((code) => process.exit(code), async (e) => {
    console.log(`FAIL runner: ${e.stack || e}`);
    printLogTails();
    await cleanup();
    process.exit(1);
  });
}

async function main(setUp, ownContext) {
  const only = process.env.BROWSER_TESTS?.split(',').map((s) => s.trim()).filter(Boolean);
  let failed = false;
  fs.mkdirSync(SHOTS, { recursive: true });
  try {
    await setUp();
  } catch (e) {
    if (stopping) return new Promise(() => {});
    console.log(`FAIL setup: ${e.message}`);
    printLogTails();
    results.push({ name: 'setup', ok: false });
    failed = true;
  }
  for (const t of tests) {
    if (stopping) return new Promise(() => {}); // the signal handler ends the run
    if (only && !only.includes(t.name)) continue;
    const t0 = Date.now();
    const missing = failed ? ['setup'] : t.needs.filter((n) => results.find((r) => r.name === n)?.ok !== true &&
                                                              (!only || only.includes(n)));
    if (missing.length) {
      console.log(`SKIP ${t.name}: needs ${missing.join(', ')}`);
      results.push({ name: t.name, ok: null });
      continue;
    }
    const file = path.join(SHOTS, `${t.name}.png`);
    const shot = {
      page: null, closeWith: null, taken: false,
      async take() {
        if (this.page && !this.page.isClosed()) {
          await this.page.screenshot({ path: file, fullPage: true, timeout: 15_000 });
          this.taken = true;
        }
      },
    };
    try {
      await Promise.race([
        t.fn(shot),
        delay(240_000).then(() => { throw new Error('the test took over 240 s'); }),
      ]);
      const errors = (shot.page?.errors ?? []).filter((e) => /^(uncaught|missing)/.test(e));
      if (errors.length) throw new Error(`the page threw:\n    ${errors.join('\n    ')}`);
      console.log(`PASS ${t.name} (${((Date.now() - t0) / 1000).toFixed(1)} s, ${file})`);
      results.push({ name: t.name, ok: true });
    } catch (e) {
      if (stopping) return new Promise(() => {});
      if (!shot.taken) await shot.take().catch(() => {});
      console.log(`FAIL ${t.name} (${((Date.now() - t0) / 1000).toFixed(1)} s): ${e.message}`);
      if (shot.page?.errors?.length)
        console.log(`  the page's errors:\n    ${shot.page.errors.slice(-10).join('\n    ')}`);
      console.log(`  screenshot: ${file}; page: ${shot.page?.url?.() ?? '-'}`);
      printLogTails(40);
      results.push({ name: t.name, ok: false });
    } finally {
      if (shot.page && shot.page.context() === ownContext()) await shot.page.close().catch(() => {});
      if (shot.closeWith) await shot.closeWith.close().catch(() => {});
    }
  }
  await cleanup();
  const n = (v) => results.filter((r) => r.ok === v).length;
  const bad = n(false);
  if (bad || process.env.KEEP_TMP) console.log(`kept ${TMP} (logs, flow, data)`);
  else fs.rmSync(TMP, { recursive: true, force: true });
  console.log(`${n(true)} passed, ${bad} failed` + (n(null) ? `, ${n(null)} skipped` : ''));
  return bad === 0 && n(true) > 0 ? 0 : 1;
}
