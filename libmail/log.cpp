#include "libmail/log.h"

#include <syslog.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <string>

namespace mailwright {
namespace {

LogTarget g_target = LogTarget::kStderr;
bool g_verbose = false;
const char* g_ident = "mailwright";

int syslog_priority(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return LOG_ERR;
    case LogLevel::kWarning:
      return LOG_WARNING;
    case LogLevel::kNotice:
      return LOG_NOTICE;
    case LogLevel::kInfo:
      return LOG_INFO;
    case LogLevel::kDebug:
      return LOG_DEBUG;
  }
  return LOG_ERR;
}

const char* level_word(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return "error: ";
    case LogLevel::kWarning:
      return "warning: ";
    default:
      return "";
  }
}

}  // namespace

void log_open(const char* ident, LogTarget target, bool verbose) {
  g_ident = ident;
  g_target = target;
  g_verbose = verbose;
  if (target == LogTarget::kSyslog) ::openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

LogTarget log_target() { return g_target; }

void log_message(LogLevel level, std::string_view id, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_vmessage(level, id, fmt, ap);
  va_end(ap);
}

#define MW_DEFINE_LOG(name, level)                          \
  void name(std::string_view id, const char* fmt, ...) {    \
    va_list ap;                                             \
    va_start(ap, fmt);                                      \
    log_vmessage(level, id, fmt, ap);                       \
    va_end(ap);                                             \
  }
MW_DEFINE_LOG(log_error, LogLevel::kError)
MW_DEFINE_LOG(log_warning, LogLevel::kWarning)
MW_DEFINE_LOG(log_notice, LogLevel::kNotice)
MW_DEFINE_LOG(log_info, LogLevel::kInfo)
MW_DEFINE_LOG(log_debug, LogLevel::kDebug)
#undef MW_DEFINE_LOG

void log_vmessage(LogLevel level, std::string_view id, const char* fmt, va_list ap) {
  if (level == LogLevel::kDebug && !g_verbose) return;
  char text[2048];
  std::vsnprintf(text, sizeof text, fmt, ap);
  const std::string tag = id.empty() ? std::string("-") : printable(id, 64);
  if (g_target == LogTarget::kSyslog) {
    ::syslog(syslog_priority(level), "%s: %s%s", tag.c_str(), level_word(level), text);
  } else {
    // One write per line, so lines from concurrent processes never interleave mid-line.
    char line[2300];
    int n = std::snprintf(line, sizeof line, "%s[%d]: %s: %s%s\n", g_ident,
                          static_cast<int>(::getpid()), tag.c_str(), level_word(level), text);
    if (n > 0) {
      std::size_t len = static_cast<std::size_t>(n) < sizeof line ? static_cast<std::size_t>(n)
                                                                  : sizeof line - 1;
      line[len - 1] = '\n';
      [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, line, len);
    }
  }
}

std::string printable(std::string_view text, std::size_t max_len) {
  std::string out;
  out.reserve(text.size() < max_len ? text.size() : max_len);
  for (unsigned char c : text) {
    if (out.size() >= max_len) {
      out += "...";
      break;
    }
    // Keep UTF-8 (bytes >= 0x80) readable; control characters become '?'.
    out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  }
  return out;
}

}  // namespace mailwright
