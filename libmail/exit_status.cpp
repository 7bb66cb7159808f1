#include "libmail/exit_status.h"

#include <array>
#include <cerrno>
#include <cstring>
#include <string>

#include "libmail/result.h"

namespace mailwright {
namespace {

constexpr std::array kTable{
    ExitStatusInfo{EX_OK, false, "2.0.0", "success"},
    ExitStatusInfo{EX_USAGE, false, "5.5.4", "command line usage error"},
    ExitStatusInfo{EX_DATAERR, false, "5.6.0", "data format error"},
    ExitStatusInfo{EX_NOINPUT, false, "5.3.0", "cannot open input"},
    ExitStatusInfo{EX_NOUSER, false, "5.1.1", "user unknown"},
    ExitStatusInfo{EX_NOHOST, false, "5.1.2", "host unknown"},
    ExitStatusInfo{EX_UNAVAILABLE, false, "5.3.0", "service unavailable"},
    ExitStatusInfo{EX_SOFTWARE, true, "4.3.0", "internal software error"},
    ExitStatusInfo{EX_OSERR, true, "4.3.0", "system error"},
    ExitStatusInfo{EX_OSFILE, true, "4.3.0", "critical system file missing"},
    ExitStatusInfo{EX_CANTCREAT, false, "5.2.0", "cannot create output file"},
    ExitStatusInfo{EX_IOERR, true, "4.3.0", "input/output error"},
    ExitStatusInfo{EX_TEMPFAIL, true, "4.2.0", "temporary failure"},
    ExitStatusInfo{EX_PROTOCOL, true, "4.5.0", "remote error in protocol"},
    ExitStatusInfo{EX_NOPERM, false, "5.7.1", "permission denied"},
    ExitStatusInfo{EX_CONFIG, true, "4.3.5", "configuration error"},
};

constexpr ExitStatusInfo kUnknown{EX_TEMPFAIL, true, "4.3.0", "unknown failure"};

}  // namespace

const ExitStatusInfo& exit_status_info(int code) {
  for (const auto& info : kTable) {
    if (info.code == code) return info;
  }
  return kUnknown;
}

int worse_exit_code(int a, int b) {
  auto rank = [](int code) {
    if (code == EX_OK) return 0;
    return exit_status_info(code).temporary ? 2 : 1;
  };
  return rank(b) > rank(a) ? b : a;
}

Error Error::from_errno(int exit_code, std::string_view what, int err) {
  std::string text(what);
  text += ": ";
  text += std::strerror(err);
  const auto& info = exit_status_info(exit_code);
  // RFC 3463 3.4: a full disk or quota is "mail system full", which SMTP answers with 452.
  if (err == ENOSPC || err == EDQUOT) {
    return Error(info.temporary, exit_code, info.temporary ? "4.3.1" : "5.3.1", std::move(text));
  }
  return Error(info.temporary, exit_code, info.status, std::move(text));
}

Error Error::from_exit_code(int exit_code, std::string text) {
  const auto& info = exit_status_info(exit_code);
  return Error(info.temporary, exit_code, info.status, std::move(text));
}

Error Error::with_context(std::string_view context) const {
  std::string text(context);
  text += ": ";
  text += text_;
  return Error(temporary_, exit_code_, status_, std::move(text));
}

}  // namespace mailwright
