# The Python half of the fabrik worker loop. The C++ side reads a frame into a bytearray
# and calls handle(type, payload); everything that touches user code lives here.
import io
import json
import math
import os
import pickle
import struct
import sys
import threading
import time
import traceback

_BOOT = '<fabrik-worker>'
_T = {}            # message type numbers, from protocol.hpp (setup)
PROTOCOL = 0       # the protocol version this worker speaks (setup)
MAX_PAYLOAD = 0
MAX_LOG_LINES = 1000
MAX_LINE_CHARS = 2000
_np = None
VERSIONS = {}


class VersionMismatch(Exception):
    """The engine speaks another protocol version."""


class ProtocolError(Exception):
    """A malformed request: a bug in the engine, not in the workflow."""


# -- log capture ------------------------------------------------------------------------

class _Log:
    """Lines printed or logged by user code during one call (bounded)."""

    def __init__(self):
        self._lock = threading.RLock()
        self.lines = []
        self.dropped = 0
        self._partial = ''

    def write(self, text):
        with self._lock:
            text = self._partial + text
            *done, self._partial = text.split('\n')
            for line in done:
                self._add(line)
            if len(self._partial) > MAX_LINE_CHARS:
                self._add(self._partial)
                self._partial = ''

    def _add(self, line):
        if '\r' in line:  # a progress bar redraws its line: keep the last drawing
            line = line.rstrip('\r').rsplit('\r', 1)[-1]
        if len(self.lines) >= MAX_LOG_LINES:
            self.dropped += 1
            return
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + ' [...]'
        self.lines.append(line)

    def take(self):
        with self._lock:
            if self._partial:
                self._add(self._partial)
                self._partial = ''
            lines, dropped = self.lines, self.dropped
            self.lines, self.dropped = [], 0
            return lines, dropped


_log = _Log()


class _Stream(io.TextIOBase):
    """sys.stdout and sys.stderr of user code: lines go to the reply's log."""

    def __init__(self, name):
        self._name = name

    @property
    def name(self):
        return self._name

    @property
    def encoding(self):
        return 'utf-8'

    @property
    def errors(self):
        return 'replace'

    def writable(self):
        return True

    def isatty(self):
        return False

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError('write() argument must be str, not ' + type(s).__name__)
        _log.write(s)
        return len(s)


# -- measurements ---------------------------------------------------------------------

def _open(path, flags):
    try:
        return os.open(path, flags)
    except OSError:
        return None


_clear_refs = None
_status = None


def _reset_peak():
    # Writing 5 to clear_refs resets VmHWM, so the peak is this call's, not the process's.
    if _clear_refs is not None:
        try:
            os.write(_clear_refs, b'5')
        except OSError:
            pass


def _peak_rss():
    if _status is None:
        return 0
    try:
        s = os.pread(_status, 8192, 0)
        i = s.index(b'VmHWM:')
        return int(s[i + 6:s.index(b'kB', i)]) * 1024
    except (OSError, ValueError):
        return 0


# -- data -------------------------------------------------------------------------------

class Sample(dict):
    """One sample for predict(): a dict of input name -> value (a float, or for windows a
    1-D array over the window), plus x (the values in input order: 1-D, or window x inputs)
    and X (x with a leading axis of 1, ready for model.predict). Image inputs are in the
    dict too (a numpy array, or None), and in `images`."""

    __slots__ = ('x', 'columns', 'images')

    def __init__(self, columns, x, images=None):
        if x.ndim == 1:
            super().__init__(zip(columns, x.tolist()))
        else:
            super().__init__(zip(columns, x.T))
        self.x = x
        self.columns = columns
        self.images = images or {}
        self.update(self.images)

    @property
    def X(self):
        return self.x[None]

    def __repr__(self):
        return 'Sample(' + dict.__repr__(self) + ')'


class Dataset:
    """What train() and predict_batch() receive.

    X: float64 array, rows x inputs (or rows x window x inputs for windowed workflows),
       columns in the order of `columns`; a missing value is NaN.
    y: numpy array of labels (float64, int64 or str objects), one per row; None without one.
    columns: the input names.  window: 0, or the records per sample.
    len(ds) is the number of rows; ds['name'] is one input's column; iterating yields Samples.
    """

    __slots__ = ('X', 'y', 'columns', 'window', 'images')

    def __init__(self, X, y, columns, window=0, images=None):
        self.X = X
        self.y = y
        self.columns = columns
        self.window = window
        self.images = images or {}

    def __len__(self):
        return self.X.shape[0]

    def __getitem__(self, name):
        if name in self.images:
            return self.images[name]
        return self.X[..., self.columns.index(name)]

    def __iter__(self):
        return (self.sample(i) for i in range(len(self)))

    def sample(self, i):
        return Sample(self.columns, self.X[i], {k: v[i] for k, v in self.images.items()})

    def __repr__(self):
        return 'Dataset(rows=%d, columns=%r, window=%d, labels=%s, images=%r)' % (
            len(self), self.columns, self.window, 'no' if self.y is None else 'yes',
            list(self.images))


def _slice(blob, where):
    off, size = where['offset'], where['size']
    if off < 0 or size < 0 or off + size > len(blob):
        raise ProtocolError('blob reference outside the blob')
    return blob[off:off + size]


# GenICam pixel formats -> (numpy dtype, channels). Formats of more than 8 bits per
# channel come unpacked in 16-bit little-endian words; packed and unknown formats are given
# as the raw bytes (1-D uint8).
_PIXELS = {'Mono8': ('u1', 1), 'Mono10': ('<u2', 1), 'Mono12': ('<u2', 1),
           'Mono14': ('<u2', 1), 'Mono16': ('<u2', 1), 'RGB8': ('u1', 3), 'BGR8': ('u1', 3),
           'RGBa8': ('u1', 4), 'BGRa8': ('u1', 4), 'RGB16': ('<u2', 3)}
for _b in ('GR', 'RG', 'GB', 'BG'):
    _PIXELS['Bayer' + _b + '8'] = ('u1', 1)
    for _bits in ('10', '12', '16'):
        _PIXELS['Bayer' + _b + _bits] = ('<u2', 1)


def _image(blob, f):
    """A frame as a numpy array over the received message: no copy."""
    if f is None:
        return None
    raw = _slice(blob, f)
    dtype, channels = _PIXELS.get(f['pixel_format'], ('u1', 0))
    h, w = f['height'], f['width']
    if channels and h > 0 and w > 0 and len(raw) == h * w * channels * _np.dtype(dtype).itemsize:
        shape = (h, w) if channels == 1 else (h, w, channels)
        return _np.frombuffer(raw, dtype=dtype).reshape(shape)
    return _np.frombuffer(raw, dtype='u1')


def _images(h, blob, rows):
    im = h.get('images')
    if not im:
        return {}
    names, frames = list(im['names']), im['frames']
    if len(frames) != rows * len(names):
        raise ProtocolError('dataset has %d rows and %d image inputs but %d images'
                            % (rows, len(names), len(frames)))
    return {n: [_image(blob, frames[r * len(names) + j]) for r in range(rows)]
            for j, n in enumerate(names)}


def _dataset(h, blob):
    if _np is None:
        raise RuntimeError('numpy is not installed in the worker\'s Python')
    columns = list(h['columns'])
    rows = int(h['rows'])
    window = int(h.get('window', 0))
    per_row = len(columns) * max(window, 1)
    shape = (rows, len(columns)) if window == 0 else (rows, window, len(columns))
    values = _slice(blob, h['values'])
    if len(values) != rows * per_row * 8:
        raise ProtocolError('dataset values do not match rows x columns')
    X = _np.frombuffer(values, dtype='<f8').reshape(shape) if rows * per_row else _np.zeros(shape)
    y = None
    labels = h.get('labels')
    if labels is not None:
        kind = labels['type']
        if kind == 'string':
            y = _np.array(labels['values'], dtype=object)
        elif kind in ('float64', 'int64'):
            y = _np.frombuffer(_slice(blob, labels), dtype='<f8' if kind == 'float64' else '<i8')
        else:
            raise ProtocolError('unknown label type ' + kind)
        if len(y) != rows:
            raise ProtocolError('dataset has %d rows but %d labels' % (rows, len(y)))
    return Dataset(X, y, columns, window, _images(h, blob, rows))


def _json_default(o):
    tolist = getattr(o, 'tolist', None)  # numpy scalars and arrays
    if tolist is not None:
        return tolist()
    if isinstance(o, (bytes, bytearray, memoryview)):
        import base64
        return {'base64': base64.b64encode(bytes(o)).decode('ascii')}
    if isinstance(o, (set, frozenset)):
        return list(o)
    raise TypeError('an output of type %s cannot be sent (use numbers, strings, bools, '
                    'lists and dicts)' % type(o).__name__)


def _plain(o):
    # The slow path of _dumps: numpy values to Python, NaN and infinity to null, dict keys
    # that JSON cannot take to strings.
    tolist = getattr(o, 'tolist', None)
    if tolist is not None:
        o = tolist()
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {_plain_key(k): _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    return o


def _plain_key(k):
    tolist = getattr(k, 'tolist', None)
    if tolist is not None:
        k = tolist()
    return k if isinstance(k, (str, int, float, bool)) or k is None else str(k)


def _dumps(o):
    """JSON text of an output (numpy values allowed; NaN and infinity become null)."""
    try:
        return json.dumps(o, default=_json_default, allow_nan=False, separators=(',', ':'))
    except (ValueError, TypeError):
        pass
    return json.dumps(_plain(o), default=_json_default, allow_nan=False, separators=(',', ':'))


# -- the workflow -----------------------------------------------------------------------

class _State:
    module = None
    kind = None
    params = {}
    model = None
    load_attempted = False


_st = _State()


def _function(name):
    fn = getattr(_st.module, name, None)
    return fn if callable(fn) else None


def _need_module():
    if _st.module is None:
        raise RuntimeError('no workflow package is loaded in this worker')


def _hello(h, blob):
    theirs = h.get('protocol')
    if theirs != PROTOCOL:
        raise VersionMismatch('worker protocol version mismatch: the engine speaks version %s, '
                              'this worker speaks version %d' % (theirs, PROTOCOL))
    reply = {'protocol': PROTOCOL, 'pid': os.getpid()}
    reply.update(VERSIONS)
    return _T['hello_reply'], reply, b''


def _load(h, blob):
    if _st.load_attempted:
        raise RuntimeError('this worker has already loaded a package; start a new worker '
                           'for another one')
    _st.load_attempted = True
    package = os.path.abspath(h['package_dir'])
    entry = h['entry']
    if entry.endswith('.py'):
        entry = entry[:-3]
    kind = h.get('kind', 'fabrik')
    if kind not in ('fabrik', 'process_input'):
        raise ProtocolError('unknown workflow kind ' + kind)
    params = h.get('params') or {}
    # sys.path = [package, package/lib, standard library and dist-packages...]
    sys.path[0:0] = [package, os.path.join(package, 'lib')]
    os.chdir(package)
    import importlib
    module = importlib.import_module(entry)
    _st.module, _st.kind = module, kind
    if kind == 'fabrik':
        if _function('predict') is None and _function('predict_batch') is None:
            raise TypeError('entry module %s defines neither predict(model, sample) nor '
                            'predict_batch(model, samples)' % entry)
    elif _function('process_input') is None:
        raise TypeError('entry module %s defines no process_input(data)' % entry)
    update = _function('update_parameters')
    if update is not None:
        update(dict(params))
    _st.params = params
    names = [n for n in ('train', 'predict', 'predict_batch', 'process_input',
                         'update_parameters') if _function(n) is not None]
    return _T['result'], {'functions': names}, b''


def _train(h, blob):
    _need_module()
    train = _function('train')
    if train is None:
        raise TypeError('the workflow defines no train(dataset, params)')
    ds = _dataset(h['dataset'], blob)
    model = train(ds, dict(_st.params))
    if isinstance(model, (bytes, bytearray, memoryview)):
        data, fmt = bytes(model), 'bytes'
    else:
        data, fmt = pickle.dumps(model), 'pickle'
    meta = {'format': fmt, 'size': len(data)}
    meta.update(VERSIONS)
    return _T['result'], {'model': meta}, data


def _predict(h, blob):
    _need_module()
    if _st.kind != 'fabrik':
        raise TypeError('a process_input workflow takes process_input messages, not predict')
    m = h.get('model')
    if m is not None:
        raw = _slice(blob, m)
        model = pickle.loads(raw) if m['format'] == 'pickle' else bytes(raw)
        _st.model = model  # only once it unpickled: a broken model never replaces a good one
    s = h.get('samples')
    if s is None or s['rows'] == 0:
        return _T['result'], {'batch': False, 'count': 0}, b'[]'
    ds = _dataset(s, blob)
    n = len(ds)
    predict, predict_batch = _function('predict'), _function('predict_batch')
    if predict_batch is not None and (n > 1 or predict is None):
        outs = predict_batch(_st.model, ds)
        if isinstance(outs, dict) or not hasattr(outs, '__len__'):
            raise TypeError('predict_batch() must return a list of dicts, got '
                            + type(outs).__name__)
        outs = list(outs)
        if len(outs) != n:
            raise ValueError('predict_batch() returned %d outputs for %d samples' % (len(outs), n))
        for o in outs:
            if not isinstance(o, dict):
                raise TypeError('predict_batch() must return a list of dicts, found '
                                + type(o).__name__)
        batch = True
    else:
        outs = []
        for i in range(n):
            o = predict(_st.model, ds.sample(i))
            if not isinstance(o, dict):
                raise TypeError('predict() must return a dict, got ' + type(o).__name__)
            outs.append(o)
        batch = False
    return _T['result'], {'batch': batch, 'count': n}, _dumps(outs).encode()


def _process_input(h, blob):
    _need_module()
    if _st.kind != 'process_input':
        raise TypeError('a fabrik workflow takes predict messages, not process_input')
    out = _function('process_input')(h.get('data'))
    if out is not None and not isinstance(out, dict):
        raise TypeError('process_input() must return a dict or None, got ' + type(out).__name__)
    return _T['result'], {'output': out is not None}, _dumps(out).encode()


def _update_parameters(h, blob):
    _need_module()
    params = h.get('params') or {}
    update = _function('update_parameters')
    if update is not None:
        update(dict(params))
    _st.params = params
    return _T['result'], {}, b''


# -- the loop ---------------------------------------------------------------------------

def _hidden(filename):
    return filename == _BOOT or filename.startswith('<frozen importlib')


def _format_exception(e):
    te = traceback.TracebackException(type(e), e, e.__traceback__, compact=True)
    seen, todo = set(), [te]
    while todo:  # drop the worker's own frames from every exception in the chain
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        x.stack = traceback.StackSummary.from_list(
            [f for f in x.stack if not _hidden(f.filename)])
        todo += [x.__cause__, x.__context__]
    return ''.join(te.format())


def _error_header(e):
    t = type(e)
    name = t.__qualname__ if t.__module__ in ('builtins', __name__) else \
        t.__module__ + '.' + t.__qualname__
    if isinstance(e, SystemExit):
        message = 'workflow code called sys.exit(%r); the worker does not exit' % (e.code,)
    else:
        message = str(e)
    header = {'type': name, 'message': message, 'traceback': ''}
    if isinstance(e, MemoryError):
        # Free what the failed call held before formatting, and restart the worker after
        # the reply: memory may stay fragmented or held by module globals.
        traceback.clear_frames(e.__traceback__)
        header['exit'] = True
    if isinstance(e, VersionMismatch):
        header['exit'] = True
    if isinstance(e, ProtocolError):
        header['protocol_error'] = True
    try:
        header['traceback'] = _format_exception(e)
    except BaseException:
        pass
    return header


_HANDLERS = {}


def _frame(mtype, header, blob):
    h = json.dumps(header, default=_json_default, separators=(',', ':')).encode()
    n = 4 + len(h) + len(blob)
    if n > MAX_PAYLOAD:
        raise ValueError('reply of %d bytes exceeds the protocol limit of %d bytes'
                         % (n, MAX_PAYLOAD))
    return b''.join((struct.pack('<IBI', n, mtype, len(h)), h, blob))


def handle(mtype, payload):
    """One request: returns (reply frame, exit after sending)."""
    wall0, cpu0 = time.perf_counter_ns(), time.process_time_ns()
    _reset_peak()
    try:
        (hlen,) = struct.unpack_from('<I', payload, 0)
        header = json.loads(bytes(payload[4:4 + hlen]))
        blob = memoryview(payload)[4 + hlen:]
        fn = _HANDLERS.get(mtype)
        if fn is None:
            raise ProtocolError('unexpected message type %d' % mtype)
        rtype, rheader, rblob = fn(header, blob)
    except BaseException as e:
        rtype, rheader, rblob = _T['error'], _error_header(e), b''
        del e
    lines, dropped = _log.take()
    rheader['logs'] = lines
    if dropped:
        rheader['logs_dropped'] = dropped
    rheader['stats'] = {'wall_ns': time.perf_counter_ns() - wall0,
                        'cpu_ns': time.process_time_ns() - cpu0,
                        'peak_rss': _peak_rss(),
                        'cpu_total_ns': time.process_time_ns()}
    try:
        frame = _frame(rtype, rheader, rblob)
    except BaseException as e:
        frame = _frame(_T['error'], _error_header(e), b'')
    return frame, bool(rheader.get('exit'))


def setup(protocol, types, max_payload):
    global PROTOCOL, MAX_PAYLOAD, _np, _clear_refs, _status
    PROTOCOL, MAX_PAYLOAD = protocol, max_payload
    _T.update(types)
    _HANDLERS.update({
        _T['hello']: _hello, _T['load']: _load, _T['train']: _train,
        _T['predict']: _predict, _T['process_input']: _process_input,
        _T['update_parameters']: _update_parameters,
    })
    VERSIONS['python'] = '%d.%d.%d' % sys.version_info[:3]
    VERSIONS['numpy'] = VERSIONS['sklearn'] = None
    try:
        import numpy
        _np = numpy
        VERSIONS['numpy'] = numpy.__version__
    except Exception:
        pass
    try:
        from importlib import metadata  # reads the version without importing sklearn
        VERSIONS['sklearn'] = metadata.version('scikit-learn')
    except Exception:
        pass
    # Child interpreters (multiprocessing's spawn, joblib's loky workers) run
    # sys.executable: that must be a Python, not this worker.
    exe = os.path.join(sys.base_prefix, 'bin', 'python%d.%d' % sys.version_info[:2])
    if os.path.exists(exe):
        sys.executable = sys._base_executable = exe
    _clear_refs = _open('/proc/self/clear_refs', os.O_WRONLY)
    _status = _open('/proc/self/status', os.O_RDONLY)
    import faulthandler
    import logging
    import signal
    # The engine sends SIGUSR1 before killing a worker that timed out: the stack of every
    # thread goes to stderr, so the reason says where the code hung.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    sys.stdout, sys.stderr = _Stream('<stdout>'), _Stream('<stderr>')
    sys.stdin = io.StringIO()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('%(levelname)s %(name)s: %(message)s'))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
