// The SMTP client: the reply parser, EHLO capabilities and the data encoder as pure functions;
// the session driven with scripted server replies (checking the exact bytes it sends); and the
// libevent driver against fake SMTP servers listening on 127.0.0.1 in the same event loop.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "libmail/base64.h"
#include "libmail/event_loop.h"
#include "libmail/tls.h"
#include "mta/smtp_client.h"
#include "mta/smtp_data.h"

using mailwright::BufferEvent;
using mailwright::ConnListener;
using mailwright::Event;
using mailwright::EventBase;
using mailwright::SslCtx;
using mailwright::mta::BodyType;
using mailwright::mta::DeliveryState;
using mailwright::mta::DsnRet;
using mailwright::mta::parse_ehlo_capabilities;
using mailwright::mta::parse_smtp_reply;
using mailwright::mta::SmtpClientSession;
using mailwright::mta::SmtpClientSettings;
using mailwright::mta::SmtpConnectionCache;
using mailwright::mta::SmtpDataEncoder;
using mailwright::mta::SmtpDelivery;
using mailwright::mta::SmtpDeliveryReport;
using mailwright::mta::SmtpDeliveryRequest;
using mailwright::mta::SmtpDestination;
using mailwright::mta::SmtpLoss;
using mailwright::mta::SmtpRecipientResult;
using mailwright::mta::SmtpReplyParse;
using mailwright::mta::SmtpTlsPolicy;
using mailwright::mta::SmtpTransaction;
using mailwright::mta::SmtpWait;

namespace {

// --- helpers for the pure layers -----------------------------------------------------------------

std::string encode_all(SmtpDataEncoder::Mode mode, const std::vector<std::string>& pieces) {
  SmtpDataEncoder e(mode);
  std::string out;
  for (const auto& p : pieces) e.encode(p, out);
  e.finish(out);
  return out;
}

SmtpClientSettings plain_settings() {
  SmtpClientSettings s;
  s.helo_name = "client.example.org";
  s.remote_host = "mx.example.net";
  s.remote_address = "192.0.2.25";
  s.tls = SmtpTlsPolicy::kNone;
  return s;
}

SmtpTransaction transaction(std::vector<std::string> recipients) {
  SmtpTransaction t;
  t.sender = "alice@example.org";
  t.size = 1234;
  for (auto& r : recipients) t.recipients.push_back({std::move(r), "", 0});
  return t;
}

struct Client {
  SmtpClientSession s;
  std::string out;
  explicit Client(SmtpClientSettings settings = plain_settings()) : s(std::move(settings)) {}

  // The server says replies; returns what the client sends in answer.
  std::string say(std::string_view replies) {
    out.clear();
    s.receive(replies, out);
    return out;
  }
  std::string content(std::string_view piece, bool last) {
    out.clear();
    s.content(piece, last, out);
    return out;
  }
  std::string finish() {
    out.clear();
    s.finish(out);
    return out;
  }
  std::string advance() {
    out.clear();
    s.advance(out);
    return out;
  }
  const SmtpRecipientResult& result(std::size_t txn, std::size_t rcpt) const {
    return s.results(txn).at(rcpt);
  }
};

constexpr char kEhloPipelining[] =
    "250-mx.example.net Hello\r\n"
    "250-PIPELINING\r\n"
    "250-SIZE 10000000\r\n"
    "250-8BITMIME\r\n"
    "250 ENHANCEDSTATUSCODES\r\n";

constexpr char kEhloPlain[] =
    "250-mx.example.net Hello\r\n"
    "250-SIZE\r\n"
    "250 8BITMIME\r\n";

}  // namespace

// --- 1. replies ----------------------------------------------------------------------------

TEST_CASE("smtp client reply: one line with an enhanced status code") {
  const SmtpReplyParse p = parse_smtp_reply("250 2.1.5 Ok\r\nrest");
  REQUIRE(p.complete());
  CHECK(p.consumed == 14);
  CHECK(p.reply.code == 250);
  CHECK(p.reply.enhanced == "2.1.5");
  CHECK(p.reply.text == "Ok");
  CHECK(p.reply.to_string() == "250 2.1.5 Ok");
  CHECK(p.reply.status() == "2.1.5");
}

TEST_CASE("smtp client reply: multi-line replies keep every line and join the text") {
  const std::string ehlo = "250-mx.example.net\r\n250-PIPELINING\r\n250 SIZE 100\r\n";
  const SmtpReplyParse p = parse_smtp_reply(ehlo);
  REQUIRE(p.complete());
  CHECK(p.consumed == ehlo.size());
  CHECK(p.reply.lines == std::vector<std::string>{"mx.example.net", "PIPELINING", "SIZE 100"});
  CHECK(p.reply.text == "mx.example.net PIPELINING SIZE 100");

  const SmtpReplyParse q = parse_smtp_reply("550-5.1.1 first\r\n550 5.1.1 second\r\n");
  REQUIRE(q.complete());
  CHECK(q.reply.enhanced == "5.1.1");
  CHECK(q.reply.text == "first second");
  CHECK(q.reply.to_string() == "550 5.1.1 first second");
}

TEST_CASE("smtp client reply: enhanced codes must match the reply class") {
  auto p = parse_smtp_reply("550 4.1.1 mismatch\r\n");
  REQUIRE(p.complete());
  CHECK(p.reply.enhanced.empty());
  CHECK(p.reply.status() == "5.0.0");
  CHECK(p.reply.text == "4.1.1 mismatch");
  p = parse_smtp_reply("535 5.7.10 needs TLS\r\n");
  CHECK(p.reply.enhanced == "5.7.10");
  p = parse_smtp_reply("250 2.0.0\r\n");
  CHECK(p.reply.enhanced == "2.0.0");
  CHECK(p.reply.text.empty());
  p = parse_smtp_reply("250 2.0.0x\r\n");
  CHECK(p.reply.enhanced.empty());
  p = parse_smtp_reply("250 2.1234.0 x\r\n");
  CHECK(p.reply.enhanced.empty());
  p = parse_smtp_reply("354 go ahead\r\n");
  CHECK(p.reply.enhanced.empty());
  CHECK(p.reply.status() == "3.0.0");
}

TEST_CASE("smtp client reply: bare code, bare LF, incomplete input, pipelined replies") {
  auto p = parse_smtp_reply("250\r\n");
  REQUIRE(p.complete());
  CHECK(p.reply.lines == std::vector<std::string>{""});
  p = parse_smtp_reply("250 ok\n");  // tolerated: see the header
  REQUIRE(p.complete());
  CHECK(p.consumed == 7);
  CHECK(parse_smtp_reply("").state == SmtpReplyParse::State::kIncomplete);
  CHECK(parse_smtp_reply("25").state == SmtpReplyParse::State::kIncomplete);
  CHECK(parse_smtp_reply("250 o").state == SmtpReplyParse::State::kIncomplete);
  CHECK(parse_smtp_reply("250-a\r\n250 b").state == SmtpReplyParse::State::kIncomplete);
  CHECK(parse_smtp_reply("250 ok\r").state == SmtpReplyParse::State::kIncomplete);
  p = parse_smtp_reply("250 a\r\n251 b\r\n");
  REQUIRE(p.complete());
  CHECK(p.consumed == 7);
  CHECK(p.reply.code == 250);
}

TEST_CASE("smtp client reply: malformed replies are errors") {
  for (const char* bad : {"250-a\r\n251 b\r\n", "2500 x\r\n", "25 x\r\n", "199 x\r\n",
                          "600 x\r\n", "260 x\r\n", "250x\r\n", "\r\n", "abc\r\n", " 250 x\r\n",
                          "250\tx\r\n"}) {
    INFO(bad);
    CHECK(parse_smtp_reply(bad).state == SmtpReplyParse::State::kError);
  }
}

TEST_CASE("smtp client reply: line and line count limits") {
  using mailwright::mta::kMaxReplyLine;
  const std::string longest = "250 " + std::string(kMaxReplyLine - 6, 'x') + "\r\n";
  REQUIRE(longest.size() == mailwright::mta::kMaxReplyLine);
  CHECK(parse_smtp_reply(longest).complete());
  const std::string too_long = "250 " + std::string(kMaxReplyLine - 5, 'x') + "\r\n";
  CHECK(parse_smtp_reply(too_long).state == SmtpReplyParse::State::kError);
  // Without its LF yet: an error as soon as it cannot become a valid line.
  CHECK(parse_smtp_reply(std::string(mailwright::mta::kMaxReplyLine, '2')).state ==
        SmtpReplyParse::State::kError);

  std::string lines;
  for (std::size_t i = 0; i + 1 < mailwright::mta::kMaxReplyLines; ++i) lines += "250-x\r\n";
  CHECK(parse_smtp_reply(lines + "250 x\r\n").complete());
  CHECK(parse_smtp_reply(lines + "250-x\r\n250 x\r\n").state == SmtpReplyParse::State::kError);
}

TEST_CASE("smtp client reply: control octets never reach the text") {
  static constexpr char kReply[] = "550 5.1.1 a\x01" "b\rc\x7f" "d\0e\r\n";
  const auto p = parse_smtp_reply(std::string(kReply, sizeof kReply - 1));
  REQUIRE(p.complete());
  CHECK(p.reply.text == "a?b?c?d?e");
}

TEST_CASE("smtp client capabilities: EHLO keywords") {
  const auto p = parse_smtp_reply(
      "250-PIPELINING the domain line is not a keyword\r\n"
      "250-pipelining\r\n"
      "250-SIZE 35882577\r\n"
      "250-8BITMIME\r\n"
      "250-BINARYMIME\r\n"
      "250-SMTPUTF8\r\n"
      "250-DSN\r\n"
      "250-STARTTLS\r\n"
      "250-CHUNKING\r\n"
      "250-ENHANCEDSTATUSCODES\r\n"
      "250-AUTH PLAIN login CRAM-MD5 bad/mech\r\n"
      "250-AUTH=XOAUTH2 PLAIN\r\n"
      "250 VRFY\r\n");
  REQUIRE(p.complete());
  const auto caps = parse_ehlo_capabilities(p.reply);
  CHECK(caps.pipelining);
  CHECK(caps.size);
  CHECK(caps.size_limit == 35882577);
  CHECK(caps.eightbitmime);
  CHECK(caps.binarymime);
  CHECK(caps.smtputf8);
  CHECK(caps.dsn);
  CHECK(caps.starttls);
  CHECK(caps.chunking);
  CHECK(caps.enhanced_status_codes);
  CHECK(caps.auth == std::vector<std::string>{"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"});

  const auto q = parse_smtp_reply("250-mx\r\n250-SIZE\r\n250 SIZE 99999999999999999999999\r\n");
  const auto c2 = parse_ehlo_capabilities(q.reply);
  CHECK(c2.size);
  CHECK(c2.size_limit == 0);
  CHECK_FALSE(c2.pipelining);
  CHECK(c2.auth.empty());

  const auto single = parse_smtp_reply("250 mx.example.net\r\n");
  const auto c3 = parse_ehlo_capabilities(single.reply);
  CHECK_FALSE(c3.size);
  CHECK_FALSE(c3.starttls);
}

// --- the data encoder ----------------------------------------------------------------------

TEST_CASE("smtp client data: dot-stuffing and the terminator") {
  using Mode = SmtpDataEncoder::Mode;
  CHECK(encode_all(Mode::kDotStuff, {""}) == ".\r\n");
  CHECK(encode_all(Mode::kDotStuff, {}) == ".\r\n");
  CHECK(encode_all(Mode::kDotStuff, {".\r\n"}) == "..\r\n.\r\n");
  CHECK(encode_all(Mode::kDotStuff, {"a\r\n.\r\nb\r\n"}) == "a\r\n..\r\nb\r\n.\r\n");
  CHECK(encode_all(Mode::kDotStuff, {"a\r\n..x\r\n"}) == "a\r\n...x\r\n.\r\n");
  CHECK(encode_all(Mode::kDotStuff, {"a.b\r\n"}) == "a.b\r\n.\r\n");
  CHECK(encode_all(Mode::kDotStuff, {"no final line end"}) == "no final line end\r\n.\r\n");
  CHECK(encode_all(Mode::kDotStuff, {"\r\n"}) == "\r\n.\r\n");
}

TEST_CASE("smtp client data: bare CR and LF go out as CRLF") {
  using Mode = SmtpDataEncoder::Mode;
  SmtpDataEncoder e(Mode::kDotStuff);
  std::string out;
  e.encode("a\nb\rc\r\r\n.\n.x", out);
  e.finish(out);
  CHECK(out == "a\r\nb\r\nc\r\n\r\n..\r\n..x\r\n.\r\n");
  CHECK(e.repaired_line_ends() == 4);
  CHECK(encode_all(Mode::kDotStuff, {"x\r"}) == "x\r\n.\r\n");
  // The smuggling shapes all become ordinary, stuffed lines.
  CHECK(encode_all(Mode::kDotStuff, {"a\n.\nb\r\n"}) == "a\r\n..\r\nb\r\n.\r\n");
  CHECK(encode_all(Mode::kDotStuff, {"a\r.\rb\r\n"}) == "a\r\n..\r\nb\r\n.\r\n");
}

TEST_CASE("smtp client data: any split into pieces gives the same bytes") {
  using Mode = SmtpDataEncoder::Mode;
  const std::string message = ".start\r\nline\r\n.\r\n..two\r\nbare\nlf\rcr\r\n.\r\nend.";
  for (Mode mode : {Mode::kDotStuff, Mode::kCanonical, Mode::kBinary}) {
    const std::string whole = encode_all(mode, {message});
    for (std::size_t i = 0; i <= message.size(); ++i) {
      for (std::size_t j = i; j <= message.size(); ++j) {
        const std::string split = encode_all(
            mode, {message.substr(0, i), message.substr(i, j - i), message.substr(j)});
        INFO("mode " << static_cast<int>(mode) << " split at " << i << "," << j);
        REQUIRE(split == whole);
      }
    }
  }
  CHECK(encode_all(Mode::kCanonical, {message}) ==
        ".start\r\nline\r\n.\r\n..two\r\nbare\r\nlf\r\ncr\r\n.\r\nend.");
  CHECK(encode_all(Mode::kBinary, {message}) == message);
}

TEST_CASE("smtp client data: the server's DATA reader gives the message back") {
  const std::string message = "Subject: t\r\n\r\n.\r\n..\r\n.x\r\nlast line\r\n";
  SmtpDataEncoder e(SmtpDataEncoder::Mode::kDotStuff);
  std::string wire;
  for (char c : message) e.encode(std::string_view(&c, 1), wire);
  e.finish(wire);
  mailwright::smtp::DataReader reader({});
  std::string content;
  const auto feed = reader.feed(wire, content);
  CHECK(feed.done);
  CHECK(feed.consumed == wire.size());
  CHECK_FALSE(reader.outcome().reject);
  CHECK(content == message);
}

// --- 2. the session ------------------------------------------------------------------------

TEST_CASE("smtp client session: a pipelined transaction") {
  Client c;
  c.s.add_transaction(transaction({"bob@example.net", "carol@example.net"}));
  CHECK(c.finish().empty());  // nothing before the greeting
  CHECK(c.s.waiting_for() == SmtpWait::kGreeting);
  CHECK(c.say("220 mx.example.net ESMTP\r\n") == "EHLO client.example.org\r\n");
  CHECK(c.s.waiting_for() == SmtpWait::kHelo);
  CHECK(c.say(kEhloPipelining) ==
        "MAIL FROM:<alice@example.org> SIZE=1234\r\n"
        "RCPT TO:<bob@example.net>\r\n"
        "RCPT TO:<carol@example.net>\r\n"
        "DATA\r\n");
  CHECK(c.s.waiting_for() == SmtpWait::kMail);
  CHECK(c.say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n").empty());
  CHECK(c.s.waiting_for() == SmtpWait::kRcpt);
  CHECK_FALSE(c.s.wants_content());
  CHECK(c.say("250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n").empty());
  CHECK(c.s.wants_content());
  CHECK(c.s.waiting_for() == SmtpWait::kContent);
  CHECK(c.content("Subject: x\r\n\r\n", false) == "Subject: x\r\n\r\n");
  CHECK(c.s.content_offset() == 14);
  CHECK(c.content(".hidden\r\n", true) == "..hidden\r\n.\r\n");
  CHECK_FALSE(c.s.wants_content());
  CHECK(c.s.waiting_for() == SmtpWait::kDataEnd);
  CHECK(c.say("250 2.0.0 Ok: queued as ABC\r\n") == "QUIT\r\n");
  CHECK(c.s.transaction_done(0));
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& r = c.result(0, i);
    CHECK(r.state == DeliveryState::kDelivered);
    CHECK(r.code == 250);
    CHECK(r.status == "2.0.0");
    CHECK(r.stage == "end of DATA");
    CHECK(r.remote_host == "mx.example.net");
    CHECK(r.diagnostic_code() == "smtp; 250 2.0.0 Ok: queued as ABC");
    CHECK_FALSE(r.dsn_passed_on);
  }
  CHECK_FALSE(c.s.finished());
  c.say("221 2.0.0 Bye\r\n");
  CHECK(c.s.finished());
  CHECK_FALSE(c.s.outcome().try_next);
  CHECK(c.s.outcome().error.state == DeliveryState::kPending);
}

TEST_CASE("smtp client session: replies arriving an octet at a time") {
  Client c;
  c.s.add_transaction(transaction({"bob@example.net"}));
  c.finish();
  std::string sent;
  const std::string server = std::string("220 hi\r\n") + kEhloPipelining +
                             "250 ok\r\n250 ok\r\n354 go\r\n";
  for (char ch : server) sent += c.say(std::string_view(&ch, 1));
  CHECK(sent ==
        "EHLO client.example.org\r\n"
        "MAIL FROM:<alice@example.org> SIZE=1234\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n");
  CHECK(c.s.wants_content());
}

TEST_CASE("smtp client session: without PIPELINING, one command per reply") {
  Client c;
  c.s.add_transaction(transaction({"bob@example.net", "carol@example.net"}));
  c.finish();
  c.say("220 mx\r\n");
  CHECK(c.say(kEhloPlain) == "MAIL FROM:<alice@example.org> SIZE=1234\r\n");
  CHECK(c.say("250 ok\r\n") == "RCPT TO:<bob@example.net>\r\n");
  CHECK(c.say("250 ok\r\n") == "RCPT TO:<carol@example.net>\r\n");
  CHECK(c.say("550 5.1.1 <carol@example.net>: no such user\r\n") == "DATA\r\n");
  CHECK(c.say("354 go\r\n").empty());
  CHECK(c.content("hello\r\n", true) == "hello\r\n.\r\n");
  CHECK(c.say("250 2.0.0 queued\r\n") == "QUIT\r\n");
  CHECK(c.result(0, 0).state == DeliveryState::kDelivered);
  const auto& carol = c.result(0, 1);
  CHECK(carol.state == DeliveryState::kFailed);
  CHECK(carol.code == 550);
  CHECK(carol.status == "5.1.1");
  CHECK(carol.stage == "RCPT TO");
  CHECK(carol.summary() ==
        "host mx.example.net[192.0.2.25] said: 550 5.1.1 <carol@example.net>: no such user "
        "(in reply to RCPT TO command)");
}

TEST_CASE("smtp client session: EHLO refused falls back to HELO") {
  Client c;
  auto t = transaction({"bob@example.net"});
  t.body = BodyType::k8BitMime;
  c.s.add_transaction(t);
  c.finish();
  c.say("220 old.example.net SMTP\r\n");
  CHECK(c.say("502 5.5.1 EHLO not implemented\r\n") == "HELO client.example.org\r\n");
  // No extensions after HELO: no SIZE, no BODY (the 8-bit message goes anyway).
  CHECK(c.say("250 old.example.net\r\n") == "MAIL FROM:<alice@example.org>\r\n");
  CHECK_FALSE(c.s.capabilities().size);
  CHECK(c.say("250 ok\r\n") == "RCPT TO:<bob@example.net>\r\n");
}

TEST_CASE("smtp client session: trouble before MAIL defers and tries the next host") {
  SECTION("4xx to EHLO") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.say("220 mx\r\n");
    CHECK(c.say("451 4.3.2 not now\r\n") == "QUIT\r\n");
    CHECK(c.result(0, 0).state == DeliveryState::kDeferred);
    CHECK(c.result(0, 0).status == "4.3.2");
    CHECK(c.s.outcome().try_next);
  }
  SECTION("HELO refused too") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.say("220 mx\r\n");
    c.say("500 what\r\n");
    CHECK(c.say("550 5.7.1 go away\r\n") == "QUIT\r\n");
    CHECK(c.result(0, 0).state == DeliveryState::kDeferred);
    CHECK(c.result(0, 0).status == "4.7.1");
    CHECK(c.result(0, 0).code == 550);
    CHECK(c.s.outcome().try_next);
  }
  SECTION("a 554 greeting") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    CHECK(c.say("554 5.7.1 no thanks\r\n") == "QUIT\r\n");
    const auto& r = c.result(0, 0);
    CHECK(r.state == DeliveryState::kDeferred);
    CHECK(r.status == "4.7.1");
    CHECK(r.summary() ==
          "host mx.example.net[192.0.2.25] refused to talk to me: 554 5.7.1 no thanks");
    CHECK(c.s.outcome().try_next);
    c.say("221 bye\r\n");
    CHECK(c.s.finished());
  }
  SECTION("a 421 greeting: no QUIT") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    CHECK(c.say("421 4.7.0 too busy\r\n").empty());
    CHECK(c.s.finished());
    CHECK(c.s.outcome().try_next);
    CHECK(c.result(0, 0).status == "4.7.0");
  }
  SECTION("a reply that is not SMTP") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    CHECK(c.say("HTTP/1.1 400 Bad Request\r\n").empty());
    CHECK(c.s.finished());
    CHECK(c.s.outcome().try_next);
    CHECK(c.result(0, 0).status == "4.5.0");
    CHECK(c.result(0, 0).code == 0);
  }
}

TEST_CASE("smtp client session: STARTTLS required but not offered") {
  auto settings = plain_settings();
  settings.tls = SmtpTlsPolicy::kRequire;
  settings.tls_available = true;
  Client c(settings);
  c.s.add_transaction(transaction({"bob@example.net", "carol@example.net"}));
  c.say("220 mx\r\n");
  CHECK(c.say(kEhloPipelining) == "QUIT\r\n");
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& r = c.result(0, i);
    CHECK(r.state == DeliveryState::kDeferred);
    CHECK(r.status == "4.7.4");
    CHECK(r.reply == "TLS is required, but was not offered by host mx.example.net[192.0.2.25]");
  }
  CHECK(c.s.outcome().try_next);
  c.say("221 bye\r\n");
  CHECK(c.s.finished());

  SECTION("or refused") {
    Client d(settings);
    d.s.add_transaction(transaction({"bob@example.net"}));
    d.say("220 mx\r\n");
    CHECK(d.say("250-mx\r\n250 STARTTLS\r\n") == "STARTTLS\r\n");
    CHECK(d.say("454 4.7.0 TLS not available\r\n") == "QUIT\r\n");
    CHECK(d.result(0, 0).status == "4.7.4");
    CHECK(d.s.outcome().try_next);
  }
  SECTION("and no TLS context: a configuration error, no other host helps") {
    settings.tls_available = false;
    Client d(settings);
    d.s.add_transaction(transaction({"bob@example.net"}));
    d.say("220 mx\r\n");
    CHECK(d.say("250-mx\r\n250 STARTTLS\r\n") == "QUIT\r\n");
    CHECK(d.result(0, 0).status == "4.3.5");
    CHECK_FALSE(d.s.outcome().try_next);
  }
}

TEST_CASE("smtp client session: opportunistic STARTTLS, EHLO again, AUTH PLAIN") {
  auto settings = plain_settings();
  settings.tls = SmtpTlsPolicy::kOpportunistic;
  settings.tls_available = true;
  settings.credentials = mailwright::mta::SmtpCredentials{"user", "secret"};
  Client c(settings);
  c.s.add_transaction(transaction({"bob@example.net"}));
  c.finish();
  c.say("220 mx\r\n");
  CHECK(c.say("250-mx\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n") ==
        "STARTTLS\r\n");
  CHECK(c.s.waiting_for() == SmtpWait::kStarttls);
  // Replies injected in the clear behind the 220 (a man in the middle's) are never read.
  CHECK(c.say("220 2.0.0 go ahead\r\n250 2.1.0 injected\r\n").empty());
  CHECK(c.s.wants_tls());
  CHECK(c.say("250 more injection\r\n").empty());
  std::string out;
  c.s.tls_started(out);
  CHECK(out == "EHLO client.example.org\r\n");
  CHECK(c.s.tls_active());
  CHECK_FALSE(c.s.capabilities().pipelining);  // forgotten
  const std::string plain = mailwright::encode_base64(std::string("\0user\0secret", 12));
  CHECK(c.say("250-mx\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n") ==
        "AUTH PLAIN " + plain + "\r\n");
  CHECK(c.s.waiting_for() == SmtpWait::kAuth);
  CHECK(c.say("235 2.7.0 Authentication successful\r\n") ==
        "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n");
}

TEST_CASE("smtp client session: opportunistic STARTTLS refused goes on in plaintext") {
  auto settings = plain_settings();
  settings.tls = SmtpTlsPolicy::kOpportunistic;
  settings.tls_available = true;
  Client c(settings);
  c.s.add_transaction(transaction({"bob@example.net"}));
  c.say("220 mx\r\n");
  CHECK(c.say("250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n") == "STARTTLS\r\n");
  CHECK(c.say("454 4.7.0 TLS not available due to local problem\r\n") ==
        "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n");
  CHECK_FALSE(c.s.tls_active());
}

TEST_CASE("smtp client session: a failed handshake") {
  for (auto policy : {SmtpTlsPolicy::kOpportunistic, SmtpTlsPolicy::kRequire}) {
    auto settings = plain_settings();
    settings.tls = policy;
    settings.tls_available = true;
    Client c(settings);
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.say("220 mx\r\n");
    c.say("250-mx\r\n250 STARTTLS\r\n");
    c.say("220 go\r\n");
    REQUIRE(c.s.wants_tls());
    std::string out;
    c.s.tls_failed("wrong version number", out);
    CHECK(out.empty());
    CHECK(c.s.finished());
    CHECK(c.result(0, 0).state == DeliveryState::kDeferred);
    CHECK(c.result(0, 0).status == "4.7.5");
    CHECK(c.result(0, 0).reply ==
          "TLS handshake with host mx.example.net[192.0.2.25] failed: wrong version number");
    // Opportunistic: the same address again in plaintext; required: the next host.
    CHECK(c.s.outcome().retry_without_tls == (policy == SmtpTlsPolicy::kOpportunistic));
    CHECK(c.s.outcome().try_next == (policy == SmtpTlsPolicy::kRequire));
  }
}

TEST_CASE("smtp client session: AUTH") {
  auto settings = plain_settings();
  settings.credentials = mailwright::mta::SmtpCredentials{"user", "secret"};

  SECTION("never in plaintext unless allowed") {
    Client c(settings);
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.say("220 mx\r\n");
    CHECK(c.say("250-mx\r\n250 AUTH PLAIN\r\n") == "QUIT\r\n");
    CHECK(c.result(0, 0).status == "4.7.10");
    CHECK(c.s.outcome().try_next);
  }
  SECTION("LOGIN when PLAIN is not offered") {
    settings.auth_without_tls = true;
    Client c(settings);
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.say("220 mx\r\n");
    CHECK(c.say("250-mx\r\n250 AUTH LOGIN CRAM-MD5\r\n") == "AUTH LOGIN\r\n");
    CHECK(c.say("334 VXNlcm5hbWU6\r\n") == "dXNlcg==\r\n");
    CHECK(c.say("334 UGFzc3dvcmQ6\r\n") == "c2VjcmV0\r\n");
    CHECK(c.say("235 2.7.0 ok\r\n") == "MAIL FROM:<alice@example.org>\r\n");
  }
  SECTION("refused credentials defer, never bounce") {
    settings.auth_without_tls = true;
    Client c(settings);
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.say("220 mx\r\n");
    c.say("250-mx\r\n250 AUTH PLAIN\r\n");
    CHECK(c.say("535 5.7.8 Authentication credentials invalid\r\n") == "QUIT\r\n");
    const auto& r = c.result(0, 0);
    CHECK(r.state == DeliveryState::kDeferred);
    CHECK(r.status == "4.7.8");
    CHECK(r.code == 535);
    CHECK(r.stage == "AUTH");
    CHECK(c.s.outcome().try_next);
  }
  SECTION("no mechanism in common") {
    settings.auth_without_tls = true;
    Client c(settings);
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.say("220 mx\r\n");
    CHECK(c.say("250-mx\r\n250 AUTH CRAM-MD5\r\n") == "QUIT\r\n");
    CHECK(c.result(0, 0).status == "4.7.4");
  }
  SECTION("credentials that would break the PLAIN message") {
    settings.auth_without_tls = true;
    settings.credentials->user = std::string("us\0er", 5);
    Client c(settings);
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.say("220 mx\r\n");
    CHECK(c.say("250-mx\r\n250 AUTH PLAIN\r\n") == "QUIT\r\n");
    CHECK(c.result(0, 0).status == "4.3.5");
    CHECK_FALSE(c.s.outcome().try_next);
  }
}

TEST_CASE("smtp client session: DSN parameters only when the peer offers DSN") {
  auto t = transaction({"bob@example.net"});
  t.ret = DsnRet::kHeaders;
  t.envid = "id+1=2 x";
  t.recipients[0].notify = mailwright::mta::kNotifySuccess | mailwright::mta::kNotifyFailure;
  t.recipients[0].orcpt = "rfc822;Bob@Example.NET";
  t.recipients.push_back({"carol@example.net", "", mailwright::mta::kNotifyNever});

  Client with(plain_settings());
  with.s.add_transaction(t);
  with.say("220 mx\r\n");
  CHECK(with.say("250-mx\r\n250-PIPELINING\r\n250 DSN\r\n") ==
        "MAIL FROM:<alice@example.org> RET=HDRS ENVID=id+2B1+3D2+20x\r\n"
        "RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob@Example.NET\r\n"
        "RCPT TO:<carol@example.net> NOTIFY=NEVER\r\n"
        "DATA\r\n");
  with.say("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  with.content("x\r\n", true);
  with.say("250 ok\r\n");
  CHECK(with.result(0, 0).dsn_passed_on);

  Client without(plain_settings());
  without.s.add_transaction(t);
  without.say("220 mx\r\n");
  CHECK(without.say("250-mx\r\n250 PIPELINING\r\n") ==
        "MAIL FROM:<alice@example.org>\r\n"
        "RCPT TO:<bob@example.net>\r\n"
        "RCPT TO:<carol@example.net>\r\n"
        "DATA\r\n");
  without.say("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  without.content("x\r\n", true);
  without.say("250 ok\r\n");
  // The queue manager owes NOTIFY=SUCCESS recipients a "relayed" DSN.
  CHECK(without.result(0, 0).state == DeliveryState::kDelivered);
  CHECK_FALSE(without.result(0, 0).dsn_passed_on);
}

TEST_CASE("smtp client session: BODY, SMTPUTF8 and SIZE against what the peer offers") {
  SECTION("8BITMIME declared only when offered") {
    auto t = transaction({"bob@example.net"});
    t.body = BodyType::k8BitMime;
    Client c;
    c.s.add_transaction(t);
    c.say("220 mx\r\n");
    CHECK(c.say("250-mx\r\n250 8BITMIME\r\n") == "MAIL FROM:<alice@example.org> BODY=8BITMIME\r\n");
    Client d;
    d.s.add_transaction(t);
    d.say("220 mx\r\n");
    CHECK(d.say("250-mx\r\n250 DSN\r\n") == "MAIL FROM:<alice@example.org>\r\n");
  }
  SECTION("SMTPUTF8 to a peer without it fails with 5.6.7, nothing is sent") {
    auto t = transaction({"bob@example.net"});
    t.smtputf8 = true;
    t.sender = "j\xc3\xb6rg@example.org";
    Client c;
    c.s.add_transaction(t);
    c.finish();
    c.say("220 mx\r\n");
    CHECK(c.say(kEhloPipelining) == "QUIT\r\n");
    CHECK(c.result(0, 0).state == DeliveryState::kFailed);
    CHECK(c.result(0, 0).status == "5.6.7");
    CHECK_FALSE(c.s.outcome().try_next);
    Client d;
    d.s.add_transaction(t);
    d.say("220 mx\r\n");
    CHECK(d.say("250-mx\r\n250 SMTPUTF8\r\n") ==
          "MAIL FROM:<j\xc3\xb6rg@example.org> SMTPUTF8\r\n");
  }
  SECTION("larger than the peer's SIZE: 5.3.4 without sending") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.finish();
    c.say("220 mx\r\n");
    CHECK(c.say("250-mx\r\n250 SIZE 1000\r\n") == "QUIT\r\n");
    CHECK(c.result(0, 0).state == DeliveryState::kFailed);
    CHECK(c.result(0, 0).status == "5.3.4");
  }
  SECTION("BINARYMIME needs CHUNKING and BINARYMIME") {
    auto t = transaction({"bob@example.net"});
    t.body = BodyType::kBinaryMime;
    Client c;
    c.s.add_transaction(t);
    c.say("220 mx\r\n");
    c.say("250-mx\r\n250 CHUNKING\r\n");
    CHECK(c.result(0, 0).status == "5.6.3");
    Client d;
    d.s.add_transaction(t);
    d.say("220 mx\r\n");
    CHECK(d.say("250-mx\r\n250-CHUNKING\r\n250 BINARYMIME\r\n") ==
          "MAIL FROM:<alice@example.org> BODY=BINARYMIME\r\n");
  }
}

TEST_CASE("smtp client session: dot-stuffing across the pieces of the message") {
  Client c;
  c.s.add_transaction(transaction({"bob@example.net"}));
  c.say("220 mx\r\n");
  c.say(kEhloPipelining);
  c.say("250 ok\r\n250 ok\r\n354 go\r\n");
  std::string wire;
  // "a\r\n.b\r\n.\r\n" with a cut between CR and LF, right before a dot, and a lone ".".
  for (const char* piece : {"a\r", "\n", ".b\r\n", ".", "\r\n"}) wire += c.content(piece, false);
  wire += c.content("", true);
  CHECK(wire == "a\r\n..b\r\n..\r\n.\r\n");
  CHECK(c.s.content_offset() == 10);
}

TEST_CASE("smtp client session: BDAT when CHUNKING is offered") {
  SECTION("pipelined chunks") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.finish();
    c.say("220 mx\r\n");
    CHECK(c.say("250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n") ==
          "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\n");
    CHECK_FALSE(c.s.wants_content());  // not before the RCPT replies
    CHECK(c.say("250 ok\r\n250 ok\r\n").empty());
    CHECK(c.s.wants_content());
    CHECK(c.content(".dot\r\n", false) == "BDAT 6\r\n.dot\r\n");
    CHECK(c.s.wants_content());  // no waiting with PIPELINING
    CHECK(c.content("", false).empty());
    CHECK(c.content("end", true) == "BDAT 3 LAST\r\nend");
    CHECK(c.s.waiting_for() == SmtpWait::kDataEnd);
    CHECK(c.say("250 2.0.0 6 octets\r\n").empty());
    CHECK(c.say("250 2.0.0 queued\r\n") == "QUIT\r\n");
    CHECK(c.result(0, 0).state == DeliveryState::kDelivered);
    CHECK(c.result(0, 0).stage == "BDAT");
  }
  SECTION("without PIPELINING each chunk waits for its reply") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.say("220 mx\r\n");
    c.say("250-mx\r\n250 CHUNKING\r\n");
    c.say("250 ok\r\n");
    CHECK(c.say("250 ok\r\n").empty());
    CHECK(c.content("abc\r\n", false) == "BDAT 5\r\nabc\r\n");
    CHECK_FALSE(c.s.wants_content());
    c.say("250 ok\r\n");
    CHECK(c.s.wants_content());
    CHECK(c.content("", true) == "BDAT 0 LAST\r\n");
  }
  SECTION("a refused chunk ends the message") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.finish();
    c.say("220 mx\r\n");
    c.say("250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
    c.say("250 ok\r\n250 ok\r\n");
    c.content("abc\r\n", false);
    c.content("def\r\n", false);
    CHECK(c.say("552 5.3.4 too big\r\n").empty());
    CHECK_FALSE(c.s.wants_content());
    CHECK(c.result(0, 0).state == DeliveryState::kFailed);
    CHECK(c.say("503 5.5.1 earlier chunk failed\r\n") == "QUIT\r\n");
    CHECK(c.result(0, 0).status == "5.3.4");
  }
}

TEST_CASE("smtp client session: 421 in the middle of a transaction") {
  Client c;
  c.s.add_transaction(transaction({"bob@example.net", "carol@example.net"}));
  c.finish();
  c.say("220 mx\r\n");
  c.say(kEhloPipelining);
  CHECK(c.say("250 2.1.0 ok\r\n421 4.3.2 shutting down\r\n").empty());  // no QUIT after 421
  CHECK(c.s.finished());
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(c.result(0, i).state == DeliveryState::kDeferred);
    CHECK(c.result(0, i).status == "4.3.2");
    CHECK(c.result(0, i).code == 421);
  }
  CHECK(c.s.outcome().try_next);
}

TEST_CASE("smtp client session: 452 to one RCPT defers that recipient only") {
  Client c;
  c.s.add_transaction(transaction({"a@example.net", "b@example.net", "c@example.net"}));
  c.finish();
  c.say("220 mx\r\n");
  c.say(kEhloPipelining);
  c.say("250 ok\r\n250 ok\r\n452 4.5.3 Too many recipients\r\n250 ok\r\n354 go\r\n");
  CHECK(c.content("x\r\n", true) == "x\r\n.\r\n");
  CHECK(c.say("250 2.0.0 queued\r\n") == "QUIT\r\n");
  CHECK(c.result(0, 0).state == DeliveryState::kDelivered);
  CHECK(c.result(0, 1).state == DeliveryState::kDeferred);
  CHECK(c.result(0, 1).code == 452);
  CHECK(c.result(0, 1).status == "4.5.3");
  CHECK(c.result(0, 2).state == DeliveryState::kDelivered);
  CHECK_FALSE(c.s.outcome().try_next);
}

TEST_CASE("smtp client session: 5xx after the data fails every accepted recipient") {
  Client c;
  c.s.add_transaction(transaction({"a@example.net", "b@example.net", "c@example.net"}));
  c.finish();
  c.say("220 mx\r\n");
  c.say(kEhloPipelining);
  c.say("250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n354 go\r\n");
  c.content("x\r\n", true);
  CHECK(c.say("554 5.6.0 content rejected\r\n") == "QUIT\r\n");
  CHECK(c.result(0, 0).state == DeliveryState::kFailed);
  CHECK(c.result(0, 0).reply == "554 5.6.0 content rejected");
  CHECK(c.result(0, 0).stage == "end of DATA");
  CHECK(c.result(0, 1).reply == "550 5.1.1 unknown");
  CHECK(c.result(0, 2).status == "5.6.0");
  CHECK_FALSE(c.s.outcome().try_next);

  SECTION("and 4xx defers them") {
    Client d;
    d.s.add_transaction(transaction({"a@example.net"}));
    d.say("220 mx\r\n");
    d.say(kEhloPipelining);
    d.say("250 ok\r\n250 ok\r\n354 go\r\n");
    d.content("x\r\n", true);
    d.say("451 4.3.0 try later\r\n");
    CHECK(d.result(0, 0).state == DeliveryState::kDeferred);
    CHECK_FALSE(d.s.outcome().try_next);
  }
}

TEST_CASE("smtp client session: MAIL refused while pipelined") {
  SECTION("4xx: the RCPT replies mean nothing, a 354 gets a lone dot, next host") {
    Client c;
    c.s.add_transaction(transaction({"a@example.net", "b@example.net"}));
    c.finish();
    c.say("220 mx\r\n");
    c.say(kEhloPipelining);
    CHECK(c.say("451 4.7.1 greylisted\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"
                "354 go anyway\r\n") == ".\r\n");
    CHECK(c.say("503 5.5.1 no\r\n") == "QUIT\r\n");
    for (std::size_t i = 0; i < 2; ++i) {
      CHECK(c.result(0, i).state == DeliveryState::kDeferred);
      CHECK(c.result(0, i).reply == "451 4.7.1 greylisted");
      CHECK(c.result(0, i).stage == "MAIL FROM");
    }
    CHECK(c.s.outcome().try_next);
  }
  SECTION("5xx is final") {
    Client c;
    c.s.add_transaction(transaction({"a@example.net"}));
    c.finish();
    c.say("220 mx\r\n");
    c.say(kEhloPipelining);
    CHECK(c.say("550 5.7.1 sender rejected\r\n503 need MAIL\r\n554 no valid recipients\r\n") ==
          "QUIT\r\n");
    CHECK(c.result(0, 0).state == DeliveryState::kFailed);
    CHECK(c.result(0, 0).status == "5.7.1");
    CHECK_FALSE(c.s.outcome().try_next);
  }
  SECTION("every RCPT refused: no data") {
    Client c;
    c.s.add_transaction(transaction({"a@example.net"}));
    c.finish();
    c.say("220 mx\r\n");
    c.say(kEhloPipelining);
    CHECK(c.say("250 ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n") == "QUIT\r\n");
    CHECK(c.result(0, 0).state == DeliveryState::kFailed);
    CHECK(c.result(0, 0).status == "5.1.1");
  }
}

TEST_CASE("smtp client session: several transactions on one connection, RSET between") {
  Client c;
  c.s.add_transaction(transaction({"a@example.net"}));
  auto second = transaction({"b@example.net"});
  second.sender = "";
  c.s.add_transaction(second);
  c.say("220 mx\r\n");
  c.say(kEhloPipelining);
  c.say("250 ok\r\n250 ok\r\n354 go\r\n");
  c.content("one\r\n", true);
  CHECK(c.say("250 2.0.0 queued\r\n") == "RSET\r\n");
  CHECK(c.s.waiting_for() == SmtpWait::kRset);
  CHECK(c.say("250 2.0.0 ok\r\n") ==
        "MAIL FROM:<> SIZE=1234\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
  c.say("250 ok\r\n250 ok\r\n354 go\r\n");
  c.content("two\r\n", true);
  CHECK(c.say("250 2.0.0 queued\r\n").empty());
  CHECK(c.s.idle());
  CHECK(c.result(0, 0).state == DeliveryState::kDelivered);
  CHECK(c.result(1, 0).state == DeliveryState::kDelivered);

  SECTION("a third one later, as from the connection cache") {
    const std::size_t third = c.s.add_transaction(transaction({"c@example.net"}));
    CHECK(c.advance() == "RSET\r\n");
    c.say("250 ok\r\n");
    c.say("250 ok\r\n250 ok\r\n354 go\r\n");
    c.content("three\r\n", true);
    c.say("250 ok\r\n");
    CHECK(c.result(third, 0).state == DeliveryState::kDelivered);
    CHECK(c.finish() == "QUIT\r\n");
  }
  SECTION("a dead connection shows at RSET: stale, nothing attempted") {
    const std::size_t third = c.s.add_transaction(transaction({"c@example.net"}));
    CHECK(c.advance() == "RSET\r\n");
    CHECK(c.say("421 4.4.2 idle timeout\r\n").empty());
    CHECK(c.s.finished());
    CHECK(c.s.outcome().stale);
    CHECK(c.result(third, 0).state == DeliveryState::kDeferred);
    CHECK(c.result(0, 0).state == DeliveryState::kDelivered);  // untouched
  }
  SECTION("or as a closed connection") {
    c.s.add_transaction(transaction({"c@example.net"}));
    c.advance();
    c.s.connection_lost(SmtpLoss::kClosed, "");
    CHECK(c.s.outcome().stale);
    CHECK(c.s.finished());
  }
  SECTION("a server that speaks while idle") {
    CHECK(c.say("421 4.4.2 closing idle connection\r\n").empty());
    CHECK(c.s.finished());
    CHECK_FALSE(c.s.idle());
  }
}

TEST_CASE("smtp client session: unsafe addresses and names never reach the wire") {
  SECTION("recipients") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net>\r\nRSET", "ok@example.net", "a b@c",
                                     "x@example.net> NOTIFY=NEVER", "postmaster"}));
    c.say("220 mx\r\n");
    const std::string sent = c.say(kEhloPipelining);
    CHECK(sent ==
          "MAIL FROM:<alice@example.org> SIZE=1234\r\n"
          "RCPT TO:<ok@example.net>\r\n"
          "RCPT TO:<postmaster>\r\n"
          "DATA\r\n");
    CHECK(c.result(0, 0).state == DeliveryState::kFailed);
    CHECK(c.result(0, 0).status == "5.1.3");
    CHECK(c.result(0, 0).code == 0);
    CHECK(c.result(0, 2).status == "5.1.3");
    CHECK(c.result(0, 3).status == "5.1.3");
  }
  SECTION("the sender") {
    Client c;
    auto t = transaction({"bob@example.net"});
    t.sender = "alice@example.org>\r\nRCPT TO:<victim@example.com";
    c.s.add_transaction(t);
    c.finish();
    c.say("220 mx\r\n");
    CHECK(c.say(kEhloPipelining) == "QUIT\r\n");
    CHECK(c.result(0, 0).status == "5.1.7");
  }
  SECTION("UTF-8 only with SMTPUTF8") {
    Client c;
    c.s.add_transaction(transaction({"j\xc3\xb6rg@example.net"}));
    c.say("220 mx\r\n");
    c.say(kEhloPipelining);
    CHECK(c.result(0, 0).status == "5.1.3");
  }
  SECTION("the HELO name") {
    auto settings = plain_settings();
    settings.helo_name = "client.example.org\r\nMAIL FROM:<x@y>";
    Client c(settings);
    c.s.add_transaction(transaction({"bob@example.net"}));
    CHECK(c.say("220 mx\r\n") == "QUIT\r\n");
    CHECK(c.result(0, 0).status == "4.3.5");
    settings.helo_name = "[192.0.2.1]";
    Client d(settings);
    CHECK(d.say("220 mx\r\n") == "EHLO [192.0.2.1]\r\n");
  }
}

TEST_CASE("smtp client session: a lost connection") {
  SECTION("before the end of the message: next host") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.say("220 mx\r\n");
    c.say(kEhloPipelining);
    c.s.connection_lost(SmtpLoss::kClosed, "");
    CHECK(c.s.finished());
    CHECK(c.result(0, 0).state == DeliveryState::kDeferred);
    CHECK(c.result(0, 0).status == "4.4.2");
    CHECK(c.result(0, 0).reply ==
          "lost connection with host mx.example.net[192.0.2.25] while sending MAIL FROM");
    CHECK(c.s.outcome().try_next);
  }
  SECTION("after the end of the message: no other host, it may have been delivered") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.say("220 mx\r\n");
    c.say(kEhloPipelining);
    c.say("250 ok\r\n250 ok\r\n354 go\r\n");
    c.content("x\r\n", true);
    c.s.connection_lost(SmtpLoss::kTimeout, "");
    CHECK(c.result(0, 0).state == DeliveryState::kDeferred);
    CHECK(c.result(0, 0).reply ==
          "conversation with host mx.example.net[192.0.2.25] timed out while sending end of "
          "data -- message may be sent more than once");
    CHECK_FALSE(c.s.outcome().try_next);
  }
  SECTION("after QUIT: nothing changes") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.finish();
    c.say("220 mx\r\n");
    c.say(kEhloPipelining);
    c.say("250 ok\r\n250 ok\r\n354 go\r\n");
    c.content("x\r\n", true);
    c.say("250 ok\r\n");
    c.s.connection_lost(SmtpLoss::kClosed, "");
    CHECK(c.result(0, 0).state == DeliveryState::kDelivered);
    CHECK(c.s.outcome().error.state == DeliveryState::kPending);
  }
  SECTION("the message cannot be read: the connection is dropped unterminated") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.say("220 mx\r\n");
    c.say(kEhloPipelining);
    c.say("250 ok\r\n250 ok\r\n354 go\r\n");
    c.content("half a mess", false);
    c.s.content_failed(mailwright::Error::temporary(74, "4.3.0", "read error"));
    CHECK(c.s.finished());
    CHECK(c.result(0, 0).status == "4.3.0");
    CHECK_FALSE(c.s.outcome().try_next);
  }
}

TEST_CASE("smtp client session: a reply in the middle of DATA ends the connection") {
  Client c;
  c.s.add_transaction(transaction({"bob@example.net"}));
  c.finish();
  c.say("220 mx\r\n");
  c.say(kEhloPipelining);
  c.say("250 ok\r\n250 ok\r\n354 go\r\n");
  c.content("a lot\r\n", false);
  CHECK(c.say("552 5.3.4 message too big\r\n").empty());
  CHECK(c.s.finished());
  CHECK_FALSE(c.s.wants_content());
  CHECK(c.result(0, 0).state == DeliveryState::kFailed);
  CHECK(c.result(0, 0).status == "5.3.4");
}

TEST_CASE("smtp client session: a 2xx where it cannot mean success delivers nothing") {
  SECTION("250 to DATA") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.say("220 mx\r\n");
    c.say(kEhloPipelining);
    CHECK(c.say("250 ok\r\n250 ok\r\n250 sure\r\n").empty());
    CHECK(c.s.finished());
    CHECK(c.result(0, 0).state == DeliveryState::kDeferred);
    CHECK(c.result(0, 0).status == "4.5.0");
    CHECK(c.s.outcome().try_next);
  }
  SECTION("250 in the middle of the message") {
    Client c;
    c.s.add_transaction(transaction({"bob@example.net"}));
    c.say("220 mx\r\n");
    c.say(kEhloPipelining);
    c.say("250 ok\r\n250 ok\r\n354 go\r\n");
    c.content("half\r\n", false);
    CHECK(c.say("250 2.0.0 queued already?\r\n").empty());
    CHECK(c.s.finished());
    CHECK(c.result(0, 0).state == DeliveryState::kDeferred);
    CHECK(c.result(0, 0).status == "4.5.0");
  }
  SECTION("354 to RSET") {
    Client c;
    c.s.add_transaction(transaction({"a@example.net"}));
    c.s.add_transaction(transaction({"b@example.net"}));
    c.say("220 mx\r\n");
    c.say(kEhloPipelining);
    c.say("250 ok\r\n250 ok\r\n354 go\r\n");
    c.content("x\r\n", true);
    CHECK(c.say("250 ok\r\n") == "RSET\r\n");
    CHECK(c.say("354 what\r\n") == "QUIT\r\n");
    CHECK(c.s.outcome().stale);
    CHECK(c.result(1, 0).state == DeliveryState::kDeferred);
  }
}

TEST_CASE("smtp client session: transactions added to a closed session are deferred") {
  Client c;
  c.say("421 busy\r\n");
  const auto t = c.s.add_transaction(transaction({"bob@example.net"}));
  CHECK(c.s.transaction_done(t));
  CHECK(c.result(t, 0).state == DeliveryState::kDeferred);
}

// --- 3. the driver, against fake servers ---------------------------------------------------------

namespace {

// A small scripted SMTP server on 127.0.0.1 in the test's event loop. Records every command
// line and every message it receives (DATA unstuffed, BDAT as sent).
class FakeServer {
 public:
  explicit FakeServer(event_base* base, SSL_CTX* tls = nullptr) : base_(base), tls_(tls) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listener_.reset(evconnlistener_new_bind(base, &FakeServer::on_accept, this,
                                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                            reinterpret_cast<sockaddr*>(&sin), sizeof sin));
    REQUIRE(listener_);
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    getsockname(evconnlistener_get_fd(listener_.get()), reinterpret_cast<sockaddr*>(&bound), &len);
    port = ntohs(bound.sin_port);
  }

  SmtpDestination destination(std::string name = "mx.test") const {
    SmtpDestination d;
    d.name = std::move(name);
    d.addresses.push_back(loopback());
    d.port = port;
    return d;
  }

  static sockaddr_storage loopback() {
    sockaddr_storage ss{};
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ss;
  }

  std::uint16_t port = 0;
  std::string greeting = "220 fake.test ESMTP\r\n";
  std::string ehlo = "250-fake.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 DSN\r\n";
  bool silent = false;           // never greets
  bool fake_starttls = false;    // says 220 to STARTTLS and then speaks no TLS
  // Overrides the reply to a command line (return nullopt for the default).
  std::function<std::optional<std::string>(const std::string&)> hook;

  int connections = 0;
  std::vector<std::string> commands;
  std::vector<std::string> messages;

 private:
  struct Client {
    FakeServer* server = nullptr;
    BufferEvent bev;
    std::string buf;
    enum class Mode { kCommand, kData, kBdat } mode = Mode::kCommand;
    std::uint64_t left = 0;
    bool last = false;
    std::string message;
    std::string bdat_reply;
    bool tls = false;
    bool quitting = false;
    bool garbage = false;  // fake_starttls: answers the ClientHello with plaintext
  };

  static void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
    auto* self = static_cast<FakeServer*>(arg);
    ++self->connections;
    evutil_make_socket_nonblocking(fd);
    auto c = std::make_unique<Client>();
    c->server = self;
    c->bev.reset(bufferevent_socket_new(self->base_, fd, BEV_OPT_CLOSE_ON_FREE));
    bufferevent_setcb(c->bev.get(), &FakeServer::on_read, &FakeServer::on_write,
                      &FakeServer::on_event, c.get());
    bufferevent_enable(c->bev.get(), EV_READ | EV_WRITE);
    if (!self->silent) {
      bufferevent_write(c->bev.get(), self->greeting.data(), self->greeting.size());
    }
    self->clients_.push_back(std::move(c));
  }

  static void on_write(bufferevent*, void* arg) {
    auto* c = static_cast<Client*>(arg);
    if (c->quitting) c->bev.reset();
  }

  static void on_event(bufferevent*, short what, void* arg) {
    auto* c = static_cast<Client*>(arg);
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) c->bev.reset();
  }

  static void on_read(bufferevent* bev, void* arg) {
    auto* c = static_cast<Client*>(arg);
    evbuffer* in = bufferevent_get_input(bev);
    const std::size_t n = evbuffer_get_length(in);
    std::string data(n, '\0');
    evbuffer_remove(in, data.data(), n);
    c->buf += data;
    c->server->process(*c);
  }

  void send(Client& c, const std::string& text) {
    if (c.bev) bufferevent_write(c.bev.get(), text.data(), text.size());
  }

  void process(Client& c) {
    while (c.bev && !c.quitting) {
      if (c.garbage) {
        if (!c.buf.empty()) send(c, "this is no TLS handshake\r\n");
        c.buf.clear();
        return;
      }
      if (c.mode == Client::Mode::kData) {
        std::string all = "\r\n" + c.buf;  // the DATA line's CRLF counts as a line start
        const std::size_t end = all.find("\r\n.\r\n");
        if (end == std::string::npos) return;
        std::string content = all.substr(2, end == 0 ? 0 : end);
        if (end == 0) content.clear();
        c.buf.erase(0, end + 3);
        // Undo the stuffing.
        std::string unstuffed;
        bool line_start = true;
        for (std::size_t i = 0; i < content.size(); ++i) {
          if (line_start && content[i] == '.') {
            line_start = false;
            continue;
          }
          unstuffed += content[i];
          line_start = content[i] == '\n';
        }
        messages.push_back(unstuffed);
        c.mode = Client::Mode::kCommand;
        send(c, "250 2.0.0 Ok: queued\r\n");
        continue;
      }
      if (c.mode == Client::Mode::kBdat) {
        const auto take =
            static_cast<std::size_t>(std::min<std::uint64_t>(c.left, c.buf.size()));
        c.message += c.buf.substr(0, take);
        c.buf.erase(0, take);
        c.left -= take;
        if (c.left > 0) return;
        c.mode = Client::Mode::kCommand;
        if (c.last) {
          messages.push_back(c.message);
          c.message.clear();
        }
        send(c, c.bdat_reply);
        continue;
      }
      const std::size_t eol = c.buf.find("\r\n");
      if (eol == std::string::npos) return;
      const std::string line = c.buf.substr(0, eol);
      c.buf.erase(0, eol + 2);
      commands.push_back(line);
      command(c, line);
    }
  }

  void command(Client& c, const std::string& line) {
    std::string verb = line.substr(0, line.find(' '));
    for (char& ch : verb) ch = static_cast<char>(toupper(static_cast<unsigned char>(ch)));
    std::optional<std::string> reply;
    if (hook) reply = hook(line);
    if (verb == "BDAT") {
      c.left = std::stoull(line.substr(5));
      c.last = line.find("LAST") != std::string::npos;
      c.bdat_reply = reply.value_or(c.last ? "250 2.0.0 Ok: queued\r\n" : "250 2.0.0 chunk\r\n");
      c.mode = Client::Mode::kBdat;
      return;
    }
    if (!reply) {
      if (verb == "EHLO") {
        reply = ehlo;
        if (c.tls) {
          // Never STARTTLS twice.
          const std::size_t at = reply->find("250-STARTTLS\r\n");
          if (at != std::string::npos) reply->erase(at, 14);
        }
      } else if (verb == "HELO") {
        reply = "250 fake.test\r\n";
      } else if (verb == "DATA") {
        reply = "354 go ahead\r\n";
      } else if (verb == "QUIT") {
        reply = "221 2.0.0 bye\r\n";
      } else if (verb == "STARTTLS") {
        reply = "220 2.0.0 ready\r\n";
      } else {
        reply = "250 2.0.0 Ok\r\n";
      }
    }
    send(c, *reply);
    if (verb == "DATA" && reply->rfind("354", 0) == 0) c.mode = Client::Mode::kData;
    if (verb == "QUIT") c.quitting = true;
    if (verb == "STARTTLS" && reply->rfind("220", 0) == 0) {
      if (fake_starttls) {
        c.garbage = true;
        return;
      }
      SSL* ssl = SSL_new(tls_);
      bufferevent* filter = bufferevent_openssl_filter_new(base_, c.bev.get(), ssl,
                                                           BUFFEREVENT_SSL_ACCEPTING,
                                                           BEV_OPT_CLOSE_ON_FREE);
      REQUIRE(filter != nullptr);
      c.bev.release();
      c.bev.reset(filter);
      c.tls = true;
      c.buf.clear();
      bufferevent_setcb(filter, &FakeServer::on_read, &FakeServer::on_write, &FakeServer::on_event,
                        &c);
      bufferevent_enable(filter, EV_READ | EV_WRITE);
    }
  }

  event_base* base_;
  SSL_CTX* tls_;
  ConnListener listener_;
  std::vector<std::unique_ptr<Client>> clients_;
};

// A message file as the queue has it: an envelope, then the message at an offset.
class MessageFile {
 public:
  explicit MessageFile(const std::string& message) {
    char path[] = "/tmp/mw_smtp_client_XXXXXX";
    fd_ = mkstemp(path);
    REQUIRE(fd_ >= 0);
    unlink(path);
    const std::string envelope = "MWQUEUE 1\nEND\n";
    const std::string all = envelope + message;
    REQUIRE(write(fd_, all.data(), all.size()) == static_cast<ssize_t>(all.size()));
    offset = envelope.size();
    length = message.size();
  }
  ~MessageFile() { close(fd_); }
  int fd() const { return fd_; }
  std::uint64_t offset = 0;
  std::uint64_t length = 0;

 private:
  int fd_ = -1;
};

struct Loop {
  // A write to a socket the peer closed must be an error, not the end of the test run (the
  // daemons ignore SIGPIPE for the same reason: libmail/daemon.cpp).
  Loop() { std::signal(SIGPIPE, SIG_IGN); }
  EventBase base = mailwright::make_event_base();

  // Runs the loop until done is set, for at most limit.
  bool run_until(const bool& done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    bool expired = false;
    Event timer(evtimer_new(base.get(), [](evutil_socket_t, short, void* arg) {
      *static_cast<bool*>(arg) = true;
    }, &expired));
    timeval tv{static_cast<time_t>(limit.count() / 1000),
               static_cast<suseconds_t>((limit.count() % 1000) * 1000)};
    evtimer_add(timer.get(), &tv);
    while (!done && !expired) event_base_loop(base.get(), EVLOOP_ONCE);
    return done;
  }
};

SmtpDeliveryRequest request(const MessageFile& file, std::vector<std::string> recipients) {
  SmtpDeliveryRequest r;
  r.log_id = "TESTQUEUEID";
  r.transaction = transaction(std::move(recipients));
  r.source.fd = file.fd();
  r.source.offset = file.offset;
  r.source.length = file.length;
  r.settings.helo_name = "client.example.org";
  r.settings.tls = SmtpTlsPolicy::kNone;
  r.timeouts.connect = std::chrono::seconds(5);
  r.timeouts.greeting = std::chrono::seconds(5);
  return r;
}

// Runs one delivery to the end.
SmtpDeliveryReport deliver(Loop& loop, SmtpDeliveryRequest req, SSL_CTX* tls = nullptr,
                           SmtpConnectionCache* cache = nullptr) {
  bool done = false;
  SmtpDeliveryReport report;
  SmtpDelivery delivery(loop.base.get(), tls, std::move(req),
                        [&](SmtpDeliveryReport r) {
                          report = std::move(r);
                          done = true;
                        },
                        cache);
  delivery.start();
  CHECK_FALSE(done);  // never from inside start()
  REQUIRE(loop.run_until(done));
  return report;
}

std::string big_message() {
  std::string m = "From: alice@example.org\r\nSubject: test\r\n\r\n.first line\r\n";
  for (int i = 0; i < 3000; ++i) {
    m += (i % 7 == 0 ? "." : "") + std::string("line ") + std::to_string(i) + " of the body\r\n";
  }
  m += ".\r\n..\r\nlast\r\n";
  return m;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// A self-signed certificate for CN=localhost (and SAN DNS:localhost), made in memory.
struct TestCert {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  TestCert() {
    key = EVP_EC_gen("P-256");
    REQUIRE(key != nullptr);
    cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_EXTENSION* san =
        X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, "DNS:localhost");
    REQUIRE(san != nullptr);
    X509_add_ext(cert, san, -1);
    X509_EXTENSION_free(san);
    REQUIRE(X509_sign(cert, key, EVP_sha256()) > 0);
  }
  ~TestCert() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  SslCtx server_context() const {
    SslCtx ctx(SSL_CTX_new(TLS_server_method()));
    SSL_CTX_use_certificate(ctx.get(), cert);
    SSL_CTX_use_PrivateKey(ctx.get(), key);
    return ctx;
  }
};

}  // namespace

TEST_CASE("smtp client delivery: a message through a fake server") {
  Loop loop;
  FakeServer server(loop.base.get());
  const std::string message = big_message();
  MessageFile file(message);
  auto req = request(file, {"bob@example.net", "carol@example.net"});
  req.destinations.push_back(server.destination());
  req.read_chunk = 1000;  // many pieces, cut anywhere
  req.transaction.recipients[0].notify = mailwright::mta::kNotifySuccess;
  const auto report = deliver(loop, std::move(req));
  REQUIRE(report.recipients.size() == 2);
  for (const auto& r : report.recipients) {
    CHECK(r.state == DeliveryState::kDelivered);
    CHECK(r.remote_host == "mx.test");
    CHECK(r.remote_address == "127.0.0.1");
    CHECK(r.dsn_passed_on);
  }
  REQUIRE(server.messages.size() == 1);
  CHECK(server.messages[0] == message);
  CHECK(server.connections == 1);
  CHECK(server.commands.front() == "EHLO client.example.org");
  CHECK(contains(server.commands, "MAIL FROM:<alice@example.org>"));
  CHECK(contains(server.commands, "RCPT TO:<bob@example.net> NOTIFY=SUCCESS"));
  CHECK(server.commands.back() == "QUIT");
  const auto outcome = mailwright::mta::to_delivery_outcome(report.recipients[0]);
  CHECK(outcome.kind == mailwright::mta::DeliveryOutcome::Kind::kDelivered);
  CHECK(outcome.diagnostic == "smtp; 250 2.0.0 Ok: queued");
  CHECK(outcome.remote_host == "mx.test");
}

TEST_CASE("smtp client delivery: BDAT with CHUNKING") {
  Loop loop;
  FakeServer server(loop.base.get());
  server.ehlo = "250-fake.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n";
  const std::string message = big_message();
  MessageFile file(message);
  auto req = request(file, {"bob@example.net"});
  req.destinations.push_back(server.destination());
  const auto report = deliver(loop, std::move(req));
  CHECK(report.recipients.at(0).state == DeliveryState::kDelivered);
  REQUIRE(server.messages.size() == 1);
  CHECK(server.messages[0] == message);
  CHECK(contains(server.commands, "BDAT 65536"));
  CHECK(std::count_if(server.commands.begin(), server.commands.end(), [](const std::string& c) {
          return c.rfind("BDAT ", 0) == 0 && c.find(" LAST") != std::string::npos;
        }) == 1);
  CHECK_FALSE(contains(server.commands, "DATA"));
}

TEST_CASE("smtp client delivery: on to the next host after a refused connect and a 421") {
  Loop loop;
  // A port nobody listens on: bind, note it, close.
  std::uint16_t dead_port = 0;
  {
    const int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(s, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
    socklen_t len = sizeof sin;
    getsockname(s, reinterpret_cast<sockaddr*>(&sin), &len);
    dead_port = ntohs(sin.sin_port);
    close(s);
  }
  FakeServer busy(loop.base.get());
  busy.greeting = "421 4.7.0 busy.test too busy\r\n";
  FakeServer good(loop.base.get());
  MessageFile file("Subject: x\r\n\r\nhello\r\n");
  auto req = request(file, {"bob@example.net"});
  SmtpDestination dead;
  dead.name = "dead.test";
  dead.addresses.push_back(FakeServer::loopback());
  dead.port = dead_port;
  req.destinations = {dead, busy.destination("busy.test"), good.destination("good.test")};
  const auto report = deliver(loop, std::move(req));
  const auto& r = report.recipients.at(0);
  CHECK(r.state == DeliveryState::kDelivered);
  CHECK(r.remote_host == "good.test");
  CHECK(busy.connections == 1);
  CHECK(good.messages.size() == 1);
}

TEST_CASE("smtp client delivery: nobody to deliver to") {
  Loop loop;
  FakeServer busy(loop.base.get());
  busy.greeting = "421 4.7.0 too busy\r\n";
  MessageFile file("x\r\n");
  auto req = request(file, {"bob@example.net", "carol@example.net"});
  req.destinations = {busy.destination("busy.test")};
  const auto report = deliver(loop, std::move(req));
  for (const auto& r : report.recipients) {
    CHECK(r.state == DeliveryState::kDeferred);
    CHECK(r.status == "4.7.0");
    CHECK(r.summary() == "host busy.test[127.0.0.1] refused to talk to me: 421 4.7.0 too busy");
  }
  const auto outcome = mailwright::mta::to_delivery_outcome(report.recipients[0]);
  CHECK(outcome.kind == mailwright::mta::DeliveryOutcome::Kind::kDeferred);
  CHECK(outcome.diagnostic == "smtp; 421 4.7.0 too busy");
}

TEST_CASE("smtp client delivery: a server that never greets times out") {
  Loop loop;
  FakeServer silent(loop.base.get());
  silent.silent = true;
  MessageFile file("x\r\n");
  auto req = request(file, {"bob@example.net"});
  req.destinations = {silent.destination()};
  req.timeouts.greeting = std::chrono::milliseconds(200);
  const auto report = deliver(loop, std::move(req));
  const auto& r = report.recipients.at(0);
  CHECK(r.state == DeliveryState::kDeferred);
  CHECK(r.status == "4.4.2");
  CHECK(r.reply ==
        "conversation with host mx.test[127.0.0.1] timed out while receiving the initial server "
        "greeting");
}

TEST_CASE("smtp client delivery: 452 recipients go in a second transaction") {
  Loop loop;
  FakeServer server(loop.base.get());
  int rcpts = 0;
  server.hook = [&](const std::string& line) -> std::optional<std::string> {
    if (line.rfind("RCPT", 0) == 0 && ++rcpts == 2) return "452 4.5.3 Too many recipients\r\n";
    return std::nullopt;
  };
  MessageFile file("x\r\n");
  auto req = request(file, {"a@example.net", "b@example.net", "c@example.net"});
  req.destinations = {server.destination()};
  const auto report = deliver(loop, std::move(req));
  for (const auto& r : report.recipients) CHECK(r.state == DeliveryState::kDelivered);
  CHECK(server.messages.size() == 2);
  CHECK(contains(server.commands, "RSET"));
  CHECK(server.connections == 1);
}

TEST_CASE("smtp client delivery: recipients split by max_recipients") {
  Loop loop;
  FakeServer server(loop.base.get());
  MessageFile file("x\r\n");
  auto req = request(file, {"a@example.net", "b@example.net", "c@example.net"});
  req.destinations = {server.destination()};
  req.max_recipients = 2;
  const auto report = deliver(loop, std::move(req));
  for (const auto& r : report.recipients) CHECK(r.state == DeliveryState::kDelivered);
  CHECK(server.messages.size() == 2);
}

TEST_CASE("smtp client delivery: a message that cannot be read is never ended") {
  Loop loop;
  FakeServer server(loop.base.get());
  MessageFile file("short\r\n");
  auto req = request(file, {"bob@example.net"});
  req.destinations = {server.destination()};
  req.source.length = 100000;  // more than the file has
  const auto report = deliver(loop, std::move(req));
  CHECK(report.recipients.at(0).state == DeliveryState::kDeferred);
  CHECK(report.recipients.at(0).status == "4.3.0");
  CHECK(server.messages.empty());
  CHECK(server.connections == 1);
}

TEST_CASE("smtp client delivery: the connection cache") {
  Loop loop;
  FakeServer server(loop.base.get());
  MessageFile file("x\r\n");
  SmtpConnectionCache cache(loop.base.get(), std::chrono::seconds(5));
  auto req = request(file, {"bob@example.net"});
  req.destinations = {server.destination()};
  CHECK(deliver(loop, req, nullptr, &cache).recipients.at(0).state == DeliveryState::kDelivered);
  CHECK(cache.size() == 1);
  CHECK_FALSE(contains(server.commands, "QUIT"));
  CHECK(deliver(loop, req, nullptr, &cache).recipients.at(0).state == DeliveryState::kDelivered);
  CHECK(server.connections == 1);
  CHECK(server.messages.size() == 2);
  CHECK(contains(server.commands, "RSET"));

  SECTION("a parked connection the server closes is dropped, and the next one connects") {
    server.hook = [](const std::string& line) -> std::optional<std::string> {
      if (line == "RSET") return "421 4.4.2 idle too long\r\n";
      return std::nullopt;
    };
    CHECK(deliver(loop, req, nullptr, &cache).recipients.at(0).state == DeliveryState::kDelivered);
    CHECK(server.connections == 2);  // stale, then fresh
    CHECK(server.messages.size() == 3);
  }
  SECTION("an idle connection is closed with QUIT") {
    SmtpConnectionCache short_cache(loop.base.get(), std::chrono::milliseconds(50));
    CHECK(deliver(loop, req, nullptr, &short_cache).recipients.at(0).state ==
          DeliveryState::kDelivered);
    CHECK(short_cache.size() == 1);
    bool never = false;
    loop.run_until(never, std::chrono::milliseconds(300));
    CHECK(short_cache.size() == 0);
    CHECK(server.commands.back() == "QUIT");
  }
}

TEST_CASE("smtp client delivery: STARTTLS") {
  Loop loop;
  TestCert cert;
  SslCtx server_tls = cert.server_context();
  auto client_tls = mailwright::make_client_tls_context();
  REQUIRE(client_tls);
  X509_STORE_add_cert(SSL_CTX_get_cert_store(client_tls->get()), cert.cert);
  FakeServer server(loop.base.get(), server_tls.get());
  server.ehlo = "250-fake.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n";
  MessageFile file("Subject: tls\r\n\r\n.secret\r\n");

  SECTION("opportunistic, not verified") {
    auto req = request(file, {"bob@example.net"});
    req.settings.tls = SmtpTlsPolicy::kOpportunistic;
    req.destinations = {server.destination("mx.test")};
    const auto report = deliver(loop, std::move(req), client_tls->get());
    CHECK(report.recipients.at(0).state == DeliveryState::kDelivered);
    CHECK(std::count(server.commands.begin(), server.commands.end(),
                     "EHLO client.example.org") == 2);
    CHECK(contains(server.commands, "STARTTLS"));
    REQUIRE(server.messages.size() == 1);
    CHECK(server.messages[0] == "Subject: tls\r\n\r\n.secret\r\n");
  }
  SECTION("required and verified against the name") {
    auto req = request(file, {"bob@example.net"});
    req.settings.tls = SmtpTlsPolicy::kRequireVerified;
    req.destinations = {server.destination("localhost")};
    const auto report = deliver(loop, std::move(req), client_tls->get());
    CHECK(report.recipients.at(0).state == DeliveryState::kDelivered);
  }
  SECTION("required and verified, the wrong name") {
    auto req = request(file, {"bob@example.net"});
    req.settings.tls = SmtpTlsPolicy::kRequireVerified;
    req.destinations = {server.destination("wrong.test")};
    const auto report = deliver(loop, std::move(req), client_tls->get());
    const auto& r = report.recipients.at(0);
    CHECK(r.state == DeliveryState::kDeferred);
    CHECK(r.status == "4.7.5");
    CHECK(r.reply.find("certificate") != std::string::npos);
    CHECK(server.messages.empty());
  }
  SECTION("required without a TLS context") {
    auto req = request(file, {"bob@example.net"});
    req.settings.tls = SmtpTlsPolicy::kRequire;
    req.destinations = {server.destination()};
    const auto report = deliver(loop, std::move(req), nullptr);
    CHECK(report.recipients.at(0).status == "4.3.5");
    CHECK(server.connections == 0);
  }
}

TEST_CASE("smtp client delivery: a failed opportunistic handshake retries in plaintext") {
  Loop loop;
  auto client_tls = mailwright::make_client_tls_context();
  REQUIRE(client_tls);
  FakeServer server(loop.base.get());
  server.ehlo = "250-fake.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n";
  server.fake_starttls = true;
  MessageFile file("x\r\n");
  auto req = request(file, {"bob@example.net"});
  req.settings.tls = SmtpTlsPolicy::kOpportunistic;
  req.timeouts.starttls = std::chrono::seconds(3);
  req.destinations = {server.destination()};
  const auto report = deliver(loop, std::move(req), client_tls->get());
  CHECK(report.recipients.at(0).state == DeliveryState::kDelivered);
  CHECK(server.connections == 2);
  CHECK(std::count(server.commands.begin(), server.commands.end(), "STARTTLS") == 1);
  CHECK(server.messages.size() == 1);
}
