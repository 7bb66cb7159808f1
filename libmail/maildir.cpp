#include "libmail/maildir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sysexits.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>

#include "libmail/file_io.h"

namespace mailwright {
namespace {

std::atomic<unsigned> g_sequence{0};

Status ensure_directory(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error::from_errno(EX_TEMPFAIL, "cannot create " + dir, errno);
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return Error::from_errno(EX_TEMPFAIL, dir, errno);
  if (!S_ISDIR(st.st_mode)) {
    return Error::permanent(EX_CANTCREAT, "5.2.0", dir + ": not a directory; mailbox left alone");
  }
  if (st.st_uid != ::geteuid()) {
    return Error::permanent(EX_CANTCREAT, "5.2.0", dir + ": owned by another user");
  }
  return {};
}

}  // namespace

Status ensure_maildir(const std::string& dir) {
  if (auto st = make_directories(parent_directory(dir), 0700); !st) return st;
  for (const char* sub : {"", "/tmp", "/new", "/cur"}) {
    if (auto st = ensure_directory(dir + sub); !st) return st;
  }
  return {};
}

std::string maildir_host_part(std::string_view host) {
  std::string out;
  for (char c : host) {
    if (c == '/') {
      out += "\\057";
    } else if (c == ':') {
      out += "\\072";
    } else if (c == ',') {
      out += "\\054";
    } else if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
      out += '_';
    } else {
      out += c;
    }
  }
  return out.empty() ? "localhost" : out;
}

MaildirSizes maildir_sizes_from_name(std::string_view name) {
  MaildirSizes sizes;
  auto field = [&](std::string_view key, std::uint64_t& value) {
    auto pos = name.find(key);
    if (pos == std::string_view::npos) return;
    const char* begin = name.data() + pos + key.size();
    std::from_chars(begin, name.data() + name.size(), value);
  };
  field(",S=", sizes.size);
  field(",W=", sizes.crlf_size);
  return sizes;
}

Result<std::string> deliver_to_maildir(const std::string& dir, std::string_view header_prefix,
                                       int src_fd, std::uint64_t size, const MaildirSizes& sizes) {
  struct timeval tv {};
  ::gettimeofday(&tv, nullptr);
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  const std::string name = std::to_string(tv.tv_sec) + ".M" + std::to_string(tv.tv_usec) + "P" +
                           std::to_string(::getpid()) + "Q" + std::to_string(++g_sequence) + "." +
                           maildir_host_part(host) + ",S=" + std::to_string(sizes.size) +
                           ",W=" + std::to_string(sizes.crlf_size);
  const std::string tmp_path = dir + "/tmp/" + name;
  const std::string new_path = dir + "/new/" + name;

  auto fd = create_exclusive(tmp_path, 0600);
  if (!fd) return Error::from_exit_code(EX_TEMPFAIL, fd.error().text());
  auto fail = [&](const Error& error) -> Result<std::string> {
    ::unlink(tmp_path.c_str());
    return Error::from_exit_code(EX_TEMPFAIL, error.text());
  };
  if (auto w = write_all(fd->get(), header_prefix); !w) return fail(w.error());
  std::string chunk(64 * 1024, '\0');
  std::uint64_t done = 0;
  while (done < size) {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), size - done));
    auto got = pread_full(src_fd, chunk.data(), want, static_cast<off_t>(done));
    if (!got) return fail(got.error());
    if (*got == 0) return fail(Error::temporary(EX_TEMPFAIL, "4.3.0", "message file shrank"));
    if (auto w = write_all(fd->get(), std::string_view(chunk.data(), *got)); !w) {
      return fail(w.error());
    }
    done += *got;
  }
  if (auto s = fsync_fd(fd->get(), tmp_path); !s) return fail(s.error());
  if (fd->close() != 0) return fail(Error::from_errno(EX_TEMPFAIL, "close " + tmp_path, errno));
  if (::link(tmp_path.c_str(), new_path.c_str()) != 0) {
    return fail(Error::from_errno(EX_TEMPFAIL, "link " + new_path, errno));
  }
  ::unlink(tmp_path.c_str());
  if (auto s = fsync_directory(dir + "/new"); !s) {
    ::unlink(new_path.c_str());
    return Error::from_exit_code(EX_TEMPFAIL, s.error().text());
  }
  return new_path;
}

}  // namespace mailwright
