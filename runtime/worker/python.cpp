// Python.h first: it sets feature macros that the standard headers must see.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "runtime/worker/python.hpp"

#include "runtime/protocol.hpp"

#include <string>

namespace fabrik::worker {

// The Python half of the worker loop: runtime/worker/bootstrap.py, embedded at build time
// (cmake/embed_text.cmake), compiled as module _fabrik_worker with the file name
// "<fabrik-worker>" (tracebacks shown to users leave its frames out). Kept in Python: it is
// mostly calls into user code, and Python's own traceback, json and pickle modules.
extern const char bootstrap_source[];

namespace {

/// Drops a reference held in a void* member (the header does not include Python.h).
void clear(void*& p) {
  Py_XDECREF(static_cast<PyObject*>(p));
  p = nullptr;
}

/// The pending Python error as "Type: message" (and clears it).
std::string python_error() {
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  std::string out = "unknown Python error";
  if (value != nullptr) {
    if (PyObject* s = PyObject_Str(value)) {
      if (const char* c = PyUnicode_AsUTF8(s))
        out = c;
      Py_DECREF(s);
    }
  }
  if (type != nullptr) {
    if (const char* name = reinterpret_cast<PyTypeObject*>(type)->tp_name)
      out = std::string{name} + ": " + out;
  }
  PyErr_Clear();
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
  return out;
}

expected<void> from_status(PyStatus status, const char* what) {
  if (!PyStatus_Exception(status))
    return {};
  std::string msg = std::string{"cannot initialise Python ("} + what + ")";
  if (status.func != nullptr)
    msg += std::string{": "} + status.func;
  if (status.err_msg != nullptr)
    msg += std::string{": "} + status.err_msg;
  return make_error(ec::internal, msg);
}

expected<void> initialise(const char* argv0) {
  PyConfig config;
  // Isolated: PYTHONPATH, PYTHONHOME and the user's site directory of whoever started the
  // engine (a pyenv, a virtualenv) cannot change what runs. The site module still adds
  // Debian's dist-packages, where numpy and scikit-learn live.
  PyConfig_InitIsolatedConfig(&config);
  config.site_import = 1;
  config.user_site_directory = 0;
  config.write_bytecode = 0; // extracted packages stay as they were extracted
  config.install_signal_handlers = 0; // no KeyboardInterrupt: the engine owns our lifetime
  config.faulthandler = 1; // a segfault prints the Python stack to stderr
  config.parse_argv = 0;
  auto done = [&](PyStatus s, const char* what) {
    auto r = from_status(s, what);
    if (!r)
      PyConfig_Clear(&config);
    return r;
  };
  if (auto r = done(PyConfig_SetBytesString(&config, &config.program_name, argv0), "program name");
      !r)
    return r;
  char* argv[] = {const_cast<char*>(argv0)};
  if (auto r = done(PyConfig_SetBytesArgv(&config, 1, argv), "argv"); !r)
    return r;
  auto status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  return from_status(status, "Py_InitializeFromConfig");
}

PyObject* type_table() {
  PyObject* d = PyDict_New();
  for (auto t : {message_type::hello, message_type::hello_reply, message_type::load,
                 message_type::train, message_type::predict, message_type::process_input,
                 message_type::update_parameters, message_type::result, message_type::error}) {
    std::string name = to_string(t);
    if (t == message_type::hello_reply)
      name = "hello_reply";
    PyObject* v = PyLong_FromLong(static_cast<long>(t));
    PyDict_SetItemString(d, name.c_str(), v);
    Py_DECREF(v);
  }
  return d;
}

} // namespace

expected<python> python::start(const char* argv0, uint32_t protocol) {
  if (Py_IsInitialized())
    return make_error(ec::internal, "Python is already initialised in this process");
  if (auto r = initialise(argv0); !r)
    return r.err();
  PyObject* code = Py_CompileString(bootstrap_source, "<fabrik-worker>", Py_file_input);
  if (code == nullptr)
    return make_error(ec::internal, "worker bootstrap does not compile: " + python_error());
  PyObject* module = PyImport_ExecCodeModule("_fabrik_worker", code);
  Py_DECREF(code);
  if (module == nullptr)
    return make_error(ec::internal, "worker bootstrap fails: " + python_error());
  PyObject* types = type_table();
  PyObject* r =
    PyObject_CallMethod(module, "setup", "KOK", static_cast<unsigned long long>(protocol), types,
                        static_cast<unsigned long long>(max_payload_size));
  Py_DECREF(types);
  if (r == nullptr) {
    Py_DECREF(module);
    return make_error(ec::internal, "worker bootstrap setup fails: " + python_error());
  }
  Py_DECREF(r);
  python p;
  p.handle_fn_ = PyObject_GetAttrString(module, "handle");
  Py_DECREF(module);
  if (p.handle_fn_ == nullptr)
    return make_error(ec::internal, "worker bootstrap has no handle(): " + python_error());
  return p;
}

python::python(python&& other) noexcept
  : handle_fn_(other.handle_fn_), request_(other.request_), reply_(other.reply_) {
  other.handle_fn_ = other.request_ = other.reply_ = nullptr;
}

python::~python() {
  // The interpreter is never finalised (see the header); drop our references only.
  if (Py_IsInitialized()) {
    clear(handle_fn_);
    clear(request_);
    clear(reply_);
  }
}

char* python::new_request(size_t size) {
  clear(request_);
  clear(reply_);
  PyObject* buf = PyByteArray_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(size));
  if (buf == nullptr) {
    PyErr_Clear();
    return nullptr;
  }
  request_ = buf;
  return PyByteArray_AS_STRING(buf);
}

expected<python_reply> python::handle(uint8_t type) {
  auto* fn = static_cast<PyObject*>(handle_fn_);
  auto* request = static_cast<PyObject*>(request_);
  if (fn == nullptr || request == nullptr)
    return make_error(ec::internal, "no request to handle");
  PyObject* r = PyObject_CallFunction(fn, "iO", int{type}, request);
  clear(request_);
  if (r == nullptr)
    return make_error(ec::internal, "worker bootstrap failed: " + python_error());
  PyObject* frame = nullptr;
  int exit_after = 0;
  if (!PyArg_ParseTuple(r, "Sp", &frame, &exit_after)) {
    Py_DECREF(r);
    return make_error(ec::internal, "worker bootstrap returned a bad reply: " + python_error());
  }
  Py_INCREF(frame);
  Py_DECREF(r);
  reply_ = frame;
  return python_reply{{PyBytes_AS_STRING(frame), static_cast<size_t>(PyBytes_GET_SIZE(frame))},
                      exit_after != 0};
}

python::unlocked::unlocked() : state_(PyEval_SaveThread()) {}

python::unlocked::~unlocked() { PyEval_RestoreThread(static_cast<PyThreadState*>(state_)); }

} // namespace fabrik::worker
