#include "actors/delivery.hpp"

namespace fabrik {

// Per part: its seq (8 bytes) and its length (4 bytes), little-endian, then its bytes.
constexpr size_t part_head = 12;

void encode_group_part(const delivery_part& part, std::string& out) {
  char head[part_head];
  for (int i = 0; i < 8; ++i)
    head[i] = static_cast<char>(part.seq >> (8 * i));
  auto n = static_cast<uint32_t>(part.batch.size());
  for (int i = 0; i < 4; ++i)
    head[8 + i] = static_cast<char>(n >> (8 * i));
  out.append(head, sizeof head);
  out.append(part.batch);
}

expected<std::vector<delivery_part>> decode_group(std::string_view in) {
  std::vector<delivery_part> parts;
  auto byte = [&](size_t i) { return static_cast<uint64_t>(static_cast<unsigned char>(in[i])); };
  while (!in.empty()) {
    if (in.size() < part_head)
      return make_error(ec::parse_error, "delivery truncated after "
                                           + std::to_string(parts.size()) + " batch(es)");
    delivery_part part;
    for (int i = 0; i < 8; ++i)
      part.seq |= byte(i) << (8 * i);
    uint64_t n = 0;
    for (int i = 0; i < 4; ++i)
      n |= byte(8 + i) << (8 * i);
    if (in.size() - part_head < n)
      return make_error(ec::parse_error,
                        "delivery truncated in batch " + std::to_string(part.seq));
    part.batch = in.substr(part_head, n);
    parts.push_back(part);
    in.remove_prefix(part_head + n);
  }
  return parts;
}

} // namespace fabrik
