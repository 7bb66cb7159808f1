#include "mta/smtp_command.h"

#include <catch2/catch.hpp>
#include <string>

using namespace mailwright::smtp;  // NOLINT: test file

namespace {

SmtpParseOptions opts() { return {}; }

SmtpCommand ok(const std::string& line, SmtpParseOptions o = {}) {
  auto r = parse_smtp_command(line, o);
  INFO(line);
  if (!r)
    INFO(r.error().status_text());
  REQUIRE(r.ok());
  return std::move(r).value();
}

// The reply code the session would send for line.
int reply(const std::string& line, SmtpParseOptions o = {}) {
  auto r = parse_smtp_command(line, o);
  return r ? 250 : smtp_reply_code(r.error());
}

}  // namespace

TEST_CASE("every verb, case-insensitive", "[smtp_command]") {
  CHECK(ok("EHLO mail.example.org").verb == SmtpVerb::kEhlo);
  CHECK(ok("helo mail.example.org").verb == SmtpVerb::kHelo);
  CHECK(ok("MAIL FROM:<a@b>").verb == SmtpVerb::kMail);
  CHECK(ok("rcpt to:<a@b>").verb == SmtpVerb::kRcpt);
  CHECK(ok("DATA").verb == SmtpVerb::kData);
  CHECK(ok("BDAT 10").verb == SmtpVerb::kBdat);
  CHECK(ok("RSET").verb == SmtpVerb::kRset);
  CHECK(ok("NOOP").verb == SmtpVerb::kNoop);
  CHECK(ok("QuIt").verb == SmtpVerb::kQuit);
  CHECK(ok("VRFY joe").verb == SmtpVerb::kVrfy);
  CHECK(ok("HELP").verb == SmtpVerb::kHelp);
  CHECK(ok("STARTTLS").verb == SmtpVerb::kStarttls);
  CHECK(ok("AUTH PLAIN").verb == SmtpVerb::kAuth);
  CHECK(smtp_verb_name(SmtpVerb::kStarttls) == "STARTTLS");
}

TEST_CASE("unknown and empty commands are 500 5.5.2", "[smtp_command]") {
  for (const char* line : {"", "FOO", "MAILFROM:<a@b>", "EHL", "DATAX", " DATA", "TURN"}) {
    auto r = parse_smtp_command(line, opts());
    REQUIRE_FALSE(r);
    CHECK(smtp_reply_code(r.error()) == 500);
    CHECK(r.error().status() == "5.5.2");
  }
}

TEST_CASE("control octets anywhere are refused", "[smtp_command]") {
  for (const std::string& line :
       {std::string("MAIL FROM:<a@b>\0", 16), std::string("NOOP a\rb"), std::string("NOOP a\nb"),
        std::string("VRFY \x7f"), std::string("MAIL FROM:<a@b>\tSIZE=1"),
        std::string("RCPT TO:<a@b> NOTIFY=NEVER\r\nRCPT TO:<c@d>")}) {
    CAPTURE(line);
    CHECK(reply(line) == 500);
  }
}

TEST_CASE("commands without arguments", "[smtp_command]") {
  CHECK(reply("DATA x") == 501);
  CHECK(reply("QUIT now") == 501);
  CHECK(reply("RSET ") == 250);  // trailing spaces are harmless
  CHECK(reply("STARTTLS x") == 501);
  CHECK(ok("NOOP hello there").text == "hello there");
  CHECK(ok("HELP MAIL").text == "MAIL");
  CHECK(reply("VRFY") == 501);
}

TEST_CASE("EHLO and HELO arguments", "[smtp_command]") {
  CHECK(ok("EHLO mail.example.org").domain == "mail.example.org");
  const auto lit = ok("EHLO [192.0.2.1]");
  CHECK(lit.domain == "[192.0.2.1]");
  CHECK(lit.domain_is_literal);
  CHECK(ok("EHLO [IPv6:2001:db8::1]").domain_is_literal);
  CHECK(reply("EHLO") == 501);
  CHECK(reply("EHLO a b") == 501);
  CHECK(reply("EHLO my_laptop") == 501);
  CHECK(reply("HELO [300.1.1.1]") == 501);
  CHECK(reply("HELO -bad-.org") == 501);
  SmtpParseOptions lenient;
  lenient.lenient_greeting = true;
  CHECK(ok("HELO my_laptop", lenient).domain == "my_laptop");
  CHECK(reply("HELO a b", lenient) == 501);
  CHECK(reply("HELO \xc3\xa9", lenient) == 501);
}

TEST_CASE("MAIL FROM syntax", "[smtp_command]") {
  CHECK(ok("MAIL FROM:<a@b.org>").path.mailbox.local_part == "a");
  CHECK(ok("MAIL FROM: <a@b.org>").path.mailbox.domain == "b.org");
  CHECK(ok("MAIL FROM:<>").path.is_null);
  CHECK(reply("MAIL FROM :<a@b>") == 501);
  CHECK(reply("MAIL FROM:  <a@b>") == 553);
  CHECK(reply("MAIL TO:<a@b>") == 501);
  CHECK(reply("MAIL FROM:a@b") == 553);
  CHECK(reply("MAIL FROM:<a@b>x") == 501);
  CHECK(reply("MAIL FROM:<a@b") == 553);
  CHECK(reply("MAIL") == 501);
  SECTION("quoted local parts and source routes") {
    const auto q = ok("MAIL FROM:<\"john doe>\"@example.org> SIZE=5");
    CHECK(q.path.mailbox.local_part == "john doe>");
    CHECK(q.mail.size == 5u);
    const auto route = ok("MAIL FROM:<@a.org,@b.org:u@c.org>");
    CHECK(route.path.had_source_route);
    CHECK(route.path.mailbox.domain == "c.org");
  }
  SECTION("OpenSMTPD CVE-2020-7247: the grammar has no ';' in an atom") {
    auto r = parse_smtp_command("MAIL FROM:<;sleep 5;@x>", opts());
    REQUIRE_FALSE(r);
    CHECK(smtp_reply_code(r.error()) == 553);
    CHECK(r.error().status() == "5.1.7");
    CHECK(reply("MAIL FROM:<;sleep 5;>") == 553);
    // Quoted, it is valid syntax: the defence is that no shell ever sees it.
    CHECK(ok("MAIL FROM:<\";sleep 5;\"@x>").path.mailbox.local_part == ";sleep 5;");
  }
}

TEST_CASE("MAIL parameters", "[smtp_command]") {
  const auto c =
      ok("MAIL FROM:<a@b> SIZE=12345 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1 AUTH=u+2Bx@example.org");
  CHECK(c.mail.size == 12345u);
  CHECK(c.mail.body == BodyType::k8BitMime);
  CHECK(c.mail.ret == DsnRet::kHdrs);
  CHECK(c.mail.envid == "QQ+1");
  CHECK(c.mail.auth == "u+x@example.org");
  CHECK(ok("mail from:<a@b> body=7bit ret=full").mail.body == BodyType::k7Bit);
  CHECK(ok("MAIL FROM:<a@b> BODY=BINARYMIME").mail.body == BodyType::kBinaryMime);
  CHECK(ok("MAIL FROM:<a@b> AUTH=<>").mail.auth == "");
  CHECK(ok("MAIL FROM:<a@b>  SIZE=0  ").mail.size == 0u);
  CHECK(ok("MAIL FROM:<a@b> SIZE=18446744073709551615").mail.size == 18446744073709551615u);
  SECTION("numbers") {
    CHECK(reply("MAIL FROM:<a@b> SIZE=99999999999999999999") == 501);
    CHECK(reply("MAIL FROM:<a@b> SIZE=18446744073709551616") == 501);
    CHECK(reply("MAIL FROM:<a@b> SIZE=-1") == 501);
    CHECK(reply("MAIL FROM:<a@b> SIZE=+1") == 501);
    CHECK(reply("MAIL FROM:<a@b> SIZE=1x") == 501);
    CHECK(reply("MAIL FROM:<a@b> SIZE=") == 501);
    CHECK(reply("MAIL FROM:<a@b> SIZE") == 501);
  }
  SECTION("SMTPUTF8 decides whether the path may hold UTF-8") {
    CHECK(reply("MAIL FROM:<j\xc3\xb6rg@b>") == 553);
    const auto u = ok("MAIL FROM:<j\xc3\xb6rg@b> SMTPUTF8");
    CHECK(u.mail.smtputf8);
    CHECK(reply("MAIL FROM:<a@b> SMTPUTF8=yes") == 501);
    CHECK(reply("MAIL FROM:<j\xc3\xb6rg@b> SIZE=\xc3\xb6") == 501);
  }
  SECTION("bad values") {
    CHECK(reply("MAIL FROM:<a@b> BODY=9BIT") == 555);
    CHECK(reply("MAIL FROM:<a@b> RET=SOME") == 501);
    CHECK(reply("MAIL FROM:<a@b> ENVID=") == 501);
    CHECK(reply("MAIL FROM:<a@b> ENVID=" + std::string(101, 'e')) == 501);
    CHECK(ok("MAIL FROM:<a@b> ENVID=" + std::string(100, 'e')).mail.envid->size() == 100);
    CHECK(reply("MAIL FROM:<a@b> AUTH=notanaddress") == 501);
    CHECK(reply("MAIL FROM:<a@b> X=\"a b\"") == 501);
    CHECK(reply("MAIL FROM:<a@b> =x") == 501);
    CHECK(reply("MAIL FROM:<a@b> -X=1") == 501);
    CHECK(reply("MAIL FROM:<a@b> SIZE==1") == 501);
  }
  SECTION("unknown, misplaced and duplicate parameters are 555") {
    CHECK(reply("MAIL FROM:<a@b> FOO=1") == 555);
    CHECK(reply("MAIL FROM:<a@b> NOTIFY=NEVER") == 555);
    CHECK(reply("MAIL FROM:<a@b> SIZE=1 SIZE=2") == 555);
    CHECK(reply("MAIL FROM:<a@b> BODY=7BIT body=8BITMIME") == 555);
    CHECK(reply("MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8") == 555);
    CHECK(reply("MAIL FROM:<a@b> RET=FULL RET=FULL") == 555);
    CHECK(reply("MAIL FROM:<a@b> ENVID=x ENVID=x") == 555);
    CHECK(reply("MAIL FROM:<a@b> AUTH=<> AUTH=<>") == 555);
    auto r = parse_smtp_command("MAIL FROM:<a@b> FOO", opts());
    REQUIRE_FALSE(r);
    CHECK(r.error().status() == "5.5.4");
  }
}

TEST_CASE("xtext: strict, decoded, and no control octets (CVE-2020-28021)", "[smtp_command]") {
  for (const char* bad : {"+0A", "a+0Db", "+00", "+1F", "+7F", "+0a", "+2", "+", "+G0", "a+2b"}) {
    CAPTURE(bad);
    CHECK(reply(std::string("MAIL FROM:<a@b> ENVID=") + bad) == 501);
    CHECK(reply(std::string("MAIL FROM:<a@b> AUTH=") + bad + "@x") == 501);
    CHECK(reply(std::string("RCPT TO:<a@b> ORCPT=rfc822;") + bad) == 501);
  }
  CHECK(reply("MAIL FROM:<a@b> ENVID=+80") == 501);  // 8-bit: RFC 3461 wants printable ASCII
  CHECK(ok("MAIL FROM:<a@b> ENVID=a+20b+3D").mail.envid == "a b=");
  for (const std::string& s : {std::string("plain"), std::string("a+b=c d"),
                               std::string("\r\n\0\x7f\xff", 5), std::string("~!")}) {
    const std::string enc = encode_xtext(s);
    for (char ch : enc) CHECK((ch >= 33 && ch <= 126 && ch != '='));
  }
  CHECK(encode_xtext("a+b=c d\r\n") == "a+2Bb+3Dc+20d+0D+0A");
}

TEST_CASE("RCPT TO and its parameters", "[smtp_command]") {
  const auto c = ok("RCPT TO:<\"u@other\"@local>");
  CHECK(c.path.mailbox.local_part == "u@other");
  CHECK(c.path.mailbox.domain == "local");
  CHECK(ok("RCPT TO:<Postmaster>").path.is_postmaster);
  CHECK(ok("RCPT TO: <a@b>").path.mailbox.local_part == "a");
  CHECK(ok("RCPT TO:<@x,@y:u@z>").path.had_source_route);
  CHECK(reply("RCPT TO:<>") == 553);
  CHECK(reply("RCPT TO :<a@b>") == 501);
  CHECK(reply("RCPT FROM:<a@b>") == 501);
  CHECK(reply("RCPT TO:<a@b>junk") == 501);
  CHECK(reply("RCPT TO:<j\xc3\xb6rg@b>") == 553);
  SmtpParseOptions utf8;
  utf8.utf8_recipients = true;
  CHECK(ok("RCPT TO:<j\xc3\xb6rg@b>", utf8).path.mailbox.local_part == "j\xc3\xb6rg");
  SECTION("NOTIFY") {
    CHECK(ok("RCPT TO:<a@b> NOTIFY=NEVER").rcpt.notify == kNotifyNever);
    CHECK(ok("RCPT TO:<a@b> NOTIFY=success,FAILURE,Delay").rcpt.notify ==
          (kNotifySuccess | kNotifyFailure | kNotifyDelay));
    CHECK(ok("RCPT TO:<a@b> NOTIFY=FAILURE").rcpt.notify == kNotifyFailure);
    CHECK(ok("RCPT TO:<a@b>").rcpt.notify == kNotifyNone);
    CHECK(reply("RCPT TO:<a@b> NOTIFY=NEVER,FAILURE") == 501);
    CHECK(reply("RCPT TO:<a@b> NOTIFY=FAILURE,NEVER") == 501);
    CHECK(reply("RCPT TO:<a@b> NOTIFY=") == 501);
    CHECK(reply("RCPT TO:<a@b> NOTIFY=FAILURE,") == 501);
    CHECK(reply("RCPT TO:<a@b> NOTIFY=SOMETIMES") == 501);
    CHECK(reply("RCPT TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER") == 555);
  }
  SECTION("ORCPT") {
    const auto o = ok("RCPT TO:<a@b> ORCPT=rfc822;x+2By@example.org NOTIFY=DELAY");
    CHECK(o.rcpt.orcpt_type == "rfc822");
    CHECK(o.rcpt.orcpt_address == "x+y@example.org");
    CHECK(reply("RCPT TO:<a@b> ORCPT=rfc822") == 501);
    CHECK(reply("RCPT TO:<a@b> ORCPT=;a@b") == 501);
    CHECK(reply("RCPT TO:<a@b> ORCPT=rfc822;") == 501);
    CHECK(reply("RCPT TO:<a@b> ORCPT=r.c;a@b") == 501);
    CHECK(reply("RCPT TO:<a@b> ORCPT=rfc822;a ORCPT=rfc822;b") == 555);
    CHECK(reply("RCPT TO:<a@b> ORCPT=rfc822;" + std::string(495, 'x')) == 501);
  }
  CHECK(reply("RCPT TO:<a@b> SIZE=1") == 555);
  CHECK(reply("RCPT TO:<a@b> XFOO") == 555);
}

TEST_CASE("BDAT and AUTH", "[smtp_command]") {
  const auto b = ok("BDAT 1000 LAST");
  CHECK(b.chunk_size == 1000u);
  CHECK(b.last_chunk);
  CHECK_FALSE(ok("bdat 0").last_chunk);
  CHECK(ok("BDAT 5 last").last_chunk);
  CHECK(reply("BDAT") == 501);
  CHECK(reply("BDAT x") == 501);
  CHECK(reply("BDAT 1 FIRST") == 501);
  CHECK(reply("BDAT 99999999999999999999") == 501);
  CHECK(reply("BDAT -1") == 501);
  const auto a = ok("AUTH plain dGVzdAB0ZXN0AHRlc3Q=");
  CHECK(a.mechanism == "PLAIN");
  CHECK(a.initial_response == "dGVzdAB0ZXN0AHRlc3Q=");
  CHECK(ok("AUTH LOGIN =").initial_response == "=");
  CHECK_FALSE(ok("AUTH SCRAM-SHA-256").initial_response.has_value());
  CHECK(reply("AUTH") == 501);
  CHECK(reply("AUTH PLAIN a b") == 501);
  CHECK(reply("AUTH PLAIN ab*c") == 501);
  CHECK(reply("AUTH " + std::string(21, 'A')) == 501);
}

TEST_CASE("line length", "[smtp_command]") {
  const std::string huge = "MAIL FROM:<a@b> ENVID=" + std::string(1 << 20, 'x');
  CHECK(reply(huge) == 500);
  CHECK(reply("NOOP " + std::string(1 << 20, 'x')) == 500);
  SmtpParseOptions small;
  small.max_line_length = 10;
  CHECK(reply("NOOP 12345", small) == 250);
  CHECK(reply("NOOP 123456", small) == 500);
}
