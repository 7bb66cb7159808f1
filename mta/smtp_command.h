// SMTP command lines (RFC 5321 4.1.1 and 4.1.2) with the ESMTP parameters the mta supports:
// SIZE (RFC 1870), BODY (RFC 6152, RFC 3030 BINARYMIME), SMTPUTF8 (RFC 6531), RET, ENVID,
// NOTIFY, ORCPT (RFC 3461 4) and AUTH= (RFC 4954 5), plus BDAT (RFC 3030) and AUTH (RFC 4954 4).
//
// parse_smtp_command() is a pure function: one command line without its CRLF in, a verb and
// checked, decoded arguments out. SmtpCommand owns its strings. No I/O, no logging, no globals.
// Whether a verb is allowed in the current state, whether SIZE exceeds the server's limit and
// whether an AUTH mechanism is offered are the session's business, not this parser's.
//
// Errors are Error::permanent(exit_code, status, text) with a fixed text that never echoes the
// input. smtp_reply_code() gives the reply code to send with it:
//   500 5.5.2  unknown or empty command, line too long         (exit code EX_USAGE)
//   501 5.5.4  bad arguments (syntax of the rest of the line)   (exit code EX_USAGE)
//   555 5.5.4  unknown or repeated MAIL/RCPT parameter          (exit code EX_UNAVAILABLE)
//   553 5.1.7  bad reverse-path, 553 5.1.3 bad forward-path     (exit code EX_DATAERR, address.h)
//
// What is refused, and why:
//  - every control octet (C0 including TAB, and DEL) anywhere in the line: a NUL cuts a string
//    short further down, a CR or LF writes a second line into the spool file (Exim 21Nails
//    CVE-2020-28021). So no field of SmtpCommand can hold CR, LF or NUL.
//  - the same in decoded xtext ("+0A", "+00", "+7F"): ENVID, ORCPT and AUTH= are decoded here and
//    must hold printable US-ASCII only (RFC 3461 4: xtext encodes printable text), since they are
//    written to the spool file.
//  - xtext that is not strictly RFC 3461 4 (hexchar is '+' and two UPPER-case hex digits, no
//    '+' or '=' unencoded, no octet outside 33..126);
//  - numbers that are not 1..20 plain decimal digits fitting in 64 bits:
//    "SIZE=99999999999999999999" is an error, never a wrap-around;
//  - a parameter given twice, NOTIFY=NEVER combined with anything, an unknown parameter (555),
//    and a parameter of MAIL given to RCPT or the reverse (555);
//  - a space before the colon ("MAIL FROM :<a>"), a missing "FROM:"/"TO:".
// Lenience, kept where real clients need it and nothing can hide behind it: verbs and parameter
// keywords are case-insensitive; one optional space after "FROM:"/"TO:"; several spaces
// between parameters and trailing spaces are ignored.
//
// Addresses go through libmail/address.h, so `MAIL FROM:<;sleep 5;@x>` is what RFC 5321 says it
// is: ';' is not atext, so it is a syntax error (553 5.1.7), while `<"u@other"@local>` is the
// quoted local part `u@other` at `local`. Nothing in an address is ever safe for a shell.
//
// Limits: the whole line at most SmtpParseOptions::max_line_length octets (without CRLF);
// ENVID at most 100 octets as sent and ORCPT at most 500 (RFC 3461 5.4); AUTH mechanism names
// at most 20 (RFC 4422 3.1); addresses as in address.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "libmail/address.h"
#include "libmail/result.h"

namespace mailwright::smtp {

enum class SmtpVerb {
  kEhlo,
  kHelo,
  kMail,
  kRcpt,
  kData,
  kBdat,
  kRset,
  kNoop,
  kQuit,
  kVrfy,
  kHelp,
  kStarttls,
  kAuth,
};

enum class BodyType { kUnspecified, k7Bit, k8BitMime, kBinaryMime };
enum class DsnRet { kUnspecified, kFull, kHdrs };

// NOTIFY (RFC 3461 4.1): bits; kNever alone, or any of the other three.
enum NotifyFlags : unsigned {
  kNotifyNone = 0,  // no NOTIFY parameter given
  kNotifyNever = 1,
  kNotifySuccess = 2,
  kNotifyFailure = 4,
  kNotifyDelay = 8,
};

struct MailParameters {
  std::optional<std::uint64_t> size;  // SIZE=n, the client's estimate; may be 0
  BodyType body = BodyType::kUnspecified;
  bool smtputf8 = false;
  DsnRet ret = DsnRet::kUnspecified;
  std::optional<std::string> envid;  // decoded xtext, printable ASCII, never empty
  // AUTH=: nullopt when absent; "" for AUTH=<>; otherwise the decoded mailbox.
  std::optional<std::string> auth;
};

struct RcptParameters {
  unsigned notify = kNotifyNone;
  // ORCPT=addr-type;xtext: the type as sent (e.g. "rfc822") and the decoded address (printable
  // ASCII). Both empty when absent.
  std::string orcpt_type;
  std::string orcpt_address;
};

struct SmtpCommand {
  SmtpVerb verb = SmtpVerb::kNoop;
  // EHLO/HELO: the domain or address literal (brackets kept), as sent.
  std::string domain;
  bool domain_is_literal = false;
  // MAIL: the reverse path; RCPT: the forward path.
  Path path;
  MailParameters mail;
  RcptParameters rcpt;
  // BDAT: chunk size and the LAST flag.
  std::uint64_t chunk_size = 0;
  bool last_chunk = false;
  // AUTH: the mechanism in upper case, and the initial response as sent ("=" stands for an empty
  // one; base64 alphabet only, not decoded here). VRFY/HELP/NOOP: the optional argument.
  std::string mechanism;
  std::optional<std::string> initial_response;
  std::string text;
};

struct SmtpParseOptions {
  // HELO and EHLO accept any argument of printable ASCII without spaces (clients that send
  // "EHLO my_laptop" exist); otherwise the argument must be a Domain or an address-literal.
  bool lenient_greeting = false;
  // Longest line accepted, without CRLF. RFC 5321 4.5.3.1.4 says 512 with CRLF, but every
  // extension raises it (SIZE +26, SMTPUTF8 +10, AUTH= +500, ORCPT +500 ...), and an AUTH
  // initial response may need 12288 (RFC 4954 4). The session's line reader enforces its own
  // limit before this.
  std::size_t max_line_length = 12288;
  // RCPT TO may hold UTF-8 (RFC 6531 3.3): the session sets this while the transaction's MAIL
  // carried SMTPUTF8. MAIL decides for itself from its own SMTPUTF8 parameter.
  bool utf8_recipients = false;
};

Result<SmtpCommand> parse_smtp_command(std::string_view line, const SmtpParseOptions& options);

// The reply code that goes with an error from parse_smtp_command() (see the table above).
int smtp_reply_code(const Error& error);

// "EHLO", "MAIL", ...: the canonical upper-case name.
std::string_view smtp_verb_name(SmtpVerb verb);

// RFC 3461 4 xtext: every octet outside 33..126, and '+' and '=', become "+XX" (upper case).
std::string encode_xtext(std::string_view text);

}  // namespace mailwright::smtp
