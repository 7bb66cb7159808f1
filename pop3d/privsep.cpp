#include "pop3d/privsep.h"

#include <sys/socket.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include "libmail/log.h"
#include "libmail/privilege.h"
#include "libmail/pam_login.h"
#include "pop3d/session_process.h"

namespace mailwright::pop3 {
namespace {

constexpr std::size_t kMaxMessage = 4096;

// Set by SIGTERM/SIGINT in the master, which sits in recvmsg.
volatile std::sig_atomic_t g_stop_master = 0;
void on_stop_signal(int) { g_stop_master = 1; }

std::vector<std::string> split_fields(const char* data, std::size_t len) {
  std::vector<std::string> fields;
  std::size_t start = 0;
  for (std::size_t i = 0; i < len; ++i) {
    if (data[i] == '\0') {
      fields.emplace_back(data + start, i - start);
      start = i + 1;
    }
  }
  return fields;
}

std::string join_fields(std::initializer_list<std::string_view> fields) {
  std::string out;
  for (std::string_view f : fields) {
    out.append(f);
    out.push_back('\0');
  }
  return out;
}

bool send_message(int sock, const std::string& data, int fd_to_pass) {
  iovec iov{const_cast<char*>(data.data()), data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd_to_pass >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &fd_to_pass, sizeof(int));
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n) == data.size();
    if (errno != EINTR) return false;
  }
}

// Receives one message; a passed descriptor lands in fd_out.
ssize_t receive_message(int sock, char* buf, std::size_t len, UniqueFd& fd_out) {
  iovec iov{buf, len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = 0;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR && !g_stop_master);
  if (n < 0) return n;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(cm), sizeof(int));
      fd_out.reset(fd);
    }
  }
  // A truncated message is malformed; the caller sees too few fields.
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) return 0;
  return n;
}

const char* outcome_word(AuthOutcome o) {
  switch (o) {
    case AuthOutcome::kOk:
      return "ok";
    case AuthOutcome::kInUse:
      return "in-use";
    case AuthOutcome::kTemporary:
      return "temporary";
    case AuthOutcome::kBadCredentials:
      break;
  }
  return "bad";
}

AuthOutcome outcome_from(std::string_view word) {
  if (word == "ok") return AuthOutcome::kOk;
  if (word == "in-use") return AuthOutcome::kInUse;
  if (word == "temporary") return AuthOutcome::kTemporary;
  return AuthOutcome::kBadCredentials;
}

// One login, in a child of the master: never returns.
[[noreturn]] void handle_request(int sock, const Pop3Settings& settings,
                                 const std::string& pam_service, const std::string& id,
                                 const std::string& user, const std::string& password,
                                 const std::string& peer) {
  auto answer = [&](AuthOutcome outcome, const std::string& detail, int fd) {
    send_message(sock, join_fields({id, outcome_word(outcome), detail}), fd);
  };
  if (!is_valid_user_name(user)) {
    answer(AuthOutcome::kBadCredentials, "invalid user name", -1);
    std::_Exit(0);
  }
  PamResult pam = pam_login(pam_service, user, password, peer);
  if (!pam.ok) {
    answer(AuthOutcome::kBadCredentials, pam.detail, -1);
    std::_Exit(0);
  }
  auto account = SystemAccounts().find(user);
  if (!account || !account->has_value()) {
    answer(AuthOutcome::kTemporary, "account vanished after PAM", -1);
    std::_Exit(0);
  }
  MailboxIdentity who = mailbox_identity(settings.mailbox, **account);
  if (who.uid == 0) {
    // Root's mail is read as root by no network service of ours.
    answer(AuthOutcome::kBadCredentials, "root may not log in over POP3", -1);
    std::_Exit(0);
  }
  if (auto st = drop_privileges(who.uid, who.gid, who.groups); !st) {
    answer(AuthOutcome::kTemporary, st.error().text(), -1);
    std::_Exit(0);
  }
  MaildropOpen opened = open_maildrop(settings.mailbox, **account);
  if (!opened.maildrop) {
    answer(opened.error == MaildropError::kInUse ? AuthOutcome::kInUse : AuthOutcome::kTemporary,
           opened.text, -1);
    std::_Exit(0);
  }
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    answer(AuthOutcome::kTemporary, "socketpair failed", -1);
    std::_Exit(0);
  }
  UniqueFd ours(pair[0]);
  UniqueFd theirs(pair[1]);
  answer(AuthOutcome::kOk, "", theirs.get());
  theirs.reset();
  ::close(sock);
  std::_Exit(serve_session_process(ours.release(), settings, user, std::move(opened.maildrop)));
}

}  // namespace

PrivsepAuthenticator::PrivsepAuthenticator(event_base* base, UniqueFd master)
    : base_(base),
      master_(std::move(master)),
      event_(event_new(base, master_.get(), EV_READ | EV_PERSIST,
                       &PrivsepAuthenticator::on_readable, this)) {
  event_add(event_.get(), nullptr);
}

void PrivsepAuthenticator::login(LoginRequest request, Done done) {
  const std::string id = std::to_string(next_id_++);
  std::string msg = join_fields({id, request.user, request.password, request.peer});
  if (msg.size() > kMaxMessage || !send_message(master_.get(), msg, -1)) {
    LoginOutcome failed;
    failed.outcome = AuthOutcome::kTemporary;
    failed.detail = "login service unavailable";
    done(std::move(failed));
    return;
  }
  waiting_.emplace(std::stoull(id), std::move(done));
}

void PrivsepAuthenticator::on_readable(evutil_socket_t fd, short, void* arg) {
  auto* self = static_cast<PrivsepAuthenticator*>(arg);
  char buf[kMaxMessage];
  UniqueFd passed;
  ssize_t n = receive_message(fd, buf, sizeof buf, passed);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    // The master is gone (stopped, or died): nobody can log in any more, so the login process
    // stops too, after telling everyone waiting.
    log_notice("-", "login master went away; stopping");
    event_del(self->event_.get());
    event_base_loopexit(self->base_, nullptr);
    auto waiting = std::move(self->waiting_);
    for (auto& [id, done] : waiting) {
      LoginOutcome failed;
      failed.outcome = AuthOutcome::kTemporary;
      failed.detail = "login service unavailable";
      done(std::move(failed));
    }
    return;
  }
  auto fields = split_fields(buf, static_cast<std::size_t>(n));
  if (fields.size() != 3) return;
  std::uint64_t id = 0;
  try {
    id = std::stoull(fields[0]);
  } catch (...) {
    return;
  }
  auto it = self->waiting_.find(id);
  if (it == self->waiting_.end()) return;
  Done done = std::move(it->second);
  self->waiting_.erase(it);
  LoginOutcome outcome;
  outcome.outcome = outcome_from(fields[1]);
  outcome.detail = fields[2];
  if (outcome.outcome == AuthOutcome::kOk) {
    if (!passed) {
      outcome.outcome = AuthOutcome::kTemporary;
      outcome.detail = "session process sent no socket";
    }
    outcome.session_socket = std::move(passed);
  }
  done(std::move(outcome));
}

int run_login_master(int sock, const Pop3Settings& settings, const std::string& pam_service,
                     pid_t login_pid) {
  // Children are reaped by the kernel; the master never waits on a login.
  std::signal(SIGCHLD, SIG_IGN);
  std::signal(SIGHUP, SIG_IGN);
  struct sigaction stop {};
  stop.sa_handler = &on_stop_signal;  // no SA_RESTART: recvmsg returns EINTR
  sigaction(SIGTERM, &stop, nullptr);
  sigaction(SIGINT, &stop, nullptr);
  char buf[kMaxMessage];
  for (;;) {
    UniqueFd ignored_fd;
    ssize_t n = receive_message(sock, buf, sizeof buf, ignored_fd);
    if (g_stop_master) {
      ::kill(login_pid, SIGTERM);
      return EX_OK;  // unwinding removes the PID file
    }
    if (n < 0) {
      log_error("-", "login master: %s", std::strerror(errno));
      return EX_OSERR;
    }
    if (n == 0) return EX_OK;  // the login process has gone: so do we
    auto fields = split_fields(buf, static_cast<std::size_t>(n));
    if (fields.size() != 4) {
      log_error("-", "login master: malformed request ignored");
      continue;
    }
    pid_t pid = ::fork();
    if (pid == 0) {
      handle_request(sock, settings, pam_service, fields[0], fields[1], fields[2], fields[3]);
    }
    if (pid < 0) {
      send_message(sock, join_fields({fields[0], "temporary", "fork failed"}), -1);
    }
    std::fill(std::begin(buf), std::end(buf), '\0');  // the password is not kept around
  }
}

}  // namespace mailwright::pop3
