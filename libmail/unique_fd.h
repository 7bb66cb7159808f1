// UniqueFd: a move-only owner of a file descriptor, and FreeWith<> for C library handles.
#pragma once

#include <unistd.h>

#include <memory>
#include <utility>

namespace mailwright {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  // close(2) reports deferred write errors (NFS, quota); callers that acknowledge data use this.
  int close() { return fd_ >= 0 ? ::close(release()) : 0; }

 private:
  int fd_ = -1;
};

template <auto Fn>
struct FreeWith {
  template <typename T>
  void operator()(T* p) const noexcept {
    Fn(p);
  }
};

}  // namespace mailwright
