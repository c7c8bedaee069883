#pragma once
// The text forms flows and messages use for OPC UA things: NodeIds ("ns=1;s=Temperature",
// OPC 10000-6 5.3.1.10), browse paths ("Plant/1:Temperature", a simplified Part 4 A.2
// RelativePath), status code names (Part 4 7.34 / Part 6 A.2 StatusCode table) and the
// quality fabrik records carry. Pure code.

#include "drivers/opcua/encoding.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fabrik::opcua {

/// "i=85", "ns=1;s=Temperature", "ns=2;g=09087E75-8E5E-499B-954F-F2A9603DB28A",
/// "ns=1;b=<base64>". Refuses anything else, naming what is wrong.
expected<node_id> parse_node_id(std::string_view text);
/// The same text form (numeric, string, guid in upper case, opaque in base64).
std::string to_string(const node_id& id);

/// Whether a flow's variable text is meant as a NodeId ("ns=..." or "i=", "s=", "g=",
/// "b=") rather than a browse path.
inline bool is_node_id_text(std::string_view s) {
  return s.starts_with("ns=")
         || (s.size() > 1 && s[1] == '='
             && std::string_view{"isgb"}.find(s[0]) != std::string_view::npos);
}

/// A browse path: segments separated by '/', each "NS:Name" or "Name" (namespace
/// default_ns), followed along hierarchical references from the Objects folder.
/// "Name" may not be empty; '/' and ':' inside a name are escaped with '&'.
expected<std::vector<qualified_name>> parse_browse_path(std::string_view text, uint16_t default_ns);

/// The name of a service body's type id fabrik speaks ("OpenSecureChannelRequest",
/// "ReadResponse", "ServiceFault", ...), else "an unknown message".
const char* message_name(uint32_t type_id);

/// "BadNodeIdUnknown" for known codes (the info bits ignored), else "0x80AB0000"; a known
/// code with info bits is "Name (0x...)".
std::string status_name(status_code s);
inline bool is_good(status_code s) { return (s.code >> 30) == 0; }
inline bool is_bad(status_code s) { return (s.code >> 30) >= 2; }

/// The Overflow info bit (Part 4 7.34.1): the server's queue for the item was full and it
/// dropped values before this one.
inline bool overflowed(status_code s) { return (s.code & 0x0C00u) == 0x0400u && (s.code & 0x80u); }

/// A status code's severity as a record quality (core/record.hpp): good, uncertain, bad.
uint16_t quality_of(status_code s);

} // namespace fabrik::opcua
