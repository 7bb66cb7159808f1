// Checks a system account's password through PAM (service "pop3" for pop3d, "smtp" for the
// mta's AUTH), the way the system's own policy wants: shadow passwords, account expiry,
// lockouts, whatever the admin configured in /etc/pam.d. Needs root (pam_unix reads
// /etc/shadow); blocks, so the caller runs it in a child process.
#pragma once

#include <string>

namespace mailwright {

struct PamResult {
  bool ok = false;
  std::string detail;  // PAM's reason when not ok, for the log
};

PamResult pam_login(const std::string& service, const std::string& user,
                    const std::string& password, const std::string& remote_host);

}  // namespace mailwright
