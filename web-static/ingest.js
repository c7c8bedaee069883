// Ingest: the flow's MQTT sources, and a form that adds or edits the ones kept in the
// flow's local file (NAME.local.yaml), applied by a reload that restarts only what changed.
import {
  api, on, store, flow, el, $, fmtInt, stateBadge, showResult, reloadSummary, diagnosticLines,
} from './app.js';

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;

let info = null;          // the GET /api/ingest answer
let actorKinds = new Map(); // every actor of the flow -> kind (to warn about a taken name)
let editing = null;       // the name of the local source the form edits, or null: a new one
let busy = false;

const settingRow = (name) => (info?.settings || []).find((s) => s.name === name) || {};
const nameOf = (x) => (x && typeof x === 'object' ? x.name : x);

/** topics as the flow holds them (a list, or one string) -> a list */
function topicList(t) {
  if (Array.isArray(t)) return t.map(String);
  if (t === undefined || t === null || t === '') return [];
  return [String(t)];
}

/** What the operator typed: commas or newlines between topics. */
function parseTopics(text) {
  return text.split(/[,\n]/).map((s) => s.trim()).filter(Boolean);
}

// ---------------------------------------------------------------- loading

async function load() {
  let body;
  try {
    body = (await api('/api/ingest', { quiet: true })).body;
  } catch (e) {
    if (e.status === 401) return; // the login form is up
    showLoadError(e);
    return;
  }
  info = body || {};
  $('#ingest-load-error').hidden = true;
  setFormEnabled(true);
  $('#ingest-local-file').textContent = info.local_file || '(this flow has no local file)';
  $('#ingest-local-file').title = info.local_file || '';
  fillChoices();
  renderSources();
  checkName();
  // Every actor of the flow, so that the form can say when a name is taken. The flow
  // changes with each reload: ask again.
  loadActors(true);
}

function loadActors(fresh) {
  flow(fresh).then((f) => { actorKinds = new Map(f.actors.map((a) => [a.name, a.kind])); checkName(); })
    .catch(() => {});
}

function showLoadError(e) {
  const box = $('#ingest-load-error');
  const why = e.status === 404
    ? `This engine does not offer the ingest API (GET /api/ingest answered 404: ${e.message}). ` +
      'It is older than this page: the sources cannot be listed or changed here.'
    : `Cannot load the MQTT sources (${e.status ? 'HTTP ' + e.status : 'no answer'}): ${e.message}`;
  box.replaceChildren(el('strong', {}, 'Ingest unavailable. '), why,
    el('div', { class: 'row', style: 'margin-top:6px' },
      el('button', { type: 'button', onclick: () => load() }, 'Try again')));
  box.hidden = false;
  const body = $('#ingest-sources tbody');
  body.replaceChildren(el('tr', {}, el('td', { colspan: 10, class: 'muted' }, 'Not available: ' + e.message)));
  $('#ingest-count').textContent = '';
  $('#ingest-local-file').textContent = 'NAME.local.yaml';
  $('#ingest-local-file').title = 'the engine did not say: NAME is the flow file\'s name';
  setFormEnabled(false);
}

function setFormEnabled(on_) {
  for (const c of $('#ingest-form').querySelectorAll('input, select, textarea, button')) c.disabled = !on_;
  $('#ingest-reload').disabled = false; // reloading needs nothing from GET /api/ingest
}

/** The selects and checkboxes from the answer; keeps what the operator chose, unless reset. */
function fillChoices(reset = false) {
  const brokers = (info.brokers || []).map(nameOf);
  const bsel = $('#ingest-broker');
  const keepB = bsel.value;
  bsel.replaceChildren(...(brokers.length ? brokers.map((b) => el('option', { value: b }, b))
    : [el('option', { value: '' }, 'no broker in this flow')]));
  if (brokers.includes(keepB)) bsel.value = keepB;
  bsel.title = settingRow('broker').doc || 'an entry of the flow file\'s brokers';

  const fmt = settingRow('format');
  const choices = fmt.choices && fmt.choices.length ? fmt.choices : ['json', 'simatic-v1', 'raw'];
  const fsel = $('#ingest-format');
  const keepF = fsel.value;
  fsel.replaceChildren(...choices.map((c) => el('option', { value: c }, c)));
  fsel.value = !reset && choices.includes(keepF) ? keepF : (choices.includes(fmt.default) ? fmt.default : choices[0]);
  fsel.title = fmt.doc || '';

  const qos = settingRow('qos');
  const qsel = $('#ingest-qos');
  if (!qsel.dataset.touched && ['0', '1', '2'].includes(String(qos.default ?? ''))) qsel.value = String(qos.default);
  qsel.title = qos.doc || '';
  $('#ingest-topics').title = settingRow('topics').doc || '';

  const storages = (info.storages || []).map(nameOf);
  const box = $('#ingest-store');
  const was = reset ? new Map() : new Map([...box.querySelectorAll('input')].map((i) => [i.value, i.checked]));
  box.replaceChildren(...(storages.length
    ? storages.map((s) => el('label', {},
      el('input', { type: 'checkbox', value: s, checked: was.has(s) ? was.get(s) : true }), s))
    : [el('span', { class: 'muted small' }, 'This flow has no storage: the records are only seen live.')]));
  $('#ingest-submit').disabled = !brokers.length;
}

// ---------------------------------------------------------------- the list

function renderSources() {
  const body = $('#ingest-sources tbody');
  const sources = (info.sources || []).slice().sort((a, b) =>
    Number(!!a.local) - Number(!!b.local) || a.name.localeCompare(b.name));
  const nLocal = sources.filter((s) => s.local).length;
  $('#ingest-count').textContent = sources.length
    ? `${sources.length} source${sources.length === 1 ? '' : 's'}, ${nLocal} in the local file` : '';
  body.textContent = '';
  if (!sources.length) {
    body.append(el('tr', {}, el('td', { colspan: 10, class: 'muted' }, 'This flow has no MQTT source yet. Add one below.')));
    return;
  }
  for (const src of sources) {
    const st = src.settings || {};
    const topics = topicList(st.topics);
    const stores = src.stores_in || [];
    const fmt = st.format ?? settingRow('format').default;
    const qos = st.qos ?? settingRow('qos').default;
    const actions = src.local
      ? el('span', { class: 'row nowrap' },
        el('button', { type: 'button', class: 'small-btn ingest-edit', 'data-name': src.name, onclick: () => edit(src) }, 'Edit'),
        el('button', { type: 'button', class: 'small-btn danger ingest-delete', 'data-name': src.name,
          title: `remove ${src.name} from the local file and reload`, onclick: (ev) => remove(src, ev.currentTarget) }, 'Delete'))
      : el('span', { class: 'muted small', title: 'defined in the flow file: change it there, then reload from disk' }, 'read-only');
    body.append(el('tr', {
      'data-name': src.name, 'data-local': src.local ? 'true' : 'false',
      class: editing === src.name ? 'selected' : null,
    },
      el('td', {}, el('a', { href: 'actor.html?name=' + encodeURIComponent(src.name) }, src.name)),
      el('td', { class: 'src-state' }, stateCell(src.name)),
      el('td', {}, st.broker ?? '–'),
      el('td', { class: 'mono small topics' }, topics.length ? topics.map((t) => el('div', {}, t)) : '–'),
      el('td', {}, fmt ?? '–'),
      el('td', { class: 'num' }, qos ?? '–'),
      el('td', {}, stores.length ? stores.join(', ') : el('span', { class: 'muted' }, 'nothing (live only)')),
      el('td', { class: 'num src-count' }, countText(src.name)),
      el('td', {}, src.local
        ? el('span', { class: 'badge local', title: info.local_file || '' }, 'local file')
        : el('span', { class: 'badge', title: 'the flow file' }, 'flow file')),
      el('td', { class: 'num' }, actions)));
  }
}

function stateCell(name) {
  const s = store.actors.get(name);
  return s ? stateBadge(s.state) : el('span', { class: 'muted' }, '–');
}
function countText(name) {
  const s = store.actors.get(name);
  return s ? fmtInt(s.out) : '–';
}

/** Status events: the state and count cells, without redrawing the table. */
function updateStates() {
  for (const tr of document.querySelectorAll('#ingest-sources tbody tr[data-name]')) {
    const name = tr.dataset.name;
    const s = store.actors.get(name);
    if (!s) continue;
    const cell = tr.querySelector('.src-state');
    if (cell.dataset.state !== s.state) { cell.dataset.state = s.state; cell.replaceChildren(stateBadge(s.state)); }
    cell.title = s.last_error ? 'last error: ' + s.last_error : '';
    tr.querySelector('.src-count').textContent = fmtInt(s.out);
  }
}

// ---------------------------------------------------------------- the form

function edit(src) {
  editing = src.name;
  const st = src.settings || {};
  $('#ingest-name').value = src.name;
  const bsel = $('#ingest-broker');
  if (st.broker !== undefined && ![...bsel.options].some((o) => o.value === st.broker))
    bsel.append(el('option', { value: st.broker }, st.broker + ' (not in brokers)'));
  if (st.broker !== undefined) bsel.value = st.broker;
  $('#ingest-topics').value = topicList(st.topics).join('\n');
  if (st.format !== undefined) $('#ingest-format').value = st.format;
  $('#ingest-qos').value = String(st.qos ?? settingRow('qos').default ?? 1);
  const stores = new Set(src.stores_in || []);
  for (const i of $('#ingest-store').querySelectorAll('input')) i.checked = stores.has(i.value);
  $('#ingest-result').hidden = true;
  clearInvalid();
  setFormMode();
  renderSources();
  $('#ingest-name').focus();
}

function newSource() {
  editing = null;
  $('#ingest-form').reset();
  delete $('#ingest-qos').dataset.touched;
  if (info) fillChoices(true);
  $('#ingest-result').hidden = true;
  clearInvalid();
  setFormMode();
  if (info) renderSources();
}

function setFormMode() {
  const name = $('#ingest-name').value.trim();
  const local = (info?.sources || []).find((s) => s.local && s.name === name);
  $('#ingest-form-title').textContent = local ? `Edit ${name}` : 'Add a source';
  $('#ingest-submit').textContent = local ? 'Save and apply' : 'Add source';
  $('#ingest-new').hidden = !editing && !local;
}

/**
 * Why `name` cannot be saved from here, or '': the local file may replace any actor of
 * the flow file, but those are read-only on this page.
 */
function nameTaken(name) {
  const src = (info?.sources || []).find((s) => s.name === name);
  if (src && src.local) return '';
  if (src) return `${name} is defined in the flow file (read-only here): choose another name`;
  if (actorKinds.has(name)) return `the flow already has an actor ${name} (${actorKinds.get(name)}): choose another name`;
  return '';
}

/** A hint under the form about the name: replaces a local source, clashes with the flow file. */
function checkName() {
  const name = $('#ingest-name').value.trim();
  const hint = $('#ingest-name-hint');
  hint.className = 'muted small';
  setFormMode();
  if (!name || !info) { hint.textContent = ''; return; }
  const src = (info.sources || []).find((s) => s.name === name);
  if (!NAME_RE.test(name)) {
    hint.className = 'error-text small';
    hint.textContent = 'a name is letters, digits, _ and -, and starts with a letter or _';
  } else if (src && src.local) {
    hint.textContent = `replaces ${name} in the local file`;
  } else if (nameTaken(name)) {
    hint.className = 'error-text small';
    hint.textContent = nameTaken(name);
  } else {
    hint.textContent = editing && editing !== name ? `adds ${name}; ${editing} stays as it is` : '';
  }
}

function clearInvalid() {
  for (const c of $('#ingest-form').querySelectorAll('.invalid')) c.classList.remove('invalid');
}

/** Marks the fields that diagnostics name ("setting 'qos' ..."). */
function markInvalid(lines) {
  const ids = { name: '#ingest-name', broker: '#ingest-broker', topics: '#ingest-topics', format: '#ingest-format',
    qos: '#ingest-qos', stores_in: '#ingest-store-field', storage: '#ingest-store-field' };
  for (const line of lines)
    for (const [k, id] of Object.entries(ids))
      if (new RegExp(`'${k}'|\\b${k}:|(^|: )${k}\\b`).test(line)) $(id).classList.add('invalid');
}

async function submit(ev) {
  ev.preventDefault();
  if (busy || !info) return;
  const box = $('#ingest-result');
  clearInvalid();
  const name = $('#ingest-name').value.trim();
  const broker = $('#ingest-broker').value;
  const topics = parseTopics($('#ingest-topics').value);
  const problems = [];
  if (!name) problems.push(['#ingest-name', 'Give the source a name.']);
  else if (!NAME_RE.test(name))
    problems.push(['#ingest-name', 'A name is letters, digits, _ and -, and starts with a letter or _.']);
  else if (nameTaken(name)) problems.push(['#ingest-name', nameTaken(name).replace(/^./, (c) => c.toUpperCase()) + '.']);
  if (!broker) problems.push(['#ingest-broker', 'Choose a broker (the flow file defines them under brokers:).']);
  if (!topics.length) problems.push(['#ingest-topics', 'Give at least one topic.']);
  if (problems.length) {
    for (const [id] of problems) $(id).classList.add('invalid');
    showResult(box, 'bad', problems.map((p) => p[1]).join('\n'));
    $(problems[0][0]).focus();
    return;
  }
  // Editing keeps the settings this form does not show (client_id, batch_size, ...).
  const prev = (info.sources || []).find((s) => s.local && s.name === name);
  const settings = {
    ...(prev ? prev.settings : {}),
    broker, topics, format: $('#ingest-format').value, qos: Number($('#ingest-qos').value),
  };
  const stores_in = [...$('#ingest-store').querySelectorAll('input:checked')].map((i) => i.value);
  const button = $('#ingest-submit');
  busy = true;
  button.disabled = true;
  showResult(box, 'info', `Writing ${name} to the local file and applying it…`);
  try {
    const r = await api('/api/ingest/sources', { method: 'POST', json: { name, settings, stores_in }, quiet: true });
    showResult(box, 'ok', [el('strong', {}, `${name}: `), reloadSummary(r.body && r.body.reload)]);
    box.dataset.outcome = 'ok';
    editing = name;
    await load();
  } catch (e) {
    box.dataset.outcome = 'error';
    if (e.status === 401) { box.hidden = true; return; }
    const lines = diagnosticLines(e.body);
    markInvalid([e.message, ...lines]);
    showResult(box, 'bad', [
      el('div', {}, el('strong', {}, `Not applied (${e.status ? 'HTTP ' + e.status : 'no answer'}): `), e.message),
      lines.length ? el('ul', { class: 'diagnostics' }, lines.map((l) => el('li', {}, l))) : null,
      e.status === 404 ? el('div', { class: 'small' }, 'This engine has no ingest API.') : null,
    ]);
  } finally {
    busy = false;
    button.disabled = !(info.brokers || []).length;
  }
}

// ---------------------------------------------------------------- delete and reload

const armed = new WeakMap();

async function remove(src, button) {
  // The first click arms the button; a second one within 4 s deletes.
  if (!armed.get(button)) {
    armed.set(button, setTimeout(() => { armed.delete(button); button.textContent = 'Delete'; button.classList.remove('armed'); }, 4000));
    button.textContent = 'Delete?';
    button.classList.add('armed');
    button.title = `click again to remove ${src.name}`;
    return;
  }
  clearTimeout(armed.get(button));
  armed.delete(button);
  button.disabled = true;
  const box = $('#ingest-result');
  showResult(box, 'info', `Removing ${src.name} from the local file…`);
  try {
    const r = await api('/api/ingest/sources/' + encodeURIComponent(src.name), { method: 'DELETE', quiet: true });
    showResult(box, 'ok', [el('strong', {}, `${src.name} removed: `), reloadSummary(r.body && r.body.reload)]);
    if (editing === src.name) newSource();
    await load();
  } catch (e) {
    button.disabled = false;
    button.textContent = 'Delete';
    button.classList.remove('armed');
    if (e.status === 401) return;
    const lines = diagnosticLines(e.body);
    showResult(box, 'bad', [
      el('div', {}, el('strong', {}, `${src.name} not removed (${e.status ? 'HTTP ' + e.status : 'no answer'}): `), e.message),
      lines.length ? el('ul', { class: 'diagnostics' }, lines.map((l) => el('li', {}, l))) : null,
    ]);
  }
}

async function reloadFromDisk() {
  const box = $('#ingest-reload-result');
  const button = $('#ingest-reload');
  button.disabled = true;
  showResult(box, 'info', 'Reading the flow file and the local file again…');
  try {
    const r = await api('/api/reload', { method: 'POST', quiet: true });
    const t = reloadSummary(r.body && r.body.reload);
    showResult(box, 'ok', t.charAt(0).toUpperCase() + t.slice(1));
    await load();
  } catch (e) {
    if (e.status === 401) { box.hidden = true; return; }
    const lines = diagnosticLines(e.body);
    showResult(box, 'bad', [
      el('div', {}, el('strong', {}, `Not reloaded (${e.status ? 'HTTP ' + e.status : 'no answer'}): `), e.message),
      lines.length ? el('ul', { class: 'diagnostics' }, lines.map((l) => el('li', {}, l))) : null,
      lines.length ? el('div', { class: 'small' }, 'Nothing changed: the flow runs on as it was.') : null,
    ]);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- start

$('#ingest-form').addEventListener('submit', submit);
$('#ingest-name').addEventListener('input', checkName);
$('#ingest-qos').addEventListener('change', (ev) => { ev.target.dataset.touched = '1'; });
$('#ingest-new').addEventListener('click', newSource);
$('#ingest-reload').addEventListener('click', reloadFromDisk);
for (const id of ['#ingest-name', '#ingest-broker', '#ingest-topics'])
  $(id).addEventListener('input', () => $(id).classList.remove('invalid'));

on('status', updateStates);
load();
loadActors(false); // the flow's name in the nav, also when the ingest API is missing
