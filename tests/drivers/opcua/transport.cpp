// OPC UA transport (drivers/opcua/transport): byte-exact Connection Protocol messages and
// secure conversation headers computed by hand from the Part 6 layouts, chunking and
// reassembly, every refusal of the assembler, service framing, and truncated input.

#include "drivers/opcua/transport.hpp"

#include "tests/support/support.hpp"

#include <catch2/catch.hpp>

#include <functional>

using namespace fabrik;
using namespace fabrik::opcua;
using fabrik::test_support::hex;
using fabrik::test_support::to_hex;

namespace {

/// Bytes from a hex string such as "01 05 01 04".

/// The first size bytes of message with its size field set to size, so that decoding
/// gets past the size check and into the fields.
std::string cut(const std::string& message, size_t size) {
  std::string out = message.substr(0, size);
  if (size >= message_header_size)
    for (size_t i = 0; i < 4; ++i)
      out[4 + i] = static_cast<char>(static_cast<uint8_t>(size >> (8 * i)));
  return out;
}

const std::string none_uri_hex = // "http://opcfoundation.org/UA/SecurityPolicy#None", 47 bytes
  "68 74 74 70 3a 2f 2f 6f 70 63 66 6f 75 6e 64 61 74 69 6f 6e 2e 6f 72 67 2f 55 41 2f "
  "53 65 63 75 72 69 74 79 50 6f 6c 69 63 79 23 4e 6f 6e 65";

std::string body_of(size_t n) {
  std::string b(n, '\0');
  for (size_t i = 0; i < n; ++i)
    b[i] = static_cast<char>((i * 131 + 7) & 0xff);
  return b;
}

open_secure_channel_request sample_request() {
  open_secure_channel_request m;
  m.header.timestamp = date_time{0x01d9'0000'0000'0001};
  m.header.request_handle = 1;
  m.header.timeout_hint = 10000;
  m.requested_lifetime = 3'600'000;
  return m;
}

open_secure_channel_response sample_response() {
  open_secure_channel_response m;
  m.header.timestamp = date_time{0x01d9'0000'0000'0002};
  m.header.request_handle = 1;
  m.header.string_table = {"a", "bc"};
  m.token = {7, 3, date_time{0x01d9'0000'0000'0003}, 600'000};
  m.server_nonce = byte_string{"\x01\x02"};
  return m;
}

} // namespace

TEST_CASE("OPC UA HEL, ACK and ERR encode byte-exact", "[opcua]") {
  hello h;
  h.protocol_version = 0;
  h.receive_buffer_size = 65536;
  h.send_buffer_size = 65536;
  h.max_message_size = 16777216;
  h.max_chunk_count = 5000;
  h.endpoint_url = "opc.tcp://h:4840";
  // 8 header + 5 x UInt32 + Int32 length + 16 url bytes = 48 = 0x30.
  const std::string hel = hex("48 45 4c 46 30 00 00 00"
                              "00 00 00 00  00 00 01 00  00 00 01 00  00 00 00 01  88 13 00 00"
                              "10 00 00 00  6f 70 63 2e 74 63 70 3a 2f 2f 68 3a 34 38 34 30");
  CHECK(to_hex(encode(h)) == to_hex(hel));
  auto dh = decode_hello(hel);
  REQUIRE(dh);
  CHECK(*dh == h);

  acknowledge a;
  a.receive_buffer_size = 8192;
  a.send_buffer_size = 8192;
  a.max_message_size = 16777216;
  a.max_chunk_count = 0;
  const std::string ack = hex("41 43 4b 46 1c 00 00 00"
                              "00 00 00 00  00 20 00 00  00 20 00 00  00 00 00 01  00 00 00 00");
  CHECK(to_hex(encode(a)) == to_hex(ack));
  auto da = decode_acknowledge(ack);
  REQUIRE(da);
  CHECK(*da == a);

  error_message e{status_code{0x80830000}, "no"}; // BadTcpEndpointUrlInvalid
  const std::string err = hex("45 52 52 46 12 00 00 00  00 00 83 80  02 00 00 00 6e 6f");
  CHECK(to_hex(encode(e)) == to_hex(err));
  auto de = decode_error(err);
  REQUIRE(de);
  CHECK(*de == e);
}

TEST_CASE("OPC UA connection messages refuse bad headers, sizes and contents", "[opcua]") {
  const std::string hel = encode(hello{0, 65536, 65536, 0, 0, "opc.tcp://x"});
  REQUIRE(decode_hello(hel));

  auto e = decode_acknowledge(hel).err();
  CHECK(e.code == ec::parse_error);
  CHECK(e.message == "OPC UA expected a ACK message, got HEL at offset 0");

  std::string bad_type = hel;
  bad_type[0] = 'X';
  CHECK(decode_hello(bad_type).err().message.find("unknown message type \"XEL\"")
        != std::string::npos);

  std::string chunked = hel;
  chunked[3] = 'C';
  CHECK(decode_hello(chunked).err().message.find("only 'F' is allowed") != std::string::npos);
  chunked[3] = 'Z';
  CHECK(decode_hello(chunked).err().message == "OPC UA unknown chunk type 90 at offset 3");

  // The size field must match the bytes given, both ways.
  CHECK(decode_hello(hel + "x").err().message.find("size field says") != std::string::npos);
  CHECK(decode_hello(hel.substr(0, hel.size() - 1)).err().message.find("size field says")
        != std::string::npos);
  std::string small = hel;
  small[4] = 7;
  small[5] = small[6] = small[7] = 0;
  CHECK(decode_hello(small).err().message.find("message size 7 is smaller") != std::string::npos);

  // Trailing bytes inside the declared size.
  std::string trailing = encode(acknowledge{}) + "z";
  trailing[4] = static_cast<char>(trailing.size());
  CHECK(decode_acknowledge(trailing).err().message
        == "OPC UA 1 trailing bytes after ACK at offset 28");

  // An endpoint url over 4096 bytes.
  auto long_url = decode_hello(encode(hello{0, 65536, 65536, 0, 0, std::string(4097, 'u')}));
  REQUIRE_FALSE(long_url);
  CHECK(long_url.err().message
        == "OPC UA HEL endpoint url of 4097 bytes is longer than 4096 at offset 28");
  CHECK(decode_hello(encode(hello{0, 65536, 65536, 0, 0, std::string(4096, 'u')})));

  // A field truncated inside the declared size names the field.
  auto t = decode_error(cut(encode(error_message{status_code{1}, "abc"}), 10));
  REQUIRE_FALSE(t);
  CHECK(t.err().message
        == "OPC UA ERR error: truncated StatusCode (needs 4 bytes, 2 left) at offset 8");
}

TEST_CASE("OPC UA Acknowledge is checked against the Hello", "[opcua]") {
  hello h{0, 65536, 32768, 0, 0, "opc.tcp://x"};
  CHECK(check_acknowledge(h, acknowledge{0, 32768, 65536, 0, 0}));
  CHECK(check_acknowledge(h, acknowledge{0, 8192, 8192, 0, 0}));
  CHECK(check_acknowledge(h, acknowledge{0, 8191, 8192, 0, 0})
          .err()
          .message.find("receive buffer size 8191")
        != std::string::npos);
  CHECK(check_acknowledge(h, acknowledge{0, 8192, 8191, 0, 0})
          .err()
          .message.find("send buffer size 8191")
        != std::string::npos);
  CHECK(check_acknowledge(h, acknowledge{0, 32769, 8192, 0, 0})
          .err()
          .message.find("larger than the offered send")
        != std::string::npos);
  CHECK(check_acknowledge(h, acknowledge{0, 8192, 65537, 0, 0})
          .err()
          .message.find("larger than the offered receive")
        != std::string::npos);
}

TEST_CASE("OPC UA next_message_length frames a byte stream", "[opcua]") {
  const std::string ack = encode(acknowledge{});
  for (size_t n = 0; n < message_header_size; ++n) {
    auto len = next_message_length(std::string_view{ack}.substr(0, n), 65536);
    REQUIRE(len);
    CHECK(*len == 0);
  }
  auto len = next_message_length(ack + "more", 65536);
  REQUIRE(len);
  CHECK(*len == 28);
  CHECK(next_message_length(ack, 27).err().message
        == "OPC UA message size 28 exceeds the limit of 27 at offset 4");
  CHECK_FALSE(next_message_length("GET / HTTP/1.1", 65536));
}

TEST_CASE("OPC UA OPN, MSG and CLO chunk headers are byte-exact", "[opcua]") {
  chunk_writer w{8192};
  auto opn = w.write(message_type::open, 0, 99, 1, "B");
  REQUIRE(opn);
  REQUIRE(opn->size() == 1);
  // 8 header + 4 channel + (4 + 47 uri) + 4 + 4 null certificate and thumbprint + 8
  // sequence header + 1 body byte = 80 = 0x50. The token id is not written for OPN.
  CHECK(to_hex((*opn)[0])
        == to_hex(hex("4f 50 4e 46 50 00 00 00  00 00 00 00  2f 00 00 00" + none_uri_hex
                      + "ff ff ff ff  ff ff ff ff  01 00 00 00  01 00 00 00  42")));

  auto msg = w.write(message_type::message, 0x11223344, 5, 2, "");
  REQUIRE(msg);
  CHECK(to_hex((*msg)[0])
        == to_hex(hex("4d 53 47 46 18 00 00 00  44 33 22 11  05 00 00 00"
                      "02 00 00 00  02 00 00 00")));
  auto clo = w.write(message_type::close, 7, 5, 3, "xy");
  REQUIRE(clo);
  CHECK(to_hex((*clo)[0])
        == to_hex(hex("43 4c 4f 46 1a 00 00 00  07 00 00 00  05 00 00 00"
                      "03 00 00 00  03 00 00 00  78 79")));
  std::string abort = w.write_abort(message_type::message, 7, 5, 4, {status_code{0x80020000}, "x"});
  CHECK(to_hex(abort)
        == to_hex(hex("4d 53 47 41 21 00 00 00  07 00 00 00  05 00 00 00"
                      "04 00 00 00  04 00 00 00  00 00 02 80  01 00 00 00 78")));
  CHECK(w.next_sequence_number() == 5);

  auto c = decode_chunk((*opn)[0]);
  REQUIRE(c);
  CHECK(c->header == message_header{message_type::open, chunk_type::final_chunk, 80});
  CHECK(c->secure_channel_id == 0);
  CHECK(c->asymmetric.security_policy_uri == security_policy_none);
  CHECK(c->asymmetric.sender_certificate.bytes.empty());
  CHECK(c->sequence == sequence_header{1, 1});
  CHECK(c->body == "B");
  auto m = decode_chunk((*msg)[0]);
  REQUIRE(m);
  CHECK(m->secure_channel_id == 0x11223344);
  CHECK(m->token_id == 5);
  CHECK(m->sequence == sequence_header{2, 2});
  CHECK(m->body.empty());

  // The writer refuses what it cannot frame.
  CHECK(w.write(message_type::hello, 0, 0, 1, "").err().code == ec::invalid_argument);
  CHECK(chunk_writer{24}.write(message_type::message, 0, 0, 1, "x").err().message.find("no room")
        != std::string::npos);
  CHECK(chunk_writer{25}.write(message_type::message, 0, 0, 1, "x"));
  CHECK(chunk_writer{8192, 2}
          .write(message_type::message, 0, 0, 1, body_of(3 * 8168))
          .err()
          .message.find("needs 3 chunks, more than the peer's max chunk count 2")
        != std::string::npos);
  CHECK(chunk_writer{8192, 2}.write(message_type::message, 0, 0, 1, body_of(2 * 8168)));
  CHECK(chunk_writer{8192, 0, 100}
          .write(message_type::message, 0, 0, 1, body_of(101))
          .err()
          .message.find("max message size 100")
        != std::string::npos);
  CHECK(chunk_writer{8192, 0, 100}.write(message_type::message, 0, 0, 1, body_of(100)));
}

TEST_CASE("OPC UA decode_chunk refuses other policies, other types and bad sizes", "[opcua]") {
  chunk_writer w{8192};
  std::string opn = (*w.write(message_type::open, 0, 0, 1, "body"))[0];
  std::string other = opn;
  other[12 + 4 + 43] = 'X'; // "#None" -> "#Xone"
  CHECK(decode_chunk(other).err().message
        == "OPC UA OPN security policy \"http://opcfoundation.org/UA/SecurityPolicy#Xone\" is not "
           "supported (only None) at offset 12");
  CHECK(
    decode_chunk(encode(hello{})).err().message.find("expected an OPN, MSG or CLO chunk, got HEL")
    != std::string::npos);
  CHECK(decode_chunk(opn + "x").err().message.find(
          "OPN chunk size field says 83 bytes but the chunk has 84")
        != std::string::npos);
}

TEST_CASE("OPC UA a 100 KiB body is split into 8 KiB chunks and reassembled", "[opcua]") {
  const std::string body = body_of(100 * 1024);
  chunk_writer w{8192};
  auto chunks = w.write(message_type::message, 42, 9, 77, body);
  REQUIRE(chunks);
  // 24 header bytes leave 8168 body bytes a chunk: 102400 / 8168 -> 13 chunks.
  REQUIRE(chunks->size() == 13);
  size_t total = 0;
  for (size_t i = 0; i < chunks->size(); ++i) {
    const auto& c = (*chunks)[i];
    CHECK(c.size() <= 8192);
    CHECK(c[3] == (i + 1 == chunks->size() ? 'F' : 'C'));
    auto d = decode_chunk(c);
    REQUIRE(d);
    CHECK(d->sequence.sequence_number == i + 1);
    CHECK(d->sequence.request_id == 77);
    total += d->body.size();
  }
  CHECK((*chunks)[0].size() == 8192);
  CHECK(total == body.size());

  chunk_assembler a{8192, 13, 100 * 1024};
  for (size_t i = 0; i + 1 < chunks->size(); ++i) {
    auto r = a.add((*chunks)[i]);
    REQUIRE(r);
    CHECK_FALSE(*r);
    CHECK(a.pending_chunks() == i + 1);
  }
  auto r = a.add(chunks->back());
  REQUIRE(r);
  REQUIRE(*r);
  const secure_message& m = **r;
  CHECK(m.type == message_type::message);
  CHECK(m.secure_channel_id == 42);
  CHECK(m.token_id == 9);
  CHECK(m.request_id == 77);
  CHECK(m.body == body);
  CHECK(a.pending_chunks() == 0);

  // The next message continues the sequence; an OPN message keeps its security header.
  auto next = w.write(message_type::open, 42, 0, 78, "hi");
  REQUIRE(next);
  auto r2 = a.add((*next)[0]);
  REQUIRE(r2);
  REQUIRE(*r2);
  CHECK((*r2)->type == message_type::open);
  CHECK((*r2)->asymmetric.security_policy_uri == security_policy_none);
  CHECK((*r2)->body == "hi");
}

TEST_CASE("OPC UA sequence numbers wrap below 1024", "[opcua]") {
  chunk_writer w{8192};
  w.set_next_sequence_number(4'294'966'271u);
  auto a = w.write(message_type::message, 1, 1, 1, "a");
  auto b = w.write(message_type::message, 1, 1, 2, "b");
  REQUIRE(a);
  REQUIRE(b);
  CHECK(decode_chunk((*b)[0])->sequence.sequence_number == 1);
  chunk_assembler asm_{8192};
  CHECK(asm_.add((*a)[0]));
  CHECK(asm_.add((*b)[0]));
}

TEST_CASE("OPC UA chunk assembler refusals", "[opcua]") {
  const std::string body = body_of(3 * 8168); // 3 full chunks of 8192

  SECTION("a chunk over the receive buffer") {
    auto chunks = chunk_writer{8193}.write(message_type::message, 1, 1, 1, body_of(8169));
    REQUIRE(chunks);
    REQUIRE((*chunks)[0].size() == 8193);
    chunk_assembler a{8192};
    auto r = a.add((*chunks)[0]);
    REQUIRE_FALSE(r);
    CHECK(r.err().code == ec::parse_error);
    CHECK(r.err().message == "OPC UA chunk 1: size 8193 exceeds the receive buffer size 8192");
    chunk_assembler fits{8193};
    CHECK(fits.add((*chunks)[0]));
  }
  SECTION("more chunks than the max chunk count") {
    auto chunks = chunk_writer{8192}.write(message_type::message, 1, 1, 1, body);
    REQUIRE(chunks->size() == 3);
    chunk_assembler a{8192, 2};
    CHECK(a.add((*chunks)[0]));
    CHECK(a.add((*chunks)[1]));
    auto r = a.add((*chunks)[2]);
    REQUIRE_FALSE(r);
    CHECK(r.err().message == "OPC UA chunk 3: message has more than 2 chunks");
    CHECK(a.pending_chunks() == 0);
    chunk_assembler three{8192, 3};
    for (const auto& c : *chunks)
      REQUIRE(three.add(c));
  }
  SECTION("a body over the max message size") {
    auto chunks = chunk_writer{8192}.write(message_type::message, 1, 1, 1, body);
    chunk_assembler a{8192, 0, static_cast<uint32_t>(body.size() - 1)};
    CHECK(a.add((*chunks)[0]));
    CHECK(a.add((*chunks)[1]));
    auto r = a.add((*chunks)[2]);
    REQUIRE_FALSE(r);
    CHECK(r.err().message.find("exceeds the max message size") != std::string::npos);
  }
  SECTION("an abort returns the abort's error") {
    chunk_writer w{8192};
    auto chunks = w.write(message_type::message, 1, 1, 5, body);
    chunk_assembler a{8192};
    CHECK(a.add((*chunks)[0]));
    CHECK(a.add((*chunks)[1]));
    w.set_next_sequence_number(3);
    auto r =
      a.add(w.write_abort(message_type::message, 1, 1, 5, {status_code{0x80080000}, "too large"}));
    REQUIRE_FALSE(r);
    CHECK(r.err().code == ec::io_error);
    CHECK(r.err().message == "OPC UA peer aborted MSG request 5: 0x80080000 too large");
    REQUIRE(a.last_abort());
    CHECK(*a.last_abort() == error_message{status_code{0x80080000}, "too large"});
    CHECK(a.pending_chunks() == 0);
    // The next message is assembled from scratch.
    auto next = w.write(message_type::message, 1, 1, 6, "ok");
    auto r2 = a.add((*next)[0]);
    REQUIRE(r2);
    REQUIRE(*r2);
    CHECK((*r2)->body == "ok");
    CHECK_FALSE(a.last_abort());
  }
  SECTION("a malformed abort body") {
    chunk_writer w{8192};
    std::string abort = w.write_abort(message_type::message, 1, 1, 5, {status_code{1}, "xyz"});
    auto r = chunk_assembler{8192}.add(cut(abort, abort.size() - 1));
    REQUIRE_FALSE(r);
    CHECK(r.err().code == ec::parse_error);
    CHECK(r.err().message.find("abort body") != std::string::npos);
  }
  SECTION("mismatched request ids") {
    chunk_writer w{8192};
    auto first = w.write(message_type::message, 1, 1, 7, body);
    w.set_next_sequence_number(2);
    auto second = w.write(message_type::message, 1, 1, 8, body);
    chunk_assembler a{8192};
    CHECK(a.add((*first)[0]));
    auto r = a.add((*second)[0]);
    REQUIRE_FALSE(r);
    CHECK(r.err().message
          == "OPC UA chunk 2: request id 8 differs from 7 of the message's first chunk");
    CHECK(a.pending_chunks() == 0);
  }
  SECTION("mismatched channel, token and type") {
    chunk_writer w{8192};
    auto first = w.write(message_type::message, 1, 1, 7, body);
    chunk_assembler a{8192};
    REQUIRE(a.add((*first)[0]));
    w.set_next_sequence_number(2);
    auto other_channel = w.write(message_type::message, 2, 1, 7, "x");
    CHECK(a.add((*other_channel)[0]).err().message.find("secure channel id 2 differs from 1")
          != std::string::npos);

    chunk_assembler b{8192};
    REQUIRE(b.add((*first)[0]));
    w.set_next_sequence_number(2);
    auto other_token = w.write(message_type::message, 1, 2, 7, "x");
    CHECK(b.add((*other_token)[0]).err().message.find("token id 2 differs from 1")
          != std::string::npos);

    chunk_assembler c{8192};
    REQUIRE(c.add((*first)[0]));
    w.set_next_sequence_number(2);
    auto other_type = w.write(message_type::close, 1, 1, 7, "x");
    CHECK(c.add((*other_type)[0]).err().message.find("CLO chunk inside a MSG message")
          != std::string::npos);
  }
  SECTION("a sequence number that does not follow") {
    chunk_writer w{8192};
    auto first = w.write(message_type::message, 1, 1, 1, "a");
    w.set_next_sequence_number(5);
    auto second = w.write(message_type::message, 1, 1, 2, "b");
    chunk_assembler a{8192};
    REQUIRE(a.add((*first)[0]));
    CHECK(a.add((*second)[0]).err().message
          == "OPC UA chunk 2: MSG sequence number 5 does not follow 1");
  }
  SECTION("truncated headers") {
    chunk_writer w{8192};
    auto opn = (*w.write(message_type::open, 0, 0, 1, ""))[0];
    auto msg = (*w.write(message_type::message, 1, 1, 2, ""))[0];
    // With the body empty, every shorter prefix cuts into a header.
    for (const std::string* full : {&opn, &msg}) {
      for (size_t n = 0; n < full->size(); ++n) {
        for (const std::string& part : {full->substr(0, n), cut(*full, n)}) {
          auto d = decode_chunk(part);
          REQUIRE_FALSE(d);
          CHECK(d.err().code == ec::parse_error);
          CHECK(d.err().message.find("at offset") != std::string::npos);
          auto r = chunk_assembler{8192}.add(part);
          REQUIRE_FALSE(r);
          CHECK(r.err().message.rfind("OPC UA chunk 1: ", 0) == 0);
        }
      }
    }
    auto e = decode_chunk(cut(msg, 20)).err();
    CHECK(e.message
          == "OPC UA MSG request id: truncated UInt32 (needs 4 bytes, 0 left) at offset 20");
    CHECK(decode_chunk(cut(msg, 18)).err().message
          == "OPC UA MSG sequence number: truncated UInt32 (needs 4 bytes, 2 left) at offset 16");
  }
}

TEST_CASE("OPC UA OpenSecureChannelRequest byte layout and round trip", "[opcua]") {
  const auto m = sample_request();
  const std::string body = encode(m);
  CHECK(to_hex(body)
        == to_hex(hex("01 00 be 01" // FourByte NodeId i=446
                      "00 00" // authentication token: null
                      "01 00 00 00 00 00 d9 01" // timestamp
                      "01 00 00 00  00 00 00 00" // request handle, diagnostics
                      "00 00 00 00" // audit entry id ""
                      "10 27 00 00" // timeout hint 10000
                      "00 00 00" // additional header: null
                      "00 00 00 00  00 00 00 00" // client version, Issue
                      "01 00 00 00" // security mode None
                      "00 00 00 00" // client nonce ""
                      "80 ee 36 00"))); // lifetime 3600000
  auto d = decode_open_secure_channel_request(body);
  REQUIRE(d);
  CHECK(*d == m);

  auto renew = m;
  renew.type = request_type::renew;
  renew.client_nonce = byte_string{"n"};
  renew.header.audit_entry_id = "audit";
  renew.header.authentication_token = node_id{1, std::string{"tok"}};
  auto dr = decode_open_secure_channel_request(encode(renew));
  REQUIRE(dr);
  CHECK(*dr == renew);

  // The body inside an OPN chunk: the whole first chunk, byte for byte.
  chunk_writer w{8192};
  auto chunks = w.write(message_type::open, 0, 0, 1, body);
  REQUIRE(chunks);
  CHECK(to_hex((*chunks)[0])
        == to_hex(hex("4f 50 4e 46 84 00 00 00  00 00 00 00  2f 00 00 00" + none_uri_hex
                      + "ff ff ff ff  ff ff ff ff  01 00 00 00  01 00 00 00")
                  + body));

  // Unknown enumeration values.
  std::string bad_type = body;
  bad_type[4 + 2 + 8 + 4 + 4 + 4 + 4 + 3 + 4] = 2;
  CHECK(decode_open_secure_channel_request(bad_type).err().message
        == "OPC UA OpenSecureChannelRequest request type 2 is neither Issue (0) nor Renew (1) at "
           "offset 37");
  std::string bad_mode = body;
  bad_mode[41] = 4;
  CHECK(decode_open_secure_channel_request(bad_mode).err().message
        == "OPC UA OpenSecureChannelRequest security mode 4 is unknown at offset 41");
  CHECK(decode_open_secure_channel_request(body + "x").err().message
        == "OPC UA 1 trailing bytes after OpenSecureChannelRequest at offset 53");
  CHECK(decode_open_secure_channel_request(encode(close_secure_channel_request{})).err().message
        == "OPC UA expected OpenSecureChannelRequest (i=446), got CloseSecureChannelRequest "
           "(i=452) at offset 0");
  CHECK(decode_open_secure_channel_request(hex("03 01 00 01 00 00 00 78")).err().message
        == "OPC UA message type id is not a numeric NodeId in namespace 0 at offset 0");
}

TEST_CASE("OPC UA OpenSecureChannelResponse, CloseSecureChannelRequest round trips", "[opcua]") {
  const auto m = sample_response();
  const std::string body = encode(m);
  // Type id, then the ResponseHeader: timestamp, handle, result, empty DiagnosticInfo,
  // string table of 2, null additional header.
  CHECK(to_hex(body.substr(0, 39))
        == to_hex(hex("01 00 c1 01  02 00 00 00 00 00 d9 01  01 00 00 00  00 00 00 00  00"
                      "02 00 00 00  01 00 00 00 61  02 00 00 00 62 63  00 00 00")));
  auto d = decode_open_secure_channel_response(body);
  REQUIRE(d);
  CHECK(*d == m);
  CHECK(d->token.channel_id == 7);
  CHECK(d->token.revised_lifetime == 600'000);

  close_secure_channel_request c;
  c.header.request_handle = 9;
  const std::string cb = encode(c);
  CHECK(cb.substr(0, 4) == hex("01 00 c4 01"));
  auto dc = decode_close_secure_channel_request(cb);
  REQUIRE(dc);
  CHECK(*dc == c);

  // A null string table (length -1) reads as empty; a negative one is refused.
  std::string null_table = encode(open_secure_channel_response{});
  REQUIRE(null_table.substr(21, 4) == hex("00 00 00 00"));
  null_table.replace(21, 4, hex("ff ff ff ff"));
  CHECK(decode_open_secure_channel_response(null_table));
  null_table.replace(21, 4, hex("fe ff ff ff"));
  CHECK(decode_open_secure_channel_response(null_table).err().message
        == "OPC UA OpenSecureChannelResponse: ResponseHeader string table has negative length -2 "
           "at offset 21");
  null_table.replace(21, 4, hex("ff ff ff 7f"));
  CHECK(decode_open_secure_channel_response(null_table)
          .err()
          .message.find("string table of 2147483647 strings")
        != std::string::npos);
}

TEST_CASE("OPC UA DiagnosticInfo must be empty", "[opcua]") {
  std::string body = encode(sample_response());
  REQUIRE(body[20] == 0);
  body[20] = 0x01;
  auto e = decode_open_secure_channel_response(body);
  REQUIRE_FALSE(e);
  CHECK(e.err().message
        == "OPC UA OpenSecureChannelResponse: ResponseHeader service diagnostics: non-empty "
           "DiagnosticInfo (mask 1) is not "
           "supported at offset 20");
}

TEST_CASE("OPC UA ServiceFault is recognized with its status code", "[opcua]") {
  service_fault f;
  f.header.request_handle = 3;
  f.header.service_result = status_code{0x80550000}; // BadSecurityPolicyRejected
  const std::string body = encode(f);
  CHECK(to_hex(body)
        == to_hex(hex("01 00 8d 01  00 00 00 00 00 00 00 00  03 00 00 00"
                      "00 00 55 80  00  00 00 00 00  00 00 00")));
  auto d = decode_service_fault(body);
  REQUIRE(d);
  CHECK(*d == f);

  auto is = as_service_fault(body);
  REQUIRE(is);
  REQUIRE(*is);
  CHECK((*is)->header.service_result.code == 0x80550000);
  auto not_fault = as_service_fault(encode(sample_response()));
  REQUIRE(not_fault);
  CHECK_FALSE(*not_fault);
  CHECK_FALSE(as_service_fault(""));

  auto as_response = decode_open_secure_channel_response(body);
  REQUIRE_FALSE(as_response);
  CHECK(as_response.err().message
        == "OPC UA ServiceFault BadSecurityPolicyRejected instead of OpenSecureChannelResponse");
}

TEST_CASE("OPC UA every truncation of a valid message is refused", "[opcua]") {
  chunk_writer w{8192};
  struct sample {
    std::string bytes;
    std::function<bool(const std::string&)> decodes;
  };
  const std::vector<sample> samples = {
    {encode(hello{0, 65536, 65536, 0, 0, "opc.tcp://h:4840"}),
     [](const std::string& b) { return bool(decode_hello(b)); }},
    {encode(acknowledge{}), [](const std::string& b) { return bool(decode_acknowledge(b)); }},
    {encode(error_message{status_code{0x80830000}, "bad url"}),
     [](const std::string& b) { return bool(decode_error(b)); }},
    {encode(sample_request()),
     [](const std::string& b) { return bool(decode_open_secure_channel_request(b)); }},
    {encode(sample_response()),
     [](const std::string& b) { return bool(decode_open_secure_channel_response(b)); }},
    {encode(close_secure_channel_request{}),
     [](const std::string& b) { return bool(decode_close_secure_channel_request(b)); }},
    {encode(service_fault{}), [](const std::string& b) { return bool(decode_service_fault(b)); }},
    {encode(service_fault{}), [](const std::string& b) { return bool(as_service_fault(b)); }},
  };
  for (const auto& s : samples) {
    REQUIRE(s.decodes(s.bytes));
    bool framed = s.bytes.size() >= 8
                  && (s.bytes.substr(0, 3) == "HEL" || s.bytes.substr(0, 3) == "ACK"
                      || s.bytes.substr(0, 3) == "ERR");
    for (size_t n = 0; n < s.bytes.size(); ++n) {
      INFO(to_hex(s.bytes) << " cut to " << n);
      CHECK_FALSE(s.decodes(s.bytes.substr(0, n)));
      if (framed)
        CHECK_FALSE(s.decodes(cut(s.bytes, n)));
    }
  }
}
