#pragma once
// A blocking OPC UA client connection: TCP, Hello/Acknowledge, a SecurityPolicy None
// secure channel (renewed before its token expires) and one activated session. One
// thread uses it; another may only interrupt() it. Pure code: sockets, no CAF.
//
// Requests are numbered by one counter that serves as the sequence header's request id
// and the RequestHeader's request handle, so a response is matched by either.

#include "drivers/opcua/identity.hpp"
#include "drivers/opcua/services.hpp"
#include "drivers/opcua/transport.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace fabrik::opcua {

struct endpoint_address {
  std::string host;
  uint16_t port = 4840;
};

/// "opc.tcp://HOST[:PORT][/PATH]" (port 4840 when absent; HOST may be [IPv6]).
expected<endpoint_address> parse_endpoint_url(std::string_view url);

struct client_options {
  std::string endpoint_url;
  credentials login;
  std::chrono::milliseconds timeout{5000}; ///< connecting, and each service call
  uint32_t session_timeout_ms = 60'000;
  uint32_t channel_lifetime_ms = 600'000; ///< requested token lifetime
  uint32_t max_message_size = 64u << 20; ///< largest response body accepted
  std::string session_name = "fabrik";
};

/// A response the server sent: the request it answers and its whole body.
struct response {
  uint32_t request_id = 0;
  std::string body;
};

class client {
public:
  /// Connects, opens the channel, creates and activates the session. Errors say which
  /// step failed: unavailable (cannot connect), timeout, parse_error (a malformed
  /// answer), invalid_argument (the server refused us: its status code named).
  static expected<std::unique_ptr<client>> connect(const client_options& options);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// A RequestHeader for this session's next request.
  request_header next_header();

  /// Sends one request body (its header from next_header()); returns its request id.
  expected<uint32_t> send(std::string_view body);
  /// The next service response, waiting up to `wait`; nullopt when none came or when the
  /// message was the answer to a channel renewal, which is handled here.
  expected<std::optional<response>> receive(std::chrono::milliseconds wait);
  /// Sends and waits (up to the options' timeout) for the answer to this request, which
  /// must be the next response; decodes it with `decode` (a ServiceFault is refused,
  /// naming its status code).
  template <class Request, class Decode>
  auto call(Request request, Decode decode) -> decltype(decode(std::string_view{})) {
    request.header = next_header();
    auto body = encode(request);
    auto id = send(body);
    if (!id)
      return id.err();
    auto answer = await(*id);
    if (!answer)
      return answer.err();
    return decode(*answer);
  }

  /// Renews the channel's security token once 75 % of its lifetime passed (Part 6 6.7.4).
  /// Call it regularly; the renewal's response is taken by receive().
  expected<void> renew_if_due();
  /// CloseSession (its subscriptions deleted) and CloseSecureChannel; best effort.
  void close();
  /// From another thread: a blocked receive() returns an error soon.
  void interrupt() { interrupted_ = true; }

  const create_session_response& session() const { return session_; }
  const acknowledge& limits() const { return ack_; }
  /// The channel's current security token (a renewal changes it).
  uint32_t token_id() const { return token_id_; }

private:
  explicit client(client_options options);
  expected<void> open(request_type type);
  expected<std::string> await(uint32_t request_id);
  expected<void> write_all(std::string_view bytes);
  /// One whole message from the socket (HEL/ACK/ERR or a chunk), waiting up to `wait`.
  expected<std::optional<std::string>> read_message(std::chrono::milliseconds wait);
  expected<void> handle_open_response(const secure_message& m);

  client_options options_;
  int fd_ = -1;
  std::atomic<bool> interrupted_{false};
  std::string inbox_; ///< bytes read, not yet framed
  acknowledge ack_;
  std::unique_ptr<chunk_writer> writer_;
  std::unique_ptr<chunk_assembler> assembler_;
  uint32_t channel_id_ = 0;
  uint32_t token_id_ = 0;
  std::chrono::steady_clock::time_point token_renew_at_;
  std::optional<uint32_t> renewal_; ///< request id of a renewal in flight
  uint32_t next_request_ = 1;
  create_session_response session_;
};

} // namespace fabrik::opcua
