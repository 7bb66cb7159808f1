// The queue file: one file per accepted message, an envelope of text lines then the message.
//
// Format (version 1). The file is a sequence of lines, each `KEY SP value LF`, then the end
// marker line `END LF`, then the message exactly as received (CRLF line ends, dot-unstuffed).
// Every value is written escaped: octets 0x20-0x7E other than '%' stand for themselves, every
// other octet (CR, LF, NUL, all controls, DEL, 8-bit, and '%') is written `%XX` with two
// upper-case hex digits. So an envelope line never holds CR, NUL or a second LF, whatever the
// peer sent: the Exim (CVE-2020-28021) and OpenSMTPD (CVE-2020-8794) spool injections came from
// a newline inside a value. The encoding is canonical: the parser refuses `%` followed by
// anything but two upper-case hex digits, and refuses `%XX` for an octet that would be written
// as itself, so each envelope has exactly one spelling. The whole envelope is ASCII.
//
//   MWQUEUE 1                       first line, always; the format version
//   ID 0LJ8K2M3N4P5Q6R7S8T9         the queue id (queue_id.h); must equal the file name
//   TIME 1700000000                 arrival, seconds since the epoch
//   FROM user@example.org           reverse path without brackets; "FROM " (empty) for <>
//   BODY 8BITMIME                   optional: 7BIT, 8BITMIME or BINARYMIME (RFC 6152, 3030)
//   SMTPUTF8 1                      optional: present only when MAIL had SMTPUTF8 (RFC 6531)
//   RET HDRS                        optional: FULL or HDRS (RFC 3461 4.3)
//   ENVID abc+2B                    optional: RFC 3461 4.4, stored xtext-DECODED, then escaped
//   CLIENT 192.0.2.1                optional: client address
//   HELO mx.example.org             optional: the HELO/EHLO argument as sent
//   AUTHUSER joe                    optional: the authenticated user
//   TLSPROTO TLSv1.3                optional
//   TLSCIPHER TLS_AES_256_GCM_SHA384  optional
//   PROTO ESMTPS                    optional: the RFC 3848 protocol word
//   RCPT rcpt@example.net           starts a recipient; the keys below belong to the last RCPT
//   ORCPT rfc822;rcpt@example.net   optional: RFC 3461 4.2, stored as "addr-type;decoded addr"
//   NOTIFY SUCCESS,DELAY            optional: NEVER, or SUCCESS/FAILURE/DELAY in that order
//   MAILBOX 1                       optional: a local mailbox from an expansion; no aliases
//   STATE deferred                  optional (default pending): pending delivered failed deferred
//   ATTEMPTS 3                      optional (default 0)
//   NEXT 1700003600                 optional (default 0): next attempt, seconds since the epoch
//   ERROR 451 4.4.1 ...             optional: last error, one line
//   WARNED 1                        optional: a delay warning was sent for this recipient
//   END                             end of the envelope; the message starts after its LF
//
// Keys may come in any order, but version first; each singleton key at most once, each
// recipient key at most once per recipient. Numbers are decimal without sign or leading zeros.
// Unknown keys, a missing END, a CR anywhere in the envelope, an envelope longer than
// kMaxEnvelope and a missing ID/TIME/FROM/RCPT are errors that name the line and offset.
//
// Recipient state after the file is committed lives in a separate state file, not in the queue
// file (see spool.h): the queue file is written once and never modified, so no update can tear
// the message or the envelope. The state file uses the same line syntax:
//
//   MWSTATE 1
//   ID 0LJ8K2M3N4P5Q6R7S8T9
//   RCPT 0                          recipient index, in envelope order, every recipient listed
//   STATE delivered                 and then STATE/ATTEMPTS/NEXT/ERROR as above
//   ...
//   END
//
// It replaces the state fields of the envelope as a whole (apply_state_file).
//
// Errors: Error::permanent(EX_DATAERR, "5.3.0", "queue file line N (offset O): reason"); the
// reason never echoes file content. Functions here are pure: no I/O, no globals, thread-safe.
// Serializers refuse nothing: every octet of every string can be escaped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.h"

namespace mailwright::mta {

// An envelope is a few hundred octets per recipient; 4 MiB allows some 10000 recipients of the
// longest kind and caps what recovery reads per file.
inline constexpr std::size_t kMaxEnvelope = 4 * 1024 * 1024;
inline constexpr int kQueueFormatVersion = 1;

enum class BodyType { kUnspecified, k7Bit, k8BitMime, kBinaryMime };
enum class DsnRet { kUnspecified, kFull, kHeaders };
enum class DeliveryState { kPending, kDelivered, kFailed, kDeferred };

// RFC 3461 4.1 NOTIFY: a set. kNever stands alone; 0 means NOTIFY was not given.
enum NotifyFlags : unsigned {
  kNotifyNone = 0,
  kNotifySuccess = 1,
  kNotifyFailure = 2,
  kNotifyDelay = 4,
  kNotifyNever = 8,
};

struct Recipient {
  std::string address;  // forward path without brackets
  std::string orcpt;    // "" when ORCPT was not given; else "addr-type;xtext-decoded address"
  unsigned notify = kNotifyNone;
  // A local name that came out of an alias or .forward expansion: deliver to its mailbox,
  // never expand it again (else "root: \\root, admin" would expand root forever).
  bool mailbox_only = false;
  DeliveryState state = DeliveryState::kPending;
  std::uint32_t attempts = 0;
  std::int64_t next_attempt = 0;  // seconds since the epoch; 0 = as soon as possible
  std::string last_error;         // serialized escaped, so it stays one line whatever it holds
  bool warned = false;            // the sender has had a delay warning for this recipient

  friend bool operator==(const Recipient&, const Recipient&) = default;
};

struct Envelope {
  std::string queue_id;
  std::int64_t arrival_time = 0;  // seconds since the epoch, >= 0
  std::string sender;             // "" for the null reverse path <>
  BodyType body = BodyType::kUnspecified;
  bool smtputf8 = false;
  DsnRet ret = DsnRet::kUnspecified;
  std::string envid;  // xtext-decoded; "" when not given
  std::string client_address;
  std::string helo;
  std::string auth_user;  // "" when not authenticated
  std::string tls_protocol;
  std::string tls_cipher;
  std::string protocol;  // "ESMTP", "ESMTPS", "ESMTPSA", ...
  std::vector<Recipient> recipients;

  friend bool operator==(const Envelope&, const Envelope&) = default;
};

// The envelope as written to the start of a queue file, END line included.
std::string serialize_envelope(const Envelope& envelope);

// Parses the envelope at the start of head (the file, or at least its first kMaxEnvelope
// octets) and sets body_offset to the offset of the first octet of the message. head that ends
// before the END line (a truncated file) is an error.
Result<Envelope> parse_envelope(std::string_view head, std::size_t& body_offset);

// The state file for envelope: its queue id and the state fields of every recipient.
std::string serialize_state_file(const Envelope& envelope);
// Replaces the state fields of every recipient of envelope with those in text. The id must
// match and every recipient must be listed once, in order; on error envelope is unchanged.
Status apply_state_file(std::string_view text, Envelope& envelope);

// Escaping used for every value, exposed for tests and for log lines.
std::string escape_value(std::string_view raw);
Result<std::string> unescape_value(std::string_view escaped);

std::string_view delivery_state_name(DeliveryState state);

}  // namespace mailwright::mta
