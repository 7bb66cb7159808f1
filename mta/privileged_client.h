// The queue manager's side of privileged_ops.h: it asks the launcher (mda_launcher.h) to read
// a user's ~/.forward, to run a |command or to append to a /file, and waits for the worker's
// answer in the event loop, never blocking it. Every wait is bounded: a worker that does not
// answer in time (its own limits are shorter) counts as a temporary failure.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "libmail/event_loop.h"
#include "mta/delivery_outcome.h"
#include "mta/mda_launcher.h"
#include "mta/privileged_ops.h"

namespace mailwright::mta {

struct ForwardLookup {
  enum class Kind {
    kNone,    // no .forward (or no such account): deliver to the mailbox
    kUnsafe,  // a .forward that must be ignored (text: why): deliver to the mailbox, warn
    kFound,   // text: the file's content
    kError,   // could not be read now (text: why): defer
  };
  Kind kind = Kind::kNone;
  std::string text;
  std::string status;  // kError: RFC 3463 status
};

struct TargetJob {
  TargetOrigin origin = TargetOrigin::kAlias;
  std::string user;       // origin kForward: the owner of the .forward
  bool program = true;    // a |command; false: a /file
  std::string target;     // the command without '|', or the path
  std::string sender;     // envelope sender, "" for <>
  std::string recipient;  // the address the message was for
  int message_fd = -1;    // the queue file; must stay open until done is called
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  // Called from the event loop, never from inside deliver().
  std::function<void(DeliveryOutcome)> done;
};

class PrivilegedClient {
 public:
  PrivilegedClient(event_base* base, MdaLauncher& launcher, std::chrono::seconds program_timeout)
      : base_(base), launcher_(launcher), program_timeout_(program_timeout) {}
  // Operations still running are forgotten: their callbacks are not called.
  ~PrivilegedClient();
  PrivilegedClient(const PrivilegedClient&) = delete;
  PrivilegedClient& operator=(const PrivilegedClient&) = delete;

  // Called from the event loop, never from inside read_forward(). Lookups for a user who is
  // being looked up already share that answer: a burst of mail to one user costs one helper
  // process at a time, not one per message; no answer is kept once it is given.
  void read_forward(const std::string& user, std::function<void(ForwardLookup)> done);
  void deliver(TargetJob job);
  std::size_t active() const { return ops_.size(); }

 private:
  class Op;
  void start(const std::string& packet, int fd, std::chrono::seconds timeout,
             std::function<void(Result<OpResult>)> done);
  void finished(Op* op, Result<OpResult> result);

  event_base* base_;
  MdaLauncher& launcher_;
  std::chrono::seconds program_timeout_;
  std::set<Op*> ops_;
  // Who waits for the lookup under way for each user.
  std::map<std::string, std::vector<std::function<void(ForwardLookup)>>> forward_waiting_;
};

}  // namespace mailwright::mta
