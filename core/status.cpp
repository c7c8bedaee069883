#include "core/status.hpp"

namespace fabrik {

std::string actor_status::to_line() const {
  std::string line = name + " (" + kind + ") " + state + " in=" + std::to_string(in)
                     + " out=" + std::to_string(out) + " errors=" + std::to_string(errors)
                     + " queue=" + std::to_string(queue);
  for (auto& [key, value] : details)
    if (value != "0")
      line += " " + key + "=" + value;
  if (!last_error.empty())
    line += " last_error=\"" + last_error + "\"";
  return line;
}

} // namespace fabrik
