#include "pop3d/maildrop.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <unordered_map>
#include <unordered_set>

#include "libmail/file_io.h"
#include "pop3d/maildir_maildrop.h"
#include "pop3d/mbox_maildrop.h"

namespace mailwright::pop3 {
namespace {

class EmptyMaildrop final : public Maildrop {
 public:
  explicit EmptyMaildrop(UniqueFd session_lock) : session_lock_(std::move(session_lock)) {}
  const std::vector<MaildropMessage>& messages() const override { return messages_; }
  Result<std::unique_ptr<MessageStream>> open_message(std::size_t,
                                                      std::optional<std::uint64_t>) override {
    return Error::permanent(EX_SOFTWARE, "5.3.0", "no such message");
  }
  Status commit(const std::vector<bool>&) override { return {}; }

 private:
  UniqueFd session_lock_;
  std::vector<MaildropMessage> messages_;
};

}  // namespace

SessionLock take_session_lock(const std::string& lock_path) {
  SessionLock lock;
  auto fail = [&](MaildropError error, std::string text) {
    lock.fd.reset();
    lock.error = error;
    lock.text = std::move(text);
    return std::move(lock);
  };
  auto fd = open_file(lock_path, O_RDONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0600);
  if (!fd) {
    const int err = errno;
    if (err == ENOENT) {
      lock.directory_missing = true;
      return lock;
    }
    if (err == ELOOP) {
      return fail(MaildropError::kTemporary,
                  lock_path + " is a symbolic link; refusing to follow it");
    }
    return fail(
        MaildropError::kTemporary,
        Error::from_errno(EX_TEMPFAIL, "cannot create session lock " + lock_path, err).text());
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) {
    return fail(MaildropError::kTemporary,
                Error::from_errno(EX_TEMPFAIL, "fstat " + lock_path, errno).text());
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(MaildropError::kTemporary, lock_path + " is not a regular file; refusing it");
  }
  if (st.st_uid != ::geteuid()) {
    return fail(MaildropError::kTemporary, lock_path + " is owned by another user; refusing it");
  }
  for (;;) {
    if (::flock(fd->get(), LOCK_EX | LOCK_NB) == 0)
      break;
    if (errno == EINTR)
      continue;
    if (errno == EWOULDBLOCK) {
      return fail(MaildropError::kInUse, "maildrop is in use by another POP3 session");
    }
    return fail(MaildropError::kTemporary,
                Error::from_errno(EX_TEMPFAIL, "flock " + lock_path, errno).text());
  }
  lock.fd = std::move(*fd);
  return lock;
}

std::unique_ptr<Maildrop> empty_maildrop(UniqueFd session_lock) {
  return std::make_unique<EmptyMaildrop>(std::move(session_lock));
}

void make_uids_unique(std::vector<MaildropMessage>& messages) {
  std::unordered_set<std::string> own;  // every UID as computed, so no suffix takes one
  own.reserve(messages.size());
  for (const MaildropMessage& m : messages) own.insert(m.uid);
  if (own.size() == messages.size())
    return;
  std::unordered_set<std::string> used;
  std::unordered_map<std::string, unsigned> next_suffix;
  used.reserve(messages.size());
  for (MaildropMessage& m : messages) {
    if (used.insert(m.uid).second)
      continue;
    unsigned& n = next_suffix.try_emplace(m.uid, 2).first->second;
    for (;; ++n) {
      std::string candidate = m.uid + "-" + std::to_string(n);
      if (own.count(candidate) == 0 && used.insert(candidate).second) {
        m.uid = std::move(candidate);
        ++n;
        break;
      }
    }
  }
}

MaildropOpen open_maildrop(const MailboxSettings& settings, const Account& account) {
  auto path = mailbox_path(settings, account);
  if (!path) {
    MaildropOpen open;
    open.error = MaildropError::kTemporary;
    open.text = path.error().text();
    return open;
  }
  if (settings.maildir)
    return open_maildir_maildrop(*path, account.uid, account.name);
  return open_mbox_maildrop(*path, account.uid, settings.lock, account.name);
}

}  // namespace mailwright::pop3
