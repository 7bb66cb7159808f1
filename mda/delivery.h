// Delivery of a staged message into users' mailboxes, the heart of mda.
//
// For each recipient: the name is checked and looked up before it is used in any path; when
// running as root the effective ids become the recipient's (plus mail_group) before any of
// their files is touched; the mailbox is locked (dotlock + fcntl), opened without following
// links and checked, appended to, made durable, unlocked. Any failure leaves the mailbox as
// it was and is reported as temporary (retry) or permanent (bounce) through Error.
//
// Batches: with defer_sync, an mbox delivery stays locked and unsynced until commit(), which
// makes every pending mailbox durable with one fdatasync each and only then reports success;
// if that fails, every pending mailbox is truncated back. This is group commit for LMTP. A
// mailbox that could not be locked in a batch is not tried again before commit(): each
// message pipelined behind the first would otherwise wait out the lock timeout of its own.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/accounts.h"
#include "libmail/mailbox_config.h"
#include "libmail/mailbox_lock.h"
#include "libmail/result.h"
#include "libmail/unique_fd.h"
#include "mda/staging.h"

namespace mailwright::mda {

class MailboxWriter {
 public:
  MailboxWriter(MailboxSettings settings, std::unique_ptr<AccountDb> accounts);
  ~MailboxWriter();

  // The recipient's account, or EX_NOUSER (permanent) for an unknown or invalid name, or a
  // temporary error when the account database cannot be read.
  Result<Account> find_recipient(std::string_view user) const;

  // Delivers message from sender to account. With defer_sync the mbox stays locked and the
  // delivery counts only after commit().
  Status deliver(const Account& account, const StagedMessage& message, std::string_view sender,
                 bool defer_sync);
  Status commit();
  // The batch is over (committed or not): mailboxes that were locked are tried again.
  void end_batch() { lock_failed_.clear(); }
  std::size_t pending() const { return pending_.size(); }

  const MailboxSettings& settings() const { return settings_; }

 private:
  struct OpenMbox {
    std::optional<DotLock> dotlock;
    UniqueFd fd;
    off_t size_before = 0;
  };
  Status deliver_mbox(const Account& account, const std::string& path,
                      const StagedMessage& message, std::string_view sender, bool defer_sync);
  void rollback_pending();

  MailboxSettings settings_;
  std::unique_ptr<AccountDb> accounts_;
  std::map<std::string, OpenMbox> pending_;
  std::map<std::string, Error> lock_failed_;  // in this batch, by mailbox path
};

// "Return-Path: <sender>\n": RFC 5321 4.4 has the final delivery record the reverse path.
std::string return_path_header(std::string_view sender);

}  // namespace mailwright::mda
