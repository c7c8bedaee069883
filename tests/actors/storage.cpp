// The storage kind, spawned by its own spawn function as the graph does: it answers a batch
// only once the batch is committed. A child process holds the store's LMDB write lock (a
// disk that hangs), so a storage that answered before its commit would be caught answering.
#include "tests/actors/actor_test.hpp"

#include "actors/spawn.hpp"
#include "core/lmdb.hpp"
#include "flows/flow.hpp"
#include "flows/kind.hpp"
#include "tests/support/support.hpp"

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

using namespace fabrik;
using namespace fabrik::test;

namespace {

/// A child process that takes the write lock of the LMDB environment in `dir` when told to
/// and lets it go when told to. Forked before any actor system starts its threads.
class lock_holder {
public:
  explicit lock_holder(std::filesystem::path dir) {
    REQUIRE(::pipe(to_child_) == 0);
    REQUIRE(::pipe(to_parent_) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      char c;
      if (::read(to_child_[0], &c, 1) != 1)
        ::_exit(1);
      lmdb::env_options eo;
      eo.dir = dir;
      auto env = lmdb::env::open(eo);
      auto held = env ? env->begin_write() : decltype(env->begin_write()){env.err()};
      char ok = held ? 'L' : 'E';
      if (::write(to_parent_[1], &ok, 1) != 1 || ::read(to_child_[0], &c, 1) != 1)
        ::_exit(1);
      if (held)
        held->abort();
      ::_exit(0);
    }
  }
  ~lock_holder() {
    release();
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  /// Returns once the child holds the lock.
  bool take() {
    char c = 'g', ok = 0;
    return ::write(to_child_[1], &c, 1) == 1 && ::read(to_parent_[0], &ok, 1) == 1 && ok == 'L';
  }
  void release() {
    if (released_)
      return;
    released_ = true;
    char c = 'r';
    (void)!::write(to_child_[1], &c, 1);
  }

private:
  int to_child_[2] = {-1, -1};
  int to_parent_[2] = {-1, -1};
  pid_t pid_ = -1;
  bool released_ = false;
};

} // namespace

TEST_CASE("storage: a batch is answered only once its records are committed", "[actors][storage]") {
  test_support::scratch_dir dir{"storage-actor"};
  auto store_dir = dir.path() / "store";
  lock_holder holder{store_dir}; // before the actor system's threads

  std::vector<diagnostic> diags;
  auto f = load_flow_text("name: t\nactors:\n  store: {kind: storage, path: store}\n",
                          dir.path() / "flow.yaml", diags);
  INFO((diags.empty() ? std::string{} : diags.front().to_string()));
  REQUIRE(f);
  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::fabrik>();
  caf::actor_system sys{cfg};
  spawn_context ctx{sys, *f, *f->find("store"), dir.path() / "data"};
  auto storage = caf::actor_cast<storage_actor>(find_kind("storage")->spawn(ctx));
  caf::scoped_actor self{sys};
  // The store is open once it answers.
  self->request(storage, caf::infinite, status_atom::value)
    .receive([](const actor_status& st) { CHECK(st.state == "running"); },
             [](caf::error& e) { FAIL(caf::to_string(e)); });

  REQUIRE(holder.take());
  record_batch batch;
  for (uint64_t seq = 1; seq <= 100; ++seq)
    batch.records.push_back(one_record_batch(seq).records.front());
  // While the commit cannot happen, no answer comes.
  bool answered = false;
  self->request(storage, std::chrono::milliseconds{500}, batch)
    .receive([&](uint64_t) { answered = true; }, [](caf::error&) {});
  CHECK_FALSE(answered);

  // Once the lock is free, the batch commits, and the storage holds it (the resend that a
  // producer makes after no answer is stored once).
  holder.release();
  uint64_t accepted = 0;
  self->request(storage, caf::infinite, batch)
    .receive([&](uint64_t n) { accepted = n; }, [](caf::error& e) { FAIL(caf::to_string(e)); });
  CHECK(accepted == 100);
  self->request(storage, caf::infinite, query_atom::value, scan_request{.stream = "test"})
    .receive([](const record_batch& b) { CHECK(b.records.size() == 100); },
             [](caf::error& e) { FAIL(caf::to_string(e)); });
  self->request(storage, caf::infinite, status_atom::value)
    .receive([](const actor_status& st) { CHECK(st.details.at("duplicates") == "100"); },
             [](caf::error& e) { FAIL(caf::to_string(e)); });
  caf::anon_send_exit(storage, caf::exit_reason::user_shutdown);
}
