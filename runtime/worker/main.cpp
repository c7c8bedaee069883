// fabrik-worker: one process per deployed workflow, started by the engine's worker_client.
// It reads framed requests from its end of a socketpair (fd 3), answers each by calling into
// the workflow's Python code (runtime/worker/python.cpp) and exits when the engine closes the
// socket. docs/workflows.md, "The worker and the Python contract", describes the protocol.
//
// Exit statuses: 0 the engine closed the socket (or a reply asked for a restart),
// 64 bad command line, 65 malformed frame, 70 Python could not start, 71 out of memory
// reading a request, 74 the socket failed.

#include "runtime/protocol.hpp"
#include "runtime/worker/python.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

using namespace fabrik;

namespace {

constexpr const char* usage =
  "usage: fabrik-worker [--fd N] [--memory-limit BYTES] [--parent PID]\n"
  "                     [--protocol-version N]\n"
  "\n"
  "The Python workflow worker of fabrik. The engine starts it with its end of a socketpair\n"
  "as fd 3 and talks the worker protocol (docs/workflows.md) over it; it is not meant to be\n"
  "started by hand.\n"
  "\n"
  "  --fd N                 socket file descriptor (default 3)\n"
  "  --memory-limit BYTES   address-space limit (RLIMIT_AS); 0 for none (default 2 GiB)\n"
  "  --parent PID           exit at once if the parent is no longer PID\n"
  "  --protocol-version N   claim protocol version N (tests of the version handshake)\n";

[[noreturn]] void quit(int status) {
  std::fflush(stdout);
  std::fflush(stderr);
  // No Py_FinalizeEx: non-daemon threads of user code would make it wait forever.
  _exit(status);
}

[[noreturn]] void fail(int status, const std::string& what) {
  std::fprintf(stderr, "fabrik-worker: %s\n", what.c_str());
  quit(status);
}

/// Reads exactly n bytes; returns how many arrived before EOF.
size_t read_full(int fd, char* p, size_t n) {
  size_t got = 0;
  while (got < n) {
    auto r = ::read(fd, p + got, n - got);
    if (r > 0) {
      got += static_cast<size_t>(r);
    } else if (r == 0) {
      break;
    } else if (errno != EINTR) {
      fail(74, std::string{"reading the socket: "} + std::strerror(errno));
    }
  }
  return got;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    auto r = ::write(fd, data.data(), data.size());
    if (r >= 0)
      data.remove_prefix(static_cast<size_t>(r));
    else if (errno != EINTR)
      return false;
  }
  return true;
}

/// Exits the worker once its parent is gone (it was reparented). A thread that polls,
/// not PR_SET_PDEATHSIG: that fires when the *thread* that spawned us ends, and engine
/// threads come and go.
void watch_parent(pid_t parent) {
  if (getppid() != parent)
    quit(0);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_t t;
  static pid_t watched = parent;
  auto watch = [](void*) -> void* {
    for (;;) {
      sleep(1);
      if (getppid() != watched)
        _exit(0);
    }
  };
  if (pthread_create(&t, &attr, watch, nullptr) == 0)
    pthread_detach(t);
  pthread_attr_destroy(&attr);
}

bool parse_number(const char* s, unsigned long long& out) {
  char* end = nullptr;
  errno = 0;
  out = std::strtoull(s, &end, 10);
  return errno == 0 && end != s && *end == '\0';
}

} // namespace

int main(int argc, char** argv) {
  int fd = worker::worker_socket_fd;
  unsigned long long memory_limit = 2ull << 30;
  unsigned long long parent = 0;
  unsigned long long protocol = worker::protocol_version;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage, stdout);
      return 0;
    }
    unsigned long long v = 0;
    if (i + 1 >= argc || !parse_number(argv[i + 1], v)) {
      std::fprintf(stderr, "fabrik-worker: %s needs a number\n%s", argv[i], usage);
      return 64;
    }
    ++i;
    if (arg == "--fd")
      fd = static_cast<int>(v);
    else if (arg == "--memory-limit")
      memory_limit = v;
    else if (arg == "--parent")
      parent = v;
    else if (arg == "--protocol-version")
      protocol = v;
    else {
      std::fprintf(stderr, "fabrik-worker: unknown option %s\n%s", argv[i - 1], usage);
      return 64;
    }
  }

  // The engine decides when a worker ends: ignore the terminal's Ctrl-C (the worker has
  // its own process group anyway), see a closed socket as an error, not a signal, and die
  // with the engine instead of training on as an orphan.
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGINT, SIG_IGN);
  if (parent != 0)
    watch_parent(static_cast<pid_t>(parent));

  if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) // user subprocesses must not hold the socket
    fail(64, "fd " + std::to_string(fd) + " is not open: start fabrik-worker from fabrik");

  if (memory_limit > 0) {
    rlimit lim{memory_limit, memory_limit};
    if (setrlimit(RLIMIT_AS, &lim) != 0)
      fail(71, std::string{"cannot set the memory limit: "} + std::strerror(errno));
  }

  auto py = worker::python::start(argv[0], static_cast<uint32_t>(protocol));
  if (!py)
    fail(70, py.err().message);

  for (;;) {
    unsigned char prefix[worker::frame_prefix_size];
    size_t got;
    {
      worker::python::unlocked nogil;
      got = read_full(fd, reinterpret_cast<char*>(prefix), sizeof prefix);
    }
    if (got == 0)
      quit(0); // the engine closed the socket: a normal stop
    if (got < sizeof prefix)
      fail(65, "truncated frame prefix");
    auto frame = worker::parse_frame_prefix(prefix);
    if (!frame)
      fail(65, frame.err().message);
    auto [size, type] = *frame;
    char* buf = py->new_request(size);
    if (buf == nullptr)
      fail(71, "cannot allocate " + std::to_string(size) + " bytes for a " + worker::to_string(type)
                 + " request (memory limit " + std::to_string(memory_limit) + " bytes)");
    {
      worker::python::unlocked nogil;
      got = read_full(fd, buf, size);
    }
    if (got < size)
      fail(65, "truncated frame payload");
    auto reply = py->handle(static_cast<uint8_t>(type));
    if (!reply)
      fail(70, reply.err().message);
    bool ok;
    {
      worker::python::unlocked nogil;
      ok = write_all(fd, reply->frame);
    }
    if (!ok)
      quit(errno == EPIPE ? 0 : 74); // EPIPE: the engine went away while we worked
    if (reply->exit_after)
      quit(0);
  }
}
