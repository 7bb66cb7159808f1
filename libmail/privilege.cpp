#include "libmail/privilege.h"

#include <grp.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace mailwright {

Status drop_privileges(uid_t uid, gid_t gid, const std::vector<gid_t>& groups) {
  if (::geteuid() == 0 || ::getuid() == 0) {
    if (::setgroups(groups.size(), groups.data()) != 0) {
      return Error::from_errno(EX_OSERR, "setgroups", errno);
    }
  }
  if (::setresgid(gid, gid, gid) != 0) return Error::from_errno(EX_OSERR, "setresgid", errno);
  if (::setresuid(uid, uid, uid) != 0) return Error::from_errno(EX_OSERR, "setresuid", errno);
  uid_t ruid = 0, euid = 0, suid = 0;
  gid_t rgid = 0, egid = 0, sgid = 0;
  if (::getresuid(&ruid, &euid, &suid) != 0 || ::getresgid(&rgid, &egid, &sgid) != 0 ||
      ruid != uid || euid != uid || suid != uid || rgid != gid || egid != gid || sgid != gid) {
    return Error::temporary(EX_OSERR, "4.3.0", "privilege drop did not take");
  }
  // A process that could become root again has not dropped anything.
  if (uid != 0 && (::setuid(0) == 0 || ::seteuid(0) == 0)) {
    return Error::temporary(EX_OSERR, "4.3.0", "privilege drop is reversible");
  }
  return {};
}

Result<SwitchedIdentity> SwitchedIdentity::become(uid_t uid, gid_t gid,
                                                  const std::vector<gid_t>& groups) {
  if (::getuid() != 0) return SwitchedIdentity(false);
  if (uid == 0 && gid == ::getegid() && ::geteuid() == 0) return SwitchedIdentity(false);
  if (::setgroups(groups.size(), groups.data()) != 0) {
    return Error::from_errno(EX_OSERR, "setgroups", errno);
  }
  if (::setegid(gid) != 0) return Error::from_errno(EX_OSERR, "setegid", errno);
  if (::seteuid(uid) != 0) {
    int err = errno;
    [[maybe_unused]] int ignored = ::setegid(0);
    return Error::from_errno(EX_OSERR, "seteuid", err);
  }
  return SwitchedIdentity(true);
}

SwitchedIdentity::~SwitchedIdentity() {
  if (!active_) return;
  // Failing to get root back would leave the process acting as the wrong user: a bug, abort.
  if (::seteuid(0) != 0 || ::setegid(0) != 0 || ::setgroups(0, nullptr) != 0) {
    std::fputs("fatal: cannot restore root identity\n", stderr);
    std::abort();
  }
}

}  // namespace mailwright
