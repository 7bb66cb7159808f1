#include "mda/staging.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>

#include "libmail/file_io.h"

namespace mailwright::mda {
namespace {

constexpr std::size_t kFlushAt = 64 * 1024;

Result<UniqueFd> open_temp_file(const std::string& dir) {
  auto fd = open_file(dir, O_RDWR | O_TMPFILE | O_EXCL, 0600);
  if (fd || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) {
    if (!fd) return Error::from_exit_code(EX_TEMPFAIL, fd.error().text());
    return fd;
  }
  std::random_device rd;
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::string path = dir + "/mda." + std::to_string(::getpid()) + "." + std::to_string(rd());
    auto named = create_exclusive(path, 0600, O_RDWR);
    if (named) {
      ::unlink(path.c_str());
      return named;
    }
    if (errno != EEXIST) return Error::from_exit_code(EX_TEMPFAIL, named.error().text());
  }
  return Error::temporary(EX_TEMPFAIL, "4.3.0", "cannot create a temporary file in " + dir);
}

}  // namespace

Result<MessageStager> MessageStager::create(const std::string& temp_dir) {
  int memfd = ::memfd_create("mda-message", MFD_CLOEXEC);
  if (memfd >= 0) return MessageStager(temp_dir, UniqueFd(memfd), true);
  auto fd = open_temp_file(temp_dir);
  if (!fd) return fd.error();
  return MessageStager(temp_dir, std::move(*fd), false);
}

Status MessageStager::move_to_disk() {
  auto file = open_temp_file(temp_dir_);
  if (!file) return file.error();
  std::string chunk(64 * 1024, '\0');
  for (std::uint64_t done = 0; done < written_;) {
    auto got = pread_full(fd_.get(), chunk.data(),
                          static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), written_ - done)),
                          static_cast<off_t>(done));
    if (!got || *got == 0) return Error::temporary(EX_TEMPFAIL, "4.3.0", "staging the message");
    if (auto w = write_all(file->get(), std::string_view(chunk.data(), *got)); !w) {
      return Error::from_exit_code(EX_TEMPFAIL, "staging the message: " + w.error().text());
    }
    done += *got;
  }
  fd_ = std::move(*file);
  in_memory_ = false;
  return {};
}

void MessageStager::begin() {
  normalizer_ = LfNormalizer();
  buffer_.clear();
  written_ = 0;
  crlf_extra_ = 0;
  pending_cr_ = false;
  failed_ = Status();
}

Status MessageStager::flush() {
  if (buffer_.empty()) return {};
  if (in_memory_ && written_ + buffer_.size() > kMemoryLimit) {
    if (auto moved = move_to_disk(); !moved) return moved;
  }
  // Count what CRLF encoding adds, exactly as CrlfEncoder will do it: an LF without a CR
  // before it, and a CR without an LF after it, each gain one octet.
  for (char c : buffer_) {
    if (c == '\n') {
      if (!pending_cr_) ++crlf_extra_;
      pending_cr_ = false;
    } else {
      if (pending_cr_) ++crlf_extra_;
      pending_cr_ = c == '\r';
    }
  }
  ssize_t n = 0;
  std::size_t done = 0;
  while (done < buffer_.size()) {
    n = ::pwrite(fd_.get(), buffer_.data() + done, buffer_.size() - done,
                 static_cast<off_t>(written_ + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno(EX_TEMPFAIL, "staging the message", errno);
    }
    done += static_cast<std::size_t>(n);
  }
  written_ += buffer_.size();
  buffer_.clear();
  return {};
}

Status MessageStager::add(std::string_view raw) {
  if (!failed_) return failed_;
  normalizer_.feed(raw, buffer_);
  if (buffer_.size() >= kFlushAt) failed_ = flush();
  return failed_;
}

Result<StagedMessage> MessageStager::finish() {
  if (!failed_) return failed_.error();
  normalizer_.finish(buffer_);
  // A message that does not end in a newline gets one: mailbox formats are line based.
  if (normalizer_.bytes_out() > 0 && !normalizer_.ends_with_newline()) buffer_.push_back('\n');
  if (auto st = flush(); !st) return st.error();
  if (::ftruncate(fd_.get(), static_cast<off_t>(written_)) != 0) {
    return Error::from_errno(EX_TEMPFAIL, "staging the message", errno);
  }
  StagedMessage staged;
  staged.fd = fd_.get();
  staged.size = written_;
  staged.crlf_size = written_ + crlf_extra_ + (pending_cr_ ? 1 : 0);
  return staged;
}

Result<StagedMessage> MessageStager::stage_from(int fd) {
  begin();
  std::string chunk(64 * 1024, '\0');
  for (;;) {
    ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno(EX_TEMPFAIL, "reading the message", errno);
    }
    if (n == 0) break;
    if (auto st = add(std::string_view(chunk.data(), static_cast<std::size_t>(n))); !st) {
      return st.error();
    }
  }
  return finish();
}

}  // namespace mailwright::mda
