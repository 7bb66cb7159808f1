// Mailbox locking that interoperates with other Unix mail software: a dotlock ("PATH.lock",
// made NFS-safe with link(2)) plus an fcntl(2) write lock on the open mailbox, the pair that
// mutt, Dovecot and procmail honour. Every wait is bounded; a dotlock older than
// stale_after is taken to be left by a crashed process and removed.
//
// Order: DotLock::acquire, then open the mailbox, then lock_fcntl. Release in reverse (the
// objects' destructors do it). fcntl locks belong to the process and vanish when any of its
// descriptors for the file is closed: open each mailbox once per process.
#pragma once

#include <chrono>
#include <string>

#include "libmail/result.h"

namespace mailwright {

struct LockPolicy {
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
  std::chrono::seconds stale_after{std::chrono::minutes(5)};
};

class DotLock {
 public:
  // Creates mailbox_path + ".lock". Times out as a temporary error (EX_TEMPFAIL, 4.2.0).
  static Result<DotLock> acquire(const std::string& mailbox_path, const LockPolicy& policy);
  DotLock(DotLock&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  DotLock& operator=(DotLock&&) = delete;
  DotLock(const DotLock&) = delete;
  ~DotLock();
  // Refreshes the lock's mtime so a long holder is not taken for stale.
  void touch() const;

 private:
  explicit DotLock(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Takes an fcntl lock on the whole file (exclusive: F_WRLCK, else F_RDLCK), waiting up to
// timeout. The lock is released by unlock_fcntl or by closing the descriptor.
Status lock_fcntl(int fd, bool exclusive, std::chrono::milliseconds timeout);
void unlock_fcntl(int fd);

}  // namespace mailwright
