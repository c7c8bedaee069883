#!/usr/bin/env node
// The one view of a split flow in headless Chromium: three real `fabrik run FLOW --node
// NAME` processes on loopback (edge: an MQTT source; fog: a storage; cloud: a storage),
// a real mosquitto and boards from the PCB asset, and the overview page of the edge only.
//
//   FABRIK=build/fabrik FABRIK_SOURCE_DIR=. BUILD_DIR=build node tests/browser/nodes.mjs
//
// The environment (FABRIK, FABRIK_SOURCE_DIR, BUILD_DIR, CHROMIUM, BROWSER_TESTS,
// KEEP_TMP) and the runner are in harness.mjs, shared with run.mjs. The tests, in order:
//   nodes       the edge's overview lists every node (#nodes) reachable, with its actors
//               and their states; every actor, the other nodes' too, running in #graph
//               and #actors; both links (#links: edge -> fog/store, edge -> cloud/archive)
//               connected, with a round trip and a backlog
//   node-away   the fog stopped with SIGTERM: the same page shows it unreachable with its
//               error and its actor store unreachable, the edge's link to fog/store not
//               connected with a backlog that grows while boards still come in, and the
//               link to the cloud connected
// Each node keeps its state in data/NAME beside the flow (no --data-dir), as an operator
// would run them.

import fs from 'node:fs';
import path from 'node:path';

import {
  FABRIK, TMP, PYTHON, PUBLISHER, start, stop, showOnFailure, waitFor, fatal, readLog,
  freePort, startBroker, launchBrowser, newPage, test, runTests,
} from './harness.mjs';

const NODES = ['edge', 'fog', 'cloud'];
const ACTORS = { pcb_in: 'edge', store: 'fog', archive: 'cloud' }; // actor -> its node
const LINKS = ['edge->fog/store', 'edge->cloud/archive']; // FROM->PEER/ACTOR, as #links names them
const [toFog, toCloud] = LINKS;

let brokerPort = 0;
let edgeUrl = '';   // http://127.0.0.1:PORT/ of the edge's web UI
let context = null; // logged in to the edge
const node = {};    // name -> its fabrik child

/** What the Nodes and Links tables show, as text an operator reads. */
async function oneView(page) {
  return page.evaluate(() => {
    const text = (e) => (e ? e.textContent.trim() : '');
    return {
      nodes: Object.fromEntries([...document.querySelectorAll('#nodes tbody tr[data-node]')].map((r) => [
        r.dataset.node, {
          state: text(r.querySelector('.node-state .badge')),
          error: text(r.querySelector('.node-error')),
          actors: Object.fromEntries([...r.querySelectorAll('[data-actor]')].map((a) =>
            [a.dataset.actor, text(a.querySelector('.badge'))])),
        }])),
      links: Object.fromEntries([...document.querySelectorAll('#links tbody tr[data-link]')].map((r) => [
        r.dataset.link, {
          from: text(r.cells[0]),
          to: text(r.cells[1]),
          state: text(r.querySelector('.link-state .badge')),
          rtt: text(r.querySelector('.rtt')),
          backlog: text(r.querySelector('.backlog')),
          error: text(r.querySelector('.link-error')),
        }])),
      // Every actor of the flow, this node's and the others', in the graph and the table.
      graph: Object.fromEntries([...document.querySelectorAll('#graph g.actor[data-name]')].map((g) =>
        [g.dataset.name, g.dataset.state])),
      table: Object.fromEntries([...document.querySelectorAll('#actors tbody tr[data-actor]')].map((r) =>
        [r.dataset.actor, text(r.querySelector('.badge'))])),
    };
  });
}

const number = (s) => (/^[\d,.\s]+$/.test(s) ? Number(s.replace(/[^\d]/g, '')) : NaN);

/** Waits until the page's one view passes ok(view); the last view in the error. */
async function viewUntil(page, what, ok, timeoutMs) {
  let last = null;
  try {
    return await waitFor(what, async () => { last = await oneView(page); return ok(last) && last; },
                         timeoutMs, 500);
  } catch (e) {
    throw new Error(`${e.message}; the page shows ${JSON.stringify(last)}`);
  }
}

/** Boards from the PCB asset, `rate` a second, from seq `first` on (runs until stopped). */
function publishBoards(name, first, rate) {
  return start(name, PYTHON, [PUBLISHER, '--port', String(brokerPort), '--count', '0',
    '--rate', String(rate), '-q', '--seed', '3', '--start-seq', String(first)]);
}

test('nodes', [], async (shot) => {
  const page = await newPage(context);
  shot.page = page;
  await page.goto(edgeUrl, { waitUntil: 'domcontentloaded' });
  await page.locator('#nodes-panel').waitFor({ state: 'visible', timeout: 20_000 });
  const here = (await page.locator('#this-node').innerText()).trim();
  if (here !== 'edge') throw new Error(`#this-node says ${JSON.stringify(here)}, not edge`);
  const v = await viewUntil(page, 'every node reachable with its actors running (also in the graph ' +
                                  'and the Actors table), and both links connected with a round ' +
                                  'trip and a backlog', (v) =>
    NODES.every((n) => v.nodes[n]?.state === 'running') &&
    Object.entries(ACTORS).every(([a, n]) => v.nodes[n].actors[a] === 'running' &&
                                             v.graph[a] === 'running' && v.table[a] === 'running') &&
    LINKS.every((l) => v.links[l]?.from === l.split('->')[0] &&
      v.links[l].to === l.split('->')[1].replace('/', ' / ') &&
      v.links[l].state === 'connected' && /^\d+(\.\d+)? ms$/.test(v.links[l].rtt) &&
      !Number.isNaN(number(v.links[l].backlog))), 30_000);
  const extra = Object.keys(v.nodes).filter((n) => !NODES.includes(n));
  if (extra.length) throw new Error(`#nodes lists nodes the flow does not have: ${extra}`);
  console.log(`  ${JSON.stringify(v)}`);
  await shot.take();
});

test('node-away', ['nodes'], async (shot) => {
  const page = await newPage(context);
  shot.page = page;
  await page.goto(edgeUrl, { waitUntil: 'domcontentloaded' });
  await viewUntil(page, 'the fog reachable before it stops',
                  (v) => v.nodes.fog?.state === 'running', 20_000);
  await stop(node.fog);
  if (node.fog.code !== 0)
    throw new Error(`the fog did not stop cleanly on SIGTERM (${node.fog.code ?? node.fog.signal})`);
  const away = await viewUntil(page, 'the fog unreachable with its error, the link to fog/store ' +
                                     'not connected, the link to cloud/archive connected', (v) =>
    v.nodes.fog?.state === 'unreachable' && v.nodes.fog.error !== '' &&
    v.graph.store === 'unreachable' && v.table.store === 'unreachable' &&
    v.graph.archive === 'running' && v.graph.pcb_in === 'running' &&
    v.nodes.edge?.state === 'running' && v.nodes.cloud?.state === 'running' &&
    v.links[toFog] && v.links[toFog].state !== 'connected' &&
    v.links[toCloud]?.state === 'connected', 30_000);
  console.log(`  fog: ${JSON.stringify(away.nodes.fog)}; link: ${JSON.stringify(away.links[toFog])}`);
  // Boards keep coming in at the edge: what the fog cannot take waits in the backlog.
  const before = number(away.links[toFog].backlog);
  if (Number.isNaN(before))
    throw new Error(`the fog/store backlog is not a number: ${away.links[toFog].backlog}`);
  publishBoards('publisher-away', 200001, 20);
  const grown = await viewUntil(page, `the fog/store backlog to grow past ${before}`, (v) =>
    number(v.links[toFog]?.backlog) > before && v.links[toFog].state !== 'connected',
  30_000);
  console.log(`  backlog ${before} -> ${grown.links[toFog].backlog}; ` +
              `cloud/archive ${JSON.stringify(grown.links[toCloud])}`);
  await shot.take();
});

// ------------------------------------------------------------------ setup and run

async function setUp() {
  brokerPort = await startBroker();
  const ports = {};
  for (const n of NODES) ports[n] = { listen: await freePort(), http: await freePort() };
  const flowFile = path.join(TMP, 'flow.yaml');
  fs.writeFileSync(flowFile, `# written by tests/browser/nodes.mjs
name: browser-nodes
nodes:
${NODES.map((n) => `  ${n}: {listen: "127.0.0.1:${ports[n].listen}", http: "127.0.0.1:${ports[n].http}"}`).join('\n')}
brokers:
  local:
    url: tcp://127.0.0.1:${brokerPort}
actors:
  pcb_in:
    kind: mqtt.source
    broker: local
    topics: [ie/m/j/simatic/v1/+/dp, ie/d/j/simatic/v1/+/dp/r/#]
    format: simatic-v1
    on: edge
  store:
    kind: storage
    on: fog
  archive:
    kind: storage
    on: cloud
wires:
  - pcb_in -> store
  - pcb_in -> archive
`);
  for (const n of NODES) {
    node[n] = start(`fabrik-${n}`, FABRIK, ['run', flowFile, '--node', n]);
    showOnFailure(node[n]);
  }
  const edge = node.edge;
  await waitFor('the edge to serve its web UI, connect pcb_in and both links', () => {
    for (const n of NODES)
      if (node[n].exited) throw fatal(`fabrik --node ${n} exited (${node[n].code ?? node[n].signal})`);
    const log = readLog(edge);
    return log.includes(`http: web UI on http://127.0.0.1:${ports.edge.http}/`) &&
           log.includes('pcb_in: connected') && log.includes('link fog/store: connected') &&
           log.includes('link cloud/archive: connected');
  }, 60_000, 100);
  edgeUrl = `http://127.0.0.1:${ports.edge.http}/`;
  // The node's state is in data/edge beside the flow.
  const token = fs.readFileSync(path.join(TMP, 'data', 'edge', 'http-token'), 'utf8').trim();
  console.log(`the edge serves ${edgeUrl} (logs in ${TMP})`);
  // Boards flowing, so the links deliver (and measure their round trip).
  publishBoards('publisher-live', 1, 20);

  const browser = await launchBrowser();
  context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  context.setDefaultTimeout(30_000);
  // Logged in as an operator is, through the #token= link the engine logs.
  const page = await context.newPage();
  await page.goto(`${edgeUrl}#token=${encodeURIComponent(token)}`, { waitUntil: 'domcontentloaded' });
  await waitFor('the fabrik_token cookie after opening the #token= link', async () =>
    (await context.cookies(edgeUrl)).some((c) => c.name === 'fabrik_token'), 15_000);
  await page.close();
}

runTests(setUp, () => context);
