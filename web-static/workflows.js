// Workflows: stored versions, upload, train, and the measured runs.
import {
  api, on, el, $, fmtInt, fmtBytes, fmtTime, fmtDuration, fmtNum, stateBadge, throttle, notify, showResult,
  reloadSummary,
} from './app.js';

let wfActors = [];             // names of the workflow actors
const lastKey = new Map();     // actor -> what of its status makes us reload runs
let runs = [];
let selectedRun = null;
let pollTimer = null;

// ---------------------------------------------------------------- versions and actors

async function loadWorkflows() {
  let body;
  try { body = (await api('/api/workflows')).body; } catch { return; }
  renderVersions(body.versions || [], body.actors || []);
  const names = (body.actors || []).map((a) => a.name);
  if (names.join() !== wfActors.join()) {
    wfActors = names;
    const selA = $('#train-actor');
    const keep = selA.value;
    selA.replaceChildren(...(names.length ? names.map((n) => el('option', { value: n }, n))
      : [el('option', { value: '' }, 'no workflow actor in this flow')]));
    if (names.includes(keep)) selA.value = keep;
    $('#train-button').disabled = !names.length;
  }
  renderActors(body.actors || []);
}

function renderVersions(versions, actors) {
  const body = $('#versions tbody');
  body.textContent = '';
  if (!versions.length) {
    body.append(el('tr', {}, el('td', { colspan: 8, class: 'muted' }, 'No versions stored yet. Upload a package above.')));
    return;
  }
  const sorted = versions.slice().sort((a, b) => Number(b.seq) - Number(a.seq));
  const newest = new Map();
  for (const v of sorted) if (!newest.has(v.name)) newest.set(v.name, v.sha256);
  for (const v of sorted)
    body.append(el('tr', { 'data-sha': v.sha256 },
      el('td', {}, v.name),
      el('td', {}, v.version),
      el('td', { class: 'num muted' }, v.seq),
      el('td', { class: 'mono', title: v.sha256 }, String(v.sha256 || '').slice(0, 12)),
      el('td', { class: 'small' }, v.source),
      el('td', { title: fmtTime(v.added, true) }, fmtTime(v.added, true)),
      el('td', { class: 'num' }, fmtBytes(v.size)),
      el('td', {}, ...deployCell(v, actors, newest.get(v.name) === v.sha256))));
}

/** Per workflow actor of this package: "serving", or a button that pins it to `v` (the
 * newest: follows new versions again). The pin is written to the flow's local file. */
function deployCell(v, actors, isNewest) {
  const out = [];
  for (const a of actors) {
    const d = a.details || {};
    if (d.package !== v.name) continue;
    const serving = (d.version || '').endsWith(`(#${v.seq})`);
    if (serving) { out.push(el('span', { class: 'small' }, `${a.name} ✓ `)); continue; }
    const follow = isNewest && d.pinned;
    const b = el('button', { type: 'button', class: 'small deploy', 'data-actor': a.name },
      follow ? `${a.name}: newest` : `deploy to ${a.name}`);
    b.addEventListener('click', () => deploy(a.name, follow ? null : String(v.sha256).slice(0, 12), b));
    out.push(b);
  }
  return out.length ? out : [el('span', { class: 'muted small' }, '–')];
}

async function deploy(actor, version, button) {
  const box = $('#deploy-result');
  button.disabled = true;
  try {
    const r = await api(`/api/workflows/${encodeURIComponent(actor)}/deploy`, { method: 'POST', json: { version }, quiet: true });
    showResult(box, 'ok', `${actor}: ${version ? 'pinned to ' + version : 'follows the newest version'}; ${reloadSummary(r.body.reload)}.`);
  } catch (e) {
    showResult(box, 'bad', e.message);
  } finally {
    button.disabled = false;
    loadWorkflows();
  }
}

function renderActors(list) {
  const body = $('#wf-actors tbody');
  body.textContent = '';
  if (!list.length) {
    body.append(el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'This flow has no workflow actor.')));
    return;
  }
  for (const a of list) {
    const d = a.details || {};
    body.append(el('tr', {},
      el('td', {}, el('a', { href: 'actor.html?name=' + encodeURIComponent(a.name) }, a.name)),
      el('td', {}, stateBadge(a.state)),
      el('td', {}, d.version || '–'),
      el('td', { class: 'mono small' }, d.model || '–'),
      el('td', {}, d.training ? el('span', { class: 'badge running-run' }, d.training)
        : d.deploying ? el('span', { class: 'badge wait' }, 'deploying ' + d.deploying) : el('span', { class: 'muted' }, 'idle')),
      el('td', { class: 'num' }, fmtInt(a.out)),
      el('td', { class: 'err small' }, a.last_error || '')));
  }
}

// ---------------------------------------------------------------- streams for training

async function loadStreams() {
  let body;
  try { body = (await api('/api/streams', { quiet: true })).body; } catch { return; }
  const sel = $('#train-stream');
  const keep = sel.value;
  const seen = new Map();
  for (const s of body.stored || []) {
    if (!s.stream) continue;
    const prev = seen.get(s.stream);
    seen.set(s.stream, `${s.stream}  (${fmtInt((prev ? prev.count : 0) + s.count)} in ${s.storage})`);
  }
  sel.replaceChildren(el('option', { value: '' }, 'as the flow says'),
    ...[...seen.entries()].sort().map(([s, label]) => el('option', { value: s }, label)));
  if (seen.has(keep)) sel.value = keep;
}

// ---------------------------------------------------------------- upload

async function upload(file) {
  const box = $('#upload-result');
  if (!file) return;
  if (!/\.zip$/i.test(file.name) && file.type !== 'application/zip')
    notify(`${file.name} does not look like a zip; sending it anyway`, 'warn');
  showResult(box, 'info', `Uploading ${file.name} (${fmtBytes(file.size)})…`);
  const form = new FormData();
  form.append('file', file, file.name);
  try {
    const r = await api('/api/workflows', { method: 'POST', body: form, quiet: true });
    const v = r.body.version || {};
    const what = `${v.name || file.name} ${v.version || ''}`.trim();
    if (r.body.added)
      showResult(box, 'ok', `New version stored: ${what} (seq ${v.seq}, sha ${String(v.sha256 || '').slice(0, 12)}). It is being deployed.`);
    else
      showResult(box, 'info', `Already stored: ${what} (seq ${v.seq}); nothing new to deploy.`);
    loadWorkflows();
    loadRuns();
  } catch (e) {
    const why = e.status === 422 ? 'Not a valid package:\n' + e.message
      : e.status === 413 ? e.message
      : `Upload failed (${e.status || 'no answer'}): ${e.message}`;
    showResult(box, 'bad', why);
  } finally {
    $('#upload-input').value = '';
  }
}

function setupUpload() {
  const zone = $('#drop-zone');
  const input = $('#upload-input');
  input.addEventListener('change', () => upload(input.files[0]));
  let depth = 0;
  zone.addEventListener('dragenter', (ev) => { ev.preventDefault(); depth++; zone.classList.add('over'); });
  zone.addEventListener('dragover', (ev) => { ev.preventDefault(); ev.dataTransfer.dropEffect = 'copy'; });
  zone.addEventListener('dragleave', () => { if (--depth <= 0) { depth = 0; zone.classList.remove('over'); } });
  zone.addEventListener('drop', (ev) => {
    ev.preventDefault();
    depth = 0;
    zone.classList.remove('over');
    const files = ev.dataTransfer.files;
    if (files.length > 1) notify('One package at a time: uploading ' + files[0].name, 'warn');
    upload(files[0]);
  });
  // A file dropped beside the zone must not make the browser open it.
  window.addEventListener('dragover', (ev) => ev.preventDefault());
  window.addEventListener('drop', (ev) => ev.preventDefault());
}

// ---------------------------------------------------------------- train

function setupTrain() {
  $('#train-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const box = $('#train-result');
    const actor = $('#train-actor').value;
    if (!actor) { showResult(box, 'bad', 'This flow has no workflow actor to train.'); return; }
    const sel = {};
    const stream = $('#train-stream').value;
    if (stream) sel.stream = stream;
    const from = $('#train-from').value, to = $('#train-to').value;
    if (from) sel.from = new Date(from).toISOString();
    if (to) sel.to = new Date(to).toISOString();
    if (from && to && new Date(from) >= new Date(to)) {
      showResult(box, 'bad', '"From" must be before "To".');
      return;
    }
    const label = $('#train-label').value.trim();
    if (label) sel.label = label;
    const button = $('#train-button');
    button.disabled = true;
    try {
      const r = await api(`/api/workflows/${encodeURIComponent(actor)}/train`,
        { method: 'POST', json: sel, quiet: true });
      showResult(box, 'ok', `Training run ${r.body.run} started on ${actor}.`);
      selectedRun = r.body.run;
      await loadRuns();
    } catch (e) {
      showResult(box, 'bad', e.status === 409 ? e.message : `Could not start training (${e.status || 'no answer'}): ${e.message}`);
    } finally {
      button.disabled = !wfActors.length;
    }
  });
}

// ---------------------------------------------------------------- runs

function runDuration(run) {
  const m = run.m || {};
  if (run.status === 'running') return run.started ? Date.now() * 1e6 - Number(run.started) : null;
  const d = Number(m.deploy_wall || 0) + Number(m.train_wall || 0);
  if (d) return d;
  return run.finished && run.started ? Number(run.finished) - Number(run.started) : null;
}

function statusBadge(status) {
  const cls = { succeeded: 'ok', running: 'running-run', failed: 'bad', interrupted: 'degraded' }[status] || '';
  return el('span', { class: 'badge ' + cls }, status);
}

async function loadRuns() {
  clearTimeout(pollTimer);
  pollTimer = null;
  try {
    runs = (await api('/api/runs?limit=20', { quiet: runs.length > 0 })).body.runs || [];
  } catch {
    return;
  }
  renderRuns();
  const running = runs.filter((r) => r.status === 'running');
  renderProgress(running);
  if (selectedRun !== null && runs.some((r) => r.id === selectedRun)) showRun(selectedRun, false);
  // While a run is going on, look again in a second; otherwise status events tell us.
  if (running.length) pollTimer = setTimeout(loadRuns, 1000);
}

function renderRuns() {
  const body = $('#runs tbody');
  body.textContent = '';
  if (!runs.length) {
    body.append(el('tr', {}, el('td', { colspan: 11, class: 'muted' }, 'No training runs yet.')));
    return;
  }
  for (const run of runs) {
    const m = run.status === 'running' ? {} : (run.m || {});
    const tr = el('tr', {
      class: 'clickable' + (run.id === selectedRun ? ' selected' : ''),
      'data-run-id': run.id, 'data-status': run.status,
      title: run.error ? 'error: ' + run.error : 'show the log',
      onclick: () => showRun(run.id, true),
    },
      el('td', { class: 'num' }, run.id),
      el('td', {}, run.actor),
      el('td', {}, [run.workflow, run.version].filter(Boolean).join(' ')),
      el('td', {}, run.trigger),
      el('td', {}, statusBadge(run.status)),
      el('td', { title: fmtTime(run.started, true) }, fmtTime(run.started)),
      el('td', { class: 'num' }, fmtDuration(runDuration(run))),
      el('td', { class: 'num' }, run.status === 'running' && !run.rows ? '–' : fmtInt(run.rows)),
      el('td', { class: 'num' }, m.peak_cpu !== undefined ? Math.round(Number(m.peak_cpu) * 100) + ' %' : '–'),
      el('td', { class: 'num' }, m.peak_rss ? fmtBytes(m.peak_rss) : '–'),
      el('td', { class: 'num', title: m.energy_method || '' }, m.energy_j !== undefined && m.energy_j !== null ? fmtNum(Number(m.energy_j), 3) + ' J' : '–'));
    body.append(tr);
  }
}

function renderProgress(running) {
  const box = $('#run-progress');
  if (!running.length) { box.hidden = true; box.textContent = ''; return; }
  box.hidden = false;
  box.replaceChildren(...running.map((run) => el('div', { class: 'run-progress' },
    el('div', { class: 'row' },
      el('strong', {}, `Run ${run.id}`), el('span', {}, `training ${run.actor}`),
      el('span', { class: 'muted' }, `${run.workflow || ''} ${run.version || ''}`),
      el('span', { class: 'muted', style: 'margin-left:auto' }, 'running for ' + fmtDuration(runDuration(run)))),
    el('div', { class: 'progress', role: 'progressbar', 'aria-label': `run ${run.id} in progress` }),
    run.logs && run.logs.length ? el('div', { class: 'muted small mono' }, String(run.logs[run.logs.length - 1]).slice(0, 200)) : null)));
}

async function showRun(id, scroll) {
  selectedRun = id;
  for (const tr of document.querySelectorAll('#runs tbody tr'))
    tr.classList.toggle('selected', Number(tr.dataset.runId) === id);
  const panel = $('#run-detail');
  let run;
  try { run = (await api('/api/runs/' + id)).body.run; } catch { return; }
  if (!run || selectedRun !== id) return;
  const m = run.status === 'running' ? {} : (run.m || {});
  const kv = (k, v) => el('div', {}, el('span', {}, k), v === undefined || v === null || v === '' ? '–' : v);
  panel.replaceChildren(...[
    el('h2', {}, `Run ${run.id}`, statusBadge(run.status),
      el('span', { class: 'right' }, el('button', { onclick: () => { panel.hidden = true; selectedRun = null; renderRuns(); } }, 'Close'))),
    el('div', { class: 'kv' },
      kv('actor', run.actor), kv('workflow', `${run.workflow || ''} ${run.version || ''}`), kv('trigger', run.trigger),
      kv('started', fmtTime(run.started, true)), kv('finished', run.finished ? fmtTime(run.finished, true) : ''),
      kv('rows', fmtInt(run.rows)),
      kv('model', run.model_id ? el('span', { class: 'mono', title: run.model_id }, String(run.model_id).slice(0, 12)) : ''),
      kv('package', el('span', { class: 'mono', title: run.package_sha256 }, String(run.package_sha256 || '').slice(0, 12))),
      kv('deploy', fmtDuration(m.deploy_wall) + (m.deploy_cpu !== undefined ? ` (cpu ${fmtDuration(m.deploy_cpu)})` : '')),
      kv('train', fmtDuration(m.train_wall) + (m.train_cpu !== undefined ? ` (cpu ${fmtDuration(m.train_cpu)})` : '')),
      kv('peak CPU', m.peak_cpu !== undefined ? Math.round(Number(m.peak_cpu) * 100) + ' %' : ''),
      kv('peak RSS', m.peak_rss ? fmtBytes(m.peak_rss) : ''),
      kv('energy', m.energy_j !== undefined ? `${fmtNum(Number(m.energy_j), 3)} J` + (m.energy_method ? ` (${m.energy_method})` : '') : '')),
    run.data ? el('div', {}, el('h3', {}, 'Data'), el('pre', { class: 'log' }, typeof run.data === 'string' ? run.data : JSON.stringify(run.data, null, 2))) : null,
    run.error ? el('div', {}, el('h3', {}, 'Error'), el('div', { class: 'last-error' }, run.error)) : null,
    el('h3', {}, 'Log'),
    el('pre', { class: 'log' }, run.logs && run.logs.length ? run.logs.join('\n') : 'no log lines'),
  ].filter(Boolean));
  panel.hidden = false;
  if (scroll) panel.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
}

// ---------------------------------------------------------------- live

const refreshSoon = throttle(() => { loadWorkflows(); if (!pollTimer) loadRuns(); }, 1000);

on('status', (data) => {
  const list = (data.actors || []).filter((a) => a.kind === 'workflow');
  if (!list.length) return;
  renderActors(list);
  let changed = false;
  for (const a of list) {
    const d = a.details || {};
    const k = [d.training || '', d.deploying || '', d.version || '', d.model || ''].join('|');
    if (lastKey.has(a.name) && lastKey.get(a.name) !== k) changed = true;
    lastKey.set(a.name, k);
  }
  if (changed) refreshSoon();
  // Keep the running time in the progress line ticking without asking the server.
  const running = runs.filter((r) => r.status === 'running');
  if (running.length) renderProgress(running);
});

setupUpload();
setupTrain();
loadWorkflows();
loadStreams();
loadRuns();
