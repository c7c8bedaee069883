// Shared by every page: login, the API fetch wrapper, the one live event stream, the nav,
// and small formatting helpers. Plain ES module; no framework, nothing from the internet.

// ---------------------------------------------------------------- small DOM helpers

/** el('td', {class: 'num', onclick: fn}, 'text', child...) */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export const $ = (sel, root = document) => root.querySelector(sel);

// ---------------------------------------------------------------- formatting

const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
export function fmtInt(n) {
  return n === undefined || n === null || n === '' ? '–' : nf.format(Number(n));
}

export function fmtNum(v, digits = 3) {
  if (typeof v !== 'number') return v === undefined || v === null ? '–' : String(v);
  if (Number.isInteger(v)) return nf.format(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
  return v.toLocaleString(undefined, { maximumSignificantDigits: digits + 1 });
}

export function fmtRate(r) {
  if (r === undefined || r === null || !isFinite(r)) return '–';
  if (r === 0) return '0/s';
  if (r < 10) return r.toFixed(1) + '/s';
  return nf.format(Math.round(r)) + '/s';
}

export function fmtBytes(b) {
  if (b === undefined || b === null || b === '') return '–';
  b = Number(b);
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i === 0 ? b.toFixed(0) : b.toFixed(b < 10 ? 1 : 0)) + ' ' + u[i];
}

/** ns since the epoch -> Date */
export const nsToDate = (ns) => new Date(Number(ns) / 1e6);

export function fmtTime(ns, withDate = false) {
  if (!ns) return '–';
  const d = nsToDate(ns);
  const today = new Date().toDateString() === d.toDateString();
  const t = d.toLocaleTimeString(undefined, { hour12: false });
  return today && !withDate ? t : d.toLocaleDateString() + ' ' + t;
}

export function fmtDuration(ns) {
  if (ns === undefined || ns === null) return '–';
  const s = Number(ns) / 1e9;
  if (s < 1) return (s * 1000).toFixed(0) + ' ms';
  if (s < 60) return s.toFixed(1) + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtAgo(ns) {
  if (!ns) return '–';
  const s = (Date.now() - Number(ns) / 1e6) / 1000;
  if (s < 2) return 'just now';
  if (s < 90) return Math.round(s) + ' s ago';
  if (s < 5400) return Math.round(s / 60) + ' min ago';
  if (s < 48 * 3600) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / 86400) + ' d ago';
}

export function fmtValue(v) {
  if (v && typeof v === 'object' && 'bytes' in v) return `‹${fmtBytes(v.bytes)} binary›`;
  if (typeof v === 'number') return fmtNum(v, 4);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return v === undefined || v === null ? '–' : String(v);
}

/** The colour class of an actor state. */
export function stateClass(state) {
  switch (state) {
    case 'running': case 'connected': return 'ok';
    case 'waiting': case 'deploying': case 'starting': case 'connecting': return 'wait';
    case 'degraded': return 'degraded';
    case 'failed': case 'unresponsive': case 'unreachable': return 'bad';
    default: return 'idle'; // stopping, stopped, unknown
  }
}

export function stateBadge(state) {
  return el('span', { class: 'badge ' + stateClass(state) }, state || 'unknown');
}

// ---------------------------------------------------------------- notices

let noticeBox;
function notices() {
  if (!noticeBox) {
    noticeBox = el('div', { id: 'notices', role: 'status', 'aria-live': 'polite' });
    document.body.append(noticeBox);
  }
  return noticeBox;
}

/** A message at the bottom of the page; errors stay until closed, others fade. */
export function notify(message, kind = 'error') {
  const box = notices();
  // The same message twice in a row: do not stack it.
  for (const n of box.children) if (n.dataset.msg === message) { n.remove(); }
  const close = el('button', { class: 'close', title: 'Dismiss', 'aria-label': 'Dismiss' }, '×');
  const n = el('div', { class: 'notice ' + kind, dataset: { msg: message } }, el('span', {}, message), close);
  close.addEventListener('click', () => n.remove());
  box.append(n);
  while (box.children.length > 4) box.firstChild.remove();
  if (kind !== 'error') setTimeout(() => n.remove(), 6000);
  return n;
}

// ---------------------------------------------------------------- login and the API

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

let loginShown = false;
function showLogin(reason) {
  if (loginShown) return;
  loginShown = true;
  const input = el('input', {
    id: 'token-input', type: 'password', autocomplete: 'current-password',
    placeholder: 'access token', 'aria-label': 'Access token', spellcheck: 'false',
  });
  const submit = el('button', { id: 'token-submit', type: 'submit', class: 'primary' }, 'Log in');
  const msg = el('p', { class: 'muted small' },
    reason || 'This page needs the access token. `fabrik run` logs a link that logs you in, ' +
    'and keeps the token in DATA_DIR/http-token.');
  const err = el('p', { class: 'error-text small', hidden: true });
  const form = el('form', { id: 'login', class: 'login-card' },
    el('h2', {}, 'Log in'), msg, el('div', { class: 'row' }, input, submit), err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    const r = await fetch('/api/login', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token: input.value.trim() }),
    }).catch((e) => ({ ok: false, status: 0, json: async () => ({ error: String(e) }) }));
    if (r.ok) { location.reload(); return; }
    const body = await r.json().catch(() => ({}));
    err.textContent = body.error || `login failed (HTTP ${r.status})`;
    err.hidden = false;
  });
  const overlay = el('div', { class: 'overlay' }, form);
  document.body.append(overlay);
  input.focus();
}

async function loginFromHash() {
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (!m) return;
  // Forget the token in the address bar at once, whatever the answer.
  history.replaceState(null, '', location.pathname + location.search);
  try {
    const r = await fetch('/api/login', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token: decodeURIComponent(m[1]) }),
    });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      notify('Login with the link failed: ' + (body.error || 'HTTP ' + r.status));
    }
  } catch (e) {
    notify('Login failed: the server did not answer (' + e.message + ')');
  }
}

/** Resolves once a #token= link (if any) has been used. Pages await it before the API. */
export const ready = loginFromHash();

/**
 * fetch wrapper: JSON in and out, cookies for auth. Errors are shown to the user (unless
 * opts.quiet) and thrown as ApiError; a 401 shows the token form.
 *   api('/api/flow')
 *   api('/api/workflows/x/train', {method: 'POST', json: {...}})
 *   api('/api/workflows', {method: 'POST', body: formData})
 */
export async function api(path, opts = {}) {
  await ready;
  const init = { method: opts.method || 'GET', credentials: 'same-origin', headers: {} };
  if (opts.json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.json);
  } else if (opts.body !== undefined) {
    init.body = opts.body;
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    const err = new ApiError(0, 'the fabrik server did not answer (' + e.message + ')');
    if (!opts.quiet) notify(err.message);
    throw err;
  }
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!r.ok) {
    const message = (body && body.error) || `HTTP ${r.status} from ${path}`;
    const err = new ApiError(r.status, message, body);
    if (r.status === 401) showLogin();
    else if (!opts.quiet) notify(message);
    throw err;
  }
  return { status: r.status, body };
}

// ---------------------------------------------------------------- the live event stream

const listeners = { status: new Set(), values: new Set(), connection: new Set() };
let source = null;
let connState = 'connecting';
let retryTimer = null;

function setConn(state) {
  connState = state;
  const dot = document.getElementById('live-dot');
  if (dot) {
    dot.className = 'live ' + (state === 'logged out' ? 'lost' : state);
    dot.title = {
      live: 'live: updates arrive from the server',
      connecting: 'connecting to the live updates…',
      lost: 'live updates lost; retrying',
    }[state] || state;
    dot.querySelector('.txt').textContent =
      { live: 'live', connecting: 'connecting', lost: 'offline', 'logged out': 'not logged in' }[state] || state;
  }
  for (const fn of listeners.connection) fn(state);
}

function dispatch(type, ev) {
  let data;
  try { data = JSON.parse(ev.data); } catch { return; }
  for (const fn of listeners[type]) {
    try { fn(data); } catch (e) { console.error(e); }
  }
}

async function connect() {
  await ready;
  if (source) source.close();
  source = new EventSource('/api/events', { withCredentials: true });
  source.addEventListener('open', () => setConn('live'));
  source.addEventListener('status', (ev) => { if (connState !== 'live') setConn('live'); dispatch('status', ev); });
  source.addEventListener('values', (ev) => dispatch('values', ev));
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      // The server refused (401, 503) or went away for good: find out why, then retry.
      setConn('lost');
      api('/api/actors', { quiet: true }).catch((e) => {
        if (e.status === 401) setConn('logged out');
        if (e.status === 503 || e.status === 0) notify('Live updates: ' + e.message, 'warn');
      });
      clearTimeout(retryTimer);
      retryTimer = setTimeout(connect, 5000);
    } else {
      setConn('connecting'); // the browser reconnects by itself
    }
  });
}

/** on('status', fn) gets {actors: [...]} once a second; on('values', fn) a list of records. */
export function on(type, fn) {
  listeners[type].add(fn);
  if (!source) connect();
  return () => listeners[type].delete(fn);
}

window.addEventListener('pagehide', () => { if (source) source.close(); });

// ---------------------------------------------------------------- actor status store

/**
 * The newest status of every actor, and per actor the `out` rate history (records/s from
 * the difference of `out` between status events), kept for the last ~5 minutes.
 */
export const store = {
  actors: new Map(),   // name -> status
  rates: new Map(),    // name -> records/s (out)
  inRates: new Map(),  // name -> records/s (in)
  history: new Map(),  // name -> [[t_seconds, rate], ...]
  prev: new Map(),     // name -> {t, out, in}
  keepSeconds: 300,
};

on('status', (data) => {
  const now = Date.now() / 1000;
  for (const st of data.actors || []) {
    store.actors.set(st.name, st);
    const p = store.prev.get(st.name);
    if (p && now - p.t > 0.2) {
      const dt = now - p.t;
      const r = Math.max(0, (Number(st.out || 0) - p.out) / dt);
      const ri = Math.max(0, (Number(st.in || 0) - p.in) / dt);
      store.rates.set(st.name, r);
      store.inRates.set(st.name, ri);
      let h = store.history.get(st.name);
      if (!h) store.history.set(st.name, (h = []));
      h.push([now, r]);
      while (h.length && h[0][0] < now - store.keepSeconds) h.shift();
    }
    if (!p || now - p.t > 0.2)
      store.prev.set(st.name, { t: now, out: Number(st.out || 0), in: Number(st.in || 0) });
  }
});

// ---------------------------------------------------------------- nav

const pages = [
  ['index.html', 'Overview'],
  ['ingest.html', 'Ingest'],
  ['streams.html', 'Streams'],
  ['workflows.html', 'Workflows'],
  ['predictions.html', 'Predictions'],
];

function buildNav() {
  const here = location.pathname.split('/').pop() || 'index.html';
  const current = here === 'actor.html' ? 'index.html' : here;
  const nav = el('nav', { class: 'top' },
    el('a', { class: 'brand', href: 'index.html' }, el('span', { class: 'logo' }, '◆'), 'fabrik'),
    el('span', { id: 'flow-name', class: 'flow-name' }),
    el('div', { class: 'links' },
      pages.map(([href, label]) => el('a', { href, 'aria-current': href === current ? 'page' : null }, label))),
    el('span', { id: 'live-dot', class: 'live connecting', title: 'connecting' },
      el('span', { class: 'dot' }), el('span', { class: 'txt' }, 'connecting')));
  document.body.prepend(nav);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', buildNav);
else buildNav();

/** Puts the flow's name in the nav (pages that load /api/flow call it). */
export function setFlowName(name) {
  const s = document.getElementById('flow-name');
  if (s) s.textContent = name ? 'flow ' + name : '';
  if (name) document.title = document.title.replace(/ · .*$/, '') + ' · ' + name;
}

let flowPromise = null;
/** GET /api/flow, once per page; flow(true) asks again (a reload changes the flow). */
export function flow(fresh = false) {
  if (!flowPromise || fresh) {
    flowPromise = api('/api/flow').then((r) => { setFlowName(r.body.name); return r.body; });
    flowPromise.catch(() => { flowPromise = null; });
  }
  return flowPromise;
}

/** Calls fn at most once per `ms` (trailing call kept). */
export function throttle(fn, ms) {
  let last = 0, timer = null;
  return (...args) => {
    const wait = last + ms - Date.now();
    if (wait <= 0) { last = Date.now(); fn(...args); return; }
    clearTimeout(timer);
    timer = setTimeout(() => { last = Date.now(); fn(...args); }, wait);
  };
}

/** Shows an actor's `details` as a definition list. */
export function detailsList(details) {
  const dl = el('dl', { class: 'details' });
  const keys = Object.keys(details || {}).sort();
  if (!keys.length) dl.append(el('div', { class: 'muted' }, 'no details'));
  for (const k of keys) dl.append(el('dt', {}, k), el('dd', {}, String(details[k])));
  return dl;
}

/** Fills a .result box (kind ok, info or bad) with text or nodes, and shows it. */
export function showResult(box, kind, content) {
  box.className = 'result ' + kind;
  box.replaceChildren(...[].concat(content).filter((c) => c !== null && c !== undefined && c !== false));
  box.hidden = false;
}

/** The diagnostics of a 400 answer as lines ("FILE:LINE:COL: message"). */
export function diagnosticLines(body) {
  const list = body && Array.isArray(body.diagnostics) ? body.diagnostics : [];
  return list.map((d) => {
    if (typeof d === 'string') return d;
    if (d && typeof d === 'object') {
      const where = [d.file, d.line, d.column ?? d.col].filter((x) => x !== undefined && x !== null && x !== '').join(':');
      const msg = (d.severity && d.severity !== 'error' ? d.severity + ': ' : '') + (d.message ?? JSON.stringify(d));
      return where ? `${where}: ${msg}` : msg;
    }
    return String(d);
  });
}

/** A reload's {added, removed, restarted, unchanged} (lists of actor names, or counts) in words. */
export function reloadSummary(reload) {
  if (!reload || typeof reload !== 'object') return 'applied.';
  const names = (v) => (Array.isArray(v) ? v : []);
  const say = (v) => (Array.isArray(v) ? (v.length ? v.join(', ') : 'nothing') : typeof v === 'number' ? `${v} actor${v === 1 ? '' : 's'}` : 'nothing');
  let t = `applied: restarted ${say(reload.restarted)}, added ${say(reload.added)}`;
  if (names(reload.removed).length || (typeof reload.removed === 'number' && reload.removed)) t += `, removed ${say(reload.removed)}`;
  const u = reload.unchanged;
  if (Array.isArray(u) ? u.length : typeof u === 'number') t += `; ${Array.isArray(u) ? u.length : u} unchanged`;
  return t;
}
