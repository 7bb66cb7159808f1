// A Maildir (libmail/maildir.h) as a POP3 maildrop.
//
// Opening: the directory must be a real directory (not a symlink) owned by the mailbox owner.
// The session lock is DIR/mailwright-pop3.lock (take_session_lock, maildrop.h; a file, not a
// directory, so no Maildir++ reader takes it for a folder). Messages in new/ are moved to cur/
// with ":2," appended, as POP3 and IMAP servers do, so a message keeps one name for the
// session; one that cannot be moved (a name already taken in cur/) is read from new/. The
// maildrop is cur/ (and such stragglers) in delivery order: the seconds and M<usec> that begin
// the name, then the name. Names starting with '.' and anything not a regular file are
// skipped.
//
// Sizes come from the name's ,W= field when its ,S= field matches the file's size (mda and
// Dovecot write both), so LIST needs no reads; otherwise the file is read once to count them.
// ,W= counts LF -> CRLF only: for a file with bare CRs (which mda stores as they came) RETR
// sends one octet more per bare CR than ,W= says.
//
// UIDs are the base name (up to ':'), unique by construction and unchanged by flag changes;
// a base name longer than 60 characters or with octets outside 0x21-0x7E is replaced by the
// hex SHA-256 digest of it (RFC 1939 7 allows 70 characters of 0x21-0x7E).
//
// Another client (IMAP) may rename a file while the session runs (flags after ':'); RETR and
// DELE then find it by its base name in cur/. commit() unlinks the deleted files (one already
// gone is not an error) and fsyncs the directories; Maildir needs no delivery lock.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "pop3d/maildrop.h"

namespace mailwright::pop3 {

inline constexpr std::string_view kMaildirSessionLock = "mailwright-pop3.lock";

MaildropOpen open_maildir_maildrop(const std::string& dir, uid_t owner, std::string_view log_id);

}  // namespace mailwright::pop3
