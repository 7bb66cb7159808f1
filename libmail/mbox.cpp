#include "libmail/mbox.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "libmail/file_io.h"

namespace mailwright {
namespace {

constexpr std::string_view kFrom = "From ";
constexpr std::size_t kCopyChunk = 64 * 1024;

}  // namespace

std::string mbox_sender(std::string_view sender) {
  if (sender.size() >= 2 && sender.front() == '<' && sender.back() == '>') {
    sender = sender.substr(1, sender.size() - 2);
  }
  if (sender.empty()) return "MAILER-DAEMON";
  std::string out(sender);
  for (char& c : out) {
    if (c == ' ' || c == '\t') c = '_';
  }
  return out;
}

std::string mbox_from_line(std::string_view sender, std::time_t when) {
  struct tm tm {};
  ::localtime_r(&when, &tm);
  char date[64];
  std::strftime(date, sizeof date, "%a %b %e %H:%M:%S %Y", &tm);
  return "From " + mbox_sender(sender) + " " + date + "\n";
}

void MboxrdQuoter::emit(std::string_view s, std::string& out) {
  if (s.empty()) return;
  out.append(s);
  wrote_any_ = true;
  last_was_newline_ = s.back() == '\n';
}

void MboxrdQuoter::feed(std::string_view in, std::string& out) {
  std::size_t pos = 0;
  while (pos < in.size()) {
    if (at_line_start_) {
      const char c = in[pos++];
      pending_.push_back(c);
      if (c == '\n') {
        emit(pending_, out);
        pending_.clear();
        continue;
      }
      std::string_view rest(pending_);
      rest.remove_prefix(std::min(rest.find_first_not_of('>'), rest.size()));
      if (rest.empty()) continue;  // only '>' so far: cannot decide yet
      if (kFrom.substr(0, rest.size()) == rest) {
        if (rest.size() == kFrom.size()) {
          emit(">", out);
          emit(pending_, out);
          pending_.clear();
          at_line_start_ = false;
        }
        continue;
      }
      emit(pending_, out);
      pending_.clear();
      at_line_start_ = false;
      continue;
    }
    const void* nl = std::memchr(in.data() + pos, '\n', in.size() - pos);
    std::size_t end = nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - in.data()) + 1
                         : in.size();
    emit(in.substr(pos, end - pos), out);
    pos = end;
    if (nl) at_line_start_ = true;
  }
}

void MboxrdQuoter::finish(std::string& out) {
  emit(pending_, out);
  pending_.clear();
  if (wrote_any_ && !last_was_newline_) emit("\n", out);
}

std::string mboxrd_unquote(std::string_view stored) {
  std::string out;
  out.reserve(stored.size());
  std::size_t pos = 0;
  while (pos < stored.size()) {
    std::size_t nl = stored.find('\n', pos);
    std::size_t end = nl == std::string_view::npos ? stored.size() : nl + 1;
    std::string_view line = stored.substr(pos, end - pos);
    std::size_t gts = line.find_first_not_of('>');
    if (gts != std::string_view::npos && gts > 0 && line.substr(gts, kFrom.size()) == kFrom) {
      line.remove_prefix(1);
    }
    out.append(line);
    pos = end;
  }
  return out;
}

void MboxScanner::feed(std::string_view chunk) {
  std::size_t pos = 0;
  while (pos < chunk.size()) {
    if (at_line_start_) {
      line_offset_ = offset_ + pos;
      head_.clear();
      line_empty_ = true;
      at_line_start_ = false;
    }
    const void* nl = std::memchr(chunk.data() + pos, '\n', chunk.size() - pos);
    std::size_t seg_end =
        nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - chunk.data()) : chunk.size();
    std::size_t seg_len = seg_end - pos;
    if (seg_len > 0) {
      line_empty_ = false;
      if (head_.size() < kFrom.size()) {
        head_.append(chunk.substr(pos, std::min(kFrom.size() - head_.size(), seg_len)));
      }
    }
    if (nl) {
      end_of_line(offset_ + seg_end + 1);
      at_line_start_ = true;
      pos = seg_end + 1;
    } else {
      pos = chunk.size();
    }
  }
  offset_ += chunk.size();
}

// Called at the end of each line with the offset just past it.
void MboxScanner::end_of_line(std::uint64_t next_offset) {
  if (prev_line_empty_ && head_ == kFrom) {
    // The empty line before this From_ line separates messages; it belongs to neither.
    if (!messages_.empty()) messages_.back().end = line_offset_ - 1;
    messages_.push_back({line_offset_, next_offset, next_offset});
  } else if (messages_.empty() && !line_empty_) {
    garbage_ = true;
  }
  prev_line_empty_ = line_empty_;
}

std::vector<MboxMessage> MboxScanner::finish() {
  bool last_line_terminated = at_line_start_;
  if (!at_line_start_) end_of_line(offset_);
  if (!messages_.empty()) {
    MboxMessage& last = messages_.back();
    // The writer's final empty line is the separator, not part of the message.
    if (last_line_terminated && prev_line_empty_ && line_offset_ >= last.start &&
        offset_ > last.start) {
      last.end = line_offset_;
    } else {
      last.end = offset_;
    }
  }
  at_line_start_ = true;
  return std::move(messages_);
}

std::vector<MboxMessage> scan_mbox(std::string_view data, bool* garbage_before_first) {
  MboxScanner scanner;
  scanner.feed(data);
  auto messages = scanner.finish();
  if (garbage_before_first) *garbage_before_first = scanner.garbage_before_first();
  return messages;
}

Result<UniqueFd> open_mbox_for_append(const std::string& path, uid_t expected_uid) {
  // O_NONBLOCK so a FIFO planted in the spool cannot hang us; cleared again below.
  // Read access too: the append checks how the mailbox ends.
  const int flags = O_RDWR | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
  bool created = false;
  auto fd = open_file(path, flags);
  if (!fd && errno == ENOENT) {
    fd = open_file(path, flags | O_CREAT | O_EXCL, 0600);
    created = static_cast<bool>(fd);
    if (!fd && errno == EEXIST) fd = open_file(path, flags);  // another delivery created it
  }
  auto refuse = [&](const char* why) {
    return Error::permanent(EX_CANTCREAT, "5.2.0", path + ": " + why + "; mailbox left alone");
  };
  if (!fd) {
    if (errno == ELOOP) return refuse("is a symbolic link");
    if (errno == ENXIO) return refuse("is not a regular file");
    if (errno == EISDIR) return refuse("is a directory");
    return Error::from_errno(EX_TEMPFAIL, "cannot open " + path, errno);
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return Error::from_errno(EX_TEMPFAIL, path, errno);
  if (!S_ISREG(st.st_mode)) return refuse("is not a regular file");
  if (st.st_nlink != 1) return refuse("has more than one link");
  if (st.st_uid != expected_uid) return refuse("is owned by another user");
  if (created && ::fchmod(fd->get(), 0600) != 0) {
    return Error::from_errno(EX_TEMPFAIL, path, errno);
  }
  int fl = ::fcntl(fd->get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd->get(), F_SETFL, fl & ~O_NONBLOCK) < 0) {
    return Error::from_errno(EX_TEMPFAIL, path, errno);
  }
  return fd;
}

Status append_to_mbox(int mbox_fd, std::string_view from_line, std::string_view header_prefix,
                      int src_fd, std::uint64_t size, bool sync) {
  struct stat st {};
  if (::fstat(mbox_fd, &st) != 0) return Error::from_errno(EX_TEMPFAIL, "fstat mailbox", errno);
  const off_t old_size = st.st_size;

  std::string buf;
  buf.reserve(kCopyChunk * 2);
  // A From_ line must follow an empty line; mend a mailbox whose last writer did not leave one.
  if (old_size > 0) {
    char tail[2] = {'\n', '\n'};
    std::size_t want = old_size >= 2 ? 2 : 1;
    auto got = pread_full(mbox_fd, tail + (2 - want), want, old_size - static_cast<off_t>(want));
    if (!got) return got.error();
    if (tail[1] != '\n') {
      buf = "\n\n";
    } else if (tail[0] != '\n') {
      buf = "\n";
    }
  }
  buf.append(from_line);
  buf.append(header_prefix);

  auto fail = [&](const Error& error) -> Status {
    // All or nothing: the mailbox goes back to exactly what it was.
    if (::ftruncate(mbox_fd, old_size) == 0) ::fdatasync(mbox_fd);
    return error;
  };

  MboxrdQuoter quoter;
  std::string chunk(kCopyChunk, '\0');
  std::uint64_t done = 0;
  while (done < size) {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kCopyChunk, size - done));
    auto got = pread_full(src_fd, chunk.data(), want, static_cast<off_t>(done));
    if (!got) return fail(got.error());
    if (*got == 0) return fail(Error::temporary(EX_TEMPFAIL, "4.3.0", "message file shrank"));
    quoter.feed(std::string_view(chunk.data(), *got), buf);
    done += *got;
    if (buf.size() >= kCopyChunk) {
      if (auto w = write_all(mbox_fd, buf); !w) {
        return fail(Error::from_errno(EX_TEMPFAIL, "write to mailbox", errno));
      }
      buf.clear();
    }
  }
  quoter.finish(buf);
  buf.push_back('\n');
  if (auto w = write_all(mbox_fd, buf); !w) {
    return fail(Error::from_errno(EX_TEMPFAIL, "write to mailbox", errno));
  }
  if (sync && ::fdatasync(mbox_fd) != 0) {
    return fail(Error::from_errno(EX_TEMPFAIL, "fdatasync mailbox", errno));
  }
  return {};
}

}  // namespace mailwright
