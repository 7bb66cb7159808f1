#include "libmail/line_reader.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

using namespace mailwright;
using namespace std::string_view_literals;

namespace {

constexpr std::size_t kMax = 1000;

// Reads every line of input through a LineBuffer fed in chunks of chunk octets, then at eof.
// Each line is rendered as "<text>|<ending>|<bare>" so tables compare easily.
std::string ending_name(LineEnding ending) {
  switch (ending) {
    case LineEnding::kCrlf:
      return "crlf";
    case LineEnding::kLf:
      return "lf";
    case LineEnding::kIncomplete:
      return "incomplete";
    case LineEnding::kTooLong:
      return "toolong";
    case LineEnding::kEof:
      return "eof";
  }
  return "?";
}

std::string render(const Line& line) {
  return std::string(line.text) + "|" + ending_name(line.ending) + (line.has_bare_cr ? "|cr" : "");
}

std::vector<std::string> read_all(std::string_view input, std::size_t chunk, std::size_t max) {
  std::vector<std::string> lines;
  LineBuffer buffer;
  auto drain = [&](bool at_eof) {
    while (true) {
      const Line line = buffer.next(max, at_eof);
      if (line.consumed == 0) {
        return;
      }
      lines.push_back(render(line));
      buffer.consume(line.consumed);
    }
  };
  for (std::size_t at = 0; at < input.size(); at += chunk) {
    buffer.append(input.substr(at, chunk));
    drain(false);
  }
  drain(true);
  return lines;
}

}  // namespace

TEST_CASE("classifies each line ending", "[line_reader]") {
  SECTION("CRLF") {
    const Line line = next_line("HELO a\r\nQUIT\r\n", kMax);
    CHECK(line.text == "HELO a");
    CHECK(line.ending == LineEnding::kCrlf);
    CHECK(line.consumed == 8);
    CHECK_FALSE(line.has_bare_cr);
  }
  SECTION("bare LF") {
    const Line line = next_line("HELO a\nQUIT\r\n", kMax);
    CHECK(line.text == "HELO a");
    CHECK(line.ending == LineEnding::kLf);
    CHECK(line.consumed == 7);
    CHECK_FALSE(line.has_bare_cr);
  }
  SECTION("a CR alone does not end a line") {
    const Line line = next_line("a\rb\r\n", kMax);
    CHECK(line.text == "a\rb");
    CHECK(line.ending == LineEnding::kCrlf);
    CHECK(line.consumed == 5);
    CHECK(line.has_bare_cr);
  }
  SECTION("CR CR LF leaves a bare CR in the text") {
    const Line line = next_line(".\r\r\n", kMax);
    CHECK(line.text == ".\r");
    CHECK(line.ending == LineEnding::kCrlf);
    CHECK(line.consumed == 4);
    CHECK(line.has_bare_cr);
  }
  SECTION("empty lines") {
    CHECK(next_line("\r\n", kMax).text.empty());
    CHECK(next_line("\r\n", kMax).ending == LineEnding::kCrlf);
    CHECK(next_line("\n", kMax).ending == LineEnding::kLf);
    CHECK(next_line("\n", kMax).consumed == 1);
  }
  SECTION("the text is a view into the input") {
    const std::string_view input = "abc\r\n";
    const Line line = next_line(input, kMax);
    CHECK(line.text.data() == input.data());
  }
}

TEST_CASE("shows every smuggling-relevant ending of DATA", "[line_reader]") {
  using Row = std::pair<std::string_view, std::vector<std::string>>;
  const Row row =
      GENERATE(Row{"a\r\n.\r\n"sv, {"a|crlf", ".|crlf"}}, Row{"a\n.\n"sv, {"a|lf", ".|lf"}},
               Row{"a\n.\r\n"sv, {"a|lf", ".|crlf"}}, Row{"a\r\n.\n"sv, {"a|crlf", ".|lf"}},
               Row{"a\r.\r\n"sv, {"a\r.|crlf|cr"}}, Row{"a\r\n.\r"sv, {"a|crlf", ".\r|eof|cr"}},
               Row{"a\r\r\n.\r\r\n"sv, {"a\r|crlf|cr", ".\r|crlf|cr"}}, Row{".\n"sv, {".|lf"}},
               Row{"\n.\r\n"sv, {"|lf", ".|crlf"}}, Row{"\r\n.\r\n"sv, {"|crlf", ".|crlf"}},
               Row{"\r"sv, {"\r|eof|cr"}}, Row{"x"sv, {"x|eof"}}, Row{""sv, {}},
               Row{"\r\r\r\n"sv, {"\r\r|crlf|cr"}}, Row{"\n\n"sv, {"|lf", "|lf"}});
  const std::size_t chunk = GENERATE(1, 2, 3, 1000);
  CAPTURE(row.first, chunk);
  CHECK(read_all(row.first, chunk, kMax) == row.second);
}

TEST_CASE("keeps NUL octets as data", "[line_reader]") {
  const std::string input("a\0b\r\n\0\n", 7);
  Line line = next_line(input, kMax);
  CHECK(line.text == std::string_view("a\0b", 3));
  CHECK(line.ending == LineEnding::kCrlf);
  line = next_line(std::string_view(input).substr(line.consumed), kMax);
  CHECK(line.text == std::string_view("\0", 1));
  CHECK(line.ending == LineEnding::kLf);
}

TEST_CASE("does not decide a CR before its LF has arrived", "[line_reader]") {
  SECTION("a final CR without eof is incomplete") {
    const Line line = next_line("QUIT\r", kMax);
    CHECK(line.ending == LineEnding::kIncomplete);
    CHECK(line.consumed == 0);
    CHECK_FALSE(line.has_bare_cr);
  }
  SECTION("the LF in the next chunk makes it a CRLF") {
    LineBuffer buffer;
    buffer.append("QUIT\r");
    CHECK(buffer.next(kMax).ending == LineEnding::kIncomplete);
    buffer.append("\nNOOP");
    const Line line = buffer.next(kMax);
    CHECK(line.text == "QUIT");
    CHECK(line.ending == LineEnding::kCrlf);
    CHECK_FALSE(line.has_bare_cr);
    buffer.consume(line.consumed);
    CHECK(buffer.next(kMax).ending == LineEnding::kIncomplete);
    CHECK(buffer.size() == 4);
  }
  SECTION("at eof the CR is bare") {
    const Line line = next_line("QUIT\r", kMax, true);
    CHECK(line.text == "QUIT\r");
    CHECK(line.ending == LineEnding::kEof);
    CHECK(line.consumed == 5);
    CHECK(line.has_bare_cr);
  }
  SECTION("an incomplete line without CR") {
    CHECK(next_line("QUI", kMax).ending == LineEnding::kIncomplete);
    CHECK(next_line("", kMax).ending == LineEnding::kIncomplete);
  }
}

TEST_CASE("reports kEof with the rest of the input", "[line_reader]") {
  Line line = next_line("tail", kMax, true);
  CHECK(line.text == "tail");
  CHECK(line.ending == LineEnding::kEof);
  CHECK(line.consumed == 4);
  line = next_line("", kMax, true);
  CHECK(line.ending == LineEnding::kEof);
  CHECK(line.consumed == 0);
  CHECK(line.text.empty());
  // A complete line still comes first at eof.
  line = next_line("a\nb", kMax, true);
  CHECK(line.ending == LineEnding::kLf);
  CHECK(line.text == "a");
}

TEST_CASE("counts the terminator against max_length", "[line_reader]") {
  constexpr std::size_t kLimit = 8;
  SECTION("a line of exactly max_length octets with CRLF fits") {
    const Line line = next_line("123456\r\n", kLimit);
    CHECK(line.ending == LineEnding::kCrlf);
    CHECK(line.text == "123456");
    CHECK(line.consumed == kLimit);
  }
  SECTION("a line of exactly max_length octets with LF fits") {
    const Line line = next_line("1234567\n", kLimit);
    CHECK(line.ending == LineEnding::kLf);
    CHECK(line.consumed == kLimit);
  }
  SECTION("one more octet is too long") {
    const Line line = next_line("1234567\r\n", kLimit);
    CHECK(line.ending == LineEnding::kTooLong);
    CHECK(line.text == "1234567\r");
    CHECK(line.consumed == kLimit);
    // The CR is followed by an LF in the input, so it is not bare.
    CHECK_FALSE(line.has_bare_cr);
  }
  SECTION("max_length octets without LF are too long even before more arrive") {
    const Line line = next_line("12345678", kLimit);
    CHECK(line.ending == LineEnding::kTooLong);
    CHECK(line.text == "12345678");
    CHECK(line.consumed == kLimit);
  }
  SECTION("one octet fewer is still incomplete") {
    CHECK(next_line("1234567", kLimit).ending == LineEnding::kIncomplete);
    CHECK(next_line("1234567", kLimit, true).ending == LineEnding::kEof);
  }
  SECTION("a bare CR inside a too long line is reported") {
    CHECK(next_line("12\r45678xx", kLimit).has_bare_cr);
    CHECK(next_line("1234567\rx", kLimit).has_bare_cr);
    CHECK_FALSE(next_line("12345678\r\n", kLimit).has_bare_cr);
  }
  SECTION("the caller skips to the next LF") {
    const std::vector<std::string> lines = read_all("0123456789abc\r\nok\r\n", 3, kLimit);
    CHECK(lines == std::vector<std::string>{"01234567|toolong", "89abc|crlf", "ok|crlf"});
  }
  SECTION("a zero limit still makes progress") {
    const Line line = next_line("ab\n", 0);
    CHECK(line.ending == LineEnding::kTooLong);
    CHECK(line.consumed == 1);
  }
}

TEST_CASE("stops after max_length octets of a 1 MB line without LF", "[line_reader]") {
  const std::string input(std::size_t{1024} * 1024, 'x');
  const Line line = next_line(input, kMax);
  CHECK(line.ending == LineEnding::kTooLong);
  CHECK(line.consumed == kMax);
  CHECK(line.text.size() == kMax);

  // Through a LineBuffer the whole input comes out as kTooLong pieces and a final kEof.
  const std::vector<std::string> lines = read_all(input, 4096, kMax);
  REQUIRE(lines.size() == input.size() / kMax + 1);
  CHECK(lines.front() == std::string(kMax, 'x') + "|toolong");
  CHECK(lines.back() == std::string(input.size() % kMax, 'x') + "|eof");
}

TEST_CASE("LineBuffer stays linear in the size of the input", "[line_reader]") {
  using Clock = std::chrono::steady_clock;
  SECTION("many short lines in one buffer") {
    // Erasing consumed lines from the front of a 2 MB buffer, 250,000 times, moves about 250 GB
    // and takes minutes; compacting moves each octet a few times.
    std::string input;
    for (int i = 0; i < 250000; ++i) {
      input += "line\r\n";
    }
    const auto start = Clock::now();
    LineBuffer buffer;
    buffer.append(input);
    std::size_t count = 0;
    for (Line line = buffer.next(kMax); line.consumed > 0; line = buffer.next(kMax)) {
      ++count;
      buffer.consume(line.consumed);
    }
    CHECK(count == 250000);
    CHECK(buffer.empty());
    CHECK(Clock::now() - start < std::chrono::seconds(2));
  }
  SECTION("a long line arriving an octet at a time") {
    // Rescanning the pending octets on every read would cost 2 * 10^11 comparisons.
    constexpr std::size_t kLong = std::size_t{512} * 1024;
    const auto start = Clock::now();
    LineBuffer buffer;
    std::size_t incomplete = 0;
    for (std::size_t i = 0; i < kLong; ++i) {
      buffer.append("y");
      incomplete += buffer.next(2 * kLong).ending == LineEnding::kIncomplete;
    }
    CHECK(incomplete == kLong);
    buffer.append("\n");
    const Line line = buffer.next(2 * kLong);
    CHECK(line.ending == LineEnding::kLf);
    CHECK(line.text.size() == kLong);
    CHECK(Clock::now() - start < std::chrono::seconds(2));
  }
}

TEST_CASE("LineBuffer gives the same lines however the input is chunked", "[line_reader]") {
  const std::string input = "MAIL FROM:<a@b>\r\nx\ry\n\r\n.\r\r\n\n.\r\nlong line here\r\ntail\r";
  const std::vector<std::string> whole = read_all(input, input.size(), 10);
  REQUIRE(whole.size() > 5);
  for (std::size_t chunk = 1; chunk < input.size(); ++chunk) {
    CAPTURE(chunk);
    CHECK(read_all(input, chunk, 10) == whole);
  }
}

TEST_CASE("LineBuffer consume clamps and keeps the rest", "[line_reader]") {
  LineBuffer buffer;
  CHECK(buffer.empty());
  buffer.append("ab\ncd\n");
  buffer.consume(3);
  CHECK(buffer.size() == 3);
  CHECK(buffer.next(kMax).text == "cd");
  buffer.consume(100);
  CHECK(buffer.empty());
  CHECK(buffer.next(kMax, true).ending == LineEnding::kEof);
}
