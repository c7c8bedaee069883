#include "runtime/package.hpp"

#include "core/time.hpp"

#include <yaml-cpp/yaml.h>
#include <zip.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace fabrik {

namespace fs = std::filesystem;

const char* to_string(workflow_kind k) {
  switch (k) {
    case workflow_kind::fabrik:
      return "fabrik";
    case workflow_kind::process_input:
      return "process_input";
  }
  return "unknown";
}

// -- sha256 and utf-8 ------------------------------------------------------------------

namespace {

// FIPS 180-4. Small enough to keep instead of linking libcrypto into every target.
class sha256 {
public:
  void update(const void* data, size_t n) {
    auto p = static_cast<const uint8_t*>(data);
    total_ += n;
    while (n > 0) {
      size_t take = std::min(n, sizeof buf_ - fill_);
      std::memcpy(buf_ + fill_, p, take);
      fill_ += take;
      p += take;
      n -= take;
      if (fill_ == sizeof buf_) {
        block(buf_);
        fill_ = 0;
      }
    }
  }
  void update(std::string_view s) { update(s.data(), s.size()); }

  std::string hex() {
    uint64_t bits = total_ * 8;
    uint8_t pad = 0x80;
    update(&pad, 1);
    uint8_t zero = 0;
    while (fill_ != 56)
      update(&zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i)
      len[i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
    update(len, 8);
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (uint32_t w : h_)
      for (int shift = 28; shift >= 0; shift -= 4)
        out += digits[(w >> shift) & 0xf];
    return out;
  }

private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void block(const uint8_t* p) {
    static constexpr uint32_t k[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
      0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
      0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
      0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
      0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
      0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
      0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
      0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
      0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t{p[4 * i]} << 24 | uint32_t{p[4 * i + 1]} << 16 | uint32_t{p[4 * i + 2]} << 8
             | uint32_t{p[4 * i + 3]};
    for (int i = 16; i < 64; ++i) {
      uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      uint32_t t1 =
        h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h_[0] += a;
    h_[1] += b;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    h_[5] += f;
    h_[6] += g;
    h_[7] += h;
  }

  uint32_t h_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  uint8_t buf_[64] = {};
  size_t fill_ = 0;
  uint64_t total_ = 0;
};

} // namespace

expected<std::string> read_zip_file(const std::filesystem::path& zip) {
  std::error_code err;
  auto size = std::filesystem::file_size(zip, err);
  if (err)
    return make_error(err == std::errc::no_such_file_or_directory ? ec::not_found : ec::io_error,
                      zip.string() + ": " + err.message());
  if (size > max_zip_size)
    return make_error(ec::invalid_argument, zip.string() + ": "
                                              + format_size(static_cast<int64_t>(size))
                                              + " is larger than the limit of "
                                              + format_size(static_cast<int64_t>(max_zip_size)));
  std::ifstream in{zip, std::ios::binary};
  std::string bytes{std::istreambuf_iterator<char>{in}, {}};
  if (!in && !in.eof())
    return make_error(ec::io_error, zip.string() + ": cannot read");
  return bytes;
}

std::string sha256_hex(std::string_view data) {
  sha256 h;
  h.update(data);
  return h.hex();
}

bool valid_utf8(std::string_view data) {
  auto s = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    uint32_t min = 0;
    if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (n - i < len)
      return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

// -- manifest --------------------------------------------------------------------------

const settings_table& manifest_settings() {
  static const settings_table table{{
    {.name = "name",
     .type = setting_type::string,
     .doc = "workflow name: lowercase letters, digits, `-` and `_`, at most 64 characters; "
            "flows refer to it as `package: NAME`",
     .required = true},
    {.name = "version",
     .type = setting_type::string,
     .doc = "version text (letters, digits, `.`, `_`, `+`, `-`), e.g. `1.2.0`, taken as "
            "written (`1.10` stays `1.10`)",
     .required = true},
    {.name = "kind",
     .type = setting_type::choice,
     .default_value = "fabrik",
     .doc = "`fabrik`: train/predict/predict_batch; `process_input`: a Siemens AI Inference "
            "Server entrypoint, predict-only",
     .choices = {"fabrik", "process_input"}},
    {.name = "entry",
     .type = setting_type::string,
     .doc = "the Python module the worker imports (`model` for model.py, `pkg.model` for "
            "pkg/model.py); default `model`, or `entrypoint` for kind process_input"},
    {.name = "description", .type = setting_type::string, .doc = "one line for people"},
    {.name = "inputs",
     .type = setting_type::string_list,
     .doc = "the record fields the workflow reads, in this order; required for kind fabrik"},
    {.name = "images",
     .type = setting_type::string_list,
     .doc = "bytes fields (camera frames) the workflow gets as numpy arrays shaped by the "
            "record's width, height and pixel_format; kind fabrik, samples of one record"},
    {.name = "outputs",
     .type = setting_type::string_list,
     .doc = "the names of the values predict returns"},
    {.name = "label",
     .type = setting_type::string,
     .doc = "the label field for training; required when the entry module defines train()"},
    {.name = "parameters",
     .type = setting_type::object,
     .doc = "map of name to default value (a number, string, boolean or null); passed to "
            "train (and to update_parameters for kind process_input)"},
    {.name = "python", .type = setting_type::string, .doc = "minimum Python version, e.g. `3.11`"},
  }};
  return table;
}

namespace {

using position = yaml_position;

bool all_of_chars(std::string_view s, bool (*ok)(char)) {
  return std::all_of(s.begin(), s.end(), ok);
}

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

bool version_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.'
         || c == '_' || c == '+' || c == '-';
}

bool identifier(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9'))
    return false;
  return all_of_chars(s, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

/// `model`, `pkg.model`: dotted Python identifiers.
bool module_name(std::string_view s) {
  size_t start = 0;
  while (true) {
    auto dot = s.find('.', start);
    if (!identifier(s.substr(start, dot == std::string_view::npos ? dot : dot - start)))
      return false;
    if (dot == std::string_view::npos)
      return true;
    start = dot + 1;
  }
}

/// 3, 3.11, 3.11.2
bool python_version(std::string_view s) {
  int parts = 0;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9')
      ++j;
    if (j == i)
      return false;
    ++parts;
    if (j == s.size())
      break;
    if (s[j] != '.')
      return false;
    i = j + 1;
    if (i == s.size())
      return false;
  }
  return parts >= 1 && parts <= 3;
}

/// A plain YAML scalar as Python's yaml.safe_load would type it (YAML 1.2 core schema:
/// `yes`/`on` stay strings); quoted scalars are always strings.
parameter_value scalar_value(const YAML::Node& v) {
  if (v.IsNull())
    return std::monostate{};
  const std::string& text = v.Scalar();
  if (v.Tag() == "!")
    return text;
  if (text == "true" || text == "True" || text == "TRUE")
    return true;
  if (text == "false" || text == "False" || text == "FALSE")
    return false;
  const char* b = text.data();
  const char* e = b + text.size();
  if (b != e && *b == '+')
    ++b;
  if (b == e)
    return text;
  int64_t i = 0;
  if (auto r = std::from_chars(b, e, i); r.ec == std::errc{} && r.ptr == e)
    return i;
  double d = 0;
  if (auto r = std::from_chars(b, e, d); r.ec == std::errc{} && r.ptr == e && std::isfinite(d))
    return d;
  return text;
}

/// The value node of `key` in the map `root` (first occurrence), for positions.
YAML::Node value_of(const YAML::Node& root, std::string_view key, position* key_pos = nullptr) {
  if (root.IsMap())
    for (auto it = root.begin(); it != root.end(); ++it) {
      const YAML::Node k = it->first;
      if (k.IsScalar() && k.Scalar() == key) {
        if (key_pos)
          *key_pos = where(k);
        return it->second;
      }
    }
  return YAML::Node{YAML::NodeType::Undefined};
}

/// Where to point at for `key`: its value, else the key, else the map.
position place_of(const YAML::Node& root, std::string_view key) {
  position kp;
  auto v = value_of(root, key, &kp);
  if (v.IsDefined() && !v.IsNull()) {
    auto p = where(v);
    if (p.line > 0)
      return p;
  }
  return kp.line > 0 ? kp : where(root);
}

size_t error_count(const std::vector<diagnostic>& diags) {
  return static_cast<size_t>(
    std::count_if(diags.begin(), diags.end(), [](auto& d) { return !d.warning; }));
}

} // namespace

std::optional<workflow_manifest> parse_manifest(std::string_view yaml, const std::string& file,
                                                std::vector<diagnostic>& diags) {
  const size_t errors_before = error_count(diags);
  const size_t first_new = diags.size();
  auto in_file_order = [&] {
    // The table's checks and ours run separately; report in file order, unplaced last.
    std::stable_sort(diags.begin() + static_cast<std::ptrdiff_t>(first_new), diags.end(),
                     [](const diagnostic& a, const diagnostic& b) {
                       auto key = [](const diagnostic& d) {
                         return std::pair{d.line == 0 ? INT32_MAX : d.line, d.column};
                       };
                       return key(a) < key(b);
                     });
  };
  auto error = [&](position p, std::string msg) {
    diags.push_back({file, p.line, p.column, std::move(msg), false});
  };
  YAML::Node root;
  try {
    root = YAML::Load(std::string{yaml});
  } catch (const YAML::Exception& e) {
    error(e.mark.is_null() ? position{} : position{e.mark.line + 1, e.mark.column + 1}, e.msg);
    return std::nullopt;
  }
  workflow_manifest m;
  try {
    auto c = validate_settings(root, manifest_settings(), file, {}, diags, {"parameters"});
    if (error_count(diags) > errors_before && !root.IsMap())
      return std::nullopt;
    auto str = [&](std::string_view key) { return c.has(key) ? c.str(key) : std::string{}; };
    auto list = [&](std::string_view key) {
      return c.has(key) ? c.strings(key) : std::vector<std::string>{};
    };
    m.name = str("name");
    m.version = str("version");
    m.kind = str("kind") == "process_input" ? workflow_kind::process_input : workflow_kind::fabrik;
    m.entry = str("entry");
    m.description = str("description");
    m.inputs = list("inputs");
    m.images = list("images");
    m.outputs = list("outputs");
    m.label = str("label");
    m.python = str("python");

    if (c.has("name") && (m.name.empty() || m.name.size() > 64 || !all_of_chars(m.name, name_char)))
      error(place_of(root, "name"),
            "name '" + m.name + "' must be 1 to 64 lowercase letters, digits, - or _");
    if (c.has("version")
        && (m.version.empty() || m.version.size() > 64 || !all_of_chars(m.version, version_char)))
      error(place_of(root, "version"),
            "version '" + m.version + "' must be 1 to 64 letters, digits, '.', '_', '+' or '-'");
    if (m.entry.empty())
      m.entry = m.kind == workflow_kind::process_input ? "entrypoint" : "model";
    else if (m.entry.ends_with(".py"))
      m.entry.resize(m.entry.size() - 3); // `entrypoint.py`, as Siemens configs write it
    if (!module_name(m.entry))
      error(place_of(root, "entry"), "entry '" + str("entry")
                                       + "' must be a Python module name such as model or "
                                         "pkg.model");
    if (!m.python.empty() && !python_version(m.python))
      error(place_of(root, "python"),
            "python '" + m.python + "' must be a version such as 3.11 or 3.11.2");

    // Field lists: no empty names, no repeats, and the label is not an input.
    for (std::string_view key : {"inputs", "images", "outputs"}) {
      auto node = value_of(root, key);
      const auto& xs = key == "inputs" ? m.inputs : key == "images" ? m.images : m.outputs;
      std::set<std::string> seen;
      for (size_t i = 0; i < xs.size(); ++i) {
        position p = node.IsSequence() && i < node.size() ? where(node[i]) : place_of(root, key);
        if (xs[i].empty())
          error(p, std::string{key} + " must not contain an empty name");
        else if (!seen.insert(xs[i]).second)
          error(p, std::string{key} + " names '" + xs[i] + "' twice");
      }
    }
    if (m.kind == workflow_kind::fabrik && m.inputs.empty() && m.images.empty() && c.has("name"))
      error(value_of(root, "inputs").IsDefined() ? place_of(root, "inputs") : where(root),
            "inputs (or images) must name at least one field for kind fabrik");
    for (auto& name : m.images)
      if (std::find(m.inputs.begin(), m.inputs.end(), name) != m.inputs.end())
        error(place_of(root, "images"), "'" + name + "' is both an input and an image");
    if (!m.images.empty() && m.kind == workflow_kind::process_input)
      error(place_of(root, "images"),
            "images are for kind fabrik; process_input gets JSON values only");
    if (!m.label.empty()) {
      if (m.kind == workflow_kind::process_input)
        error(place_of(root, "label"),
              "label is for training, and kind process_input workflows are predict-only");
      else if (std::find(m.inputs.begin(), m.inputs.end(), m.label) != m.inputs.end()
               || std::find(m.images.begin(), m.images.end(), m.label) != m.images.end())
        error(place_of(root, "label"),
              "label '" + m.label + "' is also an input: the model would see the answer");
    }

    // Parameters: a map of name -> scalar, which the settings table cannot express.
    int seen_parameters = 0;
    if (root.IsMap())
      for (auto it = root.begin(); it != root.end(); ++it) {
        const YAML::Node key = it->first;
        if (!key.IsScalar() || key.Scalar() != "parameters" || ++seen_parameters > 1)
          continue;
        const YAML::Node params = it->second;
        if (params.IsNull())
          continue;
        if (!params.IsMap()) {
          error(where(params),
                "parameters must be a map of name to default value, got " + what_is(params));
          continue;
        }
        for (auto p = params.begin(); p != params.end(); ++p) {
          const YAML::Node pk = p->first;
          const YAML::Node pv = p->second;
          if (!pk.IsScalar() || pk.Scalar().empty()) {
            error(where(pk), "parameter names must be plain text, got " + what_is(pk));
            continue;
          }
          const std::string& name = pk.Scalar();
          if (m.parameters.count(name) > 0) {
            error(where(pk), "duplicate parameter '" + name + "'");
            continue;
          }
          if (!pv.IsNull() && !pv.IsScalar()) {
            error(where(pv), "parameter '" + name
                               + "' must be a number, string, boolean or null, got " + what_is(pv));
            continue;
          }
          m.parameters.emplace(name, scalar_value(pv));
        }
      }
  } catch (const std::exception& e) {
    // yaml-cpp throws on misuse; keep errors as values.
    error(where(root), std::string{"internal error while reading the manifest: "} + e.what());
  }
  in_file_order();
  if (error_count(diags) > errors_before)
    return std::nullopt;
  return m;
}

// -- reading ---------------------------------------------------------------------------

namespace {

struct zip_discarder {
  void operator()(zip_t* z) const {
    if (z)
      zip_discard(z);
  }
};
using zip_ptr = std::unique_ptr<zip_t, zip_discarder>;

struct zip_file_closer {
  void operator()(zip_file_t* f) const {
    if (f)
      zip_fclose(f);
  }
};
using zip_file_ptr = std::unique_ptr<zip_file_t, zip_file_closer>;

/// Where a zip comes from, and how to name it in messages.
struct zip_input {
  const fs::path* path = nullptr; ///< a file, or
  std::string_view bytes; ///< a buffer
  std::string shown; ///< e.g. pcb.zip, as the user wrote it
  std::string file_name; ///< for a Siemens zip's derived name
};

/// Entry names as they may appear in messages: printable, control bytes escaped.
std::string shown_name(std::string_view name) {
  std::string out = "'";
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f || c == '\'') {
      static const char digits[] = "0123456789abcdef";
      out += "\\x";
      out += digits[c >> 4];
      out += digits[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "'";
}

/// Why `name` (a raw entry name) may not be extracted, or nullopt when it is clean.
std::optional<std::string> bad_name(std::string_view name) {
  if (name.empty())
    return "has an empty name";
  if (!valid_utf8(name))
    return "has a name that is not valid UTF-8";
  if (std::any_of(name.begin(), name.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; }))
    return "has control characters in its name";
  if (name.size() > 1024)
    return "has a name longer than 1024 bytes";
  if (name[0] == '/')
    return "is an absolute path";
  if (name.find('\\') != std::string_view::npos)
    return "contains a backslash (a Windows path separator)";
  if (name.size() >= 2 && name[1] == ':'
      && ((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z')))
    return "starts with a drive letter";
  auto path = name.ends_with('/') ? name.substr(0, name.size() - 1) : name;
  size_t start = 0;
  while (true) {
    auto slash = path.find('/', start);
    auto part = path.substr(start, slash == std::string_view::npos ? slash : slash - start);
    if (part.empty())
      return "has an empty path component (//)";
    if (part == "..")
      return "contains a '..' component (it would leave the package)";
    if (part == ".")
      return "contains a '.' component";
    if (part.size() > 255)
      return "has a path component longer than 255 bytes";
    if (slash == std::string_view::npos)
      return std::nullopt;
    start = slash + 1;
  }
}

/// A file or directory entry that passed the directory checks.
struct raw_entry {
  zip_uint64_t index = 0;
  std::string name; ///< without a trailing '/'
  uint64_t size = 0;
  uint64_t comp_size = 0;
};

/// What the content pass reports to an extractor; null members do nothing.
struct content_sink {
  std::function<expected<void>()> start;
  std::function<expected<void>(const std::string&)> directory;
  std::function<expected<void>(const std::string&)> open;
  std::function<expected<void>(std::string_view)> write;
  std::function<expected<void>()> close;
};

error bad_package(const zip_input& in, std::string message) {
  return make_error(ec::parse_error, in.shown + ": " + std::move(message));
}

std::string zip_error_text(int code) {
  zip_error_t e;
  zip_error_init_with_code(&e, code);
  std::string text = zip_error_strerror(&e);
  zip_error_fini(&e);
  return text;
}

expected<zip_ptr> open_zip(const zip_input& in, int flags, int* zip_code = nullptr) {
  int code = 0;
  zip_t* za = nullptr;
  if (in.path) {
    // zip_open would block on a FIFO and says little about a missing file.
    std::error_code err;
    auto st = fs::status(*in.path, err);
    if (err || !fs::exists(st))
      return make_error(ec::not_found,
                        "cannot open " + in.shown + ": " + (err ? err.message() : "no such file"));
    if (!fs::is_regular_file(st))
      return make_error(ec::invalid_argument, in.shown + " is not a regular file");
    if (fs::file_size(*in.path, err) == 0 && !err)
      return bad_package(in, "not a zip file (it is empty)");
    za = zip_open(in.path->c_str(), flags, &code);
  } else {
    if (in.bytes.empty())
      return bad_package(in, "not a zip file (it is empty)");
    zip_error_t e;
    zip_error_init(&e);
    zip_source_t* src = zip_source_buffer_create(in.bytes.data(), in.bytes.size(), 0, &e);
    if (src) {
      za = zip_open_from_source(src, flags, &e);
      if (!za)
        zip_source_free(src);
    }
    code = zip_error_code_zip(&e);
    zip_error_fini(&e);
  }
  if (za)
    return zip_ptr{za};
  if (zip_code)
    *zip_code = code;
  switch (code) {
    case ZIP_ER_NOZIP:
      return bad_package(in, "not a zip file");
    case ZIP_ER_INCONS:
      return bad_package(in, "the zip is inconsistent: its central directory and local "
                             "headers disagree (damaged or crafted)");
    case ZIP_ER_EXISTS:
      return bad_package(in, "the zip has duplicate entry names");
    case ZIP_ER_MEMORY:
    case ZIP_ER_OPEN:
    case ZIP_ER_READ:
    case ZIP_ER_SEEK:
      return make_error(ec::io_error, "cannot read " + in.shown + ": " + zip_error_text(code));
    default:
      return bad_package(in, "cannot read the zip: " + zip_error_text(code));
  }
}

/// workflow name from a zip's file name: `My Model v2.zip` -> `my-model-v2`.
std::string derived_name(std::string_view file_name) {
  auto stem = fs::path{std::string{file_name}}.filename().string();
  if (stem.size() > 4 && (stem.ends_with(".zip") || stem.ends_with(".ZIP")))
    stem.resize(stem.size() - 4);
  std::string out;
  for (char c : stem) {
    char l = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if (name_char(l))
      out += l;
    else if (!out.empty() && out.back() != '-')
      out += '-';
  }
  while (!out.empty() && out.back() == '-')
    out.pop_back();
  if (out.size() > 64)
    out.resize(64);
  return out;
}

/// True when `source` defines `name` at the top level (`def train(`). A cheap textual
/// check: the worker checks what the module really defines when it imports it.
bool defines_function(std::string_view source, std::string_view name) {
  size_t pos = 0;
  while (pos <= source.size()) {
    auto nl = source.find('\n', pos);
    auto line = source.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
    if (line.starts_with("def ")) {
      auto rest = line.substr(4);
      while (!rest.empty() && rest.front() == ' ')
        rest.remove_prefix(1);
      if (rest.starts_with(name)) {
        rest.remove_prefix(name.size());
        while (!rest.empty() && rest.front() == ' ')
          rest.remove_prefix(1);
        if (rest.starts_with('('))
          return true;
      }
    }
    if (nl == std::string_view::npos)
      break;
    pos = nl + 1;
  }
  return false;
}

constexpr int64_t max_manifest_size = 1 << 20;

const char* file_type_name(unsigned type) {
  switch (type) {
    case S_IFDIR:
      return "directory";
    case S_IFCHR:
      return "character device";
    case S_IFBLK:
      return "block device";
    case S_IFIFO:
      return "FIFO";
    case S_IFSOCK:
      return "socket";
    default:
      return "unknown";
  }
}

class package_reader {
public:
  package_reader(const zip_input& in, const package_limits& limits, content_sink* sink)
    : in_(in), limits_(limits), sink_(sink) {}

  expected<package_info> run();

private:
  expected<void> scan_directory();
  expected<void> read_entry(const raw_entry& e,
                            const std::function<expected<void>(std::string_view)>& consume);
  expected<void> load_manifest();

  template <class... Ts>
  error bad(Ts&&... parts) {
    std::string msg;
    ((msg += parts), ...);
    return bad_package(in_, std::move(msg));
  }

  const zip_input& in_;
  const package_limits& limits_;
  content_sink* sink_;
  zip_ptr za_;
  std::vector<raw_entry> files_; ///< sorted by name
  std::vector<std::string> dirs_;
  uint64_t counted_ = 0; ///< bytes actually decompressed so far
  package_info info_;
};

expected<void> package_reader::scan_directory() {
  zip_int64_t n = zip_get_num_entries(za_.get(), 0);
  if (n < 0)
    return bad("cannot list the zip's entries");
  if (static_cast<uint64_t>(n) > limits_.max_entries)
    return bad("has ", std::to_string(n), " entries, more than the limit of ",
               std::to_string(limits_.max_entries));
  std::set<std::string, std::less<>> names;
  uint64_t declared_total = 0;
  for (zip_uint64_t i = 0; i < static_cast<zip_uint64_t>(n); ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    // Raw names: what the bytes say, not libzip's guess at a code page.
    if (zip_stat_index(za_.get(), i, ZIP_FL_ENC_RAW, &st) != 0 || !st.name)
      return bad("cannot read entry ", std::to_string(i), ": ", zip_strerror(za_.get()));
    std::string raw = st.name;
    const std::string shown = "entry " + shown_name(raw);
    if (auto why = bad_name(raw))
      return bad(shown, " ", *why);
    if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE)
      return bad(shown, " is encrypted; packages must not be");
    bool dir = raw.ends_with('/');
    zip_uint8_t opsys = 0;
    zip_uint32_t attributes = 0;
    if (zip_file_get_external_attributes(za_.get(), i, 0, &opsys, &attributes) != 0)
      return bad(shown, ": cannot read its attributes");
    // Unix file types live in the high 16 bits; 0 there means "not recorded".
    if (opsys == ZIP_OPSYS_UNIX || opsys == ZIP_OPSYS_OS_X) {
      auto type = (attributes >> 16) & S_IFMT;
      if (type == S_IFLNK)
        return bad(shown, " is a symbolic link; packages hold regular files only");
      if (type != 0 && type != S_IFREG && !(type == S_IFDIR && dir))
        return bad(shown, " is not a regular file or directory (Unix file type ",
                   file_type_name(type), ")");
    }
    std::string name = dir ? raw.substr(0, raw.size() - 1) : raw;
    if (!names.insert(name).second)
      return bad(shown, " appears twice");
    if (dir) {
      if (st.size != 0)
        return bad(shown, " is a directory but holds data");
      dirs_.push_back(std::move(name));
      continue;
    }
    if (!zip_compression_method_supported(st.comp_method, 0))
      return bad(shown, " uses compression method ", std::to_string(st.comp_method),
                 ", which fabrik cannot read");
    declared_total += st.size;
    if (declared_total > limits_.max_unpacked)
      return bad("unpacks to more than the limit of ",
                 format_size(static_cast<int64_t>(limits_.max_unpacked)), " (at ", shown, ")");
    if (st.size > limits_.ratio_floor
        && st.size / std::max<uint64_t>(st.comp_size, 1) > limits_.max_ratio)
      return bad(shown, " has a compression ratio of ",
                 std::to_string(st.size / std::max<uint64_t>(st.comp_size, 1)),
                 ":1, over the limit of ", std::to_string(limits_.max_ratio), ":1 (a zip bomb?)");
    files_.push_back({i, std::move(name), st.size, st.comp_size});
  }
  std::sort(files_.begin(), files_.end(),
            [](const raw_entry& a, const raw_entry& b) { return a.name < b.name; });
  std::sort(dirs_.begin(), dirs_.end());
  // A file may not also be a directory (`a` and `a/b`): extraction could not make both.
  std::set<std::string, std::less<>> parents(dirs_.begin(), dirs_.end());
  for (const auto& f : files_)
    for (auto slash = f.name.find('/'); slash != std::string::npos;
         slash = f.name.find('/', slash + 1))
      parents.insert(f.name.substr(0, slash));
  for (const auto& f : files_)
    if (parents.count(f.name) > 0)
      return bad("entry ", shown_name(f.name),
                 " is a file, but other entries use it as a "
                 "directory");
  return {};
}

expected<void>
package_reader::read_entry(const raw_entry& e,
                           const std::function<expected<void>(std::string_view)>& consume) {
  zip_file_ptr f{zip_fopen_index(za_.get(), e.index, 0)};
  if (!f)
    return bad("entry ", shown_name(e.name), ": cannot open it: ", zip_strerror(za_.get()));
  std::array<char, 64 * 1024> buf;
  uint64_t count = 0;
  while (true) {
    zip_int64_t got = zip_fread(f.get(), buf.data(), buf.size());
    if (got < 0)
      return bad("entry ", shown_name(e.name),
                 ": cannot decompress it: ", zip_error_strerror(zip_file_get_error(f.get())));
    if (got == 0)
      break;
    count += static_cast<uint64_t>(got);
    counted_ += static_cast<uint64_t>(got);
    // The header's size is a claim: stop as soon as the data exceeds it. This also bounds
    // the real compression ratio by the declared one checked before.
    if (count > e.size)
      return bad("entry ", shown_name(e.name), " holds more data than the ", std::to_string(e.size),
                 " bytes its header declares");
    if (counted_ > limits_.max_unpacked)
      return bad("unpacks to more than the limit of ",
                 format_size(static_cast<int64_t>(limits_.max_unpacked)));
    if (auto r = consume(std::string_view{buf.data(), static_cast<size_t>(got)}); !r)
      return r;
  }
  if (count != e.size)
    return bad("entry ", shown_name(e.name), " holds ", std::to_string(count), " bytes, not the ",
               std::to_string(e.size), " its header declares");
  return {};
}

expected<void> package_reader::load_manifest() {
  auto find_file = [&](std::string_view name) -> const raw_entry* {
    for (const auto& f : files_)
      if (f.name == name)
        return &f;
    return nullptr;
  };
  auto has_file = [&](std::string_view name) { return find_file(name) != nullptr; };
  auto& m = info_.manifest;
  if (auto mf = find_file(manifest_file_name)) {
    if (mf->size > static_cast<uint64_t>(max_manifest_size))
      return bad(std::string{manifest_file_name}, " is larger than ",
                 format_size(max_manifest_size));
    std::string text;
    if (auto r = read_entry(*mf,
                            [&](std::string_view chunk) -> expected<void> {
                              text += chunk;
                              return {};
                            });
        !r)
      return r;
    counted_ -= mf->size; // counted again in the content pass
    const std::string file = in_.shown + "!" + std::string{manifest_file_name};
    std::vector<diagnostic> diags;
    auto parsed = parse_manifest(text, file, diags);
    if (!parsed) {
      std::string msg;
      for (const auto& d : diags) {
        if (d.warning)
          continue;
        if (!msg.empty())
          msg += '\n';
        msg += d.to_string();
      }
      return make_error(ec::parse_error, msg);
    }
    m = std::move(*parsed);
  } else if (has_file("entrypoint.py")) {
    // A Siemens AI Inference Server package: no manifest, values derived (version later,
    // from the content hash).
    m.from_manifest = false;
    m.kind = workflow_kind::process_input;
    m.entry = "entrypoint";
    m.name = derived_name(in_.file_name.empty() ? in_.shown : in_.file_name);
    if (m.name.empty())
      return bad("has no ", std::string{manifest_file_name},
                 ", and no workflow name can be made from its file name; add a manifest");
  } else {
    // A zipped folder instead of its contents is the usual mistake: say so.
    for (const auto& f : files_) {
      auto slash = f.name.rfind('/');
      if (slash != std::string::npos
          && (f.name.substr(slash + 1) == manifest_file_name
              || f.name.substr(slash + 1) == "entrypoint.py"))
        return bad("has ", shown_name(f.name),
                   " but nothing at the zip root; zip the contents "
                   "of ",
                   shown_name(f.name.substr(0, slash)),
                   ", not the folder (fabrik package DIR does this)");
    }
    return bad("is not a workflow package: no ", std::string{manifest_file_name},
               " at the zip root (nor an entrypoint.py, for a Siemens AI Inference Server "
               "package)");
  }
  // The entry module: pkg.model is pkg/model.py or pkg/model/__init__.py.
  std::string base = m.entry;
  std::replace(base.begin(), base.end(), '.', '/');
  if (has_file(base + ".py"))
    info_.entry_file = base + ".py";
  else if (has_file(base + "/__init__.py"))
    info_.entry_file = base + "/__init__.py";
  else
    return bad("entry module '", m.entry, "' is missing: no ", base, ".py in the package");
  for (const auto& f : files_)
    if (f.name == "lib")
      return bad("entry 'lib' must be a directory: lib/ holds vendored Python libraries");
  return {};
}

expected<package_info> package_reader::run() {
  // ZIP_CHECKCONS also compares local headers with the central directory; it refuses
  // duplicate names without saying which, so look again without it to name the entry.
  int code = 0;
  auto za = open_zip(in_, ZIP_RDONLY | ZIP_CHECKCONS, &code);
  if (!za && code == ZIP_ER_EXISTS)
    if (auto plain = open_zip(in_, ZIP_RDONLY)) {
      za_ = std::move(*plain);
      if (auto r = scan_directory(); !r)
        return r.err();
    }
  if (!za)
    return za.err();
  za_ = std::move(*za);
  if (auto r = scan_directory(); !r)
    return r.err();
  if (auto r = load_manifest(); !r)
    return r.err();

  if (sink_ && sink_->start)
    if (auto r = sink_->start(); !r)
      return r.err();
  if (sink_ && sink_->directory)
    for (const auto& d : dirs_)
      if (auto r = sink_->directory(d); !r)
        return r.err();
  // Content pass, in name order so the hash streams: see package_info::sha256.
  sha256 hash;
  std::string entry_source;
  for (const auto& f : files_) {
    hash.update(f.name);
    uint8_t header[9] = {0};
    for (int i = 0; i < 8; ++i)
      header[1 + i] = static_cast<uint8_t>(f.size >> (56 - 8 * i));
    hash.update(header, sizeof header);
    const bool is_entry = f.name == info_.entry_file;
    if (sink_ && sink_->open)
      if (auto r = sink_->open(f.name); !r)
        return r.err();
    auto r = read_entry(f, [&](std::string_view chunk) -> expected<void> {
      hash.update(chunk);
      if (is_entry)
        entry_source += chunk;
      if (sink_ && sink_->write)
        return sink_->write(chunk);
      return {};
    });
    if (!r)
      return r.err();
    if (sink_ && sink_->close)
      if (auto c = sink_->close(); !c)
        return c.err();
    info_.entries.push_back({f.name, f.size});
    info_.unpacked_size += f.size;
  }
  info_.sha256 = hash.hex();

  auto& m = info_.manifest;
  if (!valid_utf8(entry_source))
    return bad("entry module ", info_.entry_file, " is not valid UTF-8 text");
  if (m.kind == workflow_kind::fabrik && m.label.empty() && defines_function(entry_source, "train"))
    return make_error(ec::parse_error, in_.shown + "!" + std::string{manifest_file_name}
                                         + ": label is required: " + info_.entry_file
                                         + " defines train()");
  if (!m.from_manifest)
    m.version = info_.sha256.substr(0, 12);
  return std::move(info_);
}

// -- extraction ------------------------------------------------------------------------

error os_error(const std::string& what) {
  return make_error(ec::io_error, what + ": " + std::strerror(errno));
}

/// Writes a package below `dest` without ever following a link: every directory is
/// opened with O_NOFOLLOW relative to its parent, every file created with O_EXCL.
class extractor {
public:
  explicit extractor(fs::path dest) : dest_(std::move(dest)) {}
  extractor(const extractor&) = delete;
  extractor& operator=(const extractor&) = delete;
  ~extractor() {
    close_fd(file_);
    close_fd(root_);
  }

  content_sink sink() {
    return {
      .start = [this] { return start(); },
      .directory = [this](const std::string& name) { return make_dirs(name, true); },
      .open = [this](const std::string& name) { return open(name); },
      .write = [this](std::string_view chunk) { return write(chunk); },
      .close = [this] { return close(); },
    };
  }

  /// Removes what was written (and `dest` if this extractor created it).
  void rollback() {
    close_fd(file_);
    close_fd(root_);
    std::error_code err;
    if (created_) {
      fs::remove_all(dest_, err);
      return;
    }
    if (!started_)
      return;
    // remove_all removes links themselves, never what they point at.
    for (auto it = fs::directory_iterator(dest_, err); !err && it != fs::directory_iterator();
         it.increment(err))
      fs::remove_all(it->path(), err);
  }

private:
  static void close_fd(int& fd) {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }

  expected<void> start() {
    std::error_code err;
    if (dest_.has_parent_path())
      fs::create_directories(dest_.parent_path(), err);
    if (::mkdir(dest_.c_str(), 0700) == 0) {
      created_ = true;
    } else if (errno == EEXIST) {
      struct stat st;
      if (::lstat(dest_.c_str(), &st) != 0)
        return os_error("cannot inspect " + dest_.string());
      if (!S_ISDIR(st.st_mode))
        return make_error(ec::invalid_argument,
                          "cannot extract into " + dest_.string() + ": not a directory");
      if (!fs::is_empty(dest_, err) || err)
        return make_error(ec::invalid_argument,
                          "cannot extract into " + dest_.string() + ": not empty");
    } else {
      return os_error("cannot create " + dest_.string());
    }
    started_ = true;
    root_ = ::open(dest_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root_ < 0)
      return os_error("cannot open " + dest_.string());
    return {};
  }

  /// Opens (creating as needed) the directories of `name`: all of its components when
  /// `whole`, else all but the last. Returns a descriptor in `out`, or the root's copy.
  expected<void> make_dirs(const std::string& name, bool whole, int* out = nullptr) {
    int fd = ::dup(root_);
    if (fd < 0)
      return os_error("cannot open " + dest_.string());
    size_t start = 0;
    while (true) {
      auto slash = name.find('/', start);
      if (slash == std::string::npos && !whole)
        break;
      auto part = name.substr(start, slash == std::string::npos ? slash : slash - start);
      if (::mkdirat(fd, part.c_str(), 0700) != 0 && errno != EEXIST) {
        auto e = os_error("cannot create " + (dest_ / name.substr(0, slash)).string());
        ::close(fd);
        return e;
      }
      int next = ::openat(fd, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      ::close(fd);
      if (next < 0)
        return os_error("cannot open " + (dest_ / name.substr(0, slash)).string());
      fd = next;
      if (slash == std::string::npos)
        break;
      start = slash + 1;
    }
    if (out)
      *out = fd;
    else
      ::close(fd);
    return {};
  }

  expected<void> open(const std::string& name) {
    int dir = -1;
    if (auto r = make_dirs(name, false, &dir); !r)
      return r;
    auto slash = name.rfind('/');
    auto leaf = slash == std::string::npos ? name : name.substr(slash + 1);
    file_ = ::openat(dir, leaf.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    ::close(dir);
    if (file_ < 0)
      return os_error("cannot create " + (dest_ / name).string());
    current_ = name;
    return {};
  }

  expected<void> write(std::string_view chunk) {
    while (!chunk.empty()) {
      auto n = ::write(file_, chunk.data(), chunk.size());
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return os_error("cannot write " + (dest_ / current_).string());
      chunk.remove_prefix(static_cast<size_t>(n));
    }
    return {};
  }

  expected<void> close() {
    int fd = file_;
    file_ = -1;
    if (::close(fd) != 0)
      return os_error("cannot write " + (dest_ / current_).string());
    return {};
  }

  fs::path dest_;
  int root_ = -1;
  int file_ = -1;
  std::string current_;
  bool created_ = false;
  bool started_ = false;
};

expected<package_info> extract(const zip_input& in, const fs::path& dest,
                               const package_limits& limits) {
  extractor x{dest};
  auto sink = x.sink();
  auto info = package_reader{in, limits, &sink}.run();
  if (!info)
    x.rollback();
  return info;
}

zip_input file_input(const fs::path& zip) {
  return {.path = &zip, .bytes = {}, .shown = zip.string(), .file_name = zip.filename().string()};
}

zip_input bytes_input(std::string_view bytes, const std::string& name) {
  return {.bytes = bytes, .shown = name, .file_name = name};
}

} // namespace

expected<package_info> read_package(const fs::path& zip, const package_limits& limits) {
  auto in = file_input(zip);
  return package_reader{in, limits, nullptr}.run();
}

expected<package_info> read_package_bytes(std::string_view bytes, const std::string& name,
                                          const package_limits& limits) {
  auto in = bytes_input(bytes, name);
  return package_reader{in, limits, nullptr}.run();
}

expected<package_info> extract_package(const fs::path& zip, const fs::path& dest,
                                       const package_limits& limits) {
  return extract(file_input(zip), dest, limits);
}

expected<package_info> extract_package_bytes(std::string_view bytes, const std::string& name,
                                             const fs::path& dest, const package_limits& limits) {
  return extract(bytes_input(bytes, name), dest, limits);
}

// -- building --------------------------------------------------------------------------

namespace {

bool skipped_in_package(const fs::path& p, bool directory) {
  auto name = p.filename().string();
  if (name == ".git")
    return true;
  if (directory)
    return name == "__pycache__";
  return name.ends_with(".pyc") || name.ends_with(".pyo");
}

/// 1980-01-01 00:00 local time: libzip stores DOS times in local time, so this is the
/// time_t that gives the same bytes in every time zone.
time_t fixed_mtime() {
  std::tm tm{};
  tm.tm_year = 80;
  tm.tm_mon = 0;
  tm.tm_mday = 1;
  tm.tm_isdst = -1;
  return std::mktime(&tm);
}

} // namespace

expected<package_info> build_package(const fs::path& dir, const fs::path& out,
                                     const package_limits& limits) {
  std::error_code err;
  if (!fs::is_directory(dir, err))
    return make_error(ec::not_found, dir.string() + " is not a directory");
  // Collect the regular files; refuse anything else rather than zip a surprise.
  const auto out_abs = fs::weakly_canonical(fs::absolute(out, err), err);
  std::vector<std::pair<std::string, fs::path>> files; // zip name, source path
  uint64_t total = 0;
  fs::recursive_directory_iterator it{dir, fs::directory_options::none, err};
  if (err)
    return make_error(ec::io_error, "cannot list " + dir.string() + ": " + err.message());
  for (; it != fs::recursive_directory_iterator(); it.increment(err)) {
    if (err)
      return make_error(ec::io_error, "cannot list " + dir.string() + ": " + err.message());
    const auto& p = it->path();
    auto st = it->symlink_status(err);
    if (err)
      return make_error(ec::io_error, "cannot inspect " + p.string() + ": " + err.message());
    if (fs::is_directory(st)) {
      if (skipped_in_package(p, true))
        it.disable_recursion_pending();
      continue;
    }
    if (skipped_in_package(p, false))
      continue;
    if (fs::is_symlink(st))
      return make_error(ec::invalid_argument,
                        p.string() + " is a symbolic link; packages hold regular files only");
    if (!fs::is_regular_file(st))
      return make_error(ec::invalid_argument, p.string() + " is not a regular file");
    if (fs::weakly_canonical(fs::absolute(p, err), err) == out_abs)
      continue;
    auto name = fs::relative(p, dir, err).generic_string();
    if (auto why = bad_name(name))
      return make_error(ec::invalid_argument, p.string() + " cannot go in a package: it " + *why);
    total += fs::file_size(p, err);
    files.emplace_back(std::move(name), p);
  }
  std::sort(files.begin(), files.end());
  if (files.size() > limits.max_entries)
    return make_error(ec::invalid_argument, dir.string() + " has " + std::to_string(files.size())
                                              + " files, more than the limit of "
                                              + std::to_string(limits.max_entries));
  if (total > limits.max_unpacked)
    return make_error(ec::invalid_argument,
                      dir.string() + " holds more than the limit of "
                        + format_size(static_cast<int64_t>(limits.max_unpacked)));

  // The manifest first, with positions in the source file.
  auto has = [&](const std::string& name) {
    return std::any_of(files.begin(), files.end(), [&](auto& f) { return f.first == name; });
  };
  const std::string manifest_name{manifest_file_name};
  if (has(manifest_name)) {
    const auto file = dir / manifest_name;
    std::ifstream in{file, std::ios::binary};
    std::string text{std::istreambuf_iterator<char>{in}, {}};
    std::vector<diagnostic> diags;
    auto m = parse_manifest(text, file.string(), diags);
    if (!m) {
      std::string msg;
      for (const auto& d : diags)
        if (!d.warning)
          msg += (msg.empty() ? "" : "\n") + d.to_string();
      return make_error(ec::parse_error, msg);
    }
    std::string base = m->entry;
    std::replace(base.begin(), base.end(), '.', '/');
    if (!has(base + ".py") && !has(base + "/__init__.py"))
      return make_error(ec::parse_error, file.string() + ": entry module '" + m->entry
                                           + "' is missing: no " + base + ".py in " + dir.string());
  } else if (!has("entrypoint.py")) {
    return make_error(ec::parse_error, dir.string() + " has no " + manifest_name
                                         + " (nor an entrypoint.py, for a Siemens AI "
                                           "Inference Server package)");
  }

  // Write beside `out` and rename only a valid result over it.
  const fs::path tmp = out.string() + ".tmp";
  int code = 0;
  zip_ptr za{zip_open(tmp.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &code)};
  if (!za)
    return make_error(ec::io_error, "cannot create " + tmp.string() + ": " + zip_error_text(code));
  const time_t mtime = fixed_mtime();
  for (const auto& [name, path] : files) {
    zip_source_t* src = zip_source_file(za.get(), path.c_str(), 0, -1);
    zip_int64_t i = src ? zip_file_add(za.get(), name.c_str(), src, ZIP_FL_ENC_UTF_8) : -1;
    if (i < 0) {
      if (src)
        zip_source_free(src);
      return make_error(ec::io_error,
                        "cannot add " + path.string() + ": " + zip_strerror(za.get()));
    }
    // Fixed metadata: the same sources give the same bytes.
    if (zip_file_set_mtime(za.get(), static_cast<zip_uint64_t>(i), mtime, 0) != 0
        || zip_file_set_external_attributes(za.get(), static_cast<zip_uint64_t>(i), 0,
                                            ZIP_OPSYS_UNIX, (S_IFREG | 0644u) << 16)
             != 0
        || zip_set_file_compression(za.get(), static_cast<zip_uint64_t>(i), ZIP_CM_DEFLATE, 9) != 0)
      return make_error(ec::internal,
                        "cannot set metadata of " + name + ": " + zip_strerror(za.get()));
  }
  if (zip_close(za.get()) != 0) {
    auto msg = "cannot write " + tmp.string() + ": " + std::string{zip_strerror(za.get())};
    return make_error(ec::io_error, msg);
  }
  za.release(); // zip_close freed it
  const std::string shown = out.string();
  zip_input in{.path = &tmp, .bytes = {}, .shown = shown, .file_name = out.filename().string()};
  auto info = package_reader{in, limits, nullptr}.run();
  if (!info) {
    fs::remove(tmp, err);
    return info;
  }
  fs::rename(tmp, out, err);
  if (err) {
    fs::remove(tmp, err);
    return make_error(ec::io_error, "cannot write " + out.string() + ": " + err.message());
  }
  return info;
}

} // namespace fabrik
