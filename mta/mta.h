// The mta program: option parsing and the modes it runs in. See mta(8).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "libmail/result.h"
#include "mta/queue_file.h"

namespace mailwright::mta {

enum class MtaMode {
  kDaemon,       // -bd: the SMTP daemon, detached
  kSmtpSession,  // -bs: one SMTP session on stdin/stdout (inetd, or a program's pipes)
  kPrintConfig,  // -bP: the configuration in effect
  kCheck,        // -bV: check the configuration and the spool, report problems with the fix
  kQueueRun,     // -q, -qR..., -qI...: deliver what is queued, once, then exit
  kListQueue,    // -bp: list the queue (mailq)
  kNewAliases,   // -bi: check the alias file (newaliases)
  kSubmit,       // -bm, the default: queue the message on stdin for the addresses (sendmail)
  kVerify,       // -bv: say how each address would be delivered, deliver nothing
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

  // sendmail's submission flags (-bm, -bv).
  std::vector<std::string> addresses;  // the arguments after the flags
  bool extract_recipients = false;     // -t
  bool ignore_dots = false;            // -i, -oi
  std::optional<std::string> sender;   // -f, -r
  std::string full_name;               // -F
  unsigned notify = kNotifyNone;       // -N
  DsnRet ret = DsnRet::kUnspecified;   // -R
  std::string envid;                   // -V
  BodyType body = BodyType::kUnspecified;  // -B
};

Result<MtaOptions> parse_mta_options(const std::vector<std::string>& args);
// The arguments for the name mta was called by: "mailq" means -bp, "newaliases" -bi.
std::vector<std::string> arguments_for_name(const std::string& argv0, std::vector<std::string> args);
const char* mta_usage();
int run_mta(const MtaOptions& options);

}  // namespace mailwright::mta
