#include "mda/mda.h"

#include <pwd.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>

#include "build_paths.h"
#include "libmail/daemon.h"
#include "libmail/exit_status.h"
#include "libmail/limits.h"
#include "libmail/log.h"
#include "libmail/privilege.h"
#include "mda/delivery.h"
#include "mda/lmtp.h"
#include "libmail/mailbox_check.h"
#include "mda/staging.h"

namespace mailwright::mda {
namespace {

// Diagnostics for the caller (an MTA puts them into the bounce): always on stderr.
int complain(const Error& error) {
  std::fprintf(stderr, "mda: %s\n", error.text().c_str());
  return error.exit_code();
}

// Without a configuration file mda behaves like mail.local: /var/mail, system accounts.
Result<Config> load_config(const MdaOptions& options) {
  return Config::load_for_program(options.config_path,
                                  std::string(build::kConfDir) + "/mda.conf", kMdaConfigKeys);
}

// The sender goes into the From_ line and Return-Path: no control characters, sane length.
Result<std::string> checked_sender(const MdaOptions& options) {
  if (!options.sender_given) {
    struct passwd* pw = ::getpwuid(::getuid());
    return std::string(pw && pw->pw_name ? pw->pw_name : "MAILER-DAEMON");
  }
  const std::string& s = options.sender;
  if (s.size() > limits::kPath) {
    return Error::permanent(EX_USAGE, "5.1.7", "sender address too long");
  }
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      return Error::permanent(EX_USAGE, "5.1.7", "control character in sender address");
    }
  }
  return s;
}

std::string delivery_id() {
  char id[32];
  std::snprintf(id, sizeof id, "%lX.%X", static_cast<unsigned long>(std::time(nullptr)),
                static_cast<unsigned>(::getpid()));
  return id;
}

int check_setup(const MailboxSettings& settings, const Config& config) {
  int problems = 0;
  auto problem = [&](const std::string& text, const std::string& fix) {
    std::printf("problem: %s\n  fix: %s\n", text.c_str(), fix.c_str());
    ++problems;
  };
  const std::string& temp = config.get_string("temp_dir");
  if (::access(temp.c_str(), W_OK | X_OK) != 0) {
    problem("temp_dir " + temp + " is not writable", "set temp_dir to a writable directory");
  }
  auto db = open_account_db(settings);
  if (!db) problem(db.error().text(), "check accounts, account_file and virtual_owner");
  problems += print_findings(judge_mail_store(
      gather_mail_store(settings, db ? db->get() : nullptr)));
  if (problems == 0) std::printf("mda: configuration OK\n");
  return problems == 0 ? EX_OK : EX_CONFIG;
}

}  // namespace

int run_mda(const MdaOptions& options) {
  log_open("mda", options.verbose ? LogTarget::kStderr : LogTarget::kSyslog, options.verbose);
  ignore_disruptive_signals();
  ::umask(077);

  auto config = load_config(options);
  if (!config) return complain(config.error());
  if (options.print_config) {
    std::fputs(config->dump().c_str(), stdout);
    return EX_OK;
  }
  MailboxSettings settings = mailbox_settings_from(*config);
  if (options.check) return check_setup(settings, *config);

  auto accounts = open_account_db(settings);
  if (!accounts) return complain(accounts.error());
  auto stager = MessageStager::create(config->get_string("temp_dir"));
  if (!stager) return complain(stager.error());
  MailboxWriter writer(settings, std::move(*accounts));

  if (options.lmtp) return run_lmtp(writer, *stager, STDIN_FILENO, STDOUT_FILENO);

  auto sender = checked_sender(options);
  if (!sender) return complain(sender.error());
  const std::string id = delivery_id();

  int status = EX_OK;
  std::vector<Account> recipients;
  for (const std::string& user : options.users) {
    auto account = writer.find_recipient(user);
    if (!account) {
      status = worse_exit_code(status, complain(account.error()));
      continue;
    }
    recipients.push_back(std::move(*account));
  }
  if (recipients.empty()) return status;

  // One recipient: become that user for good before touching anything of theirs.
  if (recipients.size() == 1 && ::getuid() == 0) {
    MailboxIdentity who = mailbox_identity(settings, recipients.front());
    if (auto st = drop_privileges(who.uid, who.gid, who.groups); !st) {
      return worse_exit_code(status, complain(st.error()));
    }
  }

  auto staged = stager->stage_from(STDIN_FILENO);
  if (!staged) {
    complain(staged.error());
    return worse_exit_code(status, EX_TEMPFAIL);
  }
  for (const Account& account : recipients) {
    Status st = writer.deliver(account, *staged, *sender, false);
    if (!st) {
      log_warning(id, "to=%s from=%s failed: %s", account.name.c_str(),
                  printable(*sender).c_str(), st.error().text().c_str());
      status = worse_exit_code(status, complain(st.error()));
      continue;
    }
    log_info(id, "to=%s from=%s size=%llu delivered", account.name.c_str(),
             printable(*sender).c_str(), static_cast<unsigned long long>(staged->size));
  }
  return status;
}

}  // namespace mailwright::mda
