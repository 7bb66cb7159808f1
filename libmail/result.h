// Result<T> and Error: how anything a peer, a user or the disk can cause is reported.
//
// An Error knows whether it is temporary or permanent and carries a sysexits(3) code, an
// RFC 3463 enhanced status code and a human text, so the same object becomes an SMTP or LMTP
// reply, a POP3 -ERR, an exit code or a log line. Errors are values: no exceptions cross
// module boundaries. Result<T> holds either a T or an Error (C++20 on g++ 12 has no
// std::expected).
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace mailwright {

class Error {
 public:
  // status is an RFC 3463 code such as "4.3.0"; its first digit must agree with temporary.
  static Error temporary(int exit_code, std::string_view status, std::string text) {
    return Error(true, exit_code, status, std::move(text));
  }
  static Error permanent(int exit_code, std::string_view status, std::string text) {
    return Error(false, exit_code, status, std::move(text));
  }
  // An error from a failed system call: temporary, with strerror(err) appended to what.
  static Error from_errno(int exit_code, std::string_view what, int err);
  // Builds the error that a sysexits code stands for (see exit_status.h).
  static Error from_exit_code(int exit_code, std::string text);

  bool is_temporary() const { return temporary_; }
  int exit_code() const { return exit_code_; }
  const std::string& status() const { return status_; }
  const std::string& text() const { return text_; }

  // The same failure, with context put in front of the text ("/var/mail/joe: " + text).
  Error with_context(std::string_view context) const;
  // "4.3.0 text", as an SMTP or LMTP reply line wants it after the code.
  std::string status_text() const { return status_ + " " + text_; }

 private:
  Error(bool temporary, int exit_code, std::string_view status, std::string text)
      : temporary_(temporary), exit_code_(exit_code), status_(status), text_(std::move(text)) {}

  bool temporary_;
  int exit_code_;
  std::string status_;
  std::string text_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit on purpose
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  explicit operator bool() const { return v_.index() == 0; }
  bool ok() const { return v_.index() == 0; }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit on purpose

  explicit operator bool() const { return ok_; }
  bool ok() const { return ok_; }
  const Error& error() const {
    assert(!ok_);
    return error_;
  }

 private:
  Error error_ = Error::temporary(0, "2.0.0", "");
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace mailwright
