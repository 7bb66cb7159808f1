#include "mta/mda_launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace mailwright::mta {
namespace {

void close_other_fds(int keep) {
  for (int fd = 3; fd < 1024; ++fd) {
    if (fd != keep) ::close(fd);
  }
}

bool send_fd(int sock, int fd) {
  char byte = 'F';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL) == 1;
}

UniqueFd receive_fd(int sock) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n != 1 || byte != 'F') return UniqueFd();
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
      return UniqueFd(fd);
    }
  }
  return UniqueFd();
}

[[noreturn]] void run_launcher(int sock, const MdaCommand& command) {
  ::signal(SIGCHLD, SIG_DFL);
  for (;;) {
    char request = 0;
    const ssize_t n = ::recv(sock, &request, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) std::_Exit(0);  // the mta is gone
    if (request != 'L') continue;
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
      (void)::send(sock, "E", 1, MSG_NOSIGNAL);
      continue;
    }
    const bool ok = static_cast<bool>(spawn_mda(command, pair[1]));
    ::close(pair[1]);
    if (!ok || !send_fd(sock, pair[0])) (void)::send(sock, "E", 1, MSG_NOSIGNAL);
    ::close(pair[0]);
  }
}

}  // namespace

Status spawn_mda(const MdaCommand& command, int socket) {
  const pid_t child = ::fork();
  if (child < 0) return Error::from_errno(EX_OSERR, "fork", errno);
  if (child == 0) {
    // The intermediate child: start mda and go, so mda is reparented and never a zombie of
    // ours.
    const pid_t grandchild = ::fork();
    if (grandchild != 0) std::_Exit(grandchild < 0 ? 1 : 0);
    ::setsid();
    if (::dup2(socket, STDIN_FILENO) < 0 || ::dup2(socket, STDOUT_FILENO) < 0) std::_Exit(EX_OSERR);
    const int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0 && null != STDERR_FILENO) {
      ::dup2(null, STDERR_FILENO);
      ::close(null);
    }
    close_other_fds(-1);
    ::signal(SIGPIPE, SIG_DFL);
    std::vector<const char*> argv{command.path.c_str(), "-l"};
    if (!command.config_path.empty()) {
      argv.push_back("-C");
      argv.push_back(command.config_path.c_str());
    }
    argv.push_back(nullptr);
    // A fixed environment: nothing of the mta's (or its caller's) reaches mda.
    const char* envp[] = {"PATH=/usr/bin:/bin", "LANG=C", nullptr};
    ::execve(command.path.c_str(), const_cast<char* const*>(argv.data()),
             const_cast<char* const*>(envp));
    std::_Exit(EX_UNAVAILABLE);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Error::temporary(EX_OSERR, "4.3.0", "could not start mda");
  }
  return {};
}

Result<MdaLauncher> MdaLauncher::start_privileged(MdaCommand command) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return Error::from_errno(EX_OSERR, "socketpair", errno);
  }
  const pid_t pid = ::fork();
  if (pid < 0) return Error::from_errno(EX_OSERR, "fork", errno);
  if (pid == 0) {
    ::close(pair[0]);
    close_other_fds(pair[1]);
    run_launcher(pair[1], command);
  }
  ::close(pair[1]);
  return MdaLauncher(std::move(command), UniqueFd(pair[0]));
}

MdaLauncher MdaLauncher::direct(MdaCommand command) {
  return MdaLauncher(std::move(command), UniqueFd());
}

Result<UniqueFd> MdaLauncher::launch() {
  if (!launcher_) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
      return Error::from_errno(EX_OSERR, "socketpair", errno);
    }
    UniqueFd ours(pair[0]);
    UniqueFd theirs(pair[1]);
    if (auto st = spawn_mda(command_, theirs.get()); !st) return st.error();
    return ours;
  }
  if (::send(launcher_.get(), "L", 1, MSG_NOSIGNAL) != 1) {
    return Error::temporary(EX_OSERR, "4.3.0", "the mda launcher is gone");
  }
  UniqueFd fd = receive_fd(launcher_.get());
  if (!fd) return Error::temporary(EX_OSERR, "4.3.0", "the mda launcher could not start mda");
  return fd;
}

}  // namespace mailwright::mta
