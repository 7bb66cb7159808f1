#include "pop3d/mbox_maildrop.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <optional>

#include "libmail/file_io.h"
#include "libmail/log.h"
#include "pop3d/message_wire.h"

namespace mailwright::pop3 {
namespace {

constexpr std::string_view kFrom = "From ";
constexpr std::size_t kScanChunk = std::size_t{1024} * 1024;
constexpr std::size_t kStreamChunk = std::size_t{64} * 1024;
constexpr std::size_t kCopyChunk = std::size_t{1024} * 1024;
// The largest index file a valid index can be (kMaxMaildropMessages records).
constexpr std::size_t kMaxIndexFile = 72 + kMaxMaildropMessages * 48 + 32;

std::string sibling(const std::string& mailbox, std::string_view suffix) {
  const std::string dir = parent_directory(mailbox);
  const auto slash = mailbox.rfind('/');
  const std::string name = slash == std::string::npos ? mailbox : mailbox.substr(slash + 1);
  return (dir == "/" ? "" : dir) + "/." + name + std::string(suffix);
}

MaildropOpen refuse(MaildropError error, std::string text) {
  MaildropOpen open;
  open.error = error;
  open.text = std::move(text);
  return open;
}

Error changed_since_open(const std::string& path, std::string_view what) {
  return Error::temporary(EX_TEMPFAIL, "4.2.0",
                          path + ": " + std::string(what) +
                              " since the session began (another program changed the "
                              "mailbox); no messages were deleted");
}

// Reads exactly len octets at offset; fewer means the file shrank under us.
Result<std::string> pread_exact(int fd, std::uint64_t offset, std::size_t len) {
  std::string buf(len, '\0');
  auto got = pread_full(fd, buf.data(), len, static_cast<off_t>(offset));
  if (!got)
    return got.error();
  if (*got != len)
    return Error::temporary(EX_TEMPFAIL, "4.3.0", "mailbox shrank while read");
  return buf;
}

// The From_ line (without LF, cut for the digest) and first octets of a message, as the
// builder saw them.
Result<MessageDigest> digest_on_disk(int fd, const IndexedMessage& m) {
  const std::uint64_t from_len = m.start - m.from_line;
  const std::size_t from_read =
      static_cast<std::size_t>(std::min<std::uint64_t>(from_len, kUidFromLineOctets + 1));
  const std::size_t head_read =
      static_cast<std::size_t>(std::min<std::uint64_t>(m.end - m.start, kUidHeadOctets));
  auto from = pread_exact(fd, m.from_line, from_read);
  if (!from)
    return from.error();
  auto head = pread_exact(fd, m.start, head_read);
  if (!head)
    return head.error();
  std::string_view from_text = *from;
  if (from_read == from_len && !from_text.empty() && from_text.back() == '\n') {
    from_text.remove_suffix(1);
  }
  return message_digest(from_text, *head, m.end - m.start);
}

// Why a mailbox may not be used; empty if it may.
std::string unusable_mailbox(const std::string& path, const struct stat& st, uid_t owner) {
  if (!S_ISREG(st.st_mode))
    return path + " is not a regular file; refusing it";
  if (st.st_nlink != 1)
    return path + " has more than one link; refusing it";
  if (st.st_uid != owner)
    return path + " is owned by another user; refusing it";
  return {};
}

// missing is set when the mailbox does not exist.
Result<UniqueFd> open_mailbox(const std::string& path, int mode, bool* missing = nullptr) {
  // O_NONBLOCK: a FIFO planted in the spool must not hang the session.
  auto fd = open_file(path, mode | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd)
    return fd;
  const int err = errno;
  if (missing)
    *missing = err == ENOENT;
  if (err == ELOOP) {
    return Error::temporary(EX_TEMPFAIL, "4.2.0",
                            path + " is a symbolic link; refusing to follow it");
  }
  return Error::from_errno(EX_TEMPFAIL, "cannot open " + path, err);
}

std::optional<MboxIndex> load_index(const std::string& index_path, std::string_view* problem) {
  auto fd = open_file(index_path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (!fd) {
    *problem = errno == ENOENT ? "no index" : "index unreadable";
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    *problem = "index is not a regular file";
    return std::nullopt;
  }
  // Someone else's file in a shared spool could say anything: only our own is read.
  if (st.st_uid != ::geteuid()) {
    *problem = "index owned by another user";
    return std::nullopt;
  }
  if (static_cast<std::uint64_t>(st.st_size) > kMaxIndexFile) {
    *problem = "index too large";
    return std::nullopt;
  }
  std::string data(static_cast<std::size_t>(st.st_size), '\0');
  auto got = pread_full(fd->get(), data.data(), data.size(), 0);
  if (!got || *got != data.size()) {
    *problem = "index unreadable";
    return std::nullopt;
  }
  MboxIndexParse parsed = parse_mbox_index(data);
  if (!parsed.ok) {
    *problem = parsed.problem;
    return std::nullopt;
  }
  return std::move(parsed.index);
}

bool has_from_line_at(int fd, std::uint64_t offset) {
  char buf[5];
  auto got = pread_full(fd, buf, sizeof buf, static_cast<off_t>(offset));
  return got && *got == sizeof buf && std::string_view(buf, sizeof buf) == kFrom;
}

// The last min(8, size) octets before size.
Result<std::array<char, 8>> tail_before(int fd, std::uint64_t size) {
  const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(size, 8));
  auto last = pread_exact(fd, size - n, n);
  if (!last)
    return last.error();
  return index_tail(*last);
}

// Decides how the index can be used for the open mailbox, reading at most a few octets.
IndexUse judge_index(const MboxIndex& index, int fd, const struct stat& st,
                     std::string_view* problem) {
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (index.device != static_cast<std::uint64_t>(st.st_dev) ||
      index.inode != static_cast<std::uint64_t>(st.st_ino)) {
    *problem = "index is for another file";
    return IndexUse::kFullScan;
  }
  if (index.covered > size) {
    *problem = "mailbox shrank";
    return IndexUse::kFullScan;
  }
  auto tail = tail_before(fd, index.covered);
  if (!tail || *tail != index.tail) {
    *problem = "mailbox changed before the indexed size";
    return IndexUse::kFullScan;
  }
  if (!index.messages.empty() && (!has_from_line_at(fd, index.messages.front().from_line) ||
                                  !has_from_line_at(fd, index.messages.back().from_line))) {
    *problem = "From_ line not where the index says";
    return IndexUse::kFullScan;
  }
  if (index.covered == size) {
    if (index.mtime_sec != st.st_mtim.tv_sec || index.mtime_nsec != st.st_mtim.tv_nsec) {
      *problem = "mailbox modified in place";
      return IndexUse::kFullScan;
    }
    return IndexUse::kWarm;
  }
  // Only appended mail can be scanned on its own: the covered part must end where a scan
  // starts afresh (after an empty line), and a From_ line must follow, as mda writes it.
  const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(index.covered, 8));
  const bool clean_end =
      index.covered == 0 || (index.tail[n - 1] == '\n' && (n == 1 || index.tail[n - 2] == '\n'));
  if (!clean_end || !has_from_line_at(fd, index.covered)) {
    *problem = "mailbox grew, but not by appended messages";
    return IndexUse::kFullScan;
  }
  return IndexUse::kIncremental;
}

Status scan_range(int fd, std::uint64_t from, std::uint64_t to, MboxIndexBuilder& builder) {
  // Advice only; the scan works without it.
  (void)::posix_fadvise(fd, static_cast<off_t>(from), static_cast<off_t>(to - from),
                        POSIX_FADV_SEQUENTIAL);
  std::string buf(kScanChunk, '\0');
  std::uint64_t pos = from;
  while (pos < to && !builder.too_many()) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(kScanChunk, to - pos));
    auto got = pread_full(fd, buf.data(), want, static_cast<off_t>(pos));
    if (!got)
      return got.error();
    if (*got != want)
      return Error::temporary(EX_TEMPFAIL, "4.3.0", "mailbox shrank while read");
    builder.feed(std::string_view(buf.data(), want));
    pos += want;
  }
  return {};
}

class MboxMessageStream final : public MessageStream {
 public:
  MboxMessageStream(std::shared_ptr<const UniqueFd> fd, const IndexedMessage& m,
                    std::optional<std::uint64_t> top_lines)
      : fd_(std::move(fd)), pos_(m.start), end_(m.end), encoder_({true, top_lines}) {}

  Result<bool> next(std::string& out, std::size_t max) override {
    if (done_)
      return false;
    if (pos_ < end_) {
      // Encoding at most doubles the octets (every one a bare LF, or "." lines stuffed).
      const std::size_t want = static_cast<std::size_t>(
          std::min<std::uint64_t>(end_ - pos_, std::clamp<std::size_t>(max / 2, 4096, kStreamChunk)));
      buf_.resize(want);
      auto got = pread_full(fd_->get(), buf_.data(), want, static_cast<off_t>(pos_));
      if (!got)
        return got.error();
      if (*got != want) {
        return Error::temporary(EX_TEMPFAIL, "4.3.0", "mailbox shrank while a message was read");
      }
      pos_ += want;
      if (!encoder_.feed(buf_, out)) {
        done_ = true;  // TOP has all it wants
        return false;
      }
      if (pos_ < end_)
        return true;
    }
    encoder_.finish(out);
    done_ = true;
    return false;
  }

 private:
  std::shared_ptr<const UniqueFd> fd_;
  std::uint64_t pos_;
  std::uint64_t end_;
  WireEncoder encoder_;
  std::string buf_;
  bool done_ = false;
};

class MboxMaildrop final : public Maildrop {
 public:
  MboxMaildrop(std::string path, uid_t owner, LockPolicy lock, std::string log_id,
               UniqueFd session_lock, UniqueFd mailbox, const struct stat& opened,
               std::vector<IndexedMessage> index, MboxScanReport report)
      : path_(std::move(path)),
        owner_(owner),
        lock_(lock),
        log_id_(std::move(log_id)),
        session_lock_(std::move(session_lock)),
        fd_(std::make_shared<UniqueFd>(std::move(mailbox))),
        opened_(opened),
        index_(std::move(index)),
        report_(report) {
    messages_.reserve(index_.size());
    for (const IndexedMessage& m : index_)
      messages_.push_back({m.wire_size, uid_from_digest(m.digest)});
    make_uids_unique(messages_);
  }

  const std::vector<MaildropMessage>& messages() const override { return messages_; }

  Result<std::unique_ptr<MessageStream>> open_message(
      std::size_t index, std::optional<std::uint64_t> top_lines) override {
    if (index >= index_.size()) {
      log_error(log_id_, "bug: message index %zu of %zu", index, index_.size());
      std::abort();
    }
    return std::unique_ptr<MessageStream>(new MboxMessageStream(fd_, index_[index], top_lines));
  }

  Status commit(const std::vector<bool>& deleted) override;

  const MboxScanReport& report() const { return report_; }

 private:
  struct Run {  // octets [from, to) of the old mailbox, copied in order to the new one
    std::uint64_t from;
    std::uint64_t to;
  };
  Status verify_kept(int fd, const std::vector<bool>& deleted) const;
  void write_new_index(int new_fd, std::uint64_t covered, std::array<char, 8> tail,
                       std::vector<IndexedMessage> kept) const;

  std::string path_;
  uid_t owner_;
  LockPolicy lock_;
  std::string log_id_;
  UniqueFd session_lock_;
  std::shared_ptr<UniqueFd> fd_;  // the mailbox as opened; streams share it
  struct stat opened_;
  std::vector<IndexedMessage> index_;
  std::vector<MaildropMessage> messages_;
  MboxScanReport report_;
  bool committed_ = false;
};

Status MboxMaildrop::verify_kept(int fd, const std::vector<bool>& deleted) const {
  for (std::size_t i = 0; i < index_.size(); ++i) {
    if (deleted[i])
      continue;
    auto digest = digest_on_disk(fd, index_[i]);
    if (!digest || *digest != index_[i].digest) {
      return changed_since_open(path_, "message " + std::to_string(i + 1) + " changed");
    }
  }
  return {};
}

void MboxMaildrop::write_new_index(int new_fd, std::uint64_t covered, std::array<char, 8> tail,
                                   std::vector<IndexedMessage> kept) const {
  const std::string index_path = mbox_index_path(path_);
  struct stat st {};
  Status written;
  if (::fstat(new_fd, &st) != 0) {
    written = Error::from_errno(EX_IOERR, "fstat new mailbox", errno);
  } else {
    MboxIndex index;
    index.device = static_cast<std::uint64_t>(st.st_dev);
    index.inode = static_cast<std::uint64_t>(st.st_ino);
    index.covered = covered;
    index.mtime_sec = st.st_mtim.tv_sec;
    index.mtime_nsec = st.st_mtim.tv_nsec;
    index.tail = tail;
    index.messages = std::move(kept);
    written = replace_file_atomically(index_path, serialize_mbox_index(index), 0600);
  }
  if (!written) {
    // The old index names the old inode and would be ignored; remove it all the same.
    log_warning(log_id_, "cannot write %s: %s", index_path.c_str(), written.error().text().c_str());
    ::unlink(index_path.c_str());
  }
}

Status MboxMaildrop::commit(const std::vector<bool>& deleted) {
  if (deleted.size() != index_.size()) {
    log_error(log_id_, "bug: commit of %zu flags for %zu messages", deleted.size(), index_.size());
    std::abort();
  }
  if (std::find(deleted.begin(), deleted.end(), true) == deleted.end())
    return {};
  if (committed_) {
    return Error::temporary(EX_SOFTWARE, "4.3.0", "maildrop already committed");
  }
  const std::uint64_t size_at_open = static_cast<std::uint64_t>(opened_.st_size);

  auto dotlock = DotLock::acquire(path_, lock_);
  if (!dotlock)
    return dotlock.error();
  // Declared after the dotlock: closed (dropping the fcntl lock) before the dotlock goes.
  auto fd = open_mailbox(path_, O_RDWR);
  if (!fd)
    return changed_since_open(path_, "the mailbox cannot be opened again");
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0)
    return Error::from_errno(EX_TEMPFAIL, path_, errno);
  if (st.st_dev != opened_.st_dev || st.st_ino != opened_.st_ino) {
    return changed_since_open(path_, "the mailbox was replaced");
  }
  if (std::string why = unusable_mailbox(path_, st, owner_); !why.empty()) {
    return Error::temporary(EX_TEMPFAIL, "4.2.0", why);
  }
  if (auto locked = lock_fcntl(fd->get(), true, lock_.timeout); !locked)
    return locked.error();
  // Again under the lock: a writer that takes only the fcntl lock may have appended.
  if (::fstat(fd->get(), &st) != 0)
    return Error::from_errno(EX_TEMPFAIL, path_, errno);
  const auto size_now = static_cast<std::uint64_t>(st.st_size);
  if (size_now < size_at_open)
    return changed_since_open(path_, "the mailbox shrank");
  if (auto ok = verify_kept(fd->get(), deleted); !ok)
    return ok;

  // The runs of the old file that make up the new one, and where the kept messages land.
  std::vector<Run> runs;
  std::vector<IndexedMessage> kept;
  auto add_run = [&](std::uint64_t from, std::uint64_t to) {
    if (from == to)
      return;
    if (!runs.empty() && runs.back().to == from) {
      runs.back().to = to;
    } else {
      runs.push_back({from, to});
    }
  };
  // Whatever precedes the first message (not an mbox's own text) is kept as it is.
  add_run(0, index_.front().from_line);
  std::uint64_t out_size = index_.front().from_line;
  for (std::size_t i = 0; i < index_.size(); ++i) {
    if (deleted[i])
      continue;
    // A message's segment runs to the next From_ line: its separating empty line goes along.
    const std::uint64_t seg_from = index_[i].from_line;
    const std::uint64_t seg_to = i + 1 < index_.size() ? index_[i + 1].from_line : size_at_open;
    IndexedMessage moved = index_[i];
    const std::uint64_t new_from = out_size;
    moved.from_line = new_from;
    moved.start = new_from + (index_[i].start - seg_from);
    moved.end = new_from + (index_[i].end - seg_from);
    kept.push_back(moved);
    add_run(seg_from, seg_to);
    out_size += seg_to - seg_from;
  }
  const std::uint64_t kept_size = out_size;

  const std::string temp_path = mbox_commit_temp_path(path_);
  ::unlink(temp_path.c_str());
  auto out = create_exclusive(temp_path, 0600);
  if (!out)
    return out.error().with_context("cannot create the new mailbox");
  struct RemoveUnlessRenamed {
    const std::string& path;
    bool renamed = false;
    ~RemoveUnlessRenamed() {
      if (!renamed)
        ::unlink(path.c_str());
    }
  } cleanup{temp_path};
  // Same owner and group as the old file where the system lets us (it is our own file; the
  // group may be the spool's); the mode in any case.
  if (::fchown(out->get(), st.st_uid, st.st_gid) != 0) {
    log_debug(log_id_, "keeping the new mailbox's default group: fchown failed");
  }
  if (::fchmod(out->get(), st.st_mode & 07777) != 0) {
    return Error::from_errno(EX_TEMPFAIL, "fchmod " + temp_path, errno);
  }

  std::string buf(kCopyChunk, '\0');
  std::string last_written;  // the last octets of the kept part, for the new index
  unsigned chunks = 0;
  bool kernel_copy = true;  // copy_file_range, until the file system says it cannot
  auto copy = [&](std::uint64_t from, std::uint64_t to) -> Status {
    while (from < to) {
      // A copy of gigabytes on a slow disk must not look like a dotlock left by a crash.
      if (++chunks % 64 == 0)
        dotlock->touch();
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(kCopyChunk, to - from));
      if (kernel_copy) {
        // The kept messages move inside the kernel: no copy through user space, and on file
        // systems that can, no copy of the data at all.
        auto in_off = static_cast<off64_t>(from);
        ssize_t n = ::copy_file_range(fd->get(), &in_off, out->get(), nullptr, want, 0);
        if (n > 0) {
          const auto moved = static_cast<std::size_t>(n);
          const std::size_t tail = std::min<std::size_t>(moved, 8);
          auto last = pread_exact(fd->get(), from + moved - tail, tail);
          if (!last)
            return last.error();
          last_written.append(*last);
          if (last_written.size() > 8)
            last_written.erase(0, last_written.size() - 8);
          from += moved;
          continue;
        }
        if (n == 0)
          return changed_since_open(path_, "the mailbox shrank");
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
          return Error::from_errno(EX_TEMPFAIL, "copy_file_range " + temp_path, errno);
        kernel_copy = false;
      }
      auto got = pread_full(fd->get(), buf.data(), want, static_cast<off_t>(from));
      if (!got)
        return got.error();
      if (*got != want)
        return changed_since_open(path_, "the mailbox shrank");
      std::string_view piece(buf.data(), want);
      if (auto w = write_all(out->get(), piece); !w)
        return w.error().with_context(temp_path);
      last_written.append(piece.substr(piece.size() - std::min<std::size_t>(piece.size(), 8)));
      if (last_written.size() > 8)
        last_written.erase(0, last_written.size() - 8);
      from += want;
    }
    return {};
  };
  for (const Run& run : runs) {
    if (auto st2 = copy(run.from, run.to); !st2)
      return st2;
  }
  const std::array<char, 8> kept_tail = index_tail(last_written);

  // Mail delivered during the session. mda mended a missing separator in front of it; if the
  // message it followed is gone and the kept part already ends in an empty line, those extra
  // newlines would become part of the last kept message, so they are dropped.
  std::uint64_t tail_from = size_at_open;
  if (size_now > size_at_open) {
    const bool clean = kept_size == 0 || (last_written.size() >= 2 &&
                                          last_written.substr(last_written.size() - 2) == "\n\n");
    if (clean) {
      auto peek = pread_exact(fd->get(), size_at_open,
                              static_cast<std::size_t>(std::min<std::uint64_t>(
                                  size_now - size_at_open, 2 + kFrom.size())));
      if (!peek)
        return peek.error();
      std::size_t newlines = 0;
      while (newlines < 2 && newlines < peek->size() && (*peek)[newlines] == '\n') ++newlines;
      if (newlines > 0 && peek->compare(newlines, kFrom.size(), kFrom) == 0) {
        tail_from += newlines;
      }
    }
    if (auto st2 = copy(tail_from, size_now); !st2)
      return st2;
  }

  if (auto synced = fsync_fd(out->get(), temp_path); !synced)
    return synced;
  if (::rename(temp_path.c_str(), path_.c_str()) != 0) {
    return Error::from_errno(EX_TEMPFAIL, "rename " + temp_path + " to " + path_, errno);
  }
  cleanup.renamed = true;
  committed_ = true;
  Status durable = fsync_directory(parent_directory(path_));
  write_new_index(out->get(), kept_size, kept_tail, std::move(kept));
  if (out->close() != 0) {
    // The data was fsync'd; a late close error changes nothing on disk.
    log_warning(log_id_, "close %s failed after the rename", temp_path.c_str());
  }
  if (!durable)
    return durable.error().with_context("deleted, but not yet durable");
  return {};
}

struct Snapshot {
  UniqueFd fd;  // invalid: the mailbox does not exist
  struct stat st {};
  MboxIndex index;
  MboxScanReport report;
};

// Under the delivery lock: opens the mailbox, checks it, and brings the index up to date
// with it. Both locks are released on return; the index is not yet written.
Result<Snapshot> snapshot_mailbox(const std::string& path, uid_t owner, const LockPolicy& lock,
                                  std::string_view log_id) {
  Snapshot snap;
  auto dotlock = DotLock::acquire(path, lock);
  if (!dotlock)
    return dotlock.error();
  bool missing = false;
  auto fd = open_mailbox(path, O_RDONLY, &missing);
  if (!fd) {
    if (missing)
      return snap;
    return fd.error();
  }
  struct stat& st = snap.st;
  if (::fstat(fd->get(), &st) != 0)
    return Error::from_errno(EX_TEMPFAIL, "fstat " + path, errno);
  if (std::string why = unusable_mailbox(path, st, owner); !why.empty()) {
    return Error::temporary(EX_TEMPFAIL, "4.2.0", why);
  }
  // Shared: excludes mda's exclusive lock while we read, admits other readers. Released before
  // the dotlock (declared after it).
  if (auto locked = lock_fcntl(fd->get(), false, lock.timeout); !locked) {
    return locked.error().with_context(path);
  }
  struct Unlock {
    int fd;
    ~Unlock() { unlock_fcntl(fd); }
  } unlock{fd->get()};
  const auto size = static_cast<std::uint64_t>(st.st_size);

  MboxScanReport& report = snap.report;
  std::optional<MboxIndex> index = load_index(mbox_index_path(path), &report.rebuild_reason);
  if (index)
    report.use = judge_index(*index, fd->get(), st, &report.rebuild_reason);
  if (!index || report.use == IndexUse::kFullScan) {
    index.emplace();
    report.use = IndexUse::kFullScan;
  }
  if (report.use != IndexUse::kWarm) {
    const std::uint64_t from = report.use == IndexUse::kIncremental ? index->covered : 0;
    MboxIndexBuilder builder(from, kMaxMaildropMessages - index->messages.size());
    if (auto scanned = scan_range(fd->get(), from, size, builder); !scanned) {
      return scanned.error().with_context(path);
    }
    std::vector<IndexedMessage> found = builder.finish();
    if (builder.too_many()) {
      return Error::temporary(EX_TEMPFAIL, "4.3.0",
                              path + " holds more than " + std::to_string(kMaxMaildropMessages) +
                                  " messages, too many for POP3");
    }
    if (from == 0 && builder.garbage_before_first()) {
      log_warning(log_id,
                  "%s does not start with a From_ line; the text before the first "
                  "message is kept, not shown",
                  path.c_str());
    }
    report.scanned_octets = size - from;
    index->messages.insert(index->messages.end(), found.begin(), found.end());
    auto tail = tail_before(fd->get(), size);
    if (!tail)
      return tail.error().with_context(path);
    index->device = static_cast<std::uint64_t>(st.st_dev);
    index->inode = static_cast<std::uint64_t>(st.st_ino);
    index->covered = size;
    index->mtime_sec = st.st_mtim.tv_sec;
    index->mtime_nsec = st.st_mtim.tv_nsec;
    index->tail = *tail;
  }
  log_debug(log_id, "%s: %zu messages, index %s%s%.*s", path.c_str(), index->messages.size(),
            report.use == IndexUse::kWarm          ? "current"
            : report.use == IndexUse::kIncremental ? "extended"
                                                   : "rebuilt",
            report.rebuild_reason.empty() ? "" : ": ",
            static_cast<int>(report.rebuild_reason.size()), report.rebuild_reason.data());
  snap.index = std::move(*index);
  snap.fd = std::move(*fd);
  return snap;
}

}  // namespace

std::string mbox_session_lock_path(const std::string& mailbox) {
  return sibling(mailbox, ".pop3lock");
}
std::string mbox_index_path(const std::string& mailbox) { return sibling(mailbox, ".pop3idx"); }
std::string mbox_commit_temp_path(const std::string& mailbox) {
  return sibling(mailbox, ".pop3new");
}

const MboxScanReport* mbox_scan_report(const Maildrop& maildrop) {
  const auto* mbox = dynamic_cast<const MboxMaildrop*>(&maildrop);
  return mbox ? &mbox->report() : nullptr;
}

MaildropOpen open_mbox_maildrop(const std::string& path, uid_t owner, const LockPolicy& lock,
                                std::string_view log_id) {
  SessionLock session = take_session_lock(mbox_session_lock_path(path));
  if (session.error != MaildropError::kNone)
    return refuse(session.error, session.text);
  if (session.directory_missing)
    return {empty_maildrop(UniqueFd()), MaildropError::kNone, {}};
  // A commit that crashed before its rename; ours, since we hold the session lock.
  ::unlink(mbox_commit_temp_path(path).c_str());

  auto snapshot = snapshot_mailbox(path, owner, lock, log_id);
  if (!snapshot)
    return refuse(MaildropError::kTemporary, snapshot.error().text());
  if (!snapshot->fd)
    return {empty_maildrop(std::move(session.fd)), MaildropError::kNone, {}};

  if (snapshot->report.use != IndexUse::kWarm) {
    // After the locks are gone: an fsync must not hold up deliveries. An optimisation only: a
    // spool we cannot write to costs a scan per login, nothing more.
    const std::string index_path = mbox_index_path(path);
    if (auto written = replace_file_atomically(index_path, serialize_mbox_index(snapshot->index), 0600);
        !written) {
      log_warning(log_id, "cannot write %s: %s", index_path.c_str(),
                  written.error().text().c_str());
    }
  }
  auto maildrop = std::make_unique<MboxMaildrop>(
      path, owner, lock, std::string(log_id), std::move(session.fd), std::move(snapshot->fd),
      snapshot->st, std::move(snapshot->index.messages), snapshot->report);
  return {std::move(maildrop), MaildropError::kNone, {}};
}

}  // namespace mailwright::pop3
