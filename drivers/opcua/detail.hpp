#pragma once
// Error helpers shared by the OPC UA message layers (transport.cpp, services.cpp): one
// wording for every parse error, "OPC UA WHAT: why at offset N".

#include "drivers/opcua/encoding.hpp"

#include <cstdio>
#include <string>
#include <utility>

namespace fabrik::opcua::detail {

inline error fail_at(size_t at, const std::string& message) {
  return make_error(ec::parse_error, "OPC UA " + message + " at offset " + std::to_string(at));
}

/// Puts what was being read in front of a reader's error.
inline error in(const std::string& what, const error& e) {
  std::string m = e.message;
  if (m.rfind("OPC UA ", 0) == 0)
    m.erase(0, 7);
  return make_error(e.code, "OPC UA " + what + ": " + m);
}

inline std::string hex32(uint32_t v) {
  char buf[11];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

inline expected<void> check_end(const reader& r, const std::string& what) {
  if (!r.at_end())
    return fail_at(r.offset(), std::to_string(r.remaining()) + " trailing bytes after " + what);
  return {};
}

/// Reads the type id at the start of `body` and refuses any other than `want`; a
/// ServiceFault in its place is named with its status code (transport.cpp).
expected<void> expect_type(reader& r, std::string_view body, uint32_t want);

inline void write_type(writer& w, uint32_t id) { w.write(node_id{0, id}); }

} // namespace fabrik::opcua::detail

/// Reads `expr` (an expected) into `target`, or returns its error prefixed with `what`.
#define OPCUA_READ(target, expr, what)                                                             \
  do {                                                                                             \
    auto v_ = (expr);                                                                              \
    if (!v_)                                                                                       \
      return ::fabrik::opcua::detail::in(what, v_.err());                                          \
    target = std::move(*v_);                                                                       \
  } while (0)
