// RFC 5321 envelope addresses: the Path of MAIL FROM and RCPT TO, and the bare Mailbox.
//
// The parsers follow the grammar of RFC 5321 4.1.2 and 4.1.3 (with RFC 6531 3.3 when SMTPUTF8 is
// in use) and nothing looser, because a relay decides where mail goes from what they return:
// `<"u@other"@local>` is the quoted local part `u@other` at `local`, `<user%other@local>` is the
// local part `user%other`, and `<@a,@b:user@c>` is `user@c` with the source route dropped
// (RFC 5321 4.1.2 and appendix C: MUST accept, SHOULD ignore). Nothing here makes an address safe
// to hand to a shell; `\`id\`@x` is valid syntax. No shell ever sees an address.
//
// Parsers are pure functions: no I/O, no globals, no logging, safe from any thread. Results own
// their strings. Every rejection is Error::permanent(EX_DATAERR, status, reason), with status
// "5.1.7" for a bad reverse-path and "5.1.3" for a bad forward-path or mailbox (RFC 3463). The
// reason is a fixed short text ("local part longer than 64 octets") and never echoes the input,
// so it can go into a reply or a log line as it is.
//
// Limits (limits.h, RFC 5321 4.5.3.1): local part 64 octets as written (quotes and backslashes
// count), domain 255 octets (an address literal counts its brackets), path 256 octets from '<' to
// '>' inclusive (a source route counts), a bare mailbox 254 (so it always fits in a path). A DNS
// label of ASCII is at most 63 octets (RFC 1035 2.3.4).
//
// Rejected anywhere: NUL and every other control character (C0, DEL, and with SMTPUTF8 also the
// C1 range U+0080-U+009F), CR and LF, octets >= 0x80 unless allow_utf8 (and then only well-formed
// UTF-8, RFC 3629), and a space outside a quoted local part. An IPv4 literal with a leading zero
// ([010.0.0.1]) is refused although the grammar allows it, because inet_aton() would read it as
// octal: two parts of a system must never disagree on which host a literal names.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "libmail/result.h"

namespace mailwright {

struct Mailbox {
  // As written, with the quotes of a quoted local part removed and its quoted-pairs decoded. It
  // may hold '@', '"', '\\' or a space when it was quoted; never split it again.
  std::string local_part;
  // As written (case preserved). An address literal keeps its brackets: "[192.0.2.1]".
  std::string domain;
  bool domain_is_literal = false;
  bool local_part_was_quoted = false;

  // Canonical RFC 5321 form: the local part is quoted (escaping only '"' and '\\') only when it
  // is not a Dot-string; non-ASCII atext counts as atext, since such a local part needs SMTPUTF8
  // either way. A mailbox with an empty domain (the postmaster of a Path) gives the local part
  // alone. Never longer than the text it was parsed from.
  std::string to_string() const;

  friend bool operator==(const Mailbox&, const Mailbox&) = default;
};

struct Path {
  bool is_null = false;           // "<>"; mailbox is empty
  bool is_postmaster = false;     // "<postmaster>" in any case, forward path only; domain empty
  bool had_source_route = false;  // "<@a,@b:user@c>": the route was checked, then dropped
  Mailbox mailbox;

  // "<>", "<Postmaster>" (as written), or "<" + mailbox.to_string() + ">" without any route.
  std::string to_string() const;

  friend bool operator==(const Path&, const Path&) = default;
};

// SMTPUTF8 (RFC 6531 3.3): UTF-8 allowed in atext, in a quoted local part and in domain labels.
// U-labels are checked for well-formed UTF-8 and hyphen placement only, not against IDNA2008.
struct AddressOptions {
  bool allow_utf8 = false;
};

struct PathParse {
  Path path;
  std::size_t length = 0;  // octets consumed, including the closing '>'
};

// Parse a path at the start of text (the text right after "MAIL FROM:" or "RCPT TO:", so no
// leading space), stopping after its '>'. Whatever follows the '>' is not looked at: the caller
// parses the ESMTP parameters and rejects junk there.
// Reverse-path: allows "<>"; status "5.1.7".
Result<PathParse> parse_reverse_path(std::string_view text, const AddressOptions& opts = {});
// Forward-path: allows "<postmaster>" without a domain, refuses "<>"; status "5.1.3".
Result<PathParse> parse_forward_path(std::string_view text, const AddressOptions& opts = {});

// A bare mailbox "local@domain" filling the whole of text (no brackets, no route, no postmaster
// special case); status "5.1.3".
Result<Mailbox> parse_mailbox(std::string_view text, const AddressOptions& opts = {});

// RFC 5321 Domain: sub-domain *("." sub-domain), at most 255 octets, labels of ASCII at most 63.
// Address literals are not domains here.
bool is_valid_domain(std::string_view domain, const AddressOptions& opts = {});

// RFC 5321 Dot-string: Atom *("." Atom) with RFC 5322 atext (plus UTF-8 with allow_utf8). A
// local part that is a Dot-string needs no quotes.
bool is_dot_string(std::string_view local_part, const AddressOptions& opts = {});

// ASCII case-insensitive, octet for octet otherwise: "Example.ORG" equals "example.org".
// Address literals compare as text, so "[IPv6:0::1]" differs from "[IPv6::1]".
bool domain_equal(std::string_view a, std::string_view b);
// ASCII letters lowered; every other octet (UTF-8 included) left as it is.
std::string lowercase_domain(std::string_view domain);

}  // namespace mailwright
