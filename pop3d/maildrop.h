// A maildrop: one user's mailbox as a POP3 session sees it (RFC 1939 sections 4-6).
//
// open_maildrop() takes the session lock (a second session on the same mailbox gets
// kInUse), scans the mailbox under the delivery lock mda uses (dotlock + fcntl) and releases
// that lock again, so deliveries are never blocked for a whole session. For mbox it keeps a
// persistent index (offsets, sizes, UIDs) next to the mailbox, trusted only while the
// mailbox's size, mtime and inode and the index's own checksum agree, so a login does not
// re-read a large unchanged mailbox.
//
// Sizes are what RETR sends: CRLF line ends, before dot-stuffing, mboxrd quoting removed.
// UIDs are stable across sessions, deletions of other messages and new deliveries.
// commit() removes the deleted messages atomically (a crash leaves the old or the new
// mailbox, never a mix) and keeps mail that arrived during the session.
//
// The details, and the files written next to the mailbox, are in mbox_maildrop.h (locks,
// index, commit), mbox_index.h (index format, UID scheme), maildir_maildrop.h and
// message_wire.h (the wire form and its size). Errors: kInUse and kTemporary with a text
// here; later failures as a temporary Error. A maildrop and its streams belong to one
// thread; a stream must not outlive its maildrop's session (it may outlive the object).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "libmail/accounts.h"
#include "libmail/mailbox_config.h"
#include "libmail/result.h"
#include "libmail/unique_fd.h"

namespace mailwright::pop3 {

struct MaildropMessage {
  std::uint64_t size = 0;  // octets RETR sends before dot-stuffing (CRLF line ends)
  std::string uid;         // 1 to 70 characters in 0x21..0x7E (RFC 1939 7, UIDL)
};

// Wire form of one message, produced in pieces so a large message never sits in memory.
class MessageStream {
 public:
  virtual ~MessageStream() = default;
  // Appends the next piece (at most about max octets) of the message in wire form: CRLF line
  // ends, lines starting with '.' dot-stuffed, ending in CRLF. Returns false once the message
  // is complete; the caller then sends the terminating ".\r\n" itself.
  virtual Result<bool> next(std::string& out, std::size_t max) = 0;
};

enum class MaildropError { kNone, kInUse, kTemporary };

class Maildrop {
 public:
  virtual ~Maildrop() = default;
  // The messages as of opening, message n at index n-1.
  virtual const std::vector<MaildropMessage>& messages() const = 0;
  // RETR (top_lines empty) or TOP (the header, the empty line and that many body lines).
  virtual Result<std::unique_ptr<MessageStream>> open_message(
      std::size_t index, std::optional<std::uint64_t> top_lines) = 0;
  // UPDATE state: removes the messages whose index is marked, atomically; new mail stays.
  virtual Status commit(const std::vector<bool>& deleted) = 0;
};

struct MaildropOpen {
  std::unique_ptr<Maildrop> maildrop;
  MaildropError error = MaildropError::kNone;  // with maildrop == nullptr
  std::string text;                            // why, for the log and the -ERR line
};

// Opens account's mailbox as configured (mbox or Maildir). Runs as the mailbox owner.
// A mailbox that does not exist yet is an empty maildrop.
MaildropOpen open_maildrop(const MailboxSettings& settings, const Account& account);

// ---- Shared by the two formats (mbox_maildrop.h, maildir_maildrop.h).

// The session lock: an exclusive flock(2), taken without waiting, on lock_path, which is
// created 0600 if missing, never through a symlink, and refused unless it is a regular file
// owned by the running user. flock(2) and fcntl(2) locks are independent on Linux, and the
// file is not the mailbox, so holding it for a whole session blocks no delivery and no MUA.
// The file is never removed (removing a flock'ed file lets two processes lock two files).
struct SessionLock {
  UniqueFd fd;                                 // holds the lock; closing releases it
  MaildropError error = MaildropError::kNone;  // kInUse: another session holds it
  std::string text;
  bool directory_missing = false;  // no error, no lock: the directory is absent
};
SessionLock take_session_lock(const std::string& lock_path);

// An empty maildrop (a mailbox that does not exist yet), holding session_lock if valid.
std::unique_ptr<Maildrop> empty_maildrop(UniqueFd session_lock);

// Makes UIDs unique: the second and later copies of a UID get "-2", "-3", ... in order,
// skipping any value another message has as its own UID. Deterministic for a given list.
void make_uids_unique(std::vector<MaildropMessage>& messages);

}  // namespace mailwright::pop3
