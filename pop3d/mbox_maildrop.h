// An mbox file (mail_spool/USER, mboxrd as libmail/mbox.h writes it) as a POP3 maildrop.
//
// Files, all in the mailbox's directory and named after it, hidden so that no valid user name
// (is_valid_user_name never starts with '.') can be one of them:
//   .USER.pop3lock  session lock (take_session_lock, maildrop.h); never removed
//   .USER.pop3idx   the index (format in mbox_index.h), mode 0600; only an optimisation: a
//                   missing, unreadable, foreign-owned or invalid index means a full scan,
//                   and failing to write it is logged and otherwise ignored
//   .USER.pop3new   the new mailbox while commit() writes it; one left by a crash is removed
//                   at the next open (under the session lock, so it is never another's)
// The spool must let the user create files (mode 1777, or 2775 with mail_group kept, as
// for mda's dotlocks); pop3d runs as the mailbox owner.
//
// Opening: session lock (kInUse if held), then the delivery lock exactly as mda takes it
// (DotLock::acquire, open with O_NOFOLLOW, fstat checks, lock_fcntl; here shared, which
// still excludes mda's exclusive lock). Under it: the index is loaded and checked against
// fstat of the mailbox (device, inode, size, mtime) and a few octets (the covered part's
// last 8 octets, the first and last indexed From_ lines). Size and mtime unchanged: the
// mailbox is not read further. Grown, with the covered part ending in an empty line and a
// From_ line right after it: only the new part is scanned. Anything else: a full scan, one
// sequential pass in 1 MiB reads with POSIX_FADV_SEQUENTIAL. Then the size is recorded and
// both locks are released; the session sees the messages that existed then, and nothing
// after that size. A symlink, a non-regular file, a file with several links or another
// owner is refused (kTemporary), as is a lock not obtained within lock_timeout. (A rewrite
// in place that keeps the size and lands in the same mtime tick as the last scan, and leaves
// the checked octets alone, is not noticed at open; commit's digest check still refuses to
// write over it.)
//
// commit(), when something was deleted: delivery lock again (dotlock, then fcntl exclusive);
// the mailbox must still be the same inode, at least as large, and every kept message must
// still have its digest (so a mailbox rewritten by another program since the open is left
// alone: an error, nothing deleted). The new mailbox is written to .USER.pop3new (0600, then
// the old file's mode and, where permitted, owner and group): any data before the first
// message, each kept message with its From_ line and its separating empty line, byte for
// byte, then everything after the size at open (mail delivered during the session). It is
// fsync'd and renamed over the mailbox, and the directory is fsync'd. A crash before the
// rename leaves the old mailbox; after it, the new one; never a mix. Then the index is
// rewritten for the new file, or removed if that fails.
//
// Why the rename is safe against mda: mda takes the dotlock before it opens the mailbox
// (mda/delivery.cpp deliver_mbox: DotLock::acquire, then open_mbox_for_append, then
// lock_fcntl) and holds it while appending. commit() holds the dotlock from before it reads
// the size until after the rename, so an mda that is waiting is waiting for the dotlock and
// has not opened the file yet: it opens the new file. A writer that locks with fcntl alone
// and opened the old file before the rename would append to the unlinked old inode; such
// writers do not follow the locking convention of the spool (mutt, Dovecot, procmail and
// mda all take the dotlock). The rename also breaks hard links to the mailbox, which are
// refused anyway.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/mailbox_lock.h"
#include "pop3d/maildrop.h"
#include "pop3d/mbox_index.h"

namespace mailwright::pop3 {

std::string mbox_session_lock_path(const std::string& mailbox);
std::string mbox_index_path(const std::string& mailbox);
std::string mbox_commit_temp_path(const std::string& mailbox);

// How an open used the index, for logs, tests and benchmarks.
enum class IndexUse { kNone, kWarm, kIncremental, kFullScan };

struct MboxScanReport {
  IndexUse use = IndexUse::kNone;
  std::uint64_t scanned_octets = 0;  // mailbox octets read by the scan (not the checks)
  std::string_view rebuild_reason;   // why the index could not be used (static text)
};

// The mailbox at path, owned by owner (pop3d runs as that user). log_id names the session in
// log lines.
MaildropOpen open_mbox_maildrop(const std::string& path, uid_t owner, const LockPolicy& lock,
                                std::string_view log_id);

// The report of the open that made maildrop, if it is an mbox maildrop.
const MboxScanReport* mbox_scan_report(const Maildrop& maildrop);

}  // namespace mailwright::pop3
