#!/usr/bin/env node
// fabrik's operator pages in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): a real engine with a real broker, a real workflow package and boards
// from the PCB asset, then the pages as an operator uses them.
//
//   FABRIK=build/fabrik FABRIK_SOURCE_DIR=. BUILD_DIR=build node tests/browser/run.mjs
//
// The environment (FABRIK, FABRIK_SOURCE_DIR, BUILD_DIR, CHROMIUM, BROWSER_TESTS,
// KEEP_TMP) and the runner are in harness.mjs, shared with nodes.mjs.
//
// The order matters, and is this:
//   login           a page without the token shows #token-input; the token logs in
//   overview-before the graph: every actor running, except the workflow actor, which
//                   may wait (no package deployed yet)
//   upload          workflows.html: the zip through #upload-input; a row in #versions;
//                   the classifier deploys, trains on the 800 stored boards, runs
//   train           #train-button starts a run; it shows succeeded in #runs
//   predictions     predictions.html with boards flowing: rows in #class-counts, #recent
//   overview        the graph again: now every actor, the classifier too, is running
//   ingest          ingest.html: the flow's pcb_in listed read-only; the kind select offers
//                   every editable kind (the form follows it); the form adds an MQTT
//                   source line2 (topic plant/line2/#, json, into store), written to the
//                   flow's local file and applied by a reload; JSON published with
//                   mosquitto_pub on plant/line2/a is stored (a line2/... stream in
//                   /api/streams and on streams.html), and the graph has a line2 node
// Every process started here (mosquitto, fabrik and its workers, the publishers,
// Chromium) is ended on exit, on failure, on SIGINT/SIGTERM and on the overall deadline.

import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

import {
  FABRIK, SOURCE, SHOTS, TMP, PYTHON, PUBLISHER, die, start, showOnFailure, waitFor, fatal,
  readLog, runToEnd, startBroker, launchBrowser, newPage as pageIn, dataRows, test, runTests,
} from './harness.mjs';

const PACKAGE_DIR = path.join(SOURCE, 'examples', 'pcb-classifier');
if (!fs.existsSync(PACKAGE_DIR)) die(`no pcb-classifier package at ${PACKAGE_DIR}`);

// ------------------------------------------------------------------ the tests

let URL_ = '';       // http://127.0.0.1:PORT/
let TOKEN = '';
let context = null;  // the logged-in browser context
let api = null;      // its APIRequestContext, with the token as a bearer header
let brokerPort = 0;
let browser = null;

async function apiGet(route) {
  const r = await api.get(URL_ + route.replace(/^\//, ''), {
    headers: { Authorization: `Bearer ${TOKEN}` }, timeout: 15_000,
  });
  if (!r.ok()) throw new Error(`GET ${route}: HTTP ${r.status()} ${await r.text()}`);
  return r.json();
}

/** A page of the logged-in context (or of `ctx`) that records its errors. */
const newPage = (ctx = context) => pageIn(ctx);

test('login', [], async (shot) => {
  // A fresh context has no cookie: the page asks for the token.
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  try {
    const page = await newPage(ctx);
    shot.page = page;
    await page.goto(URL_, { waitUntil: 'domcontentloaded' });
    await page.locator('#token-input').waitFor({ state: 'visible', timeout: 15_000 });
    await page.locator('#token-submit').waitFor({ state: 'visible', timeout: 5_000 });
    await page.screenshot({ path: path.join(SHOTS, 'login-form.png'), fullPage: true });
    // A wrong token is refused and the form stays.
    await page.fill('#token-input', 'not-the-token-0123456789');
    const refused = page.waitForResponse((r) => r.url().endsWith('/api/login'), { timeout: 10_000 });
    await page.click('#token-submit');
    if ((await refused).status() !== 401)
      throw new Error(`a wrong token: /api/login answered ${(await refused).status()}, not 401`);
    await page.locator('#token-input').waitFor({ state: 'visible', timeout: 5_000 });
    await page.fill('#token-input', TOKEN);
    await page.click('#token-submit');
    await page.locator('#graph g.actor').first().waitFor({ state: 'attached', timeout: 20_000 });
    const cookies = await ctx.cookies(URL_);
    if (!cookies.some((c) => c.name === 'fabrik_token'))
      throw new Error(`no fabrik_token cookie after logging in: ${JSON.stringify(cookies)}`);
    // "wrong token" makes a console error (the 401); uncaught exceptions are what counts.
    page.errors = page.errors.filter((e) => !e.startsWith('console'));
    await shot.take();
  } finally {
    shot.closeWith = ctx;
  }
});

/** Logs the main context in as an operator does, through a #token= link, unless it is. */
async function ensureLoggedIn() {
  if ((await context.cookies(URL_)).some((c) => c.name === 'fabrik_token')) return;
  const page = await context.newPage();
  try {
    await page.goto(`${URL_}#token=${encodeURIComponent(TOKEN)}`, { waitUntil: 'domcontentloaded' });
    await waitFor('the fabrik_token cookie after opening the #token= link', async () =>
      (await context.cookies(URL_)).some((c) => c.name === 'fabrik_token'), 15_000);
  } finally {
    await page.close();
  }
}

/** Waits until every actor of /api/flow is a g.actor in #graph whose state passes ok(). */
async function graphStates(page, ok, timeoutMs) {
  const flow = await apiGet('/api/flow');
  const names = flow.actors.map((a) => a.name).sort();
  let seen = {};
  try {
    await waitFor('every actor node to reach its state', async () => {
      seen = Object.fromEntries(await page.locator('#graph g.actor[data-name]').evaluateAll(
        (gs) => gs.map((g) => [g.dataset.name, g.dataset.state])));
      return names.every((n) => n in seen && ok(n, seen[n]));
    }, timeoutMs);
  } catch (e) {
    throw new Error(`${e.message}; the actors: ${names.join(', ')}; ` +
                    `#graph shows: ${JSON.stringify(seen)}`);
  }
  return seen;
}

test('overview-before', ['login'], async (shot) => {
  const page = await newPage();
  shot.page = page;
  // The link `fabrik run` logs: the page logs in from the fragment and forgets it.
  await page.goto(`${URL_}#token=${encodeURIComponent(TOKEN)}`, { waitUntil: 'domcontentloaded' });
  await page.locator('#graph g.actor[data-name][data-state]').first()
    .waitFor({ state: 'attached', timeout: 20_000 });
  if (page.url().includes('token='))
    throw new Error(`the page keeps the token in its address: ${page.url()}`);
  if (!(await context.cookies(URL_)).some((c) => c.name === 'fabrik_token'))
    throw new Error('no fabrik_token cookie after opening the #token= link');
  // No package deployed yet: the workflow actor waits for one; the rest run.
  const seen = await graphStates(page, (n, s) =>
    n === 'classifier' ? ['waiting', 'running'].includes(s) : s === 'running', 30_000);
  console.log(`  #graph: ${JSON.stringify(seen)}`);
  await shot.take();
});

test('upload', ['login'], async (shot) => {
  await ensureLoggedIn();
  const page = await newPage();
  shot.page = page;
  await page.goto(`${URL_}workflows.html`, { waitUntil: 'domcontentloaded' });
  await page.locator('#drop-zone').waitFor({ state: 'attached', timeout: 15_000 });
  const input = page.locator('#upload-input');
  await input.waitFor({ state: 'attached', timeout: 15_000 });
  if ((await input.getAttribute('type')) !== 'file')
    throw new Error('#upload-input is not an <input type="file">');
  await input.setInputFiles(path.join(TMP, 'pcb.zip'));
  // The version shows in #versions.
  await waitFor('a version row in #versions', async () => (await dataRows(page, '#versions')) >= 1,
                30_000);
  const row = await page.locator('#versions tbody tr').first().innerText();
  if (!row.includes('pcb-classifier'))
    throw new Error(`the #versions row does not name pcb-classifier: ${JSON.stringify(row)}`);
  const { versions } = await apiGet('/api/workflows');
  if (versions.length !== 1) throw new Error(`/api/workflows has ${versions.length} versions`);
  // Deployed, trained on the stored boards, serving.
  let st = {};
  await waitFor('the classifier to run (/api/actors/classifier)', async () => {
    st = await apiGet('/api/actors/classifier');
    if (st.state === 'failed') throw fatal(`the classifier failed: ${st.last_error}`);
    return st.state === 'running';
  }, 150_000, 500).catch((e) => { throw new Error(`${e.message}; last status ${JSON.stringify(st)}`); });
  // The page's own view (not in the DOM contract, so only a note): a table row with the
  // classifier running, once the next status event arrives.
  const rows = page.locator('tr', { hasText: 'classifier' });
  await waitFor('a row on the page with classifier running', async () =>
    (await rows.allInnerTexts()).some((t) => {
      const cells = t.split('\t').map((c) => c.trim());
      return cells.includes('classifier') && cells.includes('running');
    }), 10_000)
    .catch(async () => console.log('  note: workflows.html shows no table row with classifier ' +
      `running; its rows: ${JSON.stringify(await rows.allInnerTexts())}`));
  await shot.take();
});

test('train', ['upload'], async (shot) => {
  await ensureLoggedIn();
  const page = await newPage();
  shot.page = page;
  await page.goto(`${URL_}workflows.html`, { waitUntil: 'domcontentloaded' });
  const select = page.locator('#train-actor');
  await select.waitFor({ state: 'attached', timeout: 15_000 });
  await waitFor('#train-actor to offer classifier', async () =>
    (await select.locator('option').evaluateAll((os) => os.map((o) => o.value)))
      .includes('classifier'), 15_000);
  await select.selectOption('classifier');
  for (const id of ['#train-stream', '#train-from', '#train-to', '#train-label'])
    await page.locator(id).waitFor({ state: 'attached', timeout: 5_000 });
  // The run made at deploy must be over (a run going on answers 409).
  await waitFor('no training run going on', async () =>
    (await apiGet('/api/runs?actor=classifier')).runs.every((r) => r.status !== 'running'), 90_000, 500);
  const before = new Set((await apiGet('/api/runs?actor=classifier')).runs.map((r) => String(r.id)));
  await page.locator('#train-button').click();
  // The new run, from the API, then its row in #runs.
  const id = await waitFor('a new run after pressing #train-button', async () => {
    const { runs } = await apiGet('/api/runs?actor=classifier');
    const fresh = runs.find((r) => !before.has(String(r.id)));
    return fresh && String(fresh.id);
  }, 15_000, 250);
  console.log(`  run ${id} started`);
  const row = page.locator(`#runs tr[data-run-id="${id}"]`);
  await row.waitFor({ state: 'attached', timeout: 15_000 });
  let status = '';
  await waitFor(`run ${id} to show succeeded in #runs`, async () => {
    status = await row.getAttribute('data-status');
    if (status === 'failed') {
      const { run } = await apiGet(`/api/runs/${id}`);
      throw fatal(`run ${id} failed: ${run.error}\n${(run.logs || []).slice(-10).join('\n')}`);
    }
    return status === 'succeeded';
  }, 90_000, 250).catch((e) => { throw new Error(`${e.message} (data-status "${status}")`); });
  await page.locator(`#runs tr[data-run-id="${id}"][data-status="succeeded"]`)
    .waitFor({ state: 'visible', timeout: 5_000 });
  await shot.take();
});

test('predictions', ['upload'], async (shot) => {
  start('publisher-live', PYTHON, [PUBLISHER, '--port', String(brokerPort), '--count', '0',
    '--rate', '20', '-q', '--seed', '2', '--start-seq', '100001']);
  await ensureLoggedIn();
  const page = await newPage();
  shot.page = page;
  await page.goto(`${URL_}predictions.html`, { waitUntil: 'domcontentloaded' });
  const chart = page.locator('#prediction-chart');
  await chart.waitFor({ state: 'visible', timeout: 15_000 });
  await waitFor('rows in #class-counts naming a class', async () =>
    (await dataRows(page, '#class-counts')) >= 1 &&
    /\b(OK|error|pseudo-error)\b/.test(await page.locator('#class-counts tbody').innerText()),
  30_000);
  await waitFor('rows in #recent', async () => (await dataRows(page, '#recent')) >= 1, 30_000);
  // Live: with boards flowing the counts grow without a reload.
  const total = async () => (await page.locator('#class-counts tbody').innerText())
    .match(/\d[\d,]*/g)?.map((n) => Number(n.replace(/,/g, ''))).reduce((a, b) => a + b, 0) ?? 0;
  const t0 = await total();
  await waitFor(`#class-counts to grow past ${t0} without a reload`, async () => (await total()) > t0,
                30_000, 500);
  console.log(`  #class-counts: ${JSON.stringify(await page.locator('#class-counts tbody').innerText())}`);
  // The chart draws (uPlot: a canvas), rather than saying its library is missing.
  await chart.locator('canvas').first().waitFor({ state: 'visible', timeout: 15_000 })
    .catch(async () => {
      throw new Error(`#prediction-chart draws no chart; it says: ${JSON.stringify(await chart.innerText())}`);
    });
  await shot.take();
});

test('overview', ['upload'], async (shot) => {
  await ensureLoggedIn();
  const page = await newPage();
  shot.page = page;
  await page.goto(URL_, { waitUntil: 'domcontentloaded' });
  const seen = await graphStates(page, (n, s) => s === 'running', 30_000);
  console.log(`  #graph: ${JSON.stringify(seen)}`);
  await shot.take();
});

test('ingest', ['login'], async (shot) => {
  if (spawnSync('sh', ['-c', 'command -v mosquitto_pub'], { stdio: 'ignore' }).status !== 0)
    throw new Error('no mosquitto_pub on PATH (Debian: mosquitto-clients): run scripts/setup.sh');
  await ensureLoggedIn();
  const page = await newPage();
  shot.page = page;
  await page.goto(`${URL_}ingest.html`, { waitUntil: 'domcontentloaded' });
  // The flow file's source is listed, read-only; or the page says why it cannot list any.
  const loadError = page.locator('#ingest-load-error');
  await waitFor('#ingest-sources to list pcb_in (or #ingest-load-error)', async () =>
    (await page.locator('#ingest-sources tr[data-name="pcb_in"]').count()) > 0 ||
    (await loadError.isVisible()), 15_000);
  if (await loadError.isVisible())
    throw new Error(`ingest.html cannot load the sources: ${await loadError.innerText()}`);
  const pcbRow = page.locator('#ingest-sources tr[data-name="pcb_in"]');
  if ((await pcbRow.getAttribute('data-local')) !== 'false')
    throw new Error('pcb_in, defined in the flow file, is not shown as such (data-local is not "false")');
  if (await pcbRow.locator('.ingest-delete').count())
    throw new Error('pcb_in, defined in the flow file, has a delete button');
  const localFile = (await page.locator('#ingest-local-file').innerText()).trim();
  console.log(`  local file: ${localFile}`);
  // Any kind that marks itself editable can be added; the form follows the kind's settings.
  const kinds = await page.locator('#ingest-kind option').evaluateAll((os) => os.map((o) => o.value));
  if (!kinds.includes('mqtt.source') || !kinds.includes('opcua.source'))
    throw new Error(`the kind select offers ${JSON.stringify(kinds)}, not mqtt.source and opcua.source`);
  await page.selectOption('#ingest-kind', 'opcua.source');
  await page.locator('#ingest-endpoint').waitFor({ state: 'attached', timeout: 5_000 });
  if (await page.locator('#ingest-broker').count())
    throw new Error('the OPC UA form shows an MQTT broker field');
  await page.selectOption('#ingest-kind', 'mqtt.source');
  await page.locator('#ingest-topics').waitFor({ state: 'attached', timeout: 5_000 });

  // A change that does not validate (a broker the flow does not have) is refused with the
  // diagnostics (FILE:LINE:COL: message) shown beside the form, and nothing is written.
  const result = page.locator('#ingest-result');
  const outcome = async () => /\b(ok|bad)\b/.test((await result.getAttribute('class')) || '') &&
                              (await result.isVisible());
  await page.fill('#ingest-name', 'line2');
  await page.fill('#ingest-topics', 'plant/line2/#');
  await page.locator('#ingest-broker').evaluate((s) => {
    s.append(new Option('no_such_broker', 'no_such_broker'));
    s.value = 'no_such_broker';
  });
  const refused = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/ingest/sources' &&
                                              r.request().method() === 'POST', { timeout: 60_000 });
  await page.click('#ingest-submit');
  if ((await refused).status() !== 400)
    throw new Error(`a source on an unknown broker: HTTP ${(await refused).status()}, not 400`);
  await waitFor('#ingest-result to show the refusal', outcome, 15_000);
  const diags = await result.locator('ul.diagnostics li').allInnerTexts();
  if (!(await result.getAttribute('class')).includes('bad') || !diags.some((d) => /:\d+:\d+: /.test(d)))
    throw new Error(`the refusal shows no FILE:LINE:COL diagnostics: ${JSON.stringify(await result.innerText())}`);
  console.log(`  refused as it should be: ${JSON.stringify(diags)}`);
  if ((await apiGet('/api/ingest')).sources.some((x) => x.name === 'line2'))
    throw new Error('a refused source was applied');
  await result.evaluate((r) => { r.className = 'result'; });

  // The form: line2 on the flow's broker, plant/line2/#, json, stored in store only.
  await page.fill('#ingest-name', 'line2');
  await page.selectOption('#ingest-broker', 'local');
  await page.fill('#ingest-topics', 'plant/line2/#');
  await page.selectOption('#ingest-format', 'json');
  await page.selectOption('#ingest-qos', '1');
  const boxes = page.locator('#ingest-store input[type="checkbox"]');
  for (const b of await boxes.all()) await b.setChecked((await b.getAttribute('value')) === 'store');
  const answer = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/ingest/sources' &&
                                             r.request().method() === 'POST', { timeout: 60_000 });
  await page.click('#ingest-submit');
  const resp = await answer;
  const sent = resp.request().postDataJSON();
  console.log(`  POST /api/ingest/sources ${JSON.stringify(sent)} -> ${resp.status()}`);
  await waitFor('#ingest-result to show the answer', outcome, 15_000);
  const said = await result.innerText();
  if (resp.status() !== 200)
    throw new Error(`adding line2: HTTP ${resp.status()}; the page says: ${JSON.stringify(said)}`);
  if (!/applied/i.test(said) || !said.includes('line2'))
    throw new Error(`#ingest-result does not say what was applied: ${JSON.stringify(said)}`);
  console.log(`  #ingest-result: ${JSON.stringify(said)}`);
  if (JSON.stringify(sent.settings?.topics) !== JSON.stringify(['plant/line2/#']) ||
      JSON.stringify(sent.stores_in) !== JSON.stringify(['store']) || sent.settings?.format !== 'json')
    throw new Error(`the form sent ${JSON.stringify(sent)}`);
  // Listed as a local (editable) source, and written to the local file beside the flow.
  const row = page.locator('#ingest-sources tr[data-name="line2"][data-local="true"]');
  await row.waitFor({ state: 'attached', timeout: 15_000 });
  if (!(await row.locator('.ingest-delete').count())) throw new Error('the local source line2 has no delete button');
  const ingest = await apiGet('/api/ingest');
  const file = ingest.local_file && path.resolve(TMP, ingest.local_file);
  if (!file || !fs.existsSync(file) || !fs.readFileSync(file, 'utf8').includes('line2'))
    throw new Error(`the local file ${JSON.stringify(ingest.local_file)} does not hold line2`);
  if (path.dirname(file) !== TMP) console.log(`  note: the local file is not beside the flow: ${file}`);

  // The new source subscribes; JSON on plant/line2/a ends up stored.
  await waitFor('line2 to run (/api/actors/line2)', async () => {
    const st = await apiGet('/api/actors/line2');
    if (st.state === 'failed') throw fatal(`line2 failed: ${st.last_error}`);
    return st.state === 'running';
  }, 30_000, 250);
  let sentN = 0;
  let stream = null;
  await waitFor('a line2/... stream with records in /api/streams', async () => {
    sentN++;
    await runToEnd(`publisher-line2-${sentN}`, 'mosquitto_pub', ['-h', '127.0.0.1', '-p', String(brokerPort),
      '-q', '1', '-t', 'plant/line2/a', '-m', JSON.stringify({ temp: 21.5 + sentN / 10 })], 10_000);
    const { stored } = await apiGet('/api/streams');
    stream = stored.find((s) => s.storage === 'store' && s.stream?.startsWith('line2/') && s.count > 0);
    return stream;
  }, 30_000, 500);
  console.log(`  ${sentN} messages published; stored: ${JSON.stringify(stream)}`);

  // streams.html lists it.
  const streams = await newPage();
  try {
    await streams.goto(`${URL_}streams.html`, { waitUntil: 'domcontentloaded' });
    await waitFor(`streams.html to list ${stream.stream}`, async () =>
      (await streams.locator('#stream-list .stream-name').allInnerTexts()).some((t) => t.trim() === stream.stream),
    15_000);
    await streams.screenshot({ path: path.join(SHOTS, 'ingest-streams.png'), fullPage: true });
    const errs = streams.errors.filter((e) => /^(uncaught|missing)/.test(e));
    if (errs.length) throw new Error(`streams.html threw:\n    ${errs.join('\n    ')}`);
  } finally {
    await streams.close();
  }
  // The overview graph has the new actor.
  const overview = await newPage();
  try {
    await overview.goto(URL_, { waitUntil: 'domcontentloaded' });
    await overview.locator('#graph g.actor[data-name="line2"]').waitFor({ state: 'attached', timeout: 20_000 });
    await overview.screenshot({ path: path.join(SHOTS, 'ingest-overview.png'), fullPage: true });
    const errs = overview.errors.filter((e) => /^(uncaught|missing)/.test(e));
    if (errs.length) throw new Error(`index.html threw:\n    ${errs.join('\n    ')}`);
  } finally {
    await overview.close();
  }
  // The ingest page, still open, counts what line2 received (status events).
  await waitFor('the line2 row to count received records', async () =>
    Number((await row.locator('.src-count').innerText()).replace(/\D/g, '')) > 0, 10_000)
    .catch((e) => console.log(`  note: ${e.message}`));
  await shot.take();
});

// ------------------------------------------------------------------ setup and run

async function setUp() {
  brokerPort = await startBroker();

  // The package (while the engine starts).
  const pkg = runToEnd('package', FABRIK, ['package', PACKAGE_DIR, '-o', path.join(TMP, 'pcb.zip')],
                       60_000);

  // The flow: the shape of flows/examples/pcb-classify.yaml.
  const flowFile = path.join(TMP, 'flow.yaml');
  fs.writeFileSync(flowFile, `# written by tests/browser/run.mjs
name: browser-test
http: {listen: 127.0.0.1:0}
brokers:
  local:
    url: tcp://127.0.0.1:${brokerPort}
actors:
  pcb_in:
    kind: mqtt.source
    broker: local
    topics: [ie/m/j/simatic/v1/+/dp, ie/d/j/simatic/v1/+/dp/r/#]
    format: simatic-v1
  store:
    kind: storage
  classifier:
    kind: workflow
    package: pcb-classifier
    train: {storage: store, stream: pcb_in/Line1/default, min_records: 500}
  predictions_out:
    kind: mqtt.sink
    broker: local
    format: json
wires:
  - pcb_in -> store
  - pcb_in -> classifier
  - classifier -> predictions_out
`);
  const fabrik = start('fabrik', FABRIK, ['run', flowFile, '--data-dir', path.join(TMP, 'data')]);
  showOnFailure(fabrik);
  const m = await waitFor('fabrik to log its web UI address and connect pcb_in', () => {
    const log = readLog(fabrik);
    if (fabrik.exited) throw fatal(`fabrik exited (${fabrik.code ?? fabrik.signal})`);
    const url = log.match(/http: web UI on (http:\/\/127\.0\.0\.1:\d+\/)/);
    return url && log.includes('pcb_in: connected') && url;
  }, 60_000, 100);
  URL_ = m[1];
  TOKEN = fs.readFileSync(path.join(TMP, 'data', 'http-token'), 'utf8').trim();
  console.log(`fabrik serves ${URL_} (log ${fabrik.log})`);
  await pkg;

  // 800 labelled boards stored before the package arrives, so its deploy can train.
  await runToEnd('publisher-800', PYTHON, [PUBLISHER, '--port', String(brokerPort), '--count',
    '800', '--rate', '0', '-q', '--seed', '1', '--start-seq', '1'], 120_000);

  browser = await launchBrowser();
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(30_000);
  api = context.request;
  await waitFor('the 800 boards stored (/api/streams)', async () => {
    const { stored } = await apiGet('/api/streams');
    const s = stored.find((x) => x.storage === 'store' && x.stream === 'pcb_in/Line1/default');
    return s && s.count >= 800;
  }, 60_000, 500);
}

runTests(setUp, () => context);
