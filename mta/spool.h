// The spool: directories holding messages from receipt to delivery, and recovery after a crash.
//
// Layout under the root (the root itself: owned by the mail user, mode 0711 when created, never
// writable by group or others; the subdirectories are created with these modes if missing):
//   incoming/  0700  messages being received, as incoming/ID (0600, O_EXCL|O_NOFOLLOW)
//   queue/     0700  accepted messages, queue/ID: envelope + message (queue_file.h), immutable
//   state/     0700  state/ID: recipient states after delivery attempts (queue_file.h)
//   corrupt/   0700  files that failed validation; moved here, never deleted
//   maildrop/  1733  local submissions by ordinary users (maildrop.h): anyone may create,
//                    nobody but the mail user may list it or remove others' files (sticky,
//                    not readable); the pickup treats every file there as hostile.
// Every directory is opened with O_NOFOLLOW|O_DIRECTORY and checked with fstat: a symlink, a
// directory owned by another user or with more permission bits than listed is refused. All
// later work is done relative to those descriptors (openat, renameat), so swapping a path
// component after open() changes nothing.
//
// States of one message (in the manner of qmail's INTERNALS), and what recovery does:
//   S1  incoming/ID exists             not acknowledged: recover() deletes it
//   S2  queue/ID exists, no state/ID   accepted, all recipients as written in the envelope
//   S3  queue/ID and state/ID          accepted, recipient states from state/ID
//   S4  state/ID alone                 done: recover() deletes the orphan state file
// Commit point: rename(incoming/ID, queue/ID) followed by fsync(queue/); only then may the 250
// be sent. A crash between rename and fsync leaves S1 or S2; either is consistent with no 250
// having been sent (S2 is then delivered although the client will retry: a duplicate, never a
// loss). If the crash leaves both names (the rename's unlink of incoming/ID not yet on disk),
// recovery deletes the incoming/ name only; the queue/ name keeps the data.
//
// Recipient state updates: the queue file is never modified after commit. write_state()
// rewrites state/ID as a whole with write_file_durably (temp file, fsync, rename, fsync of
// state/), so a crash leaves the old state or the new one, never a torn mix; at worst a
// recipient delivered just before the crash is delivered again. Chosen over fixed-width fields
// updated in place with pwrite because a pwrite is not atomic across a crash (a torn sector could
// corrupt the envelope of an accepted message), because the error text has no fixed width, and
// because an immutable queue file can be validated once and never rewritten. There is no
// deferred/ directory: deferral is a state update (STATE deferred, NEXT time), so a message
// never moves between directories after commit. When every recipient is done, remove() deletes
// queue/ID first and state/ID second (S2/S3 -> S4 -> gone): a crash in between leaves S4, which
// recovery cleans, rather than a message whose state was lost and would be delivered again.
// A message without a state file (delivered at its first attempt) is removed without a sync:
// a crash that undoes the unlink means one more delivery, never a loss.
//
// Errors are Results: temporary for I/O failures and disk full, permanent for a spool that is
// unsafe (symlink, wrong owner or mode). One Spool per process is enough (the descriptors are
// shared by every operation); commit_batch may run in another thread (commit_worker.h) while
// the loop creates and removes files, since both only read the directory descriptors.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.h"
#include "libmail/unique_fd.h"
#include "mta/queue_file.h"

namespace mailwright::mta {

inline constexpr mode_t kSpoolRootMode = 0711;
inline constexpr mode_t kSpoolDirMode = 0700;
inline constexpr mode_t kMaildropMode = 01733;
inline constexpr mode_t kQueueFileMode = 0600;

// A message being received: the caller writes the envelope and message to fd(), then hands the
// file to Spool::commit or commit_batch.
class IncomingFile {
 public:
  IncomingFile(std::string queue_id, UniqueFd fd) : id_(std::move(queue_id)), fd_(std::move(fd)) {}
  const std::string& queue_id() const { return id_; }
  int fd() const { return fd_.get(); }
  // True once the message is in queue/ and queue/ has been fsync'd: the 250 may be sent.
  bool committed() const { return committed_; }

 private:
  friend class Spool;
  std::string id_;
  UniqueFd fd_;
  bool committed_ = false;
};

class Spool {
 public:
  // Opens (and creates what is missing of) the spool at root; see the layout above.
  static Result<Spool> open(const std::string& root);

  const std::string& root() const { return root_; }

  // Creates incoming/ID (O_CREAT|O_EXCL|O_NOFOLLOW, 0600). queue_id must be valid.
  Result<IncomingFile> create_incoming(std::string_view queue_id);
  // fsync, close, rename into queue/, fsync queue/. On failure the incoming file is removed.
  Status commit(IncomingFile& file);
  // Group commit: fsync and close every file, rename each into queue/, then one fsync of queue/.
  // Each file's committed() says whether it made it; a file whose fsync or rename failed is
  // removed, and if the fsync of queue/ fails none is committed (and their queue/ names are
  // removed, so no message the client was refused is delivered). Returns the first error.
  Status commit_batch(const std::vector<IncomingFile*>& files);
  // Removes an incoming file that will not be committed (the client quit or sent RSET).
  Status discard(IncomingFile& file);

  // Start-up: deletes everything in incoming/, validates every queue file (and its state file)
  // and moves those that fail to corrupt/ with a log line, deletes orphan state files. Returns
  // the ids to schedule, sorted (= by arrival).
  Result<std::vector<std::string>> recover();

  // Reads queue/ID's envelope with its state file applied; body_offset is where the message
  // starts in queue/ID.
  Result<Envelope> load_envelope(std::string_view queue_id, std::size_t& body_offset);
  // queue/ID opened for reading (O_NOFOLLOW), for delivery and its lock (flock).
  Result<UniqueFd> open_queue_file(std::string_view queue_id);
  // The ids in queue/, sorted (= by arrival); names that are not queue ids are skipped.
  Result<std::vector<std::string>> list_queue() const;
  // Durably replaces state/ID with the recipient states of envelope.
  Status write_state(const Envelope& envelope);
  // Deletes a message that is done: queue/ID, then state/ID.
  Status remove(std::string_view queue_id);
  // Moves queue/ID (and state/ID) to corrupt/, never overwriting anything there.
  Status move_to_corrupt(std::string_view name, std::string_view reason);

  // maildrop/ (maildrop.h): every name in it, sorted; a file opened for reading without
  // following a symlink or blocking on a FIFO; removal; a hostile file moved to corrupt/ as
  // "maildrop.NAME". open_maildrop's error for a name that is gone has exit code EX_NOINPUT.
  Result<std::vector<std::string>> list_maildrop() const;
  Result<UniqueFd> open_maildrop(std::string_view name) const;
  Result<struct stat> stat_maildrop(std::string_view name) const;  // lstat, never followed
  Status remove_maildrop(std::string_view name);
  Status maildrop_to_corrupt(std::string_view name, std::string_view reason);

  // Whether the file system of queue/ has needed + reserve octets free for unprivileged
  // users (and a free inode): false must become a 452, never a 250.
  Result<bool> has_free_space(std::uint64_t needed, std::uint64_t reserve) const;

 private:
  Spool() = default;
  Status move_into_corrupt(int from_fd, const std::string& from, const std::string& base);
  std::string root_;
  UniqueFd root_fd_;
  UniqueFd incoming_fd_;
  UniqueFd queue_fd_;
  UniqueFd state_fd_;
  UniqueFd corrupt_fd_;
  UniqueFd maildrop_fd_;
  mutable struct statvfs space_ {};
  mutable std::chrono::steady_clock::time_point space_checked_at_{};
  mutable bool space_checked_ = false;
};

}  // namespace mailwright::mta
