// RFC 5322 address lists: the values of To:, Cc: and Bcc:, as `sendmail -t` takes its recipients
// from them.
//
// The parser reads RFC 5322 3.4 in full, with RFC 6532 UTF-8 and the obsolete forms of 4.4 that
// real mail still has: mailboxes (addr-spec, or a display name and an angle-addr), groups
// ("Undisclosed recipients:;", whose members are returned and which may be empty), comments with
// nesting and quoted-pairs wherever CFWS may be, quoted strings, folding (CRLF or LF before WSP),
// source routes (`<@a,@b:u@d>` is u@d), empty list elements (`a@b,,c@d`), CFWS around the dots
// of a local part or domain, and domain literals. Display names and comments are read only to be
// skipped: RFC 2047 encoded-words in them are not decoded, and one that holds a ',' or other
// special (as some encoders leave them) still counts as a single word. 8-bit octets in a display
// name or comment are skipped with it whatever their charset, so a legacy Latin-1 name does not
// cost the message; in an address they must be well-formed UTF-8.
//
// One extension, as sendmail has it: a local part without "@domain" ("joe", "Joe <joe>", a
// member of a group) is a local name, returned without a domain for the caller to complete.
//
// What comes back is what an SMTP forward path needs. Each address has passed parse_mailbox()
// of address.h (with SMTPUTF8 allowed) in its canonical form, so it meets RFC 5321 as well as
// RFC 5322: a domain of RFC 5322 atext such as "a_b" or a literal that is no IP address is
// refused here, not at the first relay. The local part is decoded (quotes and quoted-pairs gone,
// "a . \"b\"" is a.b) and Mailbox::to_string() quotes it again only if it must. An address with
// non-ASCII octets needs SMTPUTF8 on the way out (AddressOptions{.allow_utf8 = true}).
//
// Anything malformed is refused as a whole, as Error::permanent(EX_DATAERR, "5.1.3", text): a
// header that cannot be read must not lose some of its recipients silently. The text names the
// problem and where it is, quoting at most a short excerpt with every octet that is not
// printable ASCII replaced by '?'. Refused anywhere: NUL, CR or LF that is not part of a fold,
// other control characters (HTAB is WSP), unbalanced quotes, comments, angle brackets and groups,
// a group inside a group, and an '@' without a domain.
//
// Work is linear in the input. Values longer than limits::kHeaderField octets are refused, and
// comments may nest at most 64 deep. A value with no address at all (empty, only CFWS, only
// commas) gives an empty list: "Bcc:" may be empty (RFC 5322 3.6.3), and whether no recipients
// at all is an error is the caller's call. Duplicates are kept, in order. A final line end is
// ignored, for callers that pass the line as they read it.
//
// Pure functions: no I/O, no globals, safe from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "libmail/address.h"
#include "libmail/result.h"

namespace mailwright {

// The mailboxes the field value names, in order; a local name has an empty domain. Tells a local
// name from an address reliably: "\"a@b\"" is a local name even though its canonical text holds
// an '@'.
Result<std::vector<Mailbox>> parse_address_list_mailboxes(std::string_view field_value);

// The same, each as Mailbox::to_string(): "local-part@domain", or the local part alone for a
// local name. "<" + address + ">" is a valid argument of parse_forward_path() with SMTPUTF8, once
// a local name has been given a domain; a caller must not look for an '@' to decide whether that
// is needed (see above), though getting it wrong can only make parse_forward_path() refuse.
Result<std::vector<std::string>> parse_address_list(std::string_view field_value);

}  // namespace mailwright
