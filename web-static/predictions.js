// Predictions: a live chart (confidence per class, or each numeric output), the class
// counts since start, and the newest predictions. Live data comes from `values` events.
import { api, on, el, $, fmtInt, fmtTime, fmtValue, throttle } from './app.js';
import { timeChart, palette } from './chart.js';

const MAX_POINTS = 3000;
const RECENT_ROWS = 25;
const RESYNC_MS = 30000;

let wfActors = new Set();
let windowMin = 15;
let preds = [];                 // {actor, stream, time, seq, fields}, oldest first
const counts = new Map();       // actor -> Map(class -> n)
const classField = new Map();   // actor -> field holding the class (the package's first output)
const classColors = new Map();  // class or field -> colour
let chart = null;
let sinceSync = 0;

function colorOf(name) {
  if (!classColors.has(name)) classColors.set(name, palette[classColors.size % palette.length]);
  return classColors.get(name);
}

/** The class field of an actor: the field whose values are the class_counts keys. */
function detectClassField(actor, rec) {
  if (classField.has(actor)) return classField.get(actor);
  const known = counts.get(actor);
  const f = rec.fields || {};
  let pick = null;
  if (known && known.size)
    pick = Object.keys(f).find((k) => typeof f[k] === 'string' && known.has(f[k])) || null;
  if (!pick) pick = ['prediction', 'class', 'label'].find((k) => typeof f[k] === 'string') || null;
  if (!pick) pick = Object.keys(f).find((k) => typeof f[k] === 'string') || null;
  if (pick || (known && known.size)) classField.set(actor, pick);
  return pick;
}

function confidenceField(fields, cls) {
  const nums = Object.keys(fields).filter((k) => k !== cls && typeof fields[k] === 'number');
  return nums.find((k) => /conf|prob|score/i.test(k)) || (nums.length === 1 ? nums[0] : null);
}

// ---------------------------------------------------------------- rendering

function draw() {
  const start = Date.now() / 1000 - windowMin * 60;
  const recs = preds.filter((p) => Number(p.time) / 1e9 >= start);
  const box = $('#prediction-chart');
  if (!recs.length) {
    if (chart) { chart.destroy(); chart = null; }
    box.replaceChildren(el('p', { class: 'empty' }, wfActors.size
      ? `No predictions in the last ${windowMin} min. They appear here as they are made.`
      : 'This flow has no workflow actor.'));
    $('#chart-note').textContent = '';
    return;
  }
  // Series: per class "confidence of CLASS" when the outputs are a class and a confidence;
  // otherwise each numeric output.
  const seriesOf = (p) => {
    const cls = classField.get(p.actor) || detectClassField(p.actor, p);
    const f = p.fields || {};
    const out = [];
    const multi = wfActors.size > 1 ? p.actor + ': ' : '';
    if (cls && typeof f[cls] === 'string') {
      const conf = confidenceField(f, cls);
      if (conf) { out.push([multi + f[cls], f[conf]]); return out; }
    }
    for (const [k, v] of Object.entries(f)) if (typeof v === 'number') out.push([multi + k, v]);
    return out;
  };
  const labels = [];
  const rows = recs.map((p) => {
    const s = seriesOf(p);
    for (const [l] of s) if (!labels.includes(l)) labels.push(l);
    return [Number(p.time) / 1e9, s];
  });
  labels.sort();
  const idx = new Map(labels.map((l, i) => [l, i]));
  const xs = rows.map((r) => r[0]);
  const ys = labels.map(() => new Array(rows.length).fill(null));
  rows.forEach(([, s], i) => { for (const [l, v] of s) ys[idx.get(l)][i] = v; });
  const colors = {};
  for (const l of labels) colors[l] = colorOf(l.replace(/^.*: /, ''));
  const allConfidence = recs.every((p) => {
    const cls = classField.get(p.actor);
    return cls && confidenceField(p.fields || {}, cls);
  });
  $('#chart-title').textContent = allConfidence ? 'Confidence of each prediction, by class' : 'Predicted values over time';
  $('#chart-note').textContent = `${fmtInt(recs.length)} predictions`;
  if (chart && chart.confidence !== allConfidence) { chart.destroy(); chart = null; }
  if (!chart) {
    box.textContent = '';
    chart = timeChart(box, {
      height: 320, colors, points: true, scatter: allConfidence, spanGaps: false,
      xWindow: () => windowMin * 60,
      yRange: allConfidence ? [0, 1.02] : undefined,
    });
    chart.confidence = allConfidence;
  }
  chart.set(labels, [xs, ...ys]);
}

function renderCounts() {
  const body = $('#class-counts tbody');
  body.textContent = '';
  let any = false;
  for (const [actor, m] of counts) {
    const total = [...m.values()].reduce((a, b) => a + b, 0);
    const sorted = [...m.entries()].sort((a, b) => b[1] - a[1]);
    for (const [cls, n] of sorted) {
      any = true;
      const share = total ? (100 * n) / total : 0;
      body.append(el('tr', { dataset: { actor, class: cls } },
        el('td', {}, actor),
        el('td', { class: 'nowrap' }, el('span', { class: 'class-dot', style: `background:${colorOf(cls)}` }), cls),
        el('td', { class: 'num' }, fmtInt(n)),
        el('td', { class: 'bar-cell' }, el('div', { class: 'bar', style: `width:${share.toFixed(1)}%` }),
          el('span', {}, share.toFixed(1) + ' %'))));
    }
  }
  if (!any) body.append(el('tr', {}, el('td', { colspan: 4, class: 'muted' }, 'No predictions since start.')));
}

function renderRecent() {
  const body = $('#recent tbody');
  const rows = preds.slice(-RECENT_ROWS).reverse();
  body.textContent = '';
  if (!rows.length) {
    body.append(el('tr', {}, el('td', { colspan: 5, class: 'muted' }, 'No predictions yet.')));
    return;
  }
  for (const p of rows) {
    const f = p.fields || {};
    const cls = classField.get(p.actor);
    const conf = cls ? confidenceField(f, cls) : null;
    const shown = new Set([cls, conf]);
    const other = Object.entries(f).filter(([k]) => !shown.has(k));
    body.append(el('tr', {},
      el('td', { class: 'mono nowrap', title: fmtTime(p.time, true) }, fmtTime(p.time)),
      el('td', { title: p.stream }, p.actor),
      el('td', { class: 'nowrap' }, cls && f[cls] !== undefined
        ? el('strong', {}, el('span', { class: 'class-dot', style: `background:${colorOf(String(f[cls]))}` }), String(f[cls]))
        : '–'),
      el('td', { class: 'num' }, conf ? fmtValue(f[conf]) : '–'),
      el('td', { class: 'muted small' }, other.map(([k, v]) => `${k} ${fmtValue(v)}`).join(' · '))));
  }
}

const renderSoon = throttle(() => { draw(); renderCounts(); renderRecent(); }, 1000);

// ---------------------------------------------------------------- data

function add(p) {
  const key = p.actor + '\u0000' + p.stream + '\u0000' + p.time + '\u0000' + p.seq;
  if (add.seen.has(key)) return false;
  add.seen.add(key);
  preds.push(p);
  return true;
}
add.seen = new Set();

function trim() {
  preds.sort((a, b) => Number(a.time) - Number(b.time));
  const cut = Date.now() * 1e6 - 60 * 60 * 1e9; // an hour at most, the widest window
  let drop = 0;
  while (drop < preds.length && Number(preds[drop].time) < cut) drop++;
  if (preds.length - drop > MAX_POINTS) drop = preds.length - MAX_POINTS;
  if (drop) {
    for (const p of preds.slice(0, drop)) add.seen.delete(p.actor + '\u0000' + p.stream + '\u0000' + p.time + '\u0000' + p.seq);
    preds = preds.slice(drop);
  }
}

function setCounts(classCounts) {
  counts.clear();
  for (const [actor, m] of Object.entries(classCounts || {}))
    counts.set(actor, new Map(Object.entries(m).map(([k, v]) => [k, Number(v)])));
}

async function sync(initial) {
  let body;
  try { body = (await api('/api/predictions?limit=1', { quiet: !initial })).body; } catch { return; }
  setCounts(body.class_counts);
  sinceSync = 0;
  renderCounts();
}

async function main() {
  try {
    const wf = (await api('/api/workflows')).body;
    wfActors = new Set((wf.actors || []).map((a) => a.name));
  } catch { /* shown */ }
  $('#pred-sub').textContent = wfActors.size
    ? 'live, from ' + [...wfActors].join(', ')
    : 'this flow has no workflow actor';
  let first = true;
  for (const actor of wfActors) {
    try {
      const body = (await api(`/api/predictions?actor=${encodeURIComponent(actor)}&limit=${MAX_POINTS}`, { quiet: !first })).body;
      if (first) setCounts(body.class_counts);
      first = false;
      for (const r of body.recent || []) add({ actor, stream: r.stream, time: r.time, seq: r.seq, fields: r.fields });
    } catch { /* shown */ }
  }
  if (first) await sync(true);
  for (const p of preds) detectClassField(p.actor, p);
  trim();
  draw(); renderCounts(); renderRecent();

  on('values', (batch) => {
    let changed = false;
    for (const r of batch) {
      if (!wfActors.has(r.actor)) continue;
      if (!add(r)) continue;
      changed = true;
      sinceSync++;
      const cls = detectClassField(r.actor, r);
      const v = cls ? (r.fields || {})[cls] : undefined;
      if (typeof v === 'string') {
        if (!counts.has(r.actor)) counts.set(r.actor, new Map());
        const m = counts.get(r.actor);
        m.set(v, (m.get(v) || 0) + 1);
      }
    }
    if (changed) { trim(); renderSoon(); }
  });
  // Events carry at most the newest 200 records of a batch: now and then take the exact
  // counts from the server, only while predictions come.
  setInterval(() => { if (sinceSync > 0) sync(false); }, RESYNC_MS);
  // The window slides when nothing arrives.
  setInterval(() => draw(), 15000);
}

for (const b of document.querySelectorAll('#window button')) {
  b.addEventListener('click', () => {
    windowMin = Number(b.dataset.min);
    for (const o of document.querySelectorAll('#window button')) o.setAttribute('aria-pressed', String(o === b));
    draw();
  });
}

main();
