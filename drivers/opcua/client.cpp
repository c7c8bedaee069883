#include "drivers/opcua/client.hpp"

#include "drivers/opcua/names.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace fabrik::opcua {
namespace {

using namespace std::chrono;

constexpr uint32_t receive_buffer = 65536;

int64_t now_ns() {
  return duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count();
}

/// Names a ServiceFault or a bad service result: "CreateSession: BadUserAccessDenied".
expected<void> check_fault(std::string_view body, std::string_view what) {
  auto fault = as_service_fault(body);
  if (!fault)
    return fault.err();
  if (*fault)
    return make_error(ec::invalid_argument, std::string{what} + " refused by the server: "
                                              + status_name((*fault)->header.service_result));
  return {};
}

expected<int> dial(const endpoint_address& a, milliseconds timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  auto port = std::to_string(a.port);
  if (int rc = getaddrinfo(a.host.c_str(), port.c_str(), &hints, &found); rc != 0)
    return make_error(ec::unavailable, "cannot resolve " + a.host + ": " + gai_strerror(rc));
  std::string why = "no address";
  for (auto* ai = found; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc < 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = poll(&p, 1, static_cast<int>(timeout.count()));
      if (rc == 0) {
        why = "timed out";
        errno = ETIMEDOUT;
        rc = -1;
      } else if (rc > 0) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        errno = err;
        rc = err ? -1 : 0;
      }
    }
    if (rc == 0) {
      freeaddrinfo(found);
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    if (errno != ETIMEDOUT)
      why = std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(found);
  return make_error(ec::unavailable,
                    "cannot connect to " + a.host + ":" + std::to_string(a.port) + ": " + why);
}

} // namespace

expected<endpoint_address> parse_endpoint_url(std::string_view url) {
  auto fail = [&](const std::string& why) {
    return make_error(ec::invalid_argument,
                      "not an OPC UA endpoint URL: \"" + std::string{url} + "\" (" + why + ")");
  };
  constexpr std::string_view scheme = "opc.tcp://";
  if (!url.starts_with(scheme))
    return fail("it must start with opc.tcp://");
  auto rest = url.substr(scheme.size());
  rest = rest.substr(0, rest.find('/'));
  endpoint_address a;
  std::string_view port;
  if (rest.starts_with('[')) {
    auto close = rest.find(']');
    if (close == std::string_view::npos)
      return fail("unclosed [");
    a.host = std::string{rest.substr(1, close - 1)};
    rest.remove_prefix(close + 1);
    if (rest.starts_with(':'))
      port = rest.substr(1);
    else if (!rest.empty())
      return fail("unexpected text after ]");
  } else {
    auto colon = rest.rfind(':');
    a.host = std::string{rest.substr(0, colon)};
    if (colon != std::string_view::npos)
      port = rest.substr(colon + 1);
  }
  if (a.host.empty())
    return fail("no host");
  if (!port.empty()) {
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), a.port);
    if (ec != std::errc{} || end != port.data() + port.size() || a.port == 0)
      return fail("port is not a number from 1 to 65535");
  }
  return a;
}

client::client(client_options options) : options_(std::move(options)) {}

client::~client() {
  if (fd_ >= 0)
    ::close(fd_);
}

request_header client::next_header() {
  request_header h;
  h.authentication_token = session_.authentication_token;
  h.timestamp = from_unix_ns(now_ns());
  h.request_handle = next_request_++;
  h.timeout_hint = static_cast<uint32_t>(options_.timeout.count());
  return h;
}

expected<void> client::write_all(std::string_view bytes) {
  while (!bytes.empty()) {
    auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd_, POLLOUT, 0};
      if (poll(&p, 1, static_cast<int>(options_.timeout.count())) <= 0)
        return make_error(ec::timeout, "OPC UA server does not take our request");
      continue;
    }
    if (n < 0)
      return make_error(ec::unavailable, std::string{"connection lost: "} + std::strerror(errno));
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

expected<std::optional<std::string>> client::read_message(milliseconds wait) {
  auto deadline = steady_clock::now() + wait;
  for (;;) {
    auto len = next_message_length(inbox_, receive_buffer);
    if (!len)
      return len.err();
    if (*len > 0 && inbox_.size() >= *len) {
      std::string m = inbox_.substr(0, *len);
      inbox_.erase(0, *len);
      return std::optional<std::string>{std::move(m)};
    }
    if (interrupted_)
      return make_error(ec::unavailable, "interrupted");
    auto left = duration_cast<milliseconds>(deadline - steady_clock::now());
    if (left.count() <= 0)
      return std::optional<std::string>{};
    pollfd p{fd_, POLLIN, 0};
    // Short slices, so interrupt() is noticed.
    int rc = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
    if (rc <= 0)
      continue;
    char buf[65536];
    auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n == 0)
      return make_error(ec::unavailable, "the OPC UA server closed the connection");
    if (n < 0 && errno != EAGAIN && errno != EINTR)
      return make_error(ec::unavailable, std::string{"connection lost: "} + std::strerror(errno));
    if (n > 0)
      inbox_.append(buf, static_cast<size_t>(n));
  }
}

expected<void> client::open(request_type type) {
  open_secure_channel_request req;
  req.header.timestamp = from_unix_ns(now_ns());
  req.header.request_handle = next_request_++;
  req.header.timeout_hint = static_cast<uint32_t>(options_.timeout.count());
  req.type = type;
  req.requested_lifetime = options_.channel_lifetime_ms;
  auto chunks =
    writer_->write(message_type::open, channel_id_, 0, req.header.request_handle, encode(req));
  if (!chunks)
    return chunks.err();
  for (auto& c : *chunks)
    if (auto ok = write_all(c); !ok)
      return ok;
  renewal_ = req.header.request_handle;
  return {};
}

expected<void> client::handle_open_response(const secure_message& m) {
  if (auto ok = check_fault(m.body, "OpenSecureChannel"); !ok)
    return ok;
  auto res = decode_open_secure_channel_response(m.body);
  if (!res)
    return res.err();
  channel_id_ = res->token.channel_id;
  token_id_ = res->token.token_id;
  auto lifetime = std::max<uint32_t>(res->token.revised_lifetime, 1000);
  token_renew_at_ = steady_clock::now() + milliseconds{lifetime * 3 / 4};
  renewal_.reset();
  return {};
}

expected<uint32_t> client::send(std::string_view body) {
  reader r{body};
  // The request handle (after the type id and the authentication token) is the request id.
  auto type = read_type_id(r);
  auto header = type ? read_request_header(r) : expected<request_header>{type.err()};
  if (!header)
    return make_error(ec::internal,
                      "cannot send a request without a header: " + header.err().message);
  auto id = header->request_handle;
  auto chunks = writer_->write(message_type::message, channel_id_, token_id_, id, body);
  if (!chunks)
    return chunks.err();
  for (auto& c : *chunks)
    if (auto ok = write_all(c); !ok)
      return ok.err();
  return id;
}

expected<std::optional<response>> client::receive(milliseconds wait) {
  auto deadline = steady_clock::now() + wait;
  for (;;) {
    auto left = duration_cast<milliseconds>(deadline - steady_clock::now());
    auto bytes = read_message(std::max(left, milliseconds{0}));
    if (!bytes)
      return bytes.err();
    if (!*bytes)
      return std::optional<response>{};
    auto header = read_message_header(**bytes);
    if (!header)
      return header.err();
    if (header->type == message_type::error) {
      auto e = decode_error(**bytes);
      if (!e)
        return e.err();
      return make_error(ec::unavailable,
                        "the OPC UA server ended the connection: " + status_name(e->error)
                          + (e->reason.empty() ? "" : " (" + e->reason + ")"));
    }
    if (header->type != message_type::open && header->type != message_type::message)
      return make_error(ec::parse_error, std::string{"OPC UA server sent an unexpected "}
                                           + to_string(header->type) + " message");
    auto m = assembler_->add(**bytes);
    if (!m)
      return m.err();
    if (!*m)
      continue;
    if ((*m)->type == message_type::open) {
      if (auto ok = handle_open_response(**m); !ok)
        return ok.err();
      return std::optional<response>{};
    }
    return std::optional<response>{response{(*m)->request_id, std::move((*m)->body)}};
  }
}

expected<std::string> client::await(uint32_t request_id) {
  auto deadline = steady_clock::now() + options_.timeout;
  for (;;) {
    auto left = duration_cast<milliseconds>(deadline - steady_clock::now());
    if (left.count() <= 0)
      return make_error(ec::timeout, "the OPC UA server did not answer within "
                                       + std::to_string(options_.timeout.count()) + " ms");
    auto r = receive(left);
    if (!r)
      return r.err();
    if (!*r)
      continue;
    if ((*r)->request_id != request_id)
      return make_error(ec::parse_error, "OPC UA server answered request "
                                           + std::to_string((*r)->request_id) + ", expected "
                                           + std::to_string(request_id));
    return std::move((*r)->body);
  }
}

expected<void> client::renew_if_due() {
  if (renewal_ || steady_clock::now() < token_renew_at_)
    return {};
  return open(request_type::renew);
}

expected<std::unique_ptr<client>> client::connect(const client_options& options) {
  auto address = parse_endpoint_url(options.endpoint_url);
  if (!address)
    return address.err();
  std::unique_ptr<client> c{new client{options}};
  auto fd = dial(*address, options.timeout);
  if (!fd)
    return fd.err();
  c->fd_ = *fd;

  hello h;
  h.receive_buffer_size = receive_buffer;
  h.send_buffer_size = receive_buffer;
  h.max_message_size = options.max_message_size;
  h.endpoint_url = options.endpoint_url;
  if (auto ok = c->write_all(encode(h)); !ok)
    return ok.err();
  auto m = c->read_message(options.timeout);
  if (!m)
    return m.err();
  if (!*m)
    return make_error(ec::timeout, "no Acknowledge from " + options.endpoint_url + " within "
                                     + std::to_string(options.timeout.count()) + " ms");
  auto header = read_message_header(**m);
  if (!header)
    return header.err();
  if (header->type == message_type::error) {
    auto e = decode_error(**m);
    if (!e)
      return e.err();
    return make_error(ec::invalid_argument,
                      "the OPC UA server refused the connection: " + status_name(e->error)
                        + (e->reason.empty() ? "" : " (" + e->reason + ")"));
  }
  auto ack = decode_acknowledge(**m);
  if (!ack)
    return ack.err();
  if (auto ok = check_acknowledge(h, *ack); !ok)
    return ok.err();
  c->ack_ = *ack;
  c->writer_ = std::make_unique<chunk_writer>(ack->receive_buffer_size, ack->max_chunk_count,
                                              ack->max_message_size);
  c->assembler_ = std::make_unique<chunk_assembler>(receive_buffer, 0, options.max_message_size);

  if (auto ok = c->open(request_type::issue); !ok)
    return ok.err();
  for (auto deadline = steady_clock::now() + options.timeout; c->renewal_;) {
    auto left = duration_cast<milliseconds>(deadline - steady_clock::now());
    if (left.count() <= 0)
      return make_error(ec::timeout, "no OpenSecureChannel response from " + options.endpoint_url);
    auto r = c->receive(left);
    if (!r)
      return r.err();
    if (*r)
      return make_error(ec::parse_error,
                        "OPC UA server sent a message before the channel was open");
  }

  create_session_request cs;
  cs.client_description.application_uri = "urn:fabrik:opcua-client";
  cs.client_description.product_uri = "urn:fabrik";
  cs.client_description.application_name.text = "fabrik";
  cs.client_description.type = application_type::client;
  cs.endpoint_url = options.endpoint_url;
  cs.session_name = options.session_name;
  cs.client_nonce.bytes = std::string(32, '\0'); // None: any 32 bytes (some servers want them)
  for (size_t i = 0; i < 32; ++i)
    cs.client_nonce.bytes[i] = static_cast<char>((now_ns() >> (i % 8)) * 31 + i);
  cs.requested_session_timeout = options.session_timeout_ms;
  cs.max_response_message_size = options.max_message_size;
  auto session = c->call(cs, [](std::string_view b) -> expected<create_session_response> {
    if (auto ok = check_fault(b, "CreateSession"); !ok)
      return ok.err();
    return decode_create_session_response(b);
  });
  if (!session)
    return session.err();
  c->session_ = std::move(*session);

  auto identity = make_identity(c->session_.server_endpoints, options.login,
                                c->session_.server_certificate, c->session_.server_nonce);
  if (!identity)
    return identity.err();
  activate_session_request as;
  as.identity = std::move(*identity);
  auto activated = c->call(as, [](std::string_view b) -> expected<activate_session_response> {
    if (auto ok = check_fault(b, "ActivateSession"); !ok)
      return ok.err();
    return decode_activate_session_response(b);
  });
  if (!activated)
    return activated.err();
  if (!is_good(activated->header.service_result))
    return make_error(ec::invalid_argument, "ActivateSession refused by the server: "
                                              + status_name(activated->header.service_result));
  return c;
}

void client::close() {
  if (fd_ < 0)
    return;
  interrupted_ = false;
  close_session_request req;
  req.delete_subscriptions = true;
  auto closing = options_.timeout;
  options_.timeout = std::min(options_.timeout, milliseconds{1000});
  // Publish responses may still come before CloseSession's: skip them.
  req.header = next_header();
  if (auto id = send(encode(req))) {
    auto deadline = steady_clock::now() + options_.timeout;
    while (steady_clock::now() < deadline) {
      auto r = receive(duration_cast<milliseconds>(deadline - steady_clock::now()));
      if (!r || (*r && (*r)->request_id == *id))
        break;
    }
  }
  close_secure_channel_request clo;
  clo.header = next_header();
  if (auto chunks = writer_->write(message_type::close, channel_id_, token_id_,
                                   clo.header.request_handle, encode(clo)))
    for (auto& c : *chunks)
      (void)write_all(c);
  options_.timeout = closing;
  ::close(fd_);
  fd_ = -1;
}

} // namespace fabrik::opcua
