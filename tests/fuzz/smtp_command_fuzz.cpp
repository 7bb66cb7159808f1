// Calls parse_smtp_command() on raw bytes (both greeting modes) and checks what it promises: no
// accepted field holds CR, LF, NUL or another control octet, decoded xtext is printable ASCII,
// NOTIFY=NEVER stands alone, every error maps to a known reply code, and encode_xtext() output
// is valid xtext that the parser decodes back (as ENVID) to the input when it is printable.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mta/smtp_command.h"

namespace {

using mailwright::smtp::SmtpCommand;

void check(bool ok) {
  if (!ok)
    std::abort();
}

void check_clean(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    check(u >= 0x20 && u != 0x7f);
  }
}

void check_printable(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    check(u >= 0x20 && u < 0x7f);
  }
}

void check_command(const SmtpCommand& c) {
  check_clean(c.domain);
  check_clean(c.path.mailbox.local_part);
  check_clean(c.path.mailbox.domain);
  check_clean(c.text);
  check_clean(c.mechanism);
  if (c.initial_response)
    check_clean(*c.initial_response);
  if (c.mail.envid)
    check_printable(*c.mail.envid);
  if (c.mail.auth)
    check_printable(*c.mail.auth);
  check_printable(c.rcpt.orcpt_type);
  check_printable(c.rcpt.orcpt_address);
  if (c.rcpt.notify & mailwright::smtp::kNotifyNever)
    check(c.rcpt.notify == mailwright::smtp::kNotifyNever);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  for (bool lenient : {false, true}) {
    mailwright::smtp::SmtpParseOptions options;
    options.lenient_greeting = lenient;
    options.utf8_recipients = lenient;
    auto cmd = mailwright::smtp::parse_smtp_command(line, options);
    if (cmd) {
      check_clean(line);
      check_command(*cmd);
    } else {
      const int code = mailwright::smtp::smtp_reply_code(cmd.error());
      check(code == 500 || code == 501 || code == 553 || code == 555);
      check(!cmd.error().text().empty());
    }
  }

  const std::string encoded = mailwright::smtp::encode_xtext(line);
  for (char c : encoded) check(c >= 33 && c <= 126 && c != '=');
  if (!line.empty() && line.size() <= 30) {
    bool printable = true;
    for (char c : line) printable = printable && c >= 0x20 && c < 0x7f;
    auto env = mailwright::smtp::parse_smtp_command("MAIL FROM:<> ENVID=" + encoded, {});
    check(env.ok() == printable);
    if (env)
      check(*env->mail.envid == line);
  }
  return 0;
}
