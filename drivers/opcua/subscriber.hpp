#pragma once
// The OPC UA session state machine behind `opcua.source`: on its own thread it connects,
// resolves the variables a flow names (node ids, browse paths, every variable under a
// folder), creates a subscription with one monitored item per variable, keeps Publish
// requests outstanding and turns data changes into records. On any failure it closes the
// connection and starts over with backoff, so a server restart is survived and the
// subscription re-created. Pure code: no CAF; the actor gets batches through a callback.

#include "core/record.hpp"
#include "drivers/opcua/client.hpp"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace fabrik::opcua {

struct monitor_options {
  client_options connection;
  std::vector<std::string> nodes; ///< node ids ("ns=1;s=X") or browse paths ("Plant/X")
  std::vector<std::string> folders; ///< the same forms: every variable below is monitored
  uint16_t default_namespace = 1; ///< for browse path segments without "NS:"
  double sampling_interval_ms = 100;
  double publishing_interval_ms = 500;
  uint32_t queue_size = 10; ///< per variable, changes the server keeps between publishes
  /// status_value: changed values only; status_value_timestamp: every write, even unchanged.
  data_change_trigger trigger = data_change_trigger::status_value;
  std::string stream; ///< the records' stream
  int reconnect_min_s = 1;
  int reconnect_max_s = 30;
};

/// A variable being monitored: the name its values get in records.
struct monitored_variable {
  std::string name;
  node_id id;
};

struct monitor_events {
  /// Data changes as records; runs on the subscriber's thread and may block (the server
  /// queues meanwhile: back-pressure).
  std::function<void(record_batch)> values;
  /// "connecting", "running" (with what the server granted) or "degraded" (with why).
  std::function<void(const std::string& state, const std::string& why)> state;
  /// A named variable or folder the server does not know, or a monitored item it refused:
  /// one line each, at every (re)connect.
  std::function<void(const std::string& what)> problem;
};

/// Counters the actor shows in its status.
struct monitor_counters {
  std::atomic<uint64_t> values{0}; ///< data changes received
  std::atomic<uint64_t> publishes{0}; ///< Publish responses, keep-alives included
  std::atomic<uint64_t> connects{0}; ///< sessions activated
  std::atomic<uint64_t> lost{0}; ///< notification messages missed (sequence gaps)
  std::atomic<uint64_t> overflows{0}; ///< values the server dropped: its queue was full
  std::atomic<uint64_t> unknown_nodes{0}; ///< at the last connect
  std::atomic<uint64_t> variables{0}; ///< monitored at the last connect
};

/// The fields one OPC UA value becomes: NAME for a scalar, NAME[i] for each element of an
/// array (flattened). Numbers and Booleans keep their kind (integers as int, UInt64 above
/// 2^63 - 1 as double), DateTime becomes int ns since 1970, ByteString and ExtensionObject
/// bodies bytes, String, NodeId, Guid, QualifiedName, LocalizedText and XmlElement text,
/// StatusCode int. A null value adds nothing.
void append_fields(const std::string& name, const variant& v, std::vector<field>& out);

/// Turns data changes into records: values with the same time (source timestamp, else
/// server timestamp, else the ingest time, marked time_replaced) and quality are one
/// record; a second value of one variable at that time and quality starts another (writes
/// within the timestamp's resolution). Unknown client handles and values without a value
/// are skipped. A server may spread one write's values over two publishes, so the records
/// of the newest time (and all of them while the server says more notifications follow)
/// are held back until a later publish completes them, or flush().
class record_grouper {
public:
  record_grouper(std::vector<monitored_variable> names, std::string stream)
    : names_(std::move(names)), stream_(std::move(stream)) {}

  /// One publish's data changes; returns the records now complete, oldest first. New
  /// records are numbered from next_seq. `more`: the server said more notifications are
  /// on their way (a large backlog split by item), so nothing is complete yet.
  std::vector<record> add(const data_change_notification& n, int64_t ingest, uint64_t& next_seq,
                          bool more = false);
  /// Hands over the records held back.
  std::vector<record> flush();
  bool holding() const { return !open_.empty(); }

private:
  struct open_record {
    record r;
    std::unordered_set<uint32_t> has; ///< client handles with a value in r
  };
  std::vector<monitored_variable> names_;
  std::string stream_;
  std::vector<open_record> open_;
};

class subscriber {
public:
  subscriber(monitor_options options, monitor_events events);
  ~subscriber();
  subscriber(const subscriber&) = delete;
  subscriber& operator=(const subscriber&) = delete;

  void start();
  /// Closes the session (deleting its subscription) and joins the thread.
  void stop();

  const monitor_counters& counters() const { return counters_; }

private:
  void run();
  /// One session from connect to failure or stop; returns why it ended.
  error session();
  /// Subscribes and publishes until a failure or stop.
  error monitor(client& c);
  expected<std::vector<monitored_variable>> resolve(client& c);
  bool sleep_for(std::chrono::milliseconds d); ///< false when stopping
  void hand_over(std::vector<record> records);

  monitor_options options_;
  monitor_events events_;
  monitor_counters counters_;
  std::atomic<bool> stopping_{false};
  std::mutex mtx_;
  std::condition_variable cv_;
  client* current_ = nullptr; ///< guarded by mtx_, for stop() to interrupt
  uint64_t next_seq_ = 1;
  std::optional<record_grouper> grouper_; ///< of the current session
  std::thread thread_;
};

} // namespace fabrik::opcua
