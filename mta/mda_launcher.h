// Starting mda for local delivery. mda must start as root to deliver to system accounts (it
// looks each recipient up and becomes that user before it opens a mailbox, mda(8)), while the
// mta gives up root after start-up. So a launcher process is forked while the mta still is
// root; it does one thing: on request it starts `mda -l` (LMTP on standard input and output,
// with a fixed argv and environment, no shell) and hands back the other end of a socketpair
// connected to it (SCM_RIGHTS). It never sees an address or a message: the unprivileged mta
// speaks LMTP to mda itself, and mda checks every recipient name it is given.
//
// Without root (virtual accounts, tests, a sandbox) the mta starts mda directly, the same way.
// Either way mda is started through a double fork, so it is nobody's child to reap: it ends
// when its LMTP session does.
//
// The launcher's only other requests are those of privileged_ops.h -- read a user's ~/.forward,
// run a |command or append to a /file as a user -- each checked field by field there, each
// answered with a socket on which a worker process reports later. Request types: 'L' (start
// mda: one octet, answered 'F' + socket or 'E'), 'R', 'P' and 'W' (privileged_ops.h).
#pragma once

#include <string>
#include <string_view>

#include "libmail/result.h"
#include "libmail/unique_fd.h"
#include "mta/privileged_ops.h"

namespace mailwright::mta {

struct MdaCommand {
  std::string path;         // the mda binary
  std::string config_path;  // passed as -C when not empty
};

class MdaLauncher {
 public:
  // Forks the root launcher process (call while still root). The launcher exits when this
  // object (its socket) goes away.
  static Result<MdaLauncher> start_privileged(MdaCommand command, OpsPolicy policy = {});
  // Starts mda from this process (no privilege change).
  static MdaLauncher direct(MdaCommand command, OpsPolicy policy = {});

  // A socket connected to a fresh `mda -l`.
  Result<UniqueFd> launch();
  // Sends an operation request (a packet of encode_request) with the queue file attached for
  // 'P' and 'W' (fd, else -1); returns the socket its worker will answer on (one packet of
  // encode_result). Refusals come back as the launcher's error, with its status.
  Result<UniqueFd> request(std::string_view packet, int fd);
  bool privileged() const { return static_cast<bool>(launcher_); }

 private:
  MdaLauncher(MdaCommand command, OpsPolicy policy, UniqueFd launcher)
      : command_(std::move(command)), policy_(std::move(policy)), launcher_(std::move(launcher)) {}
  MdaCommand command_;
  OpsPolicy policy_;
  UniqueFd launcher_;  // empty: direct
};

// Starts `mda -l` (double fork, exec with a fixed environment) with stdin and stdout on
// socket. Returns once the intermediate child has been reaped.
Status spawn_mda(const MdaCommand& command, int socket);

}  // namespace mailwright::mta
