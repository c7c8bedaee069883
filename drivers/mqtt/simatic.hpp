#pragma once
// The Siemens Industrial Edge common databus format "simatic v1" (payload-format.md):
// metadata names the datapoints of each connection's collections, data messages carry
// values by id. Pure code: no Paho, no actors.

#include "drivers/mqtt/payload.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace fabrik::mqtt {

/// Hash for maps keyed by std::string that are looked up by std::string_view.
struct string_hash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

template <class T>
using string_map = std::unordered_map<std::string, T, string_hash, std::equal_to<>>;

/// How fabrik stores a simatic dataType.
enum class data_kind {
  boolean, ///< Bool -> bool
  integer, ///< Byte, Word, DWord, LWord, SInt, USInt, Int, UInt, DInt, UDInt, LInt, ULInt -> int64
  real, ///< Real, LReal -> double
  text, ///< String, Char (and WString, WChar) -> string
  time, ///< Time, LTime, DateTime, Date, Time_Of_Day, ...: kept as given (string or int64)
  other, ///< a dataType fabrik does not know: kept as given
};

/// One datapoint of a collection, as the metadata declares it.
struct datapoint {
  std::string id;
  std::string name;
  std::string data_type; ///< as declared, e.g. "Real"
  data_kind kind = data_kind::other;
  int64_t min = 0; ///< integer kinds: the declared type's range, clipped to int64
  int64_t max = 0;
};

/// One collection ("dataPoints" entry) of one connection of one connector.
struct collection {
  std::string app; ///< the connector's id, from its metadata topic
  std::string metadata_topic; ///< the metadata topic that declared it
  std::string connection; ///< connection name
  std::string name; ///< collection name
  std::string topic; ///< where the connector publishes values (read topic)
  std::string pub_topic; ///< where others write values to it; empty if none
  std::vector<datapoint> points; ///< in metadata order
  string_map<size_t> by_id; ///< id -> index into points
  string_map<size_t> by_name; ///< name -> index into points

  const datapoint* find_id(std::string_view id) const;
  const datapoint* find_name(std::string_view name) const;
};

/// Decodes metadata and data messages into records. Keeps the metadata of every connector
/// it has seen; not thread-safe (one per source actor).
///
/// Data messages:
/// - One record per message, stream "{actor}/{connection}/{collection}" (also for values
///   sent to the collection's write topic), fields named by the metadata in the order of
///   `vals`, converted to the declared dataType (see data_kind; LWord/ULInt values above
///   int64 are out of range). An empty `vals` gives no record and no error. Numeric
///   strings are accepted for numeric types ("4.5" for a Real), 0/1 and "true"/"false"
///   for Bool, integral floats (3.0) for integer types. An array or object `val` is
///   stored as its JSON text in a string field, whatever the dataType.
/// - A value that does not fit its dataType (or is null, or missing) is left out; the
///   others are still emitted, the record's quality is at most uncertain and
///   decoded.error names the id and the reason. A bad `qc` is reported and read as
///   uncertain.
/// - Time: the newest `ts` among the values that is plausible (plausible_source_time
///   against message_info::ingest_time); when none is present or plausible
///   the ingest time, with quality::time_replaced. An unparseable `ts` is also reported
///   in decoded.error. Quality code: the smallest `qc` (3 when absent). seq: the
///   message's `seq`, else message_info::arrival.
/// - When an id repeats within one message (publishType timeseries: several samples of
///   a datapoint), the message is split into several records, a new one starting at each
///   repeated id, each with its own time and quality.
/// - Any id unknown for the topic, or a topic without metadata: decoded.parked with the
///   number of such values in unknown_ids and no records; decode it again after the next
///   metadata message.
/// - Malformed JSON or wrong shape (no vals array, an id that is not a string, a seq that
///   is not a non-negative integer): decoded.error, no records.
class simatic_decoder {
public:
  simatic_decoder();
  ~simatic_decoder();
  simatic_decoder(simatic_decoder&&) noexcept;
  simatic_decoder& operator=(simatic_decoder&&) noexcept;

  /// ie/m/j/simatic/v1/{app}/dp
  static bool is_metadata_topic(std::string_view topic);

  /// Decodes one message: metadata when its topic is a metadata topic, else data. A
  /// metadata message replaces everything the same metadata topic declared before and
  /// returns decoded{metadata=true} (with decoded.error naming parts it had to skip); a
  /// metadata message that is not usable at all returns only an error. Never throws.
  decoded decode(const message_info& m, std::string_view payload);

  /// The collection whose read topic or write topic (pubTopic) is `topic`, or null. The
  /// pointer stays valid until the next metadata message is decoded.
  const collection* find_collection(std::string_view topic) const;

  /// Number of collections known.
  size_t collections() const;

  // -- fast path (tests and benchmarks) -----------------------------------------

  /// Data messages of the shape connectors publish (scalar values, plain ASCII strings,
  /// keys seq, vals, id, val, ts, qc, qx) are read by a hand-written scanner; all others,
  /// and every malformed one, by nlohmann's SAX parser, which the scanner must agree with
  /// exactly. Off (on by default): nlohmann reads every message; for differential tests
  /// and benchmarks.
  void set_fast_path(bool on);

  /// Data messages read by the scanner and by nlohmann so far.
  struct path_counts {
    uint64_t fast = 0;
    uint64_t slow = 0;
  };
  path_counts paths() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Builds simatic-v1 messages for a sink acting as a connector of its own (app id given
/// at construction).
///
/// Streams and collections: the caller decides which connection and collection a record
/// belongs to and passes them to data(); the mqtt.sink uses its connection setting and
/// the record's stream with '/' replaced by '.' as the collection name.
///
/// Own datapoints get ids "1", "2", ... in the order field names first appear; ids are
/// unique within a connection (the format requires that), so two collections of one
/// connection never share an id. The dataType is inferred from the first value: double
/// -> LReal, int -> LInt, bool -> Bool, string -> String; an LInt datapoint that later
/// receives a double becomes LReal (metadata_changed() says so). Values that do not fit a
/// datapoint's type, bytes, and NaN or infinite doubles are skipped and counted.
class simatic_encoder {
public:
  explicit simatic_encoder(std::string app, std::string application_name = "fabrik");

  /// A data message {"seq":N,"vals":[{"id":..,"val":..,"ts":"...Z","qc":q},..]}; every
  /// value carries the record's time (3, 6 or 7 fraction digits, as exact as the format
  /// allows) and quality code. With `target` (another connector's collection, from
  /// simatic_decoder::find_collection), ids and types come from its metadata: fields it
  /// does not know, or whose values do not fit its dataType, are skipped and counted;
  /// the names are then not used. Without it, the encoder's own
  /// datapoints of (connection, collection) are used and extended.
  std::string data(const record& r, std::string_view connection_name,
                   std::string_view collection_name, const collection* target = nullptr);

  /// True when data() added or changed datapoints since the last metadata() call.
  bool metadata_changed() const;
  /// The metadata message describing this connector's datapoints; resets metadata_changed.
  std::string metadata();

  /// Fields skipped by data() so far (unknown to the target, bytes, NaN, type conflicts).
  uint64_t skipped() const { return skipped_; }

  /// A connector status message: {"seq":N,"ts":"...","connector":{"status":S}}; S is one
  /// of available, unavailable, good, bad. seq counts per process.
  static std::string status(std::string_view status);

  static std::string metadata_topic(std::string_view app);
  static std::string read_topic(std::string_view app, std::string_view connection,
                                std::string_view collection);
  static std::string write_topic(std::string_view app, std::string_view connection,
                                 std::string_view collection);
  static std::string status_topic(std::string_view app);

private:
  struct own_point {
    std::string name;
    std::string id;
    const char* data_type = "LReal";
  };
  struct own_collection {
    std::string name;
    std::vector<own_point> points;
    string_map<size_t> by_name;
  };
  struct own_connection {
    std::string name;
    uint64_t next_id = 1;
    std::vector<own_collection> collections;
  };

  own_collection& own(std::string_view connection_name, std::string_view collection_name);

  std::string app_;
  std::string application_name_;
  std::vector<own_connection> connections_;
  uint64_t seq_ = 0;
  uint64_t metadata_seq_ = 0;
  uint64_t skipped_ = 0;
  bool changed_ = false;
};

} // namespace fabrik::mqtt
