#include "pop3d/pop3d.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "build_paths.h"
#include "libmail/accounts.h"
#include "libmail/daemon.h"
#include "libmail/event_loop.h"
#include "libmail/log.h"
#include "libmail/tls.h"
#include "libmail/mailbox_check.h"
#include "pop3d/authenticator.h"
#include "pop3d/pop3_server.h"
#include "pop3d/pop3d_config.h"
#include "pop3d/privsep.h"

namespace mailwright::pop3 {

const char* pop3d_usage() {
  return "usage: pop3d -d [-fv] [-C file]     standalone daemon\n"
         "       pop3d [-sv] [-C file]        one session on stdin (inetd)\n"
         "       pop3d -P | -n [-C file]\n";
}

Result<Pop3dOptions> parse_pop3d_options(const std::vector<std::string>& args) {
  Pop3dOptions o;
  auto usage = [](std::string why) { return Error::permanent(EX_USAGE, "5.5.4", std::move(why)); };
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-') return usage("unexpected argument " + arg);
    for (std::size_t j = 1; j < arg.size(); ++j) {
      switch (arg[j]) {
        case 'd':
          o.daemon = true;
          break;
        case 'f':
          o.foreground = true;
          break;
        case 's':
          o.implicit_tls = true;
          break;
        case 'P':
          o.print_config = true;
          break;
        case 'n':
          o.check = true;
          break;
        case 'v':
          o.verbose = true;
          break;
        case 'C':
          if (j + 1 < arg.size()) {
            o.config_path = arg.substr(j + 1);
          } else if (i + 1 < args.size()) {
            o.config_path = args[++i];
          } else {
            return usage("option -C needs a value");
          }
          j = arg.size();
          break;
        default:
          return usage(std::string("unknown option -") + arg[j]);
      }
    }
  }
  if (o.print_config + o.check + o.daemon > 1) return usage("-d, -P and -n exclude each other");
  if (o.foreground && !o.daemon) return usage("-f goes with -d");
  if (o.implicit_tls && o.daemon) return usage("-s is for inetd mode; use listen_tls with -d");
  return o;
}

namespace {

int complain(const Error& error) {
  std::fprintf(stderr, "pop3d: %s\n", error.text().c_str());
  log_error("-", "%s", error.text().c_str());
  return error.exit_code();
}

Result<Config> load_config(const Pop3dOptions& options) {
  return Config::load_for_program(options.config_path,
                                  std::string(build::kConfDir) + "/pop3d.conf", kPop3dConfigKeys);
}

// What run_pop3d() refuses to start on, and what it would start with but should not (a root
// login process); then the mail store, judged as mda -n judges it, since pop3d rewrites the
// mailboxes in place and makes its locks and indexes beside them.
int check_setup(Pop3Settings settings) {
  int problems = 0;
  auto problem = [&](const std::string& text, const std::string& fix) {
    std::printf("problem: %s\n  fix: %s\n", text.c_str(), fix.c_str());
    ++problems;
  };
  if (!settings.tls_certificate.empty()) {
    auto ctx = make_server_tls_context(settings.tls_certificate, settings.tls_key);
    if (!ctx) problem(ctx.error().text(), "point tls_certificate/tls_key at a matching PEM pair");
  } else if (settings.plaintext_login != PlaintextLogin::kAlways) {
    std::printf("note: no tls_certificate: STLS and POP3S are off, and plaintext logins work "
                "only %s\n",
                settings.plaintext_login == PlaintextLogin::kLoopback ? "from loopback" : "never");
  }
  std::unique_ptr<AccountDb> accounts;
  if (!settings.mailbox.file_accounts) {
    if (::geteuid() != 0) problem("accounts = system needs root", "start pop3d as root");
    const std::string login_user = settings.run_as.empty() ? std::string(build::kMailUser)
                                                         : settings.run_as;
    auto found = SystemAccounts().find(login_user);
    if (!found || !found->has_value()) {
      problem("run_as: no such user: " + login_user + " (the login process runs as it)",
              "useradd --system --no-create-home " + login_user + ", or set run_as");
    } else if ((*found)->uid == 0) {
      problem("run_as is root: the process that talks to the network before login would "
              "keep root",
              "set run_as to an unprivileged user that owns no mailboxes");
    }
    accounts = std::make_unique<SystemAccounts>();
  } else {
    std::string& owner = settings.mailbox.virtual_owner;
    if (owner.empty()) owner = settings.run_as;
    if (!settings.run_as.empty() && owner != settings.run_as) {
      problem("run_as (" + settings.run_as + ") is not virtual_owner (" + owner +
                  "): pop3d runs as the owner of the mailboxes it serves",
              "set run_as = " + owner + ", or leave run_as empty");
    }
    if (auto auth = VirtualAuthenticator::create(settings.mailbox, settings.apop_secrets);
        !auth) {
      problem(auth.error().text(), "check account_file, virtual_owner and apop_secrets");
    }
    if (auto db = open_account_db(settings.mailbox); db) accounts = std::move(*db);
  }
  problems += print_findings(
      judge_mail_store(gather_mail_store(settings.mailbox, accounts.get())));
  if (problems == 0) std::printf("pop3d: configuration OK\n");
  return problems == 0 ? EX_OK : EX_CONFIG;
}

}  // namespace

int run_pop3d(const Pop3dOptions& options) {
  const bool to_stderr = options.verbose || options.foreground || options.print_config ||
                         options.check;
  log_open("pop3d", to_stderr ? LogTarget::kStderr : LogTarget::kSyslog, options.verbose);
  ignore_disruptive_signals();
  ::umask(077);

  auto config = load_config(options);
  if (!config) return complain(config.error());
  if (options.print_config) {
    std::fputs(config->dump().c_str(), stdout);
    return EX_OK;
  }
  auto settings = pop3_settings_from(*config);
  if (!settings) return complain(settings.error());
  if (options.check) return check_setup(*settings);

  SslCtx tls;
  if (!settings->tls_certificate.empty()) {
    auto ctx = make_server_tls_context(settings->tls_certificate, settings->tls_key);
    if (!ctx) return complain(ctx.error());
    tls = std::move(*ctx);
  }
  if (options.implicit_tls && !tls) {
    return complain(Error::from_exit_code(EX_CONFIG, "-s needs tls_certificate and tls_key"));
  }
  // Accounts. Virtual users: the account file is read now, while we may still be root (it
  // holds password hashes), and the whole server then runs as their owner. System users:
  // privilege separation (privsep.h): this process stays root and answers login requests
  // only; a child does all network work as run_as.
  const bool system = !settings->mailbox.file_accounts;
  std::unique_ptr<Authenticator> auth;
  std::string run_as = settings->run_as;
  if (system) {
    if (::geteuid() != 0) {
      return complain(Error::from_exit_code(
          EX_CONFIG, "accounts = system needs pop3d started as root (or use accounts = file)"));
    }
    if (run_as.empty()) run_as = build::kMailUser;
    auto login_user = SystemAccounts().find(run_as);
    if (!login_user || !login_user->has_value()) {
      return complain(Error::from_exit_code(
          EX_CONFIG, "run_as: no such user: " + run_as + " (create it, or set run_as)"));
    }
  } else {
    // Virtual mailboxes belong to one Unix user, and the server must run as that user.
    std::string& owner = settings->mailbox.virtual_owner;
    if (owner.empty()) owner = run_as;
    if (!run_as.empty() && owner != run_as) {
      return complain(Error::from_exit_code(
          EX_CONFIG, "run_as (" + run_as + ") must be virtual_owner (" + owner + ")"));
    }
    auto virtual_auth = VirtualAuthenticator::create(settings->mailbox, settings->apop_secrets);
    if (!virtual_auth) return complain(virtual_auth.error());
    auth = std::move(*virtual_auth);
    if (run_as.empty()) run_as = settings->mailbox.virtual_owner;
  }

  DaemonStart start;
  if (options.daemon) {
    for (const auto& a : settings->listen) start.listen.push_back({"pop3", a});
    for (const auto& a : settings->listen_tls) start.listen.push_back({"pop3s", a});
    start.foreground = options.foreground;
    start.pid_file = settings->pid_file;
  } else {
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(STDIN_FILENO, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
      return complain(Error::from_exit_code(
          EX_USAGE, "standard input is not a socket; use -d for a standalone daemon"));
    }
    start.foreground = true;
  }
  start.run_as = system ? std::string() : run_as;  // the master of system accounts stays root
  auto running = start_daemon(start);
  if (!running) return complain(running.error());

  int login_side = -1;
  if (system) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
      return complain(Error::from_errno(EX_OSERR, "socketpair", errno));
    }
    pid_t login = ::fork();
    if (login < 0) return complain(Error::from_errno(EX_OSERR, "fork", errno));
    if (login > 0) {
      ::close(pair[1]);
      running->listeners.clear();
      // Session processes are forked from here and run as users: they get no TLS key.
      tls.reset();
      if (!options.daemon) ::close(STDIN_FILENO);
      return run_login_master(pair[0], *settings, "pop3", login);
    }
    ::close(pair[0]);
    login_side = pair[1];
    running->pid_file.reset();  // the master owns it
    if (auto st = become_user(run_as); !st) return complain(st.error());
  }

  EventBase base = make_event_base();
  if (system) auth = std::make_unique<PrivsepAuthenticator>(base.get(), UniqueFd(login_side));
  Pop3Server server(base.get(), *settings, *auth, tls.get());
  if (!options.daemon) {
    server.serve_connected(::dup(STDIN_FILENO), options.implicit_tls, true);
    event_base_dispatch(base.get());
    return EX_OK;
  }
  if (auto st = server.listen(running->listeners); !st) return complain(st.error());
  SignalEvents signals(
      base.get(), [] { log_info("-", "stopping"); },
      [] { log_notice("-", "SIGHUP: restart pop3d to read a changed configuration"); });
  log_info("-", "pop3d %s ready", build::kVersion);
  event_base_dispatch(base.get());
  return EX_OK;
}

}  // namespace mailwright::pop3
