// Privilege separation for system accounts, in the manner of Dovecot and OpenSSH: three
// kinds of process, none of which both talks to the network before login and has root.
//
//   master (root)          forks the login process, then only answers its login requests.
//                          Each request is handled by a child: PAM checks the password; on
//                          success the child becomes the user (setgroups, setgid, setuid,
//                          verified), opens the maildrop and sends the login process one end
//                          of a socketpair with the answer. It then serves the session's
//                          TRANSACTION state on the other end, as that user.
//   login (run_as)         all network I/O: listeners, TLS, the AUTHORIZATION state. After a
//                          login it relays bytes between the client and the session process.
//   session (the user)     one per logged-in client; never sees the network or TLS keys.
//
// Requests and answers are single SOCK_SEQPACKET messages of NUL-separated fields, so no
// field can run into the next; the session socket travels with SCM_RIGHTS.
#pragma once

#include <map>
#include <memory>

#include "libmail/event_loop.h"
#include "pop3d/authenticator.h"
#include "pop3d/pop3d_config.h"

namespace mailwright::pop3 {

// The login process's side: forwards logins to the master.
class PrivsepAuthenticator final : public Authenticator {
 public:
  PrivsepAuthenticator(event_base* base, UniqueFd master);
  void login(LoginRequest request, Done done) override;
  bool apop_enabled() const override { return false; }

 private:
  static void on_readable(evutil_socket_t fd, short, void* arg);
  event_base* base_;
  UniqueFd master_;
  Event event_;
  std::uint64_t next_id_ = 1;
  std::map<std::uint64_t, Done> waiting_;
};

// The master's loop: answers requests on sock until the login process goes away (EOF), or
// until SIGTERM/SIGINT, which it passes on to the login process. SIGHUP is ignored.
// Returns an exit code.
int run_login_master(int sock, const Pop3Settings& settings, const std::string& pam_service,
                     pid_t login_pid);

}  // namespace mailwright::pop3
