// Drives LineBuffer with the input cut into chunks whose sizes come from the first bytes, and
// checks every line against the pure next_line() over the same octets and against the octets
// themselves. The limit varies between calls and some lines are consumed short, as a caller
// skipping through a too long line may do, so LineBuffer's scan hint is tested when it shrinks.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "libmail/line_reader.h"

namespace {

using mailwright::Line;
using mailwright::LineEnding;

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

bool contains_cr(std::string_view text) { return text.find('\r') != std::string_view::npos; }

// Checks one line read from the front of pending (the unconsumed octets) and returns the
// octets it consumed.
std::size_t check_line(const Line& line, const Line& pure, std::string_view pending,
                       std::size_t max_length, bool at_eof) {
  // LineBuffer with its scan hint must agree with the pure function.
  check(line.ending == pure.ending);
  check(line.consumed == pure.consumed);
  check(line.text == pure.text);
  check(line.has_bare_cr == pure.has_bare_cr);
  // The text is a view into the input, at its front.
  check(pure.text.data() == pending.data());
  check(pure.text.size() <= pending.size());
  check(line.consumed <= pending.size());
  check(line.consumed <= max_length);
  check(line.text.find('\n') == std::string_view::npos);
  const std::size_t n = line.consumed;
  switch (line.ending) {
    case LineEnding::kCrlf:
      check(n >= 2 && pending[n - 1] == '\n' && pending[n - 2] == '\r');
      check(line.text.size() == n - 2);
      check(line.has_bare_cr == contains_cr(line.text));
      break;
    case LineEnding::kLf:
      check(n >= 1 && pending[n - 1] == '\n' && (n == 1 || pending[n - 2] != '\r'));
      check(line.text.size() == n - 1);
      check(line.has_bare_cr == contains_cr(line.text));
      break;
    case LineEnding::kIncomplete:
      check(!at_eof && n == 0 && !line.has_bare_cr);
      check(pending.size() < max_length && pending.find('\n') == std::string_view::npos);
      break;
    case LineEnding::kTooLong:
      check(n == max_length && line.text.size() == n);
      break;
    case LineEnding::kEof:
      check(at_eof && n == pending.size() && line.text.size() == n);
      check(line.has_bare_cr == contains_cr(line.text));
      break;
  }
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) {
    return 0;
  }
  // Small limits reach kTooLong often; 0 checks the clamp.
  const std::size_t base_max = data[0] % 40;
  std::uint32_t seed = data[1];
  auto random = [&seed]() {
    seed = seed * 1103515245u + 12345u;
    return seed >> 16;
  };
  const std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);

  mailwright::LineBuffer buffer;
  std::size_t appended = 0;
  std::size_t consumed = 0;
  auto drain = [&](bool at_eof) {
    while (true) {
      const std::string_view pending = input.substr(consumed, appended - consumed);
      check(buffer.size() == pending.size());
      const std::uint32_t r = random();
      const std::size_t max_length = r % 4 == 0 ? base_max / 2 : base_max;
      const Line line = buffer.next(max_length, at_eof);
      const Line pure = mailwright::next_line(pending, max_length, at_eof);
      const std::size_t n =
          check_line(line, pure, pending, std::max<std::size_t>(max_length, 1), at_eof);
      if (n == 0) {
        return;
      }
      const std::size_t take = (r / 4) % 5 == 0 && n > 1 ? n - 1 : n;
      buffer.consume(take);
      consumed += take;
    }
  };
  while (appended < input.size()) {
    const std::size_t chunk = 1 + random() % 17;
    const std::size_t take = std::min(chunk, input.size() - appended);
    buffer.append(input.substr(appended, take));
    appended += take;
    drain(false);
  }
  drain(true);
  check(consumed == input.size());
  check(buffer.empty());
  return 0;
}
