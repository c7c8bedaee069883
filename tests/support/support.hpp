// Helpers shared by the unit tests: a scratch directory, file writing, in-memory zips.
#pragma once

#include <zip.h>

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace fabrik::test_support {

/// A fresh, empty directory under the system temp dir, unique to this process and
/// instance, removed with everything in it by the destructor.
class scratch_dir {
public:
  /// `tag` only names the directory, so a leftover one says which test made it.
  explicit scratch_dir(std::string_view tag = "test");
  ~scratch_dir();
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::filesystem::path& rel) const { return path_ / rel; }

private:
  std::filesystem::path path_;
};

/// Writes `data` to `p` byte for byte, creating the folders on the way.
void write_file(const std::filesystem::path& p, std::string_view data);

/// One entry of a zip: a file, or a directory when `name` ends in '/'.
struct zip_entry {
  std::string name;
  std::string data;
};

/// Called right after an entry is added, with its index: sets compression, attributes,
/// comments and the like.
using zip_entry_hook = std::function<void(zip_t*, zip_uint64_t index, const zip_entry&)>;

/// The bytes of a zip built in memory with libzip, entries in the given order. Fails the
/// current test when libzip refuses.
std::string make_zip(const std::vector<zip_entry>& entries, const zip_entry_hook& hook = {});

/// Bytes from hex text ("01 05 0a", spaces and newlines ignored): protocol examples as
/// the specs print them.
std::string hex(std::string_view text);
/// The other way round, bytes as "01 05 0a", for messages when a comparison fails.
std::string to_hex(std::string_view bytes);

} // namespace fabrik::test_support
