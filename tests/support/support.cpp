#include "support.hpp"

#include <catch2/catch.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <system_error>

namespace fs = std::filesystem;

namespace fabrik::test_support {

scratch_dir::scratch_dir(std::string_view tag) {
  // pid and counter say whose it is; mkdtemp makes it unique even against leftovers.
  static std::atomic<int> n{0};
  auto name = "fabrik-" + std::string{tag} + "-" + std::to_string(::getpid()) + "-"
              + std::to_string(n++) + "-XXXXXX";
  std::string tmpl = (fs::temp_directory_path() / name).string();
  if (!::mkdtemp(tmpl.data()))
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
  path_ = tmpl;
}

scratch_dir::~scratch_dir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const fs::path& p, std::string_view data) {
  if (p.has_parent_path())
    fs::create_directories(p.parent_path());
  std::ofstream out{p, std::ios::binary};
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string make_zip(const std::vector<zip_entry>& entries, const zip_entry_hook& hook) {
  zip_error_t e;
  zip_error_init(&e);
  zip_source_t* buf = zip_source_buffer_create(nullptr, 0, 0, &e);
  REQUIRE(buf);
  zip_source_keep(buf); // outlives zip_close, which is where the bytes get written
  zip_t* za = zip_open_from_source(buf, ZIP_TRUNCATE, &e);
  REQUIRE(za);
  for (const auto& f : entries) {
    zip_int64_t i = -1;
    if (f.name.ends_with('/')) {
      i = zip_dir_add(za, f.name.substr(0, f.name.size() - 1).c_str(), 0);
    } else {
      // libzip frees it (last argument 1); +1 so that empty data is not a null pointer.
      void* copy = std::malloc(f.data.size() + 1);
      std::memcpy(copy, f.data.data(), f.data.size());
      zip_source_t* src = zip_source_buffer(za, copy, f.data.size(), 1);
      i = zip_file_add(za, f.name.c_str(), src, 0);
    }
    INFO(zip_strerror(za));
    REQUIRE(i >= 0);
    if (hook)
      hook(za, static_cast<zip_uint64_t>(i), f);
  }
  INFO(zip_strerror(za));
  REQUIRE(zip_close(za) == 0);
  REQUIRE(zip_source_open(buf) == 0);
  zip_stat_t st;
  REQUIRE(zip_source_stat(buf, &st) == 0);
  std::string out(st.size, '\0');
  REQUIRE(zip_source_read(buf, out.data(), st.size) == static_cast<zip_int64_t>(st.size));
  zip_source_close(buf);
  zip_source_free(buf);
  return out;
}

std::string hex(std::string_view text) {
  std::string out;
  int nibbles = 0;
  unsigned byte = 0;
  for (char c : text) {
    if (c == ' ' || c == '\n')
      continue;
    unsigned v = (c >= '0' && c <= '9') ? unsigned(c - '0') : unsigned((c | 0x20) - 'a' + 10);
    byte = byte << 4 | v;
    if (++nibbles == 2) {
      out.push_back(static_cast<char>(byte));
      nibbles = 0;
      byte = 0;
    }
  }
  return out;
}

std::string to_hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    if (!out.empty())
      out.push_back(' ');
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

} // namespace fabrik::test_support
