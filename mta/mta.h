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
};

struct MtaOptions {
  MtaMode mode = MtaMode::kDaemon;
  bool foreground = false;  // -bD: -bd without detaching
  bool verbose = false;     // -v
  std::string config_path;  // -C
  bool mode_given = false;
};

Result<MtaOptions> parse_mta_options(const std::vector<std::string>& args);
const char* mta_usage();
int run_mta(const MtaOptions& options);

}  // namespace mailwright::mta
