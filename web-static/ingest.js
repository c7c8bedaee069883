// Ingest: the flow's sources of every kind that lets itself be edited here (GET
// /api/ingest says which), and a form built from the chosen kind's settings table that adds
// or edits the sources kept in the flow's local file (NAME.local.yaml), applied by a reload
// that restarts only what changed.
import {
  api, on, store, flow, el, $, fmtInt, stateBadge, showResult, reloadSummary, diagnosticLines,
} from './app.js';

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;

let info = null;          // the GET /api/ingest answer
let actorKinds = new Map(); // every actor of the flow -> kind (to warn about a taken name)
let editing = null;       // the name of the local source the form edits, or null: a new one
let busy = false;

const nameOf = (x) => (x && typeof x === 'object' ? x.name : x);
const kindInfo = (name) => (info?.kinds || []).find((k) => k.kind === name);
const chosenKind = () => kindInfo($('#ingest-kind').value);
const settingsOf = (kind) => kindInfo(kind)?.settings || [];
// Settings a form cannot show as one field; editing keeps them as they are.
const FORMLESS = new Set(['object', 'object map', 'map']);
const smallRange = (s) => s.type === 'integer' && Number.isFinite(s.min) && Number.isFinite(s.max) &&
  s.max - s.min <= 10;
// On the form itself; the rest under "More settings".
const primary = (s) => s.required || s.type === 'choice' || s.type === 'reference' ||
  s.type === 'string list' || smallRange(s);

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
    : `Cannot load the sources (${e.status ? 'HTTP ' + e.status : 'no answer'}): ${e.message}`;
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

/** The kind select, the fields of the chosen kind and the storages; keeps what the operator
 * chose, unless reset. */
function fillChoices(reset = false) {
  const kinds = (info.kinds || []).map((k) => k.kind);
  const ksel = $('#ingest-kind');
  const keepK = ksel.value;
  ksel.replaceChildren(...(kinds.length ? kinds.map((k) => el('option', { value: k }, k))
    : [el('option', { value: '' }, 'no editable kind in this build')]));
  if (kinds.includes(keepK)) ksel.value = keepK;
  buildFields(reset || keepK !== ksel.value);

  const storages = (info.storages || []).map(nameOf);
  const box = $('#ingest-store');
  const was = reset ? new Map() : new Map([...box.querySelectorAll('input')].map((i) => [i.value, i.checked]));
  box.replaceChildren(...(storages.length
    ? storages.map((s) => el('label', {},
      el('input', { type: 'checkbox', value: s, checked: was.has(s) ? was.get(s) : true }), s))
    : [el('span', { class: 'muted small' }, 'This flow has no storage: the records are only seen live.')]));
  $('#ingest-submit').disabled = !kinds.length;
}

/** One field for one setting of the table; its id is ingest-NAME. */
function field(s) {
  const id = 'ingest-' + s.name;
  const title = s.doc || '';
  let input;
  const options = (values, labels = values) => values.map((v, i) => el('option', { value: v }, labels[i]));
  if (s.type === 'choice') {
    input = el('select', { id, title }, options(s.choices));
    if (s.choices.includes(s.default)) input.value = s.default;
  } else if (s.type === 'reference') {
    const entries = s.entries || [];
    input = el('select', { id, title: title || `an entry of the flow's ${s.section}` },
      entries.length ? options(entries) : [el('option', { value: '' }, `no ${s.section} in this flow`)]);
  } else if (smallRange(s)) {
    const values = [];
    for (let v = s.min; v <= s.max; v++) values.push(String(v));
    input = el('select', { id, title }, options(values));
    if (values.includes(String(s.default))) input.value = String(s.default);
  } else if (s.type === 'boolean') {
    input = el('select', { id, title }, options(['', 'true', 'false'],
      [`default (${s.default || 'false'})`, 'true', 'false']));
  } else if (s.type === 'string list') {
    input = el('textarea', { id, title, rows: 2, spellcheck: 'false' });
  } else {
    input = el('input', {
      id, title, type: 'text', spellcheck: 'false', autocomplete: 'off',
      placeholder: s.secret ? '${ENV_VAR} or file:PATH' : (s.default || ''),
    });
  }
  input.dataset.setting = s.name;
  input.addEventListener('input', () => input.classList.remove('invalid'));
  const hint = s.type === 'string list' ? 'one per line, or separated by commas' : '';
  return el('label', { class: 'field' + (s.type === 'string list' ? ' wide' : '') },
    s.name + (s.required ? ' *' : ''), hint ? el('span', { class: 'hint' }, ' ' + hint) : null, input);
}

/** The fields of the chosen kind (again): required and choices first, the rest folded. */
function buildFields(reset) {
  const k = chosenKind();
  const keep = reset ? {} : collect(false).settings;
  $('#ingest-kind-summary').textContent = k ? k.summary : '';
  const rows = (k?.settings || []).filter((s) => !FORMLESS.has(s.type));
  $('#ingest-fields').replaceChildren(...rows.filter(primary).map(field));
  $('#ingest-more-fields').replaceChildren(...rows.filter((s) => !primary(s)).map(field));
  $('#ingest-more').hidden = !rows.some((s) => !primary(s));
  fillFields(keep);
}

/** Puts values (as the API holds them) into the fields that exist. */
function fillFields(values) {
  for (const input of document.querySelectorAll('#ingest-form [data-setting]')) {
    const v = values[input.dataset.setting];
    if (v === undefined || v === null) continue;
    if (input.tagName === 'SELECT' && ![...input.options].some((o) => o.value === String(v)))
      input.append(el('option', { value: String(v) }, `${v} (not offered)`));
    input.value = Array.isArray(v) ? v.join('\n') : String(v);
  }
}

// ---------------------------------------------------------------- the list

/** The settings a row shows: those on the form itself, as the source has them. */
function settingsCell(src) {
  const st = src.settings || {};
  const rows = settingsOf(src.kind).filter((s) => primary(s) && !FORMLESS.has(s.type) && st[s.name] !== undefined);
  if (!rows.length) return '–';
  return rows.map((s) => {
    const v = st[s.name];
    return el('div', {}, el('span', { class: 'muted' }, s.name + ': '), Array.isArray(v) ? v.join(', ') : String(v));
  });
}

function renderSources() {
  const body = $('#ingest-sources tbody');
  const sources = (info.sources || []).slice().sort((a, b) =>
    Number(!!a.local) - Number(!!b.local) || a.name.localeCompare(b.name));
  const nLocal = sources.filter((s) => s.local).length;
  $('#ingest-count').textContent = sources.length
    ? `${sources.length} source${sources.length === 1 ? '' : 's'}, ${nLocal} in the local file` : '';
  body.textContent = '';
  if (!sources.length) {
    body.append(el('tr', {}, el('td', { colspan: 8, class: 'muted' }, 'This flow has no source of these kinds yet. Add one below.')));
    return;
  }
  for (const src of sources) {
    const stores = src.stores_in || [];
    const actions = src.local
      ? el('span', { class: 'row nowrap' },
        el('button', { type: 'button', class: 'small-btn ingest-edit', 'data-name': src.name, onclick: () => edit(src) }, 'Edit'),
        el('button', { type: 'button', class: 'small-btn danger ingest-delete', 'data-name': src.name,
          title: `remove ${src.name} from the local file and reload`, onclick: (ev) => remove(src, ev.currentTarget) }, 'Delete'))
      : el('span', { class: 'muted small', title: 'defined in the flow file: change it there, then reload from disk' }, 'read-only');
    body.append(el('tr', {
      'data-name': src.name, 'data-local': src.local ? 'true' : 'false', 'data-kind': src.kind,
      class: editing === src.name ? 'selected' : null,
    },
      el('td', {}, el('a', { href: 'actor.html?name=' + encodeURIComponent(src.name) }, src.name)),
      el('td', { class: 'mono small' }, src.kind),
      el('td', { class: 'src-state' }, stateCell(src.name)),
      el('td', { class: 'mono small settings' }, settingsCell(src)),
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
  $('#ingest-name').value = src.name;
  $('#ingest-kind').value = src.kind;
  buildFields(true);
  fillFields(src.settings || {});
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
  const ids = { name: '#ingest-name', kind: '#ingest-kind', stores_in: '#ingest-store-field', storage: '#ingest-store-field' };
  for (const s of chosenKind()?.settings || []) ids[s.name] = '#ingest-' + s.name;
  for (const line of lines)
    for (const [k, id] of Object.entries(ids))
      if ($(id) && new RegExp(`'${k}'|\\b${k}:|(^|: )${k}\\b`).test(line)) {
        $(id).classList.add('invalid');
        if ($(id).closest('#ingest-more')) $('#ingest-more').open = true;
      }
}

/** What the fields hold, as settings, and which required ones are empty. */
function collect(strict = true) {
  const settings = {};
  const missing = [];
  for (const s of chosenKind()?.settings || []) {
    const input = document.getElementById('ingest-' + s.name);
    if (!input) continue;
    const text = input.value.trim();
    if (!text) {
      if (s.required) missing.push(s);
      continue;
    }
    if (s.type === 'string list') settings[s.name] = text.split(/[,\n]/).map((x) => x.trim()).filter(Boolean);
    else if (s.type === 'integer' || s.type === 'number') settings[s.name] = Number.isNaN(Number(text)) ? text : Number(text);
    else if (s.type === 'boolean') settings[s.name] = text === 'true';
    else settings[s.name] = text;
  }
  return strict ? { settings, missing } : { settings };
}

async function submit(ev) {
  ev.preventDefault();
  if (busy || !info) return;
  const box = $('#ingest-result');
  clearInvalid();
  const name = $('#ingest-name').value.trim();
  const kind = $('#ingest-kind').value;
  const { settings: fields, missing } = collect();
  const problems = [];
  if (!name) problems.push(['#ingest-name', 'Give the source a name.']);
  else if (!NAME_RE.test(name))
    problems.push(['#ingest-name', 'A name is letters, digits, _ and -, and starts with a letter or _.']);
  else if (nameTaken(name)) problems.push(['#ingest-name', nameTaken(name).replace(/^./, (c) => c.toUpperCase()) + '.']);
  if (!kind) problems.push(['#ingest-kind', 'This build has no kind that can be added here.']);
  for (const s of missing) problems.push(['#ingest-' + s.name, `Give ${s.name}: ${s.doc}.`]);
  if (problems.length) {
    for (const [id] of problems) $(id).classList.add('invalid');
    showResult(box, 'bad', problems.map((p) => p[1]).join('\n'));
    $(problems[0][0]).focus();
    return;
  }
  // Editing keeps the settings this form does not show; a cleared field goes back to its
  // default.
  const prev = (info.sources || []).find((s) => s.local && s.name === name && s.kind === kind);
  const settings = { ...(prev ? prev.settings : {}) };
  for (const input of document.querySelectorAll('#ingest-form [data-setting]')) delete settings[input.dataset.setting];
  Object.assign(settings, fields);
  const stores_in = [...$('#ingest-store').querySelectorAll('input:checked')].map((i) => i.value);
  const button = $('#ingest-submit');
  busy = true;
  button.disabled = true;
  showResult(box, 'info', `Writing ${name} to the local file and applying it…`);
  try {
    const r = await api('/api/ingest/sources', { method: 'POST', json: { name, kind, settings, stores_in }, quiet: true });
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
    button.disabled = !(info.kinds || []).length;
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
$('#ingest-kind').addEventListener('change', () => { buildFields(true); clearInvalid(); });
$('#ingest-new').addEventListener('click', newSource);
$('#ingest-reload').addEventListener('click', reloadFromDisk);
$('#ingest-name').addEventListener('input', () => $('#ingest-name').classList.remove('invalid'));

on('status', updateStates);
load();
loadActors(false); // the flow's name in the nav, also when the ingest API is missing
