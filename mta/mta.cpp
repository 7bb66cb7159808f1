#include "mta/mta.h"

#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <set>

#include "build_paths.h"
#include "libmail/accounts.h"
#include "libmail/daemon.h"
#include "libmail/event_loop.h"
#include "libmail/file_io.h"
#include "libmail/log.h"
#include "libmail/tls.h"
#include "libmail/ascii.h"
#include "mta/lmtp_delivery.h"
#include "mta/maildrop.h"
#include "mta/mailq.h"
#include "mta/mda_launcher.h"
#include "mta/password_checkers.h"
#include "mta/privileged_client.h"
#include "mta/privileged_ops.h"
#include "mta/queue_manager.h"
#include "mta/remote_delivery.h"
#include "mta/smtp_server.h"
#include "mta/stdio_session.h"
#include "mta/submission.h"
#include "mta/queue_id.h"

namespace mailwright::mta {

const char* mta_usage() {
  return "usage: mta [-t] [-i] [-f sender] [-F name] [-N dsn] [-R ret] [-V envid] [-B type]\n"
         "           [-oX...] [-v] [-C file] [--] address ...   queue a message (sendmail, -bm)\n"
         "       mta -bv [-C file] address ...   say how each address would be delivered\n"
         "       mta -bd [-qTIME] [-v] [-C file]  SMTP daemon and queue (-bD: in the foreground)\n"
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

namespace {

Result<unsigned> parse_notify_flag(std::string_view v) {
  if (ascii_iequal(v, "never")) return static_cast<unsigned>(kNotifyNever);
  unsigned notify = 0;
  std::size_t pos = 0;
  while (pos <= v.size()) {
    const std::size_t comma = std::min(v.find(',', pos), v.size());
    const std::string_view item = v.substr(pos, comma - pos);
    if (ascii_iequal(item, "success")) {
      notify |= kNotifySuccess;
    } else if (ascii_iequal(item, "failure")) {
      notify |= kNotifyFailure;
    } else if (ascii_iequal(item, "delay")) {
      notify |= kNotifyDelay;
    } else {
      return Error::permanent(EX_USAGE, "5.5.4",
                              "-N wants never, or success, failure and delay separated by commas");
    }
    pos = comma + 1;
  }
  return notify;
}

}  // namespace

Result<MtaOptions> parse_mta_options(const std::vector<std::string>& args) {
  MtaOptions o;
  auto usage = [](std::string why) { return Error::permanent(EX_USAGE, "5.5.4", std::move(why)); };
  bool submit_mode = false;  // -bm or -bv given
  std::size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      ++i;
      break;
    }
    // sendmail stops at the first address: what follows is addresses, whatever it looks like.
    if (arg.size() < 2 || arg[0] != '-') break;
    // Flags without a value may be grouped ("-ti"); the others take the rest of the argument
    // or the next one ("-fjoe", "-f joe"), as getopt does.
    for (std::size_t j = 1; j < arg.size(); ++j) {
      const char flag = arg[j];
      const std::string rest = arg.substr(j + 1);
      auto value = [&]() -> std::optional<std::string> {
        if (!rest.empty()) return rest;
        if (i + 1 < args.size()) return args[++i];
        return std::nullopt;
      };
      if (flag == 't') {
        o.extract_recipients = true;
        continue;
      }
      if (flag == 'i') {
        o.ignore_dots = true;
        continue;
      }
      if (flag == 'v') {
        o.verbose = true;
        continue;
      }
      if (flag == 'b') {
        if (rest.size() != 1) return usage("unknown option " + arg);
        if (o.mode_given || submit_mode) return usage("only one -b mode may be given");
        switch (rest[0]) {
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
          case 'm':
            o.mode = MtaMode::kSubmit;
            break;
          case 'v':
            o.mode = MtaMode::kVerify;
            break;
          default:
            return usage("unknown option " + arg);
        }
        (rest[0] == 'm' || rest[0] == 'v' ? submit_mode : o.mode_given) = true;
        break;
      }
      if (flag == 'q') {
        // sendmail's forms: -q, -q15m (with -bd: how often), -qRdomain, -qIid.
        if (!rest.empty() && (rest[0] == 'R' || rest[0] == 'I')) {
          std::string v = rest.substr(1);
          if (v.empty()) {
            if (i + 1 >= args.size()) return usage("option -q" + rest + " needs a value");
            v = args[++i];
          }
          (rest[0] == 'R' ? o.queue_recipient : o.queue_id) = v;
        } else if (!rest.empty()) {
          o.queue_interval = rest;
        }
        o.queue_flag = true;
        break;
      }
      if (flag == 'o') {
        // sendmail's one-letter options: -oi is -i; the rest (-oem, -odb, -odi, ...) ask for
        // things that are so here anyway, or do not apply, and are accepted as harmless.
        if (rest.empty()) return usage("option -o needs an option letter");
        if (rest == "i") o.ignore_dots = true;
        break;
      }
      if (flag == 'O') {
        if (!value()) return usage("option -O needs option=value");
        break;
      }
      if (std::string_view("CfrFNRVB").find(flag) != std::string_view::npos) {
        auto v = value();
        if (!v) return usage(std::string("option -") + flag + " needs a value");
        switch (flag) {
          case 'C':
            o.config_path = *v;
            break;
          case 'f':
          case 'r':
            o.sender = *v;
            break;
          case 'F':
            o.full_name = *v;
            break;
          case 'N': {
            auto notify = parse_notify_flag(*v);
            if (!notify) return notify.error();
            o.notify = *notify;
            break;
          }
          case 'R': {
            const bool full = ascii_iequal(*v, "full");
            if (!full && !ascii_iequal(*v, "hdrs")) return usage("-R wants full or hdrs");
            o.ret = full ? DsnRet::kFull : DsnRet::kHeaders;
            break;
          }
          case 'V':
            if (v->empty() || v->size() > 100) return usage("-V wants an envelope id");
            o.envid = *v;
            break;
          case 'B': {
            const bool seven = ascii_iequal(*v, "7bit");
            if (!seven && !ascii_iequal(*v, "8bitmime")) return usage("-B wants 7BIT or 8BITMIME");
            o.body = seven ? BodyType::k7Bit : BodyType::k8BitMime;
            break;
          }
          default:
            break;
        }
        break;
      }
      return usage(std::string("unknown option -") + flag);
    }
  }
  o.addresses.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
  if (o.queue_flag) {
    if (submit_mode) return usage("-q does not go with -bm or -bv");
    if (!o.mode_given) {
      if (!o.queue_interval.empty()) return usage("-q" + o.queue_interval + " goes with -bd");
      o.mode = MtaMode::kQueueRun;
      o.mode_given = true;
    } else if (o.mode != MtaMode::kDaemon || !o.queue_recipient.empty() ||
               !o.queue_id.empty()) {
      return usage("-q goes alone, or as -qTIME with -bd");
    }
  }
  if (!o.mode_given && !submit_mode) o.mode = MtaMode::kSubmit;
  if (o.mode == MtaMode::kSubmit) {
    if (o.addresses.empty() && !o.extract_recipients) {
      return usage("no recipients: name them, or use -t to take them from the message");
    }
  } else if (o.mode == MtaMode::kVerify) {
    if (o.addresses.empty()) return usage("-bv needs the addresses to verify");
  } else if (!o.addresses.empty()) {
    return usage("unexpected argument " + o.addresses.front());
  }
  o.mode_given = true;
  return o;
}

namespace {

// The user the spool belongs to and the SMTP side runs as.
std::string mail_user(const MtaSettings& settings) {
  return settings.run_as.empty() ? std::string(build::kMailUser) : settings.run_as;
}

// The transport table and the relayhost, as delivery and -bv route with them.
Status load_routes(MtaContext& context) {
  const MtaSettings& settings = context.settings;
  if (!settings.transports.empty()) {
    auto table = TransportTable::load(settings.transports);
    if (!table) return table.error();
    context.transports = std::move(*table);
  }
  if (!settings.relayhost.empty()) {
    auto hop = parse_next_hop(settings.relayhost, 25);
    if (!hop) return Error(hop.error()).with_context("relayhost");
    context.relayhost = *hop;
  }
  return {};
}

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
  if (root) p.run_as = mail_user(settings);
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
  if (auto st = load_routes(p.context); !st) return st.error();
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
  // Delivery: what the queue manager will need the first time it runs.
  if (::access(settings.mda.c_str(), X_OK) != 0) {
    problem("mda " + settings.mda + " cannot be run: " + std::strerror(errno),
            "install mda there, or point mda at it");
  }
  if (!settings.mda_config.empty() && ::access(settings.mda_config.c_str(), R_OK) != 0) {
    problem("mda_config " + settings.mda_config + ": " + std::strerror(errno),
            "create it, or empty mda_config for mda's default");
  }
  if (!settings.transports.empty()) {
    if (auto table = TransportTable::load(settings.transports); !table) {
      problem(table.error().text(), "correct the transport table at the line named");
    }
  }
  if (!settings.relayhost.empty()) {
    if (auto hop = parse_next_hop(settings.relayhost, 25); !hop) {
      problem("relayhost: " + hop.error().text(), "write relayhost as [host]:port or host");
    }
  }
  if (!settings.relayhost_password_file.empty()) {
    struct stat pf {};
    if (::stat(settings.relayhost_password_file.c_str(), &pf) != 0) {
      problem("relayhost_password_file " + settings.relayhost_password_file + ": " +
                  std::strerror(errno),
              "create it with one line: user password");
    } else if ((pf.st_mode & 077) != 0) {
      problem("relayhost_password_file " + settings.relayhost_password_file +
                  " can be read by others than its owner",
              "chmod 600 " + settings.relayhost_password_file);
    }
  }
  if (!settings.dns_servers.empty()) {
    ResolverConfig rc;
    rc.servers = settings.dns_servers;
    EventBase probe = make_event_base();
    if (auto resolver = MxResolver::create(probe.get(), rc); !resolver) {
      problem("dns_servers: " + resolver.error().text(), "list name servers as ip or ip:port");
    }
  }
  const std::string spool_user = mail_user(settings);
  const passwd* mail_pw = ::getpwnam(spool_user.c_str());
  if (mail_pw == nullptr) {
    problem("the mail user " + spool_user + " does not exist",
            "create it (useradd --system " + spool_user + ") or set run_as");
  }
  // Local submission needs maildrop/ exactly so: writable by all, sticky, owned by the mail
  // user (maildrop.h).
  const std::string maildrop = settings.spool_dir + "/maildrop";
  struct stat md {};
  if (::lstat(maildrop.c_str(), &md) != 0) {
    if (::stat(settings.spool_dir.c_str(), &st) == 0) {
      problem(maildrop + " does not exist: sendmail cannot queue mail",
              "start mta -bd or run mta -q as root once (it creates it)");
    }
  } else if (!S_ISDIR(md.st_mode) || (md.st_mode & 07777) != kMaildropMode ||
             (mail_pw != nullptr && md.st_uid != mail_pw->pw_uid)) {
    problem(maildrop + " is not a directory of mode 1733 owned by " + spool_user,
            "chown " + spool_user + " " + maildrop + " && chmod 1733 " + maildrop);
  }
  for (const std::string& name : settings.trusted_users) {
    if (::getpwnam(name.c_str()) == nullptr) {
      problem("trusted_users names " + name + ", who does not exist",
              "remove the name from trusted_users");
    }
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

PickupPolicy pickup_policy(const MtaSettings& s) {
  PickupPolicy policy;
  policy.hostname = s.hostname;
  policy.max_message_size = s.max_message_size;
  policy.max_recipients = s.max_recipients;
  policy.max_line_length = s.max_line_length;
  return policy;
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
  // Local submissions first, so this run delivers them too (cron's "mta -q" is how they
  // leave when no daemon runs).
  if (auto st = pickup_maildrop(*p.context.spool, pickup_policy(settings),
                                settings.trusted_users, [](const std::string&) {});
      !st) {
    return complain(st.error());
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
    const std::string user = mail_user(settings);
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
  // queue/'s inotify watch sees what the pickup commits; with delivery_mode = queue it waits.
  MaildropPickup pickup(base.get(), *p.context.spool, pickup_policy(settings),
                        settings.trusted_users, [](const std::string&) {},
                        settings.queue_rescan);
  if (auto st = pickup.start(); !st) return complain(st.error());
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

// The user sendmail was started by: the real uid, so a setuid wrapper could not make anyone
// somebody else.
struct Submitter {
  uid_t uid = 0;
  std::string name;
  std::string full_name;  // the passwd entry's name field, up to its first comma
};

Result<Submitter> current_user() {
  passwd pw{};
  passwd* found = nullptr;
  std::string buf(16384, '\0');
  const uid_t uid = ::getuid();
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return Error::from_exit_code(EX_NOUSER, "uid " + std::to_string(uid) +
                                                " has no passwd entry: who is sending?");
  }
  Submitter who{uid, pw.pw_name, pw.pw_gecos != nullptr ? pw.pw_gecos : ""};
  who.full_name = who.full_name.substr(0, who.full_name.find(','));
  // The BSD convention: '&' in the name field stands for the login name, capitalised.
  if (const auto amp = who.full_name.find('&'); amp != std::string::npos) {
    std::string login = who.name;
    if (!login.empty() && login[0] >= 'a' && login[0] <= 'z') login[0] = static_cast<char>(login[0] - 32);
    who.full_name.replace(amp, 1, login);
  }
  return who;
}

// Standard input, at most limit octets.
Result<std::string> read_stdin(std::uint64_t limit) {
  std::string data;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno(EX_IOERR, "read standard input", errno);
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
    if (limit != 0 && data.size() > limit) {
      return Error::permanent(EX_DATAERR, "5.3.4",
                              "the message is larger than max_message_size (" +
                                  std::to_string(limit) + " octets)");
    }
  }
  return data;
}

// sendmail -bm: the message on standard input, queued through maildrop/ (maildrop.h).
int run_submit(const MtaOptions& options, const MtaSettings& settings) {
  auto who = current_user();
  if (!who) return complain(who.error());
  const passwd* mail_pw = ::getpwnam(mail_user(settings).c_str());
  const uid_t mail_uid = mail_pw != nullptr ? mail_pw->pw_uid : static_cast<uid_t>(-1);
  const bool trusted = is_trusted_user(who->uid, who->name, mail_uid, settings.trusted_users);
  auto own = submission_addresses(who->name, settings.hostname);
  if (!own || own->size() != 1) {
    return complain(Error::from_exit_code(EX_NOUSER, "user name " + who->name +
                                                         " makes no mail address"));
  }
  std::string sender = own->front();
  if (options.sender) {
    std::string wanted = *options.sender;
    if (wanted.size() >= 2 && wanted.front() == '<' && wanted.back() == '>') {
      wanted = wanted.substr(1, wanted.size() - 2);
    }
    if (!trusted) {
      log_notice("-", "user %s may not set the sender (-f %s): using <%s>", who->name.c_str(),
                 printable(wanted).c_str(), sender.c_str());
    } else if (wanted.empty()) {
      sender.clear();
    } else {
      auto given = submission_addresses(wanted, settings.hostname);
      if (!given) return complain(given.error().with_context("-f"));
      if (given->size() != 1) {
        return complain(Error::permanent(EX_DATAERR, "5.1.7", "-f wants one address"));
      }
      sender = given->front();
    }
  }
  auto input = read_stdin(settings.max_message_size == 0 ? 0
                                                         : settings.max_message_size + 65536);
  if (!input) return complain(input.error());

  Envelope envelope;
  envelope.queue_id = new_queue_id();
  envelope.arrival_time = static_cast<std::int64_t>(std::time(nullptr));
  envelope.sender = sender;
  SubmitRequest request;
  request.dot_ends = !options.ignore_dots;
  request.extract_recipients = options.extract_recipients;
  request.from_address = sender.empty() ? own->front() : sender;
  request.full_name = options.full_name.empty() ? who->full_name : options.full_name;
  request.hostname = settings.hostname;
  request.message_id_local = envelope.queue_id;
  request.now = envelope.arrival_time;
  request.max_size = settings.max_message_size;
  auto message = prepare_submission(*input, request);
  if (!message) return complain(message.error());

  // In the order given, each once; a set, so a list of thousands costs no quadratic search.
  std::vector<std::string> recipients;
  std::set<std::string> seen;
  auto add = [&](std::string address) {
    if (seen.insert(address).second) recipients.push_back(std::move(address));
  };
  for (const std::string& arg : options.addresses) {
    auto list = submission_addresses(arg, settings.hostname);
    if (!list) return complain(list.error());
    for (std::string& a : *list) add(std::move(a));
  }
  for (std::string& a : message->header_recipients) add(std::move(a));
  if (recipients.empty()) {
    return complain(Error::permanent(EX_USAGE, "5.5.4", "-t: the message names no recipients"));
  }
  if (recipients.size() > settings.max_recipients) {
    return complain(Error::permanent(EX_DATAERR, "5.5.3",
                                     "more than max_recipients (" +
                                         std::to_string(settings.max_recipients) +
                                         ") recipients"));
  }
  envelope.body = options.body;
  if (message->eight_bit) envelope.body = BodyType::k8BitMime;
  envelope.ret = options.ret;
  envelope.envid = options.envid;
  envelope.smtputf8 = !is_ascii(sender);
  for (std::string& a : recipients) {
    if (!is_ascii(a)) envelope.smtputf8 = true;
    Recipient r;
    r.address = std::move(a);
    r.notify = options.notify;
    envelope.recipients.push_back(std::move(r));
  }
  if (auto st = drop_message(settings.spool_dir, envelope, message->text); !st) {
    return complain(st.error());
  }
  if (options.verbose) {
    std::printf("mta: submitted as %s for %zu recipient(s)\n", envelope.queue_id.c_str(),
                envelope.recipients.size());
  }
  return EX_OK;
}

// sendmail -bv: what delivery would do with each address, from the same tables.
int run_verify(const MtaOptions& options, const MtaSettings& settings) {
  MtaContext context;
  context.settings = settings;
  auto accounts = open_account_db(settings.mailbox);
  if (!accounts) return complain(accounts.error());
  auto aliases = load_aliases(settings.aliases);
  if (!aliases) return complain(aliases.error());
  if (auto st = load_routes(context); !st) return complain(st.error());
  const RoutingTables tables = context.routing_tables();
  int undeliverable = 0;
  int unknown = 0;  // the account database could not be read
  auto say = [](const std::string& address, const std::string& what) {
    std::printf("%s... %s\n", printable(address).c_str(), what.c_str());
  };
  for (const std::string& arg : options.addresses) {
    auto list = submission_addresses(arg, settings.hostname);
    if (!list) {
      say(arg, list.error().text());
      ++undeliverable;
      continue;
    }
    for (const std::string& address : *list) {
      const Route route = route_recipient(address, tables);
      const NextHop& hop = route.transport.hop;
      switch (route.transport.kind) {
        case Transport::Kind::kError:
          say(address, route.transport.status + " " + route.transport.text);
          if (route.transport.status.rfind('5', 0) == 0) ++undeliverable;
          break;
        case Transport::Kind::kSmtp:
          say(address, "deliverable: remote, by SMTP to " +
                           (hop.mx_lookup ? "the MX hosts of " + hop.host
                                          : "[" + hop.host + "]:" + std::to_string(hop.port)));
          break;
        case Transport::Kind::kLocal: {
          const std::string& name = route.local_name;
          if (*aliases && (*aliases)->find(name) != nullptr) {
            const AliasTable& table = **aliases;
            auto expansion = expand_alias(
                name, [&](std::string_view n) { return table.find(n); },
                [](std::string_view path) { return load_include_file(std::string(path)); });
            if (!expansion) {
              say(address, "alias " + name + ": " + expansion.error().text());
              ++undeliverable;
              break;
            }
            std::string targets;
            for (const AliasTarget& t : expansion->targets) {
              if (!targets.empty()) targets += ", ";
              targets += t.kind == AliasTarget::Kind::kPipe ? "|" + t.value : t.value;
            }
            say(address, "deliverable: alias for " + targets);
            break;
          }
          auto account = (*accounts)->find(name);
          if (!account) {
            say(address, "cannot tell now: " + account.error().text());
            ++unknown;
          } else if (!*account) {
            say(address, "User unknown");
            ++undeliverable;
          } else {
            say(address, "deliverable: the mailbox of " + (*account)->name);
          }
          break;
        }
      }
    }
  }
  if (undeliverable != 0) return EX_NOUSER;
  return unknown != 0 ? EX_TEMPFAIL : EX_OK;
}

}  // namespace

int run_mta(const MtaOptions& options) {
  const bool to_stderr = options.verbose || options.foreground ||
                         options.mode == MtaMode::kPrintConfig ||
                         options.mode == MtaMode::kCheck || options.mode == MtaMode::kListQueue ||
                         options.mode == MtaMode::kNewAliases ||
                         options.mode == MtaMode::kVerify;
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
    case MtaMode::kSubmit:
      return run_submit(options, *settings);
    case MtaMode::kVerify:
      return run_verify(options, *settings);
    case MtaMode::kDaemon:
    case MtaMode::kPrintConfig:
      break;
  }
  return run_daemon(options, *settings);
}

}  // namespace mailwright::mta
