// The queue manager: takes every message in queue/ from acceptance to removal. It keeps an
// in-memory schedule (one entry per message, ordered by the time of its next attempt, so a
// large queue costs a set insertion per message, not a scan per attempt) and runs attempts up
// to a concurrency limit in the same event loop as the SMTP server.
//
// One attempt on a message:
//  1. lock queue/ID (flock, so a daemon and a cron "mta -q" never deliver it at once) and read
//     its envelope with the recipient states (spool.h);
//  2. route each due recipient (routing.h): local names through the aliases (aliases.h) and
//     the users' ~/.forward files to mda over LMTP (lmtp_delivery.h), commands and files
//     (privileged_client.h), remote ones grouped by next hop to the SMTP client, errors
//     decided at once. An alias that expands to more than one address, or to a remote one,
//     becomes a new message to the expansion (RFC 3461 "expanded"), so each target's retries
//     are its own and nobody gets a second copy when another target is deferred;
//  3. when every part has answered: new recipient states are written durably (state/ID)
//     before anything is reported; deferred recipients get their next time (retry_interval,
//     doubling up to max_retry_interval), expire after max_queue_lifetime; delay warnings
//     after delay_warning; notifications (RFC 3464, dsn.h) go out as new messages from <>;
//     a message with every recipient final is removed.
//
// A crash between a delivery and the state write delivers that recipient again on the next
// attempt: the window RFC 5321 6.1 accepts, never a loss.
//
// Local recipients. Each becomes a plan for this attempt:
//  - a name that is not an alias (or a mailbox_only recipient, queue_file.h) is that user's
//    mailbox -- unless the user's ~/.forward says otherwise. For system accounts (accounts =
//    system; virtual accounts have no home) the launcher reads ~user/.forward as the user
//    (privileged_ops.h: regular file, owned by the user or root, not group- or
//    world-writable, nor the home directory; else it is ignored with a warning and the
//    mailbox gets the mail). Its targets, in :include: syntax, replace the mailbox: "\user"
//    or the user's own name is the mailbox itself (no .forward again, so no loop), |command
//    and /file run as the user, any other address goes into a new message, in which aliases
//    and .forward files apply again. An :include: or a syntax error makes the whole file
//    ignored (with a warning); an empty file counts as none. Not for a name that is an alias
//    itself ("root: \root, ..."): that is the mailbox proper. forward_files = no turns
//    .forward files off.
//  - an alias expands (aliases.h): its local names and remote addresses go into a new message
//    (local names as mailbox_only recipients), its |commands and /files run in this attempt as
//    alias_program_user. Commands and files listed in an :include: file are refused (5.7.1),
//    as Postfix does by default. /dev/null as a file is delivered by discarding.
// Commands and files are no queue recipients: they are not addresses, and a recipient is
// never turned into one. They are delivered as part of the recipient whose expansion named
// them, so the recipient's outcome is the worst of its parts (deferred, then failed, then
// delivered), and the new message for the addresses is queued only when no part was deferred.
// A deferred part makes the next attempt run every part of that expansion again: a command
// that succeeded may then see the message twice (sendmail's and Postfix's .forward deliveries
// behave the same way). A .forward's new message starts with "Delivered-To: user@hostname";
// a .forward that would forward a message that has its own such line again fails it with
// 5.4.6 (Postfix's mail forwarding loop check), so two users who forward to each other do
// not make mail circle for ever.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/event_loop.h"
#include "mta/delivery_outcome.h"
#include "mta/dsn.h"
#include "mta/lmtp_delivery.h"
#include "mta/privileged_client.h"
#include "mta/routing.h"
#include "mta/smtp_host.h"

namespace mailwright::mta {

struct QueueSettings {
  std::chrono::seconds retry_interval{15 * 60};
  std::chrono::seconds max_retry_interval{4 * 3600};
  std::chrono::seconds delay_warning{4 * 3600};       // 0: no warnings
  std::chrono::seconds max_queue_lifetime{5 * 86400};
  std::chrono::seconds rescan_interval{5 * 60};       // look for messages other processes queued
  std::size_t max_deliveries = 50;                    // messages in delivery at once
  // false (delivery_mode = queue): new mail waits for the next rescan or mta -q.
  bool deliver_at_once = true;
};

// The SMTP side of delivery, behind an interface so the queue manager does not depend on how
// remote hosts are found and spoken to.
class RemoteDeliverer {
 public:
  struct Job {
    const Envelope* envelope = nullptr;    // valid until done is called
    std::vector<std::size_t> recipients;   // indexes into envelope->recipients
    NextHop hop;
    std::string domain;                    // the recipients' domain (for logs and limits)
    int message_fd = -1;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
    std::string log_id;
    // One outcome per entry of recipients, from the event loop.
    std::function<void(std::vector<DeliveryOutcome>)> done;
  };
  virtual ~RemoteDeliverer() = default;
  virtual void deliver(Job job) = 0;
};

struct QueueFilter {
  std::string recipient_contains;  // -qR: a recipient address contains this (ASCII case-free)
  std::string id_contains;         // -qI
  bool matches(const Envelope& envelope) const;
};

class QueueManager {
 public:
  // ops: commands, files and ~/.forward; null: none of them (commands and files fail).
  QueueManager(event_base* base, MtaContext& context, QueueSettings settings, LmtpDelivery& local,
               RemoteDeliverer* remote, PrivilegedClient* ops = nullptr);
  ~QueueManager();

  // Daemon start: schedules every queued message at its recipients' next time, watches
  // queue/ for messages other processes put there, and rescans it now and then.
  Status start();
  // A message just committed: attempt it now.
  void add(const std::string& id);
  // mta -q: attempts every message that matches (due or not) once; on_done runs when none is
  // left in progress.
  Status run_once(const QueueFilter& filter, std::function<void()> on_done);

  std::size_t queued() const { return items_.size(); }
  std::size_t active() const { return active_; }

 private:
  struct Attempt;
  struct Plan;
  struct Item {
    std::int64_t next = 0;
    bool active = false;
    bool force = false;  // attempt every recipient, due or not (-q)
  };
  void schedule(const std::string& id, std::int64_t when);
  void arm_timer();
  static void on_timer(evutil_socket_t, short, void* arg);
  static void on_inotify(evutil_socket_t, short, void* arg);
  static void on_rescan(evutil_socket_t, short, void* arg);
  void rescan();
  void run_due();
  void begin(const std::string& id);
  void dispatch(Attempt* attempt);
  void plan_local(Attempt* attempt, std::size_t index, const std::string& name);
  void apply_forward(Attempt* attempt, std::size_t index, const ForwardLookup& lookup);
  void start_local(Attempt* attempt);
  void plan_result(Attempt* attempt, std::size_t index, std::size_t slot, DeliveryOutcome outcome);
  void finish_plan(Attempt* attempt, std::size_t index);
  void decide(Attempt* attempt, std::size_t index, DeliveryOutcome outcome);
  bool forward_allowed(const std::string& user) const;
  const std::string& header_section(Attempt* attempt);
  void notify(Attempt* attempt, DsnKind kind, const std::vector<std::size_t>& recipients);
  void queued_by_us(const std::string& id);
  void part_done(Attempt* attempt);
  void finish(Attempt* attempt);
  void maybe_done();

  event_base* base_;
  MtaContext& context_;
  QueueSettings settings_;
  LmtpDelivery& local_;
  RemoteDeliverer* remote_;
  PrivilegedClient* ops_;
  std::map<std::string, Item> items_;
  std::set<std::pair<std::int64_t, std::string>> schedule_;
  std::size_t active_ = 0;
  Event timer_;
  Event rescan_timer_;
  UniqueFd inotify_;
  Event inotify_event_;
  std::function<void()> on_done_;
  QueueFilter filter_;
  bool run_once_mode_ = false;
  std::set<Attempt*> attempts_;
};

// Whether the header section (CRLF or LF lines, up to the first empty one) has a
// "Delivered-To:" field whose value is address (ASCII case-free, angle brackets allowed).
bool has_delivered_to(std::string_view header, std::string_view address);

// The retry time after attempts failed attempts: retry_interval, doubled each time, at most
// max_retry_interval.
std::chrono::seconds retry_delay(std::uint32_t attempts, std::chrono::seconds first,
                                 std::chrono::seconds most);

}  // namespace mailwright::mta
