#include "actors/spawn.hpp"

namespace fabrik {

std::filesystem::path spawn_context::state_dir(std::string_view subdir) const {
  return data_dir / subdir / decl.name;
}

std::string spawn_context::client_id() const {
  return "fabrik-" + f.name + "-" + node + "-" + decl.name;
}

} // namespace fabrik
