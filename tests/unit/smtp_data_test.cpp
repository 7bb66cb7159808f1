#include "mta/smtp_data.h"

#include <catch2/catch.hpp>
#include <string>
#include <string_view>
#include <vector>

using mailwright::smtp::BareLineEndPolicy;
using mailwright::smtp::BdatReader;
using mailwright::smtp::DataOptions;
using mailwright::smtp::DataReader;

namespace {

struct Run {
  bool done = false;
  std::size_t consumed = 0;  // octets of input used up to and including the end marker
  std::string content;
  int reply = 0;  // 0: accepted
  std::uint64_t octets = 0;
  bool has_8bit = false;
};

// Feeds input in pieces of the given sizes (the last size repeats), as a session would.
Run read_data(std::string_view input, DataOptions options, std::vector<std::size_t> pieces = {}) {
  DataReader reader(options);
  Run r;
  std::size_t pos = 0;
  std::size_t k = 0;
  while (pos < input.size() && !r.done) {
    std::size_t n = pieces.empty() ? input.size() : pieces[std::min(k++, pieces.size() - 1)];
    n = std::min(std::max<std::size_t>(n, 1), input.size() - pos);
    const auto feed = reader.feed(input.substr(pos, n), r.content);
    REQUIRE(feed.consumed <= n);
    if (!feed.done)
      REQUIRE(feed.consumed == n);
    pos += feed.consumed;
    r.done = feed.done;
  }
  r.consumed = pos;
  if (r.done) {
    // Ends at most once: more input is not consumed.
    const auto again = reader.feed("MAIL FROM:<x@y>\r\n", r.content);
    CHECK(again.done);
    CHECK(again.consumed == 0);
    if (reader.outcome().reject)
      r.reply = reader.outcome().reject->reply_code;
    r.octets = reader.outcome().octets;
    r.has_8bit = reader.outcome().has_8bit;
  }
  return r;
}

DataOptions with(BareLineEndPolicy policy) {
  DataOptions o;
  o.bare_line_ends = policy;
  return o;
}

// Counts how many messages a session would take from the input: each time the reader ends, the
// rest is taken as commands; a "DATA" line there starts a new message.
int messages_in(std::string_view input, DataOptions options) {
  int count = 0;
  while (true) {
    DataReader reader(options);
    std::string out;
    const auto feed = reader.feed(input, out);
    if (!feed.done)
      return count;
    ++count;
    input.remove_prefix(feed.consumed);
    const auto data = input.find("DATA\r\n");
    if (data == std::string_view::npos)
      return count;
    input.remove_prefix(data + 6);
  }
}

}  // namespace

TEST_CASE("DATA ends only at CRLF.CRLF and keeps CRLF", "[smtp_data]") {
  const auto r = read_data("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", {});
  REQUIRE(r.done);
  CHECK(r.content == "Subject: x\r\n\r\nbody\r\n");
  CHECK(r.consumed == std::string_view("Subject: x\r\n\r\nbody\r\n.\r\n").size());
  CHECK(r.reply == 0);
  CHECK(r.octets == r.content.size());
  CHECK_FALSE(r.has_8bit);
}

TEST_CASE("an empty message is just the end marker", "[smtp_data]") {
  const auto r = read_data(".\r\n", {});
  REQUIRE(r.done);
  CHECK(r.content.empty());
  CHECK(r.reply == 0);
}

TEST_CASE("dot-unstuffing", "[smtp_data]") {
  const auto r = read_data("..x\r\n..\r\n.y\r\na.b\r\n...\r\n.\r\n", {});
  REQUIRE(r.done);
  CHECK(r.content == ".x\r\n.\r\ny\r\na.b\r\n..\r\n");
  CHECK(r.reply == 0);
}

TEST_CASE("smuggling sequences never end DATA", "[smtp_data]") {
  const std::string variant =
      GENERATE(as<std::string>{}, "\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r\n.\r",
               "\r\r\n.\r\r\n", ".\r\r\n", std::string("\r\n\0.\r\n", 6), "\r.\r\n", "\r\n.\r\r\n");
  const auto policy = GENERATE(BareLineEndPolicy::kReject, BareLineEndPolicy::kNormalize);
  // A body that hides a second transaction behind the variant.
  const std::string smuggled = "x" + variant +
                               "MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\n"
                               "spoofed\r\n";
  const std::string input = "a\r\n" + smuggled + ".\r\nQUIT\r\n";
  CAPTURE(variant, policy == BareLineEndPolicy::kReject);

  const auto r = read_data(input, with(policy));
  REQUIRE(r.done);
  // The reader ran to the one real end marker, not to the smuggled one.
  CHECK(r.consumed == input.size() - std::string_view("QUIT\r\n").size());
  CHECK(messages_in(input, with(policy)) == 1);
  // Any bare CR is refused under both policies; a bare LF under kReject. "\r\n\0.\r\n" has
  // neither and is ordinary content.
  const bool has_bare_cr = variant.find("\r\r") != std::string::npos ||
                           variant.find("\r.") != std::string::npos || (variant.back() == '\r');
  const bool has_bare_lf = variant.front() == '\n' || variant.find(".\n") != std::string::npos;
  if (has_bare_cr || (has_bare_lf && policy == BareLineEndPolicy::kReject))
    CHECK(r.reply == 550);
  else
    CHECK(r.reply == 0);
}

TEST_CASE("bare LF under kNormalize is stored as CRLF and starts no dot line", "[smtp_data]") {
  const auto r = read_data("a\nb\n.\r\n..c\r\n.\r\n", with(BareLineEndPolicy::kNormalize));
  REQUIRE(r.done);
  CHECK(r.reply == 0);
  CHECK(r.content == "a\r\nb\r\n.\r\n.c\r\n");
}

TEST_CASE("bare LF under kReject reads on to the end and refuses", "[smtp_data]") {
  const auto r = read_data("a\nb\r\n.\r\n", with(BareLineEndPolicy::kReject));
  REQUIRE(r.done);
  CHECK(r.reply == 550);
  CHECK(r.consumed == 8);
}

TEST_CASE("bare CR is refused under kNormalize too", "[smtp_data]") {
  const auto r = read_data("a\rb\r\n.\r\n", with(BareLineEndPolicy::kNormalize));
  REQUIRE(r.done);
  CHECK(r.reply == 550);
}

TEST_CASE("every split of a tricky input gives the same result", "[smtp_data]") {
  using namespace std::string_literals;  // "..."s keeps the embedded NUL and knows its length
  const std::string input = "..a\r\n\r\n.\n\r.\r\n\xc3\xa9\r\n..\r\nx\r\r\n.\r\r\n"s +
                            "\r\n\0.\r\nl\nm\r\n.\r\nTAIL"s;
  for (const auto policy : {BareLineEndPolicy::kReject, BareLineEndPolicy::kNormalize}) {
    DataOptions o = with(policy);
    o.max_line_length = 8;
    const auto whole = read_data(input, o);
    REQUIRE(whole.done);
    for (std::size_t split = 1; split < input.size(); ++split) {
      CAPTURE(split);
      const auto two = read_data(input, o, {split, input.size()});
      CHECK(two.content == whole.content);
      CHECK(two.consumed == whole.consumed);
      CHECK(two.reply == whole.reply);
      CHECK(two.octets == whole.octets);
    }
    for (std::size_t piece = 1; piece <= 4; ++piece) {
      const auto small = read_data(input, o, {piece});
      CHECK(small.content == whole.content);
      CHECK(small.reply == whole.reply);
    }
  }
  // And in kNormalize with no line limit it is accepted and unstuffed as documented.
  DataOptions o = with(BareLineEndPolicy::kNormalize);
  const auto clean = read_data("..a\r\n.\nb\r\n.\r\n", o);
  CHECK(clean.content == ".a\r\n\r\nb\r\n");
}

TEST_CASE("line length limit counts the CRLF but not the stuffing dot", "[smtp_data]") {
  const std::size_t len = GENERATE(997, 998, 999, 1000);
  const std::string line(len, 'x');
  const auto r = read_data(line + "\r\nnext\r\n.\r\n", {});
  REQUIRE(r.done);  // read to the end whatever the length
  CHECK(r.reply == (len <= 998 ? 0 : 500));
  // A 998-octet line that had to be stuffed is 999 on the wire, and still fine.
  const auto stuffed = read_data("." + std::string(998, '.') + "\r\n.\r\n", {});
  REQUIRE(stuffed.done);
  CHECK(stuffed.reply == 0);
  CHECK(stuffed.content.size() == 1000);
}

TEST_CASE("a 1 MB line is refused, not truncated, and memory stays bounded", "[smtp_data]") {
  const std::string big(1 << 20, 'y');
  DataReader reader({});
  std::string out;
  std::size_t max_out = 0;
  for (std::size_t i = 0; i < big.size(); i += 4096) {
    CHECK(!reader.feed(std::string_view(big).substr(i, 4096), out).done);
    max_out = std::max(max_out, out.size());
    out.clear();
  }
  CHECK(reader.feed("\r\n.\r\n", out).done);
  REQUIRE(reader.outcome().reject);
  CHECK(reader.outcome().reject->reply_code == 500);
  CHECK(reader.outcome().reject->error.status() == "5.5.2");
  CHECK(max_out <= 4096);
}

TEST_CASE("message size limit", "[smtp_data]") {
  DataOptions o;
  o.max_message_size = 10;
  SECTION("exactly the limit") {
    const auto r = read_data("12345678\r\n.\r\n", o);
    REQUIRE(r.done);
    CHECK(r.reply == 0);
    CHECK(r.octets == 10);
  }
  SECTION("one over: read to the end, then 552") {
    const auto r = read_data("123456789\r\nmore\r\n.\r\nQUIT\r\n", o);
    REQUIRE(r.done);
    CHECK(r.reply == 552);
    CHECK(r.octets == 17);
    CHECK(r.content.size() <= 10);
    CHECK(r.consumed == 20);
  }
}

TEST_CASE("8-bit detection", "[smtp_data]") {
  CHECK(read_data("abc\r\n.\r\n", {}).has_8bit == false);
  CHECK(read_data("ab\xe9\r\n.\r\n", {}).has_8bit == true);
  CHECK(read_data(".\xff\r\n.\r\n", {}).has_8bit == true);
}

TEST_CASE("BDAT takes exactly n octets, no unstuffing", "[smtp_data]") {
  BdatReader reader({});
  std::string out;
  reader.begin_chunk(8, false);
  auto f = reader.feed("..a\r\n.\r\nMORE", out);
  CHECK(f.done);
  CHECK(f.consumed == 8);
  CHECK(!reader.message_done());
  reader.begin_chunk(3, true);
  f = reader.feed("\r\nbQUIT", out);
  CHECK(f.done);  // the chunk is complete; "QUIT" belongs to the next command
  CHECK(f.consumed == 3);
  CHECK(reader.feed("QUIT", out).consumed == 0);
  CHECK(reader.message_done());
  CHECK(out == "..a\r\n.\r\n\r\nb");
  CHECK(!reader.outcome().reject);
}

TEST_CASE("BDAT: CRLF split over chunks, bare LF and CR, size", "[smtp_data]") {
  SECTION("CR at the end of one chunk and LF at the start of the next") {
    BdatReader reader({});
    std::string out;
    reader.begin_chunk(2, false);
    CHECK(reader.feed("a\r", out).done);
    reader.begin_chunk(1, true);
    CHECK(reader.feed("\n", out).done);
    CHECK(reader.message_done());
    CHECK(out == "a\r\n");
    CHECK(!reader.outcome().reject);
  }
  SECTION("a CR at the very end is bare") {
    BdatReader reader({});
    std::string out;
    reader.begin_chunk(2, true);
    CHECK(reader.feed("a\r", out).done);
    REQUIRE(reader.outcome().reject);
    CHECK(reader.outcome().reject->reply_code == 550);
  }
  SECTION("bare LF policy") {
    for (const auto policy : {BareLineEndPolicy::kReject, BareLineEndPolicy::kNormalize}) {
      BdatReader reader(with(policy));
      std::string out;
      reader.begin_chunk(4, true);
      CHECK(reader.feed("a\nb\n", out).done);
      CHECK(reader.outcome().reject.has_value() == (policy == BareLineEndPolicy::kReject));
      if (policy == BareLineEndPolicy::kNormalize)
        CHECK(out == "a\r\nb\r\n");
    }
  }
  SECTION("binary passes everything") {
    DataOptions o;
    o.binary = true;
    BdatReader reader(o);
    std::string out;
    reader.begin_chunk(4, true);
    CHECK(reader.feed(std::string_view("\r\n\r\0", 4), out).done);
    CHECK(!reader.outcome().reject);
    CHECK(out.size() == 4);
  }
  SECTION("size limit across chunks") {
    DataOptions o;
    o.max_message_size = 5;
    BdatReader reader(o);
    std::string out;
    reader.begin_chunk(3, false);
    CHECK(reader.feed("abc", out).done);
    reader.begin_chunk(3, true);
    CHECK(reader.feed("def", out).done);
    REQUIRE(reader.outcome().reject);
    CHECK(reader.outcome().reject->reply_code == 552);
    CHECK(reader.outcome().octets == 6);
  }
  SECTION("zero-length LAST chunk") {
    BdatReader reader({});
    std::string out;
    reader.begin_chunk(0, true);
    CHECK(reader.feed("", out).done);
    CHECK(reader.message_done());
  }
}
