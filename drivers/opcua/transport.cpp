#include "drivers/opcua/transport.hpp"

#include "drivers/opcua/detail.hpp"
#include "drivers/opcua/names.hpp"

#include <cstdio>
#include <utility>

namespace fabrik::opcua {
namespace {

using detail::check_end;
using detail::expect_type;
using detail::fail_at;
using detail::hex32;
using detail::in;
using detail::write_type;

constexpr uint32_t last_sequence_before_wrap = 4'294'966'271u; // UInt32 max - 1024

const char* const type_names[] = {"HEL", "ACK", "ERR", "OPN", "MSG", "CLO"};

bool is_secure(message_type t) {
  return t == message_type::open || t == message_type::message || t == message_type::close;
}

/// Writes a header with size 0; finish() patches it.
void start(writer& w, message_type t, chunk_type c) {
  const char* name = to_string(t);
  for (int i = 0; i < 3; ++i)
    w.write(static_cast<uint8_t>(name[i]));
  w.write(static_cast<uint8_t>(c));
  w.write(uint32_t{0});
}

std::string finish(writer& w) {
  std::string out = w.release();
  auto size = static_cast<uint32_t>(out.size());
  for (size_t i = 0; i < 4; ++i)
    out[4 + i] = static_cast<char>(static_cast<uint8_t>(size >> (8 * i)));
  return out;
}

/// Reads a whole HEL/ACK/ERR message's header and checks its type and size.
expected<void> check_whole(std::string_view message, message_type want) {
  auto h = read_message_header(message);
  if (!h)
    return h.err();
  if (h->type != want)
    return fail_at(0, std::string{"expected a "} + to_string(want) + " message, got "
                        + to_string(h->type));
  if (h->size != message.size())
    return fail_at(4, std::string{to_string(want)} + " size field says " + std::to_string(h->size)
                        + " bytes but the message has " + std::to_string(message.size()));
  return {};
}

/// The sequence header and the fields before it, for one chunk.
size_t header_overhead(message_type t) {
  return message_header_size + 4 /* channel id */
         + (t == message_type::open ? 4 + security_policy_none.size() + 4 + 4 : 4 /* token id */)
         + 8 /* sequence header */;
}

} // namespace

const char* to_string(message_type t) { return type_names[static_cast<size_t>(t)]; }

expected<message_header> read_message_header(std::string_view bytes) {
  if (bytes.size() < message_header_size)
    return fail_at(0, "truncated message header (needs 8 bytes, " + std::to_string(bytes.size())
                        + " left)");
  message_header h;
  std::string_view name = bytes.substr(0, 3);
  size_t i = 0;
  for (; i < std::size(type_names); ++i)
    if (name == type_names[i])
      break;
  if (i == std::size(type_names)) {
    std::string shown;
    for (char c : name)
      shown += (c >= 0x20 && c < 0x7f) ? std::string(1, c) : "\\x" + std::to_string(uint8_t(c));
    return fail_at(0, "unknown message type \"" + shown + "\"");
  }
  h.type = static_cast<message_type>(i);
  char c = bytes[3];
  if (c != 'F' && c != 'C' && c != 'A')
    return fail_at(3, "unknown chunk type " + std::to_string(static_cast<uint8_t>(c)));
  h.chunk = static_cast<chunk_type>(c);
  if (!is_secure(h.type) && h.chunk != chunk_type::final_chunk)
    return fail_at(3, std::string{to_string(h.type)} + " message with chunk type '" + c
                        + "' (only 'F' is allowed)");
  reader r{bytes.substr(4, 4)};
  h.size = *r.read_uint32(); // 4 bytes are there
  if (h.size < message_header_size)
    return fail_at(4, "message size " + std::to_string(h.size) + " is smaller than its header");
  return h;
}

expected<size_t> next_message_length(std::string_view buffered, uint32_t max_size) {
  if (buffered.size() < message_header_size)
    return size_t{0};
  auto h = read_message_header(buffered);
  if (!h)
    return h.err();
  if (h->size > max_size)
    return fail_at(4, "message size " + std::to_string(h->size) + " exceeds the limit of "
                        + std::to_string(max_size));
  return size_t{h->size};
}

// ---- Connection Protocol ----------------------------------------------------------------

std::string encode(const hello& m) {
  writer w;
  start(w, message_type::hello, chunk_type::final_chunk);
  w.write(m.protocol_version);
  w.write(m.receive_buffer_size);
  w.write(m.send_buffer_size);
  w.write(m.max_message_size);
  w.write(m.max_chunk_count);
  w.write(std::string_view{m.endpoint_url});
  return finish(w);
}

std::string encode(const acknowledge& m) {
  writer w;
  start(w, message_type::acknowledge, chunk_type::final_chunk);
  w.write(m.protocol_version);
  w.write(m.receive_buffer_size);
  w.write(m.send_buffer_size);
  w.write(m.max_message_size);
  w.write(m.max_chunk_count);
  return finish(w);
}

std::string encode(const error_message& m) {
  writer w;
  start(w, message_type::error, chunk_type::final_chunk);
  w.write(m.error);
  w.write(std::string_view{m.reason});
  return finish(w);
}

expected<hello> decode_hello(std::string_view message) {
  if (auto ok = check_whole(message, message_type::hello); !ok)
    return ok.err();
  reader r{message};
  (void)r.read_uint64(); // the header, checked above
  hello m;
  OPCUA_READ(m.protocol_version, r.read_uint32(), "HEL protocol version");
  OPCUA_READ(m.receive_buffer_size, r.read_uint32(), "HEL receive buffer size");
  OPCUA_READ(m.send_buffer_size, r.read_uint32(), "HEL send buffer size");
  OPCUA_READ(m.max_message_size, r.read_uint32(), "HEL max message size");
  OPCUA_READ(m.max_chunk_count, r.read_uint32(), "HEL max chunk count");
  size_t at = r.offset();
  OPCUA_READ(m.endpoint_url, r.read_string(), "HEL endpoint url");
  if (m.endpoint_url.size() > max_url_length)
    return fail_at(at, "HEL endpoint url of " + std::to_string(m.endpoint_url.size())
                         + " bytes is longer than 4096");
  if (auto ok = check_end(r, "HEL"); !ok)
    return ok.err();
  return m;
}

expected<acknowledge> decode_acknowledge(std::string_view message) {
  if (auto ok = check_whole(message, message_type::acknowledge); !ok)
    return ok.err();
  reader r{message};
  (void)r.read_uint64();
  acknowledge m;
  OPCUA_READ(m.protocol_version, r.read_uint32(), "ACK protocol version");
  OPCUA_READ(m.receive_buffer_size, r.read_uint32(), "ACK receive buffer size");
  OPCUA_READ(m.send_buffer_size, r.read_uint32(), "ACK send buffer size");
  OPCUA_READ(m.max_message_size, r.read_uint32(), "ACK max message size");
  OPCUA_READ(m.max_chunk_count, r.read_uint32(), "ACK max chunk count");
  if (auto ok = check_end(r, "ACK"); !ok)
    return ok.err();
  return m;
}

expected<error_message> decode_error(std::string_view message) {
  if (auto ok = check_whole(message, message_type::error); !ok)
    return ok.err();
  reader r{message};
  (void)r.read_uint64();
  error_message m;
  OPCUA_READ(m.error, r.read_status_code(), "ERR error");
  size_t at = r.offset();
  OPCUA_READ(m.reason, r.read_string(), "ERR reason");
  if (m.reason.size() > max_url_length)
    return fail_at(at, "ERR reason of " + std::to_string(m.reason.size())
                         + " bytes is longer than 4096");
  if (auto ok = check_end(r, "ERR"); !ok)
    return ok.err();
  return m;
}

expected<void> check_acknowledge(const hello& sent, const acknowledge& received) {
  auto bad = [](const std::string& m) { return make_error(ec::parse_error, "OPC UA ACK " + m); };
  if (received.receive_buffer_size < min_buffer_size)
    return bad("receive buffer size " + std::to_string(received.receive_buffer_size)
               + " is smaller than 8192");
  if (received.send_buffer_size < min_buffer_size)
    return bad("send buffer size " + std::to_string(received.send_buffer_size)
               + " is smaller than 8192");
  if (received.receive_buffer_size > sent.send_buffer_size)
    return bad("receive buffer size " + std::to_string(received.receive_buffer_size)
               + " is larger than the offered send buffer size "
               + std::to_string(sent.send_buffer_size));
  if (received.send_buffer_size > sent.receive_buffer_size)
    return bad("send buffer size " + std::to_string(received.send_buffer_size)
               + " is larger than the offered receive buffer size "
               + std::to_string(sent.receive_buffer_size));
  return {};
}

// ---- Secure conversation chunks ---------------------------------------------------------

expected<secure_chunk> decode_chunk(std::string_view chunk) {
  auto h = read_message_header(chunk);
  if (!h)
    return h.err();
  if (!is_secure(h->type))
    return fail_at(0, std::string{"expected an OPN, MSG or CLO chunk, got "} + to_string(h->type));
  const std::string name = to_string(h->type);
  if (h->size != chunk.size())
    return fail_at(4, name + " chunk size field says " + std::to_string(h->size)
                        + " bytes but the chunk has " + std::to_string(chunk.size()));
  secure_chunk c;
  c.header = *h;
  reader r{chunk};
  (void)r.read_uint64();
  OPCUA_READ(c.secure_channel_id, r.read_uint32(), name + " secure channel id");
  if (h->type == message_type::open) {
    size_t at = r.offset();
    OPCUA_READ(c.asymmetric.security_policy_uri, r.read_string(), "OPN security policy uri");
    if (c.asymmetric.security_policy_uri != security_policy_none)
      return fail_at(at, "OPN security policy \"" + c.asymmetric.security_policy_uri.substr(0, 100)
                           + "\" is not supported (only None)");
    OPCUA_READ(c.asymmetric.sender_certificate, r.read_byte_string(), "OPN sender certificate");
    OPCUA_READ(c.asymmetric.receiver_certificate_thumbprint, r.read_byte_string(),
               "OPN receiver certificate thumbprint");
  } else {
    OPCUA_READ(c.token_id, r.read_uint32(), name + " token id");
  }
  OPCUA_READ(c.sequence.sequence_number, r.read_uint32(), name + " sequence number");
  OPCUA_READ(c.sequence.request_id, r.read_uint32(), name + " request id");
  c.body = chunk.substr(r.offset());
  return c;
}

std::string chunk_writer::chunk(message_type type, chunk_type c, uint32_t channel, uint32_t token,
                                uint32_t request_id, std::string_view body) {
  writer w;
  start(w, type, c);
  w.write(channel);
  if (type == message_type::open) {
    w.write(security_policy_none);
    w.write(int32_t{-1}); // null sender certificate
    w.write(int32_t{-1}); // null receiver thumbprint
  } else {
    w.write(token);
  }
  w.write(sequence_number_);
  w.write(request_id);
  sequence_number_ = sequence_number_ >= last_sequence_before_wrap ? 1 : sequence_number_ + 1;
  std::string out = finish(w);
  auto size = static_cast<uint32_t>(out.size() + body.size());
  for (size_t i = 0; i < 4; ++i)
    out[4 + i] = static_cast<char>(static_cast<uint8_t>(size >> (8 * i)));
  out.append(body);
  return out;
}

expected<std::vector<std::string>> chunk_writer::write(message_type type, uint32_t channel,
                                                       uint32_t token, uint32_t request_id,
                                                       std::string_view body) {
  if (!is_secure(type))
    return make_error(ec::invalid_argument, std::string{"OPC UA "} + to_string(type)
                                              + " is not a secure conversation message");
  size_t overhead = header_overhead(type);
  if (max_chunk_size_ <= overhead)
    return make_error(ec::invalid_argument, "OPC UA chunk size " + std::to_string(max_chunk_size_)
                                              + " leaves no room after " + std::to_string(overhead)
                                              + " header bytes");
  if (max_message_size_ != 0 && body.size() > max_message_size_)
    return make_error(ec::invalid_argument, "OPC UA message body of " + std::to_string(body.size())
                                              + " bytes exceeds the peer's max message size "
                                              + std::to_string(max_message_size_));
  size_t per = max_chunk_size_ - overhead;
  size_t n = body.empty() ? 1 : (body.size() + per - 1) / per;
  if (max_chunk_count_ != 0 && n > max_chunk_count_)
    return make_error(ec::invalid_argument, "OPC UA message body of " + std::to_string(body.size())
                                              + " bytes needs " + std::to_string(n)
                                              + " chunks, more than the peer's max chunk count "
                                              + std::to_string(max_chunk_count_));
  std::vector<std::string> chunks;
  chunks.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    auto part = body.substr(i * per, per);
    chunks.push_back(chunk(type, i + 1 == n ? chunk_type::final_chunk : chunk_type::intermediate,
                           channel, token, request_id, part));
  }
  return chunks;
}

std::string chunk_writer::write_abort(message_type type, uint32_t channel, uint32_t token,
                                      uint32_t request_id, const error_message& why) {
  writer body;
  body.write(why.error);
  body.write(std::string_view{why.reason});
  return chunk(type, chunk_type::abort, channel, token, request_id, body.bytes());
}

error chunk_assembler::fail(const std::string& message) {
  chunks_ = 0;
  partial_ = {};
  return make_error(ec::parse_error, "OPC UA chunk " + std::to_string(received_) + ": " + message);
}

expected<std::optional<secure_message>> chunk_assembler::add(std::string_view chunk) {
  ++received_;
  abort_.reset();
  if (chunk.size() > max_chunk_size_)
    return fail("size " + std::to_string(chunk.size()) + " exceeds the receive buffer size "
                + std::to_string(max_chunk_size_));
  auto c = decode_chunk(chunk);
  if (!c) {
    std::string m = c.err().message;
    if (m.rfind("OPC UA ", 0) == 0)
      m.erase(0, 7);
    return fail(m);
  }
  const std::string name = to_string(c->header.type);
  uint32_t seq = c->sequence.sequence_number;
  if (last_sequence_number_) {
    uint32_t last = *last_sequence_number_;
    bool follows = (last < last_sequence_before_wrap && seq == last + 1)
                   || (last >= last_sequence_before_wrap && seq < 1024);
    if (!follows)
      return fail(name + " sequence number " + std::to_string(seq) + " does not follow "
                  + std::to_string(last));
  }
  last_sequence_number_ = seq;
  if (chunks_ != 0) {
    if (c->header.type != partial_.type)
      return fail(name + " chunk inside a " + to_string(partial_.type) + " message");
    if (c->secure_channel_id != partial_.secure_channel_id)
      return fail("secure channel id " + std::to_string(c->secure_channel_id) + " differs from "
                  + std::to_string(partial_.secure_channel_id) + " of the message's first chunk");
    if (c->header.type != message_type::open && c->token_id != partial_.token_id)
      return fail("token id " + std::to_string(c->token_id) + " differs from "
                  + std::to_string(partial_.token_id) + " of the message's first chunk");
    if (c->sequence.request_id != partial_.request_id)
      return fail("request id " + std::to_string(c->sequence.request_id) + " differs from "
                  + std::to_string(partial_.request_id) + " of the message's first chunk");
  }
  if (c->header.chunk == chunk_type::abort) {
    reader r{c->body};
    error_message why;
    auto code = r.read_status_code();
    auto reason = code ? r.read_string() : expected<std::string>{code.err()};
    if (!code || !reason)
      return fail("abort body: " + (code ? reason.err() : code.err()).message);
    why.error = *code;
    why.reason = std::move(*reason);
    chunks_ = 0;
    partial_ = {};
    abort_ = why;
    return make_error(ec::io_error, "OPC UA peer aborted " + name + " request "
                                      + std::to_string(c->sequence.request_id) + ": "
                                      + hex32(why.error.code) + " " + why.reason);
  }
  if (chunks_ == 0) {
    partial_.type = c->header.type;
    partial_.secure_channel_id = c->secure_channel_id;
    partial_.asymmetric = c->asymmetric;
    partial_.token_id = c->token_id;
    partial_.request_id = c->sequence.request_id;
  }
  ++chunks_;
  if (max_chunk_count_ != 0 && chunks_ > max_chunk_count_)
    return fail("message has more than " + std::to_string(max_chunk_count_) + " chunks");
  if (max_message_size_ != 0 && partial_.body.size() + c->body.size() > max_message_size_)
    return fail("message body exceeds the max message size " + std::to_string(max_message_size_));
  partial_.body.append(c->body);
  if (c->header.chunk == chunk_type::intermediate)
    return std::optional<secure_message>{};
  secure_message done = std::move(partial_);
  partial_ = {};
  chunks_ = 0;
  return std::optional<secure_message>{std::move(done)};
}

// ---- Service framing --------------------------------------------------------------------

void write(writer& w, const request_header& h) {
  w.write(h.authentication_token);
  w.write(h.timestamp);
  w.write(h.request_handle);
  w.write(h.return_diagnostics);
  w.write(std::string_view{h.audit_entry_id});
  w.write(h.timeout_hint);
  w.write(h.additional_header);
}

void write(writer& w, const response_header& h) {
  w.write(h.timestamp);
  w.write(h.request_handle);
  w.write(h.service_result);
  w.write(uint8_t{0}); // empty DiagnosticInfo
  w.write(static_cast<int32_t>(h.string_table.size()));
  for (const auto& s : h.string_table)
    w.write(std::string_view{s});
  w.write(h.additional_header);
}

expected<request_header> read_request_header(reader& r) {
  request_header h;
  OPCUA_READ(h.authentication_token, r.read_node_id(), "RequestHeader authentication token");
  OPCUA_READ(h.timestamp, r.read_date_time(), "RequestHeader timestamp");
  OPCUA_READ(h.request_handle, r.read_uint32(), "RequestHeader request handle");
  OPCUA_READ(h.return_diagnostics, r.read_uint32(), "RequestHeader return diagnostics");
  OPCUA_READ(h.audit_entry_id, r.read_string(), "RequestHeader audit entry id");
  OPCUA_READ(h.timeout_hint, r.read_uint32(), "RequestHeader timeout hint");
  OPCUA_READ(h.additional_header, r.read_extension_object(), "RequestHeader additional header");
  return h;
}

expected<response_header> read_response_header(reader& r) {
  response_header h;
  OPCUA_READ(h.timestamp, r.read_date_time(), "ResponseHeader timestamp");
  OPCUA_READ(h.request_handle, r.read_uint32(), "ResponseHeader request handle");
  OPCUA_READ(h.service_result, r.read_status_code(), "ResponseHeader service result");
  size_t at = r.offset();
  uint8_t mask = 0;
  OPCUA_READ(mask, r.read_byte(), "ResponseHeader service diagnostics");
  if (mask != 0)
    return fail_at(at, "ResponseHeader service diagnostics: non-empty DiagnosticInfo (mask "
                         + std::to_string(mask) + ") is not supported");
  at = r.offset();
  int32_t n = 0;
  OPCUA_READ(n, r.read_int32(), "ResponseHeader string table length");
  if (n < -1)
    return fail_at(at, "ResponseHeader string table has negative length " + std::to_string(n));
  if (n > max_array_length || (n > 0 && static_cast<size_t>(n) > r.remaining() / 4))
    return fail_at(at, "ResponseHeader string table of " + std::to_string(n) + " strings, only "
                         + std::to_string(r.remaining()) + " bytes left");
  for (int32_t i = 0; i < n; ++i) {
    std::string s;
    OPCUA_READ(s, r.read_string(), "ResponseHeader string table");
    h.string_table.push_back(std::move(s));
  }
  OPCUA_READ(h.additional_header, r.read_extension_object(), "ResponseHeader additional header");
  return h;
}

expected<uint32_t> read_type_id(reader& r) {
  size_t at = r.offset();
  node_id id;
  OPCUA_READ(id, r.read_node_id(), "message type id");
  const auto* n = std::get_if<uint32_t>(&id.identifier);
  if (id.namespace_index != 0 || n == nullptr)
    return fail_at(at, "message type id is not a numeric NodeId in namespace 0");
  return *n;
}

namespace {

expected<service_fault> read_fault_rest(reader& r) {
  service_fault f;
  OPCUA_READ(f.header, read_response_header(r), "ServiceFault");
  if (auto ok = check_end(r, "ServiceFault"); !ok)
    return ok.err();
  return f;
}

} // namespace

std::string encode(const open_secure_channel_request& m) {
  writer w;
  write_type(w, open_secure_channel_request_id);
  write(w, m.header);
  w.write(m.client_protocol_version);
  w.write(static_cast<int32_t>(m.type));
  w.write(static_cast<int32_t>(m.mode));
  w.write(m.client_nonce);
  w.write(m.requested_lifetime);
  return w.release();
}

std::string encode(const open_secure_channel_response& m) {
  writer w;
  write_type(w, open_secure_channel_response_id);
  write(w, m.header);
  w.write(m.server_protocol_version);
  w.write(m.token.channel_id);
  w.write(m.token.token_id);
  w.write(m.token.created_at);
  w.write(m.token.revised_lifetime);
  w.write(m.server_nonce);
  return w.release();
}

std::string encode(const close_secure_channel_request& m) {
  writer w;
  write_type(w, close_secure_channel_request_id);
  write(w, m.header);
  return w.release();
}

std::string encode(const service_fault& m) {
  writer w;
  write_type(w, service_fault_id);
  write(w, m.header);
  return w.release();
}

expected<open_secure_channel_request> decode_open_secure_channel_request(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, open_secure_channel_request_id); !ok)
    return ok.err();
  open_secure_channel_request m;
  OPCUA_READ(m.header, read_request_header(r), "OpenSecureChannelRequest");
  OPCUA_READ(m.client_protocol_version, r.read_uint32(),
             "OpenSecureChannelRequest client protocol version");
  size_t at = r.offset();
  int32_t type = 0;
  OPCUA_READ(type, r.read_int32(), "OpenSecureChannelRequest request type");
  if (type != 0 && type != 1)
    return fail_at(at, "OpenSecureChannelRequest request type " + std::to_string(type)
                         + " is neither Issue (0) nor Renew (1)");
  m.type = static_cast<request_type>(type);
  at = r.offset();
  int32_t mode = 0;
  OPCUA_READ(mode, r.read_int32(), "OpenSecureChannelRequest security mode");
  if (mode < 0 || mode > 3)
    return fail_at(at, "OpenSecureChannelRequest security mode " + std::to_string(mode)
                         + " is unknown");
  m.mode = static_cast<security_mode>(mode);
  OPCUA_READ(m.client_nonce, r.read_byte_string(), "OpenSecureChannelRequest client nonce");
  OPCUA_READ(m.requested_lifetime, r.read_uint32(), "OpenSecureChannelRequest requested lifetime");
  if (auto ok = check_end(r, "OpenSecureChannelRequest"); !ok)
    return ok.err();
  return m;
}

expected<open_secure_channel_response> decode_open_secure_channel_response(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, open_secure_channel_response_id); !ok)
    return ok.err();
  open_secure_channel_response m;
  OPCUA_READ(m.header, read_response_header(r), "OpenSecureChannelResponse");
  OPCUA_READ(m.server_protocol_version, r.read_uint32(),
             "OpenSecureChannelResponse server protocol version");
  OPCUA_READ(m.token.channel_id, r.read_uint32(), "ChannelSecurityToken channel id");
  OPCUA_READ(m.token.token_id, r.read_uint32(), "ChannelSecurityToken token id");
  OPCUA_READ(m.token.created_at, r.read_date_time(), "ChannelSecurityToken created at");
  OPCUA_READ(m.token.revised_lifetime, r.read_uint32(), "ChannelSecurityToken revised lifetime");
  OPCUA_READ(m.server_nonce, r.read_byte_string(), "OpenSecureChannelResponse server nonce");
  if (auto ok = check_end(r, "OpenSecureChannelResponse"); !ok)
    return ok.err();
  return m;
}

expected<close_secure_channel_request> decode_close_secure_channel_request(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, close_secure_channel_request_id); !ok)
    return ok.err();
  close_secure_channel_request m;
  OPCUA_READ(m.header, read_request_header(r), "CloseSecureChannelRequest");
  if (auto ok = check_end(r, "CloseSecureChannelRequest"); !ok)
    return ok.err();
  return m;
}

expected<service_fault> decode_service_fault(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, service_fault_id); !ok)
    return ok.err();
  return read_fault_rest(r);
}

expected<std::optional<service_fault>> as_service_fault(std::string_view body) {
  reader r{body};
  auto id = read_type_id(r);
  if (!id)
    return id.err();
  if (*id != service_fault_id)
    return std::optional<service_fault>{};
  auto f = read_fault_rest(r);
  if (!f)
    return f.err();
  return std::optional<service_fault>{std::move(*f)};
}

namespace detail {

expected<void> expect_type(reader& r, std::string_view body, uint32_t want) {
  auto id = read_type_id(r);
  if (!id)
    return id.err();
  if (*id == want)
    return {};
  if (*id == service_fault_id) {
    auto f = as_service_fault(body);
    if (f && *f)
      return make_error(ec::parse_error, std::string{"OPC UA ServiceFault "}
                                           + status_name((*f)->header.service_result)
                                           + " instead of " + message_name(want));
    if (!f)
      return in(std::string{"ServiceFault instead of "} + message_name(want), f.err());
  }
  return fail_at(0, std::string{"expected "} + message_name(want) + " (i=" + std::to_string(want)
                      + "), got " + message_name(*id) + " (i=" + std::to_string(*id) + ")");
}

} // namespace detail

#undef OPCUA_READ

} // namespace fabrik::opcua
