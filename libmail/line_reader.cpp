#include "libmail/line_reader.h"

#include <algorithm>
#include <cstring>

namespace mailwright {
namespace {

bool contains_cr(std::string_view text) { return text.find('\r') != std::string_view::npos; }

// next_line() with a hint: the first scan_from octets of input are known to hold no LF.
Line next_line_from(std::string_view input, std::size_t max_length, bool at_eof,
                    std::size_t scan_from) {
  // A zero limit would report kTooLong with consumed 0 forever; one octet always makes progress.
  max_length = std::max<std::size_t>(max_length, 1);
  // Looking further than max_length could make one line cost the whole buffer, and what lies
  // there does not change the answer.
  const std::size_t window = std::min(input.size(), max_length);
  if (scan_from < window) {
    const void* lf = std::memchr(input.data() + scan_from, '\n', window - scan_from);
    if (lf != nullptr) {
      const std::size_t at = static_cast<const char*>(lf) - input.data();
      const bool crlf = at > 0 && input[at - 1] == '\r';
      const std::string_view text = input.substr(0, crlf ? at - 1 : at);
      return Line{text, crlf ? LineEnding::kCrlf : LineEnding::kLf, at + 1, contains_cr(text)};
    }
  }
  if (input.size() >= max_length) {
    const std::string_view text = input.substr(0, max_length);
    // The octet after the last one decides whether a final CR is bare; when it has not arrived,
    // say no rather than guess (the line is refused as too long either way).
    bool bare_cr = contains_cr(text.substr(0, max_length - 1));
    if (text.back() == '\r') {
      bare_cr = bare_cr || (input.size() > max_length ? input[max_length] != '\n' : at_eof);
    }
    return Line{text, LineEnding::kTooLong, max_length, bare_cr};
  }
  if (at_eof) {
    return Line{input, LineEnding::kEof, input.size(), contains_cr(input)};
  }
  // Even a CR as the last octet stays undecided: its LF may be in the next read.
  return Line{input.substr(0, 0), LineEnding::kIncomplete, 0, false};
}

}  // namespace

Line next_line(std::string_view input, std::size_t max_length, bool at_eof) {
  return next_line_from(input, max_length, at_eof, 0);
}

void LineBuffer::append(std::string_view data) { buffer_.append(data); }

Line LineBuffer::next(std::size_t max_length, bool at_eof) {
  const std::string_view pending = std::string_view(buffer_).substr(start_);
  Line line = next_line_from(pending, max_length, at_eof, scanned_);
  // Without this, a 1 MB line arriving 1 octet at a time would be rescanned on every read.
  if (line.ending == LineEnding::kIncomplete) {
    scanned_ = pending.size();
  }
  return line;
}

void LineBuffer::consume(std::size_t n) {
  n = std::min(n, size());
  start_ += n;
  scanned_ = scanned_ > n ? scanned_ - n : 0;
  if (start_ == buffer_.size()) {
    buffer_.clear();
    start_ = 0;
  } else if (start_ > buffer_.size() / 2) {
    // Erasing from the front on every line is quadratic for a stream of short lines. Compacting
    // only once the consumed part outweighs the rest moves each octet O(1) times on average.
    buffer_.erase(0, start_);
    start_ = 0;
  }
}

}  // namespace mailwright
