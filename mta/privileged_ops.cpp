#include "mta/privileged_ops.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <vector>

#include "libmail/accounts.h"
#include "libmail/exit_status.h"
#include "libmail/file_io.h"
#include "libmail/mailbox_lock.h"
#include "libmail/mbox.h"
#include "libmail/privilege.h"
#include "mta/aliases.h"

namespace mailwright::mta {
namespace {

using Kind = OpResult::Kind;
using Clock = std::chrono::steady_clock;

// Generous bounds on how long a worker may live besides its command: it reads one file or
// copies one message, so hitting them means a hung file system.
constexpr unsigned kForwardReadAlarm = 120;
constexpr unsigned kWorkerSlack = 300;
constexpr std::chrono::seconds kFileLockTimeout{60};

Error refuse(std::string text) { return Error::permanent(EX_USAGE, "5.5.4", std::move(text)); }

bool has_control(std::string_view s, bool allow_tab) {
  for (unsigned char c : s) {
    if (c == 0x7F || (c < 0x20 && !(allow_tab && c == '\t'))) return true;
  }
  return false;
}

std::vector<std::string_view> split_fields(std::string_view s) {
  std::vector<std::string_view> out;
  for (;;) {
    const std::size_t nul = s.find('\0');
    out.push_back(s.substr(0, nul));
    if (nul == std::string_view::npos) return out;
    s.remove_prefix(nul + 1);
  }
}

std::optional<std::uint64_t> parse_number(std::string_view s) {
  if (s.empty() || s.size() > 19 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

bool valid_path(std::string_view p) {
  if (p.empty() || p.front() != '/' || p.back() == '/') return false;
  for (std::size_t start = 1; start <= p.size();) {
    std::size_t slash = p.find('/', start);
    if (slash == std::string_view::npos) slash = p.size();
    const std::string_view part = p.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = slash + 1;
  }
  return true;
}

bool valid_status(std::string_view s, char klass) {
  // d.ddd.ddd with the class digit given.
  if (s.size() < 5 || s[0] != klass || s[1] != '.') return false;
  const std::size_t dot = s.find('.', 2);
  if (dot == std::string_view::npos || dot == 2 || dot + 1 >= s.size() || dot > 5) return false;
  for (std::size_t i = 2; i < s.size(); ++i) {
    if (i == dot) continue;
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return s.size() - dot - 1 <= 3;
}

OpResult result(Kind kind, std::string status, std::string text) {
  return OpResult{kind, std::move(status), std::move(text)};
}

OpResult result_of(const Error& e) {
  return result(e.is_temporary() ? Kind::kDeferred : Kind::kFailed, e.status(), e.text());
}

// --- accounts -----------------------------------------------------------------------------

struct Who {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
  std::string shell;
  std::vector<gid_t> groups;
};

// getpwnam_r with an exact name match, and the user's groups. nullopt: no such user.
Result<std::optional<Who>> lookup(const std::string& name) {
  if (!is_valid_user_name(name)) return std::optional<Who>{};
  std::vector<char> buf(16384);
  for (;;) {
    passwd pw{};
    passwd* found = nullptr;
    const int rc = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if ((rc == 0 && found == nullptr) || rc == ENOENT || rc == ESRCH) return std::optional<Who>{};
    if (rc != 0) return Error::from_errno(EX_TEMPFAIL, "account lookup", rc);
    if (name != pw.pw_name) return std::optional<Who>{};
    Who who;
    who.name = pw.pw_name;
    who.uid = pw.pw_uid;
    who.gid = pw.pw_gid;
    who.home = pw.pw_dir ? pw.pw_dir : "";
    who.shell = pw.pw_shell && *pw.pw_shell ? pw.pw_shell : "/bin/sh";
    int n = 32;
    for (int tries = 0; tries < 8; ++tries) {
      who.groups.resize(static_cast<std::size_t>(n));
      int got = n;
      if (::getgrouplist(who.name.c_str(), who.gid, who.groups.data(), &got) >= 0) {
        who.groups.resize(static_cast<std::size_t>(got));
        break;
      }
      n = std::max(got, n * 2);
    }
    if (who.groups.empty()) who.groups.push_back(who.gid);
    return std::optional<Who>(std::move(who));
  }
}

// The user the process runs as (without root: the one every target runs as).
Result<std::optional<Who>> lookup_self() {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  const int rc = ::getpwuid_r(::geteuid(), &pw, buf.data(), buf.size(), &found);
  if (rc != 0 && rc != ENOENT && rc != ESRCH) return Error::from_errno(EX_TEMPFAIL, "account lookup", rc);
  if (found == nullptr) {
    return Error::temporary(EX_CONFIG, "4.3.5", "the mta's own user id has no account");
  }
  return lookup(pw.pw_name);
}

// Becomes who for good (root), or checks that we are who already (not root).
Status become(const Who& who) {
  if (::geteuid() == 0 || ::getuid() == 0) return drop_privileges(who.uid, who.gid, who.groups);
  if (who.uid != ::geteuid()) {
    return Error::temporary(EX_CONFIG, "4.3.5",
                            "mta does not run as root: cannot act as user " + who.name);
  }
  return {};
}

bool shell_allowed(const std::string& shell) {
  bool ok = false;
  ::setusershell();
  for (const char* s = ::getusershell(); s != nullptr; s = ::getusershell()) {
    if (shell == s) {
      ok = true;
      break;
    }
  }
  ::endusershell();
  return ok;
}

// --- reading ~/.forward -------------------------------------------------------------------

OpResult read_forward_file(const std::string& home, uid_t uid) {
  const OpResult none = result(Kind::kNoForward, "", "");
  if (home.empty() || home.front() != '/') return none;
  const std::string path = home + (home.back() == '/' ? "" : "/") + ".forward";
  auto unsafe = [&](const std::string& why) { return result(Kind::kUnsafe, "", path + ": " + why); };
  auto later = [&](const std::string& what, int err) {
    return result(Kind::kDeferred, "4.3.0", what + ": " + std::strerror(err));
  };
  UniqueFd dir(::open(home.c_str(), O_RDONLY | O_DIRECTORY | O_NOCTTY | O_CLOEXEC));
  if (!dir) {
    if (errno == ENOENT || errno == ENOTDIR) return none;
    if (errno == EACCES || errno == EPERM) return unsafe("home directory not accessible");
    return later("home directory " + home, errno);
  }
  UniqueFd fd(::openat(dir.get(), ".forward",
                       O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    if (err == ENOENT) return none;
    if (err == ELOOP) return unsafe("is a symbolic link");
    if (err == EACCES || err == EPERM) return unsafe("not readable");
    if (err == ENXIO || err == EISDIR) return unsafe("not a regular file");
    return later(path, err);
  }
  struct stat home_st {};
  struct stat file_st {};
  if (::fstat(dir.get(), &home_st) != 0) return later(home, errno);
  if (::fstat(fd.get(), &file_st) != 0) return later(path, errno);
  if (std::string problem = forward_file_problem(home_st, file_st, uid); !problem.empty()) {
    return unsafe(problem);
  }
  std::string text;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return later(path, errno);
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxForwardFile) {
      return unsafe("larger than " + std::to_string(kMaxForwardFile / 1024) + " KiB");
    }
  }
  return result(Kind::kForward, "", std::move(text));
}

// Whether the .forward of who (read with the current identity, which is who's) still lists
// the target: a queue manager cannot make us run anything the user did not write there.
Status forward_lists(const Who& who, AliasTarget::Kind kind, const std::string& target) {
  OpResult r = read_forward_file(who.home, who.uid);
  if (r.kind != Kind::kForward) {
    return Error::temporary(EX_TEMPFAIL, "4.3.0",
                            "~" + who.name + "/.forward cannot be used now" +
                                (r.text.empty() ? std::string() : ": " + r.text));
  }
  auto targets = parse_include_file(r.text, "~" + who.name + "/.forward");
  if (targets) {
    for (const AliasTarget& t : *targets) {
      if (t.kind == kind && t.value == target) return {};
    }
  }
  return Error::temporary(EX_TEMPFAIL, "4.3.0",
                          "~" + who.name + "/.forward does not list this target (any more)");
}

// Whether the alias file itself (not an :include:) lists the target, and may be trusted to.
Status alias_lists(const OpsPolicy& policy, AliasTarget::Kind kind, const std::string& target) {
  if (policy.aliases.empty()) {
    return Error::permanent(EX_NOPERM, "5.7.1", "no alias file: no alias commands or files");
  }
  struct stat st {};
  if (::stat(policy.aliases.c_str(), &st) != 0) {
    return Error::from_errno(EX_TEMPFAIL, policy.aliases, errno);
  }
  if ((st.st_uid != 0 && st.st_uid != ::geteuid()) || (st.st_mode & 022) != 0) {
    return Error::temporary(EX_CONFIG, "4.3.5",
                            policy.aliases +
                                " must belong to root and be writable by nobody else before its "
                                "commands and files are run");
  }
  // The launcher lives as long as the mta: keep the table while the file is the same.
  static std::optional<AliasTable> cached;
  static struct stat cached_st {};
  if (!cached || cached_st.st_dev != st.st_dev || cached_st.st_ino != st.st_ino ||
      cached_st.st_size != st.st_size || cached_st.st_mtim.tv_sec != st.st_mtim.tv_sec ||
      cached_st.st_mtim.tv_nsec != st.st_mtim.tv_nsec) {
    cached.reset();
    auto table = AliasTable::load(policy.aliases);
    if (!table) return Error::temporary(EX_CONFIG, "4.3.5", table.error().text());
    cached = std::move(*table);
    cached_st = st;
  }
  for (std::string_view name : cached->names()) {
    for (const AliasTarget& t : *cached->find(name)) {
      if (t.kind == kind && t.value == target) return {};
    }
  }
  return Error::temporary(EX_NOPERM, "4.3.0", "the alias file does not list this target");
}

// --- the message --------------------------------------------------------------------------

// A private, unlinked copy of the message: prefix, then the message with LF line ends.
Result<UniqueFd> copy_message(int from, std::uint64_t offset, std::uint64_t length,
                              std::string_view prefix, std::uint64_t& size) {
  UniqueFd fd(::memfd_create("mailwright-message", MFD_CLOEXEC));
  if (!fd) return Error::from_errno(EX_OSERR, "memfd_create", errno);
  std::string out(prefix);
  CrlfToLf lf;
  std::string chunk(64 * 1024, '\0');
  std::uint64_t done = 0;
  size = 0;
  while (done < length) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), length - done));
    auto got = pread_full(from, chunk.data(), want, static_cast<off_t>(offset + done));
    if (!got) return got.error();
    if (*got == 0) return Error::temporary(EX_IOERR, "4.3.0", "queue file shorter than expected");
    lf.feed(std::string_view(chunk.data(), *got), out);
    done += *got;
    if (out.size() >= chunk.size()) {
      if (auto st = write_all(fd.get(), out); !st) return st.error();
      size += out.size();
      out.clear();
    }
  }
  lf.finish(out);
  if (auto st = write_all(fd.get(), out); !st) return st.error();
  size += out.size();
  if (::lseek(fd.get(), 0, SEEK_SET) != 0) return Error::from_errno(EX_OSERR, "lseek", errno);
  return fd;
}

std::string return_path(std::string_view sender) {
  return "Return-Path: <" + std::string(sender) + ">\n";
}

// --- processes ------------------------------------------------------------------------------

void close_from(int first) {
  if (::close_range(static_cast<unsigned>(first), ~0U, 0) == 0) return;
  const long max = ::sysconf(_SC_OPEN_MAX);
  for (long fd = first; fd < (max > 0 ? max : 65536); ++fd) ::close(static_cast<int>(fd));
}

void default_signals() {
  for (int sig : {SIGPIPE, SIGXFSZ, SIGCHLD, SIGALRM, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1,
                  SIGUSR2}) {
    ::signal(sig, SIG_DFL);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

// Puts the descriptors a worker keeps at 3 (result socket) and 4 (message, if any), closes
// every other one, and gives it /dev/null as standard input and output.
void settle_worker_fds(int result_fd, int message_fd) {
  // Above anything we keep, so the dup2s below cannot clobber one another.
  const int r = ::fcntl(result_fd, F_DUPFD_CLOEXEC, 10);
  const int m = message_fd >= 0 ? ::fcntl(message_fd, F_DUPFD_CLOEXEC, 10) : -1;
  if (r < 0 || (message_fd >= 0 && m < 0)) std::_Exit(EX_OSERR);
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) std::_Exit(EX_OSERR);
  for (int fd = 0; fd <= 2; ++fd) {
    if (::dup2(null, fd) < 0) std::_Exit(EX_OSERR);
  }
  if (::dup3(r, 3, O_CLOEXEC) < 0) std::_Exit(EX_OSERR);
  if (m >= 0 && ::dup3(m, 4, O_CLOEXEC) < 0) std::_Exit(EX_OSERR);
  close_from(m >= 0 ? 5 : 4);
}

[[noreturn]] void answer(const OpResult& r) {
  const std::string packet = encode_result(r);
  (void)::send(3, packet.data(), packet.size(), MSG_NOSIGNAL);
  std::_Exit(0);
}

struct CommandRun {
  int status = 0;
  bool timed_out = false;
  std::string output;
};

Result<CommandRun> run_command(const Who& who, const std::string& command, int stdin_fd,
                               const std::string& sender, const std::string& recipient,
                               std::chrono::seconds limit) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return Error::from_errno(EX_OSERR, "pipe", errno);
  UniqueFd read_end(out[0]);
  UniqueFd write_end(out[1]);
  // Built before the fork: the child only calls async-signal-safe functions.
  std::vector<std::string> env_strings{
      "PATH=/usr/bin:/bin", "HOME=" + who.home, "USER=" + who.name, "LOGNAME=" + who.name,
      "SHELL=/bin/sh",      "SENDER=" + sender, "RECIPIENT=" + recipient};
  std::vector<const char*> envp;
  for (const std::string& e : env_strings) envp.push_back(e.c_str());
  envp.push_back(nullptr);
  const char* argv[] = {"sh", "-c", command.c_str(), nullptr};
  const pid_t pid = ::fork();
  if (pid < 0) return Error::from_errno(EX_OSERR, "fork", errno);
  if (pid == 0) {
    ::setsid();
    if (::dup2(stdin_fd, STDIN_FILENO) < 0 || ::dup2(write_end.get(), STDOUT_FILENO) < 0 ||
        ::dup2(write_end.get(), STDERR_FILENO) < 0) {
      std::_Exit(EX_OSERR);
    }
    close_from(3);
    ::execve("/bin/sh", const_cast<char* const*>(argv), const_cast<char* const*>(envp.data()));
    std::_Exit(EX_OSERR);
  }
  write_end.reset();
  (void)::fcntl(read_end.get(), F_SETFL, O_NONBLOCK);
  CommandRun run;
  const auto deadline = Clock::now() + limit;
  bool eof = false;
  auto drain = [&] {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(read_end.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) eof = true;
      if (n <= 0) return;
      // Keep the start; read and drop the rest so the command never blocks on a full pipe.
      const std::size_t room = kMaxCapturedOutput - std::min(kMaxCapturedOutput, run.output.size());
      run.output.append(buf, std::min(room, static_cast<std::size_t>(n)));
    }
  };
  for (;;) {
    const pid_t w = ::waitpid(pid, &run.status, WNOHANG);
    if (w == pid) {
      drain();  // what it wrote before it ended; children it left behind are not waited for
      break;
    }
    if (w < 0 && errno != EINTR) return Error::from_errno(EX_OSERR, "waitpid", errno);
    const auto now = Clock::now();
    if (now >= deadline) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &run.status, 0) < 0 && errno == EINTR) {
      }
      run.timed_out = true;
      break;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    const int wait_ms = static_cast<int>(std::min<std::int64_t>(50, left.count() + 1));
    pollfd p{read_end.get(), POLLIN, 0};
    const int n = ::poll(eof ? nullptr : &p, eof ? 0 : 1, wait_ms);
    if (n > 0) drain();
  }
  return run;
}

// --- the workers ---------------------------------------------------------------------------

[[noreturn]] void read_forward_worker(const Who& who) {
  // Root reads as the user; without root we read what we may (and judge it the same way).
  if (::geteuid() == 0) {
    if (auto st = drop_privileges(who.uid, who.gid, who.groups); !st) answer(result_of(st.error()));
  }
  answer(read_forward_file(who.home, who.uid));
}

[[noreturn]] void target_worker(const OpRequest& req, const Who& who, const OpsPolicy& policy) {
  const bool program = req.type == OpRequest::Type::kRunProgram;
  // The copy is made before the identity changes, so the queue file's descriptor is gone
  // before anything runs as the user.
  std::uint64_t size = 0;
  auto message = copy_message(4, req.offset, req.length,
                              program ? return_path(req.sender) : std::string(), size);
  ::close(4);
  if (!message) answer(result_of(message.error()));
  if (auto st = become(who); !st) answer(result_of(st.error()));
  const auto kind = program ? AliasTarget::Kind::kPipe : AliasTarget::Kind::kFile;
  if (req.origin == TargetOrigin::kForward) {
    if (program && !shell_allowed(who.shell)) {
      answer(result(Kind::kFailed, "5.7.1",
                    "user " + who.name + " has no login shell listed in /etc/shells: no "
                    "commands from ~/.forward"));
    }
    if (auto st = forward_lists(who, kind, req.target); !st) answer(result_of(st.error()));
  }
  if (::chdir(who.home.c_str()) != 0 && ::chdir("/") != 0) {
    answer(result(Kind::kDeferred, "4.3.0", "cannot chdir"));
  }
  if (program) {
    auto run = run_command(who, req.target, message->get(), req.sender, req.recipient,
                           policy.program_timeout);
    if (!run) answer(result_of(run.error()));
    answer(program_result(run->status, run->timed_out, run->output));
  }
  if (req.target == "/dev/null") answer(result(Kind::kDelivered, "2.0.0", "discarded"));
  auto fd = open_mbox_for_append(req.target, who.uid);
  if (!fd) answer(result_of(fd.error()));
  if (auto st = lock_fcntl(fd->get(), true, kFileLockTimeout); !st) answer(result_of(st.error()));
  if (auto st = append_to_mbox(fd->get(), mbox_from_line(req.sender, std::time(nullptr)),
                               return_path(req.sender), message->get(), size, true);
      !st) {
    answer(result_of(st.error()));
  }
  if (fd->close() != 0) answer(result(Kind::kDeferred, "4.3.0", "close: " + std::string(std::strerror(errno))));
  answer(result(Kind::kDelivered, "2.0.0", "appended to " + req.target));
}

}  // namespace

// --- wire formats ---------------------------------------------------------------------------

std::string encode_request(const OpRequest& r) {
  std::string p(1, static_cast<char>(r.type));
  if (r.type == OpRequest::Type::kReadForward) return p + r.user;
  auto field = [&p](std::string_view f, bool last = false) {
    p.append(f);
    if (!last) p.push_back('\0');
  };
  field(r.origin == TargetOrigin::kAlias ? "alias" : "forward");
  field(r.user);
  field(r.target);
  field(r.sender);
  field(r.recipient);
  field(std::to_string(r.offset));
  field(std::to_string(r.length), true);
  return p;
}

Result<OpRequest> decode_request(std::string_view packet) {
  if (packet.empty() || packet.size() > kMaxRequestPacket) return refuse("bad request size");
  OpRequest r;
  const char type = packet[0];
  const auto fields = split_fields(packet.substr(1));
  if (type == 'R') {
    r.type = OpRequest::Type::kReadForward;
    if (fields.size() != 1) return refuse("read request: wrong number of fields");
    if (!is_valid_user_name(fields[0])) return refuse("read request: invalid user name");
    r.user = std::string(fields[0]);
    return r;
  }
  if (type != 'P' && type != 'W') return refuse("unknown request type");
  r.type = type == 'P' ? OpRequest::Type::kRunProgram : OpRequest::Type::kAppendFile;
  if (fields.size() != 7) return refuse("wrong number of fields");
  if (fields[0] == "alias") {
    r.origin = TargetOrigin::kAlias;
    if (!fields[1].empty()) return refuse("an alias target names no user");
  } else if (fields[0] == "forward") {
    r.origin = TargetOrigin::kForward;
    if (!is_valid_user_name(fields[1])) return refuse("invalid user name");
  } else {
    return refuse("unknown origin");
  }
  r.user = std::string(fields[1]);
  const std::string_view target = fields[2];
  if (target.empty() || target.size() > kMaxTarget) return refuse("bad target length");
  if (type == 'P') {
    if (has_control(target, true) || target.front() == ' ' || target.front() == '\t') {
      return refuse("bad command");
    }
  } else if (has_control(target, false) || !valid_path(target)) {
    return refuse("bad path");
  }
  r.target = std::string(target);
  if (fields[3].size() > kMaxEnvelopeAddress || has_control(fields[3], false)) {
    return refuse("bad sender");
  }
  r.sender = std::string(fields[3]);
  if (fields[4].empty() || fields[4].size() > kMaxEnvelopeAddress ||
      has_control(fields[4], false)) {
    return refuse("bad recipient");
  }
  r.recipient = std::string(fields[4]);
  const auto offset = parse_number(fields[5]);
  const auto length = parse_number(fields[6]);
  if (!offset || !length || *offset > kMaxMessage || *length > kMaxMessage) {
    return refuse("bad offset or length");
  }
  r.offset = *offset;
  r.length = *length;
  return r;
}

std::string encode_result(const OpResult& r) {
  std::string p(1, static_cast<char>(r.kind));
  p += r.status;
  p.push_back('\0');
  p += r.text;
  return p;
}

Result<OpResult> decode_result(std::string_view packet) {
  const auto bad = Error::temporary(EX_PROTOCOL, "4.3.0", "bad answer from a delivery helper");
  if (packet.size() < 2 || packet.size() > kMaxResultPacket) return bad;
  const std::size_t nul = packet.find('\0');
  if (nul == std::string_view::npos) return bad;
  OpResult r;
  r.kind = static_cast<Kind>(packet[0]);
  r.status = std::string(packet.substr(1, nul - 1));
  r.text = std::string(packet.substr(nul + 1));
  switch (r.kind) {
    case Kind::kDelivered:
      if (!valid_status(r.status, '2')) return bad;
      break;
    case Kind::kDeferred:
      if (!valid_status(r.status, '4')) return bad;
      break;
    case Kind::kFailed:
      if (!valid_status(r.status, '5')) return bad;
      break;
    case Kind::kNoForward:
    case Kind::kUnsafe:
    case Kind::kForward:
      if (!r.status.empty()) return bad;
      break;
    default:
      return bad;
  }
  return r;
}

// --- pure judgements ------------------------------------------------------------------------

std::string forward_file_problem(const struct stat& home, const struct stat& file, uid_t user) {
  if (!S_ISDIR(home.st_mode)) return "home directory is not a directory";
  if (home.st_uid != user && home.st_uid != 0) return "home directory belongs to another user";
  if ((home.st_mode & 022) != 0) return "home directory is writable by group or others";
  if (!S_ISREG(file.st_mode)) return "not a regular file";
  if (file.st_uid != user && file.st_uid != 0) return "belongs to another user";
  if ((file.st_mode & 022) != 0) return "writable by group or others";
  return "";
}

std::string clean_output(std::string_view raw, std::size_t max) {
  std::string out;
  for (unsigned char c : raw) {
    const bool blank = c < 0x21 || c > 0x7E;
    if (blank) {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else {
      out.push_back(static_cast<char>(c));
    }
    if (out.size() >= max) break;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

OpResult program_result(int wait_status, bool timed_out, std::string_view output) {
  const std::string said = clean_output(output);
  auto with_output = [&](std::string text) {
    return said.empty() ? text : text + ": " + said;
  };
  if (timed_out) {
    return result(Kind::kDeferred, "4.3.0", with_output("command time limit exceeded"));
  }
  if (WIFSIGNALED(wait_status)) {
    return result(Kind::kDeferred, "4.3.0",
                  with_output("command killed by signal " + std::to_string(WTERMSIG(wait_status))));
  }
  if (!WIFEXITED(wait_status)) return result(Kind::kDeferred, "4.3.0", "command did not exit");
  const int code = WEXITSTATUS(wait_status);
  if (code == 0) return result(Kind::kDelivered, "2.0.0", with_output("command succeeded"));
  const std::string text = "command exited with status " + std::to_string(code);
  if (code >= EX__BASE && code <= EX__MAX) {
    const ExitStatusInfo& info = exit_status_info(code);
    if (info.code == code) {
      return result(info.temporary ? Kind::kDeferred : Kind::kFailed, std::string(info.status),
                    with_output(text + " (" + std::string(info.text) + ")"));
    }
  }
  return result(Kind::kFailed, "5.3.0", with_output(text));
}

void CrlfToLf::feed(std::string_view in, std::string& out) {
  for (char c : in) {
    if (held_cr_) {
      held_cr_ = false;
      if (c != '\n') out.push_back('\r');
    }
    if (c == '\r') {
      held_cr_ = true;
      continue;
    }
    out.push_back(c);
  }
}

void CrlfToLf::finish(std::string& out) {
  if (held_cr_) out.push_back('\r');
  held_cr_ = false;
}

// --- the launcher's side --------------------------------------------------------------------

Status check_program_user(const std::string& name) {
  auto who = lookup(name);
  if (!who) return who.error();
  if (!*who) return Error::from_exit_code(EX_CONFIG, "alias_program_user: no such user: " + name);
  if ((*who)->uid == 0) {
    return Error::from_exit_code(EX_CONFIG, "alias_program_user must not be root");
  }
  return {};
}

Result<UniqueFd> start_operation(std::string_view packet, UniqueFd fd, const OpsPolicy& policy) {
  auto req = decode_request(packet);
  if (!req) return req.error();
  const bool reading = req->type == OpRequest::Type::kReadForward;
  if (reading && fd) return refuse("a read request takes no descriptor");
  if (!reading) {
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return refuse("the message must come as a regular file");
    }
    if (static_cast<std::uint64_t>(st.st_size) < req->offset + req->length) {
      return refuse("the message is not in the file");
    }
    if ((::fcntl(fd.get(), F_GETFL) & O_ACCMODE) != O_RDONLY) {
      return refuse("the message file must be open for reading only");
    }
  }
  std::string user = req->user;
  if (!reading && req->origin == TargetOrigin::kAlias) {
    const auto kind = req->type == OpRequest::Type::kRunProgram ? AliasTarget::Kind::kPipe
                                                                : AliasTarget::Kind::kFile;
    if (auto st = alias_lists(policy, kind, req->target); !st) return st.error();
    user = policy.program_user;
  }
  // Without root, the alias file's targets run as the mta's own user: there is no other.
  const bool as_self = !reading && req->origin == TargetOrigin::kAlias && ::geteuid() != 0;
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return Error::from_errno(EX_OSERR, "socketpair", errno);
  }
  UniqueFd ours(pair[0]);
  UniqueFd theirs(pair[1]);
  const pid_t child = ::fork();
  if (child < 0) return Error::from_errno(EX_OSERR, "fork", errno);
  if (child == 0) {
    // The intermediate child: start the worker and go, so nobody has to reap it.
    const pid_t worker = ::fork();
    if (worker != 0) std::_Exit(worker < 0 ? 1 : 0);
    ::setsid();
    default_signals();
    settle_worker_fds(theirs.get(), reading ? -1 : fd.get());
    ::umask(077);
    // Bounds on the worker's whole life; its command has a shorter one of its own.
    ::alarm(reading ? kForwardReadAlarm
                    : static_cast<unsigned>(policy.program_timeout.count()) + kWorkerSlack);
    // The account is looked up here, not in the launcher, which must never wait on NSS.
    auto who = as_self ? lookup_self() : lookup(user);
    if (!who) answer(result_of(who.error()));
    if (!*who) {
      // No account, no .forward.
      if (reading) answer(result(Kind::kNoForward, "", ""));
      answer(result(Kind::kFailed, "5.1.1", "no such user: " + user));
    }
    if (!reading && (*who)->uid == 0) {
      answer(result(Kind::kFailed, "5.7.1",
                    "commands and files are not run as root; alias root to a person"));
    }
    if (reading) read_forward_worker(**who);
    target_worker(*req, **who, policy);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Error::temporary(EX_OSERR, "4.3.0", "could not start a delivery helper");
  }
  return ours;
}

}  // namespace mailwright::mta
