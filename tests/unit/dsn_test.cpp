#include "mta/dsn.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/rfc5322.h"

using namespace mailwright;
using namespace mailwright::mta;
using namespace std::string_literals;

namespace {

// --- a small MIME reader, enough to take our own DSNs apart ------------------------------------

struct Field {
  std::string name;
  std::string value;  // unfolded
};

struct Part {
  std::vector<Field> fields;
  std::string body;
};

struct Parsed {
  std::vector<Field> fields;
  std::string boundary;
  std::vector<Part> parts;
  std::vector<std::vector<Field>> status_blocks;  // part 2, split at blank lines
};

std::vector<Field> to_fields(const HeaderBlock& block) {
  std::vector<Field> out;
  for (const HeaderField& f : block.fields) {
    out.push_back({std::string(f.name), unfold_value(f.raw_value)});
  }
  return out;
}

// The one field called name; fails the test when there is none or more than one.
std::string get(const std::vector<Field>& fields, std::string_view name) {
  const Field* found = nullptr;
  for (const Field& f : fields) {
    if (header_name_equal(f.name, name)) {
      INFO(name);
      REQUIRE(found == nullptr);
      found = &f;
    }
  }
  INFO(name);
  REQUIRE(found != nullptr);
  return found->value;
}

bool has(const std::vector<Field>& fields, std::string_view name) {
  for (const Field& f : fields) {
    if (header_name_equal(f.name, name))
      return true;
  }
  return false;
}

// Every line ends in CRLF, no CR or LF stands alone, and no line exceeds 998 octets.
void check_lines(std::string_view m) {
  REQUIRE(m.ends_with("\r\n"));
  std::size_t start = 0;
  for (std::size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\r') {
      REQUIRE(i + 1 < m.size());
      REQUIRE(m[i + 1] == '\n');
      if (i - start > 998)
        FAIL("line longer than 998 octets at offset " << start);
      ++i;
      start = i + 1;
    } else {
      REQUIRE(m[i] != '\n');
    }
  }
}

std::size_t count(std::string_view s, std::string_view what) {
  std::size_t n = 0;
  for (std::size_t at = s.find(what); at != std::string_view::npos; at = s.find(what, at + 1)) {
    ++n;
  }
  return n;
}

Parsed parse(const std::string& m) {
  check_lines(m);
  Parsed p;
  const HeaderBlock top = parse_header_block(m);
  REQUIRE(top.complete);
  REQUIRE_FALSE(top.malformed);
  p.fields = to_fields(top);
  const std::string type = get(p.fields, "Content-Type");
  const std::size_t b = type.find("boundary=\"");
  REQUIRE(b != std::string::npos);
  const std::size_t e = type.find('"', b + 10);
  REQUIRE(e != std::string::npos);
  p.boundary = type.substr(b + 10, e - b - 10);
  REQUIRE(!p.boundary.empty());
  REQUIRE(p.boundary.size() <= 70);  // RFC 2046 5.1.1

  // The boundary occurs exactly where the structure puts it: three parts and the close.
  const std::string_view body = std::string_view(m).substr(top.body_offset);
  REQUIRE(count(body, p.boundary) == 4);
  const std::string open = "\r\n--" + p.boundary + "\r\n";
  const std::string close = "\r\n--" + p.boundary + "--\r\n";
  REQUIRE(body.ends_with(close));
  std::size_t at = body.find(open);
  REQUIRE(at != std::string_view::npos);
  while (at != std::string_view::npos) {
    const std::size_t start = at + open.size();
    std::size_t next = body.find(open, start);
    const std::size_t end = next == std::string_view::npos ? body.size() - close.size() : next;
    const std::string_view text = body.substr(start, end - start);
    const HeaderBlock ph = parse_header_block(text);
    REQUIRE(ph.complete);
    p.parts.push_back({to_fields(ph), std::string(text.substr(ph.body_offset))});
    at = next;
  }
  REQUIRE(p.parts.size() == 3);

  std::string_view status = p.parts[1].body;
  while (!status.empty()) {
    const HeaderBlock block = parse_header_block(status);
    REQUIRE_FALSE(block.malformed);
    p.status_blocks.push_back(to_fields(block));
    status.remove_prefix(block.body_offset);
  }
  return p;
}

// The text part with its wrapped lines joined again.
std::string unwrap(std::string text) {
  for (std::size_t at = text.find("\r\n    "); at != std::string::npos;
       at = text.find("\r\n    ", at)) {
    text.replace(at, 6, " ");
  }
  return text;
}

// All of a text on one line.
std::string flat(std::string text) {
  for (std::size_t at = text.find("\r\n"); at != std::string::npos; at = text.find("\r\n", at)) {
    text.replace(at, 2, " ");
  }
  return text;
}

std::string header_of(std::string_view message) {
  return std::string(message.substr(0, message.find("\r\n\r\n") + 2));
}

const std::string kOriginal =
    "Received: from client.example (client.example [192.0.2.1])\r\n"
    "\tby mx.example.org with ESMTP id 0LJ8K2M3N4P5Q6R7S8T9\r\n"
    "From: Sender <sender@example.com>\r\n"
    "To: rcpt@example.net\r\n"
    "Subject: quarterly numbers\r\n"
    "Message-ID: <orig@example.com>\r\n"
    "\r\n"
    "Hello,\r\n"
    "\r\n"
    "the numbers.\r\n";

DsnRecipient failed_recipient() {
  DsnRecipient r;
  r.address = "rcpt@example.net";
  r.original = "rfc822;Rcpt@Example.net";
  r.action = DsnAction::kFailed;
  r.status = "5.1.1";
  r.remote_mta = "mx.example.net";
  r.diagnostic = "smtp; 550 5.1.1 <rcpt@example.net>: User unknown";
  r.last_attempt = 1700000500;
  return r;
}

DsnInput failure_input() {
  DsnInput in;
  in.kind = DsnKind::kFailure;
  in.reporting_mta = "mx.example.org";
  in.to = "sender@example.com";
  in.envid = "QQ314159";
  in.arrival = 1700000000;
  in.now = 1700000600;
  in.recipients = {failed_recipient()};
  in.original = kOriginal;
  in.unique_id = "0LJ8K2M3N4P5Q6R7S8T9-failure-1700000600";
  return in;
}

Dsn make(const DsnInput& in) {
  auto dsn = make_dsn(in);
  REQUIRE(dsn);
  return *dsn;
}

}  // namespace

TEST_CASE("a failure report has the RFC 3464 structure", "[dsn]") {
  DsnInput in = failure_input();
  DsnRecipient second;
  second.address = "other@example.org";
  second.action = DsnAction::kFailed;
  second.status = "5.2.2";
  second.diagnostic = "x-local; mailbox full";
  in.recipients.push_back(second);
  const Dsn dsn = make(in);
  CHECK(dsn.body == BodyType::k7Bit);
  CHECK_FALSE(dsn.smtputf8);
  CHECK(dsn.full_content);
  const Parsed p = parse(dsn.message);

  CHECK(get(p.fields, "From") == "Mail Delivery System <MAILER-DAEMON@mx.example.org>");
  CHECK(get(p.fields, "To") == "<sender@example.com>");
  CHECK(get(p.fields, "Subject") == "Undelivered Mail Returned to Sender");
  CHECK(get(p.fields, "Date") == format_rfc5322_date(1700000600));
  const std::string id = get(p.fields, "Message-ID");
  CHECK(id.starts_with("<0LJ8K2M3N4P5Q6R7S8T9-failure-1700000600."));
  CHECK(id.ends_with("@mx.example.org>"));
  CHECK(get(p.fields, "Auto-Submitted") == "auto-replied");
  CHECK(get(p.fields, "MIME-Version") == "1.0");
  const std::string type = "multipart/report; report-type=delivery-status; boundary=\"";
  CHECK(get(p.fields, "Content-Type") == type + p.boundary + "\"");
  CHECK_FALSE(has(p.fields, "Content-Transfer-Encoding"));

  // Part 1: for a human.
  CHECK(get(p.parts[0].fields, "Content-Type") == "text/plain; charset=us-ascii");
  const std::string text = unwrap(p.parts[0].body);
  CHECK(text.find("mx.example.org") != std::string::npos);
  CHECK(text.find("<rcpt@example.net>: delivery failed.") != std::string::npos);
  CHECK(text.find("550 5.1.1 <rcpt@example.net>: User unknown") != std::string::npos);
  CHECK(text.find("mailbox full") != std::string::npos);

  // Part 2: for a program.
  CHECK(get(p.parts[1].fields, "Content-Type") == "message/delivery-status");
  REQUIRE(p.status_blocks.size() == 3);
  const auto& msg = p.status_blocks[0];
  CHECK(get(msg, "Reporting-MTA") == "dns; mx.example.org");
  CHECK(get(msg, "Original-Envelope-Id") == "QQ314159");
  CHECK(get(msg, "Arrival-Date") == format_rfc5322_date(1700000000));
  const auto& r1 = p.status_blocks[1];
  CHECK(get(r1, "Original-Recipient") == "rfc822;Rcpt@Example.net");
  CHECK(get(r1, "Final-Recipient") == "rfc822; rcpt@example.net");
  CHECK(get(r1, "Action") == "failed");
  CHECK(get(r1, "Status") == "5.1.1");
  CHECK(get(r1, "Remote-MTA") == "dns; mx.example.net");
  CHECK(get(r1, "Diagnostic-Code") == "smtp; 550 5.1.1 <rcpt@example.net>: User unknown");
  CHECK(get(r1, "Last-Attempt-Date") == format_rfc5322_date(1700000500));
  CHECK_FALSE(has(r1, "Will-Retry-Until"));
  const auto& r2 = p.status_blocks[2];
  CHECK_FALSE(has(r2, "Original-Recipient"));
  CHECK_FALSE(has(r2, "Remote-MTA"));
  CHECK_FALSE(has(r2, "Last-Attempt-Date"));
  CHECK(get(r2, "Final-Recipient") == "rfc822; other@example.org");
  CHECK(get(r2, "Status") == "5.2.2");
  CHECK(get(r2, "Diagnostic-Code") == "x-local; mailbox full");

  // Part 3: the message, octet for octet.
  CHECK(get(p.parts[2].fields, "Content-Type") == "message/rfc822");
  CHECK_FALSE(has(p.parts[2].fields, "Content-Transfer-Encoding"));
  CHECK(p.parts[2].body == kOriginal);
}

TEST_CASE("a DSN is deterministic, and its ids depend on unique_id", "[dsn]") {
  DsnInput in = failure_input();
  const std::string a = make(in).message;
  CHECK(make(in).message == a);
  in.unique_id = "another";
  const std::string b = make(in).message;
  CHECK(b != a);
  CHECK(parse(a).boundary != parse(b).boundary);
  CHECK(get(parse(a).fields, "Message-ID") != get(parse(b).fields, "Message-ID"));
  in.unique_id = "";
  const Parsed c = parse(make(in).message);
  CHECK(get(c.fields, "Message-ID").ends_with("@mx.example.org>"));
}

TEST_CASE("RET decides what comes back, and only failures return the body", "[dsn]") {
  DsnInput in = failure_input();
  SECTION("RET=FULL") {
    in.ret = DsnRet::kFull;
    const Parsed p = parse(make(in).message);
    CHECK(get(p.parts[2].fields, "Content-Type") == "message/rfc822");
    CHECK(get(p.parts[2].fields, "Content-Description") == "Undelivered Message");
    CHECK(p.parts[2].body == kOriginal);
  }
  SECTION("RET=HDRS") {
    in.ret = DsnRet::kHeaders;
    const Dsn dsn = make(in);
    CHECK_FALSE(dsn.full_content);
    const Parsed p = parse(dsn.message);
    CHECK(get(p.parts[2].fields, "Content-Type") == "text/rfc822-headers");
    CHECK(get(p.parts[2].fields, "Content-Description") == "Undelivered Message Headers");
    CHECK(p.parts[2].body == header_of(kOriginal));
    CHECK(flat(p.parts[0].body).find("the header of your message") != std::string::npos);
  }
  SECTION("a delay warning returns the header even for RET=FULL") {
    in.kind = DsnKind::kDelay;
    in.ret = DsnRet::kFull;
    DsnRecipient& r = in.recipients[0];
    r.action = DsnAction::kDelayed;
    r.status = "4.4.1";
    r.diagnostic = "smtp; 451 4.4.1 connection timed out";
    r.will_retry_until = 1700432000;
    const Parsed p = parse(make(in).message);
    CHECK(get(p.fields, "Subject") == "Delayed Mail (still being retried)");
    CHECK(get(p.parts[2].fields, "Content-Type") == "text/rfc822-headers");
    CHECK(p.parts[2].body == header_of(kOriginal));
    const auto& rf = p.status_blocks.at(1);
    CHECK(get(rf, "Action") == "delayed");
    CHECK(get(rf, "Status") == "4.4.1");
    CHECK(get(rf, "Will-Retry-Until") == format_rfc5322_date(1700432000));
    CHECK(unwrap(p.parts[0].body).find("will keep trying until") != std::string::npos);
  }
  SECTION("a success report returns the header") {
    in.kind = DsnKind::kSuccess;
    in.ret = DsnRet::kFull;
    in.recipients[0].action = DsnAction::kDelivered;
    in.recipients[0].status = "2.0.0";
    in.recipients[0].diagnostic = "smtp; 250 2.0.0 OK";
    DsnRecipient relayed = in.recipients[0];
    relayed.action = DsnAction::kRelayed;
    relayed.status = "5.1.1";  // does not fit: replaced
    DsnRecipient expanded = in.recipients[0];
    expanded.action = DsnAction::kExpanded;
    expanded.status = "";
    in.recipients.push_back(relayed);
    in.recipients.push_back(expanded);
    const Parsed p = parse(make(in).message);
    CHECK(get(p.fields, "Subject") == "Successful Mail Delivery Report");
    CHECK(get(p.parts[2].fields, "Content-Type") == "text/rfc822-headers");
    REQUIRE(p.status_blocks.size() == 4);
    CHECK(get(p.status_blocks[1], "Action") == "delivered");
    CHECK(get(p.status_blocks[1], "Status") == "2.0.0");
    CHECK(get(p.status_blocks[2], "Action") == "relayed");
    CHECK(get(p.status_blocks[2], "Status") == "2.0.0");
    CHECK(get(p.status_blocks[3], "Action") == "expanded");
    CHECK(get(p.status_blocks[3], "Status") == "2.0.0");
  }
}

TEST_CASE("a huge original comes back as its header", "[dsn]") {
  std::string big = header_of(kOriginal) + "\r\n";
  const std::string line(76, 'x');
  while (big.size() < 2 * kDefaultMaxReturned) {
    big += line + "\r\n";
  }
  DsnInput in = failure_input();
  in.original = big;
  SECTION("RET not given") {
    const Dsn dsn = make(in);
    CHECK_FALSE(dsn.full_content);
    CHECK(dsn.message.size() < 16 * 1024);
    const Parsed p = parse(dsn.message);
    CHECK(get(p.parts[2].fields, "Content-Type") == "text/rfc822-headers");
    CHECK(p.parts[2].body == header_of(kOriginal));
  }
  SECTION("RET=FULL obeys max_returned too") {
    in.ret = DsnRet::kFull;
    CHECK_FALSE(make(in).full_content);
    in.max_returned = std::numeric_limits<std::size_t>::max();
    const Dsn dsn = make(in);
    CHECK(dsn.full_content);
    CHECK(parse(dsn.message).parts[2].body == big);
  }
  SECTION("a header larger than max_returned is cut at a line end") {
    in.max_returned = 100;
    const Parsed p = parse(make(in).message);
    const std::string& h = p.parts[2].body;
    CHECK(h.size() <= 100);
    CHECK(h.ends_with("\r\n"));
    CHECK(h.starts_with("Received: "));
  }
}

TEST_CASE("an original without a header/body separator", "[dsn]") {
  DsnInput in = failure_input();
  in.ret = DsnRet::kHeaders;
  SECTION("all header lines") {
    const std::string original = "Subject: no body\r\nFrom: a@b.example\r\n";
    in.original = original;
    CHECK(parse(make(in).message).parts[2].body == original);
  }
  SECTION("header then text without a blank line") {
    const std::string original = "Subject: hi\r\nthis is no header field\r\nmore\r\n";
    in.original = original;
    CHECK(parse(make(in).message).parts[2].body == "Subject: hi\r\n");
  }
  SECTION("no line end at all") {
    in.original = "Subject: unterminated";
    CHECK(parse(make(in).message).parts[2].body == "Subject: unterminated\r\n");
  }
  SECTION("body only") {
    in.original = "\r\njust a body\r\n";
    CHECK(parse(make(in).message).parts[2].body.empty());
  }
  SECTION("empty") {
    in.original = "";
    CHECK(parse(make(in).message).parts[2].body.empty());
    in.ret = DsnRet::kFull;
    CHECK(parse(make(in).message).parts[2].body.empty());
  }
}

TEST_CASE("content that is not valid 8bit data comes back as a repaired header", "[dsn]") {
  DsnInput in = failure_input();
  in.ret = DsnRet::kFull;
  const std::string long_line(2000, 'y');
  for (const std::string& original :
       {std::string("Subject: bare LF\nFrom: a@b\n\nbody\n"),
        std::string("Subject: nul\r\n\r\nbo\0dy\r\n", 23),
        std::string("Subject: bare CR\r\n\r\nbo\rdy\r\n"),
        std::string("Subject: long line\r\n\r\n") + long_line + "\r\n",
        std::string("Subject: long header ") + long_line + "\r\n\r\nbody\r\n"}) {
    INFO(original.substr(0, 30));
    in.original = original;
    const Dsn dsn = make(in);
    CHECK_FALSE(dsn.full_content);
    const Parsed p = parse(dsn.message);  // checks CRLF and line lengths everywhere
    CHECK(get(p.parts[2].fields, "Content-Type") == "text/rfc822-headers");
    CHECK(p.parts[2].body.starts_with("Subject: "));
    CHECK(p.parts[2].body.find("bo") == std::string::npos);
  }
  in.original = "Subject: bare LF\nFrom: a@b\n\nbody\n";
  CHECK(parse(make(in).message).parts[2].body == "Subject: bare LF\r\nFrom: a@b\r\n");
}

TEST_CASE("8-bit content is declared 8bit and reported in Dsn::body", "[dsn]") {
  DsnInput in = failure_input();
  const std::string original = "Subject: caf\xC3\xA9\r\n\r\nna\xC3\xAFve \xFF\r\n";
  in.original = original;
  const Dsn dsn = make(in);
  CHECK(dsn.body == BodyType::k8BitMime);
  CHECK_FALSE(dsn.smtputf8);
  const Parsed p = parse(dsn.message);
  CHECK(get(p.fields, "Content-Transfer-Encoding") == "8bit");
  CHECK(get(p.parts[2].fields, "Content-Transfer-Encoding") == "8bit");
  CHECK_FALSE(has(p.parts[0].fields, "Content-Transfer-Encoding"));
  CHECK(p.parts[2].body == original);
  // Only the returned content is 8-bit; what the DSN says itself stays ASCII.
  const std::string head = dsn.message.substr(0, dsn.message.find("\r\n\r\n"));
  for (unsigned char c : head + p.parts[0].body + p.parts[1].body) {
    CHECK(c < 0x80);
  }
}

TEST_CASE("hostile diagnostics cannot break the structure", "[dsn]") {
  DsnInput in = failure_input();
  in.original = kOriginal;
  const std::string first_boundary = parse(make(in).message).boundary;
  std::string diag =
      "smtp; 550-5.1.1 first line\r\n550-5.1.1 --" + first_boundary +
      "\r\n\r\nContent-Type: text/html\r\n\r\n<b>owned</b>\r\n--" + first_boundary +
      "--\r\nFinal-Recipient: rfc822; evil@example.com\n\rAction: delivered\0\x01\x7F\xC2\x85\xFF "s;
  diag += std::string(10000, 'A') + " " + std::string(5000, 'B');
  in.recipients[0].diagnostic = diag;
  in.recipients[0].remote_mta = "mx.example.net\r\nX-Injected: yes";
  // The old boundary in the returned message as well.
  const std::string original = "Subject: x\r\n\r\n--" + first_boundary + "\r\n";
  in.original = original;

  const Dsn dsn = make(in);
  const Parsed p = parse(dsn.message);  // three parts, the boundary nowhere else
  CHECK(p.boundary != first_boundary);
  REQUIRE(p.status_blocks.size() == 2);
  const auto& r = p.status_blocks[1];
  CHECK_FALSE(has(r, "Content-Type"));
  CHECK_FALSE(has(r, "X-Injected"));
  CHECK(get(r, "Final-Recipient") == "rfc822; rcpt@example.net");
  CHECK(get(r, "Action") == "failed");
  const std::string code = get(r, "Diagnostic-Code");
  CHECK(code.starts_with("smtp; 550-5.1.1 first line 550-5.1.1 --"));
  CHECK(code.find('\r') == std::string::npos);
  CHECK(code.find('\n') == std::string::npos);
  CHECK(code.find('\0') == std::string::npos);
  CHECK(code.find("Action: delivered?????") != std::string::npos);
  // A run of over 998 octets without a space is folded with an inserted one (format_header).
  CHECK(code.size() <= kMaxDiagnostic + 2);
  CHECK(code.ends_with("..."));
  CHECK(get(r, "Remote-MTA") == "dns; mx.example.net X-Injected: yes");
  CHECK(p.parts[2].body == original);
  CHECK_FALSE(has(p.fields, "X-Injected"));
}

TEST_CASE("the boundary is never in the content, whatever the content", "[dsn]") {
  // Feed each generated boundary back into the next original: the boundary must move on.
  DsnInput in = failure_input();
  std::string original = kOriginal;
  std::vector<std::string> seen;
  for (int i = 0; i < 5; ++i) {
    in.original = original;
    const Parsed p = parse(make(in).message);
    for (const std::string& b : seen) {
      CHECK(p.boundary != b);
    }
    seen.push_back(p.boundary);
    original += "--" + p.boundary + "\r\n--" + p.boundary + "--\r\n";
  }
}

TEST_CASE("odd addresses are sanitized and typed", "[dsn]") {
  DsnInput in = failure_input();
  SECTION("a quoted local part with specials") {
    in.recipients[0].address = "\"john \\\"q\\\" <x>, doe\"@example.net";
    const Parsed p = parse(make(in).message);
    CHECK(get(p.status_blocks[1], "Final-Recipient") ==
          "rfc822; \"john \\\"q\\\" <x>, doe\"@example.net");
  }
  SECTION("control characters and line ends") {
    in.recipients[0].address = "evil\r\nBcc: victim@example.com\0@example.net"s;
    in.recipients[0].original = "rfc822;evil\r\nX-Bad: 1";
    in.to = "sender@example.com\r\nBcc: victim@example.com";
    const Parsed p = parse(make(in).message);
    CHECK_FALSE(has(p.fields, "Bcc"));
    CHECK(get(p.fields, "To") == "<sender@example.com Bcc: victim@example.com>");
    const auto& r = p.status_blocks[1];
    CHECK_FALSE(has(r, "Bcc"));
    CHECK_FALSE(has(r, "X-Bad"));
    CHECK(get(r, "Final-Recipient") == "rfc822; evil Bcc: victim@example.com?@example.net");
    CHECK(get(r, "Original-Recipient") == "rfc822;evil X-Bad: 1");
  }
  SECTION("an ORCPT without a type is left out") {
    in.recipients[0].original = "no type here";
    CHECK_FALSE(has(parse(make(in).message).status_blocks[1], "Original-Recipient"));
  }
  SECTION("a non-ASCII address without SMTPUTF8 uses the utf-8 type in xtext form") {
    in.recipients[0].address = "j\xC3\xB6rg+x=y@b\xC3\xBC" + "cher.example"s;
    const Dsn dsn = make(in);
    CHECK(dsn.body == BodyType::k7Bit);
    const Parsed p = parse(dsn.message);
    CHECK(get(p.status_blocks[1], "Final-Recipient") ==
          "utf-8; j\\x{F6}rg\\x{2B}x\\x{3D}y@b\\x{FC}cher.example");
    CHECK(p.parts[0].body.find("<j?rg+x=y@b?cher.example>") != std::string::npos);
  }
  SECTION("a very long address is capped") {
    in.recipients[0].address = std::string(5000, 'a') + "@example.net";
    const Parsed p = parse(make(in).message);
    const std::string f = get(p.status_blocks[1], "Final-Recipient");
    CHECK(f.size() <= kMaxValue + 8);
    CHECK(f.ends_with("..."));
  }
  SECTION("the From address and the host name") {
    in.from = "postmaster@mx.example.org";
    in.reporting_mta = "mx.example.org\r\nX-Evil: 1";
    const Parsed p = parse(make(in).message);
    CHECK(get(p.fields, "From") == "Mail Delivery System <postmaster@mx.example.org>");
    CHECK(get(p.status_blocks[0], "Reporting-MTA") == "dns; mx.example.org X-Evil: 1");
    CHECK(get(p.fields, "Message-ID").ends_with("@mx.example.orgX-Evil1>"));
  }
}

TEST_CASE("SMTPUTF8 originals get the RFC 6533 global types", "[dsn]") {
  DsnInput in = failure_input();
  in.smtputf8 = true;
  in.to = "s\xC3\xA9nder@example.com";
  in.recipients[0].address = "j\xC3\xB6rg@example.net";
  in.recipients[0].diagnostic = "smtp; 550 5.1.1 unbekannter Empf\xC3\xA4nger \xFF";
  const std::string original =
      "Subject: caf\xC3\xA9\r\nFrom: s\xC3\xA9nder@example.com\r\n\r\nx\r\n";
  in.original = original;
  const Dsn dsn = make(in);
  CHECK(dsn.smtputf8);
  CHECK(dsn.body == BodyType::k8BitMime);
  const Parsed p = parse(dsn.message);
  CHECK(get(p.fields, "Content-Type")
            .starts_with("multipart/report; report-type=global-delivery-status; boundary="));
  CHECK(get(p.fields, "To") == "<s\xC3\xA9nder@example.com>");
  CHECK(get(p.parts[0].fields, "Content-Type") == "text/plain; charset=utf-8");
  CHECK(get(p.parts[1].fields, "Content-Type") == "message/global-delivery-status");
  CHECK(get(p.parts[1].fields, "Content-Transfer-Encoding") == "8bit");
  CHECK(get(p.parts[2].fields, "Content-Type") == "message/global");
  CHECK(p.parts[2].body == original);
  const auto& r = p.status_blocks.at(1);
  CHECK(get(r, "Final-Recipient") == "utf-8; j\xC3\xB6rg@example.net");
  CHECK(get(r, "Diagnostic-Code") == "smtp; 550 5.1.1 unbekannter Empf\xC3\xA4nger ?");
  in.ret = DsnRet::kHeaders;
  CHECK(get(parse(make(in).message).parts[2].fields, "Content-Type") == "message/global-headers");
}

TEST_CASE("statuses are checked against the action", "[dsn]") {
  DsnInput in = failure_input();
  const auto status_for = [&](DsnAction action, std::string status) {
    in.recipients[0].action = action;
    in.recipients[0].status = std::move(status);
    return get(parse(make(in).message).status_blocks.at(1), "Status");
  };
  CHECK(status_for(DsnAction::kFailed, "5.1.1") == "5.1.1");
  CHECK(status_for(DsnAction::kFailed, "4.4.7") == "4.4.7");  // expired in the queue
  CHECK(status_for(DsnAction::kFailed, "2.0.0") == "5.0.0");
  CHECK(status_for(DsnAction::kFailed, "5.1.1x") == "5.0.0");
  CHECK(status_for(DsnAction::kFailed, "5.1234.1") == "5.0.0");
  CHECK(status_for(DsnAction::kFailed, "5.1.1\r\nX: y") == "5.0.0");
  CHECK(status_for(DsnAction::kFailed, "") == "5.0.0");
  CHECK(status_for(DsnAction::kDelayed, "5.1.1") == "4.0.0");
  CHECK(status_for(DsnAction::kDelayed, "4.123.456") == "4.123.456");
  CHECK(status_for(DsnAction::kDelivered, "4.0.0") == "2.0.0");
}

TEST_CASE("status_from_reply", "[dsn]") {
  CHECK(status_from_reply("550 5.1.1 User unknown", DsnAction::kFailed) == "5.1.1");
  CHECK(status_from_reply("550-5.1.1 The email account does not exist", DsnAction::kFailed) ==
        "5.1.1");
  CHECK(status_from_reply("451 4.4.1 timed out", DsnAction::kFailed) == "4.4.1");
  CHECK(status_from_reply("451 4.4.1 timed out", DsnAction::kDelayed) == "4.4.1");
  CHECK(status_from_reply("550 User unknown", DsnAction::kFailed) == "5.0.0");
  CHECK(status_from_reply("550 4.1.1 mismatch", DsnAction::kFailed) == "5.0.0");
  CHECK(status_from_reply("421", DsnAction::kDelayed) == "4.0.0");
  CHECK(status_from_reply("250 2.1.5 OK", DsnAction::kDelivered) == "2.1.5");
  CHECK(status_from_reply("550 5.1.1 x", DsnAction::kDelayed) == "4.0.0");
  CHECK(status_from_reply("connection refused", DsnAction::kFailed) == "5.0.0");
  CHECK(status_from_reply("", DsnAction::kDelivered) == "2.0.0");
}

TEST_CASE("never a DSN to the null sender, never an empty one", "[dsn]") {
  DsnInput in = failure_input();
  for (const char* to : {"", "<>", "\r\n", "<\t>"}) {
    in.to = to;
    auto dsn = make_dsn(in);
    REQUIRE_FALSE(dsn);
    CHECK(dsn.error().exit_code() == 70);  // EX_SOFTWARE
    CHECK_FALSE(dsn.error().is_temporary());
  }
  in.to = "<sender@example.com>";
  CHECK(get(parse(make(in).message).fields, "To") == "<sender@example.com>");
  in.recipients.clear();
  CHECK_FALSE(make_dsn(in));

  CHECK_FALSE(is_bounce_allowed(""));
  CHECK_FALSE(is_bounce_allowed("<>"));
  CHECK(is_bounce_allowed("sender@example.com"));
  CHECK(is_bounce_allowed("postmaster"));
}

TEST_CASE("should_notify follows RFC 3461 4.1", "[dsn]") {
  const auto f = DsnKind::kFailure, d = DsnKind::kDelay, s = DsnKind::kSuccess;
  CHECK(should_notify(kNotifyNone, f));
  CHECK(should_notify(kNotifyNone, d));
  CHECK_FALSE(should_notify(kNotifyNone, s));
  for (auto kind : {f, d, s}) {
    CHECK_FALSE(should_notify(kNotifyNever, kind));
  }
  CHECK(should_notify(kNotifySuccess, s));
  CHECK_FALSE(should_notify(kNotifySuccess, f));
  CHECK_FALSE(should_notify(kNotifySuccess, d));
  CHECK(should_notify(kNotifyFailure, f));
  CHECK_FALSE(should_notify(kNotifyFailure, d));
  CHECK(should_notify(kNotifyDelay, d));
  CHECK_FALSE(should_notify(kNotifyDelay, f));
  const unsigned all = kNotifySuccess | kNotifyFailure | kNotifyDelay;
  CHECK(should_notify(all, f));
  CHECK(should_notify(all, d));
  CHECK(should_notify(all, s));
}

TEST_CASE("the text part wraps and keeps every line short", "[dsn]") {
  DsnInput in = failure_input();
  std::string words;
  for (int i = 0; i < 100; ++i) {
    words += "word" + std::to_string(i) + " ";
  }
  in.recipients[0].diagnostic = "smtp; 550 " + words + std::string(1200, 'Z');
  const Parsed p = parse(make(in).message);
  std::string_view text = p.parts[0].body;
  std::size_t long_lines = 0;
  while (!text.empty()) {
    const std::size_t eol = text.find("\r\n");
    if (eol > 76)
      ++long_lines;
    text.remove_prefix(eol + 2);
  }
  CHECK(long_lines == 2);  // the 1200-octet word, split in two
}

TEST_CASE("random hostile input never breaks the structure", "[dsn]") {
  std::mt19937 rng(20240611);
  const std::vector<std::string> atoms = {"\r\n",
                                          "\n",
                                          "\r",
                                          "\0"s,
                                          " ",
                                          "\t",
                                          "--",
                                          "=_mw_dsn_",
                                          "--=_mw_dsn_0\r\n",
                                          ":",
                                          ";",
                                          "Content-Type: text/html",
                                          "\xC3\xA9",
                                          "\xE2\x98\x83",
                                          "\xFF",
                                          "\xC2\x85",
                                          "\x7F",
                                          "\x01",
                                          "<",
                                          ">",
                                          "\"",
                                          "\\",
                                          "a",
                                          "Subject: x",
                                          "\r\n\r\n",
                                          std::string(1200, 'W')};
  const auto junk = [&](std::size_t max_atoms) {
    std::string out;
    const std::size_t n = std::uniform_int_distribution<std::size_t>(0, max_atoms)(rng);
    for (std::size_t i = 0; i < n; ++i) {
      out += atoms[std::uniform_int_distribution<std::size_t>(0, atoms.size() - 1)(rng)];
    }
    return out;
  };
  for (int round = 0; round < 300; ++round) {
    INFO("round " << round);
    DsnInput in;
    in.kind = static_cast<DsnKind>(round % 3);
    in.reporting_mta = junk(3);
    in.from = round % 5 == 0 ? junk(3) : "";
    in.to = "x" + junk(4);
    in.envid = junk(4);
    in.arrival = round;
    in.now = 1700000000 + round;
    in.ret = static_cast<DsnRet>(round % 3);
    in.smtputf8 = round % 2 == 1;
    in.max_returned = round % 4 == 0 ? 64 : kDefaultMaxReturned;
    in.unique_id = junk(3);
    const std::string original = junk(40);
    in.original = original;
    const std::size_t n = 1 + round % 3;
    for (std::size_t i = 0; i < n; ++i) {
      DsnRecipient r;
      r.address = junk(5);
      r.original = junk(3);
      r.action = static_cast<DsnAction>((round + i) % 5);
      r.status = junk(2);
      r.remote_mta = junk(3);
      r.diagnostic = junk(20);
      r.last_attempt = round % 2 == 0 ? 0 : 1700000000;
      r.will_retry_until = 1700400000;
      in.recipients.push_back(r);
    }
    const Dsn dsn = make(in);
    const Parsed p = parse(dsn.message);  // CRLF, line lengths, three parts, boundary unique
    REQUIRE(p.status_blocks.size() == n + 1);
    for (std::size_t i = 1; i <= n; ++i) {
      get(p.status_blocks[i], "Final-Recipient");
      CHECK(get(p.status_blocks[i], "Action") == dsn_action_name(in.recipients[i - 1].action));
      get(p.status_blocks[i], "Status");
    }
    if (!in.smtputf8) {
      const std::string own =
          dsn.message.substr(0, dsn.message.find("\r\n\r\n")) + p.parts[0].body + p.parts[1].body;
      CHECK(std::all_of(own.begin(), own.end(),
                        [](char c) { return static_cast<unsigned char>(c) < 0x80; }));
    }
    if (dsn.full_content)
      CHECK(p.parts[2].body == original);
  }
}
