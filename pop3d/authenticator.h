// Logging in: checks a user's credentials and, when they are right, opens their maildrop.
//
// VirtualAuthenticator serves the users of an account file (accounts = file): the whole
// server runs as the one Unix user that owns their mailboxes, so a login needs no privilege.
// Unknown users cost as much time as known ones and get the same answer.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "libmail/accounts.h"
#include "libmail/mailbox_config.h"
#include "libmail/unique_fd.h"
#include "pop3d/maildrop.h"
#include "pop3d/pop3_session.h"

namespace mailwright::pop3 {

struct LoginRequest {
  std::string user;
  std::string password;
  std::string apop_banner;  // with apop_digest, for APOP (then password is empty)
  std::string apop_digest;
  std::string peer;         // client address, for PAM and logs
};

struct LoginOutcome {
  AuthOutcome outcome = AuthOutcome::kBadCredentials;
  // The maildrop, when the session goes on in this process (virtual accounts)...
  std::unique_ptr<Maildrop> maildrop;
  // ...or a socket to the session process running as the user (system accounts), which
  // sends the reply to PASS itself and serves the rest of the session.
  UniqueFd session_socket;
  std::string detail;  // for the log: why it failed
};

class Authenticator {
 public:
  using Done = std::function<void(LoginOutcome)>;
  virtual ~Authenticator() = default;
  // Checks the request and calls done with the outcome, now or later from the event loop.
  virtual void login(LoginRequest request, Done done) = 0;
  virtual bool apop_enabled() const = 0;
};

class VirtualAuthenticator final : public Authenticator {
 public:
  static Result<std::unique_ptr<VirtualAuthenticator>> create(const MailboxSettings& settings,
                                                               const std::string& apop_secrets);
  void login(LoginRequest request, Done done) override;
  LoginOutcome check(const LoginRequest& request);
  bool apop_enabled() const override { return !secrets_.empty(); }

 private:
  VirtualAuthenticator(MailboxSettings settings, std::unique_ptr<AccountDb> accounts)
      : settings_(std::move(settings)), accounts_(std::move(accounts)) {}
  MailboxSettings settings_;
  std::unique_ptr<AccountDb> accounts_;
  std::map<std::string, std::string, std::less<>> secrets_;
};

}  // namespace mailwright::pop3
