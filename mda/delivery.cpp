#include "mda/delivery.h"

#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "libmail/log.h"
#include "libmail/maildir.h"
#include "libmail/mbox.h"
#include "libmail/privilege.h"

namespace mailwright::mda {

std::string return_path_header(std::string_view sender) {
  if (sender.size() >= 2 && sender.front() == '<' && sender.back() == '>') {
    sender = sender.substr(1, sender.size() - 2);
  }
  return "Return-Path: <" + std::string(sender) + ">\n";
}

MailboxWriter::MailboxWriter(MailboxSettings settings, std::unique_ptr<AccountDb> accounts)
    : settings_(std::move(settings)), accounts_(std::move(accounts)) {}

MailboxWriter::~MailboxWriter() { rollback_pending(); }

Result<Account> MailboxWriter::find_recipient(std::string_view user) const {
  if (!is_valid_user_name(user)) {
    return Error::permanent(EX_NOUSER, "5.1.3", "invalid user name: " + printable(user, 64));
  }
  auto found = accounts_->find(user);
  if (!found) return found.error();
  if (!found->has_value()) {
    return Error::permanent(EX_NOUSER, "5.1.1", "unknown user: " + std::string(user));
  }
  return std::move(**found);
}

Status MailboxWriter::deliver(const Account& account, const StagedMessage& message,
                              std::string_view sender, bool defer_sync) {
  auto path = mailbox_path(settings_, account);
  if (!path) return path.error();

  const bool root = ::getuid() == 0;
  if (!root && account.uid != ::geteuid()) {
    return Error::from_exit_code(
        EX_CONFIG, "not running as root, cannot deliver to " + account.name);
  }
  // Everything below runs as the recipient: their quota applies, their permissions decide.
  MailboxIdentity id = mailbox_identity(settings_, account);
  auto as_user = SwitchedIdentity::become(id.uid, id.gid, id.groups);
  if (!as_user) return as_user.error();

  if (!settings_.maildir) return deliver_mbox(account, *path, message, sender, defer_sync);

  if (auto st = ensure_maildir(*path); !st) return st.error().with_context(account.name);
  const std::string prefix = return_path_header(sender);
  MaildirSizes sizes;
  sizes.size = prefix.size() + message.size;
  sizes.crlf_size = prefix.size() + 1 + message.crlf_size;  // the prefix is one LF-ended line
  auto delivered = deliver_to_maildir(*path, prefix, message.fd, message.size, sizes);
  if (!delivered) return delivered.error().with_context(account.name);
  return {};
}

Status MailboxWriter::deliver_mbox(const Account& account, const std::string& path,
                                   const StagedMessage& message, std::string_view sender,
                                   bool defer_sync) {
  auto it = pending_.find(path);
  if (it == pending_.end()) {
    if (auto failed = lock_failed_.find(path); failed != lock_failed_.end()) {
      return failed->second;
    }
    OpenMbox open;
    auto dotlock = DotLock::acquire(path, settings_.lock);
    if (!dotlock) {
      Error error = dotlock.error().with_context(account.name);
      if (defer_sync && error.is_temporary()) lock_failed_.emplace(path, error);
      return error;
    }
    open.dotlock.emplace(std::move(*dotlock));
    auto fd = open_mbox_for_append(path, account.uid);
    if (!fd) return fd.error().with_context(account.name);
    open.fd = std::move(*fd);
    if (auto st = lock_fcntl(open.fd.get(), true, settings_.lock.timeout); !st) {
      return st.error().with_context(account.name);
    }
    struct stat st {};
    if (::fstat(open.fd.get(), &st) != 0) {
      return Error::from_errno(EX_TEMPFAIL, account.name + ": fstat", errno);
    }
    open.size_before = st.st_size;
    if (!defer_sync) {
      const std::string from = mbox_from_line(sender, std::time(nullptr));
      Status appended = append_to_mbox(open.fd.get(), from, return_path_header(sender),
                                       message.fd, message.size, true);
      if (appended && open.fd.close() != 0) {
        appended = Error::from_errno(EX_TEMPFAIL, "close mailbox", errno);
        // The data was synced, yet close failed (NFS): roll back rather than guess.
        if (auto again = open_mbox_for_append(path, account.uid); again) {
          if (::ftruncate(again->get(), open.size_before) == 0) ::fdatasync(again->get());
        }
      }
      if (!appended) return appended.error().with_context(account.name);
      return {};
    }
    it = pending_.emplace(path, std::move(open)).first;
  }
  const std::string from = mbox_from_line(sender, std::time(nullptr));
  Status appended = append_to_mbox(it->second.fd.get(), from, return_path_header(sender),
                                   message.fd, message.size, false);
  if (!appended) return appended.error().with_context(account.name);
  return {};
}

Status MailboxWriter::commit() {
  Status result;
  for (auto& [path, open] : pending_) {
    if (::fdatasync(open.fd.get()) != 0) {
      result = Error::from_errno(EX_TEMPFAIL, "fdatasync " + path, errno);
      break;
    }
  }
  if (!result) {
    rollback_pending();
    return result;
  }
  for (auto& [path, open] : pending_) {
    if (open.fd.close() != 0 && result) {
      result = Error::from_errno(EX_TEMPFAIL, "close " + path, errno);
    }
  }
  pending_.clear();
  return result;
}

void MailboxWriter::rollback_pending() {
  for (auto& [path, open] : pending_) {
    if (open.fd && ::ftruncate(open.fd.get(), open.size_before) == 0) {
      ::fdatasync(open.fd.get());
    }
  }
  pending_.clear();
}

}  // namespace mailwright::mda
