// Privilege changes: the only way any program of the suite becomes another user.
//
// drop_privileges() is permanent: setgroups, setgid, setuid, then it checks that the ids took
// and, when the target is not root, that getting root back fails. SwitchedIdentity changes only
// the effective ids, for a process that must act for several users in turn (mda in LMTP mode
// run as root); its destructor restores root.
#pragma once

#include <sys/types.h>

#include <vector>

#include "libmail/result.h"

namespace mailwright {

Status drop_privileges(uid_t uid, gid_t gid, const std::vector<gid_t>& groups);

class SwitchedIdentity {
 public:
  // Only for a process whose real uid is root; otherwise nothing is switched.
  static Result<SwitchedIdentity> become(uid_t uid, gid_t gid, const std::vector<gid_t>& groups);
  SwitchedIdentity(SwitchedIdentity&& other) noexcept : active_(other.active_) {
    other.active_ = false;
  }
  SwitchedIdentity& operator=(SwitchedIdentity&&) = delete;
  SwitchedIdentity(const SwitchedIdentity&) = delete;
  ~SwitchedIdentity();

 private:
  explicit SwitchedIdentity(bool active) : active_(active) {}
  bool active_;
};

}  // namespace mailwright
