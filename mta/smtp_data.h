// The message content of an SMTP transaction: DataReader for DATA (RFC 5321 4.1.1.4 and 4.5.2)
// and BdatReader for BDAT chunks (RFC 3030). Both are pure streaming state machines: raw bytes
// from the network in, message content out, no I/O, no logging, not thread-safe.
//
// Memory is bounded: feed() appends at most one octet of content per input octet plus one per
// bare LF (normalisation), and the reader itself keeps only a few flags. The caller drains `out`
// (to the spool file) after each feed() and never needs the whole message in memory.
//
// Output: the content exactly as it will be stored, with CRLF line ends (the spool stores CRLF
// as received), dot-unstuffed, without the final ".\r\n". The CRLF in front of the end marker
// belongs to the last line and is part of the content; an empty message ".\r\n" gives nothing.
//
// End of DATA (the SMTP smuggling attacks, CVE-2023-51764/51765/51766): only CR LF "." CR LF
// ends the message, where the CR LF in front of the dot is a real CR LF (or the start of the
// DATA content, right after the 354). "\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r\n.\r",
// "\r\r\n.\r\r\n", ".\r\r\n" and "\r\n\0.\r\n" never end it. A line starts, for dot-unstuffing
// and for the end marker alike, only after a real CR LF; under kNormalize a bare LF ends a line
// for the line length and becomes CR LF in the output, but the next line is not a "line start",
// so "\n.\r\n" is stored as the content line "." and the outbound client will dot-stuff it.
//
// Policies (DataOptions::bare_line_ends):
//  - kReject: the first bare LF decides that the message is refused; the reader still reads to
//    the real end marker (so no byte of the body is ever taken as a command), then reports
//    550 5.6.0 "bare LF in message". Nothing is partly accepted.
//  - kNormalize: a bare LF is stored as CR LF.
//  A bare CR (a CR not followed by LF) is refused under both policies (550 5.6.0): there is no
//  safe guess at what it meant, and "\r.\r" style markers are what smuggling attempts use.
//
// Other refusals, all decided while reading on to the end marker (the reader never truncates):
//  - a line longer than max_line_length octets including its CRLF, not counting the dot added
//    for transparency (RFC 5321 4.5.3.1.6): 500 5.5.2 "line too long" (RFC 5321 4.5.3.1.10);
//  - more than max_message_size octets of content: 552 5.3.4 "message too big" (RFC 1870).
// The first refusal wins. Once a refusal is decided no more content is appended to `out`: the
// caller throws away what it got and replies with outcome().reject when done.
//
// BdatReader takes exactly the announced number of octets per chunk with no dot-unstuffing and
// no end marker (RFC 3030 2), and applies the same bare CR/LF policy, line length and size limits
// across the chunks of one message (a CR ending one chunk and an LF starting the next are one
// CRLF), unless DataOptions::binary (BODY=BINARYMIME) turns the line checks off.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "libmail/limits.h"
#include "libmail/result.h"

namespace mailwright::smtp {

enum class BareLineEndPolicy { kReject, kNormalize };

struct DataOptions {
  BareLineEndPolicy bare_line_ends = BareLineEndPolicy::kReject;
  // Longest line, counting its CRLF; 0 means no limit (BDAT with BODY=BINARYMIME).
  std::size_t max_line_length = limits::kTextLine;
  // Most octets of content (after unstuffing and normalisation); 0 means no limit.
  std::uint64_t max_message_size = 0;
  // BDAT with BODY=BINARYMIME only: octets are passed as they are and bare CR or LF are no
  // error (RFC 3030 3). Ignored by DataReader.
  bool binary = false;
};

struct DataReject {
  int reply_code;  // 550, 500 or 552
  Error error;     // permanent; status and text for the reply
};

struct DataOutcome {
  std::uint64_t octets = 0;  // content octets (counted even after a refusal)
  bool has_8bit = false;     // an octet >= 0x80 was seen (for BODY=7BIT checks)
  bool has_nul = false;      // a NUL octet was seen
  std::optional<DataReject> reject;
};

struct Feed {
  std::size_t consumed = 0;  // octets of input used; the rest belongs to the next command
  bool done = false;         // the end marker (DATA) or the end of the chunk (BDAT) was read
};

class DataReader {
 public:
  explicit DataReader(DataOptions options) : options_(options) {}

  // Reads from bytes, appending content to out, until the end marker or the end of bytes. After
  // done, further calls consume nothing and return done again: a reader ends at most once.
  Feed feed(std::string_view bytes, std::string& out);
  bool done() const { return state_ == State::kDone; }
  // Meaningful once done(): size, 8-bit, and whether the message must be refused.
  const DataOutcome& outcome() const { return outcome_; }

 private:
  enum class State { kLineStart, kDot, kDotCr, kBody, kCr, kDone };

  DataOptions options_;
  State state_ = State::kLineStart;
  std::size_t line_length_ = 0;  // content octets of the current line so far
  DataOutcome outcome_;
};

class BdatReader {
 public:
  explicit BdatReader(DataOptions options) : options_(options) {}

  // Starts the next chunk, from "BDAT size [LAST]".
  void begin_chunk(std::uint64_t size, bool last);
  // Reads up to the end of the current chunk; done when all of its octets were read.
  Feed feed(std::string_view bytes, std::string& out);
  std::uint64_t remaining() const { return remaining_; }
  // The LAST chunk has been read completely: outcome() is final.
  bool message_done() const { return message_done_; }
  const DataOutcome& outcome() const { return outcome_; }

 private:
  DataOptions options_;
  bool in_chunk_ = false;
  std::uint64_t remaining_ = 0;
  bool last_ = false;
  bool message_done_ = false;
  bool pending_cr_ = false;
  std::size_t line_length_ = 0;
  DataOutcome outcome_;
};

}  // namespace mailwright::smtp
