// Overview: the flow as a layered graph, live states and throughput, the watched directory.
import { api, on, store, flow, el, $, fmtInt, fmtRate, stateBadge } from './app.js';

const SVG = 'http://www.w3.org/2000/svg';
const W = 190, H = 70, COL = W + 130, ROW = H + 34, PAD = 24, TOP = 26;

function s(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

/** Layers: sources left, sinks right, the rest by their longest path from a source. */
function layout(actors, wires) {
  const names = actors.map((a) => a.name);
  const byName = new Map(actors.map((a) => [a.name, a]));
  const preds = new Map(names.map((n) => [n, []]));
  const succs = new Map(names.map((n) => [n, []]));
  for (const w of wires) {
    if (!preds.has(w.to) || !succs.has(w.from)) continue;
    preds.get(w.to).push(w.from);
    succs.get(w.from).push(w.to);
  }
  const layer = new Map();
  for (const n of names) layer.set(n, byName.get(n).role === 'source' || preds.get(n).length === 0 ? 0 : 1);
  // Longest path, bounded so that a cycle cannot loop forever.
  for (let pass = 0; pass < names.length; pass++) {
    let changed = false;
    for (const w of wires) {
      if (!layer.has(w.from) || !layer.has(w.to)) continue;
      if (byName.get(w.to).role === 'source') continue;
      const want = layer.get(w.from) + 1;
      if (want > layer.get(w.to) && want < names.length + 1) { layer.set(w.to, want); changed = true; }
    }
    if (!changed) break;
  }
  let maxLayer = Math.max(0, ...layer.values());
  const anySink = names.some((n) => byName.get(n).role === 'sink');
  if (anySink) {
    const nonSinkMax = Math.max(0, ...names.filter((n) => byName.get(n).role !== 'sink').map((n) => layer.get(n)));
    maxLayer = nonSinkMax + 1;
    for (const n of names) if (byName.get(n).role === 'sink') layer.set(n, maxLayer);
  }
  // A wire across several layers gets a waypoint in each layer between, so that it is
  // ordered like a node and goes around the actors instead of through them.
  const routes = [];
  const all = names.slice();
  wires.forEach((w, wi) => {
    if (!layer.has(w.from) || !layer.has(w.to)) return;
    const route = [w.from];
    const a = layer.get(w.from), b = layer.get(w.to);
    let prev = w.from;
    for (let l = a + 1; l < b; l++) {
      const d = `\u0000wire${wi}:${l}`;
      layer.set(d, l);
      preds.set(d, [prev]);
      succs.set(d, []);
      succs.get(prev).push(d);
      all.push(d);
      route.push(d);
      prev = d;
    }
    if (prev !== w.from) {
      const drop = (list, x) => { const i = list.indexOf(x); if (i >= 0) list.splice(i, 1); };
      drop(succs.get(w.from), w.to);
      drop(preds.get(w.to), w.from);
      succs.get(prev).push(w.to);
      preds.get(w.to).push(prev);
    }
    route.push(w.to);
    routes.push({ wire: w, route });
  });
  const cols = [];
  for (let i = 0; i <= maxLayer; i++) cols.push([]);
  for (const n of all) cols[layer.get(n)].push(n);
  const pruned = cols.filter((c) => c.length);
  // Order within a layer by the mean position of neighbours (a few sweeps both ways).
  const pos = new Map();
  const index = () => pruned.forEach((c) => c.forEach((n, i) => pos.set(n, i - (c.length - 1) / 2)));
  index();
  const bary = (n, nb) => {
    const p = nb.get(n).filter((m) => pos.has(m));
    return p.length ? p.reduce((a, m) => a + pos.get(m), 0) / p.length : pos.get(n);
  };
  for (let sweep = 0; sweep < 4; sweep++) {
    const down = sweep % 2 === 0;
    const order = down ? pruned.slice(1) : pruned.slice(0, -1).reverse();
    for (const c of order) {
      const key = new Map(c.map((n) => [n, bary(n, down ? preds : succs)]));
      c.sort((a, b) => key.get(a) - key.get(b));
      index();
    }
  }
  const tallest = Math.max(1, ...pruned.map((c) => c.length));
  const width = PAD * 2 + pruned.length * W + (pruned.length - 1) * (COL - W);
  const height = TOP + PAD + tallest * ROW - (ROW - H) + PAD;
  const at = new Map();
  pruned.forEach((c, ci) => {
    const offset = ((tallest - c.length) * ROW) / 2;
    c.forEach((n, ri) => at.set(n, { x: PAD + ci * COL, y: TOP + PAD + offset + ri * ROW, col: ci }));
  });
  return { at, width, height, cols: pruned, routes };
}

const order = new Map();   // name -> position, left to right, top to bottom
const placement = new Map(); // name -> {kind, node} from the flow (node: its `on:`)
// A split flow: the statuses of the actors on the other nodes (GET /api/nodes), shown
// beside this node's own; an actor of a node that is away is shown unreachable.
const remote = new Map();  // name -> status, with its node
let local = [];            // this node's statuses, as the last status event had them
const nodes = new Map();   // name -> {g, state text, counts text, err text}
const wireLabels = [];     // {from, text, rect, path}

function drawGraph(f) {
  const box = $('#graph');
  box.textContent = '';
  nodes.clear();
  order.clear();
  wireLabels.length = 0;
  placement.clear();
  for (const a of f.actors) placement.set(a.name, { kind: a.kind, node: a.node || '' });
  if (!f.actors.length) { box.append(el('p', { class: 'empty' }, 'This flow has no actors.')); return; }
  const { at, width, height, cols, routes } = layout(f.actors, f.wires);
  const placed = f.actors.map((a) => a.name).sort((a, b) => at.get(a).x - at.get(b).x || at.get(a).y - at.get(b).y);
  placed.forEach((n, i) => order.set(n, i));
  const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'flow graph' });
  const defs = s('defs', {},
    s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' })));
  svg.append(defs);
  const byName = new Map(f.actors.map((a) => [a.name, a]));
  // Column titles.
  cols.forEach((c, ci) => {
    const roles = new Set(c.filter((n) => byName.has(n)).map((n) => byName.get(n).role));
    const title = roles.size === 1 ? { source: 'sources', sink: 'sinks', stage: 'stages' }[[...roles][0]] || '' : '';
    if (title) svg.append(s('text', { x: PAD + ci * COL + W / 2, y: 16, 'text-anchor': 'middle', class: 'layer-title' }, title));
  });
  const wiresG = s('g', {});
  const labelsG = s('g', {});
  svg.append(wiresG);
  for (const { wire: w, route } of routes) {
    const a = at.get(w.from), b = at.get(w.to);
    if (!a || !b) continue;
    let d, mx, my;
    if (b.col > a.col) {
      // Through each waypoint: from the right edge of one to the left edge of the next.
      const pts = route.map((n, i) => {
        const p = at.get(n);
        const y = p.y + H / 2;
        return { xin: i === 0 ? p.x + W : p.x, xout: i === route.length - 1 ? p.x - 2 : p.x + W, y };
      });
      d = `M${pts[0].xin},${pts[0].y}`;
      for (let i = 1; i < pts.length; i++) {
        const x0 = pts[i - 1].xout, y0 = pts[i - 1].y, x3 = i === pts.length - 1 ? pts[i].xout : pts[i].xin, y3 = pts[i].y;
        const dx = Math.max(30, (x3 - x0) / 2);
        d += ` C${x0 + dx},${y0} ${x3 - dx},${y3} ${x3},${y3}`;
        if (i < pts.length - 1) d += ` L${pts[i].xout},${y3}`;
      }
      // The label on the first stretch, where the wire leaves its actor.
      const x0 = pts[0].xin, y0 = pts[0].y, x3 = pts.length > 2 ? pts[1].xin : pts[1].xout, y3 = pts[1].y;
      mx = (x0 + x3) / 2;
      my = (y0 + y3) / 2;
    } else {
      // A wire back to an earlier column: loop under the nodes.
      const x0 = a.x + W, y0 = a.y + H / 2, x3 = b.x - 2, y3 = b.y + H / 2;
      const low = Math.max(a.y, b.y) + H + 18;
      d = `M${x0},${y0} C${x0 + 60},${y0} ${x0 + 60},${low} ${(x0 + x3) / 2},${low} S${x3 - 60},${y3} ${x3},${y3}`;
      mx = (x0 + x3) / 2; my = low;
    }
    const path = s('path', { d, class: 'wire', 'marker-end': 'url(#arrow)' });
    path.append(s('title', {}, `${w.from} → ${w.to}`));
    wiresG.append(path);
    const text = s('text', { x: mx, y: my + 4, 'text-anchor': 'middle' }, '–');
    const rect = s('rect', { x: mx - 26, y: my - 10, width: 52, height: 19, rx: 9 });
    labelsG.append(s('g', { class: 'wire-label' }, rect, text));
    wireLabels.push({ from: w.from, text, rect, path, mx });
  }
  for (const a of f.actors) {
    const p = at.get(a.name);
    const g = s('g', {
      class: 'actor', 'data-name': a.name, 'data-state': 'unknown', transform: `translate(${p.x},${p.y})`,
      tabindex: 0, role: 'link', 'aria-label': `${a.name} (${a.kind})`,
    });
    const tip = s('title', {}, `${a.name} — ${a.kind}`);
    const name = s('text', { x: 14, y: 22, class: 'name' }, clip(a.name, 22));
    const kind = s('text', { x: 14, y: 41, class: 'kind' }, clip(a.kind, 16));
    const state = s('text', { x: W - 10, y: 41, class: 'statename', 'text-anchor': 'end' }, '…');
    const counts = s('text', { x: 14, y: 60, class: 'stat' }, '');
    g.append(tip, s('rect', { class: 'box', width: W, height: H, rx: 8 }),
      s('rect', { class: 'bar', x: 0, y: 0, width: 5, height: H, rx: 2 }), name, kind, state, counts);
    const open = () => { location.href = 'actor.html?name=' + encodeURIComponent(a.name); };
    g.addEventListener('click', open);
    g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); open(); } });
    svg.append(g);
    nodes.set(a.name, { g, state, counts, tip, kind: a.kind });
  }
  svg.append(labelsG);
  box.append(svg);
}

function clip(t, n) { t = String(t); return t.length > n ? t.slice(0, n - 1) + '…' : t; }

function updateGraph() {
  for (const [name, n] of nodes) {
    const st = store.actors.get(name) || remote.get(name);
    if (!st) continue;
    n.g.setAttribute('data-state', st.state);
    n.state.textContent = st.state;
    let c = `in ${fmtInt(st.in)} · out ${fmtInt(st.out)}`;
    if (Number(st.errors) > 0) c += ` · ${fmtInt(st.errors)} err`;
    n.counts.textContent = clip(c, 30);
    n.tip.textContent = `${name} — ${n.kind}, ${st.state}` + (st.last_error ? `\nlast error: ${st.last_error}` : '');
  }
  for (const w of wireLabels) {
    const r = store.rates.get(w.from);
    const t = r === undefined ? '–' : fmtRate(r);
    w.text.textContent = t;
    const width = Math.max(34, t.length * 7 + 14);
    w.rect.setAttribute('width', width);
    w.rect.setAttribute('x', w.mx - width / 2);
    w.path.classList.toggle('flowing', (r || 0) > 0);
  }
}

function updateTable(actors) {
  const body = $('#actors tbody');
  body.textContent = '';
  const rank = (n) => (order.has(n) ? order.get(n) : 1e9);
  const sorted = actors.slice().sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
  for (const st of sorted) {
    if (st.kind === 'watched directory') continue;
    const err = Number(st.errors) > 0;
    // Another node's actor: its details are on that node's pages (the Nodes table links them).
    const name = st.node
      ? el('td', {}, st.name, el('span', { class: 'muted' }, ' on ' + st.node))
      : el('td', {}, el('a', { href: 'actor.html?name=' + encodeURIComponent(st.name) }, st.name));
    const open = st.node ? undefined : () => { location.href = 'actor.html?name=' + encodeURIComponent(st.name); };
    body.append(el('tr', { class: open ? 'clickable' : '', 'data-actor': st.name, onclick: open },
      name,
      el('td', { class: 'muted' }, st.kind),
      el('td', {}, stateBadge(st.state)),
      el('td', { class: 'num' }, fmtInt(st.in)),
      el('td', { class: 'num' }, fmtInt(st.out)),
      el('td', { class: 'num' }, store.rates.has(st.name) ? fmtRate(store.rates.get(st.name)) : '–'),
      el('td', { class: 'num' + (err ? ' error-text' : '') }, fmtInt(st.errors)),
      el('td', { class: 'num' }, fmtInt(st.queue)),
      el('td', { class: 'err small' }, st.last_error || '')));
  }
}

function updateWatch(actors) {
  const box = $('#watch');
  const w = actors.find((a) => a.kind === 'watched directory');
  box.textContent = '';
  if (!w) { box.append(el('span', { class: 'muted' }, 'This flow watches no workflow directory.')); return; }
  box.append(stateBadge(w.state), el('strong', {}, w.name));
  const d = w.details || {};
  for (const k of Object.keys(d).sort())
    box.append(el('span', { class: 'muted' }, k + ':'), el('span', { class: k.includes('dir') || k.includes('path') ? 'path' : '' }, d[k]));
  if (w.last_error) box.append(el('span', { class: 'error-text' }, 'last error: ' + w.last_error));
}

// A reload (the ingest page, POST /api/reload, SIGHUP) adds and removes actors: when the
// status names others than the graph shows, draw the flow again.
let redrawing = false;
function followFlow(actors) {
  if (redrawing || !nodes.size) return;
  const now = actors.filter((a) => a.kind !== 'watched directory').map((a) => a.name).sort().join('\n');
  if (now === [...nodes.keys()].sort().join('\n')) return;
  redrawing = true;
  flow(true).then((f) => { $('#flow-file').textContent = f.file || ''; drawGraph(f); updateGraph(); })
    .catch(() => {})
    .finally(() => { setTimeout(() => { redrawing = false; }, 3000); });
}

function render(actors) {
  local = actors;
  const here = new Set(actors.map((a) => a.name));
  const all = actors.concat([...remote.values()].filter((a) => !here.has(a.name)));
  followFlow(all);
  updateGraph();
  updateTable(all);
  updateWatch(actors);
}

// A split flow (fabrik run --node): every node, its actors and the links between nodes,
// as this node asks them (GET /api/nodes); hidden when the whole flow runs here.
function renderNodes(r) {
  if (!r.node) return false;
  $('#nodes-panel').hidden = false;
  $('#this-node').textContent = r.node;
  const nodes = $('#nodes tbody'), links = $('#links tbody');
  nodes.textContent = '';
  links.textContent = '';
  remote.clear();
  for (const n of r.nodes) {
    if (!n.here) {
      for (const a of n.actors) remote.set(a.name, { ...a, node: n.name });
      if (!n.reachable)
        for (const [name, p] of placement)
          if (p.node === n.name)
            remote.set(name, { name, kind: p.kind, node: n.name, state: 'unreachable', last_error: n.error });
    }
    // data-node, data-actor and data-link name the rows for tests (tests/browser/nodes.mjs).
    const actors = el('td', { class: 'small' });
    for (const a of n.actors)
      actors.append(el('span', { class: 'node-actor', 'data-actor': a.name }, stateBadge(a.state), ' ', a.name), ' ');
    const ui = n.http ? el('a', { href: 'http://' + n.http + '/' }, n.http) : el('span', { class: 'muted' }, '–');
    nodes.append(el('tr', { 'data-node': n.name },
      el('td', {}, el('strong', {}, n.name), n.here ? el('span', { class: 'muted' }, ' (this node)') : ''),
      el('td', { class: 'path' }, n.address || n.listen), el('td', {}, ui),
      el('td', { class: 'node-state' }, stateBadge(n.reachable ? 'running' : 'unreachable'),
         n.error ? el('span', { class: 'err small node-error' }, ' ' + n.error) : ''),
      actors));
    for (const l of n.links) {
      const d = l.details || {};
      links.append(el('tr', { 'data-link': n.name + '->' + (d.peer || '?') + '/' + (d.actor || '?') },
        el('td', {}, n.name), el('td', {}, (d.peer || '?') + ' / ' + (d.actor || '?')),
        el('td', { class: 'link-state' }, stateBadge(l.state)),
        el('td', { class: 'num rtt' }, d.rtt_us ? (Number(d.rtt_us) / 1000).toFixed(2) + ' ms' : '–'),
        el('td', { class: 'num backlog' }, fmtInt(l.queue)),
        el('td', { class: 'num' }, fmtInt(l.out)),
        el('td', { class: 'num' }, fmtInt(d.reconnects || 0)),
        el('td', { class: 'err small link-error' }, l.last_error || '')));
    }
  }
  render(local);
  return true;
}

function pollNodes() {
  api('/api/nodes', { quiet: true }).then((r) => {
    if (renderNodes(r.body)) setTimeout(pollNodes, 3000);
  }).catch(() => setTimeout(pollNodes, 10000));
}

async function main() {
  try {
    const f = await flow();
    $('#flow-file').textContent = f.file || '';
    drawGraph(f);
  } catch (e) {
    $('#graph').textContent = '';
    $('#graph').append(el('p', { class: 'empty error-text' }, 'Cannot load the flow: ' + e.message));
  }
  // Paint at once; then the event stream keeps it live.
  api('/api/actors', { quiet: true }).then((r) => {
    for (const st of r.body.actors) if (!store.actors.has(st.name)) store.actors.set(st.name, st);
    render(r.body.actors);
  }).catch(() => {});
  on('status', (data) => render(data.actors || []));
  pollNodes();
}

main();
