#include "libmail/address_list.h"

#include <sysexits.h>

#include <cstddef>
#include <optional>
#include <utility>

#include "libmail/limits.h"

namespace mailwright {
namespace {

// RFC 3463 3.2: X.1.3 "bad destination mailbox address syntax".
constexpr std::string_view kStatus = "5.1.3";
// The parser does not recurse, but other readers of the same header may; a depth nobody writes
// by hand is refused rather than passed on.
constexpr int kCommentDepth = 64;
// RFC 2047 2: an encoded-word is at most 75 characters long.
constexpr std::size_t kEncodedWordMax = 75;
// Enough of the input to find the spot, too little to carry much of it into a log or a reply.
constexpr std::size_t kExcerpt = 20;

struct Failure {
  std::string reason;  // fixed text; at most one printable octet of the input
  std::size_t at;      // offset of the offending octet; the value's size for "at the end"
};
using Problem = std::optional<Failure>;

Problem fail(std::string reason, std::size_t at) { return Failure{std::move(reason), at}; }

bool is_wsp(unsigned char c) { return c == ' ' || c == '\t'; }

// RFC 5322 3.2.3 atext.
bool is_ascii_atext(unsigned char c) {
  constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != 0 && kSpecials.find(static_cast<char>(c)) != kSpecials.npos);
}

// RFC 6532 3.2 adds UTF8-non-ascii to atext, qtext, ctext and dtext. Whether the octets are
// well-formed UTF-8 is checked where they end up in an address (by parse_mailbox), not in a
// display name or comment that is dropped anyway.
bool is_atext(unsigned char c) { return is_ascii_atext(c) || c >= 0x80; }

// Visible characters: VCHAR and every 8-bit octet; neither WSP nor a control.
bool is_visible(unsigned char c) { return c > 0x20 && c != 0x7F; }

// RFC 2047 2 token (charset, encoding): CHAR except SPACE, CTLs and especials.
bool is_token_char(unsigned char c) {
  return is_ascii_atext(c) && c != '/' && c != '?' && c != '=';
}

// Every name and address is checked by parse_mailbox as an SMTPUTF8 forward path would be.
constexpr AddressOptions kUtf8{.allow_utf8 = true};

class ListParser {
 public:
  explicit ListParser(std::string_view text) : text_(text) {}

  // address-list, with obs-addr-list's empty elements; no address at all is an empty list.
  Problem list(std::vector<Mailbox>& out) {
    for (;;) {
      if (Problem problem = skip_cfws()) {
        return problem;
      }
      if (at_end()) {
        return std::nullopt;
      }
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (Problem problem = address(/*in_group=*/false, out)) {
        return problem;
      }
      if (Problem problem = skip_cfws()) {
        return problem;
      }
      if (at_end()) {
        return std::nullopt;
      }
      if (peek() != ',') {
        return after_address();
      }
      ++pos_;
    }
  }

 private:
  enum class Kind { kAtom, kQuoted, kEncodedWord, kDot };
  struct Item {
    Kind kind;
    std::size_t at;
    std::string text;  // decoded; empty for dots and encoded-words
  };

  bool at_end() const { return pos_ >= text_.size(); }
  unsigned char peek() const { return static_cast<unsigned char>(text_[pos_]); }
  std::string_view rest() const { return text_.substr(pos_); }

  // Octets of WSP or of a fold's line end at pos_, or 0. A line end counts only when WSP follows
  // (RFC 5322 2.2.3; a bare LF as well, since callers may have stored the header with LF); the
  // WSP itself is left for the next call, so a quoted string keeps it.
  std::size_t fws_length() const {
    if (at_end()) {
      return 0;
    }
    const unsigned char c = peek();
    if (is_wsp(c)) {
      return 1;
    }
    std::size_t eol = 0;
    if (c == '\n') {
      eol = 1;
    } else if (c == '\r' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '\n') {
      eol = 2;
    }
    if (eol > 0 && pos_ + eol < text_.size() &&
        is_wsp(static_cast<unsigned char>(text_[pos_ + eol]))) {
      return eol;
    }
    return 0;
  }

  // Why the octet at pos_ (or the end) cannot be here: one that is wrong anywhere says so,
  // anything else gets the reason the caller knows.
  Problem unexpected(std::string_view otherwise) const {
    if (!at_end()) {
      const unsigned char c = peek();
      if (c == 0) {
        return fail("NUL octet", pos_);
      }
      if (c == '\r' || c == '\n') {
        return fail("CR or LF that is not part of a folded line", pos_);
      }
      if (c < 0x20 || c == 0x7F) {
        return fail("control character", pos_);
      }
    }
    return fail(std::string(otherwise), pos_);
  }

  // The same where no bracket, parenthesis or quote is open, so a closing one is a stray.
  Problem stray(std::string_view otherwise) const {
    if (!at_end()) {
      switch (peek()) {
        case ')':
          return fail("')' without '('", pos_);
        case '>':
          return fail("'>' without '<'", pos_);
        case ']':
          return fail("']' without '['", pos_);
        case '\\':
          return fail("backslash outside a quoted string or comment", pos_);
        default:
          break;
      }
    }
    return unexpected(otherwise);
  }

  Problem after_address() const {
    if (!at_end()) {
      switch (peek()) {
        case '@':
          return fail("second '@' in an address", pos_);
        case ';':
          return fail("';' outside a group", pos_);
        case '<':
          return fail("'<' after an address (a display name holding '@' must be quoted)", pos_);
        default:
          break;
      }
    }
    return stray("expected ',' after an address");
  }

  Problem skip_cfws() {
    for (;;) {
      if (const std::size_t n = fws_length(); n > 0) {
        pos_ += n;
      } else if (!at_end() && peek() == '(') {
        if (Problem problem = comment()) {
          return problem;
        }
      } else {
        return std::nullopt;
      }
    }
  }

  // comment = "(" *([FWS] ccontent) [FWS] ")", ccontent = ctext / quoted-pair / comment.
  Problem comment() {
    const std::size_t open = pos_;
    int depth = 0;
    for (;;) {
      if (at_end()) {
        return fail("unbalanced '('", open);
      }
      const unsigned char c = peek();
      if (c == '(') {
        if (++depth > kCommentDepth) {
          return fail("comments nested more than 64 deep", pos_);
        }
        ++pos_;
      } else if (c == ')') {
        ++pos_;
        if (--depth == 0) {
          return std::nullopt;
        }
      } else if (c == '\\') {
        if (Problem problem = quoted_pair(nullptr)) {
          return problem;
        }
      } else if (const std::size_t n = fws_length(); n > 0) {
        pos_ += n;
      } else if (is_visible(c)) {
        ++pos_;
      } else {
        return unexpected("invalid character in a comment");
      }
    }
  }

  // quoted-pair = "\" (VCHAR / WSP), VCHAR taking in UTF8-non-ascii (RFC 6532 3.2). obs-qp's
  // controls are refused like every other control. At the end of the input the backslash is
  // consumed and the caller reports the quote or comment it left open.
  Problem quoted_pair(std::string* out) {
    ++pos_;
    if (at_end()) {
      return std::nullopt;
    }
    const unsigned char c = peek();
    if (c == '\r' || c == '\n') {
      return fail("backslash before a line end", pos_ - 1);
    }
    if (!is_visible(c) && !is_wsp(c)) {
      return unexpected("control character");
    }
    if (out != nullptr) {
      *out += static_cast<char>(c);
    }
    ++pos_;
    return std::nullopt;
  }

  // quoted-string, decoded into out: quoted-pairs give their character, a fold its WSP only.
  Problem quoted_string(std::string& out) {
    const std::size_t open = pos_;
    ++pos_;
    for (;;) {
      if (at_end()) {
        return fail("unbalanced '\"'", open);
      }
      const unsigned char c = peek();
      if (c == '"') {
        ++pos_;
        return std::nullopt;
      }
      if (c == '\\') {
        if (Problem problem = quoted_pair(&out)) {
          return problem;
        }
      } else if (const std::size_t n = fws_length(); n > 0) {
        if (is_wsp(c)) {
          out += static_cast<char>(c);
        }
        pos_ += n;
      } else if (is_visible(c)) {
        out += static_cast<char>(c);
        ++pos_;
      } else {
        return unexpected("invalid character in a quoted string");
      }
    }
  }

  std::string_view atom() {
    const std::size_t start = pos_;
    while (!at_end() && is_atext(peek())) {
      ++pos_;
    }
    return text_.substr(start, pos_ - start);
  }

  // Length of an RFC 2047 encoded-word at pos_ whose encoded-text holds an octet that is neither
  // atext nor '.', else 0. Such words break the rule that an encoded-word in a phrase uses only
  // atext, yet encoders write them ("=?utf-8?q?Smith,_J?="); every other encoded-word is already
  // atoms and dots to the grammar. Keeping it so also means no dot-atom is ever taken for an
  // encoded-word, so every address returned reads back the same.
  std::size_t encoded_word_length() const {
    const std::string_view s = rest().substr(0, kEncodedWordMax);
    if (!s.starts_with("=?")) {
      return 0;
    }
    std::size_t i = 2;
    for (int token = 0; token < 2; ++token) {  // charset, then encoding
      const std::size_t start = i;
      while (i < s.size() && is_token_char(static_cast<unsigned char>(s[i]))) {
        ++i;
      }
      if (i == start || i == s.size() || s[i] != '?') {
        return 0;
      }
      ++i;
    }
    const std::size_t start = i;
    bool beyond_atext = false;
    while (i < s.size()) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c <= 0x20 || c >= 0x7F || c == '?') {
        break;
      }
      beyond_atext = beyond_atext || (!is_ascii_atext(c) && c != '.');
      ++i;
    }
    if (i == start || i + 1 >= s.size() || s[i] != '?' || s[i + 1] != '=' || !beyond_atext) {
      return 0;
    }
    return i + 2;
  }

  // The words and dots up to whatever ends a display name or a local part, CFWS dropped. Which
  // of the two they were is decided by the octet that ends them, so nothing is read twice.
  Problem words(std::vector<Item>& items) {
    for (;;) {
      if (Problem problem = skip_cfws()) {
        return problem;
      }
      if (at_end()) {
        return std::nullopt;
      }
      const std::size_t at = pos_;
      const unsigned char c = peek();
      if (c == '"') {
        std::string text;
        if (Problem problem = quoted_string(text)) {
          return problem;
        }
        items.push_back({Kind::kQuoted, at, std::move(text)});
      } else if (c == '.') {
        ++pos_;
        items.push_back({Kind::kDot, at, {}});
      } else if (const std::size_t n = encoded_word_length(); n > 0) {
        pos_ += n;
        items.push_back({Kind::kEncodedWord, at, {}});
      } else if (is_atext(c)) {
        items.push_back({Kind::kAtom, at, std::string(atom())});
      } else {
        return std::nullopt;
      }
    }
  }

  // display-name = phrase = 1*word / obs-phrase, and obs-phrase = word *(word / "." / CFWS).
  static Problem display_name(const std::vector<Item>& items) {
    if (!items.empty() && items.front().kind == Kind::kDot) {
      return fail("display name starts with a dot", items.front().at);
    }
    return std::nullopt;
  }

  // local-part = dot-atom / quoted-string / obs-local-part, all of which obs-local-part =
  // word *("." word) takes in once CFWS is gone. The words are decoded and joined, so
  // "a . \"b\"" is the local part a.b. end is where the local part would have started.
  static Problem local_part(const std::vector<Item>& items, std::size_t end,
                            std::string_view two_words, Mailbox& out) {
    if (items.empty()) {
      return fail("missing local part before '@'", end);
    }
    bool want_word = true;
    for (const Item& item : items) {
      if (item.kind == Kind::kEncodedWord) {
        return fail("invalid character in a local part", item.at);
      }
      const bool is_dot = item.kind == Kind::kDot;
      if (want_word && is_dot) {
        return fail(&item == &items.front() ? "local part starts with a dot"
                                            : "two dots in a row in a local part",
                    item.at);
      }
      if (!want_word && !is_dot) {
        return fail(std::string(two_words), item.at);
      }
      if (is_dot) {
        out.local_part += '.';
      } else {
        out.local_part += item.text;
        out.local_part_was_quoted = out.local_part_was_quoted || item.kind == Kind::kQuoted;
      }
      want_word = !want_word;
    }
    if (want_word) {
      return fail("local part ends with a dot", items.back().at);
    }
    return std::nullopt;
  }

  // domain = dot-atom / domain-literal / obs-domain, with the CFWS around it; obs-domain's CFWS
  // around the dots is dropped.
  Problem domain(Mailbox& out) {
    if (Problem problem = skip_cfws()) {
      return problem;
    }
    if (!at_end() && peek() == '[') {
      return domain_literal(out);
    }
    if (at_end() || !is_atext(peek())) {
      return unexpected("missing domain after '@'");
    }
    for (;;) {
      out.domain += atom();
      if (Problem problem = skip_cfws()) {
        return problem;
      }
      if (at_end() || peek() != '.') {
        return std::nullopt;
      }
      ++pos_;
      out.domain += '.';
      if (Problem problem = skip_cfws()) {
        return problem;
      }
      if (at_end() || !is_atext(peek())) {
        return !at_end() && peek() == '.' ? fail("two dots in a row in a domain", pos_)
                                          : unexpected("domain ends with a dot");
      }
    }
  }

  // domain-literal = "[" *([FWS] dtext) [FWS] "]". FWS at either end is dropped; between dtext
  // it is refused, as is obs-dtext's quoted-pair: an SMTP address literal can hold neither, and
  // guessing what "[192.0.2. 1]" meant is not ours to do.
  Problem domain_literal(Mailbox& out) {
    const std::size_t open = pos_;
    out.domain = "[";
    ++pos_;
    bool space_after_text = false;
    for (;;) {
      if (at_end()) {
        return fail("unbalanced '['", open);
      }
      const unsigned char c = peek();
      if (c == ']') {
        ++pos_;
        out.domain += ']';
        out.domain_is_literal = true;
        return skip_cfws();
      }
      if (const std::size_t n = fws_length(); n > 0) {
        space_after_text = out.domain.size() > 1;
        pos_ += n;
      } else if (c == '[') {
        return fail("'[' inside a domain literal", pos_);
      } else if (c == '\\') {
        return fail("backslash in a domain literal", pos_);
      } else if (is_visible(c)) {
        if (space_after_text) {
          return fail("space inside a domain literal", pos_);
        }
        out.domain += static_cast<char>(c);
        ++pos_;
      } else {
        return unexpected("invalid character in a domain literal");
      }
    }
  }

  // obs-route = obs-domain-list ":", obs-domain-list = *(CFWS / ",") "@" domain
  // *("," [CFWS] ["@" domain]). RFC 5322 4.4 says to ignore it, and routing by it could make a
  // relay of us: each hop is read for syntax, then forgotten.
  Problem route() {
    const std::size_t start = pos_;
    for (;;) {
      if (Problem problem = skip_cfws()) {
        return problem;
      }
      if (at_end() || peek() != ',') {
        break;
      }
      ++pos_;
    }
    if (at_end() || peek() != '@') {
      return fail("malformed source route", start);
    }
    for (;;) {
      ++pos_;  // '@'
      Mailbox hop;
      if (Problem problem = domain(hop)) {
        return problem;
      }
      if (!at_end() && peek() == ':') {
        ++pos_;
        return std::nullopt;
      }
      if (at_end() || peek() != ',') {
        return unexpected("source route not ended with ':'");
      }
      while (!at_end() && peek() == ',') {
        ++pos_;
        if (Problem problem = skip_cfws()) {
          return problem;
        }
      }
      if (!at_end() && peek() == ':') {
        ++pos_;
        return std::nullopt;
      }
      if (at_end() || peek() != '@') {
        return unexpected("source route not ended with ':'");
      }
    }
  }

  // The parse_mailbox() check that every result passes (see address_list.h), then out.
  Problem accept(Mailbox mailbox, std::size_t at, std::vector<Mailbox>& out) {
    std::string canonical = mailbox.to_string();
    if (mailbox.domain.empty()) {
      // The caller completes a local name with its own domain. Any valid domain lets
      // parse_mailbox judge the local part alone: its 64 octets are far below the mailbox's 254.
      canonical += "@x";
    }
    const Result<Mailbox> checked = parse_mailbox(canonical, kUtf8);
    if (!checked) {
      return fail(checked.error().text(), at);
    }
    out.push_back(std::move(mailbox));
    return std::nullopt;
  }

  // address = mailbox / group, mailbox = name-addr / addr-spec, plus the local name.
  Problem address(bool in_group, std::vector<Mailbox>& out) {
    std::vector<Item> items;
    if (Problem problem = words(items)) {
      return problem;
    }
    const std::size_t at = items.empty() ? pos_ : items.front().at;
    if (at_end() || peek() == ',' || peek() == ';') {
      if (!at_end() && peek() == ';' && !in_group) {
        return fail("';' outside a group", pos_);
      }
      if (items.empty()) {
        return unexpected("missing address");
      }
      Mailbox mailbox;
      if (Problem problem = local_part(items, pos_, "display name without an address", mailbox)) {
        return problem;
      }
      return accept(std::move(mailbox), at, out);
    }
    switch (peek()) {
      case '<':
        if (Problem problem = display_name(items)) {
          return problem;
        }
        return angle_addr(out);
      case ':':
        if (in_group) {
          return fail("group inside a group", pos_);
        }
        if (items.empty()) {
          return fail("group without a name", pos_);
        }
        if (Problem problem = display_name(items)) {
          return problem;
        }
        return group(at, out);
      case '@': {
        Mailbox mailbox;
        if (Problem problem =
                local_part(items, pos_, "words of a local part not joined by dots", mailbox)) {
          return problem;
        }
        ++pos_;
        if (Problem problem = domain(mailbox)) {
          return problem;
        }
        return accept(std::move(mailbox), at, out);
      }
      default:
        if (const unsigned char c = peek(); c > 0x20 && c < 0x7F) {
          return stray(std::string("unexpected '") + static_cast<char>(c) + "'");
        }
        return stray("unexpected character");
    }
  }

  // angle-addr = [CFWS] "<" [obs-route] addr-spec ">" [CFWS], or "<" local name ">".
  Problem angle_addr(std::vector<Mailbox>& out) {
    const std::size_t open = pos_;
    ++pos_;
    if (Problem problem = skip_cfws()) {
      return problem;
    }
    bool routed = false;
    if (!at_end() && (peek() == '@' || peek() == ',')) {
      if (Problem problem = route()) {
        return problem;
      }
      routed = true;
    }
    std::vector<Item> items;
    if (Problem problem = words(items)) {
      return problem;
    }
    const std::size_t at = items.empty() ? pos_ : items.front().at;
    if (at_end()) {
      return fail("unbalanced '<'", open);
    }
    Mailbox mailbox;
    if (peek() == '@') {
      if (Problem problem =
              local_part(items, pos_, "words of a local part not joined by dots", mailbox)) {
        return problem;
      }
      ++pos_;
      if (Problem problem = domain(mailbox)) {
        return problem;
      }
      if (at_end()) {
        return fail("unbalanced '<'", open);
      }
      if (peek() != '>') {
        return peek() == '@' ? fail("second '@' in an address", pos_)
                             : stray("expected '>' after the address");
      }
    } else if (peek() == '>') {
      if (items.empty()) {
        return fail(routed ? "source route without an address" : "empty angle brackets", open);
      }
      if (routed) {
        return fail("source route before a local name", open);
      }
      if (Problem problem =
              local_part(items, pos_, "words of a local part not joined by dots", mailbox)) {
        return problem;
      }
    } else {
      return stray("expected '>' after the address");
    }
    ++pos_;  // '>'
    if (Problem problem = accept(std::move(mailbox), at, out)) {
      return problem;
    }
    return skip_cfws();
  }

  // group = display-name ":" [group-list] ";" [CFWS]; group-list = mailbox-list / CFWS /
  // obs-group-list, so members may be empty elements and there may be none. start is where the
  // display name began.
  Problem group(std::size_t start, std::vector<Mailbox>& out) {
    ++pos_;  // ':'
    for (;;) {
      if (Problem problem = skip_cfws()) {
        return problem;
      }
      if (at_end()) {
        return fail("group not closed with ';'", start);
      }
      if (peek() == ';') {
        ++pos_;
        return skip_cfws();
      }
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (Problem problem = address(/*in_group=*/true, out)) {
        return problem;
      }
      if (Problem problem = skip_cfws()) {
        return problem;
      }
      if (at_end()) {
        return fail("group not closed with ';'", start);
      }
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != ';') {
        return after_address();
      }
    }
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

// "reason at octet 12: \"excerpt\"", the excerpt printable ASCII only.
Error to_error(std::string_view text, const Failure& failure) {
  std::string message = failure.reason;
  if (failure.at >= text.size()) {
    message += " at the end of the field";
  } else {
    message += " at octet " + std::to_string(failure.at + 1) + ": \"";
    for (const char c : text.substr(failure.at, kExcerpt)) {
      message += c >= 0x20 && c < 0x7F ? c : '?';
    }
    if (text.size() - failure.at > kExcerpt) {
      message += "...";
    }
    message += '"';
  }
  return Error::permanent(EX_DATAERR, kStatus, std::move(message));
}

}  // namespace

Result<std::vector<Mailbox>> parse_address_list_mailboxes(std::string_view field_value) {
  if (field_value.size() > limits::kHeaderField) {
    return Error::permanent(
        EX_DATAERR, kStatus,
        "address list longer than " + std::to_string(limits::kHeaderField) + " octets");
  }
  if (field_value.ends_with("\r\n")) {
    field_value.remove_suffix(2);
  } else if (field_value.ends_with('\n')) {
    field_value.remove_suffix(1);
  }
  ListParser parser(field_value);
  std::vector<Mailbox> mailboxes;
  if (Problem problem = parser.list(mailboxes)) {
    return to_error(field_value, *problem);
  }
  return mailboxes;
}

Result<std::vector<std::string>> parse_address_list(std::string_view field_value) {
  Result<std::vector<Mailbox>> mailboxes = parse_address_list_mailboxes(field_value);
  if (!mailboxes) {
    return mailboxes.error();
  }
  std::vector<std::string> addresses;
  addresses.reserve(mailboxes->size());
  for (const Mailbox& mailbox : *mailboxes) {
    addresses.push_back(mailbox.to_string());
  }
  return addresses;
}

}  // namespace mailwright
