// The root launcher's operations besides starting mda (mda_launcher.h): reading a user's
// ~/.forward, running a |command and appending to a /file, each as the user it belongs to.
// The queue manager runs without privileges; these are the only things it may ask root for,
// and the launcher trusts nothing in a request it can check itself.
//
// Transport. A request is one SOCK_SEQPACKET packet on the launcher socket: a type octet and
// NUL-separated fields (encode_request), with at most one descriptor attached (SCM_RIGHTS: the
// queue file, for 'P' and 'W'). The launcher answers with one packet: 'F' and a descriptor, the
// result socket a worker will answer on later (so nothing here blocks the launcher or the
// queue manager's event loop), or 'E', an RFC 3463 status, a space and a reason, when the
// request is refused. The worker is started by a double fork (nobody has to reap it), closes
// every descriptor but its own, and sends one result packet (encode_result) before it exits.
//
//   'R' user                                read ~user/.forward
//   'P' origin user command sender rcpt offset length   + fd: run "|command"
//   'W' origin user path sender rcpt offset length      + fd: append to "/path"
//
// Validation (decode_request): the exact number of fields; user a valid user name (accounts.h)
// for 'R' and origin "forward", empty for origin "alias"; command and path at most kMaxTarget
// octets, without control characters but tab, a path absolute and without "/../" or "/./";
// sender and recipient at most kMaxEnvelopeAddress octets without control characters; offset
// and length decimal without leading zeros, length at most kMaxMessage. The descriptor must
// be a regular file holding offset + length octets.
//
// Whose rights, and where the command comes from:
//  - origin "alias": the command or file must appear as a target of the alias file itself
//    (not of an :include:), which must belong to root and be writable by nobody else; it runs
//    as alias_program_user (OpsPolicy::program_user), never as root.
//  - origin "forward": it runs as the user, and the worker -- already that user -- reads the
//    user's .forward again and runs the target only if the file still lists it. A command also
//    needs a login shell listed in /etc/shells (sendmail's rule: an ftp-only account may not
//    run programs through its .forward). Never as root: uid 0 is refused.
// So even a queue manager taken over by an attacker can only make the launcher run what root
// or the user wrote, with the rights of whoever wrote it.
//
// Identity: the worker looks the account up (getpwnam_r, getgrouplist: the launcher itself
// never waits on NSS), then setgroups (the user's groups), setgid, setuid, verified
// (drop_privileges); then chdir to the home directory, or "/". An unknown user fails the
// target with 5.1.1 (a read answers "no .forward"). Without root (the launcher's "direct" mode: tests, a
// sandbox, virtual accounts) the same code runs in a child of the mta itself, without any
// identity change, and only for targets that would run as the mta's own user anyway: the
// alias file's, and those of a .forward of the user the mta runs as; others are deferred with
// 4.3.5 (the mta needs root for them).
//
// A command runs as `/bin/sh -c COMMAND` in a session of its own, with standard input a
// private copy of the message (Return-Path: header, then the message with LF line ends), stdout
// and stderr into one pipe of which the first kMaxCapturedOutput octets are kept for the
// notification, and this environment only: PATH=/usr/bin:/bin, HOME, USER, LOGNAME, SHELL=/bin/sh,
// SENDER (the envelope sender), RECIPIENT (the address the mail was for). Addresses go into the
// environment, never into the command line. The process group is killed after
// OpsPolicy::program_timeout. The exit status is read by program_result().
//
// A file gets the message appended in mbox format (From_ line, Return-Path, mboxrd quoting,
// mbox.h), under an fcntl lock; it must be a regular file with one link owned by the user
// (open_mbox_for_append: no symlink, FIFO or device), and is created 0600 if missing.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "libmail/result.h"
#include "libmail/unique_fd.h"

namespace mailwright::mta {

inline constexpr std::size_t kMaxForwardFile = 64 * 1024;
inline constexpr std::size_t kMaxCapturedOutput = 1024;
inline constexpr std::size_t kMaxTarget = 4096;
inline constexpr std::size_t kMaxEnvelopeAddress = 1024;
inline constexpr std::uint64_t kMaxMessage = 1ULL << 40;
inline constexpr std::size_t kMaxRequestPacket = 16 * 1024;
inline constexpr std::size_t kMaxResultPacket = kMaxForwardFile + 4096;

// Fixed when the launcher starts.
struct OpsPolicy {
  std::string aliases;       // the alias file ("" for none: no alias commands or files)
  std::string program_user;  // alias_program_user
  std::chrono::seconds program_timeout{600};
};

enum class TargetOrigin { kAlias, kForward };

struct OpRequest {
  enum class Type : char { kReadForward = 'R', kRunProgram = 'P', kAppendFile = 'W' };
  Type type = Type::kReadForward;
  TargetOrigin origin = TargetOrigin::kAlias;  // 'P' and 'W'
  std::string user;       // 'R' and origin kForward: the account; origin kAlias: ""
  std::string target;     // 'P': the command without '|'; 'W': the absolute path
  std::string sender;     // the envelope sender, "" for <>
  std::string recipient;  // the address the message was for
  std::uint64_t offset = 0;  // where the message starts in the attached file
  std::uint64_t length = 0;

  friend bool operator==(const OpRequest&, const OpRequest&) = default;
};

// The packet for request (not checked: decode_request is where checking happens).
std::string encode_request(const OpRequest& request);
// Parses and checks one packet; EX_USAGE/5.5.4 errors name the field that is wrong.
Result<OpRequest> decode_request(std::string_view packet);

// What a worker answers.
struct OpResult {
  enum class Kind : char {
    kDelivered = 'D',  // 'P', 'W': done
    kDeferred = 'Q',   // 'P', 'W': try again later; 'R': could not be read now
    kFailed = 'F',     // 'P', 'W': permanent
    kNoForward = 'N',  // 'R': no .forward
    kUnsafe = 'U',     // 'R': a .forward that must be ignored; text says why
    kForward = 'T',    // 'R': text is the file
  };
  Kind kind = Kind::kDeferred;
  std::string status;  // RFC 3463, for D, Q and F
  std::string text;

  friend bool operator==(const OpResult&, const OpResult&) = default;
};

std::string encode_result(const OpResult& result);
Result<OpResult> decode_result(std::string_view packet);

// Why ~/.forward must be ignored, as sendmail judges it, or "" when it may be used: the home
// directory must be a directory owned by the user or root and not writable by group or others;
// the file a regular file owned by the user or root and not writable by group or others.
std::string forward_file_problem(const struct stat& home, const struct stat& file, uid_t user);

// The outcome of a command from its wait(2) status: 0 delivered; a sysexits(3) code as
// exit_status_info() classes it (75 EX_TEMPFAIL and the other temporary ones deferred, the
// rest failed); any other status failed with 5.3.0; killed by a signal or timed_out deferred
// with 4.3.0. The text is "command ..." with the captured output appended.
OpResult program_result(int wait_status, bool timed_out, std::string_view output);
// The captured output as one line for a log and a notification: control characters and
// octets above 0x7E become blanks, runs of blanks one, ends trimmed, at most max octets.
std::string clean_output(std::string_view raw, std::size_t max = kMaxCapturedOutput);

// The message as a command or file gets it: LF line ends (every CRLF made an LF).
class CrlfToLf {
 public:
  void feed(std::string_view in, std::string& out);
  void finish(std::string& out);  // a CR held at the end of the last chunk

 private:
  bool held_cr_ = false;
};

// Launcher side. Checks the request packet (type not 'L') and starts its worker; returns the
// other end of the worker's result socket. fd is the attached descriptor (or empty). Runs in
// the root launcher, or (not root) in the mta itself.
Result<UniqueFd> start_operation(std::string_view packet, UniqueFd fd, const OpsPolicy& policy);

// Checked at start-up when root: alias_program_user must exist and not be root.
Status check_program_user(const std::string& name);

}  // namespace mailwright::mta
