// SMTP AUTH password checks for the two kinds of account (mailbox_config.h):
//  - accounts = file: the hashes of the account file, checked in the server process (which
//    read the file while it could). Unknown users cost as much as known ones.
//  - accounts = system: PAM (service "smtp"), which needs root. A helper process is forked
//    before the server gives up root; it does nothing but answer "is this user's password
//    right?", each in a child of its own (PAM may sleep seconds after a failure), over a
//    SOCK_SEQPACKET socket of NUL-separated fields. The network side never holds root.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>

#include "libmail/accounts.h"
#include "libmail/event_loop.h"
#include "mta/smtp_host.h"

namespace mailwright::mta {

class FilePasswordChecker final : public PasswordChecker {
 public:
  explicit FilePasswordChecker(std::unique_ptr<AccountDb> accounts)
      : accounts_(std::move(accounts)) {}
  void check(const std::string& user, const std::string& password, const std::string& peer,
             Done done) override;

 private:
  std::unique_ptr<AccountDb> accounts_;
};

// The helper's end: started as root, before privileges are dropped. Returns the socket of
// the unprivileged side. The helper exits when that socket is closed.
Result<UniqueFd> start_pam_helper(const std::string& service);

class PamPasswordChecker final : public PasswordChecker {
 public:
  PamPasswordChecker(event_base* base, UniqueFd helper);
  void check(const std::string& user, const std::string& password, const std::string& peer,
             Done done) override;

 private:
  static void on_readable(evutil_socket_t fd, short, void* arg);
  UniqueFd helper_;
  Event event_;
  std::uint64_t next_id_ = 1;
  std::map<std::uint64_t, Done> waiting_;
};

}  // namespace mailwright::mta
