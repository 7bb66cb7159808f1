#include "libmail/daemon.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>

#include "libmail/file_io.h"

namespace mailwright {

Status daemonize() {
  for (int round = 0; round < 2; ++round) {
    pid_t pid = ::fork();
    if (pid < 0) return Error::from_errno(EX_OSERR, "fork", errno);
    if (pid > 0) std::_Exit(EX_OK);
    if (round == 0 && ::setsid() < 0) return Error::from_errno(EX_OSERR, "setsid", errno);
  }
  if (::chdir("/") != 0) return Error::from_errno(EX_OSERR, "chdir /", errno);
  ::umask(022);
  auto null = open_file("/dev/null", O_RDWR);
  if (!null) return null.error();
  for (int fd = 0; fd <= 2; ++fd) {
    if (::dup2(null->get(), fd) < 0) return Error::from_errno(EX_OSERR, "dup2", errno);
  }
  return {};
}

Result<PidFile> PidFile::create(const std::string& path) {
  auto fd = open_file(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0644);
  if (!fd) return fd.error();
  if (::flock(fd->get(), LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    auto got = pread_full(fd->get(), buf, sizeof buf - 1, 0);
    std::string running = got ? std::string(buf, *got) : std::string("?");
    while (!running.empty() && (running.back() == '\n')) running.pop_back();
    return Error::temporary(EX_TEMPFAIL, "4.3.0", "already running as pid " + running);
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd->get(), 0) != 0) return Error::from_errno(EX_IOERR, path, errno);
  if (auto st = write_all(fd->get(), pid); !st) return st.error();
  return PidFile(path, std::move(*fd));
}

PidFile::~PidFile() {
  if (fd_) ::unlink(path_.c_str());
}

void ignore_disruptive_signals() {
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGXFSZ, SIG_IGN);
}

}  // namespace mailwright
