#include "mta/submission.h"

#include <catch2/catch.hpp>
#include <string>

#include "libmail/rfc5322.h"
#include "mta/maildrop.h"
#include "mta/queue_file.h"

using namespace mailwright;
using namespace mailwright::mta;
using namespace std::string_literals;

namespace {

SubmitRequest request() {
  SubmitRequest r;
  r.from_address = "joe@host.example";
  r.full_name = "Joe User";
  r.hostname = "host.example";
  r.message_id_local = "0LJ8K2M3N4P5Q6R7S8T9";
  r.now = 1700000000;
  return r;
}

std::string header_of(const std::string& text) { return text.substr(0, text.find("\r\n\r\n") + 2); }
std::string body_of(const std::string& text) { return text.substr(text.find("\r\n\r\n") + 4); }

}  // namespace

TEST_CASE("submission: LF lines become CRLF, complete headers are kept", "[submission]") {
  auto m = prepare_submission("From: a@b\nDate: x\nMessage-ID: <1@b>\nSubject: hi\n\nline 1\nline 2\n",
                              request());
  REQUIRE(m);
  CHECK(m->text == "From: a@b\r\nDate: x\r\nMessage-ID: <1@b>\r\nSubject: hi\r\n\r\nline 1\r\nline 2\r\n");
  CHECK_FALSE(m->eight_bit);
}

TEST_CASE("submission: missing From, Date and Message-ID are added", "[submission]") {
  auto m = prepare_submission("Subject: hi\n\nbody\n", request());
  REQUIRE(m);
  const std::string header = header_of(m->text);
  CHECK(header.find("Subject: hi\r\n") == 0);
  CHECK(header.find("From: Joe User <joe@host.example>\r\n") != std::string::npos);
  CHECK(header.find("Date: ") != std::string::npos);
  CHECK(header.find("Message-ID: <0LJ8K2M3N4P5Q6R7S8T9@host.example>\r\n") != std::string::npos);
  CHECK(body_of(m->text) == "body\r\n");
}

TEST_CASE("submission: a message without a header gets one and keeps its text", "[submission]") {
  auto m = prepare_submission("Hello there\nsecond line\n", request());
  REQUIRE(m);
  CHECK(body_of(m->text) == "Hello there\r\nsecond line\r\n");
  CHECK(header_of(m->text).find("From: ") == 0);
}

TEST_CASE("submission: a line that is no field ends the header, the blank line is put in",
          "[submission]") {
  auto m = prepare_submission("Subject: x\nFrom: a@b\nDate: d\nMessage-ID: <i@d>\nnot a field\nmore\n",
                              request());
  REQUIRE(m);
  CHECK(m->text == "Subject: x\r\nFrom: a@b\r\nDate: d\r\nMessage-ID: <i@d>\r\n\r\nnot a field\r\nmore\r\n");
}

TEST_CASE("submission: a header without body gets the empty line", "[submission]") {
  auto m = prepare_submission("From: a@b\nDate: d\nMessage-ID: <i@d>\nSubject: only", request());
  REQUIRE(m);
  CHECK(m->text == "From: a@b\r\nDate: d\r\nMessage-ID: <i@d>\r\nSubject: only\r\n\r\n");
}

TEST_CASE("submission: a lone dot ends the message unless -i", "[submission]") {
  const std::string in = "From: a@b\nDate: d\nMessage-ID: <i@d>\n\none\n.\ntwo\n";
  auto ends = prepare_submission(in, request());
  REQUIRE(ends);
  CHECK(body_of(ends->text) == "one\r\n");
  SubmitRequest keep = request();
  keep.dot_ends = false;
  auto kept = prepare_submission(in, keep);
  REQUIRE(kept);
  CHECK(body_of(kept->text) == "one\r\n.\r\ntwo\r\n");
  // "..": not the end, and stored as written (dot-stuffing is the SMTP client's business).
  auto dots = prepare_submission("From: a@b\nDate: d\nMessage-ID: <i@d>\n\n..\n.\r\n", request());
  REQUIRE(dots);
  CHECK(body_of(dots->text) == "..\r\n");
}

TEST_CASE("submission: an mbox From_ line at the start is dropped", "[submission]") {
  auto m = prepare_submission("From joe Sat Jan  3 01:05:34 1996\nFrom: a@b\nDate: d\n"
                              "Message-ID: <i@d>\n\nx\n",
                              request());
  REQUIRE(m);
  CHECK(m->text.find("From joe") == std::string::npos);
  CHECK(m->text.rfind("From: a@b\r\n", 0) == 0);
}

TEST_CASE("submission: NUL and bare CR are refused", "[submission]") {
  auto nul = prepare_submission("Subject: x\n\na\0b\n"s, request());
  REQUIRE_FALSE(nul);
  CHECK(nul.error().exit_code() == 65);
  CHECK(nul.error().text().find("line 3") != std::string::npos);
  auto cr = prepare_submission("Subject: x\n\na\rb\n", request());
  REQUIRE_FALSE(cr);
  CHECK(cr.error().exit_code() == 65);
  // A smuggling attempt through sendmail: "\r.\r" never reaches the queue.
  REQUIRE_FALSE(prepare_submission("Subject: x\n\na\r.\rMAIL FROM:<x@y>\r\n", request()));
}

TEST_CASE("submission: long lines are broken, header lines with a folding space", "[submission]") {
  const std::string long_value(2500, 'v');
  const std::string long_body(2100, 'b');
  auto m = prepare_submission("From: a@b\nDate: d\nMessage-ID: <i@d>\nX-Long: " + long_value +
                                  "\n\n" + long_body + "\n",
                              request());
  REQUIRE(m);
  std::size_t pos = 0;
  while (pos < m->text.size()) {
    const std::size_t nl = m->text.find("\r\n", pos);
    REQUIRE(nl != std::string::npos);
    CHECK(nl - pos <= 998);
    pos = nl + 2;
  }
  const HeaderBlock block = parse_header_block(m->text);
  REQUIRE(block.complete);
  REQUIRE_FALSE(block.malformed);
  const HeaderField* field = find_header(block.fields, "X-Long");
  REQUIRE(field != nullptr);
  std::string joined = unfold_value(field->raw_value);
  joined.erase(std::remove(joined.begin(), joined.end(), ' '), joined.end());
  CHECK(joined == long_value);
  std::string body = body_of(m->text);
  body.erase(std::remove(body.begin(), body.end(), '\r'), body.end());
  body.erase(std::remove(body.begin(), body.end(), '\n'), body.end());
  CHECK(body == long_body);
}

TEST_CASE("submission: 8-bit text is noticed", "[submission]") {
  auto m = prepare_submission("Subject: caf\xc3\xa9\n\n\xc3\xa9t\xc3\xa9\n", request());
  REQUIRE(m);
  CHECK(m->eight_bit);
}

TEST_CASE("submission: Bcc is removed, with or without -t", "[submission]") {
  const std::string in =
      "From: a@b\nDate: d\nMessage-ID: <i@d>\nTo: to@x.example\nCc: Carl <cc@x.example>\n"
      "Bcc: hidden@x.example,\n  other@x.example\n\nbody\n";
  auto plain = prepare_submission(in, request());
  REQUIRE(plain);
  CHECK(plain->text.find("Bcc") == std::string::npos);
  CHECK(plain->text.find("hidden") == std::string::npos);
  CHECK(plain->text.find("other@x") == std::string::npos);
  CHECK(plain->header_recipients.empty());
  SubmitRequest t = request();
  t.extract_recipients = true;
  auto extracted = prepare_submission(in, t);
  REQUIRE(extracted);
  CHECK(extracted->text.find("hidden") == std::string::npos);
  CHECK(extracted->header_recipients ==
        std::vector<std::string>{"to@x.example", "cc@x.example", "hidden@x.example",
                                 "other@x.example"});
}

TEST_CASE("submission: -t takes Resent- fields when there are any", "[submission]") {
  SubmitRequest t = request();
  t.extract_recipients = true;
  auto m = prepare_submission("From: a@b\nDate: d\nMessage-ID: <i@d>\nTo: old@x.example\n"
                              "Resent-To: new@y.example\nResent-Bcc: secret@y.example\n\nb\n",
                              t);
  REQUIRE(m);
  CHECK(m->header_recipients == std::vector<std::string>{"new@y.example", "secret@y.example"});
  CHECK(m->text.find("secret") == std::string::npos);
  CHECK(m->text.find("To: old@x.example") != std::string::npos);
}

TEST_CASE("submission: -t with a To: that is no address list is an error", "[submission]") {
  SubmitRequest t = request();
  t.extract_recipients = true;
  auto m = prepare_submission("To: <unclosed@x\n\nb\n", t);
  REQUIRE_FALSE(m);
  CHECK(m.error().exit_code() == 65);
}

TEST_CASE("submission: the size limit counts the finished message", "[submission]") {
  SubmitRequest r = request();
  r.max_size = 100;
  REQUIRE_FALSE(prepare_submission("Subject: x\n\n" + std::string(200, 'a') + "\n", r));
  REQUIRE(prepare_submission("Subject: x\n\nsmall\n", request()));
}

TEST_CASE("submission: addresses of an argument", "[submission]") {
  auto list = submission_addresses("joe, Ann <ann@Example.ORG>, \"a b\"@c.example", "host.example");
  REQUIRE(list);
  CHECK(*list == std::vector<std::string>{"joe@host.example", "ann@Example.ORG", "\"a b\"@c.example"});
  CHECK_FALSE(submission_addresses("a@", "host.example"));
  CHECK_FALSE(submission_addresses("<a@b", "host.example"));
  // Shell and option tricks are just text that does not parse as an address.
  CHECK_FALSE(submission_addresses("`rm -rf /`@x", "host.example"));
  CHECK_FALSE(submission_addresses("a@b;reboot", "host.example"));
}

TEST_CASE("submission: From values", "[submission]") {
  CHECK(format_from_value("", "a@b") == "a@b");
  CHECK(format_from_value("Joe User", "a@b") == "Joe User <a@b>");
  CHECK(format_from_value("Joe Q. \"J\" User", "a@b") == "\"Joe Q. \\\"J\\\" User\" <a@b>");
  CHECK(format_from_value("Bad\nName", "a@b") == "BadName <a@b>");
}

// --- the pickup's view: a maildrop file is hostile -----------------------------------------------

namespace {

Envelope dropped_envelope() {
  Envelope e;
  e.queue_id = "0LJ8K2M3N4P5Q6R7S8T9";
  e.arrival_time = 5;
  e.sender = "ceo@bank.example";
  Recipient r;
  r.address = "ann@x.example";
  r.notify = kNotifyFailure | kNotifyDelay;
  e.recipients.push_back(r);
  return e;
}

PickupPolicy policy() {
  PickupPolicy p;
  p.hostname = "host.example";
  p.max_message_size = 1000;
  return p;
}

}  // namespace

TEST_CASE("pickup: an untrusted user's sender is replaced by the user's own", "[maildrop]") {
  const std::string file = serialize_envelope(dropped_envelope()) + "Subject: x\r\n\r\nhi\r\n";
  DropOwner joe{1000, "joe", false};
  auto picked = accept_dropped(file, joe, policy(), "0LJ8K2M3N4P5Q6R7S8TA", 77);
  REQUIRE(picked);
  CHECK(picked->envelope.sender == "joe@host.example");
  CHECK(picked->envelope.arrival_time == 77);
  CHECK(picked->envelope.auth_user == "joe");
  REQUIRE(picked->envelope.recipients.size() == 1);
  CHECK(picked->envelope.recipients[0].notify == (kNotifyFailure | kNotifyDelay));
  CHECK(picked->received.find("from user joe, uid 1000") != std::string::npos);
  CHECK(picked->received.find("id 0LJ8K2M3N4P5Q6R7S8TA;") != std::string::npos);
  CHECK(file.substr(picked->body_offset) == "Subject: x\r\n\r\nhi\r\n");

  DropOwner root{0, "root", true};
  auto trusted = accept_dropped(file, root, policy(), "0LJ8K2M3N4P5Q6R7S8TA", 77);
  REQUIRE(trusted);
  CHECK(trusted->envelope.sender == "ceo@bank.example");
}

TEST_CASE("pickup: recipient state in a dropped file is never believed", "[maildrop]") {
  Envelope e = dropped_envelope();
  e.recipients[0].state = DeliveryState::kDelivered;
  e.recipients[0].mailbox_only = true;
  e.recipients[0].attempts = 3;
  e.client_address = "192.0.2.1";
  e.protocol = "ESMTPSA";
  const std::string file = serialize_envelope(e) + "x\r\n";
  auto picked = accept_dropped(file, DropOwner{1000, "joe", false}, policy(), "0LJ8K2M3N4P5Q6R7S8TA", 1);
  REQUIRE(picked);
  const Recipient& r = picked->envelope.recipients[0];
  CHECK(r.state == DeliveryState::kPending);
  CHECK_FALSE(r.mailbox_only);
  CHECK(r.attempts == 0);
  CHECK(picked->envelope.client_address.empty());
  CHECK(picked->envelope.protocol.empty());
}

TEST_CASE("pickup: broken or hostile files are refused", "[maildrop]") {
  DropOwner joe{1000, "joe", false};
  const std::string head = serialize_envelope(dropped_envelope());
  auto refused = [&](const std::string& file) {
    return !accept_dropped(file, joe, policy(), "0LJ8K2M3N4P5Q6R7S8TA", 1);
  };
  CHECK(refused("garbage"));
  CHECK(refused(head + "bare LF\n"));
  CHECK(refused(head + "bare CR\r.\r\n"));
  CHECK(refused(head + "nul \0 here\r\n"s));
  CHECK(refused(head + "no final line end"));
  CHECK(refused(head + std::string(1200, 'a') + "\r\n"));  // over max_message_size
  PickupPolicy long_lines = policy();
  long_lines.max_message_size = 0;
  CHECK_FALSE(accept_dropped(head + std::string(1001, 'a') + "\r\n", joe, long_lines,
                             "0LJ8K2M3N4P5Q6R7S8TA", 1));
  Envelope none = dropped_envelope();
  none.recipients.clear();
  CHECK(refused(serialize_envelope(none) + "x\r\n"));
  Envelope bad = dropped_envelope();
  bad.recipients[0].address = "a@b;rm -rf /";
  CHECK(refused(serialize_envelope(bad) + "x\r\n"));
}

TEST_CASE("maildrop: names", "[maildrop]") {
  CHECK(is_drop_name("0LJ8K2M3N4P5Q6R7S8T9.0123456789abcdef0123456789abcdef"));
  CHECK_FALSE(is_drop_name("0LJ8K2M3N4P5Q6R7S8T9"));
  CHECK_FALSE(is_drop_name("t.0123456789abcdef0123456789abcdef"));
  CHECK_FALSE(is_drop_name("0LJ8K2M3N4P5Q6R7S8T9.0123456789ABCDEF0123456789abcdef"));
  CHECK_FALSE(is_drop_name("../../etc/passwd"));
  CHECK(is_trusted_user(0, "root", 100, {}));
  CHECK(is_trusted_user(100, "mailwright", 100, {}));
  CHECK(is_trusted_user(1000, "www", 100, {"www"}));
  CHECK_FALSE(is_trusted_user(1000, "joe", 100, {"www"}));
}
