// Local submission through the spool's maildrop/ directory, without a daemon, a setuid or a
// setgid program.
//
// maildrop/ is mode 1733 and owned by the mail user: anyone may create a file in it; nobody
// else may list it, and the sticky bit keeps users from removing or renaming each other's
// files. A user's own `sendmail` process (submission.h) writes the message as a queue file
// (queue_file.h) under a temporary name "t.RANDOM" with mode 0600, makes it 0644 so the mail
// user can read it, fsyncs it, renames it to "QUEUEID.RANDOM" and syncs the file system (a user
// cannot open maildrop/ to fsync it, having no read permission, and syncfs() makes the rename
// durable all the same) before it exits 0. RANDOM is 128 bits from getrandom(): the file is
// readable by others, and a name nobody can list or guess is what keeps it private.
//
// The pickup (the daemon on inotify and on every rescan; `mta -q` before its run) treats each
// file as hostile: it takes the submitter from the file's owner (fstat: the one fact the user
// cannot forge), insists on a regular file with one link (a hard link to somebody else's file
// is not a submission), reads at most the size limit, and validates everything: the envelope
// with the queue file parser, every address again, the message as CRLF lines without NUL or a
// bare CR. The envelope sender is the user's own address unless the owner is trusted (root, the
// mail user, trusted_users). It then queues a new message (injector.h) with a Received: field
// naming the user, and removes the file. A file that fails is moved to corrupt/ with a log line
// naming its owner; it is never delivered and never deleted unseen. Two pickups (daemon and
// mta -q) flock each file and skip one whose link count is already 0, so a file is queued once;
// a crash between queueing and removal queues it twice, never loses it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/event_loop.h"
#include "libmail/result.h"
#include "libmail/unique_fd.h"
#include "mta/queue_file.h"
#include "mta/spool.h"

namespace mailwright::mta {

// The user's side: writes envelope (its queue_id set) and message into spool_root/maildrop as
// described above. Errors: EX_TEMPFAIL for what may pass (disk full, maildrop/ not writable
// now), EX_CANTCREAT when maildrop/ is missing, EX_CONFIG when it is not what it must be.
Status drop_message(const std::string& spool_root, const Envelope& envelope,
                    std::string_view message);

// "QUEUEID." + 32 lower-case hex digits: a finished submission. Other names are temporary
// files ("t." + the same) or junk.
bool is_drop_name(std::string_view name);

struct DropOwner {
  uid_t uid = 0;
  std::string name;      // login name
  bool trusted = false;  // may set the envelope sender
};

struct PickupPolicy {
  std::string hostname;
  std::uint64_t max_message_size = 0;
  std::size_t max_recipients = 1000;
  std::size_t max_line_length = 1000;  // with CRLF
};

struct PickedUp {
  Envelope envelope;     // queue_id empty; sender decided; every recipient pending
  std::string received;  // the Received: field to put in front of the message
  std::string claimed_sender;  // the file's FROM, for the log when it was not taken
  std::size_t body_offset = 0;
};

// Pure: checks a maildrop file's content as described above. new_queue_id goes into the
// Received: field (the message will be queued under it). Errors are permanent EX_DATAERR.
Result<PickedUp> accept_dropped(std::string_view file, const DropOwner& owner,
                                const PickupPolicy& policy, std::string_view new_queue_id,
                                std::int64_t now);

// Whether a user may set the envelope sender: root, the mail user (the spool's owner) and
// the names in trusted_users.
bool is_trusted_user(uid_t uid, std::string_view name, uid_t mail_uid,
                     const std::vector<std::string>& trusted_users);

// Picks up every finished file in maildrop/ (and removes temporary files older than a day);
// queued(id) is called for each new queue id. Errors about single files are logged and the
// files moved aside; the result is an error only when maildrop/ cannot be read.
Status pickup_maildrop(Spool& spool, const PickupPolicy& policy,
                       const std::vector<std::string>& trusted_users,
                       const std::function<void(const std::string&)>& queued);

// The daemon's pickup: everything in maildrop/ at start, then each file as inotify reports its
// rename, and all of it again every rescan interval (inotify can overflow).
class MaildropPickup {
 public:
  MaildropPickup(event_base* base, Spool& spool, PickupPolicy policy,
                 std::vector<std::string> trusted_users,
                 std::function<void(const std::string&)> queued, std::chrono::seconds rescan);
  Status start();

 private:
  static void on_inotify(evutil_socket_t fd, short, void* arg);
  static void on_rescan(evutil_socket_t, short, void* arg);
  void run();

  event_base* base_;
  Spool& spool_;
  PickupPolicy policy_;
  std::vector<std::string> trusted_users_;
  std::function<void(const std::string&)> queued_;
  std::chrono::seconds rescan_;
  UniqueFd inotify_;
  Event inotify_event_;
  Event rescan_timer_;
};

}  // namespace mailwright::mta
