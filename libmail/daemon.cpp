#include "libmail/daemon.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>

#include "libmail/accounts.h"
#include "libmail/file_io.h"
#include "libmail/privilege.h"

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

Status become_user(const std::string& user) {
  auto found = SystemAccounts().find(user);
  if (!found) return found.error();
  if (!found->has_value()) return Error::from_exit_code(EX_CONFIG, "no such user: " + user);
  const Account& account = **found;
  return drop_privileges(account.uid, account.gid, {});
}

Result<RunningDaemon> start_daemon(const DaemonStart& start) {
  RunningDaemon running;
  for (const ListenSpec& spec : start.listen) {
    auto fds = bind_listeners(spec.address);
    if (!fds) return fds.error();
    for (UniqueFd& fd : *fds) running.listeners.push_back({spec.tag, spec.address, std::move(fd)});
  }
  if (!start.foreground) {
    if (auto st = daemonize(); !st) return st.error();
  }
  if (!start.pid_file.empty()) {
    auto pid = PidFile::create(start.pid_file);
    if (!pid) return pid.error();
    running.pid_file.emplace(std::move(*pid));
  }
  if (!start.run_as.empty()) {
    if (auto st = become_user(start.run_as); !st) return st.error();
  }
  return running;
}

SignalEvents::SignalEvents(event_base* base, std::function<void()> on_stop,
                           std::function<void()> on_reload)
    : base_(base), on_stop_(std::move(on_stop)), on_reload_(std::move(on_reload)) {
  term_.reset(evsignal_new(base, SIGTERM, &SignalEvents::on_signal, this));
  int_.reset(evsignal_new(base, SIGINT, &SignalEvents::on_signal, this));
  hup_.reset(evsignal_new(base, SIGHUP, &SignalEvents::on_signal, this));
  for (event* ev : {term_.get(), int_.get(), hup_.get()}) event_add(ev, nullptr);
}

void SignalEvents::on_signal(evutil_socket_t sig, short, void* arg) {
  auto* self = static_cast<SignalEvents*>(arg);
  if (sig == SIGHUP) {
    if (self->on_reload_) self->on_reload_();
    return;
  }
  if (self->on_stop_) self->on_stop_();
  event_base_loopexit(self->base_, nullptr);
}

void ignore_disruptive_signals() {
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGXFSZ, SIG_IGN);
}

}  // namespace mailwright
