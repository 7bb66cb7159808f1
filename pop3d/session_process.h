// The session process of a system account (see privsep.h): runs as the user, serves the
// TRANSACTION and UPDATE states of one logged-in client over a socket to the login process,
// which relays to the client. Its first words are the reply to the client's PASS.
#pragma once

#include <memory>
#include <string>

#include "pop3d/maildrop.h"
#include "pop3d/pop3d_config.h"

namespace mailwright::pop3 {

// Returns an exit code when the session ends.
int serve_session_process(int fd, const Pop3Settings& settings, const std::string& user,
                          std::unique_ptr<Maildrop> maildrop);

}  // namespace mailwright::pop3
