// Streams: the list, and one stream's numeric fields as a live time-series chart.
import { api, on, el, $, fmtInt, fmtAgo, fmtTime, fmtValue, throttle } from './app.js';
import { timeChart, palette } from './chart.js';

const RANGES = { '15m': 15 * 60, '1h': 3600, '24h': 24 * 3600 };
const LIMIT = 5000;

const params = new URLSearchParams(location.search);
let sel = params.get('stream') ? { stream: params.get('stream'), storage: params.get('storage') || '' } : null;
let range = RANGES[params.get('range')] ? params.get('range') : '1h';
let points = new Map();   // "time/seq" -> record (time in ns)
let numeric = [];         // numeric field names, in first-seen order
let chosen = null;        // Set of checked fields
let chart = null;
let loadToken = 0;
let list = [];            // [{stream, storage, count, last}]

function key(r) { return r.time + '/' + (r.seq ?? ''); }

function savedFields(stream) {
  try { const v = JSON.parse(localStorage.getItem('fabrik.fields.' + stream)); return Array.isArray(v) ? v : null; } catch { return null; }
}
function saveFields(stream, fields) {
  try { localStorage.setItem('fabrik.fields.' + stream, JSON.stringify([...fields])); } catch { /* private mode */ }
}

async function loadList() {
  let body;
  try { body = (await api('/api/streams')).body; } catch { return; }
  const rows = new Map();
  for (const s of body.stored || []) {
    if (!s.stream) continue;
    rows.set(s.storage + '\u0000' + s.stream, { stream: s.stream, storage: s.storage, count: s.count, last: s.last });
  }
  const storedNames = new Set([...rows.values()].map((r) => r.stream));
  for (const s of body.live || []) {
    if (storedNames.has(s.stream)) continue; // the stored copy has the history
    rows.set('\u0000' + s.stream, { stream: s.stream, storage: '', count: s.seen, last: s.last, actor: s.actor });
  }
  list = [...rows.values()].sort((a, b) => a.stream.localeCompare(b.stream));
  renderList();
  if (!sel && list.length) select(list.find((s) => s.storage) || list[0], true);
}

function renderList() {
  const body = $('#stream-list tbody');
  body.textContent = '';
  if (!list.length) {
    body.append(el('tr', {}, el('td', { class: 'muted' }, 'No streams yet: nothing stored, nothing seen since start.')));
    return;
  }
  for (const s of list) {
    const active = sel && sel.stream === s.stream && (sel.storage || '') === (s.storage || '');
    const where = s.storage ? 'stored in ' + s.storage : 'live' + (s.actor ? ' from ' + s.actor : '');
    body.append(el('tr', { class: 'clickable' + (active ? ' selected' : ''), onclick: () => select(s) },
      el('td', {}, el('div', { class: 'stream-name' }, s.stream),
        el('div', { class: 'muted small', title: 'newest ' + fmtTime(s.last, true) },
          `${where} · ${fmtInt(s.count)} records · ${fmtAgo(s.last)}`))));
  }
}

function select(s, initial = false) {
  sel = { stream: s.stream, storage: s.storage || '' };
  const q = new URLSearchParams({ stream: sel.stream });
  if (sel.storage) q.set('storage', sel.storage);
  if (range !== '1h') q.set('range', range);
  history[initial ? 'replaceState' : 'pushState'](null, '', '?' + q);
  renderList();
  load();
}

async function load() {
  if (!sel) return;
  const my = ++loadToken;
  points = new Map();
  numeric = [];
  chosen = null;
  $('#stream-title').textContent = sel.stream;
  document.title = sel.stream + ' · Streams';
  $('#stream-source').textContent = sel.storage
    ? `stored in ${sel.storage}; the newest ${fmtInt(LIMIT)} records of the range, then live`
    : 'not stored: the newest records seen live since the engine started';
  $('#point-count').textContent = 'loading…';
  const q = new URLSearchParams({ stream: sel.stream, limit: String(LIMIT) });
  if (sel.storage) { q.set('storage', sel.storage); q.set('from', '-' + range); }
  let recs = [];
  try {
    recs = (await api('/api/records?' + q)).body.records || [];
  } catch (e) {
    if (my === loadToken) $('#point-count').textContent = '';
    return;
  }
  if (my !== loadToken) return;
  for (const r of recs) points.set(key(r), r);
  draw();
}

function windowStartNs() { return (Date.now() / 1000 - RANGES[range]) * 1e9; }

function draw() {
  // Drop what has left the window; keep the chart to the newest LIMIT points.
  const start = windowStartNs();
  let recs = [...points.values()].filter((r) => Number(r.time) >= start);
  recs.sort((a, b) => Number(a.time) - Number(b.time) || (a.seq ?? 0) - (b.seq ?? 0));
  if (recs.length > LIMIT) recs = recs.slice(recs.length - LIMIT);
  if (recs.length !== points.size) points = new Map(recs.map((r) => [key(r), r]));

  for (const r of recs)
    for (const [k, v] of Object.entries(r.fields || {}))
      if (typeof v === 'number' && !numeric.includes(k)) numeric.push(k);
  if (!chosen && numeric.length) {
    const saved = savedFields(sel.stream);
    chosen = new Set(saved ? saved.filter((f) => numeric.includes(f)) : numeric.slice(0, 4));
    if (!chosen.size) numeric.slice(0, 4).forEach((f) => chosen.add(f));
  }
  renderFields();
  $('#point-count').textContent = `${fmtInt(recs.length)} records`;

  const box = $('#stream-chart');
  const fields = chosen ? numeric.filter((f) => chosen.has(f)) : [];
  if (!recs.length || !fields.length) {
    if (chart) { chart.destroy(); chart = null; }
    box.replaceChildren(el('p', { class: 'empty' }, !recs.length
      ? 'No records in this range.'
      : numeric.length ? 'Tick a field above to chart it.' : 'This stream has no numeric fields to chart.'));
  } else {
    if (!chart) { box.textContent = ''; chart = timeChart(box, { height: 340, colors: colorMap() }); }
    const xs = recs.map((r) => Number(r.time) / 1e9);
    const ys = fields.map((f) => recs.map((r) => { const v = (r.fields || {})[f]; return typeof v === 'number' ? v : null; }));
    chart.set(fields, [xs, ...ys]);
  }
  renderRecent(recs.slice(-10).reverse());
}

function colorMap() {
  const m = {};
  numeric.forEach((f, i) => { m[f] = palette[i % palette.length]; });
  return m;
}

function renderFields() {
  const box = $('#fields');
  if (!chosen) { box.textContent = ''; box.dataset.sig = ''; return; }
  const sig = numeric.join('\u0000') + '|' + [...chosen].join('\u0000');
  if (box.dataset.sig === sig) return;
  box.dataset.sig = sig;
  box.textContent = '';
  if (!numeric.length) return;
  numeric.forEach((f, i) => {
    const cb = el('input', { type: 'checkbox', value: f, checked: chosen.has(f) });
    cb.addEventListener('change', () => {
      if (cb.checked) chosen.add(f); else chosen.delete(f);
      saveFields(sel.stream, chosen);
      if (chart) { chart.destroy(); chart = null; }
      draw();
    });
    box.append(el('label', {}, cb, el('span', { class: 'swatch', style: `background:${palette[i % palette.length]}` }), f));
  });
}

function renderRecent(recs) {
  const box = $('#stream-recent');
  if (!recs.length) { box.replaceChildren(el('p', { class: 'empty' }, 'No records in this range.')); return; }
  const names = [];
  for (const r of recs) for (const k of Object.keys(r.fields || {})) if (!names.includes(k)) names.push(k);
  box.replaceChildren(el('table', {},
    el('thead', {}, el('tr', {}, el('th', {}, 'time'), el('th', { class: 'num' }, 'seq'), names.map((n) => el('th', { class: 'num field' }, n)))),
    el('tbody', {}, recs.map((r) => el('tr', {},
      el('td', { class: 'mono' }, fmtTime(r.time)),
      el('td', { class: 'num muted' }, r.seq ?? ''),
      names.map((n) => el('td', { class: 'num' }, fmtValue((r.fields || {})[n]))))))));
}

const drawSoon = throttle(draw, 1000);

on('values', (batch) => {
  if (!sel) return;
  let added = false;
  for (const r of batch) {
    if (r.stream !== sel.stream) continue;
    // A stored stream: take the storage's copy (a workflow's prediction stream is its own).
    if (sel.storage && r.actor !== sel.storage) continue;
    const k = key(r);
    if (!points.has(k)) { points.set(k, r); added = true; }
  }
  if (added) drawSoon();
});

// The window slides even when nothing arrives.
setInterval(() => { if (sel && points.size) drawSoon(); }, 15000);

for (const b of document.querySelectorAll('#range button')) {
  b.setAttribute('aria-pressed', String(b.dataset.range === range));
  b.addEventListener('click', () => {
    range = b.dataset.range;
    for (const o of document.querySelectorAll('#range button')) o.setAttribute('aria-pressed', String(o === b));
    if (sel) {
      const q = new URLSearchParams(location.search);
      if (range === '1h') q.delete('range'); else q.set('range', range);
      history.replaceState(null, '', '?' + q);
      load();
    }
  });
}
$('#refresh-streams').addEventListener('click', loadList);
window.addEventListener('popstate', () => {
  const p = new URLSearchParams(location.search);
  if (p.get('stream')) { sel = { stream: p.get('stream'), storage: p.get('storage') || '' }; renderList(); load(); }
});

loadList();
if (sel) load();
