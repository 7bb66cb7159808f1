// A stored message in POP3 wire form (RFC 1939 3 and 7): what RETR and TOP send, and how
// many octets that is.
//
// The conversion, in this order:
//   1. mboxrd unquoting (mbox only): one '>' is removed from every line matching ">+From ",
//      undoing libmail's MboxrdQuoter exactly (lines are LF-terminated there).
//   2. Line ends become CRLF as libmail's CrlfEncoder does it: an LF not preceded by CR and a
//      CR not followed by LF both become CRLF, so no bare CR or LF reaches the wire.
//   3. A message that does not end in a line end gets a final CRLF.
//   4. Lines starting with '.' get another '.' (RFC 1939 3, byte-stuffing).
//   5. TOP: after the header, the empty line that ends it and N body lines, the rest is cut
//      (RFC 1939 7). A message without an empty line is all header and is sent whole.
// A message's size, as LIST and STAT report it, is the output of steps 1-3: the octets before
// dot-stuffing. WireSizeCounter computes it without producing the output; the mbox index
// computes the same number while it scans (mbox_index.h), and the tests check that the three
// agree.
//
// Everything is streaming: input may be split anywhere, memory is a few octets of state,
// work is linear. Not thread-safe; one object per message.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "libmail/rfc5322.h"

namespace mailwright::pop3 {

class WireEncoder {
 public:
  struct Options {
    bool mboxrd_unquote = false;             // step 1 (mbox messages)
    std::optional<std::uint64_t> top_lines;  // step 5 (TOP n); empty for RETR
  };
  explicit WireEncoder(Options options);

  // Appends the wire form of in to out. Returns false once a TOP cut has been reached: the
  // rest of the message need not be read, and further input is ignored.
  bool feed(std::string_view in, std::string& out);
  // Ends the message: flushes held octets and the final CRLF (steps 2 and 3).
  void finish(std::string& out);
  bool cut() const { return cut_; }

 private:
  void unquote(std::string_view in, std::string& out);
  void stuff(std::string_view in, std::string& out);

  Options options_;
  // Step 1: at an LF-line start, a first '>' is held until the line shows whether it is
  // ">+From " (the '>' is dropped) or not (it is sent). Later '>'s pass at once; the
  // matched part of "From " (at most 4 octets) is held with it.
  bool lf_line_start_ = true;
  bool held_gt_ = false;
  bool counting_gts_ = false;
  std::size_t from_matched_ = 0;
  std::string quoted_;  // scratch: output of step 1
  // Step 2.
  CrlfEncoder crlf_;
  std::string crlf_out_;  // scratch: output of step 2
  // Steps 3-5.
  bool wire_line_start_ = true;
  bool wrote_any_ = false;
  bool ends_with_crlf_ = false;
  bool in_header_ = true;
  bool separator_line_ = false;  // the current line is the empty line that ends the header
  std::uint64_t body_lines_ = 0;
  bool cut_ = false;
};

// The size of the output of steps 2 and 3 for the bytes fed (no mboxrd unquoting).
class WireSizeCounter {
 public:
  void feed(std::string_view in);
  std::uint64_t size() const;

 private:
  std::uint64_t bytes_ = 0;
  std::uint64_t line_end_octets_ = 0;  // octets the CRLF conversion adds
  bool last_cr_ = false;
  char last_ = '\n';
};

}  // namespace mailwright::pop3
