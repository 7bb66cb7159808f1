#include "mta/injector.h"

#include <sys/types.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "libmail/file_io.h"
#include "mta/queue_id.h"

namespace mailwright::mta {
namespace {

Status copy_range(int from, std::uint64_t offset, std::uint64_t length, int to) {
  auto off = static_cast<loff_t>(offset);
  while (length > 0) {
    const ssize_t n = ::copy_file_range(from, &off, to, nullptr, length, 0);
    if (n > 0) {
      length -= static_cast<std::uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
      return Error::from_errno(EX_IOERR, "copy_file_range", errno);
    }
    // Where the kernel cannot copy between these files (or the source was shorter than it
    // claimed), read and write.
    std::string buf(64 * 1024, '\0');
    while (length > 0) {
      const ssize_t r = ::pread(from, buf.data(), std::min<std::uint64_t>(length, buf.size()),
                                off);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return Error::from_errno(EX_IOERR, "read queue file", errno);
      if (r == 0) return Error::temporary(EX_IOERR, "4.3.0", "queue file shorter than expected");
      if (auto st = write_all(to, std::string_view(buf.data(), static_cast<std::size_t>(r))); !st) {
        return st;
      }
      off += r;
      length -= static_cast<std::uint64_t>(r);
    }
  }
  return {};
}

Result<std::string> write_and_commit(Spool& spool, const Envelope& envelope,
                                     std::string_view text, int body_fd, std::uint64_t offset,
                                     std::uint64_t length) {
  auto file = spool.create_incoming(envelope.queue_id);
  if (!file) return file.error();
  auto fail = [&](const Error& e) -> Result<std::string> {
    (void)spool.discard(*file);
    return e;
  };
  // Two writes rather than one joined string: the text may be a whole message.
  const std::string head = serialize_envelope(envelope);
  for (std::string_view part : {std::string_view(head), text}) {
    if (auto st = write_all(file->fd(), part); !st) return fail(st.error());
  }
  if (body_fd >= 0 && length > 0) {
    if (auto st = copy_range(body_fd, offset, length, file->fd()); !st) return fail(st.error());
  }
  if (auto st = spool.commit(*file); !st) return st.error();
  return envelope.queue_id;
}

}  // namespace

Result<std::string> queue_message_as(Spool& spool, Envelope envelope, std::string_view text) {
  return write_and_commit(spool, envelope, text, -1, 0, 0);
}

Result<std::string> queue_new_message(Spool& spool, Envelope envelope, std::string_view text,
                                      int body_fd, std::uint64_t offset, std::uint64_t length) {
  envelope.queue_id = new_queue_id();
  return write_and_commit(spool, envelope, text, body_fd, offset, length);
}

}  // namespace mailwright::mta
