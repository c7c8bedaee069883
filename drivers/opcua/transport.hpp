#pragma once
// OPC UA transport over TCP (OPC 10000-6, Part 6): the Connection Protocol messages
// (7.1.2: Hello, Acknowledge, Error), secure conversation chunks for SecurityPolicy None
// (6.7.2: OPN, MSG, CLO with their security and sequence headers), their splitting and
// reassembly (6.7.2.4 / 6.7.3 abort), and the service framing that starts every body
// (7.1.2.4 type NodeId; Part 4 7.28/7.29 RequestHeader/ResponseHeader;
// OpenSecureChannel, CloseSecureChannel, ServiceFault).
// Pure code: no sockets, no CAF. Built on encoding.hpp.
//
// Decoders never read past their input and never throw: every failure is an
// ec::parse_error naming what was being read and where (offset within the message or body,
// and the chunk's index for the assembler). An abort chunk from the peer is an ec::io_error
// carrying the abort's status code and reason.

#include "drivers/opcua/encoding.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fabrik::opcua {

inline constexpr uint32_t protocol_version = 0;
/// Part 6 7.1.2.3: buffers are at least this large.
inline constexpr uint32_t min_buffer_size = 8192;
/// Part 6 7.1.2.3 / 7.1.2.5: longest EndpointUrl and Error reason.
inline constexpr size_t max_url_length = 4096;
inline constexpr std::string_view security_policy_none =
  "http://opcfoundation.org/UA/SecurityPolicy#None";

/// Every message and chunk starts with this: 3-byte type, 1-byte chunk type, UInt32 size
/// (which counts the header itself).
inline constexpr size_t message_header_size = 8;

enum class message_type : uint8_t { hello, acknowledge, error, open, message, close };
/// "HEL", "ACK", "ERR", "OPN", "MSG", "CLO".
const char* to_string(message_type t);

enum class chunk_type : char { final_chunk = 'F', intermediate = 'C', abort = 'A' };

struct message_header {
  message_type type = message_type::hello;
  chunk_type chunk = chunk_type::final_chunk;
  uint32_t size = 0;
  bool operator==(const message_header&) const = default;
};

/// Reads the 8-byte header at the start of bytes (which may hold more): refuses fewer than
/// 8 bytes, an unknown type or chunk type, a size under 8, and a chunked HEL/ACK/ERR.
expected<message_header> read_message_header(std::string_view bytes);

/// For a byte stream: the length of the message at the start of buffered, or 0 when its
/// header has not fully arrived. Refuses a bad header and a size over max_size.
expected<size_t> next_message_length(std::string_view buffered, uint32_t max_size);

// ---- Connection Protocol (Part 6 7.1.2) -------------------------------------------------

struct hello {
  uint32_t protocol_version = opcua::protocol_version;
  uint32_t receive_buffer_size = 65536;
  uint32_t send_buffer_size = 65536;
  uint32_t max_message_size = 0; ///< 0: no limit
  uint32_t max_chunk_count = 0; ///< 0: no limit
  std::string endpoint_url;
  bool operator==(const hello&) const = default;
};

struct acknowledge {
  uint32_t protocol_version = opcua::protocol_version;
  uint32_t receive_buffer_size = 65536;
  uint32_t send_buffer_size = 65536;
  uint32_t max_message_size = 0;
  uint32_t max_chunk_count = 0;
  bool operator==(const acknowledge&) const = default;
};

struct error_message {
  status_code error;
  std::string reason;
  bool operator==(const error_message&) const = default;
};

/// Whole messages, header included.
std::string encode(const hello& m);
std::string encode(const acknowledge& m);
std::string encode(const error_message& m);

/// Each decodes exactly one whole message: the header's size must equal message.size().
expected<hello> decode_hello(std::string_view message);
expected<acknowledge> decode_acknowledge(std::string_view message);
expected<error_message> decode_error(std::string_view message);

/// Checks a server's Acknowledge against the client's Hello (Part 6 7.1.2.4): buffers of
/// at least 8192 bytes and no larger than the client offered.
expected<void> check_acknowledge(const hello& sent, const acknowledge& received);

// ---- Secure conversation chunks, SecurityPolicy None (Part 6 6.7.2) ---------------------

struct asymmetric_header {
  std::string security_policy_uri{security_policy_none};
  byte_string sender_certificate; ///< written null when empty
  byte_string receiver_certificate_thumbprint; ///< written null when empty
  bool operator==(const asymmetric_header&) const = default;
};

struct sequence_header {
  uint32_t sequence_number = 0;
  uint32_t request_id = 0;
  bool operator==(const sequence_header&) const = default;
};

/// One decoded chunk; body views the input.
struct secure_chunk {
  message_header header;
  uint32_t secure_channel_id = 0;
  asymmetric_header asymmetric; ///< OPN only
  uint32_t token_id = 0; ///< MSG and CLO only
  sequence_header sequence;
  std::string_view body;
};

/// Decodes one whole secure conversation chunk (OPN, MSG or CLO): its header's size must
/// equal chunk.size(). Refuses a security policy other than None.
expected<secure_chunk> decode_chunk(std::string_view chunk);

/// Splits message bodies into chunks and numbers them.
class chunk_writer {
public:
  /// max_chunk_size: the peer's receive buffer size; max_chunk_count and max_message_size
  /// (body bytes): the peer's limits, 0 for none.
  chunk_writer(uint32_t max_chunk_size, uint32_t max_chunk_count = 0, uint32_t max_message_size = 0)
    : max_chunk_size_(max_chunk_size), max_chunk_count_(max_chunk_count),
      max_message_size_(max_message_size) {}

  /// The chunks of one message: intermediate ('C') ones, then a final ('F') one, each no
  /// larger than max_chunk_size. token_id is ignored for OPN. Refuses (invalid_argument) a
  /// HEL/ACK/ERR type, a chunk size too small for the headers, and a body that breaks the
  /// peer's limits; no sequence number is used then.
  expected<std::vector<std::string>> write(message_type type, uint32_t secure_channel_id,
                                           uint32_t token_id, uint32_t request_id,
                                           std::string_view body);
  /// An abort chunk ('A') ending a message whose earlier chunks were sent.
  std::string write_abort(message_type type, uint32_t secure_channel_id, uint32_t token_id,
                          uint32_t request_id, const error_message& why);

  /// The sequence number the next chunk gets (starts at 1; wraps to 1 past 2^32 - 1025).
  uint32_t next_sequence_number() const { return sequence_number_; }
  void set_next_sequence_number(uint32_t n) { sequence_number_ = n; }

private:
  std::string chunk(message_type type, chunk_type c, uint32_t channel, uint32_t token,
                    uint32_t request_id, std::string_view body);
  uint32_t max_chunk_size_;
  uint32_t max_chunk_count_;
  uint32_t max_message_size_;
  uint32_t sequence_number_ = 1;
};

/// A message reassembled from its chunks.
struct secure_message {
  message_type type = message_type::message;
  uint32_t secure_channel_id = 0;
  asymmetric_header asymmetric; ///< OPN only
  uint32_t token_id = 0;
  uint32_t request_id = 0;
  std::string body;
};

/// Reassembles messages from chunks, one chunk per call. Refuses a chunk over
/// max_chunk_size (our receive buffer), more than max_chunk_count chunks or more than
/// max_message_size body bytes in one message (0: no limit), a chunk whose type, channel,
/// token or request id differs from the message's first chunk, a sequence number that
/// does not follow the previous one, and (io_error) an abort. After any error the partial
/// message is dropped.
class chunk_assembler {
public:
  chunk_assembler(uint32_t max_chunk_size, uint32_t max_chunk_count = 0,
                  uint32_t max_message_size = 0)
    : max_chunk_size_(max_chunk_size), max_chunk_count_(max_chunk_count),
      max_message_size_(max_message_size) {}

  /// One whole chunk: the message once its final chunk arrives, else nullopt.
  expected<std::optional<secure_message>> add(std::string_view chunk);

  /// The peer's abort, after add() refused one.
  const std::optional<error_message>& last_abort() const { return abort_; }
  /// Chunks held for the message in progress.
  size_t pending_chunks() const { return chunks_; }

private:
  error fail(const std::string& message);
  uint32_t max_chunk_size_;
  uint32_t max_chunk_count_;
  uint32_t max_message_size_;
  size_t chunks_ = 0; ///< of the message in progress
  size_t received_ = 0; ///< chunks ever, for error messages
  std::optional<uint32_t> last_sequence_number_;
  secure_message partial_;
  std::optional<error_message> abort_;
};

// ---- Service framing (Part 6 7.1.2.4; Part 4 5.5, 7.28, 7.29, 7.32) ---------------------

/// Binary encoding ids (ns=0) that start a service body.
enum : uint32_t {
  service_fault_id = 397,
  open_secure_channel_request_id = 446,
  open_secure_channel_response_id = 449,
  close_secure_channel_request_id = 452,
  close_secure_channel_response_id = 455,
};

struct request_header {
  node_id authentication_token;
  date_time timestamp;
  uint32_t request_handle = 0;
  uint32_t return_diagnostics = 0;
  std::string audit_entry_id;
  uint32_t timeout_hint = 0;
  extension_object additional_header;
  bool operator==(const request_header&) const = default;
};

/// The service diagnostics are always the empty DiagnosticInfo (mask byte 0).
struct response_header {
  date_time timestamp;
  uint32_t request_handle = 0;
  status_code service_result;
  std::vector<std::string> string_table;
  extension_object additional_header;
  bool operator==(const response_header&) const = default;
};

void write(writer& w, const request_header& h);
void write(writer& w, const response_header& h);
expected<request_header> read_request_header(reader& r);
/// Refuses a non-empty DiagnosticInfo.
expected<response_header> read_response_header(reader& r);

/// The numeric ns=0 NodeId that starts a body; refuses any other NodeId.
expected<uint32_t> read_type_id(reader& r);

enum class request_type : int32_t { issue = 0, renew = 1 };
enum class security_mode : int32_t { invalid = 0, none = 1, sign = 2, sign_and_encrypt = 3 };

struct open_secure_channel_request {
  request_header header;
  uint32_t client_protocol_version = protocol_version;
  request_type type = request_type::issue;
  security_mode mode = security_mode::none;
  byte_string client_nonce;
  uint32_t requested_lifetime = 3'600'000; ///< ms
  bool operator==(const open_secure_channel_request&) const = default;
};

struct channel_security_token {
  uint32_t channel_id = 0;
  uint32_t token_id = 0;
  date_time created_at;
  uint32_t revised_lifetime = 0; ///< ms
  bool operator==(const channel_security_token&) const = default;
};

struct open_secure_channel_response {
  response_header header;
  uint32_t server_protocol_version = protocol_version;
  channel_security_token token;
  byte_string server_nonce;
  bool operator==(const open_secure_channel_response&) const = default;
};

struct close_secure_channel_request {
  request_header header;
  bool operator==(const close_secure_channel_request&) const = default;
};

struct service_fault {
  response_header header; ///< header.service_result says why
  bool operator==(const service_fault&) const = default;
};

/// Whole bodies, type NodeId included.
std::string encode(const open_secure_channel_request& m);
std::string encode(const open_secure_channel_response& m);
std::string encode(const close_secure_channel_request& m);
std::string encode(const service_fault& m);

/// Each decodes exactly one whole body of its type. A response decoder given a
/// ServiceFault refuses it naming the fault's status code.
expected<open_secure_channel_request> decode_open_secure_channel_request(std::string_view body);
expected<open_secure_channel_response> decode_open_secure_channel_response(std::string_view body);
expected<close_secure_channel_request> decode_close_secure_channel_request(std::string_view body);
expected<service_fault> decode_service_fault(std::string_view body);

/// Whether a response body is a ServiceFault (its type id is 397), and then the fault.
expected<std::optional<service_fault>> as_service_fault(std::string_view body);

} // namespace fabrik::opcua
