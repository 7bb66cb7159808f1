// RFC 5322 message helpers shared by mta, mda and pop3d: header parsing, unfolding, field
// lookup, header formatting, the date-time format, and line-end conversion between the wire
// (CRLF) and storage (LF).
//
// parse_header_block() is a pure function over a buffer; the views in its result point into that
// buffer and are valid while it lives. It never throws on peer input: a header it cannot parse
// comes back with malformed=true and a reason, and input that simply ends inside the header
// comes back with complete=false, so the caller can read more and call again. Work is linear in
// the input: a field may not exceed limits::kHeaderField octets and the header may not have more
// than limits::kHeaderFields fields (Dovecot CVE-2024-23185 was a header of endless
// continuation lines).
//
// The converters are streaming objects, one per message; not thread-safe.
#pragma once

#include <cstddef>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace mailwright {

struct HeaderField {
  std::string_view name;       // field name as written, without WSP before the colon
  std::string_view raw_value;  // everything after the colon up to (not including) the final
                               // line end, folding kept
};

struct HeaderBlock {
  std::vector<HeaderField> fields;
  // Offset of the first body octet (after the blank line). When the header is not complete:
  // the input size, or for a malformed header the start of the offending line (a lenient caller
  // may treat the rest as body, as Postfix does).
  std::size_t body_offset = 0;
  bool complete = false;   // the blank line separating header and body was seen
  bool malformed = false;  // a line that is neither a field, a continuation nor the end (e.g.
                           // "no colon here"), a field too long, or too many fields
  std::string problem;     // what was malformed, for logs; never quotes the input
};

// Accepts LF or CRLF line ends (a CR before the LF is not part of the value). A first line
// starting with "From " (an mbox From_ line) is skipped. WSP between name and colon is accepted
// (RFC 5322 4.5.8 obs-optional). A line of WSP only is a continuation, not the end of the header.
// Parsing stops at the first problem, keeping the fields before it.
// When complete is false the last field may still grow; an unterminated last line is parsed as
// far as its octets decide (a name and colon make a field), never flagged as malformed merely for
// being unfinished.
HeaderBlock parse_header_block(std::string_view message);

// Drops each CRLF or LF that is followed by WSP (RFC 5322 2.2.3), turns any other CR or LF into a
// space so the result is one line, and trims leading and trailing WSP.
std::string unfold_value(std::string_view raw_value);

// ASCII case-insensitive, as field names compare (RFC 5322 1.2.2).
bool header_name_equal(std::string_view a, std::string_view b);
// The first field called name, or nullptr.
const HeaderField* find_header(const std::vector<HeaderField>& fields, std::string_view name);
// Every field called name, in order.
std::vector<const HeaderField*> find_headers(const std::vector<HeaderField>& fields,
                                             std::string_view name);
// Non-empty, and printable US-ASCII except ':' (ftext, RFC 5322 3.6.8).
bool is_valid_field_name(std::string_view name);

// "Name: value" plus eol ("\n" or "\r\n"), folded before WSP so no line exceeds 78 characters
// where possible and none exceeds 998 (RFC 5322 2.1.1). A run of more than 998 octets without
// WSP is broken with an inserted space, the one case where unfolding does not give the value
// back. CR and LF in name or value become spaces, so a value cannot inject a header line. An
// empty value gives "Name:". No line consists of WSP only.
std::string format_header(std::string_view name, std::string_view value,
                          std::string_view eol = "\r\n");

// RFC 5322 3.3 date-time in local time with a numeric zone: "Sun, 29 Nov 2026 10:48:00 +0100".
// Day and month names are English whatever the locale. Falls back to UTC when the local offset is
// not whole minutes (historic zones) or the time cannot be converted.
std::string format_rfc5322_date(std::time_t when);

// Streaming CRLF -> LF, for storing what came from the wire. Chunks may split anywhere: a CR at
// the end of a chunk is held until the next chunk or finish(). A bare CR is kept as it is.
class LfNormalizer {
 public:
  void feed(std::string_view in, std::string& out);
  void finish(std::string& out);  // flushes a held CR
  bool ends_with_newline() const { return last_ == '\n' && bytes_out_ > 0; }
  unsigned long long bytes_out() const { return bytes_out_; }

 private:
  void put(std::string_view s, std::string& out);

  bool held_cr_ = false;
  char last_ = '\0';
  unsigned long long bytes_out_ = 0;
};

// Streaming LF -> CRLF for the wire (POP3, SMTP client). An LF not preceded by CR becomes CRLF,
// and a CR not followed by LF becomes CRLF too, so no bare CR or LF ever reaches the wire.
// Chunks may split anywhere. Dot-stuffing is the protocol's job, not this one's.
class CrlfEncoder {
 public:
  void feed(std::string_view in, std::string& out);
  void finish(std::string& out);  // a held CR becomes CRLF

 private:
  bool held_cr_ = false;
};

}  // namespace mailwright
