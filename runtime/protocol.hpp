#pragma once
// The engine <-> worker protocol: length-prefixed frames over a Unix stream socket that the
// worker inherits as fd 3 (stdout and stderr stay free for diagnostics).
//
//   frame    = u32 payload length (little-endian) | u8 message type | payload
//   payload  = u32 header length | header (UTF-8 JSON object) | blob (raw bytes)
//
// The JSON header says what the message means; bulky data (sample values, model bytes)
// travels in the blob, located by {"offset", "size"} objects in the header, so the worker
// builds numpy arrays straight from it (np.frombuffer) with no per-value Python objects.
// docs/workflows.md ("The worker and the Python contract") lists every message.
// CAF-free: compiled into both the engine (fabrik_runtime) and the fabrik-worker executable.

#include "core/error.hpp"

#include <nlohmann/json.hpp>

#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace fabrik::worker {

static_assert(std::endian::native == std::endian::little,
              "the worker protocol sends numbers in host order and assumes little-endian");

/// Version of the engine <-> worker protocol. Bump it whenever a message changes shape; the
/// hello exchange refuses a peer that speaks another version, naming both.
constexpr uint32_t protocol_version = 2;

/// The largest payload either side sends or accepts (1 GiB); larger requests are refused
/// before anything is sent.
constexpr uint32_t max_payload_size = 1u << 30;

/// Bytes before the payload: u32 length and u8 type.
constexpr size_t frame_prefix_size = 5;

/// The file descriptor on which the worker finds its end of the socket.
constexpr int worker_socket_fd = 3;

/// What a frame carries. The numbers are part of the protocol; hello and hello_reply keep
/// theirs forever so that any two versions can still refuse each other politely.
enum class message_type : uint8_t {
  hello = 1, ///< engine -> worker: {"protocol": N}
  hello_reply = 2, ///< worker -> engine: protocol, pid and Python/numpy/sklearn versions
  load = 3, ///< import the entry module of an extracted package
  train = 4, ///< train(dataset, params); reply: the model bytes in the blob
  predict = 5, ///< optional new model, then samples; reply: JSON outputs in the blob
  process_input = 6, ///< process_input(data); reply: JSON object or null in the blob
  update_parameters = 7, ///< update_parameters(params)
  result = 8, ///< worker -> engine: the call succeeded
  error = 9, ///< worker -> engine: {type, message, traceback}
};

/// Lower-case name ("predict") for messages and errors.
const char* to_string(message_type t);

/// True for the numbers listed in message_type.
bool known_message_type(uint8_t t);

// -- frames ---------------------------------------------------------------------------

/// A received message: its JSON header, and the payload it came in (the blob is a view).
struct message {
  message_type type = message_type::error;
  nlohmann::json header;
  std::string payload; ///< the whole payload as received
  size_t blob_offset = 0; ///< where the blob starts inside `payload`

  std::string_view blob() const { return std::string_view{payload}.substr(blob_offset); }
  /// A slice of the blob described by an {"offset", "size"} object of the header;
  /// ec::parse_error when it lies outside the blob.
  expected<std::string_view> blob_slice(const nlohmann::json& where) const;
};

/// A message ready to send. The blob is a list of views into the caller's data, so a large
/// dataset is written to the socket without being copied into a frame first.
struct outgoing_message {
  std::string head; ///< frame prefix, header length, header JSON
  std::vector<std::string_view> blob_parts; ///< the blob, in order
  size_t size() const; ///< bytes on the wire
};

/// Collects a header and blob parts; `add_blob` returns the {"offset", "size"} object that
/// locates a part, for the caller to put into the header.
class message_builder {
public:
  explicit message_builder(message_type t) : type_(t) {}
  nlohmann::json& header() { return header_; }
  /// Appends `bytes` (not copied: it must outlive the outgoing message).
  nlohmann::json add_blob(std::string_view bytes);
  /// Finishes the frame; ec::invalid_argument when it exceeds max_payload_size.
  expected<outgoing_message> build() const;

private:
  message_type type_;
  nlohmann::json header_ = nlohmann::json::object();
  std::vector<std::string_view> parts_;
  size_t blob_size_ = 0;
};

/// Parses a frame prefix: payload size and type. ec::parse_error on an unknown type or a
/// payload over max_payload_size.
expected<std::pair<uint32_t, message_type>> parse_frame_prefix(const unsigned char* prefix);

/// Splits a received payload into header and blob; ec::parse_error when malformed.
expected<message> decode_message(message_type type, std::string payload);

/// The whole frame as one string (tests and small messages).
std::string to_bytes(const outgoing_message& m);

// -- data carried by the messages -----------------------------------------------------

/// Labels for training: numbers or strings, one per sample.
using labels =
  std::variant<std::monostate, std::vector<double>, std::vector<int64_t>, std::vector<std::string>>;

/// One image of a sample: its bytes (a view: whoever builds the dataset keeps them alive
/// until the message is sent) and what the worker needs to give it a numpy shape and dtype.
struct image {
  std::string_view data;
  int64_t width = 0;
  int64_t height = 0;
  std::string pixel_format; ///< GenICam name: Mono8, Mono16, RGB8, ...
  bool present = false; ///< false: the record had no such bytes field (None in Python)
};

/// Samples for train, predict and predict_batch: named numeric columns, row-major.
/// The worker turns it into `X`, a float64 numpy array of shape (rows, columns) or, for
/// windows, (rows, window, columns), without copying value by value.
struct dataset {
  std::vector<std::string> columns; ///< input names, in the order of X's last axis
  /// 0: a sample is one record (X is rows x columns); N >= 1: a sample is a window of N
  /// records (X is rows x N x columns).
  size_t window = 0;
  /// rows x max(window, 1) x columns values, row-major; a missing value is NaN.
  std::vector<double> values;
  labels y; ///< one label per row (not per record of a window), or none
  /// Image inputs (bytes fields, docs/workflows.md "Images"): names, then rows x names
  /// images, row-major. Only for samples of one record (window 0).
  std::vector<std::string> image_names;
  std::vector<image> images;
  /// Keeps whatever the image views point into alive as long as the dataset (training
  /// reads its records into a vector of its own).
  std::shared_ptr<const void> keep_alive;

  /// Number of samples: values.size() / (columns x max(window, 1)); for a dataset of
  /// images only, images.size() / image_names.size().
  size_t rows() const;
  /// Appends one sample (one record's values in column order, or a whole window).
  void add_row(const std::vector<double>& row) {
    values.insert(values.end(), row.begin(), row.end());
  }
  /// ec::invalid_argument when values or labels do not fit columns and window.
  expected<void> check() const;
};

/// Adds `d` to a message: returns the header object that describes it.
nlohmann::json encode_dataset(const dataset& d, message_builder& b);
/// The inverse of encode_dataset (the worker decodes in Python; this is for tests).
expected<dataset> decode_dataset(const nlohmann::json& header, const message& m);

/// The library versions a worker runs, and that a model was trained with.
struct versions {
  std::string python; ///< "3.11.2"
  std::string numpy; ///< empty when not installed
  std::string sklearn; ///< empty when not installed
  friend bool operator==(const versions&, const versions&) = default;
};

nlohmann::json to_json(const versions& v);
versions versions_from_json(const nlohmann::json& j);

/// Why a model cannot be used by a worker with `running` versions: Python major.minor,
/// numpy and scikit-learn must match exactly (pickles of sklearn estimators are not
/// portable across its versions). nullopt when compatible.
std::optional<std::string> version_conflict(const versions& trained, const versions& running);

/// How model bytes are to be read.
enum class model_format : uint8_t {
  pickle, ///< fabrik pickled the object train() returned
  bytes, ///< train() returned bytes; predict() receives them as they are
};

const char* to_string(model_format f);
expected<model_format> parse_model_format(std::string_view s);

/// A trained model as stored by the engine: the bytes and what they were made with.
struct model_artifact {
  std::string bytes;
  model_format format = model_format::pickle;
  versions trained_with;
};

} // namespace fabrik::worker
