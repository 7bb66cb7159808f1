#include "libmail/mbox.h"

#include <catch2/catch.hpp>
#include <string>

using namespace mailwright;

namespace {

std::string quote_all(std::string_view in) {
  MboxrdQuoter q;
  std::string out;
  q.feed(in, out);
  q.finish(out);
  return out;
}

std::string quote_in_pieces(std::string_view in, std::size_t split_a, std::size_t split_b) {
  MboxrdQuoter q;
  std::string out;
  q.feed(in.substr(0, split_a), out);
  q.feed(in.substr(split_a, split_b - split_a), out);
  q.feed(in.substr(split_b), out);
  q.finish(out);
  return out;
}

}  // namespace

TEST_CASE("quotes every >*From line with one more '>'", "[mbox]") {
  CHECK(quote_all("From me\n") == ">From me\n");
  CHECK(quote_all(">From me\n") == ">>From me\n");
  CHECK(quote_all(">>>From me\n") == ">>>>From me\n");
  CHECK(quote_all("a\nFrom b\nc\n") == "a\n>From b\nc\n");
  CHECK(quote_all("From\n") == "From\n");
  CHECK(quote_all("Fromage\n") == "Fromage\n");
  CHECK(quote_all(">> From\n") == ">> From\n");
  CHECK(quote_all(" From x\n") == " From x\n");
  CHECK(quote_all(">\n>>\n") == ">\n>>\n");
  CHECK(quote_all("no newline") == "no newline\n");
  CHECK(quote_all("From") == "From\n");
  CHECK(quote_all("") == "");
}

TEST_CASE("quoting does not depend on where chunks split", "[mbox]") {
  const std::string input = "From a\n>From b\n>>>From c\nFro\nFrom\n>\nx From y\n>>Fromage\nFrom ";
  const std::string whole = quote_all(input);
  for (std::size_t a = 0; a <= input.size(); ++a) {
    for (std::size_t b = a; b <= input.size(); ++b) {
      INFO("split at " << a << " and " << b);
      REQUIRE(quote_in_pieces(input, a, b) == whole);
    }
  }
}

TEST_CASE("unquoting gives back the original", "[mbox]") {
  const std::string original = "From a\n>From b\n>>From c\nplain\n>not from\n";
  CHECK(mboxrd_unquote(quote_all(original)) == original);
  CHECK(mboxrd_unquote(">From x\n") == "From x\n");
  CHECK(mboxrd_unquote("From x\n") == "From x\n");
}

TEST_CASE("From_ line has the sender and a ctime date", "[mbox]") {
  std::string line = mbox_from_line("a@b.c", 0);
  CHECK(line.rfind("From a@b.c ", 0) == 0);
  CHECK(line.back() == '\n');
  CHECK(line.size() == std::string("From a@b.c Thu Jan  1 00:00:00 1970\n").size());
  CHECK(mbox_sender("") == "MAILER-DAEMON");
  CHECK(mbox_sender("<>") == "MAILER-DAEMON");
  CHECK(mbox_sender("\"a b\"@c") == "\"a_b\"@c");
}

TEST_CASE("scanner finds messages separated by an empty line", "[mbox]") {
  const std::string data =
      "From a Thu Jan  1 00:00:00 1970\nSubject: 1\n\nbody\nFrom inside\n\n"
      "From b Thu Jan  1 00:00:00 1970\nSubject: 2\n\n\n"
      "From c Thu Jan  1 00:00:00 1970\nlast without separator";
  bool garbage = true;
  auto msgs = scan_mbox(data, &garbage);
  CHECK_FALSE(garbage);
  REQUIRE(msgs.size() == 3);
  auto text = [&](const MboxMessage& m) { return data.substr(m.start, m.end - m.start); };
  CHECK(text(msgs[0]) == "Subject: 1\n\nbody\nFrom inside\n");
  CHECK(text(msgs[1]) == "Subject: 2\n\n");
  CHECK(text(msgs[2]) == "last without separator");
  CHECK(msgs[1].from_line == data.find("From b"));
}

TEST_CASE("scanner reports text before the first From_ line", "[mbox]") {
  bool garbage = false;
  auto msgs = scan_mbox("junk\nFrom a x\nbody\n", &garbage);
  CHECK(garbage);
  CHECK(msgs.empty());  // "From" after a non-empty line does not start a message
  msgs = scan_mbox("junk\n\nFrom a x\nbody\n", &garbage);
  CHECK(garbage);
  CHECK(msgs.size() == 1);
  CHECK(scan_mbox("").empty());
}

TEST_CASE("scanner agrees whatever the chunking", "[mbox]") {
  std::string data;
  for (int i = 0; i < 50; ++i) {
    data += "From s" + std::to_string(i) + " Thu Jan  1 00:00:00 1970\nSubject: " +
            std::to_string(i) + "\n\nline\n>From q\n\n";
  }
  auto whole = scan_mbox(data);
  REQUIRE(whole.size() == 50);
  for (std::size_t chunk : {1u, 2u, 3u, 5u, 7u, 64u, 4096u}) {
    MboxScanner scanner;
    for (std::size_t pos = 0; pos < data.size(); pos += chunk) {
      scanner.feed(std::string_view(data).substr(pos, chunk));
    }
    auto pieces = scanner.finish();
    REQUIRE(pieces.size() == whole.size());
    for (std::size_t i = 0; i < whole.size(); ++i) {
      CHECK(pieces[i].start == whole[i].start);
      CHECK(pieces[i].end == whole[i].end);
    }
  }
}
