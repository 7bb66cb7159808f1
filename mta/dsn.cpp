#include "mta/dsn.h"

#include <openssl/evp.h>
#include <sysexits.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <initializer_list>
#include <memory>

#include "libmail/ascii.h"
#include "libmail/rfc5322.h"

namespace mailwright::mta {

namespace {

constexpr std::string_view kCrlf = "\r\n";
// RFC 5322 2.1.1 / RFC 2045 2.8: at most 998 octets between two CRLF.
constexpr std::size_t kMaxLine = 998;
// Where the human-readable text wraps.
constexpr std::size_t kTextWidth = 76;
// A word longer than this is split in the text part (a line stays under kMaxLine with indent).
constexpr std::size_t kLongWord = 900;

// Length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, at most
// U+10FFFF) at s[i], with its code point in cp; 0 when there is none.
std::size_t utf8_sequence(std::string_view s, std::size_t i, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  char32_t min = 0;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    cp = b0 & 0x1F;
    min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    cp = b0 & 0x0F;
    min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    cp = b0 & 0x07;
    min = 0x10000;
  } else {
    return 0;
  }
  if (s.size() - i < len)
    return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

// Makes text from a peer or an envelope safe for a header field value or a line of the text
// part: one line (CR, LF and TAB become spaces, white space runs shrink to one, both ends are
// trimmed), no control characters (C0, DEL, and C1 for UTF-8: each becomes '?'), UTF-8 only
// when allowed and well-formed (otherwise '?' per character or per bad octet), and at most cap
// octets, cut on a character boundary and marked "...". Stops reading once past the cap, so a
// huge diagnostic costs no more than a short one.
std::string sanitize(std::string_view in, bool allow_utf8, std::size_t cap) {
  std::string out;
  out.reserve(std::min(in.size(), cap + 8));
  bool space = false;
  for (std::size_t i = 0; i < in.size() && out.size() <= cap;) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = !out.empty();
      ++i;
      continue;
    }
    if (space) {
      out.push_back(' ');
      space = false;
    }
    if (c < 0x20 || c == 0x7F) {
      out.push_back('?');
      ++i;
      continue;
    }
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    char32_t cp = 0;
    const std::size_t len = utf8_sequence(in, i, cp);
    if (len == 0) {
      out.push_back('?');
      ++i;
    } else {
      if (allow_utf8 && cp >= 0xA0) {
        out.append(in.substr(i, len));
      } else {
        out.push_back('?');
      }
      i += len;
    }
  }
  if (out.size() > cap) {
    std::size_t cut = cap >= 3 ? cap - 3 : 0;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) {
      --cut;  // never split a UTF-8 sequence
    }
    out.resize(cut);
    while (!out.empty() && out.back() == ' ') {
      out.pop_back();
    }
    out += "...";
  }
  return out;
}

// A domain for the From address and the Message-ID: letters, digits, '-' and '.' only, no empty
// labels at the ends. Anything else (a U-label, a literal) is dropped rather than risk an
// address that needs quoting or SMTPUTF8.
std::string ldh_domain(std::string_view host) {
  std::string out;
  for (char c : host.substr(0, std::min(host.size(), kMaxValue))) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        (c == '.' && !out.empty() && out.back() != '.')) {
      out.push_back(c);
    }
  }
  while (!out.empty() && out.back() == '.') {
    out.pop_back();
  }
  return out.empty() ? std::string("localhost") : out;
}

std::string hex_upper(char32_t v) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  do {
    out.insert(out.begin(), kHex[v & 0xF]);
    v >>= 4;
  } while (v != 0);
  if (out.size() < 2)
    out.insert(out.begin(), '0');
  return out;
}

// RFC 6533 3 utf-8-addr-xtext: QCHAR stays, every other character is \x{HEXPOINT}. sanitized
// text holds no controls and only well-formed UTF-8.
std::string utf8_addr_xtext(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    std::size_t len = utf8_sequence(s, i, cp);
    if (len == 0) {
      cp = 0xFFFD;
      len = 1;
    }
    if (cp > 0x20 && cp < 0x7F && cp != '\\' && cp != '+' && cp != '=') {
      out.push_back(static_cast<char>(cp));
    } else {
      out += "\\x{" + hex_upper(cp) + "}";
    }
    i += len;
  }
  return out;
}

// Final-Recipient / the address in the text: "rfc822; addr", or for a non-ASCII address the
// RFC 6533 "utf-8" type, as UTF-8 in a global report and as xtext otherwise.
std::string recipient_field(std::string_view address, bool global) {
  const std::string s = sanitize(address, true, kMaxValue);
  if (is_ascii(s))
    return "rfc822; " + s;
  return "utf-8; " + (global ? s : utf8_addr_xtext(s));
}

bool is_type_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

// Splits a sanitized "type; text" into its parts; type is "" when s has no such prefix.
void split_typed(std::string_view s, std::string_view& type, std::string_view& text) {
  const std::size_t semi = s.find(';');
  type = std::string_view();
  text = s;
  if (semi == std::string_view::npos)
    return;
  std::string_view t = s.substr(0, semi);
  while (!t.empty() && t.back() == ' ') {
    t.remove_suffix(1);
  }
  if (t.empty() || t.size() > 64 || !std::all_of(t.begin(), t.end(), is_type_char))
    return;
  type = t;
  text = s.substr(semi + 1);
  while (!text.empty() && text.front() == ' ') {
    text.remove_prefix(1);
  }
}

char status_class_for(DsnAction action, char wanted) {
  switch (action) {
    case DsnAction::kFailed:
      return wanted == '4' ? '4' : '5';
    case DsnAction::kDelayed:
      return '4';
    default:
      return '2';
  }
}

bool class_fits(DsnAction action, char cls) {
  switch (action) {
    case DsnAction::kFailed:
      return cls == '4' || cls == '5';
    case DsnAction::kDelayed:
      return cls == '4';
    default:
      return cls == '2';
  }
}

// RFC 3463 2: class "." subject "." detail, subject and detail 1 to 3 digits. The length of s is
// its whole length: "5.1.1x" is no status.
bool is_status_code(std::string_view s) {
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
    return false;
  std::size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    std::size_t digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && digits < 4) {
      ++i;
      ++digits;
    }
    if (digits == 0 || digits > 3)
      return false;
    if (part == 0) {
      if (i >= s.size() || s[i] != '.')
        return false;
      ++i;
    }
  }
  return i == s.size();
}

std::string generic_status(DsnAction action, char wanted = '\0') {
  return std::string(1, status_class_for(action, wanted)) + ".0.0";
}

std::string checked_status(std::string_view status, DsnAction action) {
  if (is_status_code(status) && class_fits(action, status[0]))
    return std::string(status);
  return generic_status(action);
}

std::string date(std::int64_t t) { return format_rfc5322_date(static_cast<std::time_t>(t)); }

// Lines of at most kTextWidth octets where the words allow (a word of more than kLongWord octets
// is split, on a character boundary), each starting with indent after the first.
void append_wrapped(std::string& out, std::string_view text, std::string_view indent) {
  std::size_t column = 0;
  bool first_word = true;
  while (!text.empty()) {
    const std::size_t sp = text.find(' ');
    std::string_view word = text.substr(0, sp);
    text = sp == std::string_view::npos ? std::string_view() : text.substr(sp + 1);
    while (!word.empty()) {
      std::string_view piece = word;
      if (piece.size() > kLongWord) {
        std::size_t cut = kLongWord;
        while (cut > 0 && (static_cast<unsigned char>(word[cut]) & 0xC0) == 0x80) {
          --cut;
        }
        piece = word.substr(0, cut);
      }
      word.remove_prefix(piece.size());
      if (!first_word && column + 1 + piece.size() > kTextWidth) {
        out += kCrlf;
        out += indent;
        column = indent.size();
      } else if (!first_word) {
        out.push_back(' ');
        ++column;
      }
      out += piece;
      column += piece.size();
      first_word = false;
    }
  }
  out += kCrlf;
}

// RFC 2045 2.8 8bit data: no NUL, CR and LF only together as CRLF, no line over 998 octets.
// (A last line without CRLF is fine: the boundary delimiter starts with one.)
bool is_8bit_clean(std::string_view s) {
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\0')
      return false;
    if (c == '\r') {
      if (i + 1 >= s.size() || s[i + 1] != '\n')
        return false;
      if (i - line_start > kMaxLine)
        return false;
      ++i;
      line_start = i + 1;
    } else if (c == '\n') {
      return false;
    }
  }
  return s.size() - line_start <= kMaxLine;
}

// The header section of a message, without the blank line that ends it. A message without that
// blank line is all header as far as it parses as header fields (parse_header_block stops at
// the first line that is not one, as a lenient reader treats the rest as body). An mbox From_
// line is not part of it.
std::string_view header_section(std::string_view message) {
  const HeaderBlock block = parse_header_block(message);
  std::size_t start = 0;
  if (message.starts_with("From ")) {
    const std::size_t lf = message.find('\n');
    start = lf == std::string_view::npos ? message.size() : lf + 1;
  }
  std::size_t end = block.body_offset;
  if (block.complete) {
    // body_offset is just after the blank line: "\r\n" or "\n".
    end -= (end >= 2 && message[end - 2] == '\r') ? 2 : 1;
  }
  if (end <= start)
    return std::string_view();
  return message.substr(start, end - start);
}

// A header section made fit for a 7bit/8bit body part: LF ends lines (with or without CR), a
// bare CR and NUL are dropped, a line over 998 octets is folded (CRLF SP) into pieces, and the
// result ends with CRLF. The header may be malformed; it is returned for a human to read.
std::string repair_lines(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  std::size_t column = 0;
  for (const char c : s) {
    if (c == '\n') {
      out += kCrlf;
      column = 0;
    } else if (c != '\r' && c != '\0') {
      if (column == kMaxLine) {
        out += "\r\n ";
        column = 1;
      }
      out.push_back(c);
      ++column;
    }
  }
  if (!out.empty() && column != 0)
    out += kCrlf;
  return out;
}

// Cut before max octets, at the end of a line.
std::string_view cut_at_line(std::string_view s, std::size_t max) {
  if (s.size() <= max)
    return s;
  const std::size_t lf = s.substr(0, max).rfind('\n');
  return lf == std::string_view::npos ? std::string_view() : s.substr(0, lf + 1);
}

struct Digest {
  std::array<unsigned char, 32> bytes{};
  std::string hex(std::size_t n) const {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < bytes.size() && out.size() < n; ++i) {
      out.push_back(kHex[bytes[i] >> 4]);
      out.push_back(kHex[bytes[i] & 0xF]);
    }
    out.resize(std::min(out.size(), n));
    return out;
  }
};

struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

// SHA-256 over the pieces, each preceded by its length so no two lists of pieces collide.
Result<Digest> sha256(std::initializer_list<std::string_view> pieces) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  Digest d;
  unsigned int len = 0;
  bool ok = ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1;
  for (std::string_view p : pieces) {
    const std::string size = std::to_string(p.size()) + ":";
    ok = ok && EVP_DigestUpdate(ctx.get(), size.data(), size.size()) == 1 &&
         EVP_DigestUpdate(ctx.get(), p.data(), p.size()) == 1;
  }
  ok = ok && EVP_DigestFinal_ex(ctx.get(), d.bytes.data(), &len) == 1 && len == d.bytes.size();
  if (!ok)
    return Error::temporary(EX_SOFTWARE, "4.3.0", "SHA-256 not available");
  return d;
}

std::string_view subject_for(DsnKind kind) {
  switch (kind) {
    case DsnKind::kFailure:
      return "Undelivered Mail Returned to Sender";
    case DsnKind::kDelay:
      return "Delayed Mail (still being retried)";
    case DsnKind::kSuccess:
      return "Successful Mail Delivery Report";
  }
  return "Mail Delivery Report";
}

// The human text about one recipient: the diagnostic without its type, or the status.
std::string reason_text(const DsnRecipient& r, std::string_view status, bool global) {
  const std::string diag = sanitize(r.diagnostic, global, kMaxDiagnostic);
  std::string_view type, text;
  split_typed(diag, type, text);
  std::string out;
  if (!text.empty()) {
    const std::string host = sanitize(r.remote_mta, global, kMaxValue);
    out = host.empty() ? "The error was: " : "The mail server " + host + " said: ";
    out += text;
  } else {
    out = "Status " + std::string(status) + ".";
  }
  return out;
}

std::string text_part(const DsnInput& in, const std::vector<std::string>& statuses,
                      std::string_view host, bool full_content) {
  const bool global = in.smtputf8;
  std::string out;
  append_wrapped(out, "This is the mail system at host " + std::string(host) + ".", "");
  out += kCrlf;
  std::string intro;
  switch (in.kind) {
    case DsnKind::kFailure:
      intro =
          "Your message could not be delivered to one or more of its recipients. The details "
          "are below, followed by ";
      intro += full_content ? "your message." : "the header of your message.";
      intro += " If you need help, please send this report to your postmaster.";
      break;
    case DsnKind::kDelay:
      intro =
          "Your message has not been delivered yet to the recipients below. The mail system "
          "will keep trying; there is no need to send it again. You will be told if it "
          "cannot be delivered in the end.";
      break;
    case DsnKind::kSuccess:
      intro = "Your message was delivered to the recipients below, as you asked to be told.";
      break;
  }
  append_wrapped(out, intro, "");
  for (std::size_t i = 0; i < in.recipients.size(); ++i) {
    const DsnRecipient& r = in.recipients[i];
    std::string line = "<" + sanitize(r.address, global, kMaxValue) + ">: ";
    switch (r.action) {
      case DsnAction::kFailed:
        line += "delivery failed. " + reason_text(r, statuses[i], global);
        break;
      case DsnAction::kDelayed:
        line += "not delivered yet";
        if (r.will_retry_until > 0)
          line += "; the mail system will keep trying until " + date(r.will_retry_until);
        line += ". " + reason_text(r, statuses[i], global);
        break;
      case DsnAction::kDelivered:
        line += "delivered.";
        break;
      case DsnAction::kRelayed:
        line += "relayed to a system that does not send delivery notifications.";
        break;
      case DsnAction::kExpanded:
        line += "delivered to an alias or mailing list, which may send it on.";
        break;
    }
    out += kCrlf;
    append_wrapped(out, line, "    ");
  }
  return out;
}

std::string delivery_status(const DsnInput& in, const std::vector<std::string>& statuses,
                            std::string_view host) {
  const bool global = in.smtputf8;
  std::string out = format_header("Reporting-MTA", "dns; " + std::string(host));
  const std::string envid = sanitize(in.envid, global, kMaxValue);
  if (!envid.empty())
    out += format_header("Original-Envelope-Id", envid);
  if (in.arrival > 0)
    out += format_header("Arrival-Date", date(in.arrival));
  for (std::size_t i = 0; i < in.recipients.size(); ++i) {
    const DsnRecipient& r = in.recipients[i];
    out += kCrlf;  // the blank line before each recipient's fields
    // Stored as "addr-type;address"; a value without a type cannot be a valid field.
    const std::string original = sanitize(r.original, global, kMaxValue);
    std::string_view type, address;
    split_typed(original, type, address);
    if (!type.empty() && !address.empty())
      out += format_header("Original-Recipient", std::string(type) + ";" + std::string(address));
    out += format_header("Final-Recipient", recipient_field(r.address, global));
    out += format_header("Action", dsn_action_name(r.action));
    out += format_header("Status", statuses[i]);
    const std::string remote = sanitize(r.remote_mta, global, kMaxValue);
    if (!remote.empty())
      out += format_header("Remote-MTA", "dns; " + remote);
    const std::string diag = sanitize(r.diagnostic, global, kMaxDiagnostic);
    std::string_view diag_type, diag_text;
    split_typed(diag, diag_type, diag_text);
    if (!diag_text.empty()) {
      out += format_header("Diagnostic-Code", std::string(diag_type.empty() ? "smtp" : diag_type) +
                                                  "; " + std::string(diag_text));
    }
    if (r.last_attempt > 0)
      out += format_header("Last-Attempt-Date", date(r.last_attempt));
    if (r.action == DsnAction::kDelayed && r.will_retry_until > 0)
      out += format_header("Will-Retry-Until", date(r.will_retry_until));
  }
  return out;
}

std::string part_header(std::string_view description, std::string_view type, bool eight_bit) {
  std::string out = format_header("Content-Description", description);
  out += format_header("Content-Type", type);
  if (eight_bit)
    out += format_header("Content-Transfer-Encoding", "8bit");
  return out;
}

}  // namespace

bool should_notify(unsigned notify_flags, DsnKind kind) {
  if (notify_flags & kNotifyNever)
    return false;
  if (notify_flags == kNotifyNone)
    return kind == DsnKind::kFailure || kind == DsnKind::kDelay;
  switch (kind) {
    case DsnKind::kFailure:
      return (notify_flags & kNotifyFailure) != 0;
    case DsnKind::kDelay:
      return (notify_flags & kNotifyDelay) != 0;
    case DsnKind::kSuccess:
      return (notify_flags & kNotifySuccess) != 0;
  }
  return false;
}

bool is_bounce_allowed(std::string_view sender) { return !sender.empty() && sender != "<>"; }

std::string_view dsn_action_name(DsnAction action) {
  switch (action) {
    case DsnAction::kFailed:
      return "failed";
    case DsnAction::kDelayed:
      return "delayed";
    case DsnAction::kDelivered:
      return "delivered";
    case DsnAction::kRelayed:
      return "relayed";
    case DsnAction::kExpanded:
      return "expanded";
  }
  return "failed";
}

std::string status_from_reply(std::string_view reply, DsnAction action) {
  // "550 5.1.1 text" or "550-5.1.1 text": the code, a separator, then maybe the status.
  const bool has_code = reply.size() >= 3 && reply[0] >= '2' && reply[0] <= '5' &&
                        reply[1] >= '0' && reply[1] <= '9' && reply[2] >= '0' && reply[2] <= '9' &&
                        (reply.size() == 3 || reply[3] == ' ' || reply[3] == '-');
  if (has_code && reply.size() > 4) {
    std::string_view rest = reply.substr(4);
    const std::size_t end = rest.find_first_of(" \t\r\n");
    const std::string_view word = rest.substr(0, end);
    // RFC 3463 3: the status's class must match the reply code's.
    if (is_status_code(word) && word[0] == reply[0] && class_fits(action, word[0]))
      return std::string(word);
  }
  if (has_code && class_fits(action, reply[0]))
    return std::string(1, reply[0]) + ".0.0";
  return generic_status(action);
}

Result<Dsn> make_dsn(const DsnInput& in) {
  std::string_view to_raw = in.to;
  if (to_raw.size() >= 2 && to_raw.front() == '<' && to_raw.back() == '>')
    to_raw = to_raw.substr(1, to_raw.size() - 2);
  const std::string to = sanitize(to_raw, in.smtputf8, kMaxValue);
  if (!is_bounce_allowed(to_raw) || to.empty())
    return Error::permanent(EX_SOFTWARE, "5.3.0", "no DSN to the null sender");
  if (in.recipients.empty())
    return Error::permanent(EX_SOFTWARE, "5.3.0", "DSN without recipients");

  const bool global = in.smtputf8;
  const std::string host = [&] {
    std::string h = sanitize(in.reporting_mta, global, kMaxValue);
    return h.empty() ? std::string("localhost") : h;
  }();
  const std::string domain = ldh_domain(in.reporting_mta);

  std::vector<std::string> statuses;
  statuses.reserve(in.recipients.size());
  for (const DsnRecipient& r : in.recipients) {
    statuses.push_back(checked_status(r.status, r.action));
  }

  // The returned content: the whole message only for a failure, only when RET allows it, and
  // only when it fits and is valid 8bit data; otherwise the header section.
  const bool want_full = in.kind == DsnKind::kFailure && in.ret != DsnRet::kHeaders &&
                         in.original.size() <= in.max_returned && is_8bit_clean(in.original);
  std::string repaired;
  std::string_view returned;
  if (want_full) {
    returned = in.original;
  } else {
    repaired = repair_lines(cut_at_line(header_section(in.original), in.max_returned));
    returned = repaired;
  }
  const bool returned_8bit = !is_ascii(returned);

  std::string text = text_part(in, statuses, host, want_full);
  std::string status = delivery_status(in, statuses, host);
  const bool text_8bit = !is_ascii(text);
  const bool status_8bit = !is_ascii(status);

  // The boundary is a digest of everything it must not occur in, so no content can be made to
  // contain it; it is still checked, and a counter changes it in the unlikely case it occurs.
  auto digest = sha256({in.unique_id, text, status, returned});
  if (!digest)
    return digest.error();
  std::string boundary;
  for (unsigned attempt = 0;; ++attempt) {
    auto d = sha256({digest->hex(64), std::to_string(attempt)});
    if (!d)
      return d.error();
    // "=_" cannot occur in base64 or quoted-printable text, the encodings of most content.
    boundary = "=_mw_dsn_" + d->hex(32);
    if (text.find(boundary) == std::string::npos && status.find(boundary) == std::string::npos &&
        returned.find(boundary) == std::string_view::npos) {
      break;
    }
  }

  // Message-ID: the caller's unique id (letters, digits, '-' and '_' of it) and a digest of the
  // content, so two DSNs differ even if a caller repeats an id.
  std::string id_left;
  for (char c :
       std::string_view(in.unique_id).substr(0, std::min(in.unique_id.size(), kMaxValue))) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_') {
      id_left.push_back(c);
    }
  }
  id_left += (id_left.empty() ? "" : ".") + digest->hex(16);

  std::string from = sanitize(in.from, false, kMaxValue);
  if (from.empty())
    from = "MAILER-DAEMON@" + domain;
  const bool any_8bit = text_8bit || status_8bit || returned_8bit;

  Dsn dsn;
  std::string& m = dsn.message;
  m.reserve(returned.size() + text.size() + status.size() + 2048);
  m += format_header("From", "Mail Delivery System <" + from + ">");
  m += format_header("To", "<" + to + ">");
  m += format_header("Subject", subject_for(in.kind));
  m += format_header("Date", date(in.now));
  m += format_header("Message-ID", "<" + id_left + "@" + domain + ">");
  m += format_header("Auto-Submitted", "auto-replied");
  m += format_header("MIME-Version", "1.0");
  m += format_header("Content-Type", std::string("multipart/report; report-type=") +
                                         (global ? "global-delivery-status" : "delivery-status") +
                                         "; boundary=\"" + boundary + "\"");
  if (any_8bit)
    m += format_header("Content-Transfer-Encoding", "8bit");
  dsn.smtputf8 = !is_ascii(m);
  m += kCrlf;
  m += "This is a MIME-encapsulated message.\r\n";

  // Each part: delimiter, part header, blank line, body. The CRLF in front of the next
  // delimiter belongs to the delimiter (RFC 2046 5.1.1), so a body ending in CRLF keeps it.
  const auto open_part = [&] {
    m += "\r\n--";
    m += boundary;
    m += kCrlf;
  };
  open_part();
  m += part_header("Notification",
                   text_8bit ? "text/plain; charset=utf-8" : "text/plain; charset=us-ascii",
                   text_8bit);
  m += kCrlf;
  m += text;
  open_part();
  m += part_header("Delivery report",
                   global ? "message/global-delivery-status" : "message/delivery-status",
                   status_8bit);
  m += kCrlf;
  m += status;
  open_part();
  std::string_view description;
  switch (in.kind) {
    case DsnKind::kFailure:
      description = want_full ? "Undelivered Message" : "Undelivered Message Headers";
      break;
    case DsnKind::kDelay:
      description = "Delayed Message Headers";
      break;
    case DsnKind::kSuccess:
      description = "Delivered Message Headers";
      break;
  }
  std::string_view type;
  if (want_full) {
    type = global ? "message/global" : "message/rfc822";
  } else {
    type = global ? "message/global-headers" : "text/rfc822-headers";
  }
  m += part_header(description, type, returned_8bit);
  m += kCrlf;
  m += returned;
  m += "\r\n--";
  m += boundary;
  m += "--\r\n";

  dsn.body = any_8bit ? BodyType::k8BitMime : BodyType::k7Bit;
  dsn.full_content = want_full;
  return dsn;
}

}  // namespace mailwright::mta
