// Line reader: splits network or file input into lines and reports how each one ended.
//
// Nothing is stripped silently. SMTP smuggling works by making two parsers disagree about where
// a line (and so the DATA terminator CRLF.CRLF) ends, so the caller must see bare LF and bare CR
// and decide by an explicit policy; this module only classifies. Lines end at LF: kCrlf when the
// LF follows a CR, kLf for a bare LF; a CR anywhere else is data and is flagged in has_bare_cr.
// NUL and other octets are data too.
//
// next_line() is a pure function; Line::text is a view into its input. LineBuffer owns a buffer
// for incremental use; the text it returns is valid until the next append() or consume(). Not
// thread-safe. Errors are not exceptions: an overlong line is reported as kTooLong.
//
// Limits: the caller passes max_length, counting the terminator as RFC 5321 4.5.3.1.4-6 do
// (limits::kCommandLine, limits::kTextLine). A line never costs more than max_length octets of
// look-ahead, and LineBuffer does O(total input) work however the input is chunked.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mailwright {

enum class LineEnding {
  kCrlf,        // text then CR LF
  kLf,          // text then a bare LF (no CR before it)
  kIncomplete,  // no LF yet and fewer than max_length octets: read more
  kTooLong,     // no LF within max_length octets: text holds the first max_length octets
  kEof,         // at_eof and no LF: text holds the rest of the input (possibly empty)
};

struct Line {
  std::string_view text;  // the line without its terminator; a view into the input
  LineEnding ending = LineEnding::kIncomplete;
  // Octets of input this line used, terminator included; 0 for kIncomplete, and for kEof when
  // nothing is left.
  std::size_t consumed = 0;
  // text contains a CR that is not followed by LF. For kCrlf, kLf and kEof that is any CR in
  // text. For kTooLong a CR in the last octet counts only when the octet after it is known and
  // is not LF. Always false for kIncomplete (text is empty; nothing has been decided).
  bool has_bare_cr = false;
};

// Reads one line from the front of input. max_length counts the terminator; 0 is treated as 1.
// A CR as the last octet of input is never decided early: without an LF in input the answer is
// kIncomplete (or kEof when at_eof), since the LF of a CRLF may be in the next read.
Line next_line(std::string_view input, std::size_t max_length, bool at_eof = false);

// An owning buffer for reading lines from a stream:
//   buffer.append(chunk);
//   for (Line line = buffer.next(max, eof); line.consumed > 0; line = buffer.next(max, eof)) {
//     handle(line);               // line.text is valid until the next append() or consume()
//     buffer.consume(line.consumed);
//   }
// next() gives the same answer as next_line() over the unconsumed octets, but remembers how far
// it has already looked for an LF, so a long line arriving in small pieces is scanned once.
class LineBuffer {
 public:
  void append(std::string_view data);
  Line next(std::size_t max_length, bool at_eof = false);
  // Drops n octets from the front (n is at most size(); larger values are clamped).
  void consume(std::size_t n);
  // Unconsumed octets.
  std::size_t size() const { return buffer_.size() - start_; }
  bool empty() const { return size() == 0; }

 private:
  std::string buffer_;
  std::size_t start_ = 0;    // first unconsumed octet; compacted away when past half the buffer
  std::size_t scanned_ = 0;  // unconsumed octets already known to contain no LF
};

}  // namespace mailwright
