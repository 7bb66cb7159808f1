#include "pop3d/pop3_command.h"

#include <catch2/catch.hpp>
#include <string>
#include <string_view>

using mailwright::decode_base64;
using mailwright::encode_base64;
using mailwright::pop3::parse_pop3_command;
using mailwright::pop3::pop3_verb_name;
using mailwright::pop3::pop3_verb_of;
using mailwright::pop3::Pop3Verb;

using namespace std::string_literals;

namespace {

std::string error_of(std::string_view line) {
  auto r = parse_pop3_command(line);
  return r ? "" : r.error().text();
}

}  // namespace

TEST_CASE("parses every verb, case-insensitively", "[pop3_command]") {
  struct Row {
    const char* line;
    Pop3Verb verb;
  };
  const Row row = GENERATE(
      Row{"USER joe", Pop3Verb::kUser}, Row{"user joe", Pop3Verb::kUser},
      Row{"PASS x", Pop3Verb::kPass}, Row{"pAsS x", Pop3Verb::kPass},
      Row{"APOP joe c4c9334bac560ecc979e58001b3e22fb", Pop3Verb::kApop},
      Row{"AUTH", Pop3Verb::kAuth}, Row{"stat", Pop3Verb::kStat}, Row{"LIST", Pop3Verb::kList},
      Row{"Retr 1", Pop3Verb::kRetr}, Row{"DELE 1", Pop3Verb::kDele}, Row{"NOOP", Pop3Verb::kNoop},
      Row{"RSET", Pop3Verb::kRset}, Row{"quit", Pop3Verb::kQuit}, Row{"TOP 1 10", Pop3Verb::kTop},
      Row{"UIDL", Pop3Verb::kUidl}, Row{"CAPA", Pop3Verb::kCapa}, Row{"stls", Pop3Verb::kStls});
  CAPTURE(row.line);
  auto cmd = parse_pop3_command(row.line);
  REQUIRE(cmd);
  CHECK(cmd->verb == row.verb);
  CHECK(pop3_verb_of(row.line) == row.verb);
}

TEST_CASE("names verbs canonically", "[pop3_command]") {
  CHECK(pop3_verb_name(Pop3Verb::kTop) == "TOP");
  CHECK(pop3_verb_name(Pop3Verb::kStls) == "STLS");
  CHECK(pop3_verb_name(Pop3Verb::kUidl) == "UIDL");
}

TEST_CASE("refuses unknown verbs", "[pop3_command]") {
  const char* line =
      GENERATE("", " ", " USER joe", "USERX joe", "XTND XMIT", "LAST", "HELO", "STARTTLS", "US",
               "U\xc5\x9a"
               "ER x");
  CAPTURE(line);
  CHECK(error_of(line) == "unknown command");
  CHECK_FALSE(pop3_verb_of(line));
}

TEST_CASE("parses message numbers strictly", "[pop3_command]") {
  SECTION("valid numbers") {
    auto one = parse_pop3_command("RETR 1");
    REQUIRE(one);
    CHECK(one->message == 1u);
    auto max = parse_pop3_command("LIST 4294967295");
    REQUIRE(max);
    CHECK(max->message == 4294967295u);
    auto zeros = parse_pop3_command("DELE 007");
    REQUIRE(zeros);
    CHECK(zeros->message == 7u);
    auto spaced = parse_pop3_command("RETR   2  ");
    REQUIRE(spaced);
    CHECK(spaced->message == 2u);
  }
  SECTION("invalid numbers") {
    const char* line =
        GENERATE("LIST 0", "LIST 4294967296", "LIST 4294967297", "LIST 99999999999999999999999",
                 "RETR -1", "RETR +1", "RETR 1x", "RETR x1", "RETR 0x1", "RETR 1.0", "DELE 00",
                 "UIDL -0", "TOP 0 1", "TOP -1 1");
    CAPTURE(line);
    CHECK(error_of(line) == "invalid message number");
  }
  SECTION("optional numbers") {
    auto list = parse_pop3_command("LIST");
    REQUIRE(list);
    CHECK_FALSE(list->message);
    auto uidl = parse_pop3_command("UIDL 3");
    REQUIRE(uidl);
    CHECK(uidl->message == 3u);
  }
}

TEST_CASE("parses TOP with a line count that may be zero", "[pop3_command]") {
  auto top = parse_pop3_command("TOP 2 0");
  REQUIRE(top);
  CHECK(top->message == 2u);
  CHECK(top->lines == 0u);
  auto many = parse_pop3_command("top 1 4294967295");
  REQUIRE(many);
  CHECK(many->lines == 4294967295u);
  CHECK(error_of("TOP 1") == "missing argument");
  CHECK(error_of("TOP") == "missing argument");
  CHECK(error_of("TOP 1 2 3") == "too many arguments");
  CHECK(error_of("TOP 1 -1") == "invalid line count");
  CHECK(error_of("TOP 1 4294967296") == "invalid line count");
  CHECK(error_of("TOP 1 1x") == "invalid line count");
}

TEST_CASE("checks the number of arguments per verb", "[pop3_command]") {
  SECTION("too many") {
    const char* line =
        GENERATE("STAT 1", "NOOP x", "RSET 1", "QUIT now", "CAPA x", "STLS x", "USER a b",
                 "LIST 1 2", "UIDL 1 2", "RETR 1 2", "DELE 1 2", "AUTH PLAIN abcd efgh",
                 "APOP a c4c9334bac560ecc979e58001b3e22fb x");
    CAPTURE(line);
    CHECK(error_of(line) == "too many arguments");
  }
  SECTION("missing") {
    const char* line =
        GENERATE("USER", "USER ", "PASS", "PASS ", "APOP joe", "RETR", "DELE ", "TOP");
    CAPTURE(line);
    CHECK(error_of(line) == "missing argument");
  }
  SECTION("trailing spaces are harmless") {
    CHECK(parse_pop3_command("STAT "));
    CHECK(parse_pop3_command("QUIT   "));
  }
}

TEST_CASE("takes the password verbatim", "[pop3_command]") {
  auto spaced = parse_pop3_command("PASS  two  spaces ");
  REQUIRE(spaced);
  CHECK(spaced->text == " two  spaces ");
  auto plain = parse_pop3_command("pass secret");
  REQUIRE(plain);
  CHECK(plain->text == "secret");
  auto eight_bit = parse_pop3_command("PASS gr\xc3\xbc\xc3\x9f");
  REQUIRE(eight_bit);
  CHECK(eight_bit->text == "gr\xc3\xbc\xc3\x9f");
}

TEST_CASE("parses USER, APOP and AUTH arguments", "[pop3_command]") {
  auto user = parse_pop3_command("USER   joe  ");
  REQUIRE(user);
  CHECK(user->text == "joe");

  auto apop = parse_pop3_command("APOP mrose c4c9334bac560ecc979e58001b3e22fb");
  REQUIRE(apop);
  CHECK(apop->text == "mrose");
  CHECK(apop->text2 == "c4c9334bac560ecc979e58001b3e22fb");
  CHECK(error_of("APOP mrose c4c9334bac560ecc979e58001b3e22f") == "invalid APOP digest");
  CHECK(error_of("APOP mrose c4c9334bac560ecc979e58001b3e22fbb") == "invalid APOP digest");
  CHECK(error_of("APOP mrose g4c9334bac560ecc979e58001b3e22fb") == "invalid APOP digest");

  auto bare = parse_pop3_command("AUTH");
  REQUIRE(bare);
  CHECK(bare->text.empty());
  CHECK(bare->text2.empty());
  auto mech = parse_pop3_command("AUTH plain");
  REQUIRE(mech);
  CHECK(mech->text == "plain");
  CHECK(mech->text2.empty());
  auto initial = parse_pop3_command("AUTH PLAIN AGpvZQBzZWNyZXQ=");
  REQUIRE(initial);
  CHECK(initial->text == "PLAIN");
  CHECK(initial->text2 == "AGpvZQBzZWNyZXQ=");
  auto empty = parse_pop3_command("AUTH PLAIN =");
  REQUIRE(empty);
  CHECK(empty->text2 == "=");
}

TEST_CASE("refuses control characters anywhere in the line", "[pop3_command]") {
  const std::string line =
      GENERATE("USER a\0b"s, "\0"s, "NOOP\0"s, "PASS sec\0ret"s, "PASS sec\rret"s,
               "USER a\rPASS b"s, "LIST\t1"s, "USER a\x7f"s, "USER \x1b[31m"s, "RETR 1\n"s);
  CAPTURE(line);
  CHECK(error_of(line) == "invalid character in command");
}

TEST_CASE("pop3_verb_of looks only at the first word", "[pop3_command]") {
  CHECK(pop3_verb_of("RETR 0") == Pop3Verb::kRetr);
  CHECK(pop3_verb_of("top") == Pop3Verb::kTop);
  CHECK_FALSE(pop3_verb_of("TOPS 1"));
}

TEST_CASE("encodes and decodes the RFC 4648 test vectors", "[pop3_command]") {
  struct Row {
    const char* plain;
    const char* encoded;
  };
  const Row row =
      GENERATE(Row{"", ""}, Row{"f", "Zg=="}, Row{"fo", "Zm8="}, Row{"fob", "Zm9i"},
               Row{"foob", "Zm9vYg=="}, Row{"fooba", "Zm9vYmE="}, Row{"foobar", "Zm9vYmFy"});
  CAPTURE(row.plain);
  CHECK(encode_base64(row.plain) == row.encoded);
  bool ok = false;
  CHECK(decode_base64(row.encoded, ok) == row.plain);
  CHECK(ok);
}

TEST_CASE("round-trips every octet", "[pop3_command]") {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (std::size_t n = 0; n <= all.size(); n += 37) {
    const std::string part = all.substr(n);
    bool ok = false;
    CHECK(decode_base64(encode_base64(part), ok) == part);
    CHECK(ok);
  }
  bool ok = false;
  CHECK(decode_base64("AGpvZQBzZWNyZXQ=", ok) == "\0joe\0secret"s);
  CHECK(ok);
  CHECK(decode_base64("+/+/", ok) == "\xfb\xff\xbf");
  CHECK(ok);
}

TEST_CASE("decodes base64 strictly", "[pop3_command]") {
  const char* bad = GENERATE(
      // length 1, 2 and 3 modulo 4
      "Z", "Zg", "Zg=", "Zm9vY", "Zm9vYg", "Zm9vYg=",
      // '=' anywhere but the end (RFC 5034 4 names "=AAA" and "AAA=BBB")
      "=AAA", "AAA=BBBB", "Zg==Zm9v", "Z=g=", "AA=A", "====", "Zm9v====",
      // whitespace and stray characters
      "Zm9v\r\n", " Zm9v", "Zm 9v", "Zm9v ", "Zm9\tv", "Zm9v!", "Zm9-", "Zm9_", "Zm9.",
      // pad bits set: a second spelling of "f" and of "fo"
      "Zh==", "Zm9=");
  CAPTURE(bad);
  bool ok = true;
  CHECK(decode_base64(bad, ok).empty());
  CHECK_FALSE(ok);
}

TEST_CASE("refuses a NUL inside base64", "[pop3_command]") {
  bool ok = true;
  CHECK(decode_base64("Zm9\0"s, ok).empty());
  CHECK_FALSE(ok);
}
