#include "mta/queue_file.h"

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <vector>

#include "mta/queue_id.h"

using namespace mailwright::mta;

namespace {

const std::string kId = format_queue_id(1700000000, 123456, 4242, 7);

Envelope sample_envelope() {
  Envelope e;
  e.queue_id = kId;
  e.arrival_time = 1700000000;
  e.sender = "user@example.org";
  e.body = BodyType::k8BitMime;
  e.smtputf8 = true;
  e.ret = DsnRet::kHeaders;
  e.envid = "QQ314159";
  e.client_address = "192.0.2.1";
  e.helo = "mx.example.org";
  e.auth_user = "joe";
  e.tls_protocol = "TLSv1.3";
  e.tls_cipher = "TLS_AES_256_GCM_SHA384";
  e.protocol = "ESMTPSA";
  Recipient a;
  a.address = "rcpt@example.net";
  a.orcpt = "rfc822;rcpt@example.net";
  a.notify = kNotifySuccess | kNotifyDelay;
  Recipient b;
  b.address = "other@example.com";
  b.notify = kNotifyNever;
  b.state = DeliveryState::kDeferred;
  b.attempts = 3;
  b.next_attempt = 1700003600;
  b.last_error = "451 4.4.1 connection timed out";
  e.recipients = {a, b};
  return e;
}

Envelope round_trip(const Envelope& e) {
  std::string text = serialize_envelope(e) + "Subject: x\r\n\r\nbody\r\n";
  std::size_t body = 0;
  auto parsed = parse_envelope(text, body);
  INFO(text);
  REQUIRE(parsed);
  CHECK(text.substr(body) == "Subject: x\r\n\r\nbody\r\n");
  return *parsed;
}

bool fails(const std::string& text) {
  std::size_t body = 0;
  auto parsed = parse_envelope(text, body);
  return !parsed.ok();
}

std::string error_of(const std::string& text) {
  std::size_t body = 0;
  auto parsed = parse_envelope(text, body);
  REQUIRE_FALSE(parsed);
  CHECK(parsed.error().exit_code() == 65);  // EX_DATAERR
  CHECK_FALSE(parsed.error().is_temporary());
  return parsed.error().text();
}

const std::string kMinimal = "MWQUEUE 1\nID " + kId + "\nTIME 5\nFROM \nRCPT a@b\nEND\n";

}  // namespace

TEST_CASE("a full envelope survives a round trip", "[queue_file]") {
  Envelope e = sample_envelope();
  CHECK(round_trip(e) == e);
}

TEST_CASE("the serialized form is the documented one", "[queue_file]") {
  Envelope e = sample_envelope();
  e.recipients.resize(1);
  e.recipients[0].last_error = "x";
  CHECK(serialize_envelope(e) ==
        "MWQUEUE 1\nID " + kId +
            "\nTIME 1700000000\nFROM user@example.org\nBODY 8BITMIME\nSMTPUTF8 1\nRET HDRS\n"
            "ENVID QQ314159\nCLIENT 192.0.2.1\nHELO mx.example.org\nAUTHUSER joe\n"
            "TLSPROTO TLSv1.3\nTLSCIPHER TLS_AES_256_GCM_SHA384\nPROTO ESMTPSA\n"
            "RCPT rcpt@example.net\nORCPT rfc822;rcpt@example.net\nNOTIFY SUCCESS,DELAY\n"
            "ERROR x\nEND\n");
}

TEST_CASE("a minimal envelope with the null sender parses", "[queue_file]") {
  std::size_t body = 0;
  auto e = parse_envelope(kMinimal + "msg", body);
  REQUIRE(e);
  CHECK(e->sender.empty());
  CHECK(e->recipients.size() == 1);
  CHECK(e->recipients[0].state == DeliveryState::kPending);
  CHECK(body == kMinimal.size());
}

TEST_CASE("hostile values round-trip and never break a line", "[queue_file]") {
  std::string hostile =
      GENERATE(std::string("a\r\nRCPT evil@x"), std::string("\nEND\n"), std::string("END"),
               std::string(1, '\0'), std::string("x\0y", 3), std::string("100% \\ %0A %%"),
               std::string("\xC3\xA9t\xC3\xA9 \xFF\x80"), std::string(100000, 'A'),
               std::string("\r"), std::string(" leading and trailing "), std::string("\x7F\x1B[2J"),
               std::string("RCPT x@y\nSTATE delivered"), std::string("%"), std::string("\\"));
  Envelope e = sample_envelope();
  e.sender = hostile;
  e.envid = hostile;
  e.helo = hostile;
  e.auth_user = hostile;
  e.tls_cipher = hostile;
  e.recipients[0].address = hostile;
  e.recipients[0].orcpt = hostile;
  e.recipients[1].last_error = hostile;
  std::string text = serialize_envelope(e);
  std::size_t body_start = text.size();
  // Every line of the envelope is printable ASCII; only the END line ends it.
  bool printable_ascii = true;
  for (char c : text) printable_ascii &= c == '\n' || (c >= 0x20 && c <= 0x7E);
  CHECK(printable_ascii);
  CHECK(text.find("\nEND\n") == text.size() - 5);
  std::size_t body = 0;
  auto parsed = parse_envelope(text + "END\nmore", body);
  REQUIRE(parsed);
  CHECK(*parsed == e);
  CHECK(body == body_start);
}

TEST_CASE("escaping is canonical", "[queue_file]") {
  CHECK(escape_value("a%b\n") == "a%25b%0A");
  CHECK(unescape_value("a%25b%0A").value() == "a%b\n");
  CHECK_FALSE(unescape_value("%0a"));  // lower case hex
  CHECK_FALSE(unescape_value("%41"));  // 'A' needs no escape
  CHECK_FALSE(unescape_value("%"));
  CHECK_FALSE(unescape_value("%4"));
  CHECK_FALSE(unescape_value("%G0"));
  CHECK_FALSE(unescape_value("a\tb"));
}

TEST_CASE("a truncated file fails cleanly at every offset", "[queue_file]") {
  std::string full = serialize_envelope(sample_envelope());
  for (std::size_t n = 0; n < full.size(); ++n) {
    INFO("length " << n);
    CHECK(fails(full.substr(0, n)));
  }
  CHECK_FALSE(fails(full));
}

TEST_CASE("duplicate keys are refused", "[queue_file]") {
  std::string key =
      GENERATE(std::string("ID ") + kId, std::string("TIME 6"), std::string("FROM x@y"),
               std::string("BODY 7BIT"), std::string("SMTPUTF8 1"), std::string("RET FULL"),
               std::string("ENVID e"), std::string("CLIENT c"), std::string("HELO h"),
               std::string("AUTHUSER u"), std::string("TLSPROTO p"), std::string("TLSCIPHER c"),
               std::string("PROTO ESMTP"));
  std::string once = "MWQUEUE 1\n" + key + "\n" + kMinimal.substr(10);
  std::string twice = "MWQUEUE 1\n" + key + "\n" + key + "\n" + kMinimal.substr(10);
  bool singles_ok =
      key.rfind("ID ", 0) != 0 && key.rfind("TIME", 0) != 0 && key.rfind("FROM", 0) != 0;
  if (singles_ok)
    CHECK_FALSE(fails(once));
  CHECK(error_of(twice).find("duplicate") != std::string::npos);
}

TEST_CASE("duplicate recipient keys are refused, across recipients they are fine", "[queue_file]") {
  std::string key = GENERATE(std::string("ORCPT rfc822;a@b"), std::string("NOTIFY NEVER"),
                             std::string("STATE failed"), std::string("ATTEMPTS 1"),
                             std::string("NEXT 9"), std::string("ERROR e"));
  std::string head = "MWQUEUE 1\nID " + kId + "\nTIME 5\nFROM \n";
  CHECK_FALSE(fails(head + "RCPT a@b\n" + key + "\nRCPT c@d\n" + key + "\nEND\n"));
  CHECK(error_of(head + "RCPT a@b\n" + key + "\n" + key + "\nEND\n").find("duplicate") !=
        std::string::npos);
  CHECK(error_of(head + key + "\nRCPT a@b\nEND\n").find("before RCPT") != std::string::npos);
}

TEST_CASE("malformed envelopes are refused with the line named", "[queue_file]") {
  std::string head = "MWQUEUE 1\nID " + kId + "\nTIME 5\nFROM \n";
  SECTION("unknown key") {
    std::string text = error_of(head + "XFORWARD 1\nRCPT a@b\nEND\n");
    CHECK(text.find("line 5") != std::string::npos);
    CHECK(text.find("unknown key") != std::string::npos);
  }
  SECTION("lower-case key") { CHECK(fails(head + "rcpt a@b\nEND\n")); }
  SECTION("missing end marker") { CHECK(fails(head + "RCPT a@b\n")); }
  SECTION("END with a value") { CHECK(fails(head + "RCPT a@b\nEND x\n")); }
  SECTION("CR in a line") { CHECK(fails(head + "RCPT a@b\r\nEND\n")); }
  SECTION("NUL in a line") { CHECK(fails(head + std::string("RCPT a\0b\nEND\n", 12))); }
  SECTION("8-bit octet in a line") { CHECK(fails(head + "RCPT \xC3\xA9@b\nEND\n")); }
  SECTION("bad escape") { CHECK(fails(head + "RCPT a%0@b\nEND\n")); }
  SECTION("wrong version") {
    CHECK(fails("MWQUEUE 2\n" + kMinimal.substr(10)));
    CHECK(fails(kMinimal.substr(10)));
  }
  SECTION("no recipient") {
    CHECK(error_of(head + "END\n").find("no recipients") != std::string::npos);
  }
  SECTION("missing required key") {
    CHECK(error_of("MWQUEUE 1\nID " + kId + "\nTIME 5\nRCPT a@b\nEND\n").find("missing FROM") !=
          std::string::npos);
    CHECK(fails("MWQUEUE 1\nTIME 5\nFROM \nRCPT a@b\nEND\n"));
    CHECK(fails("MWQUEUE 1\nID " + kId + "\nFROM \nRCPT a@b\nEND\n"));
  }
  SECTION("bad queue id") { CHECK(fails("MWQUEUE 1\nID ../x\nTIME 5\nFROM \nRCPT a@b\nEND\n")); }
  SECTION("bad numbers") {
    for (std::string n : {"-1", "01", "+1", "1x", "", "99999999999999999999", " 1"}) {
      CHECK(fails("MWQUEUE 1\nID " + kId + "\nTIME " + n + "\nFROM \nRCPT a@b\nEND\n"));
    }
    CHECK(fails(head + "RCPT a@b\nATTEMPTS 4294967296\nEND\n"));
  }
  SECTION("bad enumerations") {
    CHECK(fails(head + "RCPT a@b\nSTATE done\nEND\n"));
    CHECK(fails(head + "RCPT a@b\nNOTIFY DELAY,SUCCESS\nEND\n"));
    CHECK(fails(head + "RCPT a@b\nNOTIFY NEVER,DELAY\nEND\n"));
    CHECK(fails(head + "RCPT a@b\nNOTIFY SUCCESS,\nEND\n"));
    CHECK(fails(head + "RCPT a@b\nNOTIFY \nEND\n"));
    CHECK(fails(head + "BODY 8bitmime\nRCPT a@b\nEND\n"));
    CHECK(fails(head + "RET NONE\nRCPT a@b\nEND\n"));
    CHECK(fails(head + "SMTPUTF8 0\nRCPT a@b\nEND\n"));
  }
  SECTION("empty optional value") { CHECK(fails(head + "HELO \nRCPT a@b\nEND\n")); }
  SECTION("envelope key after a recipient") { CHECK(fails(head + "RCPT a@b\nHELO h\nEND\n")); }
  SECTION("key without value") { CHECK(fails(head + "RCPT\nEND\n")); }
}

TEST_CASE("an envelope longer than the limit is refused", "[queue_file]") {
  std::string text = "MWQUEUE 1\nID " + kId + "\nTIME 5\nFROM \n";
  while (text.size() < kMaxEnvelope + 10) text += "RCPT " + std::string(1000, 'a') + "\n";
  text += "END\n";
  CHECK(error_of(text).find("too long") != std::string::npos);
}

TEST_CASE("state files replace recipient states", "[queue_file]") {
  Envelope e = sample_envelope();
  Envelope updated = e;
  updated.recipients[0].state = DeliveryState::kDelivered;
  updated.recipients[0].attempts = 1;
  updated.recipients[1].state = DeliveryState::kFailed;
  updated.recipients[1].last_error = "550 5.1.1 no\nsuch user";
  std::string text = serialize_state_file(updated);
  Envelope target = e;
  REQUIRE(apply_state_file(text, target));
  CHECK(target == updated);

  SECTION("truncated state files are refused and change nothing") {
    for (std::size_t n = 0; n < text.size(); ++n) {
      Envelope t = e;
      CHECK_FALSE(apply_state_file(text.substr(0, n), t));
      CHECK(t == e);
    }
  }
  SECTION("wrong id or recipient count") {
    Envelope other = e;
    other.queue_id = format_queue_id(1, 2, 3, 4);
    CHECK_FALSE(apply_state_file(text, other));
    Envelope fewer = e;
    fewer.recipients.pop_back();
    CHECK_FALSE(apply_state_file(text, fewer));
    Envelope more = e;
    more.recipients.push_back(e.recipients[0]);
    CHECK_FALSE(apply_state_file(text, more));
  }
  SECTION("data after END") { CHECK_FALSE(apply_state_file(text + "x", target)); }
}

TEST_CASE("queue ids are valid, fixed-length and sortable", "[queue_file][queue_id]") {
  std::string a = format_queue_id(1700000000, 999999, 4194303, 1048575);
  std::string b = format_queue_id(1700000001, 0, 0, 0);
  CHECK(a.size() == kQueueIdLength);
  CHECK(is_valid_queue_id(a));
  CHECK(a < b);
  CHECK(is_valid_queue_id(new_queue_id()));
  for (const std::string& bad : std::vector<std::string>{
           "", "../x", "0LJ8K2M3N4P5Q6R7S8T", "0LJ8K2M3N4P5Q6R7S8T9A", "0lj8k2m3n4p5q6r7s8t9",
           "0LJ8K2M3N4P5Q6R7S8/9", "0LJ8K2M3N4P5Q6R7S8T.", "0LJ8K2M3N4P5Q6R7S8TW",
           std::string("0LJ8K2M3N4P5Q6R7S8T\0", 20)}) {
    INFO(bad);
    CHECK_FALSE(is_valid_queue_id(bad));
  }
}

TEST_CASE("queue ids do not repeat in 100k generations and sort in order",
          "[queue_file][queue_id]") {
  std::set<std::string> seen;
  std::string last;
  for (int i = 0; i < 100000; ++i) {
    std::string id = new_queue_id();
    REQUIRE(id > last);
    REQUIRE(seen.insert(id).second);
    last = id;
  }
}

TEST_CASE("queue ids of two concurrent processes never collide", "[queue_file][queue_id]") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  constexpr int kEach = 20000;
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    std::string out;
    for (int i = 0; i < kEach; ++i) out += new_queue_id() + "\n";
    const char* p = out.data();
    std::size_t left = out.size();
    while (left > 0) {
      ssize_t n = ::write(fds[1], p, left);
      if (n <= 0)
        ::_exit(1);
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::set<std::string> seen;
  for (int i = 0; i < kEach; ++i) seen.insert(new_queue_id());
  std::string child;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0)
      break;
    child.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  std::size_t count = 0;
  std::size_t start = 0;
  while (start < child.size()) {
    std::size_t nl = child.find('\n', start);
    REQUIRE(nl != std::string::npos);
    std::string id = child.substr(start, nl - start);
    REQUIRE(is_valid_queue_id(id));
    CHECK(seen.insert(id).second);
    ++count;
    start = nl + 1;
  }
  CHECK(count == kEach);
  CHECK(seen.size() == 2 * kEach);
}
