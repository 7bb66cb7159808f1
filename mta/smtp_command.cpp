#include "mta/smtp_command.h"

#include <sysexits.h>

#include <array>
#include <charconv>
#include <optional>
#include <utility>
#include <vector>

namespace mailwright::smtp {
namespace {

constexpr std::size_t kMaxEnvid = 100;        // RFC 3461 5.4
constexpr std::size_t kMaxOrcpt = 500;        // RFC 3461 5.4
constexpr std::size_t kMaxMechanism = 20;     // RFC 4422 3.1
constexpr std::size_t kMaxNumberDigits = 20;  // RFC 1870 size-value, fits 2^64-1

Error unknown_command() { return Error::permanent(EX_USAGE, "5.5.2", "unknown command"); }
Error bad_syntax(std::string text) { return Error::permanent(EX_USAGE, "5.5.4", std::move(text)); }
Error bad_parameter(std::string text) {
  return Error::permanent(EX_UNAVAILABLE, "5.5.4", std::move(text));
}

char ascii_upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_upper(a[i]) != ascii_upper(b[i]))
      return false;
  return true;
}

bool istarts_with(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && iequals(text.substr(0, prefix.size()), prefix);
}

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_control(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}
bool is_printable_ascii(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x20 && u < 0x7f;
}

std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// 1..20 decimal digits, nothing else, fitting in 64 bits.
std::optional<std::uint64_t> parse_number(std::string_view s) {
  if (s.empty() || s.size() > kMaxNumberDigits)
    return std::nullopt;
  for (char c : s)
    if (!is_digit(c))
      return std::nullopt;
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size())
    return std::nullopt;
  return value;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;  // RFC 3461 4: hexchar uses upper case only
}

// Strict RFC 3461 4 xtext, decoded; the result must be printable ASCII (no CR, LF, NUL, other
// controls, DEL or 8-bit), because it is written into the spool file (CVE-2020-28021).
std::optional<std::string> decode_xtext(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+') {
      if (text.size() - i < 3)
        return std::nullopt;
      const int hi = hex_value(text[i + 1]);
      const int lo = hex_value(text[i + 2]);
      if (hi < 0 || lo < 0)
        return std::nullopt;
      const char decoded = static_cast<char>(hi * 16 + lo);
      if (!is_printable_ascii(decoded))
        return std::nullopt;
      out.push_back(decoded);
      i += 2;
    } else if (c == '=' || static_cast<unsigned char>(c) < 33 ||
               static_cast<unsigned char>(c) > 126) {
      return std::nullopt;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// RFC 5321 4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
bool is_esmtp_keyword(std::string_view s) {
  if (s.empty() || !(is_alpha(s[0]) || is_digit(s[0])))
    return false;
  for (char c : s)
    if (!(is_alpha(c) || is_digit(c) || c == '-'))
      return false;
  return true;
}

// esmtp-value = 1*(%d33-60 / %d62-126). The UTF-8 of RFC 6531 is not needed by any parameter
// we know, so 8-bit octets are refused too.
bool is_esmtp_value(std::string_view s) {
  if (s.empty())
    return false;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 33 || u > 126 || c == '=')
      return false;
  }
  return true;
}

struct Param {
  std::string_view keyword;
  std::optional<std::string_view> value;
};

// Splits "K1=V1 K2 K3=V3" (spaces between, none inside). The keyword is checked here, the
// value by its parameter (the generic esmtp-value check first).
Result<std::vector<Param>> split_parameters(std::string_view text) {
  std::vector<Param> params;
  text = trim_spaces(text);
  while (!text.empty()) {
    const std::size_t space = text.find(' ');
    const std::string_view item = text.substr(0, space);
    text = space == std::string_view::npos ? std::string_view() : trim_spaces(text.substr(space));
    Param p;
    const std::size_t eq = item.find('=');
    p.keyword = item.substr(0, eq);
    if (eq != std::string_view::npos)
      p.value = item.substr(eq + 1);
    if (!is_esmtp_keyword(p.keyword))
      return bad_syntax("malformed parameter");
    if (p.value && !is_esmtp_value(*p.value))
      return bad_syntax("malformed parameter value");
    if (params.size() >= 16)
      return bad_syntax("too many parameters");
    params.push_back(p);
  }
  return params;
}

// "MAIL FROM:" / "RCPT TO:" prefix: no space before the colon, one optional space after it.
std::optional<std::string_view> after_keyword(std::string_view args, std::string_view keyword) {
  if (!istarts_with(args, keyword))
    return std::nullopt;
  args.remove_prefix(keyword.size());
  if (!args.empty() && args.front() == ' ')
    args.remove_prefix(1);
  return args;
}

Result<SmtpCommand> parse_mail(std::string_view args, SmtpCommand cmd) {
  const auto rest = after_keyword(args, "FROM:");
  if (!rest)
    return bad_syntax("syntax: MAIL FROM:<address>");
  // The path is parsed after the parameters, since SMTPUTF8 decides whether it may hold UTF-8.
  // Find the path's end without parsing it: the first '>' outside a quoted string.
  std::string_view path_text = *rest;
  std::size_t end = std::string_view::npos;
  bool quoted = false;
  for (std::size_t i = 0; i < path_text.size(); ++i) {
    const char c = path_text[i];
    if (quoted && c == '\\') {
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (!quoted && c == '>') {
      end = i;
      break;
    }
  }
  if (path_text.empty() || path_text.front() != '<' || end == std::string_view::npos)
    return Error::permanent(EX_DATAERR, "5.1.7", "bad sender address syntax");
  const std::string_view after = path_text.substr(end + 1);
  if (!after.empty() && after.front() != ' ')
    return bad_syntax("junk after the address");

  auto params = split_parameters(after);
  if (!params)
    return params.error();
  MailParameters& mp = cmd.mail;
  bool seen_body = false, seen_ret = false;
  for (const Param& p : *params) {
    const std::string_view k = p.keyword;
    if (iequals(k, "SIZE")) {
      if (mp.size)
        return bad_parameter("SIZE given twice");
      if (!p.value)
        return bad_syntax("SIZE needs a value");
      mp.size = parse_number(*p.value);
      if (!mp.size)
        return bad_syntax("bad SIZE value");
    } else if (iequals(k, "BODY")) {
      if (seen_body)
        return bad_parameter("BODY given twice");
      seen_body = true;
      if (!p.value)
        return bad_syntax("BODY needs a value");
      if (iequals(*p.value, "7BIT"))
        mp.body = BodyType::k7Bit;
      else if (iequals(*p.value, "8BITMIME"))
        mp.body = BodyType::k8BitMime;
      else if (iequals(*p.value, "BINARYMIME"))
        mp.body = BodyType::kBinaryMime;
      else
        return bad_parameter("unknown BODY value");
    } else if (iequals(k, "SMTPUTF8")) {
      if (mp.smtputf8)
        return bad_parameter("SMTPUTF8 given twice");
      if (p.value)
        return bad_syntax("SMTPUTF8 takes no value");
      mp.smtputf8 = true;
    } else if (iequals(k, "RET")) {
      if (seen_ret)
        return bad_parameter("RET given twice");
      seen_ret = true;
      if (!p.value)
        return bad_syntax("RET needs a value");
      if (iequals(*p.value, "FULL"))
        mp.ret = DsnRet::kFull;
      else if (iequals(*p.value, "HDRS"))
        mp.ret = DsnRet::kHdrs;
      else
        return bad_syntax("bad RET value");
    } else if (iequals(k, "ENVID")) {
      if (mp.envid)
        return bad_parameter("ENVID given twice");
      if (!p.value || p.value->size() > kMaxEnvid)
        return bad_syntax("bad ENVID value");
      auto decoded = decode_xtext(*p.value);
      if (!decoded || decoded->empty())
        return bad_syntax("bad ENVID value");
      mp.envid = std::move(*decoded);
    } else if (iequals(k, "AUTH")) {
      if (mp.auth)
        return bad_parameter("AUTH given twice");
      if (!p.value)
        return bad_syntax("AUTH needs a value");
      if (*p.value == "<>") {
        mp.auth = std::string();
        continue;
      }
      auto decoded = decode_xtext(*p.value);
      if (!decoded)
        return bad_syntax("bad AUTH value");
      // RFC 4954 5: the decoded value is an addr-spec (printable ASCII, as decode_xtext made
      // sure); checked as a mailbox so the spool only ever holds an address.
      auto mailbox = parse_mailbox(*decoded);
      if (!mailbox)
        return bad_syntax("bad AUTH value");
      mp.auth = std::move(*decoded);
    } else if (iequals(k, "NOTIFY") || iequals(k, "ORCPT")) {
      return bad_parameter("parameter not allowed with MAIL");
    } else {
      return bad_parameter("unknown parameter");
    }
  }

  AddressOptions aopts;
  aopts.allow_utf8 = mp.smtputf8;
  auto path = parse_reverse_path(path_text.substr(0, end + 1), aopts);
  if (!path)
    return path.error();
  if (path->length != end + 1)  // nothing between the path and its parameters may be skipped
    return Error::permanent(EX_DATAERR, "5.1.7", "bad sender address syntax");
  cmd.path = std::move(path->path);
  return cmd;
}

Result<unsigned> parse_notify(std::string_view value) {
  if (iequals(value, "NEVER"))
    return static_cast<unsigned>(kNotifyNever);
  unsigned flags = 0;
  while (true) {
    const std::size_t comma = value.find(',');
    const std::string_view item = value.substr(0, comma);
    if (iequals(item, "SUCCESS"))
      flags |= kNotifySuccess;
    else if (iequals(item, "FAILURE"))
      flags |= kNotifyFailure;
    else if (iequals(item, "DELAY"))
      flags |= kNotifyDelay;
    else
      return bad_syntax("bad NOTIFY value");  // includes NEVER in a list and empty items
    if (comma == std::string_view::npos)
      break;
    value.remove_prefix(comma + 1);
  }
  return flags;
}

// RFC 3461 4.2: addr-type ";" xtext, addr-type an RFC 5322 atom; we allow letters, digits and
// '-', which covers every registered type (rfc822, utf-8, x400, unknown).
Result<SmtpCommand> parse_orcpt(std::string_view value, SmtpCommand cmd) {
  if (value.size() > kMaxOrcpt)
    return bad_syntax("bad ORCPT value");
  const std::size_t semi = value.find(';');
  if (semi == std::string_view::npos || semi == 0)
    return bad_syntax("bad ORCPT value");
  const std::string_view type = value.substr(0, semi);
  for (char c : type)
    if (!(is_alpha(c) || is_digit(c) || c == '-'))
      return bad_syntax("bad ORCPT value");
  auto decoded = decode_xtext(value.substr(semi + 1));
  if (!decoded || decoded->empty())
    return bad_syntax("bad ORCPT value");
  cmd.rcpt.orcpt_type = std::string(type);
  cmd.rcpt.orcpt_address = std::move(*decoded);
  return cmd;
}

Result<SmtpCommand> parse_rcpt(std::string_view args, SmtpCommand cmd, bool smtputf8) {
  const auto rest = after_keyword(args, "TO:");
  if (!rest)
    return bad_syntax("syntax: RCPT TO:<address>");
  AddressOptions aopts;
  aopts.allow_utf8 = smtputf8;
  auto path = parse_forward_path(*rest, aopts);
  if (!path)
    return path.error();
  cmd.path = std::move(path->path);
  const std::string_view after = rest->substr(path->length);
  if (!after.empty() && after.front() != ' ')
    return bad_syntax("junk after the address");
  auto params = split_parameters(after);
  if (!params)
    return params.error();
  bool seen_orcpt = false;
  for (const Param& p : *params) {
    if (iequals(p.keyword, "NOTIFY")) {
      if (cmd.rcpt.notify != kNotifyNone)
        return bad_parameter("NOTIFY given twice");
      if (!p.value)
        return bad_syntax("NOTIFY needs a value");
      auto flags = parse_notify(*p.value);
      if (!flags)
        return flags.error();
      cmd.rcpt.notify = *flags;
    } else if (iequals(p.keyword, "ORCPT")) {
      if (seen_orcpt)
        return bad_parameter("ORCPT given twice");
      seen_orcpt = true;
      if (!p.value)
        return bad_syntax("ORCPT needs a value");
      auto updated = parse_orcpt(*p.value, std::move(cmd));
      if (!updated)
        return updated.error();
      cmd = std::move(*updated);
    } else if (iequals(p.keyword, "SIZE") || iequals(p.keyword, "BODY") ||
               iequals(p.keyword, "SMTPUTF8") || iequals(p.keyword, "RET") ||
               iequals(p.keyword, "ENVID") || iequals(p.keyword, "AUTH")) {
      return bad_parameter("parameter not allowed with RCPT");
    } else {
      return bad_parameter("unknown parameter");
    }
  }
  return cmd;
}

Result<SmtpCommand> parse_greeting(std::string_view args, SmtpCommand cmd,
                                   const SmtpParseOptions& options) {
  if (args.empty())
    return bad_syntax("syntax: EHLO domain");
  if (args.find(' ') != std::string_view::npos)
    return bad_syntax("syntax: EHLO domain");
  if (args.size() > 255 + 2)  // a domain of 255, or a literal of that with its brackets
    return bad_syntax("domain too long");
  if (args.front() == '[') {
    // The literal grammar lives in address.h; a mailbox around it reuses the check.
    auto mailbox = parse_mailbox("postmaster@" + std::string(args));
    if (!mailbox || !mailbox->domain_is_literal) {
      if (!options.lenient_greeting)
        return bad_syntax("bad address literal");
    } else {
      cmd.domain_is_literal = true;
    }
  } else if (!is_valid_domain(args) && !options.lenient_greeting) {
    return bad_syntax("bad domain name");
  }
  for (char c : args)
    if (!is_printable_ascii(c))
      return bad_syntax("bad domain name");
  cmd.domain = std::string(args);
  return cmd;
}

Result<SmtpCommand> parse_auth(std::string_view args, SmtpCommand cmd) {
  const std::size_t space = args.find(' ');
  const std::string_view mech = args.substr(0, space);
  if (mech.empty() || mech.size() > kMaxMechanism)
    return bad_syntax("syntax: AUTH mechanism [initial-response]");
  for (char c : mech)
    if (!(is_alpha(c) || is_digit(c) || c == '-' || c == '_'))
      return bad_syntax("bad mechanism name");
  for (char c : mech) cmd.mechanism.push_back(ascii_upper(c));
  if (space != std::string_view::npos) {
    const std::string_view resp = args.substr(space + 1);
    if (resp.empty() || resp.find(' ') != std::string_view::npos)
      return bad_syntax("syntax: AUTH mechanism [initial-response]");
    if (resp != "=") {
      for (char c : resp)
        if (!(is_alpha(c) || is_digit(c) || c == '+' || c == '/' || c == '='))
          return bad_syntax("initial response is not base64");
    }
    cmd.initial_response = std::string(resp);
  }
  return cmd;
}

struct VerbName {
  std::string_view name;
  SmtpVerb verb;
};
constexpr std::array<VerbName, 13> kVerbs{{
    {"EHLO", SmtpVerb::kEhlo},
    {"HELO", SmtpVerb::kHelo},
    {"MAIL", SmtpVerb::kMail},
    {"RCPT", SmtpVerb::kRcpt},
    {"DATA", SmtpVerb::kData},
    {"BDAT", SmtpVerb::kBdat},
    {"RSET", SmtpVerb::kRset},
    {"NOOP", SmtpVerb::kNoop},
    {"QUIT", SmtpVerb::kQuit},
    {"VRFY", SmtpVerb::kVrfy},
    {"HELP", SmtpVerb::kHelp},
    {"STARTTLS", SmtpVerb::kStarttls},
    {"AUTH", SmtpVerb::kAuth},
}};

}  // namespace

Result<SmtpCommand> parse_smtp_command(std::string_view line, const SmtpParseOptions& options) {
  if (line.size() > options.max_line_length)
    return Error::permanent(EX_USAGE, "5.5.2", "line too long");
  for (char c : line)
    if (is_control(c))
      return Error::permanent(EX_USAGE, "5.5.2", "control character in command");

  const std::size_t space = line.find(' ');
  const std::string_view word = line.substr(0, space);
  const std::string_view args =
      space == std::string_view::npos ? std::string_view() : line.substr(space + 1);

  SmtpCommand cmd;
  bool known = false;
  for (const VerbName& v : kVerbs) {
    if (iequals(word, v.name)) {
      cmd.verb = v.verb;
      known = true;
      break;
    }
  }
  if (!known)
    return unknown_command();

  const std::string_view trimmed = trim_spaces(args);
  switch (cmd.verb) {
    case SmtpVerb::kEhlo:
    case SmtpVerb::kHelo:
      return parse_greeting(trimmed, std::move(cmd), options);
    case SmtpVerb::kMail: {
      // Trailing spaces only: a leading one would be a space before "FROM:".
      std::string_view a = args;
      while (!a.empty() && a.back() == ' ') a.remove_suffix(1);
      return parse_mail(a, std::move(cmd));
    }
    case SmtpVerb::kRcpt: {
      std::string_view a = args;
      while (!a.empty() && a.back() == ' ') a.remove_suffix(1);
      return parse_rcpt(a, std::move(cmd), options.utf8_recipients);
    }
    case SmtpVerb::kData:
    case SmtpVerb::kRset:
    case SmtpVerb::kQuit:
    case SmtpVerb::kStarttls:
      if (!trimmed.empty())
        return bad_syntax("no arguments allowed");
      return cmd;
    case SmtpVerb::kNoop:
    case SmtpVerb::kVrfy:
    case SmtpVerb::kHelp:
      if (cmd.verb == SmtpVerb::kVrfy && trimmed.empty())
        return bad_syntax("syntax: VRFY string");
      cmd.text = std::string(trimmed);
      return cmd;
    case SmtpVerb::kBdat: {
      const std::size_t sp = trimmed.find(' ');
      const auto size = parse_number(trimmed.substr(0, sp));
      if (!size)
        return bad_syntax("syntax: BDAT size [LAST]");
      cmd.chunk_size = *size;
      if (sp != std::string_view::npos) {
        if (!iequals(trim_spaces(trimmed.substr(sp)), "LAST"))
          return bad_syntax("syntax: BDAT size [LAST]");
        cmd.last_chunk = true;
      }
      return cmd;
    }
    case SmtpVerb::kAuth:
      return parse_auth(trimmed, std::move(cmd));
  }
  return unknown_command();
}

int smtp_reply_code(const Error& error) {
  const std::string& status = error.status();
  if (status.rfind("5.1.", 0) == 0)
    return 553;
  if (status == "5.5.2")
    return 500;
  if (error.exit_code() == EX_UNAVAILABLE)
    return 555;
  return 501;
}

std::string_view smtp_verb_name(SmtpVerb verb) {
  for (const VerbName& v : kVerbs)
    if (v.verb == verb)
      return v.name;
  return "?";
}

std::string encode_xtext(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 33 || u > 126 || c == '+' || c == '=') {
      out.push_back('+');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace mailwright::smtp
