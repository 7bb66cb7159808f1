#include "libmail/rfc5322.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/limits.h"

using namespace mailwright;

namespace {

bool inside(std::string_view view, std::string_view whole) {
  return view.data() >= whole.data() && view.data() + view.size() <= whole.data() + whole.size();
}

std::vector<std::string> split_lines(std::string_view text, std::string_view eol) {
  std::vector<std::string> lines;
  while (!text.empty()) {
    const std::size_t at = text.find(eol);
    REQUIRE(at != std::string_view::npos);
    lines.emplace_back(text.substr(0, at));
    text.remove_prefix(at + eol.size());
  }
  return lines;
}

// Sets TZ for one test and restores it afterwards.
class ScopedTz {
 public:
  explicit ScopedTz(const char* tz) {
    if (const char* old = std::getenv("TZ")) {
      old_ = old;
    }
    ::setenv("TZ", tz, 1);
    ::tzset();
  }
  ~ScopedTz() {
    if (old_) {
      ::setenv("TZ", old_->c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }
  ScopedTz(const ScopedTz&) = delete;
  ScopedTz& operator=(const ScopedTz&) = delete;

 private:
  std::optional<std::string> old_;
};

}  // namespace

TEST_CASE("parses a header with CRLF line ends", "[rfc5322]") {
  const std::string_view message =
      "Received: from a.example\r\n"
      "\tby b.example; Sun, 29 Nov 2026 10:48:00 +0000\r\n"
      "Subject: hello\r\n"
      "X-Empty:\r\n"
      "\r\n"
      "body\r\n";
  const HeaderBlock block = parse_header_block(message);
  REQUIRE(block.complete);
  CHECK_FALSE(block.malformed);
  REQUIRE(block.fields.size() == 3);
  CHECK(block.fields[0].name == "Received");
  CHECK(block.fields[0].raw_value ==
        " from a.example\r\n\tby b.example; Sun, 29 Nov 2026 10:48:00 +0000");
  CHECK(block.fields[1].raw_value == " hello");
  CHECK(block.fields[2].name == "X-Empty");
  CHECK(block.fields[2].raw_value.empty());
  CHECK(message.substr(block.body_offset) == "body\r\n");
  for (const HeaderField& field : block.fields) {
    CHECK(inside(field.name, message));
    CHECK(inside(field.raw_value, message));
  }
}

TEST_CASE("parses a header with LF line ends", "[rfc5322]") {
  const std::string_view message = "Subject: one\n two\nTo: x@y\n\nbody";
  const HeaderBlock block = parse_header_block(message);
  REQUIRE(block.complete);
  REQUIRE(block.fields.size() == 2);
  CHECK(block.fields[0].raw_value == " one\n two");
  CHECK(unfold_value(block.fields[0].raw_value) == "one two");
  CHECK(message.substr(block.body_offset) == "body");
}

TEST_CASE("parses edge cases of the header", "[rfc5322]") {
  SECTION("no header at all") {
    const HeaderBlock block = parse_header_block("\r\nbody");
    CHECK(block.complete);
    CHECK(block.fields.empty());
    CHECK(block.body_offset == 2);
  }
  SECTION("header ending at the blank line with no body") {
    const HeaderBlock block = parse_header_block("A: b\n\n");
    CHECK(block.complete);
    CHECK(block.body_offset == 6);
  }
  SECTION("WSP before the colon (obsolete syntax)") {
    const HeaderBlock block = parse_header_block("Subject : hi\n\n");
    REQUIRE(block.fields.size() == 1);
    CHECK(block.fields[0].name == "Subject");
    CHECK(block.fields[0].raw_value == " hi");
  }
  SECTION("a line of WSP only continues the field") {
    const HeaderBlock block = parse_header_block("A: b\n \nC: d\n\n");
    REQUIRE(block.fields.size() == 2);
    CHECK(block.fields[0].raw_value == " b\n ");
  }
  SECTION("a CR before the final LF is not part of the value") {
    const HeaderBlock block = parse_header_block("A: b\r\r\n\r\n");
    REQUIRE(block.fields.size() == 1);
    CHECK(block.fields[0].raw_value == " b\r");
    CHECK(unfold_value(block.fields[0].raw_value) == "b");
  }
  SECTION("a colon inside the value") {
    const HeaderBlock block = parse_header_block("Date: 10:48:00\n\n");
    REQUIRE(block.fields.size() == 1);
    CHECK(block.fields[0].raw_value == " 10:48:00");
  }
}

TEST_CASE("skips an mbox From_ line only as the first line", "[rfc5322]") {
  SECTION("first line") {
    const HeaderBlock block =
        parse_header_block("From joe@example.org Sun Nov 29 10:48:00 2026\nSubject: x\n\n");
    CHECK(block.complete);
    CHECK_FALSE(block.malformed);
    REQUIRE(block.fields.size() == 1);
    CHECK(block.fields[0].name == "Subject");
  }
  SECTION("a From: field is a field") {
    const HeaderBlock block = parse_header_block("From: joe@example.org\n\n");
    REQUIRE(block.fields.size() == 1);
    CHECK(block.fields[0].name == "From");
  }
  SECTION("later lines") {
    const HeaderBlock block = parse_header_block("Subject: x\nFrom joe Sun Nov 29\n\n");
    CHECK(block.malformed);
    CHECK(block.fields.size() == 1);
  }
  SECTION("unfinished") {
    const HeaderBlock block = parse_header_block("From joe@exa");
    CHECK_FALSE(block.complete);
    CHECK_FALSE(block.malformed);
    CHECK(block.fields.empty());
  }
}

TEST_CASE("reports lines that are not header fields", "[rfc5322]") {
  using Row = std::pair<std::string_view, std::string_view>;
  const Row row = GENERATE(Row{"A: b\nno colon here\n\nbody", "no colon here"},
                           Row{"A: b\nnocolon\n\n", "nocolon"}, Row{"A: b\n: x\n\n", ": x"},
                           Row{" leading: continuation\n\n", " leading"},
                           Row{"A: b\n\xc3\xa9t\xc3\xa9: x\n\n", "\xc3\xa9t"},
                           Row{"A: b\n\r\r\n\n", "\r\r\n"}, Row{"A: b\nSub ject: x\n\n", "Sub "});
  CAPTURE(row.first);
  const HeaderBlock block = parse_header_block(row.first);
  CHECK(block.malformed);
  CHECK_FALSE(block.complete);
  CHECK_FALSE(block.problem.empty());
  // The body offset points at the offending line, for a caller that treats it as body.
  CHECK(row.first.substr(block.body_offset).starts_with(row.second));
}

TEST_CASE("asks for more when the input ends inside the header", "[rfc5322]") {
  const std::string_view message = "Subject: hello\r\n world\r\nTo: a@b\r\n\r\nbody";
  const std::size_t blank = message.find("\r\n\r\n");
  const std::size_t body = blank + 4;
  for (std::size_t cut = 0; cut < body; ++cut) {
    CAPTURE(cut);
    const HeaderBlock block = parse_header_block(message.substr(0, cut));
    CHECK_FALSE(block.complete);
    CHECK_FALSE(block.malformed);
    CHECK(block.body_offset == cut);
  }
  const HeaderBlock whole = parse_header_block(message.substr(0, body));
  CHECK(whole.complete);
  CHECK(whole.body_offset == body);

  // An unterminated last field is given as far as it goes, a final CR left out.
  const HeaderBlock partial = parse_header_block("Subject: hel");
  REQUIRE(partial.fields.size() == 1);
  CHECK(partial.fields[0].raw_value == " hel");
  const HeaderBlock with_cr = parse_header_block("Subject: hello\r");
  REQUIRE(with_cr.fields.size() == 1);
  CHECK(with_cr.fields[0].raw_value == " hello");
  // Undecided octets are not malformed yet, but octets that can never form a field are.
  CHECK_FALSE(parse_header_block("A: b\nSubject").malformed);
  CHECK_FALSE(parse_header_block("A: b\nSubject  ").malformed);
  CHECK(parse_header_block("A: b\nSubject x").malformed);
  CHECK(parse_header_block("A: b\n\rx").malformed);
}

TEST_CASE("stops at the field count limit in linear time", "[rfc5322]") {
  std::string message;
  for (int i = 0; i < 20000; ++i) {
    message += "X-Field-" + std::to_string(i) + ": value\r\n";
  }
  message += "\r\nbody";
  const auto start = std::chrono::steady_clock::now();
  const HeaderBlock block = parse_header_block(message);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  CHECK(block.malformed);
  CHECK_FALSE(block.complete);
  CHECK(block.fields.size() == limits::kHeaderFields);
  CHECK(block.problem.find("10000") != std::string::npos);
  CHECK(std::string_view(message).substr(block.body_offset).starts_with("X-Field-10000:"));
}

TEST_CASE("stops at a field longer than the field limit", "[rfc5322]") {
  SECTION("one 1 MB line") {
    const std::string message =
        "A: b\nSubject: " + std::string(std::size_t{1024} * 1024, 'x') + "\n\nbody";
    const HeaderBlock block = parse_header_block(message);
    CHECK(block.malformed);
    CHECK(block.fields.size() == 1);
    CHECK(block.body_offset == 5);
  }
  SECTION("1 MB of continuation lines") {
    std::string message = "Subject: x\n";
    for (int i = 0; i < 512 * 1024; ++i) {
      message += " \n";
    }
    message += "\n";
    const auto start = std::chrono::steady_clock::now();
    const HeaderBlock block = parse_header_block(message);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
    CHECK(block.malformed);
    CHECK(block.body_offset == 0);
    CHECK(block.fields.empty());
  }
  SECTION("a field of exactly the limit is accepted") {
    const std::string name = "Subject: ";
    const std::string message =
        name + std::string(limits::kHeaderField - name.size() - 1, 'x') + "\n\n";
    const HeaderBlock block = parse_header_block(message);
    CHECK(block.complete);
    CHECK_FALSE(block.malformed);
    const HeaderBlock over = parse_header_block(name + "x" + message.substr(name.size()));
    CHECK(over.malformed);
  }
  SECTION("an unfinished field over the limit is malformed, not incomplete") {
    const HeaderBlock block = parse_header_block("Subject: " + std::string(100000, 'x'));
    CHECK(block.malformed);
  }
}

TEST_CASE("unfolds values", "[rfc5322]") {
  CHECK(unfold_value(" hello\r\n world ") == "hello world");
  CHECK(unfold_value(" a\r\n\tb\n c") == "a\tb c");
  CHECK(unfold_value("  \t ") == "");
  CHECK(unfold_value("") == "");
  CHECK(unfold_value(" a\r\n b\r\n") == "a b");
  // CR or LF not followed by WSP must not survive.
  CHECK(unfold_value("a\rb\nc") == "a b c");
  CHECK(unfold_value("a\r\nb") == "a  b");
}

TEST_CASE("finds header fields by name", "[rfc5322]") {
  const std::string_view message = "Received: one\nSubject: s\nreceived: two\n\n";
  const HeaderBlock block = parse_header_block(message);
  CHECK(header_name_equal("Content-Type", "content-TYPE"));
  CHECK_FALSE(header_name_equal("Subject", "Subjec"));
  CHECK_FALSE(header_name_equal("a", "b"));
  const HeaderField* subject = find_header(block.fields, "SUBJECT");
  REQUIRE(subject != nullptr);
  CHECK(subject->raw_value == " s");
  CHECK(find_header(block.fields, "To") == nullptr);
  const std::vector<const HeaderField*> received = find_headers(block.fields, "Received");
  REQUIRE(received.size() == 2);
  CHECK(received[0]->raw_value == " one");
  CHECK(received[1]->raw_value == " two");
  CHECK(find_headers(block.fields, "To").empty());
}

TEST_CASE("validates field names", "[rfc5322]") {
  CHECK(is_valid_field_name("X-Mailwright-Queue-Id"));
  CHECK(is_valid_field_name("!#~"));
  CHECK_FALSE(is_valid_field_name(""));
  CHECK_FALSE(is_valid_field_name("Sub ject"));
  CHECK_FALSE(is_valid_field_name("Subject:"));
  CHECK_FALSE(is_valid_field_name("Sub\x7fject"));
  CHECK_FALSE(is_valid_field_name("\xc3\xa9"));
}

TEST_CASE("formats short header fields on one line", "[rfc5322]") {
  CHECK(format_header("Subject", "hello") == "Subject: hello\r\n");
  CHECK(format_header("Subject", "hello", "\n") == "Subject: hello\n");
  CHECK(format_header("X-Empty", "") == "X-Empty:\r\n");
}

TEST_CASE("replaces CR and LF to stop header injection", "[rfc5322]") {
  const std::string out = format_header("Subject", "hi\r\nBcc: victim@example.org\rx\ny");
  CHECK(out == "Subject: hi  Bcc: victim@example.org x y\r\n");
  const HeaderBlock block = parse_header_block(out + "\r\n");
  CHECK(block.fields.size() == 1);
}

TEST_CASE("folds long header fields at whitespace", "[rfc5322]") {
  std::string value;
  for (int i = 0; i < 60; ++i) {
    value += (i % 7 == 0 ? "\tword" : " w") + std::to_string(i);
  }
  value = "from client.example (client.example [192.0.2.1])" + value;
  const std::string eol = GENERATE(std::string("\r\n"), std::string("\n"));
  const std::string out = format_header("Received", value, eol);
  const std::vector<std::string> lines = split_lines(out, eol);
  REQUIRE(lines.size() > 3);
  CHECK(lines[0].starts_with("Received: from"));
  for (std::size_t i = 0; i < lines.size(); ++i) {
    CAPTURE(i, lines[i]);
    CHECK(lines[i].size() <= 78);
    CHECK(lines[i].find_first_not_of(" \t") != std::string::npos);
    if (i > 0) {
      CHECK((lines[i][0] == ' ' || lines[i][0] == '\t'));
    }
  }
  // Folding only inserts line ends, so unfolding gives the value back.
  const std::string message = out + eol;  // the views point into it
  const HeaderBlock block = parse_header_block(message);
  REQUIRE(block.fields.size() == 1);
  CHECK(unfold_value(block.fields[0].raw_value) == value);
}

TEST_CASE("keeps long words within the hard line limit", "[rfc5322]") {
  SECTION("a word longer than 78 is not broken") {
    const std::string word(200, 'a');
    const std::string out = format_header("X-Long", "short " + word + " tail", "\n");
    CHECK(out == "X-Long: short\n " + word + "\n tail\n");
  }
  SECTION("a run longer than 998 gets a space") {
    const std::string word(2500, 'b');
    const std::string out = format_header("X-Long", word, "\n");
    const std::vector<std::string> lines = split_lines(out, "\n");
    REQUIRE(lines.size() == 3);
    for (const std::string& line : lines) {
      CHECK(line.size() <= 998);
    }
    CHECK(lines[0].size() == 998);
    CHECK(lines[1].size() == 998);
    CHECK(lines[1][0] == ' ');
    CHECK(unfold_value(out.substr(7)).size() == word.size() + 2);
  }
  SECTION("whitespace never gets a line of its own") {
    const std::string value =
        GENERATE(std::string(70, 'c') + " d" + std::string(30, ' '), "d" + std::string(100, ' '),
                 std::string(75, 'a') + "  " + std::string(100, 'b') + " c");
    const std::string out = format_header("X-Tail", value, "\n");
    CAPTURE(out);
    const std::vector<std::string> lines = split_lines(out, "\n");
    for (const std::string& line : lines) {
      CHECK(line.find_first_not_of(" \t") != std::string::npos);
    }
  }
  SECTION("no fold right after the colon") {
    const std::string value = std::string(90, 'e');
    CHECK(format_header("Subject", value, "\n") == "Subject: " + value + "\n");
  }
}

TEST_CASE("formats RFC 5322 dates in local time", "[rfc5322]") {
  // 2026-11-29 10:48:00 UTC, a Sunday.
  constexpr std::time_t kWhen = 1795949280;
  SECTION("UTC") {
    const ScopedTz tz("UTC");
    CHECK(format_rfc5322_date(kWhen) == "Sun, 29 Nov 2026 10:48:00 +0000");
    CHECK(format_rfc5322_date(0) == "Thu, 1 Jan 1970 00:00:00 +0000");
  }
  SECTION("east of Greenwich") {
    const ScopedTz tz("CET-1");
    CHECK(format_rfc5322_date(kWhen) == "Sun, 29 Nov 2026 11:48:00 +0100");
  }
  SECTION("west, with minutes") {
    const ScopedTz tz("NST3:30");
    CHECK(format_rfc5322_date(kWhen) == "Sun, 29 Nov 2026 07:18:00 -0330");
  }
  SECTION("across midnight") {
    const ScopedTz tz("<+14>-14");
    CHECK(format_rfc5322_date(kWhen) == "Mon, 30 Nov 2026 00:48:00 +1400");
  }
}

TEST_CASE("LfNormalizer turns CRLF into LF across any chunk split", "[rfc5322]") {
  const std::string input = "a\r\nb\rc\r\r\n\r\n\n.\r\n\r";
  std::string whole;
  LfNormalizer one;
  one.feed(input, whole);
  one.finish(whole);
  CHECK(whole == "a\nb\rc\r\n\n\n.\n\r");
  CHECK(one.bytes_out() == whole.size());
  CHECK_FALSE(one.ends_with_newline());
  for (std::size_t i = 0; i <= input.size(); ++i) {
    for (std::size_t j = i; j <= input.size(); ++j) {
      CAPTURE(i, j);
      std::string out;
      LfNormalizer normalizer;
      normalizer.feed(std::string_view(input).substr(0, i), out);
      normalizer.feed(std::string_view(input).substr(i, j - i), out);
      normalizer.feed(std::string_view(input).substr(j), out);
      normalizer.finish(out);
      CHECK(out == whole);
      CHECK(normalizer.bytes_out() == whole.size());
    }
  }
}

TEST_CASE("LfNormalizer tracks the final newline", "[rfc5322]") {
  LfNormalizer normalizer;
  std::string out;
  CHECK_FALSE(normalizer.ends_with_newline());
  normalizer.feed("x\r", out);
  CHECK_FALSE(normalizer.ends_with_newline());
  normalizer.feed("\n", out);
  CHECK(normalizer.ends_with_newline());
  normalizer.feed("\r", out);
  CHECK(normalizer.ends_with_newline());  // nothing written yet for the held CR
  normalizer.finish(out);
  CHECK_FALSE(normalizer.ends_with_newline());
  CHECK(out == "x\n\r");
  CHECK(normalizer.bytes_out() == 3);
}

TEST_CASE("CrlfEncoder never emits a bare CR or LF, across any chunk split", "[rfc5322]") {
  const std::string input = "a\nb\r\nc\rd\r\r\n\n\r\r.\r";
  std::string whole;
  CrlfEncoder one;
  one.feed(input, whole);
  one.finish(whole);
  CHECK(whole == "a\r\nb\r\nc\r\nd\r\n\r\n\r\n\r\n\r\n.\r\n");
  for (std::size_t i = 0; i <= input.size(); ++i) {
    for (std::size_t j = i; j <= input.size(); ++j) {
      CAPTURE(i, j);
      std::string out;
      CrlfEncoder encoder;
      encoder.feed(std::string_view(input).substr(0, i), out);
      encoder.feed(std::string_view(input).substr(i, j - i), out);
      encoder.feed(std::string_view(input).substr(j), out);
      encoder.finish(out);
      CHECK(out == whole);
    }
  }
}

TEST_CASE("CrlfEncoder and LfNormalizer round-trip LF text", "[rfc5322]") {
  const std::string text = "Subject: x\n\nline\n.\n..\n";
  std::string wire;
  CrlfEncoder encoder;
  encoder.feed(text, wire);
  encoder.finish(wire);
  CHECK(wire == "Subject: x\r\n\r\nline\r\n.\r\n..\r\n");
  std::string back;
  LfNormalizer normalizer;
  normalizer.feed(wire, back);
  normalizer.finish(back);
  CHECK(back == text);
  CHECK(normalizer.ends_with_newline());
}
