#include "drivers/opcua/names.hpp"

#include "core/record.hpp"
#include "drivers/opcua/services.hpp"

#include <array>
#include <charconv>
#include <cstdio>

namespace fabrik::opcua {
namespace {

error bad(std::string_view text, const std::string& why) {
  return make_error(ec::invalid_argument,
                    "not a NodeId: \"" + std::string{text} + "\" (" + why + ")");
}

template <class T>
bool parse_uint(std::string_view s, T& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size() && !s.empty();
}

constexpr std::string_view b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string to_base64(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t n = uint32_t(uint8_t(in[i])) << 16;
    if (i + 1 < in.size())
      n |= uint32_t(uint8_t(in[i + 1])) << 8;
    if (i + 2 < in.size())
      n |= uint8_t(in[i + 2]);
    out += b64[(n >> 18) & 63];
    out += b64[(n >> 12) & 63];
    out += i + 1 < in.size() ? b64[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? b64[n & 63] : '=';
  }
  return out;
}

bool from_base64(std::string_view in, std::string& out) {
  if (in.size() % 4 != 0)
    return false;
  for (size_t i = 0; i < in.size(); i += 4) {
    uint32_t n = 0;
    int pad = 0;
    for (size_t j = 0; j < 4; ++j) {
      char c = in[i + j];
      if (c == '=' && i + 4 == in.size() && j >= 2) {
        ++pad;
        n <<= 6;
        continue;
      }
      auto p = b64.find(c);
      if (p == std::string_view::npos || pad > 0)
        return false;
      n = (n << 6) | uint32_t(p);
    }
    out += char(n >> 16);
    if (pad < 2)
      out += char((n >> 8) & 0xff);
    if (pad < 1)
      out += char(n & 0xff);
  }
  return true;
}

bool parse_guid(std::string_view s, guid& g) {
  // 8-4-4-4-12 hex digits
  if (s.size() != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
    return false;
  auto hex = [&](size_t at, size_t n, uint64_t& v) {
    auto [end, ec] = std::from_chars(s.data() + at, s.data() + at + n, v, 16);
    return ec == std::errc{} && end == s.data() + at + n;
  };
  uint64_t a, b, c, d, e;
  if (!hex(0, 8, a) || !hex(9, 4, b) || !hex(14, 4, c) || !hex(19, 4, d) || !hex(24, 12, e))
    return false;
  g.data1 = uint32_t(a);
  g.data2 = uint16_t(b);
  g.data3 = uint16_t(c);
  g.data4[0] = uint8_t(d >> 8);
  g.data4[1] = uint8_t(d);
  for (int i = 0; i < 6; ++i)
    g.data4[2 + i] = uint8_t(e >> (8 * (5 - i)));
  return true;
}

struct named_code {
  uint32_t code;
  const char* name;
};

// The codes a client meets (Part 6 A.2, StatusCode.csv), sorted by code.
constexpr named_code status_names[] = {
  {0x00000000, "Good"},
  {0x00960000, "GoodLocalOverride"},
  {0x40000000, "Uncertain"},
  {0x408F0000, "UncertainNoCommunicationLastUsableValue"},
  {0x40900000, "UncertainLastUsableValue"},
  {0x40910000, "UncertainSubstituteValue"},
  {0x40920000, "UncertainInitialValue"},
  {0x40930000, "UncertainSensorNotAccurate"},
  {0x40940000, "UncertainEngineeringUnitsExceeded"},
  {0x40950000, "UncertainSubNormal"},
  {0x80000000, "Bad"},
  {0x80010000, "BadUnexpectedError"},
  {0x80020000, "BadInternalError"},
  {0x80030000, "BadOutOfMemory"},
  {0x80040000, "BadResourceUnavailable"},
  {0x80050000, "BadCommunicationError"},
  {0x80060000, "BadEncodingError"},
  {0x80070000, "BadDecodingError"},
  {0x80080000, "BadEncodingLimitsExceeded"},
  {0x80090000, "BadUnknownResponse"},
  {0x800A0000, "BadTimeout"},
  {0x800B0000, "BadServiceUnsupported"},
  {0x800C0000, "BadShutdown"},
  {0x800D0000, "BadServerNotConnected"},
  {0x800E0000, "BadServerHalted"},
  {0x800F0000, "BadNothingToDo"},
  {0x80100000, "BadTooManyOperations"},
  {0x80110000, "BadDataTypeIdUnknown"},
  {0x80120000, "BadCertificateInvalid"},
  {0x80130000, "BadSecurityChecksFailed"},
  {0x801F0000, "BadUserAccessDenied"},
  {0x80200000, "BadIdentityTokenInvalid"},
  {0x80210000, "BadIdentityTokenRejected"},
  {0x80220000, "BadSecureChannelIdInvalid"},
  {0x80230000, "BadInvalidTimestamp"},
  {0x80240000, "BadNonceInvalid"},
  {0x80250000, "BadSessionIdInvalid"},
  {0x80260000, "BadSessionClosed"},
  {0x80270000, "BadSessionNotActivated"},
  {0x80280000, "BadSubscriptionIdInvalid"},
  {0x802A0000, "BadRequestHeaderInvalid"},
  {0x802B0000, "BadTimestampsToReturnInvalid"},
  {0x802C0000, "BadRequestCancelledByClient"},
  {0x80310000, "BadNoCommunication"},
  {0x80320000, "BadWaitingForInitialData"},
  {0x80330000, "BadNodeIdInvalid"},
  {0x80340000, "BadNodeIdUnknown"},
  {0x80350000, "BadAttributeIdInvalid"},
  {0x80360000, "BadIndexRangeInvalid"},
  {0x80370000, "BadIndexRangeNoData"},
  {0x80380000, "BadDataEncodingInvalid"},
  {0x80390000, "BadDataEncodingUnsupported"},
  {0x803A0000, "BadNotReadable"},
  {0x803B0000, "BadNotWritable"},
  {0x803C0000, "BadOutOfRange"},
  {0x803D0000, "BadNotSupported"},
  {0x803E0000, "BadNotFound"},
  {0x803F0000, "BadObjectDeleted"},
  {0x80400000, "BadNotImplemented"},
  {0x80410000, "BadMonitoringModeInvalid"},
  {0x80420000, "BadMonitoredItemIdInvalid"},
  {0x80430000, "BadMonitoredItemFilterInvalid"},
  {0x80440000, "BadMonitoredItemFilterUnsupported"},
  {0x80450000, "BadFilterNotAllowed"},
  {0x804A0000, "BadContinuationPointInvalid"},
  {0x804B0000, "BadNoContinuationPoints"},
  {0x804C0000, "BadReferenceTypeIdInvalid"},
  {0x804D0000, "BadBrowseDirectionInvalid"},
  {0x804E0000, "BadNodeNotInView"},
  {0x80530000, "BadRequestTypeInvalid"},
  {0x80540000, "BadSecurityModeRejected"},
  {0x80550000, "BadSecurityPolicyRejected"},
  {0x80560000, "BadTooManySessions"},
  {0x80570000, "BadUserSignatureInvalid"},
  {0x80580000, "BadApplicationSignatureInvalid"},
  {0x80600000, "BadBrowseNameInvalid"},
  {0x806F0000, "BadNoMatch"},
  {0x80700000, "BadMaxAgeInvalid"},
  {0x80770000, "BadTooManySubscriptions"},
  {0x80780000, "BadTooManyPublishRequests"},
  {0x80790000, "BadNoSubscription"},
  {0x807A0000, "BadSequenceNumberUnknown"},
  {0x807B0000, "BadMessageNotAvailable"},
  {0x807D0000, "BadTcpServerTooBusy"},
  {0x807E0000, "BadTcpMessageTypeInvalid"},
  {0x807F0000, "BadTcpSecureChannelUnknown"},
  {0x80800000, "BadTcpMessageTooLarge"},
  {0x80810000, "BadTcpNotEnoughResources"},
  {0x80820000, "BadTcpInternalError"},
  {0x80830000, "BadTcpEndpointUrlInvalid"},
  {0x80840000, "BadRequestInterrupted"},
  {0x80850000, "BadRequestTimeout"},
  {0x80860000, "BadSecureChannelClosed"},
  {0x80870000, "BadSecureChannelTokenUnknown"},
  {0x80880000, "BadSequenceNumberInvalid"},
  {0x80890000, "BadConfigurationError"},
  {0x808A0000, "BadNotConnected"},
  {0x808B0000, "BadDeviceFailure"},
  {0x808C0000, "BadSensorFailure"},
  {0x808D0000, "BadOutOfService"},
  {0x80AB0000, "BadInvalidArgument"},
  {0x80AC0000, "BadConnectionRejected"},
  {0x80AD0000, "BadDisconnect"},
  {0x80AE0000, "BadConnectionClosed"},
  {0x80AF0000, "BadInvalidState"},
  {0x80B00000, "BadEndOfStream"},
  {0x80BE0000, "BadProtocolVersionUnsupported"},
  {0x80DB0000, "BadTooManyMonitoredItems"},
};

std::string hex(uint32_t v) {
  char buf[11];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

} // namespace

expected<node_id> parse_node_id(std::string_view text) {
  node_id id;
  auto rest = text;
  if (rest.starts_with("ns=")) {
    auto semi = rest.find(';');
    if (semi == std::string_view::npos)
      return bad(text, "ns=N must be followed by ';'");
    if (!parse_uint(rest.substr(3, semi - 3), id.namespace_index))
      return bad(text, "namespace index is not a number from 0 to 65535");
    rest.remove_prefix(semi + 1);
  }
  if (rest.size() < 2 || rest[1] != '=')
    return bad(text, "expected i=, s=, g= or b= after the namespace");
  auto value = rest.substr(2);
  switch (rest[0]) {
    case 'i': {
      uint32_t n = 0;
      if (!parse_uint(value, n))
        return bad(text, "i= needs a number from 0 to 4294967295");
      id.identifier = n;
      return id;
    }
    case 's':
      if (value.empty())
        return bad(text, "s= needs a string");
      id.identifier = std::string{value};
      return id;
    case 'g': {
      guid g;
      if (!parse_guid(value, g))
        return bad(text, "g= needs a GUID like 09087E75-8E5E-499B-954F-F2A9603DB28A");
      id.identifier = g;
      return id;
    }
    case 'b': {
      std::string bytes;
      if (value.empty() || !from_base64(value, bytes))
        return bad(text, "b= needs base64");
      id.identifier = byte_string{std::move(bytes)};
      return id;
    }
    default:
      return bad(text, "expected i=, s=, g= or b=");
  }
}

std::string to_string(const node_id& id) {
  std::string out = id.namespace_index ? "ns=" + std::to_string(id.namespace_index) + ";" : "";
  if (auto* n = std::get_if<uint32_t>(&id.identifier))
    return out + "i=" + std::to_string(*n);
  if (auto* s = std::get_if<std::string>(&id.identifier))
    return out + "s=" + *s;
  if (auto* g = std::get_if<guid>(&id.identifier)) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X", g->data1,
                  g->data2, g->data3, g->data4[0], g->data4[1], g->data4[2], g->data4[3],
                  g->data4[4], g->data4[5], g->data4[6], g->data4[7]);
    return out + "g=" + buf;
  }
  return out + "b=" + to_base64(std::get<byte_string>(id.identifier).bytes);
}

expected<std::vector<qualified_name>> parse_browse_path(std::string_view text,
                                                        uint16_t default_ns) {
  auto fail = [&](const std::string& why) {
    return make_error(ec::invalid_argument,
                      "not a browse path: \"" + std::string{text} + "\" (" + why + ")");
  };
  std::vector<qualified_name> out;
  std::string name;
  std::optional<uint16_t> ns;
  bool escaped = false;
  auto finish = [&]() -> bool {
    if (name.empty())
      return false;
    out.push_back({ns.value_or(default_ns), std::move(name)});
    name.clear();
    ns.reset();
    return true;
  };
  for (char c : text) {
    if (escaped) {
      name += c;
      escaped = false;
    } else if (c == '&') {
      escaped = true;
    } else if (c == '/') {
      if (!finish())
        return fail("empty segment");
    } else if (c == ':' && !ns) {
      uint16_t n = 0;
      if (!parse_uint(std::string_view{name}, n))
        return fail("\"" + name + "\" before ':' is not a namespace index");
      ns = n;
      name.clear();
    } else {
      name += c;
    }
  }
  if (escaped)
    return fail("'&' at the end");
  if (!finish())
    return fail("empty segment");
  return out;
}

const char* message_name(uint32_t type_id) {
  switch (type_id) {
    case service_fault_id:
      return "ServiceFault";
    case open_secure_channel_request_id:
      return "OpenSecureChannelRequest";
    case open_secure_channel_response_id:
      return "OpenSecureChannelResponse";
    case close_secure_channel_request_id:
      return "CloseSecureChannelRequest";
    case close_secure_channel_response_id:
      return "CloseSecureChannelResponse";
    case create_session_request_id:
      return "CreateSessionRequest";
    case create_session_response_id:
      return "CreateSessionResponse";
    case activate_session_request_id:
      return "ActivateSessionRequest";
    case activate_session_response_id:
      return "ActivateSessionResponse";
    case close_session_request_id:
      return "CloseSessionRequest";
    case close_session_response_id:
      return "CloseSessionResponse";
    case read_request_id:
      return "ReadRequest";
    case read_response_id:
      return "ReadResponse";
    case browse_request_id:
      return "BrowseRequest";
    case browse_response_id:
      return "BrowseResponse";
    case translate_browse_paths_request_id:
      return "TranslateBrowsePathsToNodeIdsRequest";
    case translate_browse_paths_response_id:
      return "TranslateBrowsePathsToNodeIdsResponse";
    case create_monitored_items_request_id:
      return "CreateMonitoredItemsRequest";
    case create_monitored_items_response_id:
      return "CreateMonitoredItemsResponse";
    case create_subscription_request_id:
      return "CreateSubscriptionRequest";
    case create_subscription_response_id:
      return "CreateSubscriptionResponse";
    case publish_request_id:
      return "PublishRequest";
    case publish_response_id:
      return "PublishResponse";
    case delete_subscriptions_request_id:
      return "DeleteSubscriptionsRequest";
    case delete_subscriptions_response_id:
      return "DeleteSubscriptionsResponse";
    default:
      return "an unknown message";
  }
}

std::string status_name(status_code s) {
  auto base = s.code & 0xFFFF0000u;
  for (auto& n : status_names)
    if (n.code == base)
      return base == s.code ? std::string{n.name} : std::string{n.name} + " (" + hex(s.code) + ")";
  return hex(s.code);
}

uint16_t quality_of(status_code s) {
  switch (s.code >> 30) {
    case 0:
      return quality::good;
    case 1:
      return quality::uncertain;
    default:
      return quality::bad;
  }
}

} // namespace fabrik::opcua
