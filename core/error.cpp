#include "core/error.hpp"

namespace fabrik {

const char* to_string(ec code) {
  switch (code) {
    case ec::invalid_argument:
      return "invalid argument";
    case ec::parse_error:
      return "parse error";
    case ec::not_found:
      return "not found";
    case ec::io_error:
      return "I/O error";
    case ec::storage_full:
      return "storage full";
    case ec::version_mismatch:
      return "version mismatch";
    case ec::unavailable:
      return "unavailable";
    case ec::timeout:
      return "timeout";
    case ec::internal:
      return "internal error";
  }
  return "unknown error";
}

} // namespace fabrik
