// Local delivery: the mta speaks LMTP (RFC 2033) to `mda -l` and gets one answer per
// recipient, so a temporary problem with one mailbox defers only that recipient. The message
// goes from the queue file to mda with BDAT (RFC 3030) straight from the file (no copy, no
// dot-stuffing); mda writes every recipient's mailbox as that user. An mda that has finished
// a job stays connected for the next one (up to 1000 jobs, or 10 s idle), so a busy queue does
// not pay a fork, an exec and a greeting per message.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "libmail/event_loop.h"
#include "mta/delivery_outcome.h"
#include "mta/mda_launcher.h"

namespace mailwright::mta {

struct LmtpJob {
  std::string sender;               // reverse path without brackets; "" for <>
  bool smtputf8 = false;
  std::vector<std::string> users;   // local user names, each checked again by mda
  int message_fd = -1;              // the queue file; must stay open until done is called
  std::uint64_t offset = 0;         // where the message starts in it
  std::uint64_t length = 0;
  std::string log_id;
  // One outcome per user, in order. Called from the event loop, never from inside deliver().
  std::function<void(std::vector<DeliveryOutcome>)> done;
};

class LmtpDelivery {
 public:
  LmtpDelivery(event_base* base, MdaLauncher& launcher, std::string hostname,
               std::chrono::seconds timeout)
      : base_(base), launcher_(launcher), hostname_(std::move(hostname)), timeout_(timeout) {}
  ~LmtpDelivery();

  void deliver(LmtpJob job);
  std::size_t active() const { return sessions_.size(); }

 private:
  class Session;
  void finished(Session* session);
  void idle(Session* session);
  void not_idle(Session* session);
  event_base* base_;
  MdaLauncher& launcher_;
  std::string hostname_;
  std::chrono::seconds timeout_;
  std::vector<Session*> sessions_;
  std::vector<Session*> idle_;  // greeted, between transactions, ready for the next job
};

}  // namespace mailwright::mta
