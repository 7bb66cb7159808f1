// Delivery status notifications: the bounces, delay warnings and success reports the mta sends
// back to a message's envelope sender (RFC 3461 the SMTP extension, RFC 3464 the report format,
// RFC 6522 multipart/report, RFC 6533 the SMTPUTF8 variants, RFC 3834 Auto-Submitted).
//
// make_dsn() builds the whole message, CRLF line ends, ready to be queued with MAIL FROM:<> and
// RCPT TO:<the original sender>:
//
//   From: Mail Delivery System <MAILER-DAEMON@host>      Subject: one per kind
//   To: <sender>   Date   Message-ID   Auto-Submitted: auto-replied   MIME-Version: 1.0
//   Content-Type: multipart/report; report-type=delivery-status; boundary="..."
//     1. text/plain               what happened, per recipient, for a human
//     2. message/delivery-status  Reporting-MTA, Original-Envelope-Id, Arrival-Date; then per
//                                 recipient: Original-Recipient, Final-Recipient, Action, Status,
//                                 Remote-MTA, Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until
//     3. message/rfc822           the original message, or text/rfc822-headers: its header only
//
// Returned content. RFC 3461 4.3: a failure report returns the whole message for RET=FULL and
// when RET was not given, the header only for RET=HDRS; a report without a failure (delay,
// success) returns the header only. A message larger than max_returned is returned as its
// header whatever RET says (as Postfix's bounce_size_limit does): a bounce that exceeds the
// sender's SIZE limit would itself bounce, and the header is what identifies the message. The
// whole message is returned only when it is valid 8bit MIME content (RFC 2045 2.8: no NUL, CR
// and LF only as CRLF, lines of at most 998 octets) -- a BINARYMIME body has no 8bit form -- and
// otherwise its header; a header that breaks those rules is repaired (bare CR or LF become CRLF,
// NUL is dropped, overlong lines are folded), since it is returned for a human to read.
//
// 8-bit content. Returned content with octets >= 0x80 is declared Content-Transfer-Encoding:
// 8bit (on its part and on the multipart), and Dsn::body says k8BitMime: the DSN must then be
// relayed with BODY=8BITMIME (RFC 6152), and a next hop without 8BITMIME needs the usual
// downgrade or a bounce of the bounce. Everything the DSN says of its own (headers, text part,
// delivery-status fields) is 7-bit ASCII unless DsnInput::smtputf8.
//
// SMTPUTF8 (RFC 6533): with smtputf8 set (the original was sent with SMTPUTF8) the report type
// is global-delivery-status, the parts are message/global-delivery-status and message/global (or
// message/global-headers), and well-formed UTF-8 is kept in addresses, diagnostics and the text
// part (charset=utf-8). Without it every value is ASCII: a non-ASCII address is written as
// "utf-8;" with its \x{HEX} xtext form (RFC 6533 3), other non-ASCII octets become '?'.
//
// Hostile values. Addresses, host names, the ENVID and above all the diagnostic (text from a
// remote server) are sanitized before they go anywhere: CR, LF and TAB become spaces, runs of
// white space shrink to one, other control characters (NUL, C0, DEL, C1) and malformed UTF-8
// become '?', and the result is capped (kMaxDiagnostic, kMaxValue) with "..." at the cut. Header
// lines are folded by format_header(): no line we generate exceeds 998 octets. The boundary is
// derived from boundary_seed and a SHA-256 of the parts, and checked against all of them (and
// regenerated with a counter if it occurs, which needs a SHA-256 collision in practice): content
// cannot be crafted to contain a boundary that depends on its own digest.
//
// Who gets a DSN. should_notify() applies RFC 3461's NOTIFY rules per recipient;
// is_bounce_allowed() says no for the null sender: a DSN is sent with MAIL FROM:<>, so a DSN
// about a DSN is never generated and bounce loops cannot start (RFC 5321 4.5.5).
// Double bounces are the caller's business: when a message with the null sender (a DSN) fails,
// the caller may report it to the local postmaster instead (make_dsn with to = "postmaster",
// still sent with MAIL FROM:<>); when that fails too, it is logged and dropped.
//
// Everything here is pure: no I/O, no clock (times come in as arguments), no globals, no
// locale. Dates are written with format_rfc5322_date(), i.e. in the local time zone (TZ).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.h"
#include "mta/queue_file.h"

namespace mailwright::mta {

// Longest diagnostic text kept (a multi-line SMTP reply joined into one line), and longest
// address, host name or ENVID; longer ones are cut and end in "...".
inline constexpr std::size_t kMaxDiagnostic = 2048;
inline constexpr std::size_t kMaxValue = 512;
// Default for DsnInput::max_returned: 1 MiB of original message.
inline constexpr std::size_t kDefaultMaxReturned = std::size_t{1} << 20;

enum class DsnKind { kFailure, kDelay, kSuccess };
// RFC 3464 2.3.3.
enum class DsnAction { kFailed, kDelayed, kDelivered, kRelayed, kExpanded };

struct DsnRecipient {
  std::string address;   // the final recipient, as in the envelope (no angle brackets)
  std::string original;  // Recipient::orcpt: "addr-type;address" (xtext-decoded), or ""
  DsnAction action = DsnAction::kFailed;
  // RFC 3463 "5.1.1". Must fit the action: failed 4.x.x or 5.x.x (a 4.x.x failure is one that
  // expired in the queue), delayed 4.x.x, the others 2.x.x; otherwise, or if malformed, it is
  // replaced by the action's generic code (5.0.0, 4.0.0, 2.0.0). status_from_reply() helps.
  std::string status;
  std::string remote_mta;  // host name of the server that answered, or ""
  // "smtp; 550 5.1.1 User unknown", or "". Without a "type;" prefix, "smtp; " is put in front.
  std::string diagnostic;
  std::int64_t last_attempt = 0;      // seconds since the epoch; 0: no Last-Attempt-Date
  std::int64_t will_retry_until = 0;  // delayed only; 0: no Will-Retry-Until
};

struct DsnInput {
  DsnKind kind = DsnKind::kFailure;
  std::string reporting_mta;  // our host name: Reporting-MTA, the From domain, the Message-ID
  std::string from;           // "" for "MAILER-DAEMON@" + reporting_mta
  std::string to;             // the original envelope sender: the DSN's recipient; never ""
  std::string envid;          // the original ENVID (xtext-decoded), or ""
  std::int64_t arrival = 0;   // when the original arrived; 0: no Arrival-Date
  std::int64_t now = 0;       // the Date of the DSN
  std::vector<DsnRecipient> recipients;  // at least one
  DsnRet ret = DsnRet::kUnspecified;
  std::string_view original;  // the original message, CRLF line ends; may be large
  std::size_t max_returned = kDefaultMaxReturned;
  bool smtputf8 = false;  // the original was sent with SMTPUTF8: RFC 6533 global types
  // Distinct per DSN (say the original's queue id, the kind and now): the Message-ID's left
  // part is made of it, and the boundary is derived from it. Same input, same output.
  std::string unique_id;
};

struct Dsn {
  std::string message;  // the complete RFC 5322 message, CRLF line ends
  // k7Bit, or k8BitMime when the message holds octets >= 0x80: the BODY= to queue it with.
  BodyType body = BodyType::k7Bit;
  bool smtputf8 = false;      // its header holds UTF-8 (the To address): needs SMTPUTF8 to relay
  bool full_content = false;  // the whole original was returned, not only its header
};

// The notification for in. Refuses (permanent, EX_SOFTWARE) a null or empty `to` -- never
// bounce a bounce -- and an empty recipient list; every other value is sanitized, not refused.
Result<Dsn> make_dsn(const DsnInput& in);

// RFC 3461 4.1: whether a recipient with these NOTIFY flags (queue_file.h NotifyFlags) gets a
// DSN of this kind. No NOTIFY: failures and delays. NEVER: nothing. Otherwise what was asked
// for; SUCCESS is never the default.
bool should_notify(unsigned notify_flags, DsnKind kind);

// Whether a DSN may be sent to this envelope sender: not to the null reverse path ("" or "<>").
bool is_bounce_allowed(std::string_view sender);

// The RFC 3463 status code in an SMTP reply ("550 5.1.1 User unknown", "550-5.1.1 ...") if it
// carries one that fits action (see DsnRecipient::status), else the generic code for the action.
std::string status_from_reply(std::string_view reply, DsnAction action);

// "failed", "delayed", "delivered", "relayed", "expanded" (RFC 3464 2.3.3).
std::string_view dsn_action_name(DsnAction action);

}  // namespace mailwright::mta
