// Local submission, the `sendmail` side: what a user's message piped to `mta -bm` (or
// `sendmail`) becomes before it is dropped into the spool's maildrop/ (maildrop.h).
//
// Everything here is pure: the caller reads standard input and the passwd entry, decides
// whether the user is trusted, and writes the result. The pickup never trusts what this code
// produced (the user could have written the file without it); this is about turning what
// scripts, cron and mail clients hand to sendmail into a message that is correct on the wire:
//  - lines may end in LF or CRLF and become CRLF; without -i a line of a single dot ends the
//    message (sendmail's rule, which cron and old scripts rely on); a leading mbox "From " line
//    is dropped;
//  - a NUL or a CR that does not end a line is refused (EX_DATAERR): a message with them cannot
//    be sent over SMTP unchanged, and a bare CR is the raw material of SMTP smuggling;
//  - a line longer than 998 octets is broken into several (RFC 5321 4.5.3.1.6), in the header
//    with a folding space, as other MTAs do, rather than bouncing a cron job's long output line;
//  - a header section that ends in a line that is no field ends there: the rest is body, with
//    the empty line put in;
//  - From:, Date: and Message-ID: are added when missing (RFC 5322 3.6 requires From and Date;
//    RFC 6409 8.3 lets a submission server add the Message-ID);
//  - Bcc: and Resent-Bcc: fields are always removed: their whole point is that recipients do
//    not see them;
//  - with -t the recipients are also taken from To/Cc/Bcc, or from Resent-To/-Cc/-Bcc when any
//    of those is present (RFC 5322 3.6.6: the resent fields name who gets the resent copy).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.h"

namespace mailwright::mta {

struct SubmitRequest {
  bool dot_ends = true;             // without -i/-oi: a line "." ends the message
  bool extract_recipients = false;  // -t
  std::string from_address;         // for an added From: (the envelope sender, or the user's)
  std::string full_name;            // -F, or the passwd entry's name; "" for none
  std::string hostname;             // for Message-ID, and for -t names without a domain
  std::string message_id_local;     // unique on this host (the queue id)
  std::int64_t now = 0;             // for Date:, seconds since the epoch
  std::size_t max_size = 0;         // the message after these changes; 0: no limit
};

struct PreparedMessage {
  std::string text;                             // CRLF lines, header and body
  std::vector<std::string> header_recipients;   // with -t; canonical, completed with hostname
  bool eight_bit = false;                       // any octet >= 0x80
};

// Errors: Error::permanent(EX_DATAERR, "5.6.0", why) for NUL, bare CR, a message too large, or
// (with -t) an address field that does not parse; the text names the line, or for an address
// the place and a short excerpt (the user's own input, told back to the user).
Result<PreparedMessage> prepare_submission(std::string_view input, const SubmitRequest& request);

// The addresses of one sendmail argument or -t field: an RFC 5322 address list ("a@b, Joe
// <c@d>", a bare "user"). A name without a domain gets "@" + default_domain. Each address is
// returned in canonical form (RFC 5321, Mailbox::to_string); errors are EX_DATAERR "5.1.3".
Result<std::vector<std::string>> submission_addresses(std::string_view text,
                                                      std::string_view default_domain);

// "Full Name <addr>" for a From: field: the name as a quoted string when it is not all atoms,
// control characters dropped; just the address when the name is empty.
std::string format_from_value(std::string_view full_name, std::string_view address);

}  // namespace mailwright::mta
