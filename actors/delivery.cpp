#include "actors/delivery.hpp"

namespace fabrik {

// Per part: its seq (8 bytes) and its length (4 bytes), little-endian, then its bytes.
constexpr size_t part_head = 12;

size_t group_part_size(size_t batch_size) { return part_head + batch_size; }

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
      return make_error(ec::parse_error,
                        "delivery truncated after " + std::to_string(parts.size()) + " batch(es)");
    delivery_part part;
    for (int i = 0; i < 8; ++i)
      part.seq |= byte(i) << (8 * i);
    uint64_t n = 0;
    for (int i = 0; i < 4; ++i)
      n |= byte(8 + i) << (8 * i);
    if (in.size() - part_head < n)
      return make_error(ec::parse_error, "delivery truncated in batch " + std::to_string(part.seq));
    part.batch = in.substr(part_head, n);
    parts.push_back(part);
    in.remove_prefix(part_head + n);
  }
  return parts;
}

std::optional<std::pair<std::string, uint64_t>> origin_filter::parse(const std::string& origin) {
  auto colon = origin.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == origin.size())
    return std::nullopt;
  uint64_t seq = 0;
  for (size_t i = colon + 1; i < origin.size(); ++i) {
    if (origin[i] < '0' || origin[i] > '9' || seq > (UINT64_MAX - 9) / 10)
      return std::nullopt;
    seq = seq * 10 + static_cast<uint64_t>(origin[i] - '0');
  }
  return std::pair{origin.substr(0, colon), seq};
}

uint64_t origin_filter::newest(const std::string& upstream) {
  auto [it, fresh] = newest_.try_emplace(upstream, 0);
  if (fresh && load_)
    it->second = load_(upstream);
  auto p = pending_.find(upstream);
  return p == pending_.end() ? it->second : std::max(it->second, p->second);
}

bool origin_filter::replay(const std::string& origin) {
  auto o = parse(origin);
  if (!o || o->second > newest(o->first))
    return false;
  return refused_.erase(origin) == 0;
}

void origin_filter::take(const std::string& origin) {
  if (auto o = parse(origin)) { // never lower: a refused batch resent comes after newer ones
    pending_[o->first] = std::max(newest(o->first), o->second);
    refused_.erase(origin);
  }
}

std::vector<std::pair<std::string, std::string>> origin_filter::pending_meta() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& [upstream, seq] : pending_)
    out.emplace_back(key(upstream), std::to_string(seq));
  return out;
}

void origin_filter::committed() {
  for (auto& [upstream, seq] : pending_)
    newest_[upstream] = seq;
  pending_.clear();
}

void origin_filter::refused(const std::vector<std::string>& origins) {
  pending_.clear();
  for (auto& o : origins)
    if (parse(o))
      refused_.insert(o);
}

} // namespace fabrik
