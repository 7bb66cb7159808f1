// The mta program: option parsing and the modes it runs in. See mta(8).
#pragma once

#include <string>
#include <vector>

#include "libmail/result.h"

namespace mailwright::mta {

enum class MtaMode {
  kDaemon,       // -bd: the SMTP daemon, detached
  kSmtpSession,  // -bs: one SMTP session on stdin/stdout (inetd, or a program's pipes)
  kPrintConfig,  // -bP: the configuration in effect
  kCheck,        // -bV: check the configuration and the spool, report problems with the fix
  kQueueRun,     // -q, -qR..., -qI...: deliver what is queued, once, then exit
  kListQueue,    // -bp: list the queue (mailq)
  kNewAliases,   // -bi: check the alias file (newaliases)
};

struct MtaOptions {
  MtaMode mode = MtaMode::kDaemon;
  bool foreground = false;  // -bD: -bd without detaching
  bool verbose = false;     // -v
  std::string config_path;  // -C
  bool mode_given = false;
  bool queue_flag = false;
  std::string queue_recipient;  // -qR
  std::string queue_id;         // -qI
  std::string queue_interval;   // -q15m with -bd: the rescan interval, as given
};

Result<MtaOptions> parse_mta_options(const std::vector<std::string>& args);
// The arguments for the name mta was called by: "mailq" means -bp, "newaliases" -bi.
std::vector<std::string> arguments_for_name(const std::string& argv0, std::vector<std::string> args);
const char* mta_usage();
int run_mta(const MtaOptions& options);

}  // namespace mailwright::mta
