#include "pop3d/maildir_maildrop.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <tuple>

#include "libmail/file_io.h"
#include "libmail/log.h"
#include "pop3d/mbox_index.h"
#include "pop3d/message_wire.h"

namespace mailwright::pop3 {
namespace {

constexpr std::size_t kReadChunk = std::size_t{64} * 1024;
constexpr std::size_t kMaxPlainUid = 60;

using Dir = std::unique_ptr<DIR, FreeWith<closedir>>;

std::string_view base_of(std::string_view name) { return name.substr(0, name.find(':')); }

// The number after key in a base name such as "1700000000.M1P2Q3.host,S=120,W=124".
std::optional<std::uint64_t> name_field(std::string_view base, std::string_view key) {
  const auto at = base.find(key);
  if (at == std::string_view::npos)
    return std::nullopt;
  const char* begin = base.data() + at + key.size();
  const char* end = base.data() + base.size();
  std::uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr == begin || (ptr != end && *ptr != ','))
    return std::nullopt;
  return value;
}

// Delivery time from "SECONDS.M<usec>P...": the form mda, Dovecot and Courier use. Names
// without it sort by their leading number, then by name.
std::pair<std::uint64_t, std::uint64_t> delivery_time(std::string_view name) {
  std::uint64_t seconds = 0;
  std::uint64_t usec = 0;
  auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), seconds);
  if (ec != std::errc())
    return {0, 0};
  std::string_view rest = name.substr(static_cast<std::size_t>(p - name.data()));
  if (rest.size() > 2 && rest[0] == '.') {
    std::string_view field = rest.substr(1, rest.find('.', 1) - 1);
    const auto m = field.find('M');
    if (m != std::string_view::npos) {
      std::from_chars(field.data() + m + 1, field.data() + field.size(), usec);
    }
  }
  return {seconds, usec};
}

std::string uid_for(std::string_view base) {
  const bool plain =
      !base.empty() && base.size() <= kMaxPlainUid &&
      std::all_of(base.begin(), base.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
  if (plain)
    return std::string(base);
  // The same digest as mbox UIDs, over the name instead of a message: 32 hex digits.
  return uid_from_digest(message_digest("Maildir", base, base.size()));
}

Result<UniqueFd> open_directory(const std::string& path) {
  return open_file(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
}

Result<Dir> list_directory(const std::string& path) {
  auto fd = open_directory(path);
  if (!fd)
    return fd.error();
  DIR* dir = ::fdopendir(fd->get());
  if (dir == nullptr)
    return Error::from_errno(EX_TEMPFAIL, "opendir " + path, errno);
  fd->release();  // the DIR owns it now
  return Dir(dir);
}

// Reads the file once to count its wire size. nullopt: it is gone (another client deleted
// it, which is not an error).
Result<std::optional<std::uint64_t>> count_wire_size(const std::string& path) {
  auto fd = open_file(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (!fd) {
    if (errno == ENOENT)
      return std::optional<std::uint64_t>();
    return fd.error();
  }
  WireSizeCounter counter;
  std::string buf(kReadChunk, '\0');
  for (;;) {
    const ssize_t n = ::read(fd->get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return Error::from_errno(EX_TEMPFAIL, "read " + path, errno);
    }
    if (n == 0)
      break;
    counter.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)));
  }
  return std::optional<std::uint64_t>(counter.size());
}

class MaildirMessageStream final : public MessageStream {
 public:
  MaildirMessageStream(UniqueFd fd, std::optional<std::uint64_t> top_lines)
      : fd_(std::move(fd)), encoder_({false, top_lines}) {}

  Result<bool> next(std::string& out, std::size_t max) override {
    if (done_)
      return false;
    buf_.resize(std::clamp<std::size_t>(max / 2, 4096, kReadChunk));
    ssize_t n = 0;
    do {
      n = ::read(fd_.get(), buf_.data(), buf_.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0)
      return Error::from_errno(EX_TEMPFAIL, "read message", errno);
    if (n > 0) {
      if (encoder_.feed(std::string_view(buf_.data(), static_cast<std::size_t>(n)), out)) {
        return true;
      }
      done_ = true;  // TOP has all it wants
      return false;
    }
    encoder_.finish(out);
    done_ = true;
    return false;
  }

 private:
  UniqueFd fd_;
  WireEncoder encoder_;
  std::string buf_;
  bool done_ = false;
};

class MaildirMaildrop final : public Maildrop {
 public:
  MaildirMaildrop(std::string dir, std::string log_id, UniqueFd session_lock,
                  std::vector<std::string> files, std::vector<MaildropMessage> messages)
      : dir_(std::move(dir)),
        log_id_(std::move(log_id)),
        session_lock_(std::move(session_lock)),
        files_(std::move(files)),
        messages_(std::move(messages)) {}

  const std::vector<MaildropMessage>& messages() const override { return messages_; }

  Result<std::unique_ptr<MessageStream>> open_message(
      std::size_t index, std::optional<std::uint64_t> top_lines) override {
    check_index(index);
    constexpr int kFlags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
    auto fd = open_file(path_of(index), kFlags);
    int err = fd ? 0 : errno;
    if (err == ENOENT && relocate(index)) {
      fd = open_file(path_of(index), kFlags);
      err = fd ? 0 : errno;
    }
    if (!fd) {
      if (err == ENOENT) {
        return Error::permanent(EX_NOINPUT, "5.2.0", "message was removed by another client");
      }
      return fd.error();
    }
    struct stat st {};
    if (::fstat(fd->get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return Error::temporary(EX_TEMPFAIL, "4.2.0", path_of(index) + ": not a regular file");
    }
    return std::unique_ptr<MessageStream>(new MaildirMessageStream(std::move(*fd), top_lines));
  }

  Status commit(const std::vector<bool>& deleted) override {
    if (deleted.size() != files_.size()) {
      log_error(log_id_, "bug: commit of %zu flags for %zu messages", deleted.size(),
                files_.size());
      std::abort();
    }
    Status result;
    bool touched_cur = false;
    bool touched_new = false;
    for (std::size_t i = 0; i < files_.size(); ++i) {
      if (!deleted[i])
        continue;
      int rc = ::unlink(path_of(i).c_str());
      if (rc != 0 && errno == ENOENT) {
        if (!relocate(i))
          continue;  // already gone: what DELE wanted
        rc = ::unlink(path_of(i).c_str());
      }
      if (rc != 0 && errno != ENOENT) {
        if (result)
          result = Error::from_errno(EX_TEMPFAIL, "unlink " + path_of(i), errno);
        continue;
      }
      (files_[i].compare(0, 4, "new/") == 0 ? touched_new : touched_cur) = true;
    }
    // Make the removals durable before the client is told they happened.
    for (auto [touched, sub] : {std::pair{touched_cur, "/cur"}, std::pair{touched_new, "/new"}}) {
      if (!touched)
        continue;
      if (auto synced = fsync_directory(dir_ + sub); !synced && result)
        result = synced;
    }
    return result;
  }

 private:
  void check_index(std::size_t index) const {
    if (index < files_.size())
      return;
    log_error(log_id_, "bug: message index %zu of %zu", index, files_.size());
    std::abort();
  }
  std::string path_of(std::size_t index) const { return dir_ + "/" + files_[index]; }

  // Finds message index in cur/ under a new name (its flags changed). False if it is gone.
  bool relocate(std::size_t index) {
    const std::string_view base = base_of(std::string_view(files_[index]).substr(4));
    auto dir = list_directory(dir_ + "/cur");
    if (!dir)
      return false;
    while (const struct dirent* entry = ::readdir(dir->get())) {
      const std::string_view name = entry->d_name;
      if (base_of(name) == base) {
        files_[index] = "cur/" + std::string(name);
        return true;
      }
    }
    return false;
  }

  std::string dir_;
  std::string log_id_;
  UniqueFd session_lock_;
  std::vector<std::string> files_;  // "cur/NAME" or "new/NAME"
  std::vector<MaildropMessage> messages_;
};

struct Found {
  std::string file;  // "cur/NAME" or "new/NAME"
  std::uint64_t seconds = 0;
  std::uint64_t usec = 0;
  std::uint64_t size_on_disk = 0;
};

// Moves new/ into cur/ (appending ":2,") and lists what is then in cur/, plus what could not
// be moved.
Status collect(const std::string& dir, std::vector<Found>& found) {
  auto cur_fd = open_directory(dir + "/cur");
  const bool have_cur = static_cast<bool>(cur_fd);
  if (!have_cur && errno != ENOENT)
    return cur_fd.error();
  auto add = [&](int dir_fd, std::string_view sub, std::string_view name) -> Status {
    struct stat st {};
    const std::string n(name);
    if (::fstatat(dir_fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT)
        return {};  // deleted meanwhile by another client
      return Error::from_errno(EX_TEMPFAIL, dir + "/" + std::string(sub) + "/" + n, errno);
    }
    if (!S_ISREG(st.st_mode))
      return {};
    if (found.size() >= kMaxMaildropMessages) {
      return Error::temporary(EX_TEMPFAIL, "4.3.0",
                              dir + " holds more than " + std::to_string(kMaxMaildropMessages) +
                                  " messages, too many for POP3");
    }
    auto [seconds, usec] = delivery_time(name);
    found.push_back(
        {std::string(sub) + "/" + n, seconds, usec, static_cast<std::uint64_t>(st.st_size)});
    return {};
  };

  if (auto new_dir = list_directory(dir + "/new"); new_dir) {
    const int new_fd = ::dirfd(new_dir->get());
    while (const struct dirent* entry = ::readdir(new_dir->get())) {
      const std::string name = entry->d_name;
      if (name.empty() || name[0] == '.')
        continue;
      if (have_cur) {
        const std::string target = name.find(':') == std::string::npos ? name + ":2," : name;
        // NOREPLACE: a name already in cur/ is another message's; leave this one in new/.
        if (::renameat2(new_fd, name.c_str(), cur_fd->get(), target.c_str(), RENAME_NOREPLACE) ==
            0) {
          continue;  // listed with cur/ below
        }
        if (errno == ENOENT)
          continue;
      }
      if (auto st = add(new_fd, "new", name); !st)
        return st;
    }
  } else if (errno != ENOENT) {
    return new_dir.error();
  }

  if (have_cur) {
    auto cur_dir = list_directory(dir + "/cur");
    if (!cur_dir)
      return cur_dir.error();
    const int fd = ::dirfd(cur_dir->get());
    while (const struct dirent* entry = ::readdir(cur_dir->get())) {
      const std::string_view name = entry->d_name;
      if (name.empty() || name[0] == '.')
        continue;
      if (auto st = add(fd, "cur", name); !st)
        return st;
    }
  }
  return {};
}

}  // namespace

MaildropOpen open_maildir_maildrop(const std::string& dir, uid_t owner, std::string_view log_id) {
  auto refuse = [](std::string text) {
    MaildropOpen open;
    open.error = MaildropError::kTemporary;
    open.text = std::move(text);
    return open;
  };
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return {empty_maildrop(UniqueFd()), MaildropError::kNone, {}};
    return refuse(Error::from_errno(EX_TEMPFAIL, dir, errno).text());
  }
  if (S_ISLNK(st.st_mode))
    return refuse(dir + " is a symbolic link; refusing to follow it");
  if (!S_ISDIR(st.st_mode))
    return refuse(dir + " is not a directory; refusing it");
  if (st.st_uid != owner)
    return refuse(dir + " is owned by another user; refusing it");

  SessionLock session = take_session_lock(dir + "/" + std::string(kMaildirSessionLock));
  if (session.error != MaildropError::kNone) {
    MaildropOpen open;
    open.error = session.error;
    open.text = session.text;
    return open;
  }

  std::vector<Found> found;
  if (auto collected = collect(dir, found); !collected)
    return refuse(collected.error().text());
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
    return std::tie(a.seconds, a.usec, a.file) < std::tie(b.seconds, b.usec, b.file);
  });

  std::vector<std::string> files;
  std::vector<MaildropMessage> messages;
  files.reserve(found.size());
  messages.reserve(found.size());
  for (Found& f : found) {
    const std::string_view base = base_of(std::string_view(f.file).substr(4));
    std::optional<std::uint64_t> size;
    const auto stored = name_field(base, ",S=");
    const auto wire = name_field(base, ",W=");
    if (stored && wire && *stored == f.size_on_disk) {
      size = *wire;
    } else {
      auto counted = count_wire_size(dir + "/" + f.file);
      if (!counted)
        return refuse(counted.error().text());
      if (!*counted)
        continue;  // removed meanwhile
      size = **counted;
    }
    messages.push_back({*size, uid_for(base)});
    files.push_back(std::move(f.file));
  }
  make_uids_unique(messages);
  log_debug(log_id, "%s: %zu messages", dir.c_str(), messages.size());
  return {std::make_unique<MaildirMaildrop>(dir, std::string(log_id), std::move(session.fd),
                                            std::move(files), std::move(messages)),
          MaildropError::kNone,
          {}};
}

}  // namespace mailwright::pop3
