// One actor: counters, throughput, details, last error, the newest values of its streams.
import {
  api, on, store, flow, el, $, fmtInt, fmtRate, fmtTime, fmtValue, stateBadge, stateClass,
  detailsList, throttle,
} from './app.js';
import { sparkline } from './chart.js';

const name = new URLSearchParams(location.search).get('name') || '';
const PER_STREAM = 5;
const MAX_STREAMS = 8;

let decl = null;          // the actor in /api/flow
let status = null;
const streams = new Map(); // stream -> {storage, records: [...] newest first}
let spark = null;

function showStatus(st) {
  status = st;
  $('#actor-state').replaceChildren(stateBadge(st.state));
  $('#c-in').textContent = fmtInt(st.in);
  $('#c-out').textContent = fmtInt(st.out);
  $('#c-errors').textContent = fmtInt(st.errors);
  $('#card-errors').classList.toggle('bad', Number(st.errors) > 0);
  $('#c-queue').textContent = fmtInt(st.queue);
  const cs = $('#c-state');
  cs.replaceChildren(el('span', { class: 'badge ' + stateClass(st.state) }, st.state));
  const ri = store.inRates.get(name), ro = store.rates.get(name);
  $('#c-in-rate').textContent = ri === undefined ? '' : fmtRate(ri);
  $('#c-out-rate').textContent = ro === undefined ? '' : fmtRate(ro);
  $('#details').replaceChildren(detailsList(st.details));
  $('#last-error').replaceChildren(st.last_error
    ? el('div', { class: 'last-error' }, st.last_error)
    : el('span', { class: 'muted' }, 'none'));
  const h = store.history.get(name) || [];
  if (spark) spark.set(h.map((p) => p[0]), h.map((p) => p[1]));
}

function fieldNames(records) {
  const set = new Set();
  for (const r of records) for (const k of Object.keys(r.fields || {})) set.add(k);
  return [...set];
}

function renderValues() {
  const box = $('#last-values');
  box.textContent = '';
  if (!streams.size) {
    box.append(el('p', { class: 'empty' }, noValuesText()));
    return;
  }
  for (const [stream, s] of streams) {
    const recs = s.records;
    const fields = fieldNames(recs);
    const href = 'streams.html?stream=' + encodeURIComponent(stream) + (s.storage ? '&storage=' + encodeURIComponent(s.storage) : '');
    const head = el('h3', { class: 'stream-name' }, el('a', { href, title: 'chart this stream' }, stream),
      s.storage ? el('span', { class: 'muted' }, ` · in ${s.storage}`) : null);
    const table = el('table', {},
      el('thead', {}, el('tr', {}, el('th', {}, 'time'), el('th', { class: 'num' }, 'seq'),
        fields.map((f) => el('th', { class: 'num field' }, f)))),
      el('tbody', {}, recs.length ? recs.map((r) => el('tr', {},
        el('td', { class: 'mono' }, fmtTime(r.time)),
        el('td', { class: 'num muted' }, r.seq ?? ''),
        fields.map((f) => el('td', { class: 'num' }, fmtValue((r.fields || {})[f])))))
        : el('tr', {}, el('td', { colspan: 2 + fields.length, class: 'muted' }, 'no records yet'))));
    box.append(head, el('div', { class: 'table-wrap' }, table));
  }
}

function noValuesText() {
  if (!decl) return 'No values.';
  if (decl.role === 'sink') return 'A sink passes records on; it keeps no streams of its own. See the actor that feeds it.';
  if (decl.kind === 'storage') return 'This storage holds no streams yet.';
  return 'No values seen since the engine started.';
}

const renderValuesSoon = throttle(renderValues, 1000);

function mine(stream, actor) {
  if (!decl) return false;
  if (decl.kind === 'storage') return actor === name;
  return stream.startsWith(name + '/') || actor === name;
}

async function loadValues() {
  const r = await api('/api/streams');
  const { stored = [], live = [] } = r.body;
  const picks = [];
  if (decl.kind === 'storage') {
    for (const s of stored) if (s.storage === name && s.stream) picks.push({ stream: s.stream, storage: name });
  } else {
    for (const s of live) if (mine(s.stream, s.actor)) picks.push({ stream: s.stream });
  }
  const shown = picks.slice(0, MAX_STREAMS);
  $('#values-note').textContent = picks.length > MAX_STREAMS
    ? `${MAX_STREAMS} of ${picks.length} streams` : picks.length ? `newest ${PER_STREAM} of each stream` : '';
  await Promise.all(shown.map(async (p) => {
    const q = new URLSearchParams({ stream: p.stream, limit: String(PER_STREAM) });
    if (p.storage) q.set('storage', p.storage);
    try {
      const rr = await api('/api/records?' + q, { quiet: true });
      let recs = rr.body.records || [];
      if (p.storage) recs = recs.slice().reverse(); // storage answers oldest first
      streams.set(p.stream, { storage: p.storage, records: recs });
    } catch (e) {
      streams.set(p.stream, { storage: p.storage, records: [], error: e.message });
    }
  }));
  renderValues();
}

function onValues(list) {
  let changed = false;
  for (const r of list) {
    if (!mine(r.stream, r.actor)) continue;
    let s = streams.get(r.stream);
    if (!s) {
      if (streams.size >= MAX_STREAMS) continue;
      s = { storage: decl.kind === 'storage' ? name : undefined, records: [] };
      streams.set(r.stream, s);
    }
    if (s.records.some((x) => x.seq === r.seq && x.time === r.time)) continue;
    s.records.unshift(r);
    s.records.sort((a, b) => Number(b.time) - Number(a.time));
    if (s.records.length > PER_STREAM) s.records.length = PER_STREAM;
    changed = true;
  }
  if (changed) renderValuesSoon();
}

function showSettings(settings) {
  const keys = Object.keys(settings || {});
  if (!keys.length) return;
  const dl = el('dl', { class: 'details' });
  for (const k of keys.sort()) {
    const v = settings[k];
    dl.append(el('dt', {}, k), el('dd', {}, typeof v === 'object' ? JSON.stringify(v) : String(v)));
  }
  $('#settings').replaceChildren(dl);
  $('#settings-panel').hidden = false;
}

async function main() {
  if (!name) {
    $('#actor-name').textContent = 'No actor chosen';
    $('#last-values').replaceChildren(el('p', { class: 'empty' }, 'Open an actor from the overview.'));
    return;
  }
  document.title = name + ' · Actor';
  $('#actor-name').textContent = name;
  spark = sparkline($('#sparkline'), { height: 150, windowSeconds: 300 });
  on('status', (data) => {
    const st = (data.actors || []).find((a) => a.name === name);
    if (st) showStatus(st);
  });
  on('values', onValues);
  try {
    const r = await api('/api/actors/' + encodeURIComponent(name), { quiet: true });
    showStatus(r.body);
  } catch (e) {
    if (e.status === 404) {
      // The watched directory is in /api/actors but has no route of its own.
      const all = await api('/api/actors', { quiet: true }).catch(() => null);
      const st = all && all.body.actors.find((a) => a.name === name);
      if (!st) {
        $('#last-values').replaceChildren(el('p', { class: 'empty error-text' }, e.message));
        return;
      }
      showStatus(st);
    }
  }
  try {
    const f = await flow();
    decl = f.actors.find((a) => a.name === name) || { name, kind: status ? status.kind : '', role: '' };
    const from = f.wires.filter((w) => w.to === name).map((w) => w.from);
    const to = f.wires.filter((w) => w.from === name).map((w) => w.to);
    const link = (n) => el('a', { href: 'actor.html?name=' + encodeURIComponent(n) }, n);
    const kindLine = [decl.kind, decl.role ? ` (${decl.role})` : ''];
    if (from.length) kindLine.push(' · from ', ...from.flatMap((n, i) => (i ? [', ', link(n)] : [link(n)])));
    if (to.length) kindLine.push(' · to ', ...to.flatMap((n, i) => (i ? [', ', link(n)] : [link(n)])));
    $('#actor-kind').replaceChildren(...kindLine);
    showSettings(decl.settings);
    await loadValues();
  } catch (e) {
    $('#last-values').replaceChildren(el('p', { class: 'empty error-text' }, 'Cannot load values: ' + e.message));
  }
}

main();
