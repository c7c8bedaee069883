#pragma once
// Errors are values: every fallible function returns fabrik::expected<T>.
// CAF-free on purpose, so pure code (codecs, store, flow loader) compiles fast.

#include <string>
#include <utility>
#include <variant>

namespace fabrik {

/// What went wrong, coarse enough to branch on.
enum class ec {
  invalid_argument, ///< a caller passed something malformed (bad time, bad option)
  parse_error, ///< input bytes could not be decoded (payload, record, YAML)
  not_found, ///< a named thing (stream, kind, file) does not exist
  io_error, ///< the OS or a library refused an operation
  storage_full, ///< LMDB map or disk full; retry after retention or growth
  version_mismatch, ///< an on-disk or on-wire format version we do not speak
  unavailable, ///< a peer (broker, server) cannot be reached right now
  timeout, ///< a peer was reached but did not answer in time
  internal, ///< a bug: an invariant did not hold
};

const char* to_string(ec code);

struct error {
  ec code = ec::internal;
  std::string message;
  std::string what() const { return std::string{to_string(code)} + ": " + message; }
};

inline error make_error(ec code, std::string message) { return error{code, std::move(message)}; }

/// A value or an error; the small subset of C++23 std::expected we need.
template <class T>
class expected {
public:
  expected(T value) : v_(std::move(value)) {}
  expected(error err) : v_(std::move(err)) {}
  explicit operator bool() const { return v_.index() == 0; }
  T& operator*() { return std::get<0>(v_); }
  const T& operator*() const { return std::get<0>(v_); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  const error& err() const { return std::get<1>(v_); }
  T value_or(T fallback) const& { return *this ? **this : std::move(fallback); }

private:
  std::variant<T, error> v_;
};

/// expected<void>: success or an error.
template <>
class expected<void> {
public:
  expected() = default;
  expected(error err) : err_(std::move(err)), ok_(false) {}
  explicit operator bool() const { return ok_; }
  const error& err() const { return err_; }

private:
  error err_;
  bool ok_ = true;
};

} // namespace fabrik
