#include "mta/mta.h"

#include <pwd.h>
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
#include "libmail/file_io.h"
#include "libmail/log.h"
#include "libmail/tls.h"
#include "mta/lmtp_delivery.h"
#include "mta/mailq.h"
#include "mta/mda_launcher.h"
#include "mta/password_checkers.h"
#include "mta/privileged_client.h"
#include "mta/privileged_ops.h"
#include "mta/queue_manager.h"
#include "mta/remote_delivery.h"
#include "mta/smtp_server.h"
#include "mta/stdio_session.h"

namespace mailwright::mta {

const char* mta_usage() {
  return "usage: mta -bd [-qTIME] [-v] [-C file]  SMTP daemon and queue (-bD: in the foreground)\n"
         "       mta -bs [-v] [-C file]     one SMTP session on stdin/stdout (inetd)\n"
         "       mta -q[Rdomain|Iid] [-v] [-C file]  deliver the queue once\n"
         "       mta -bp [-C file]          list the queue (mailq)\n"
         "       mta -bi [-C file]          check the alias file (newaliases)\n"
         "       mta -bP | -bV [-C file]    print the configuration | check the setup\n";
}

std::vector<std::string> arguments_for_name(const std::string& argv0,
                                            std::vector<std::string> args) {
  const std::string name = argv0.substr(argv0.rfind('/') == std::string::npos
                                            ? 0
                                            : argv0.rfind('/') + 1);
  if (name == "mailq") args.insert(args.begin(), "-bp");
  if (name == "newaliases") args.insert(args.begin(), "-bi");
  return args;
}

Result<MtaOptions> parse_mta_options(const std::vector<std::string>& args) {
  MtaOptions o;
  auto usage = [](std::string why) { return Error::permanent(EX_USAGE, "5.5.4", std::move(why)); };
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-') return usage("unexpected argument " + arg);
    if (arg[1] == 'b') {
      if (arg.size() != 3) return usage("unknown option " + arg);
      if (o.mode_given) return usage("only one -b mode may be given");
      o.mode_given = true;
      switch (arg[2]) {
        case 'd':
          o.mode = MtaMode::kDaemon;
          break;
        case 'D':
          o.mode = MtaMode::kDaemon;
          o.foreground = true;
          break;
        case 's':
          o.mode = MtaMode::kSmtpSession;
          break;
        case 'P':
          o.mode = MtaMode::kPrintConfig;
          break;
        case 'V':
          o.mode = MtaMode::kCheck;
          break;
        case 'p':
          o.mode = MtaMode::kListQueue;
          break;
        case 'i':
          o.mode = MtaMode::kNewAliases;
          break;
        default:
          return usage("unknown option " + arg);
      }
      continue;
    }
    if (arg.rfind("-q", 0) == 0) {
      // sendmail's forms: -q, -q15m (with -bd: how often), -qRdomain, -qIid.
      const std::string rest = arg.substr(2);
      if (!rest.empty() && (rest[0] == 'R' || rest[0] == 'I')) {
        std::string value = rest.substr(1);
        if (value.empty()) {
          if (i + 1 >= args.size()) return usage("option " + arg + " needs a value");
          value = args[++i];
        }
        (rest[0] == 'R' ? o.queue_recipient : o.queue_id) = value;
      } else if (!rest.empty()) {
        o.queue_interval = rest;
      }
      o.queue_flag = true;
      continue;
    }
    if (arg == "-v") {
      o.verbose = true;
    } else if (arg.rfind("-C", 0) == 0) {
      if (arg.size() > 2) {
        o.config_path = arg.substr(2);
      } else if (i + 1 < args.size()) {
        o.config_path = args[++i];
      } else {
        return usage("option -C needs a value");
      }
    } else {
      return usage("unknown option " + arg);
    }
  }
  if (o.queue_flag) {
    if (!o.mode_given) {
      if (!o.queue_interval.empty()) return usage("-q" + o.queue_interval + " goes with -bd");
      o.mode = MtaMode::kQueueRun;
      o.mode_given = true;
    } else if (o.mode != MtaMode::kDaemon || !o.queue_recipient.empty() ||
               !o.queue_id.empty()) {
      return usage("-q goes alone, or as -qTIME with -bd");
    }
  }
  if (!o.mode_given) return usage("give a mode: -bd, -bD, -bs, -bp, -q, -bP or -bV");
  return o;
}

namespace {

int complain(const Error& error) {
  std::fprintf(stderr, "mta: %s\n", error.text().c_str());
  log_error("-", "%s", error.text().c_str());
  return error.exit_code();
}

// The spool's root belongs to the mail user; when started as root, make it if it is missing.
Status prepare_spool_root(const std::string& root, const std::string& user) {
  struct stat st {};
  if (::lstat(root.c_str(), &st) == 0) return {};
  if (errno != ENOENT) return Error::from_errno(EX_OSERR, "spool_dir " + root, errno);
  passwd pw{};
  passwd* found = nullptr;
  std::string buf(16384, '\0');
  if (::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return Error::from_exit_code(EX_CONFIG, "run_as: no such user: " + user);
  }
  if (::mkdir(root.c_str(), 0711) != 0 && errno != EEXIST) {
    return Error::from_errno(EX_CANTCREAT, "mkdir " + root, errno);
  }
  // 0711 whatever the umask: ordinary users must reach maildrop/ for local submission.
  if (::chown(root.c_str(), pw.pw_uid, pw.pw_gid) != 0 || ::chmod(root.c_str(), 0711) != 0) {
    return Error::from_errno(EX_OSERR, "chown/chmod " + root, errno);
  }
  return {};
}

struct Prepared {
  MtaContext context;
  SslCtx tls;
  std::optional<SmtpCredentials> relay_credentials;
  std::string run_as;  // empty: stay who we are
  bool pam = false;    // AUTH for system accounts: a PAM helper must be started
};

// Everything that needs the privileges we start with: config, TLS key, account file.
Result<Prepared> prepare(const MtaSettings& settings) {
  Prepared p;
  p.context.settings = settings;
  const bool root = ::geteuid() == 0;
  if (root) p.run_as = settings.run_as.empty() ? std::string(build::kMailUser) : settings.run_as;
  if (!settings.tls_certificate.empty()) {
    auto ctx = make_server_tls_context(settings.tls_certificate, settings.tls_key);
    if (!ctx) return ctx.error();
    p.tls = std::move(*ctx);
  }
  MailboxSettings mailbox = settings.mailbox;
  if (mailbox.file_accounts && mailbox.virtual_owner.empty() && !p.run_as.empty()) {
    mailbox.virtual_owner = p.run_as;
  }
  auto accounts = open_account_db(mailbox);
  if (!accounts) return accounts.error();
  p.context.accounts = std::move(*accounts);
  auto aliases = load_aliases(settings.aliases);
  if (!aliases) return aliases.error();
  p.context.aliases = std::move(*aliases);
  if (!settings.transports.empty()) {
    auto table = TransportTable::load(settings.transports);
    if (!table) return table.error();
    p.context.transports = std::move(*table);
  }
  if (!settings.relayhost.empty()) {
    auto hop = parse_next_hop(settings.relayhost, 25);
    if (!hop) return Error(hop.error()).with_context("relayhost");
    p.context.relayhost = *hop;
  }
  if (!settings.relayhost_password_file.empty()) {
    // Read now, while we may be root: the file should be readable by root alone.
    auto text = read_small_file(settings.relayhost_password_file, 4096);
    if (!text) return Error(text.error()).with_context("relayhost_password_file");
    std::string_view line(*text);
    line = line.substr(0, line.find('\n'));
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const auto space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 >= line.size()) {
      return Error::from_exit_code(EX_CONFIG, "relayhost_password_file: want 'user password'");
    }
    p.relay_credentials = SmtpCredentials{std::string(line.substr(0, space)),
                                          std::string(line.substr(space + 1))};
  }
  if (settings.auth) {
    if (mailbox.file_accounts) {
      auto again = open_account_db(mailbox);
      if (!again) return again.error();
      p.context.passwords = std::make_unique<FilePasswordChecker>(std::move(*again));
    } else if (root) {
      p.pam = true;
    } else {
      log_warning("-", "AUTH for system accounts needs mta started as root: AUTH is off");
    }
  }
  return p;
}

Status open_spool(MtaContext& context) {
  auto spool = Spool::open(context.settings.spool_dir);
  if (!spool) return spool.error();
  context.spool = std::make_unique<Spool>(std::move(*spool));
  return {};
}

int check_setup(const MtaSettings& settings) {
  int problems = 0;
  auto problem = [&](const std::string& text, const std::string& fix) {
    std::printf("problem: %s\n  fix: %s\n", text.c_str(), fix.c_str());
    ++problems;
  };
  if (!settings.tls_certificate.empty()) {
    auto ctx = make_server_tls_context(settings.tls_certificate, settings.tls_key);
    if (!ctx) problem(ctx.error().text(), "point tls_certificate/tls_key at a matching PEM pair");
  } else {
    std::printf("note: no tls_certificate: no STARTTLS, and so no AUTH\n");
  }
  if (!settings.listen_submission.empty() && settings.tls_certificate.empty()) {
    problem("listen_submission is set but AUTH needs TLS", "set tls_certificate and tls_key");
  }
  if (auto aliases = load_aliases(settings.aliases); !aliases) {
    problem(aliases.error().text(), "correct the alias file at the line named");
  }
  if (auto accounts = open_account_db(settings.mailbox); !accounts) {
    problem(accounts.error().text(), "check accounts and account_file");
  }
  if (auto st = check_program_user(settings.alias_program_user); !st) {
    problem(st.error().text(), "set alias_program_user to an existing unprivileged user");
  }
  struct stat st {};
  if (::stat(settings.spool_dir.c_str(), &st) != 0) {
    problem("spool_dir " + settings.spool_dir + " does not exist",
            "start mta -bd as root once (it creates it), or mkdir -m 711 it, owned by the "
            "mail user");
  } else if ((st.st_mode & 022) != 0) {
    problem("spool_dir " + settings.spool_dir + " is writable by group or others",
            "chmod 711 " + settings.spool_dir);
  } else if (::geteuid() != 0 && st.st_uid != ::geteuid()) {
    problem("spool_dir " + settings.spool_dir + " belongs to another user",
            "run mta as that user, or chown the spool to the mail user");
  }
  if (settings.relay_networks.empty() && settings.tls_certificate.empty()) {
    std::printf("note: no relay_networks and no AUTH: only mail for local domains is "
                "accepted\n");
  }
  if (problems == 0) std::printf("mta: configuration OK\n");
  return problems == 0 ? EX_OK : EX_CONFIG;
}

bool stdin_is_socket() {
  int type = 0;
  socklen_t len = sizeof type;
  return ::getsockopt(STDIN_FILENO, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
}

// mda gets a minute per message part; it answers in milliseconds unless a mailbox is locked.
constexpr std::chrono::seconds kMdaTimeout{600};

// The mda launcher: a root process when we are root (system accounts need it), else direct.
// It also runs the commands and files of aliases and .forward files (privileged_ops.h).
Result<MdaLauncher> make_launcher(const Prepared& p) {
  const MtaSettings& s = p.context.settings;
  MdaCommand command{s.mda, s.mda_config};
  OpsPolicy policy{s.aliases, s.alias_program_user, s.program_timeout};
  if (!p.run_as.empty()) {
    if (auto st = check_program_user(s.alias_program_user); !st) return st.error();
    const passwd* programs = ::getpwnam(s.alias_program_user.c_str());
    const uid_t programs_uid = programs != nullptr ? programs->pw_uid : 0;
    const passwd* spool_owner = ::getpwnam(p.run_as.c_str());
    if (spool_owner != nullptr && spool_owner->pw_uid == programs_uid) {
      log_warning("-", "alias_program_user %s is also run_as: the alias file's commands could "
                  "change the spool; choose another user", s.alias_program_user.c_str());
    }
    return MdaLauncher::start_privileged(std::move(command), std::move(policy));
  }
  return MdaLauncher::direct(std::move(command), std::move(policy));
}

// Everything delivery needs besides the queue manager: mda over LMTP, DNS, the SMTP client.
struct DeliveryStack {
  std::unique_ptr<LmtpDelivery> local;
  std::unique_ptr<PrivilegedClient> programs;  // commands, files, ~/.forward
  std::unique_ptr<MxResolver> resolver;
  SslCtx client_tls;
  std::unique_ptr<RemoteDelivery> remote;
};

Result<DeliveryStack> make_delivery(event_base* base, const Prepared& p, MdaLauncher& launcher) {
  const MtaSettings& s = p.context.settings;
  DeliveryStack d;
  d.local = std::make_unique<LmtpDelivery>(base, launcher, s.hostname, kMdaTimeout);
  d.programs = std::make_unique<PrivilegedClient>(base, launcher, s.program_timeout);
  ResolverConfig rc;
  rc.servers = s.dns_servers;
  auto resolver = MxResolver::create(base, rc);
  if (!resolver) return resolver.error();
  d.resolver = std::move(*resolver);
  auto tls = make_client_tls_context();
  if (!tls) return tls.error();
  d.client_tls = std::move(*tls);
  RemoteSettings rs;
  rs.hostname = s.hostname;
  std::vector<ListenAddress> listen = s.listen;
  listen.insert(listen.end(), s.listen_submission.begin(), s.listen_submission.end());
  listen.insert(listen.end(), s.listen_smtps.begin(), s.listen_smtps.end());
  rs.own_addresses = own_addresses(listen);
  rs.tls_required_domains = s.tls_required_domains;
  rs.relayhost = p.context.relayhost;
  rs.relayhost_credentials = p.relay_credentials;
  rs.max_per_domain = s.max_deliveries_per_domain;
  d.remote = std::make_unique<RemoteDelivery>(base, *d.resolver, d.client_tls.get(), rs);
  return d;
}

QueueSettings queue_settings(const MtaSettings& s, const MtaOptions& options) {
  QueueSettings q;
  q.retry_interval = s.retry_interval;
  q.max_retry_interval = s.max_retry_interval;
  q.delay_warning = s.delay_warning;
  q.max_queue_lifetime = s.max_queue_lifetime;
  q.rescan_interval = s.queue_rescan;
  q.max_deliveries = s.max_deliveries;
  q.deliver_at_once = s.deliver_at_once;
  if (!options.queue_interval.empty()) {
    // -q15m: sendmail's way of asking for queue runs every 15 minutes.
    auto config = Config::parse("queue_rescan = " + options.queue_interval + "\n", "-q",
                                kMtaConfigKeys);
    if (config) {
      q.rescan_interval = config->get_duration("queue_rescan");
    } else {
      log_warning("-", "-q%s: %s; using queue_rescan", options.queue_interval.c_str(),
                  config.error().text().c_str());
    }
  }
  return q;
}

int run_queue(const MtaOptions& options, const MtaSettings& settings) {
  auto prepared = prepare(settings);
  if (!prepared) return complain(prepared.error());
  Prepared& p = *prepared;
  if (!p.run_as.empty()) {
    if (auto st = prepare_spool_root(settings.spool_dir, p.run_as); !st) {
      return complain(st.error());
    }
  }
  auto launcher = make_launcher(p);
  if (!launcher) return complain(launcher.error());
  if (!p.run_as.empty()) {
    if (auto st = become_user(p.run_as); !st) return complain(st.error());
  }
  if (auto st = open_spool(p.context); !st) return complain(st.error());
  if (auto recovered = p.context.spool->recover(); !recovered) {
    return complain(recovered.error());
  }
  EventBase base = make_event_base();
  auto delivery = make_delivery(base.get(), p, *launcher);
  if (!delivery) return complain(delivery.error());
  QueueManager queue(base.get(), p.context, queue_settings(settings, options), *delivery->local,
                     delivery->remote.get(), delivery->programs.get());
  QueueFilter filter{options.queue_recipient, options.queue_id};
  bool done = false;
  if (auto st = queue.run_once(filter, [&] {
        done = true;
        event_base_loopexit(base.get(), nullptr);
      });
      !st) {
    return complain(st.error());
  }
  if (!done) event_base_dispatch(base.get());
  return EX_OK;
}

// newaliases: the alias file is read into a table in memory whenever it changes (the daemon looks
// at most once a second), so there is no database to rebuild; this checks the file and says
// what the daemon will make of it.
int check_aliases(const MtaSettings& settings) {
  if (settings.aliases.empty()) {
    std::printf("mta: no alias file configured (aliases is empty)\n");
    return EX_OK;
  }
  auto table = load_aliases(settings.aliases);
  if (!table) return complain(table.error());
  if (!*table) {
    std::printf("%s: no such file: no aliases\n", settings.aliases.c_str());
    return EX_OK;
  }
  std::printf("%s: %zu aliases\n", settings.aliases.c_str(), (*table)->size());
  return EX_OK;
}

int list_queue(const MtaSettings& settings) {
  MtaContext context;
  context.settings = settings;
  if (::geteuid() == 0) {
    const std::string user = settings.run_as.empty() ? std::string(build::kMailUser)
                                                     : settings.run_as;
    if (auto st = prepare_spool_root(settings.spool_dir, user); !st) return complain(st.error());
    if (auto st = become_user(user); !st) return complain(st.error());
  }
  if (auto st = open_spool(context); !st) return complain(st.error());
  auto listing = format_queue_listing(*context.spool);
  if (!listing) return complain(listing.error());
  std::fputs(listing->c_str(), stdout);
  return EX_OK;
}

int run_daemon(const MtaOptions& options, const MtaSettings& settings) {
  auto prepared = prepare(settings);
  if (!prepared) return complain(prepared.error());
  Prepared& p = *prepared;
  DaemonStart start;
  for (const auto& a : settings.listen) start.listen.push_back({kSmtpTag, a});
  for (const auto& a : settings.listen_submission) start.listen.push_back({kSubmissionTag, a});
  for (const auto& a : settings.listen_smtps) start.listen.push_back({kSmtpsTag, a});
  if (start.listen.empty()) {
    return complain(Error::from_exit_code(EX_CONFIG, "nothing to listen on: set listen"));
  }
  start.foreground = options.foreground;
  start.pid_file = settings.pid_file;
  auto running = start_daemon(start);  // binds (as root when started so), detaches
  if (!running) return complain(running.error());
  UniqueFd pam_helper;
  if (!p.run_as.empty()) {
    if (auto st = prepare_spool_root(settings.spool_dir, p.run_as); !st) {
      return complain(st.error());
    }
    if (p.pam) {
      auto helper = start_pam_helper("smtp");
      if (!helper) return complain(helper.error());
      pam_helper = std::move(*helper);
    }
  }
  auto launcher = make_launcher(p);
  if (!launcher) return complain(launcher.error());
  if (!p.run_as.empty()) {
    if (auto st = become_user(p.run_as); !st) return complain(st.error());
  }
  if (auto st = open_spool(p.context); !st) return complain(st.error());
  auto recovered = p.context.spool->recover();
  if (!recovered) return complain(recovered.error());
  log_info("-", "spool %s: %zu messages queued", settings.spool_dir.c_str(), recovered->size());

  EventBase base = make_event_base();
  // Three priorities before any event exists: the group commit runs after everything else
  // that is ready in a round (smtp_server.h).
  event_base_priority_init(base.get(), 3);
  if (pam_helper) {
    p.context.passwords = std::make_unique<PamPasswordChecker>(base.get(), std::move(pam_helper));
  }
  auto delivery = make_delivery(base.get(), p, *launcher);
  if (!delivery) return complain(delivery.error());
  QueueManager queue(base.get(), p.context, queue_settings(settings, options), *delivery->local,
                     delivery->remote.get(), delivery->programs.get());
  SmtpServer server(base.get(), p.context, p.tls.get());
  if (settings.deliver_at_once) {
    server.set_on_queued([&queue](const std::string& id) { queue.add(id); });
  }
  if (auto st = server.listen(running->listeners); !st) return complain(st.error());
  if (auto st = queue.start(); !st) return complain(st.error());
  SignalEvents signals(
      base.get(), [] { log_info("-", "stopping"); },
      [] { log_notice("-", "SIGHUP: restart mta to read a changed configuration"); });
  log_info("-", "mta %s ready", build::kVersion);
  event_base_dispatch(base.get());
  return EX_OK;
}

int run_session(const MtaSettings& settings) {
  auto prepared = prepare(settings);
  if (!prepared) return complain(prepared.error());
  Prepared& p = *prepared;
  if (!p.run_as.empty()) {
    if (auto st = prepare_spool_root(settings.spool_dir, p.run_as); !st) {
      return complain(st.error());
    }
    if (auto st = become_user(p.run_as); !st) return complain(st.error());
  }
  p.pam = false;  // no AUTH in a single session: it would need root all along
  if (auto st = open_spool(p.context); !st) return complain(st.error());
  if (!stdin_is_socket()) return run_stdio_session(p.context, STDIN_FILENO, STDOUT_FILENO);
  EventBase base = make_event_base();
  event_base_priority_init(base.get(), 3);
  SmtpServer server(base.get(), p.context, p.tls.get());
  server.serve_connected(::dup(STDIN_FILENO), kSmtpTag);
  event_base_dispatch(base.get());
  return EX_OK;
}

}  // namespace

int run_mta(const MtaOptions& options) {
  const bool to_stderr = options.verbose || options.foreground ||
                         options.mode == MtaMode::kPrintConfig ||
                         options.mode == MtaMode::kCheck || options.mode == MtaMode::kListQueue ||
                         options.mode == MtaMode::kNewAliases;
  log_open("mta", to_stderr ? LogTarget::kStderr : LogTarget::kSyslog, options.verbose);
  ignore_disruptive_signals();
  ::umask(077);
  auto config = Config::load_for_program(
      options.config_path, std::string(build::kConfDir) + "/mta.conf", kMtaConfigKeys);
  if (!config) return complain(config.error());
  if (options.mode == MtaMode::kPrintConfig) {
    std::fputs(config->dump().c_str(), stdout);
    return EX_OK;
  }
  auto settings = mta_settings_from(*config);
  if (!settings) return complain(settings.error());
  switch (options.mode) {
    case MtaMode::kCheck:
      return check_setup(*settings);
    case MtaMode::kSmtpSession:
      return run_session(*settings);
    case MtaMode::kQueueRun:
      return run_queue(options, *settings);
    case MtaMode::kListQueue:
      return list_queue(*settings);
    case MtaMode::kNewAliases:
      return check_aliases(*settings);
    case MtaMode::kDaemon:
    case MtaMode::kPrintConfig:
      break;
  }
  return run_daemon(options, *settings);
}

}  // namespace mailwright::mta
