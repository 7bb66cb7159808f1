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
  // close_range covers descriptors above 1024 too (a daemon with many sessions has them).
  const bool done = keep < 3 ? ::close_range(3, ~0U, 0) == 0
                             : (keep == 3 || ::close_range(3, static_cast<unsigned>(keep) - 1, 0) == 0) &&
                                   ::close_range(static_cast<unsigned>(keep) + 1, ~0U, 0) == 0;
  if (done) return;
  for (int fd = 3; fd < 1024; ++fd) {
    if (fd != keep) ::close(fd);
  }
}

// Sends one packet, with fd attached when it is not -1.
bool send_packet(int sock, std::string_view packet, int fd) {
  iovec iov{const_cast<char*>(packet.data()), packet.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(packet.size());
}

bool send_fd(int sock, int fd) { return send_packet(sock, "F", fd); }

void send_refusal(int sock, const Error& e) {
  const std::string packet = "E" + e.status() + " " + e.text().substr(0, 1000);
  (void)send_packet(sock, packet, -1);
}

// Receives one packet of at most max octets and at most one descriptor. n: its size, or 0 at
// the end, -1 on error; an oversized packet or extra descriptors set truncated.
struct Packet {
  ssize_t n = -1;
  std::string data;
  UniqueFd fd;
  bool truncated = false;
};

Packet receive_packet(int sock, std::size_t max) {
  Packet p;
  p.data.resize(max + 1);
  iovec iov{p.data.data(), p.data.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  do {
    p.n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (p.n < 0 && errno == EINTR);
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (i == 0 && !p.fd) {
          p.fd.reset(fd);
        } else {
          ::close(fd);
          p.truncated = true;
        }
      }
    }
  }
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
      (p.n > 0 && static_cast<std::size_t>(p.n) > max)) {
    p.truncated = true;
  }
  p.data.resize(p.n > 0 ? static_cast<std::size_t>(p.n) : 0);
  return p;
}

// The launcher's answer to a request: 'F' with a descriptor, or 'E' with "STATUS text".
Result<UniqueFd> receive_answer(int sock, const char* what) {
  Packet p = receive_packet(sock, 1024);
  if (p.n > 0 && !p.truncated && p.data == "F" && p.fd) return std::move(p.fd);
  if (p.n > 1 && p.data[0] == 'E') {
    const std::string_view rest = std::string_view(p.data).substr(1);
    const std::size_t space = rest.find(' ');
    const std::string_view status = rest.substr(0, space);
    const std::string text(space == std::string_view::npos ? "" : rest.substr(space + 1));
    if (status.size() >= 5 && status[1] == '.' && (status[0] == '4' || status[0] == '5')) {
      return status[0] == '5' ? Error::permanent(EX_UNAVAILABLE, status, text)
                              : Error::temporary(EX_TEMPFAIL, status, text);
    }
  }
  return Error::temporary(EX_OSERR, "4.3.0", std::string("the mda launcher could not ") + what);
}

[[noreturn]] void run_launcher(int sock, const MdaCommand& command, const OpsPolicy& policy) {
  ::signal(SIGCHLD, SIG_DFL);
  for (;;) {
    Packet request = receive_packet(sock, kMaxRequestPacket);
    if (request.n < 0 && errno == EINTR) continue;
    if (request.n <= 0) std::_Exit(0);  // the mta is gone
    if (request.truncated) {
      send_refusal(sock, Error::permanent(EX_USAGE, "5.5.4", "request too large"));
      continue;
    }
    if (request.data != "L") {
      auto answer = start_operation(request.data, std::move(request.fd), policy);
      if (!answer || !send_fd(sock, answer->get())) {
        send_refusal(sock, answer ? Error::temporary(EX_OSERR, "4.3.0", "cannot answer")
                                  : answer.error());
      }
      continue;
    }
    if (request.fd) {
      send_refusal(sock, Error::permanent(EX_USAGE, "5.5.4", "unexpected descriptor"));
      continue;
    }
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

Result<MdaLauncher> MdaLauncher::start_privileged(MdaCommand command, OpsPolicy policy) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return Error::from_errno(EX_OSERR, "socketpair", errno);
  }
  const pid_t pid = ::fork();
  if (pid < 0) return Error::from_errno(EX_OSERR, "fork", errno);
  if (pid == 0) {
    ::close(pair[0]);
    close_other_fds(pair[1]);
    run_launcher(pair[1], command, policy);
  }
  ::close(pair[1]);
  return MdaLauncher(std::move(command), std::move(policy), UniqueFd(pair[0]));
}

MdaLauncher MdaLauncher::direct(MdaCommand command, OpsPolicy policy) {
  return MdaLauncher(std::move(command), std::move(policy), UniqueFd());
}

Result<UniqueFd> MdaLauncher::request(std::string_view packet, int fd) {
  if (packet.empty() || packet == "L") {
    return Error::permanent(EX_SOFTWARE, "5.3.0", "not an operation request");
  }
  if (!launcher_) {
    UniqueFd copy;
    if (fd >= 0) {
      copy.reset(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
      if (!copy) return Error::from_errno(EX_OSERR, "dup", errno);
    }
    return start_operation(packet, std::move(copy), policy_);
  }
  if (!send_packet(launcher_.get(), packet, fd)) {
    return Error::temporary(EX_OSERR, "4.3.0", "the mda launcher is gone");
  }
  return receive_answer(launcher_.get(), "start a delivery helper");
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
  auto fd = receive_answer(launcher_.get(), "start mda");
  if (!fd) return Error::temporary(EX_OSERR, "4.3.0", "the mda launcher could not start mda");
  return fd;
}

}  // namespace mailwright::mta
