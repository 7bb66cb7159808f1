#include "libmail/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sysexits.h>

#include <optional>

#include "libmail/ascii.h"
#include "libmail/limits.h"

namespace mailwright {
namespace {

// RFC 3463 3.2: X.1.7 "bad sender's mailbox address syntax", X.1.3 "bad destination mailbox
// address syntax".
constexpr std::string_view kSenderStatus = "5.1.7";
constexpr std::string_view kRecipientStatus = "5.1.3";
// RFC 1035 2.3.4: a label is at most 63 octets on the wire. Only enforced for ASCII labels: a
// U-label's wire form is its A-label, which we do not compute.
constexpr std::size_t kDnsLabel = 63;
// A bare mailbox must fit in a path once the brackets are added (RFC 5321 4.5.3.1.3).
constexpr std::size_t kMailbox = limits::kPath - 2;

// Why a check failed, as a fixed text that never contains input bytes; nullopt when it passed.
using Problem = std::optional<std::string_view>;

bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_hex(unsigned char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_let_dig(unsigned char c) { return is_alpha(c) || is_digit(c); }
bool is_ldh(unsigned char c) { return is_let_dig(c) || c == '-'; }

// RFC 5322 3.2.3 atext. ';', '(', ')', '<', '>', ',', '"', '\\', '[', ']', '@', ':', '.' and space
// are not in it; '`', '$', '|', '&' and '!' are, so atext says nothing about shell safety.
bool is_atext(unsigned char c) {
  constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
  return is_let_dig(c) || (c != 0 && kSpecials.find(static_cast<char>(c)) != kSpecials.npos);
}

// RFC 5321 4.1.2 qtextSMTP: printable ASCII and space, except '"' and '\\'.
bool is_qtext(unsigned char c) { return c >= 32 && c <= 126 && c != '"' && c != '\\'; }

// RFC 5321 4.1.3 dcontent: printable ASCII except '[', '\\' and ']'.
bool is_dcontent(unsigned char c) {
  return c >= 33 && c <= 126 && c != '[' && c != '\\' && c != ']';
}

// Length of the well-formed UTF-8 sequence (RFC 3629 4) that s starts with, or 0. Overlong forms,
// surrogates and code points past U+10FFFF are malformed: they are how byte-level filters get
// bypassed.
std::size_t utf8_sequence_length(std::string_view s) {
  if (s.empty()) {
    return 0;
  }
  const auto octet = [&s](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = octet(0);
  std::size_t length = 0;
  unsigned char second_min = 0x80;
  unsigned char second_max = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead == 0xE0) {
    length = 3;
    second_min = 0xA0;
  } else if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) {
    length = 3;
  } else if (lead == 0xED) {
    length = 3;
    second_max = 0x9F;
  } else if (lead == 0xF0) {
    length = 4;
    second_min = 0x90;
  } else if (lead >= 0xF1 && lead <= 0xF3) {
    length = 4;
  } else if (lead == 0xF4) {
    length = 4;
    second_max = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < length || octet(1) < second_min || octet(1) > second_max) {
    return 0;
  }
  for (std::size_t i = 2; i < length; ++i) {
    if (octet(i) < 0x80 || octet(i) > 0xBF) {
      return 0;
    }
  }
  return length;
}

// Length of the non-ASCII character s starts with if this address may hold it, else 0. The C1
// controls (U+0080-U+009F) are refused like the C0 ones: they reach logs and terminals.
std::size_t utf8_char_length(std::string_view s, const AddressOptions& opts) {
  if (!opts.allow_utf8) {
    return 0;
  }
  const std::size_t length = utf8_sequence_length(s);
  if (length == 2 && static_cast<unsigned char>(s[0]) == 0xC2 &&
      static_cast<unsigned char>(s[1]) <= 0x9F) {
    return 0;
  }
  return length;
}

// Why the octet that rest starts with can appear nowhere in an address (outside quotes), or
// nullopt when it is merely out of place.
Problem octet_problem(std::string_view rest, const AddressOptions& opts) {
  const auto c = static_cast<unsigned char>(rest.front());
  if (c == 0) {
    return "NUL octet in address";
  }
  if (c == '\r' || c == '\n') {
    return "CR or LF in address";
  }
  if (c < 32 || c == 127) {
    return "control character in address";
  }
  if (c == ' ') {
    return "space in address outside quotes";
  }
  if (c >= 0x80) {
    if (!opts.allow_utf8) {
      return "8-bit octet in address without SMTPUTF8";
    }
    if (utf8_sequence_length(rest) == 0) {
      return "malformed UTF-8 in address";
    }
    if (utf8_char_length(rest, opts) == 0) {
      return "control character in address";
    }
  }
  return std::nullopt;
}

// How many octets at the start of s are ASCII octets accepted by is_ascii_ok, or '.', or (with
// allow_utf8) whole UTF-8 characters.
template <typename AsciiPredicate>
std::size_t span_of(std::string_view s, const AddressOptions& opts, AsciiPredicate is_ascii_ok) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (is_ascii_ok(c) || c == '.') {
      ++i;
    } else if (const std::size_t n = utf8_char_length(s.substr(i), opts); n > 0) {
      i += n;
    } else {
      break;
    }
  }
  return i;
}

// Octets at the start of s that can make up a Dot-string: atext and '.'.
std::size_t dot_string_span(std::string_view s, const AddressOptions& opts) {
  return span_of(s, opts, [](unsigned char c) { return is_atext(c); });
}

// Structure of a Dot-string made only of atext and dots: Atom *("." Atom).
Problem dot_string_problem(std::string_view s) {
  if (s.empty()) {
    return "empty local part";
  }
  if (s.front() == '.') {
    return "local part starts with a dot";
  }
  if (s.back() == '.') {
    return "local part ends with a dot";
  }
  if (s.find("..") != s.npos) {
    return "two dots in a row in local part";
  }
  return std::nullopt;
}

// Octets at the start of s that can make up a Domain: letters, digits, hyphens, dots (and,
// with allow_utf8, UTF-8 characters for U-labels).
std::size_t domain_span(std::string_view s, const AddressOptions& opts) {
  return span_of(s, opts, [](unsigned char c) { return is_ldh(c); });
}

// Structure of a Domain made only of domain_span octets: sub-domain *("." sub-domain), with
// sub-domain = Let-dig [Ldh-str], so no empty label and no hyphen at either end of one.
Problem domain_problem(std::string_view domain) {
  if (domain.empty()) {
    return "missing domain";
  }
  if (domain.size() > limits::kDomain) {
    return "domain longer than 255 octets";
  }
  if (domain.front() == '.') {
    return "domain starts with a dot";
  }
  if (domain.back() == '.') {
    return "domain ends with a dot";
  }
  std::size_t start = 0;
  while (start <= domain.size()) {
    std::size_t end = domain.find('.', start);
    if (end == domain.npos) {
      end = domain.size();
    }
    const std::string_view label = domain.substr(start, end - start);
    if (label.empty()) {
      return "empty label in domain";
    }
    if (label.front() == '-') {
      return "domain label starts with a hyphen";
    }
    if (label.back() == '-') {
      return "domain label ends with a hyphen";
    }
    bool ascii = true;
    for (const char c : label) {
      ascii = ascii && static_cast<unsigned char>(c) < 0x80;
    }
    if (ascii && label.size() > kDnsLabel) {
      return "domain label longer than 63 octets";
    }
    start = end + 1;
  }
  return std::nullopt;
}

// RFC 5321 4.1.3 IPv4-address-literal = Snum 3("." Snum), Snum 0-255. A leading zero is refused
// on purpose (see address.h): inet_aton() reads "010" as 8.
bool is_ipv4_literal(std::string_view s) {
  int parts = 0;
  std::size_t i = 0;
  for (;;) {
    const std::size_t start = i;
    unsigned value = 0;
    while (i < s.size() && is_digit(static_cast<unsigned char>(s[i])) && i - start < 3) {
      value = value * 10 + static_cast<unsigned>(s[i] - '0');
      ++i;
    }
    const std::size_t digits = i - start;
    if (digits == 0 || value > 255 || (digits > 1 && s[start] == '0')) {
      return false;
    }
    ++parts;
    if (i == s.size()) {
      return parts == 4;
    }
    if (s[i] != '.' || parts == 4) {
      return false;
    }
    ++i;
  }
}

// RFC 5321 4.1.3 IPv6-addr (the text after "IPv6:"). inet_pton() does the real work; first we
// refuse what it accepts but the grammar does not: zone indexes, and a "::" that stands for a
// single group (the grammar allows at most 6 groups besides it, an IPv4 tail counting as 2).
bool is_ipv6_literal(std::string_view s) {
  if (s.empty() || s.size() >= INET6_ADDRSTRLEN) {
    return false;
  }
  for (const char c : s) {
    if (!is_hex(static_cast<unsigned char>(c)) && c != ':' && c != '.') {
      return false;
    }
  }
  if (s.find("::") != s.npos) {
    int groups = 0;
    std::size_t start = 0;
    while (start <= s.size()) {
      std::size_t end = s.find(':', start);
      if (end == s.npos) {
        end = s.size();
      }
      const std::string_view group = s.substr(start, end - start);
      if (!group.empty()) {
        groups += group.find('.') != group.npos ? 2 : 1;
      }
      start = end + 1;
    }
    if (groups > 6) {
      return false;
    }
  }
  const std::string text(s);
  in6_addr address{};
  return ::inet_pton(AF_INET6, text.c_str(), &address) == 1;
}

// The text between the brackets of an address-literal, made only of dcontent.
Problem literal_problem(std::string_view body) {
  if (body.empty()) {
    return "empty address literal";
  }
  const std::size_t colon = body.find(':');
  if (colon == body.npos) {
    return is_ipv4_literal(body) ? Problem() : Problem("malformed IPv4 address literal");
  }
  const std::string_view tag = body.substr(0, colon);
  // ABNF strings are case-insensitive (RFC 5234 2.3), so "ipv6:" is IPv6 too and never falls
  // through to the general form.
  if (ascii_iequal(tag, "IPv6")) {
    return is_ipv6_literal(body.substr(colon + 1)) ? Problem()
                                                   : Problem("malformed IPv6 address literal");
  }
  // General-address-literal = Standardized-tag ":" 1*dcontent, Standardized-tag = Ldh-str.
  bool tag_ok = !tag.empty() && is_let_dig(static_cast<unsigned char>(tag.back()));
  for (const char c : tag) {
    tag_ok = tag_ok && is_ldh(static_cast<unsigned char>(c));
  }
  if (!tag_ok) {
    return "malformed address literal tag";
  }
  if (colon + 1 == body.size()) {
    return "empty general address literal";
  }
  return std::nullopt;
}

std::string quote_local_part(std::string_view local_part) {
  std::string quoted = "\"";
  for (const char c : local_part) {
    if (c == '"' || c == '\\') {
      quoted += '\\';
    }
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

class Parser {
 public:
  Parser(std::string_view text, const AddressOptions& opts) : text_(text), opts_(opts) {}

  std::size_t pos() const { return pos_; }

  // RFC 5321 4.1.2 Reverse-path / Forward-path, plus "<Postmaster>" of the RCPT syntax (4.1.1.3).
  Problem path(bool forward, Path& out) {
    if (at_end()) {
      return "missing path";
    }
    if (peek() != '<') {
      return "path does not start with '<'";
    }
    ++pos_;
    if (!at_end() && peek() == '>') {
      if (forward) {
        return "null path not allowed for a recipient";
      }
      ++pos_;
      out.is_null = true;
      return std::nullopt;
    }
    if (forward && ascii_iequal(rest().substr(0, 11), "postmaster>")) {
      out.is_postmaster = true;
      out.mailbox.local_part = text_.substr(pos_, 10);
      pos_ += 11;
      return std::nullopt;
    }
    if (!at_end() && peek() == '@') {
      if (Problem problem = source_route()) {
        return problem;
      }
      out.had_source_route = true;
    }
    if (Problem problem = local_part(out.mailbox)) {
      return problem;
    }
    if (at_end()) {
      return "path not closed with '>'";
    }
    if (peek() != '@') {
      return "missing '@' and domain";
    }
    ++pos_;
    if (Problem problem = domain(out.mailbox, ">")) {
      return problem;
    }
    if (at_end()) {
      return "path not closed with '>'";
    }
    ++pos_;
    if (pos_ > limits::kPath) {
      return "path longer than 256 octets";
    }
    return std::nullopt;
  }

  // RFC 5321 4.1.2 Mailbox, filling the whole text.
  Problem mailbox(Mailbox& out) {
    if (at_end()) {
      return "empty address";
    }
    if (Problem problem = local_part(out)) {
      return problem;
    }
    if (at_end()) {
      return "missing '@' and domain";
    }
    if (peek() != '@') {
      return unexpected("invalid character in local part");
    }
    ++pos_;
    if (Problem problem = domain(out, "")) {
      return problem;
    }
    if (text_.size() > kMailbox) {
      return "address longer than 254 octets";
    }
    return std::nullopt;
  }

 private:
  bool at_end() const { return pos_ >= text_.size(); }
  unsigned char peek() const { return static_cast<unsigned char>(text_[pos_]); }
  std::string_view rest() const { return text_.substr(pos_); }

  // The octet at pos_ does not belong here: say why, as precisely as we can.
  Problem unexpected(std::string_view otherwise) const {
    if (Problem problem = octet_problem(rest(), opts_)) {
      return problem;
    }
    if (peek() == '@') {
      return "second '@' in address";
    }
    return otherwise;
  }

  // A-d-l ":" (RFC 5321 4.1.2, appendix C). Checked like any domain, then forgotten: we never
  // route by it, so "<@relay:victim@elsewhere>" cannot make us a relay.
  Problem source_route() {
    for (;;) {
      ++pos_;  // '@'
      if (!at_end() && peek() == '[') {
        return "address literal in source route";
      }
      Mailbox hop;
      if (Problem problem = domain(hop, ",:>")) {
        return problem;
      }
      if (at_end() || peek() == '>') {
        return "source route not ended with ':'";
      }
      const unsigned char separator = peek();
      ++pos_;
      if (separator == ':') {
        return std::nullopt;
      }
      if (at_end() || peek() != '@') {
        return "malformed source route";
      }
    }
  }

  // Local-part = Dot-string / Quoted-string. Stops at '@', '>' or the end.
  Problem local_part(Mailbox& out) {
    const std::size_t start = pos_;
    if (!at_end() && peek() == '"') {
      if (Problem problem = quoted_string(out.local_part)) {
        return problem;
      }
      out.local_part_was_quoted = true;
      if (!at_end() && peek() != '@' && peek() != '>') {
        return unexpected("expected '@' after quoted local part");
      }
    } else {
      const std::string_view dot_string = rest().substr(0, dot_string_span(rest(), opts_));
      pos_ += dot_string.size();
      if (!at_end() && peek() != '@' && peek() != '>') {
        return unexpected("invalid character in local part");
      }
      if (Problem problem = dot_string_problem(dot_string)) {
        return problem;
      }
      out.local_part = dot_string;
    }
    // Counted as written, so that the canonical form (never longer) fits too.
    if (pos_ - start > limits::kLocalPart) {
      return "local part longer than 64 octets";
    }
    return std::nullopt;
  }

  // Quoted-string = DQUOTE *QcontentSMTP DQUOTE, decoded into out.
  Problem quoted_string(std::string& out) {
    ++pos_;  // '"'
    for (;;) {
      if (at_end()) {
        return "unbalanced quote";
      }
      const unsigned char c = peek();
      if (c == '"') {
        ++pos_;
        return std::nullopt;
      }
      if (c == '\\') {
        ++pos_;
        if (at_end()) {
          return "backslash at end of address";
        }
        // quoted-pairSMTP = %d92 %d32-126; RFC 6531 does not extend it to UTF-8.
        const unsigned char quoted = peek();
        if (quoted < 32 || quoted > 126) {
          Problem problem = octet_problem(rest(), opts_);
          return problem ? problem : Problem("backslash before a non-ASCII character");
        }
        out += static_cast<char>(quoted);
        ++pos_;
      } else if (is_qtext(c)) {
        out += static_cast<char>(c);
        ++pos_;
      } else if (const std::size_t n = utf8_char_length(rest(), opts_); n > 0) {
        out += rest().substr(0, n);
        pos_ += n;
      } else {
        Problem problem = octet_problem(rest(), opts_);
        return problem ? problem : Problem("invalid character in quoted local part");
      }
    }
  }

  // Domain / address-literal into out; what follows must be one of terminators or the end.
  Problem domain(Mailbox& out, std::string_view terminators) {
    const auto followed_properly = [&] {
      return at_end() || terminators.find(static_cast<char>(peek())) != terminators.npos;
    };
    if (!at_end() && peek() == '[') {
      const std::size_t start = pos_;
      ++pos_;
      while (!at_end() && is_dcontent(peek())) {
        ++pos_;
      }
      if (at_end()) {
        return "unterminated address literal";
      }
      if (peek() != ']') {
        return unexpected("invalid character in address literal");
      }
      ++pos_;
      if (!followed_properly()) {
        return unexpected("invalid character after address literal");
      }
      const std::string_view literal = text_.substr(start, pos_ - start);
      if (literal.size() > limits::kDomain) {
        return "domain longer than 255 octets";
      }
      if (Problem problem = literal_problem(literal.substr(1, literal.size() - 2))) {
        return problem;
      }
      out.domain = literal;
      out.domain_is_literal = true;
      return std::nullopt;
    }
    const std::string_view name = rest().substr(0, domain_span(rest(), opts_));
    pos_ += name.size();
    if (!followed_properly()) {
      return unexpected("invalid character in domain");
    }
    if (Problem problem = domain_problem(name)) {
      return problem;
    }
    out.domain = name;
    return std::nullopt;
  }

  std::string_view text_;
  AddressOptions opts_;
  std::size_t pos_ = 0;
};

Result<PathParse> parse_path(std::string_view text, const AddressOptions& opts, bool forward) {
  Parser parser(text, opts);
  PathParse parsed;
  if (Problem problem = parser.path(forward, parsed.path)) {
    return Error::permanent(EX_DATAERR, forward ? kRecipientStatus : kSenderStatus,
                            std::string(*problem));
  }
  parsed.length = parser.pos();
  return parsed;
}

}  // namespace

std::string Mailbox::to_string() const {
  // RFC 5321 4.1.2: "the sending system SHOULD transmit the form that uses the minimum quoting
  // possible".
  std::string text = is_dot_string(local_part, AddressOptions{.allow_utf8 = true})
                         ? local_part
                         : quote_local_part(local_part);
  if (!domain.empty()) {
    text += '@';
    text += domain;
  }
  return text;
}

std::string Path::to_string() const {
  if (is_null) {
    return "<>";
  }
  return "<" + mailbox.to_string() + ">";
}

Result<PathParse> parse_reverse_path(std::string_view text, const AddressOptions& opts) {
  return parse_path(text, opts, /*forward=*/false);
}

Result<PathParse> parse_forward_path(std::string_view text, const AddressOptions& opts) {
  return parse_path(text, opts, /*forward=*/true);
}

Result<Mailbox> parse_mailbox(std::string_view text, const AddressOptions& opts) {
  Parser parser(text, opts);
  Mailbox mailbox;
  if (Problem problem = parser.mailbox(mailbox)) {
    return Error::permanent(EX_DATAERR, kRecipientStatus, std::string(*problem));
  }
  return mailbox;
}

bool is_valid_domain(std::string_view domain, const AddressOptions& opts) {
  return domain_span(domain, opts) == domain.size() && !domain_problem(domain);
}

bool is_dot_string(std::string_view local_part, const AddressOptions& opts) {
  return dot_string_span(local_part, opts) == local_part.size() && !dot_string_problem(local_part);
}

bool domain_equal(std::string_view a, std::string_view b) { return ascii_iequal(a, b); }

std::string lowercase_domain(std::string_view domain) {
  std::string lowered(domain);
  for (char& c : lowered) {
    c = ascii_lower(c);
  }
  return lowered;
}

}  // namespace mailwright
