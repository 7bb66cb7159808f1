#include "libmail/file_io.h"

#include <fcntl.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>

namespace mailwright {

Result<UniqueFd> open_file(const std::string& path, int flags, mode_t mode) {
  for (;;) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd >= 0) return UniqueFd(fd);
    if (errno != EINTR) return Error::from_errno(EX_IOERR, path, errno);
  }
}

Result<UniqueFd> create_exclusive(const std::string& path, mode_t mode, int extra_flags) {
  auto fd = open_file(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | extra_flags, mode);
  if (!fd) return fd.error();
  if (::fchmod(fd->get(), mode) != 0) return Error::from_errno(EX_IOERR, path, errno);
  return fd;
}

Status write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno(EX_IOERR, "write", errno);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

Result<std::size_t> pread_full(int fd, char* buf, std::size_t len, off_t offset) {
  std::size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, buf + done, len - done, offset + static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno(EX_IOERR, "read", errno);
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

Result<std::string> read_small_file(const std::string& path, std::size_t max_size) {
  auto fd = open_file(path, O_RDONLY | O_NOCTTY);
  if (!fd) return fd.error();
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return Error::from_errno(EX_IOERR, path, errno);
  if (!S_ISREG(st.st_mode)) return Error::permanent(EX_NOINPUT, "5.3.0", path + ": not a regular file");
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd->get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno(EX_IOERR, path, errno);
    }
    if (n == 0) break;
    if (data.size() + static_cast<std::size_t>(n) > max_size) {
      return Error::permanent(EX_DATAERR, "5.3.4", path + ": file too large");
    }
    data.append(buf, static_cast<std::size_t>(n));
  }
  return data;
}

Status fsync_fd(int fd, std::string_view what) {
  if (::fsync(fd) != 0) return Error::from_errno(EX_IOERR, std::string("fsync ") + std::string(what), errno);
  return {};
}

Status fsync_directory(const std::string& dir) {
  auto fd = open_file(dir, O_RDONLY | O_DIRECTORY);
  if (!fd) return fd.error();
  return fsync_fd(fd->get(), dir);
}

std::string parent_directory(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  auto slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

namespace {

Status replace_file(const std::string& path, std::string_view data, mode_t mode, bool durable) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  ::unlink(tmp.c_str());  // a leftover of a crashed earlier run of this pid
  auto fd = create_exclusive(tmp, mode);
  if (!fd) return fd.error();
  Status st = write_all(fd->get(), data);
  if (st && durable) st = fsync_fd(fd->get(), tmp);
  if (st && fd->close() != 0) st = Error::from_errno(EX_IOERR, "close " + tmp, errno);
  if (st && ::rename(tmp.c_str(), path.c_str()) != 0) {
    st = Error::from_errno(EX_IOERR, "rename " + tmp, errno);
  }
  if (!st) {
    ::unlink(tmp.c_str());
    return st;
  }
  return durable ? fsync_directory(parent_directory(path)) : Status();
}

}  // namespace

Status write_file_durably(const std::string& path, std::string_view data, mode_t mode) {
  return replace_file(path, data, mode, true);
}

Status replace_file_atomically(const std::string& path, std::string_view data, mode_t mode) {
  return replace_file(path, data, mode, false);
}

Status make_directory(const std::string& dir, mode_t mode) {
  if (::mkdir(dir.c_str(), mode) == 0) {
    if (::chmod(dir.c_str(), mode) != 0) return Error::from_errno(EX_CANTCREAT, dir, errno);
    return {};
  }
  if (errno != EEXIST) return Error::from_errno(EX_CANTCREAT, dir, errno);
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return Error::from_errno(EX_CANTCREAT, dir, errno);
  if (!S_ISDIR(st.st_mode)) return Error::permanent(EX_CANTCREAT, "5.2.0", dir + ": not a directory");
  return {};
}

Status make_directories(const std::string& path, mode_t mode) {
  std::size_t pos = 1;
  while (pos <= path.size()) {
    pos = path.find('/', pos);
    if (pos == std::string::npos) pos = path.size();
    std::string prefix = path.substr(0, pos);
    if (!prefix.empty()) {
      struct stat st {};
      if (::stat(prefix.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (auto made = make_directory(prefix, mode); !made) return made;
      }
    }
    ++pos;
  }
  return {};
}

}  // namespace mailwright
