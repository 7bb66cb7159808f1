#include "mta/smtp_data.h"

#include <sysexits.h>

#include <algorithm>
#include <limits>

namespace mailwright::smtp {
namespace {

constexpr std::size_t kNoLimit = std::numeric_limits<std::size_t>::max();

// The state both readers share: what has been counted, and the first refusal.
struct Content {
  const DataOptions& options;
  DataOutcome& outcome;
  std::size_t& line_length;
  std::string& out;

  void refuse(int code, const char* status, const char* text) {
    if (!outcome.reject)
      outcome.reject = DataReject{code, Error::permanent(EX_DATAERR, status, text)};
  }

  // Octets of one line (no CR or LF in a text message). Refusals are decided at the exact octet
  // that crosses a limit, so the result does not depend on how the input was split.
  void run(std::string_view octets) {
    const std::size_t n = octets.size();
    if (!outcome.reject) {
      std::size_t line_room = kNoLimit;
      if (options.max_line_length != 0 && !options.binary)
        line_room = options.max_line_length > line_length + 2
                        ? options.max_line_length - 2 - line_length
                        : 0;
      std::size_t size_room = kNoLimit;
      if (options.max_message_size != 0)
        size_room = options.max_message_size > outcome.octets
                        ? static_cast<std::size_t>(std::min<std::uint64_t>(
                              options.max_message_size - outcome.octets, kNoLimit))
                        : 0;
      std::size_t emit = n;
      if (n > line_room || n > size_room) {
        if (line_room <= size_room) {
          emit = line_room;
          refuse(500, "5.5.2", "line too long");
        } else {
          emit = size_room;
          refuse(552, "5.3.4", "message too big");
        }
      }
      out.append(octets.substr(0, emit));
    }
    for (char c : octets) {
      if (static_cast<unsigned char>(c) >= 0x80)
        outcome.has_8bit = true;
      else if (c == '\0')
        outcome.has_nul = true;
    }
    outcome.octets += n;
    line_length += n;
  }

  void line_end() {
    if (!outcome.reject && options.max_message_size != 0 &&
        outcome.octets + 2 > options.max_message_size)
      refuse(552, "5.3.4", "message too big");
    if (!outcome.reject)
      out.append("\r\n");
    outcome.octets += 2;
    line_length = 0;
  }

  void bare_lf() {
    if (options.bare_line_ends == BareLineEndPolicy::kNormalize) {
      line_end();
      return;
    }
    refuse(550, "5.6.0", "bare LF in message; lines must end in CRLF");
    outcome.octets += 1;
    line_length = 0;
  }

  void bare_cr() {
    refuse(550, "5.6.0", "bare CR in message; lines must end in CRLF");
    run("\r");
  }
};

}  // namespace

Feed DataReader::feed(std::string_view bytes, std::string& out) {
  Content content{options_, outcome_, line_length_, out};
  std::size_t i = 0;
  while (i < bytes.size() && state_ != State::kDone) {
    const char c = bytes[i];
    switch (state_) {
      case State::kLineStart:
        ++i;
        if (c == '.') {
          state_ = State::kDot;
        } else if (c == '\r') {
          state_ = State::kCr;
        } else if (c == '\n') {
          content.bare_lf();
          state_ = State::kBody;  // not a line start: no unstuffing, no end marker after it
        } else {
          content.run(bytes.substr(i - 1, 1));
          state_ = State::kBody;
        }
        break;
      case State::kDot:
        // The first dot of a line is dropped (RFC 5321 4.5.2): "..x" is ".x", ".x" is "x".
        ++i;
        if (c == '\r') {
          state_ = State::kDotCr;
        } else if (c == '\n') {
          content.bare_lf();
          state_ = State::kBody;
        } else {
          content.run(bytes.substr(i - 1, 1));
          state_ = State::kBody;
        }
        break;
      case State::kDotCr:
        if (c == '\n') {
          ++i;
          state_ = State::kDone;
        } else {
          // ".\r" then not LF: the CR is bare; c is looked at again as part of the line.
          content.bare_cr();
          state_ = State::kBody;
        }
        break;
      case State::kBody: {
        if (c == '\r') {
          ++i;
          state_ = State::kCr;
        } else if (c == '\n') {
          ++i;
          content.bare_lf();
        } else {
          const std::size_t end = bytes.find_first_of("\r\n", i);
          const std::size_t stop = end == std::string_view::npos ? bytes.size() : end;
          content.run(bytes.substr(i, stop - i));
          i = stop;
        }
        break;
      }
      case State::kCr:
        if (c == '\n') {
          ++i;
          content.line_end();
          state_ = State::kLineStart;
        } else {
          content.bare_cr();
          state_ = State::kBody;
        }
        break;
      case State::kDone:
        break;
    }
  }
  return Feed{i, state_ == State::kDone};
}

void BdatReader::begin_chunk(std::uint64_t size, bool last) {
  in_chunk_ = !message_done_;
  remaining_ = size;
  last_ = last;
}

Feed BdatReader::feed(std::string_view bytes, std::string& out) {
  if (!in_chunk_)
    return Feed{0, true};
  Content content{options_, outcome_, line_length_, out};
  const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, bytes.size()));
  const std::string_view chunk = bytes.substr(0, n);
  if (options_.binary) {
    content.run(chunk);
  } else {
    std::size_t i = 0;
    while (i < n) {
      const char c = chunk[i];
      if (pending_cr_) {
        pending_cr_ = false;
        if (c == '\n') {
          ++i;
          content.line_end();
          continue;
        }
        content.bare_cr();
      }
      if (c == '\r') {
        pending_cr_ = true;
        ++i;
      } else if (c == '\n') {
        content.bare_lf();
        ++i;
      } else {
        const std::size_t end = chunk.find_first_of("\r\n", i);
        const std::size_t stop = end == std::string_view::npos ? n : end;
        content.run(chunk.substr(i, stop - i));
        i = stop;
      }
    }
  }
  remaining_ -= n;
  if (remaining_ != 0)
    return Feed{n, false};
  in_chunk_ = false;
  if (last_) {
    if (pending_cr_) {
      pending_cr_ = false;
      content.bare_cr();
    }
    message_done_ = true;
  }
  return Feed{n, true};
}

}  // namespace mailwright::smtp
