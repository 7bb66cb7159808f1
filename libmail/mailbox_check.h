// The part of `mda -n` and `pop3d -n` that looks at where mailboxes live: the directory of
// mbox files and the mailboxes in it, or the fixed part of an absolute Maildir template.
// mda writes these files and pop3d reads and rewrites them as their users, so a spool that
// lets one user replace another's mailbox, or keeps recipients from making dotlocks, breaks
// both; both programs call this module, so they report the same problems in the same words.
//
// Split in two so that the judgement is testable without a file system and without root:
// gather_mail_store() records what lstat(2) and the account database say, and
// judge_mail_store() turns those facts into findings. Nothing here changes a file: each
// problem comes with the command or setting that mends it, for the administrator to run.
//
// What is judged (mda(8) and pop3d(8) list the same):
//  - the directory exists, is not a symbolic link (the configuration should name the real
//    directory) and is a directory;
//  - system accounts: it belongs to root; recipients can create files in it, either through
//    mail_group (root:mail 2775, group-writable by that group) or because it is 1777; it is
//    not writable by everyone without the sticky bit, nor by a group that is not mail_group;
//  - virtual accounts: their owner is not root; the directory belongs to root or to that
//    owner, who can create files in it; nobody else can write in it without the sticky bit;
//  - every entry that is a symbolic link (mda and pop3d refuse them, and a planted link is
//    an attack); every mailbox of an account: a regular file (Maildir: a directory) with one
//    link, owned by the account, neither readable nor writable by its group or others.
// File names in the directory may have been chosen by anyone, so they are printed through
// printable().
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "libmail/accounts.h"
#include "libmail/mailbox_config.h"

namespace mailwright {

struct Finding {
  bool problem = true;  // false: a note, which does not make the check fail
  std::string text;
  std::string fix;  // problems only
};

// What lstat(2) says about one path.
struct FileFacts {
  bool exists = false;
  std::string error;        // lstat failed for another reason than ENOENT
  bool symlink = false;
  std::string link_target;  // symlink: where it leads, resolved, when it resolves
  bool directory = false;
  bool regular = false;
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t mode = 0;  // the permission bits with set-id and sticky
  nlink_t links = 1;
  std::string user;   // the names of uid and gid, when they have one (directories only)
  std::string group;
};

struct StoreEntry {
  std::string name;
  FileFacts file;
  // The name is an account's: the uid its mailbox must belong to.
  std::optional<uid_t> owner;
};

struct MailStoreFacts {
  bool maildir = false;
  std::string maildir_template;
  // The directory judged: mail_spool, or the base of an absolute Maildir template; empty
  // when Maildirs are under home directories.
  std::string directory;
  bool entries_are_mailboxes = false;  // each account's mailbox is directory/NAME
  FileFacts dir;
  bool virtual_accounts = false;
  // Virtual accounts: the Unix user every mailbox belongs to, which is the one running the
  // check when virtual_owner is empty.
  bool owner_configured = false;
  std::string owner_name;
  uid_t owner_uid = 0;
  gid_t owner_gid = 0;
  std::string mail_group;
  std::optional<gid_t> mail_group_gid;  // nullopt: mail_group is empty or no such group
  std::vector<StoreEntry> entries;
  std::string listing_error;  // the directory could not be read
};

// The directory a Maildir template puts every account's Maildir in: the part before the path
// component holding "%u". entries_are_mailboxes when that component is exactly "%u". Empty
// for "~/" templates (each under its home directory) and for templates without "%u".
struct MaildirLayout {
  std::string base;
  bool entries_are_mailboxes = false;
  bool per_home = false;
  bool shared = false;  // no "%u" and no "~/": every account would get the same Maildir
};
MaildirLayout maildir_layout(const std::string& tmpl);

// At most this many findings about single files, then one that counts the rest: a spool of
// ten thousand mailboxes in mode 0660 needs one fix, not ten thousand lines.
inline constexpr std::size_t kMaxEntryFindings = 20;

std::vector<Finding> judge_mail_store(const MailStoreFacts& facts);

// Reads the facts for settings. accounts may be null (the account database could not be
// opened): then no entry is known to be a mailbox and only symbolic links are reported.
// virtual_owner must already be what the program would use (pop3d falls back on run_as).
MailStoreFacts gather_mail_store(const MailboxSettings& settings, const AccountDb* accounts);

// "problem: ...\n  fix: ...\n" or "note: ...\n" on standard output; returns the problems.
int print_findings(const std::vector<Finding>& findings);

}  // namespace mailwright
