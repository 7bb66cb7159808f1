#include "pop3d/message_wire.h"

#include <algorithm>
#include <cstring>

namespace mailwright::pop3 {
namespace {

constexpr std::string_view kFrom = "From ";

}  // namespace

WireEncoder::WireEncoder(Options options) : options_(options) {}

void WireEncoder::unquote(std::string_view in, std::string& out) {
  std::size_t pos = 0;
  while (pos < in.size()) {
    if (lf_line_start_) {
      const char c = in[pos];
      if (!held_gt_) {
        if (c == '>') {
          held_gt_ = true;
          counting_gts_ = true;
          ++pos;
          continue;
        }
        lf_line_start_ = false;  // not quoted; c is copied below
        continue;
      }
      if (counting_gts_ && c == '>') {
        // All '>' are alike: sending the second one now and deciding about the first later
        // gives the same octets, and keeps the held state bounded for a line of a million '>'.
        out.push_back('>');
        ++pos;
        continue;
      }
      counting_gts_ = false;
      if (c == kFrom[from_matched_]) {
        ++pos;
        if (++from_matched_ == kFrom.size()) {
          out.append(kFrom);  // ">+From ": the held '>' was the quote
          held_gt_ = false;
          from_matched_ = 0;
          lf_line_start_ = false;
        }
        continue;
      }
      out.push_back('>');
      out.append(kFrom.substr(0, from_matched_));
      held_gt_ = false;
      from_matched_ = 0;
      lf_line_start_ = false;
      continue;  // c is copied below
    }
    const void* nl = std::memchr(in.data() + pos, '\n', in.size() - pos);
    const std::size_t end =
        nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - in.data()) + 1 : in.size();
    out.append(in.substr(pos, end - pos));
    pos = end;
    if (nl)
      lf_line_start_ = true;
  }
}

// Input is CrlfEncoder output: every LF comes right after a CR, in the same piece.
void WireEncoder::stuff(std::string_view in, std::string& out) {
  std::size_t pos = 0;
  while (pos < in.size() && !cut_) {
    if (wire_line_start_) {
      wire_line_start_ = false;
      if (in[pos] == '.')
        out.push_back('.');
      separator_line_ = in_header_ && in[pos] == '\r';
    }
    const void* nl = std::memchr(in.data() + pos, '\n', in.size() - pos);
    const std::size_t end =
        nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - in.data()) + 1 : in.size();
    out.append(in.substr(pos, end - pos));
    wrote_any_ = true;
    ends_with_crlf_ = nl != nullptr;
    pos = end;
    if (!nl)
      break;
    wire_line_start_ = true;
    if (in_header_) {
      if (separator_line_) {
        in_header_ = false;
        if (options_.top_lines && *options_.top_lines == 0)
          cut_ = true;
      }
    } else if (options_.top_lines && ++body_lines_ >= *options_.top_lines) {
      cut_ = true;
    }
  }
}

bool WireEncoder::feed(std::string_view in, std::string& out) {
  if (cut_)
    return false;
  if (options_.mboxrd_unquote) {
    quoted_.clear();
    unquote(in, quoted_);
    in = quoted_;
  }
  crlf_out_.clear();
  crlf_.feed(in, crlf_out_);
  stuff(crlf_out_, out);
  return !cut_;
}

void WireEncoder::finish(std::string& out) {
  if (cut_)
    return;
  crlf_out_.clear();
  if (held_gt_) {
    // The message ended inside a possible ">+From ": it was not one.
    // ">From" cut to 1 + from_matched_ octets (a substr of a literal: g++ 12's -Wrestrict
    // misfires on assign-then-append here).
    quoted_.assign(std::string_view(">From").substr(0, 1 + from_matched_));
    held_gt_ = false;
    from_matched_ = 0;
    crlf_.feed(quoted_, crlf_out_);
  }
  crlf_.finish(crlf_out_);
  stuff(crlf_out_, out);
  if (!cut_ && wrote_any_ && !ends_with_crlf_)
    out.append("\r\n");
  cut_ = true;  // nothing more, whatever the caller feeds
}

void WireSizeCounter::feed(std::string_view in) {
  if (in.empty())
    return;
  bytes_ += in.size();
  const auto lfs = static_cast<std::uint64_t>(std::count(in.begin(), in.end(), '\n'));
  std::uint64_t crs = 0;
  std::uint64_t pairs = last_cr_ && in.front() == '\n' ? 1 : 0;
  if (std::memchr(in.data(), '\r', in.size()) != nullptr) {
    for (std::size_t i = 0; i < in.size(); ++i) {
      if (in[i] != '\r')
        continue;
      ++crs;
      if (i + 1 < in.size() && in[i + 1] == '\n')
        ++pairs;
    }
  }
  // Each bare LF and each bare CR gains one octet; a CRLF pair stays two.
  line_end_octets_ = line_end_octets_ + lfs + crs - 2 * pairs;  // never negative in total
  last_ = in.back();
  last_cr_ = last_ == '\r';
}

std::uint64_t WireSizeCounter::size() const {
  const bool needs_final_crlf = bytes_ > 0 && last_ != '\n' && last_ != '\r';
  return bytes_ + line_end_octets_ + (needs_final_crlf ? 2 : 0);
}

}  // namespace mailwright::pop3
