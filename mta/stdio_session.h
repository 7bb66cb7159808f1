// One SMTP session over a program's standard input and output (mta -bs when stdin is a pipe,
// as MUAs and scripts use it): blocking reads and writes, the same smtp::Session and
// SpoolSessionHost as the daemon, each message committed on its own before its 250. There is
// no TLS on a pipe, so no STARTTLS and no AUTH; the peer is local and may relay.
#pragma once

#include "mta/smtp_host.h"

namespace mailwright::mta {

// Serves the session until QUIT, end of input or the command timeout. Returns an exit code.
int run_stdio_session(MtaContext& context, int in_fd, int out_fd);

}  // namespace mailwright::mta
