#include "mta/password_checkers.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "libmail/log.h"
#include "libmail/pam_login.h"
#include "libmail/password.h"

namespace mailwright::mta {
namespace {

constexpr std::size_t kMaxMessage = 4096;
// Logins checked at once by the helper; more wait for a temporary failure (454).
constexpr int kMaxChecks = 32;

std::string join_fields(std::initializer_list<std::string_view> fields) {
  std::string out;
  for (std::string_view f : fields) {
    out.append(f);
    out.push_back('\0');
  }
  return out;
}

std::vector<std::string_view> split_fields(std::string_view msg) {
  std::vector<std::string_view> out;
  while (!msg.empty()) {
    const auto nul = msg.find('\0');
    if (nul == std::string_view::npos) return {};  // every field ends in NUL
    out.push_back(msg.substr(0, nul));
    msg.remove_prefix(nul + 1);
  }
  return out;
}

[[noreturn]] void run_helper(int sock, const std::string& service) {
  // Children are reaped as they end; they answer on the shared socket themselves.
  ::signal(SIGCHLD, SIG_DFL);
  int running = 0;
  char buf[kMaxMessage];
  for (;;) {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) --running;
    const ssize_t n = ::recv(sock, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) std::_Exit(0);  // the server is gone
    auto fields = split_fields(std::string_view(buf, static_cast<std::size_t>(n)));
    if (fields.size() != 4) continue;
    const std::string id(fields[0]);
    auto answer = [&](std::string_view word) {
      const std::string msg = join_fields({id, word});
      (void)::send(sock, msg.data(), msg.size(), MSG_NOSIGNAL);
    };
    if (running >= kMaxChecks) {
      while (running > 0 && ::waitpid(-1, nullptr, 0) > 0) --running;
    }
    const pid_t child = ::fork();
    if (child < 0) {
      answer("temporary");
      continue;
    }
    if (child > 0) {
      ++running;
      continue;
    }
    const std::string user(fields[1]);
    const std::string password(fields[2]);
    const std::string peer(fields[3]);
    // Root's password never travels over SMTP (nor does any other uid 0 account's).
    auto account = SystemAccounts().find(user);
    if (!account || !account->has_value() || (*account)->uid == 0) {
      (void)pam_login(service, "", password, peer);  // the same time as a real check
      answer("bad");
      std::_Exit(0);
    }
    PamResult pam = pam_login(service, user, password, peer);
    if (!pam.ok) log_notice("-", "PAM: %s: %s", printable(user).c_str(), pam.detail.c_str());
    answer(pam.ok ? "ok" : "bad");
    std::_Exit(0);
  }
}

}  // namespace

void FilePasswordChecker::check(const std::string& user, const std::string& password,
                                const std::string&, Done done) {
  auto account = accounts_->find(user);
  if (!account) return done(smtp::AuthResult::kTemporary);
  if (!account->has_value()) {
    // Same cost as a real check, so timing does not tell which users exist.
    (void)verify_password_of_nobody(password);
    return done(smtp::AuthResult::kBadCredentials);
  }
  done(verify_password((*account)->password_hash, password) ? smtp::AuthResult::kOk
                                                             : smtp::AuthResult::kBadCredentials);
}

Result<UniqueFd> start_pam_helper(const std::string& service) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return Error::from_errno(EX_OSERR, "socketpair", errno);
  }
  const pid_t pid = ::fork();
  if (pid < 0) return Error::from_errno(EX_OSERR, "fork", errno);
  if (pid == 0) {
    ::close(pair[0]);
    // Close everything else we may have inherited (listening sockets above all).
    for (int fd = 3; fd < 1024; ++fd) {
      if (fd != pair[1]) ::close(fd);
    }
    run_helper(pair[1], service);
  }
  ::close(pair[1]);
  return UniqueFd(pair[0]);
}

PamPasswordChecker::PamPasswordChecker(event_base* base, UniqueFd helper)
    : helper_(std::move(helper)),
      event_(event_new(base, helper_.get(), EV_READ | EV_PERSIST, &PamPasswordChecker::on_readable,
                       this)) {
  evutil_make_socket_nonblocking(helper_.get());
  event_add(event_.get(), nullptr);
}

void PamPasswordChecker::check(const std::string& user, const std::string& password,
                               const std::string& peer, Done done) {
  const std::string id = std::to_string(next_id_++);
  const std::string msg = join_fields({id, user, password, peer});
  if (msg.size() > kMaxMessage ||
      ::send(helper_.get(), msg.data(), msg.size(), MSG_NOSIGNAL) < 0) {
    return done(smtp::AuthResult::kTemporary);
  }
  waiting_.emplace(std::stoull(id), std::move(done));
}

void PamPasswordChecker::on_readable(evutil_socket_t fd, short, void* arg) {
  auto* self = static_cast<PamPasswordChecker*>(arg);
  char buf[kMaxMessage];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    log_error("-", "the PAM helper is gone: AUTH fails until mta is restarted");
    event_del(self->event_.get());
    auto waiting = std::move(self->waiting_);
    for (auto& [id, done] : waiting) done(smtp::AuthResult::kTemporary);
    return;
  }
  auto fields = split_fields(std::string_view(buf, static_cast<std::size_t>(n)));
  if (fields.size() != 2) return;
  std::uint64_t id = 0;
  for (char c : fields[0]) id = id * 10 + static_cast<std::uint64_t>(c - '0');
  auto it = self->waiting_.find(id);
  if (it == self->waiting_.end()) return;
  Done done = std::move(it->second);
  self->waiting_.erase(it);
  done(fields[1] == "ok" ? smtp::AuthResult::kOk
       : fields[1] == "temporary" ? smtp::AuthResult::kTemporary
                                  : smtp::AuthResult::kBadCredentials);
}

}  // namespace mailwright::mta
