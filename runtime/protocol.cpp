#include "runtime/protocol.hpp"

#include <algorithm>
#include <cstring>

namespace fabrik::worker {

namespace {

void put_u32(std::string& out, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4); // little-endian host (static_assert in the header)
  out.append(b, 4);
}

uint32_t get_u32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

template <class T>
std::string_view as_bytes(const std::vector<T>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)};
}

template <class T>
expected<std::vector<T>> numbers_from(std::string_view bytes, size_t count) {
  if (bytes.size() != count * sizeof(T))
    return make_error(ec::parse_error, "numeric blob of " + std::to_string(bytes.size())
                                         + " bytes does not hold " + std::to_string(count)
                                         + " values");
  std::vector<T> out(count);
  if (count > 0)
    std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

} // namespace

const char* to_string(message_type t) {
  switch (t) {
    case message_type::hello:
      return "hello";
    case message_type::hello_reply:
      return "hello reply";
    case message_type::load:
      return "load";
    case message_type::train:
      return "train";
    case message_type::predict:
      return "predict";
    case message_type::process_input:
      return "process_input";
    case message_type::update_parameters:
      return "update_parameters";
    case message_type::result:
      return "result";
    case message_type::error:
      return "error";
  }
  return "unknown";
}

bool known_message_type(uint8_t t) {
  return t >= static_cast<uint8_t>(message_type::hello)
         && t <= static_cast<uint8_t>(message_type::error);
}

// -- frames ---------------------------------------------------------------------------

expected<std::string_view> message::blob_slice(const nlohmann::json& where) const {
  if (!where.is_object() || !where.contains("offset") || !where.contains("size")
      || !where["offset"].is_number_unsigned() || !where["size"].is_number_unsigned())
    return make_error(ec::parse_error, "blob reference is not {\"offset\", \"size\"}");
  auto off = where["offset"].get<uint64_t>();
  auto size = where["size"].get<uint64_t>();
  auto b = blob();
  if (off > b.size() || size > b.size() - off)
    return make_error(ec::parse_error, "blob reference [" + std::to_string(off) + ", +"
                                         + std::to_string(size) + ") lies outside the "
                                         + std::to_string(b.size()) + "-byte blob");
  return b.substr(off, size);
}

size_t outgoing_message::size() const {
  size_t n = head.size();
  for (auto p : blob_parts)
    n += p.size();
  return n;
}

nlohmann::json message_builder::add_blob(std::string_view bytes) {
  nlohmann::json where = {{"offset", blob_size_}, {"size", bytes.size()}};
  if (!bytes.empty())
    parts_.push_back(bytes);
  blob_size_ += bytes.size();
  return where;
}

expected<outgoing_message> message_builder::build() const {
  auto header = header_.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  auto payload = 4 + header.size() + blob_size_;
  if (payload > max_payload_size)
    return make_error(ec::invalid_argument, std::string{to_string(type_)} + " message of "
                                              + std::to_string(payload)
                                              + " bytes exceeds the protocol's limit of "
                                              + std::to_string(max_payload_size) + " bytes");
  outgoing_message m;
  m.head.reserve(frame_prefix_size + 4 + header.size());
  put_u32(m.head, static_cast<uint32_t>(payload));
  m.head.push_back(static_cast<char>(type_));
  put_u32(m.head, static_cast<uint32_t>(header.size()));
  m.head += header;
  m.blob_parts = parts_;
  return m;
}

expected<std::pair<uint32_t, message_type>> parse_frame_prefix(const unsigned char* prefix) {
  auto size = get_u32(prefix);
  if (!known_message_type(prefix[4]))
    return make_error(ec::parse_error,
                      "unknown message type " + std::to_string(int{prefix[4]}) + " in frame");
  if (size > max_payload_size)
    return make_error(ec::parse_error, "frame of " + std::to_string(size)
                                         + " bytes exceeds the protocol's limit of "
                                         + std::to_string(max_payload_size));
  return std::pair{size, static_cast<message_type>(prefix[4])};
}

expected<message> decode_message(message_type type, std::string payload) {
  if (payload.size() < 4)
    return make_error(ec::parse_error, "payload of " + std::to_string(payload.size())
                                         + " bytes has no header length");
  auto hlen = get_u32(reinterpret_cast<const unsigned char*>(payload.data()));
  if (hlen > payload.size() - 4)
    return make_error(ec::parse_error, "header of " + std::to_string(hlen)
                                         + " bytes does not fit a payload of "
                                         + std::to_string(payload.size()));
  message m;
  m.type = type;
  m.header = nlohmann::json::parse(payload.begin() + 4, payload.begin() + 4 + hlen, nullptr, false);
  if (m.header.is_discarded() || !m.header.is_object())
    return make_error(ec::parse_error, std::string{"header of a "} + to_string(type)
                                         + " message is not a JSON object");
  m.blob_offset = 4 + hlen;
  m.payload = std::move(payload);
  return m;
}

std::string to_bytes(const outgoing_message& m) {
  std::string out;
  out.reserve(m.size());
  out += m.head;
  for (auto p : m.blob_parts)
    out += p;
  return out;
}

// -- data -----------------------------------------------------------------------------

size_t dataset::rows() const {
  auto per_row = columns.size() * std::max<size_t>(window, 1);
  if (per_row == 0) // a workflow of images only
    return image_names.empty() ? 0 : images.size() / image_names.size();
  return values.size() / per_row;
}

expected<void> dataset::check() const {
  auto per_row = columns.size() * std::max<size_t>(window, 1);
  if (per_row == 0 && !values.empty())
    return make_error(ec::invalid_argument, "dataset has values but no columns");
  if (per_row != 0 && values.size() % per_row != 0)
    return make_error(ec::invalid_argument, "dataset holds " + std::to_string(values.size())
                                              + " values, not a multiple of "
                                              + std::to_string(per_row) + " (columns x window)");
  auto n = rows();
  auto count = std::visit(
    [](const auto& v) -> std::optional<size_t> {
      if constexpr (std::is_same_v<std::decay_t<decltype(v)>, std::monostate>)
        return std::nullopt;
      else
        return v.size();
    },
    y);
  if (count && *count != n)
    return make_error(ec::invalid_argument, "dataset has " + std::to_string(n) + " rows but "
                                              + std::to_string(*count) + " labels");
  if (images.size() != n * image_names.size())
    return make_error(ec::invalid_argument, "dataset has " + std::to_string(n) + " rows and "
                                              + std::to_string(image_names.size())
                                              + " image inputs but " + std::to_string(images.size())
                                              + " images");
  return {};
}

nlohmann::json encode_dataset(const dataset& d, message_builder& b) {
  nlohmann::json h = {{"columns", d.columns},
                      {"rows", d.rows()},
                      {"window", d.window},
                      {"values", b.add_blob(as_bytes(d.values))}};
  if (auto* f = std::get_if<std::vector<double>>(&d.y)) {
    auto where = b.add_blob(as_bytes(*f));
    where["type"] = "float64";
    h["labels"] = std::move(where);
  } else if (auto* i = std::get_if<std::vector<int64_t>>(&d.y)) {
    auto where = b.add_blob(as_bytes(*i));
    where["type"] = "int64";
    h["labels"] = std::move(where);
  } else if (auto* s = std::get_if<std::vector<std::string>>(&d.y)) {
    h["labels"] = {{"type", "string"}, {"values", *s}};
  }
  if (!d.image_names.empty()) {
    // Each image is a blob part of its own (a view: the bytes are not copied into the
    // frame) with its geometry in the header; a missing one is null.
    auto frames = nlohmann::json::array();
    for (auto& img : d.images) {
      if (!img.present) {
        frames.push_back(nullptr);
        continue;
      }
      auto where = b.add_blob(img.data);
      where["width"] = img.width;
      where["height"] = img.height;
      where["pixel_format"] = img.pixel_format;
      frames.push_back(std::move(where));
    }
    h["images"] = {{"names", d.image_names}, {"frames", std::move(frames)}};
  }
  return h;
}

expected<dataset> decode_dataset(const nlohmann::json& h, const message& m) {
  try {
    dataset d;
    d.columns = h.at("columns").get<std::vector<std::string>>();
    d.window = h.at("window").get<size_t>();
    auto rows = h.at("rows").get<size_t>();
    auto count = rows * d.columns.size() * std::max<size_t>(d.window, 1);
    auto vals = m.blob_slice(h.at("values"));
    if (!vals)
      return vals.err();
    auto v = numbers_from<double>(*vals, count);
    if (!v)
      return v.err();
    d.values = std::move(*v);
    if (h.contains("labels")) {
      auto& l = h["labels"];
      auto type = l.at("type").get<std::string>();
      if (type == "string") {
        d.y = l.at("values").get<std::vector<std::string>>();
      } else if (type == "float64" || type == "int64") {
        auto bytes = m.blob_slice(l);
        if (!bytes)
          return bytes.err();
        if (type == "float64") {
          auto y = numbers_from<double>(*bytes, rows);
          if (!y)
            return y.err();
          d.y = std::move(*y);
        } else {
          auto y = numbers_from<int64_t>(*bytes, rows);
          if (!y)
            return y.err();
          d.y = std::move(*y);
        }
      } else {
        return make_error(ec::parse_error, "unknown label type " + type);
      }
    }
    if (h.contains("images")) {
      auto& im = h["images"];
      d.image_names = im.at("names").get<std::vector<std::string>>();
      for (auto& f : im.at("frames")) {
        image img;
        if (!f.is_null()) {
          auto bytes = m.blob_slice(f);
          if (!bytes)
            return bytes.err();
          img.data = *bytes;
          img.width = f.at("width").get<int64_t>();
          img.height = f.at("height").get<int64_t>();
          img.pixel_format = f.at("pixel_format").get<std::string>();
          img.present = true;
        }
        d.images.push_back(std::move(img));
      }
    }
    if (auto ok = d.check(); !ok)
      return make_error(ec::parse_error, ok.err().message);
    return d;
  } catch (const nlohmann::json::exception& e) {
    return make_error(ec::parse_error, std::string{"malformed dataset header: "} + e.what());
  }
}

nlohmann::json to_json(const versions& v) {
  auto opt = [](const std::string& s) { return s.empty() ? nlohmann::json{} : nlohmann::json(s); };
  return {{"python", v.python}, {"numpy", opt(v.numpy)}, {"sklearn", opt(v.sklearn)}};
}

versions versions_from_json(const nlohmann::json& j) {
  auto str = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string{};
  };
  return {str("python"), str("numpy"), str("sklearn")};
}

std::optional<std::string> version_conflict(const versions& trained, const versions& running) {
  auto major_minor = [](const std::string& v) {
    auto first = v.find('.');
    if (first == std::string::npos)
      return v;
    auto second = v.find('.', first + 1);
    return v.substr(0, second);
  };
  auto show = [](const std::string& v) { return v.empty() ? std::string{"none"} : v; };
  std::string conflicts;
  auto add = [&](const char* what, const std::string& a, const std::string& b) {
    if (!conflicts.empty())
      conflicts += ", ";
    conflicts += std::string{what} + " " + show(a) + " (this worker: " + show(b) + ")";
  };
  if (major_minor(trained.python) != major_minor(running.python))
    add("Python", trained.python, running.python);
  if (trained.numpy != running.numpy)
    add("numpy", trained.numpy, running.numpy);
  if (trained.sklearn != running.sklearn)
    add("scikit-learn", trained.sklearn, running.sklearn);
  if (conflicts.empty())
    return std::nullopt;
  return "model was trained with " + conflicts;
}

const char* to_string(model_format f) {
  switch (f) {
    case model_format::pickle:
      return "pickle";
    case model_format::bytes:
      return "bytes";
  }
  return "unknown";
}

expected<model_format> parse_model_format(std::string_view s) {
  if (s == "pickle")
    return model_format::pickle;
  if (s == "bytes")
    return model_format::bytes;
  return make_error(ec::parse_error, "unknown model format '" + std::string{s} + "'");
}

} // namespace fabrik::worker
