// Logging: the one way the suite speaks. Daemons and delivery agents log to syslog with
// facility mail; in the foreground (or when asked) to stderr. Every line carries an id, the
// queue id or session id it is about, or "-" when it is about none.
//
// Text that came from the network or a user passes through printable() first, so a log line
// can never be split or forged with CR, LF or escape sequences. Passwords and message bodies
// are never logged.
#pragma once

#include <cstdarg>
#include <string>
#include <string_view>

namespace mailwright {

enum class LogTarget { kSyslog, kStderr };
enum class LogLevel { kError, kWarning, kNotice, kInfo, kDebug };

// ident is the program name ("mda"); debug lines are dropped unless verbose.
void log_open(const char* ident, LogTarget target, bool verbose = false);
LogTarget log_target();

void log_message(LogLevel level, std::string_view id, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmessage(LogLevel level, std::string_view id, const char* fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));


void log_error(std::string_view id, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void log_warning(std::string_view id, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void log_notice(std::string_view id, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void log_info(std::string_view id, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void log_debug(std::string_view id, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Replaces control characters and bytes that are not printable ASCII or UTF-8 continuation
// patterns with '?', and cuts the result at max_len octets (marked with "...").
std::string printable(std::string_view text, std::size_t max_len = 256);

}  // namespace mailwright
