// The SMTP session state machine, driven directly with a host that records what it is asked.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "libmail/base64.h"
#include "mta/smtp_session.h"

using mailwright::Error;
using mailwright::Path;
using mailwright::Status;
using mailwright::mta::Envelope;
using mailwright::mta::RecipientKind;
using mailwright::mta::RecipientVerdict;
using mailwright::smtp::AuthResult;
using mailwright::smtp::Session;
using mailwright::smtp::SessionHost;
using mailwright::smtp::SessionPolicy;

namespace {

struct FakeHost final : SessionHost {
  std::vector<std::string> local_users{"alice", "bob"};
  std::vector<std::string> domains{"example.org"};
  bool space = true;
  bool fail_open = false;
  bool sync_commit = true;
  Status commit_status;
  Session* session = nullptr;
  std::string* out = nullptr;

  std::vector<Envelope> opened;
  std::string written;
  std::vector<std::string> committed;  // message text of each committed message
  int aborted = 0;
  int commits_pending = 0;
  std::vector<std::pair<std::string, std::string>> auth_requests;
  int tls_requests = 0;

  RecipientVerdict check_recipient(const Path& path, bool relay_allowed) override {
    mailwright::mta::RecipientContext rc;
    rc.relay_allowed = relay_allowed;
    rc.local_domains = &domains;
    rc.local_name_exists = [this](std::string_view name) -> std::optional<bool> {
      for (const auto& u : local_users) {
        if (u == name) return true;
      }
      return false;
    };
    return mailwright::mta::decide_recipient(path, rc);
  }
  std::optional<bool> local_name_exists(std::string_view name) override {
    for (const auto& u : local_users) {
      if (u == name) return true;
    }
    return false;
  }
  bool storage_available(std::uint64_t) override { return space; }
  Status open_message(Envelope& envelope) override {
    if (fail_open) return Error::temporary(75, "4.3.0", "spool broken");
    envelope.queue_id = "QID" + std::to_string(opened.size());
    opened.push_back(envelope);
    written.clear();
    return {};
  }
  Status write_message(std::string_view bytes) override {
    written.append(bytes);
    return {};
  }
  void commit_message() override {
    if (sync_commit) {
      if (commit_status) committed.push_back(written);
      session->commit_result(commit_status, *out);
    } else {
      ++commits_pending;
    }
  }
  void abort_message() override { ++aborted; }
  void authenticate(const std::string& user, const std::string& password) override {
    auth_requests.emplace_back(user, password);
  }
  void start_tls() override { ++tls_requests; }
  std::int64_t now() override { return 1700000000; }
};

struct Harness {
  FakeHost host;
  std::string out;
  Session session;
  explicit Harness(SessionPolicy policy = default_policy()) : session(host, std::move(policy)) {
    host.session = &session;
    host.out = &out;
  }
  static SessionPolicy default_policy() {
    SessionPolicy p;
    p.hostname = "mx.example.org";
    p.client_address = "192.0.2.7";
    p.max_errors = 5;
    return p;
  }
  // Sends input, returns what the session answered to it.
  std::string send(std::string_view input) {
    out.clear();
    session.process(input, out);
    return out;
  }
};

}  // namespace

TEST_CASE("smtp session: a whole transaction is queued with its Received header") {
  Harness h;
  CHECK(h.session.greeting() == "220 mx.example.org ESMTP Mailwright\r\n");
  std::string ehlo = h.send("EHLO client.example\r\n");
  CHECK(ehlo.rfind("250-mx.example.org\r\n", 0) == 0);
  CHECK(ehlo.find("250-PIPELINING\r\n") != std::string::npos);
  CHECK(ehlo.find("SIZE ") != std::string::npos);
  CHECK(ehlo.find("STARTTLS") == std::string::npos);  // no TLS available
  CHECK(ehlo.find("AUTH") == std::string::npos);
  CHECK(h.send("MAIL FROM:<sender@remote.example> SIZE=100\r\n") == "250 2.1.0 Ok\r\n");
  CHECK(h.send("RCPT TO:<alice@example.org> NOTIFY=SUCCESS,FAILURE\r\n") == "250 2.1.5 Ok\r\n");
  CHECK(h.send("DATA\r\n") == "354 End data with <CR><LF>.<CR><LF>\r\n");
  CHECK(h.send("Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n") ==
        "250 2.0.0 Ok: queued as QID0\r\n");
  REQUIRE(h.host.committed.size() == 1);
  const std::string& msg = h.host.committed[0];
  CHECK(msg.rfind("Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org "
                  "(Mailwright) with ESMTP id QID0\r\n\tfor <alice@example.org>; ",
                  0) == 0);
  CHECK(msg.find("\r\nSubject: hi\r\n\r\n.dot\r\nbody\r\n") != std::string::npos);
  const Envelope& env = h.host.opened[0];
  CHECK(env.sender == "sender@remote.example");
  REQUIRE(env.recipients.size() == 1);
  CHECK(env.recipients[0].notify ==
        (mailwright::mta::kNotifySuccess | mailwright::mta::kNotifyFailure));
  CHECK(env.client_address == "192.0.2.7");
  CHECK(env.helo == "client.example");
  CHECK(env.protocol == "ESMTP");
  CHECK(h.send("QUIT\r\n") == "221 2.0.0 mx.example.org closing connection\r\n");
  CHECK(h.session.finished());
}

TEST_CASE("smtp session: pipelined commands are answered in order in one go") {
  Harness h;
  std::string replies = h.send(
      "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\n"
      "RCPT TO:<bob@example.org>\r\nDATA\r\n");
  CHECK(replies.find("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 User unknown\r\n250 2.1.5 Ok\r\n"
                     "354 ") != std::string::npos);
  CHECK(h.send("x\r\n.\r\nRSET\r\nNOOP\r\n") ==
        "250 2.0.0 Ok: queued as QID0\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
  CHECK(h.host.opened[0].sender.empty());
  CHECK(h.host.opened[0].recipients.size() == 2);
}

TEST_CASE("smtp session: input waits while a commit is pending, then goes on") {
  Harness h;
  h.host.sync_commit = false;
  h.send("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
  CHECK(h.send("x\r\n.\r\nNOOP\r\n").empty());  // no 250 before the commit, NOOP waits
  CHECK(h.session.waiting());
  CHECK(h.host.commits_pending == 1);
  std::string out;
  h.session.commit_result({}, out);
  CHECK(out == "250 2.0.0 Ok: queued as QID0\r\n250 2.0.0 Ok\r\n");
}

TEST_CASE("smtp session: a failed commit is a 451 or 452, never a 250") {
  Harness h;
  h.host.commit_status = Error::temporary(74, "4.3.1", "disk full");
  h.send("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
  CHECK(h.send("x\r\n.\r\n").rfind("452 4.3.1 ", 0) == 0);
  h.host.commit_status = Error::temporary(74, "4.3.0", "io error");
  h.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
  CHECK(h.send("x\r\n.\r\n").rfind("451 4.3.0 ", 0) == 0);
  CHECK(h.host.committed.empty());
}

TEST_CASE("smtp session: ordering and state errors") {
  Harness h;
  CHECK(h.send("MAIL FROM:<a@b.example>\r\n").rfind("503 5.5.1", 0) == 0);
  h.send("HELO c\r\n");
  CHECK(h.send("RCPT TO:<alice@example.org>\r\n").rfind("503 5.5.1", 0) == 0);
  CHECK(h.send("DATA\r\n").rfind("503 5.5.1", 0) == 0);
  h.send("MAIL FROM:<a@b.example>\r\n");
  CHECK(h.send("MAIL FROM:<a@b.example>\r\n").rfind("503 5.5.1 Nested", 0) == 0);
  CHECK(h.send("DATA\r\n").rfind("554 5.5.1 No valid recipients", 0) == 0);
}

TEST_CASE("smtp session: relay is refused unless the client may relay") {
  SessionPolicy lenient = Harness::default_policy();
  lenient.max_errors = 100;
  Harness h(lenient);
  h.send("EHLO c\r\nMAIL FROM:<a@b.example>\r\n");
  for (const char* rcpt : {"<x@remote.example>", "<alice%remote.example@example.org>",
                           "<remote.example!alice@example.org>",
                           "<\"alice@remote.example\"@example.org>",
                           "<@example.org:alice@remote.example>", "<alice@[192.0.2.1]>"}) {
    INFO(rcpt);
    std::string reply = h.send(std::string("RCPT TO:") + rcpt + "\r\n");
    CHECK(reply[0] == '5');
    h.send("RSET\r\nMAIL FROM:<a@b.example>\r\n");
  }
  CHECK(h.send("RCPT TO:<Postmaster>\r\n") == "250 2.1.5 Ok\r\n");
  CHECK(h.send("RCPT TO:<ALICE@EXAMPLE.ORG>\r\n") == "250 2.1.5 Ok\r\n");

  SessionPolicy p = Harness::default_policy();
  p.relay_network = true;
  Harness relay(p);
  relay.send("EHLO c\r\nMAIL FROM:<a@b.example>\r\n");
  CHECK(relay.send("RCPT TO:<x@remote.example>\r\n") == "250 2.1.5 Ok\r\n");
  // Still no smuggling of remote addresses through local ones.
  CHECK(relay.send("RCPT TO:<alice%remote.example@example.org>\r\n").rfind("550 5.1.1", 0) == 0);
}

TEST_CASE("smtp session: SMTP smuggling never makes a second message") {
  for (const char* fake_end : {"\n.\n", "\r.\r", "\n.\r\n", "\r\n.\r", "\r\n.\n",
                               "\r\r\n.\r\r\n"}) {
    for (bool normalize : {false, true}) {
      INFO("end " << std::string(fake_end).size() << " normalize " << normalize);
      SessionPolicy p = Harness::default_policy();
      p.normalize_bare_lf = normalize;
      Harness h(p);
      h.send("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
      std::string body = std::string("hello") + fake_end +
                         "MAIL FROM:<evil@x.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
                         "smuggled\r\n.\r\n";
      std::string reply = h.send(body);
      // One answer to one message: either refused as a whole or accepted as a whole.
      CHECK((reply.rfind("250 2.0.0 Ok: queued", 0) == 0 || reply.rfind("550 5.6.0", 0) == 0));
      CHECK(reply.find("\r\n") == reply.size() - 2);
      CHECK(h.host.opened.size() == 1);
      CHECK(h.host.committed.size() <= 1);
    }
  }
}

TEST_CASE("smtp session: lines, NULs and limits") {
  SessionPolicy p = Harness::default_policy();
  p.max_recipients = 2;
  p.max_message_size = 2000;
  p.max_errors = 100;
  Harness h(p);
  h.send("EHLO c\r\n");
  CHECK(h.send("NOOP\n").rfind("500 5.5.2 Bare LF", 0) == 0);
  CHECK(h.send(std::string("NOOP\0x\r\n", 8)).rfind("50", 0) == 0);
  CHECK(h.send(std::string(20000, 'A') + "\r\nNOOP\r\n") ==
        "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n");
  CHECK(h.send("MAIL FROM:<a@b.example> SIZE=3000\r\n").rfind("552 5.3.4", 0) == 0);
  h.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n");
  CHECK(h.send("RCPT TO:<postmaster>\r\n").rfind("452 4.5.3", 0) == 0);
  h.send("DATA\r\n");
  CHECK(h.send(std::string(3000, 'x') + "\r\n.\r\n").rfind("500 5.5.2", 0) == 0);
  h.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
  CHECK(h.send(std::string("a\0b\r\n.\r\n", 8)).rfind("550 5.6.0", 0) == 0);
  CHECK(h.host.committed.empty());
}

TEST_CASE("smtp session: too many errors end the session with 421") {
  Harness h;  // max_errors 5
  std::string out;
  for (int i = 0; i < 5; ++i) out += h.send("BOGUS\r\n");
  CHECK(out.find("421 4.7.0") != std::string::npos);
  CHECK(h.session.finished());
}

TEST_CASE("smtp session: STARTTLS drops pipelined plaintext and starts over") {
  SessionPolicy p = Harness::default_policy();
  p.tls_available = true;
  p.auth_available = true;
  Harness h(p);
  std::string ehlo = h.send("EHLO c\r\n");
  CHECK(ehlo.find("STARTTLS") != std::string::npos);
  CHECK(ehlo.find("AUTH") == std::string::npos);
  CHECK(h.send("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n").rfind("538 5.7.11", 0) == 0);
  CHECK(h.send("STARTTLS\r\nMAIL FROM:<injected@x.example>\r\n") ==
        "220 2.0.0 Ready to start TLS\r\n");
  CHECK(h.host.tls_requests == 1);
  CHECK(h.send("RSET\r\n").empty());  // nothing is read before TLS is up
  std::string out;
  h.session.tls_started("TLSv1.3", "TLS_AES_256_GCM_SHA384", out);
  CHECK(h.send("MAIL FROM:<a@b.example>\r\n").rfind("503 5.5.1", 0) == 0);  // EHLO again first
  ehlo = h.send("EHLO c\r\n");
  CHECK(ehlo.find("STARTTLS") == std::string::npos);
  CHECK(ehlo.find("AUTH PLAIN LOGIN\r\n") != std::string::npos);
  CHECK(h.send("AUTH PLAIN " + mailwright::encode_base64(std::string("\0alice\0secret", 13)) +
               "\r\n")
            .empty());
  REQUIRE(h.host.auth_requests.size() == 1);
  CHECK(h.host.auth_requests[0] == std::make_pair(std::string("alice"), std::string("secret")));
  out.clear();
  h.session.auth_result(AuthResult::kOk, out);
  CHECK(out == "235 2.7.0 Authentication successful\r\n");
  CHECK(h.session.authenticated_user() == "alice");
  h.send("MAIL FROM:<alice@example.org>\r\n");
  CHECK(h.send("RCPT TO:<x@remote.example>\r\n") == "250 2.1.5 Ok\r\n");  // may relay now
  h.send("DATA\r\n");
  h.send("x\r\n.\r\n");
  REQUIRE(h.host.opened.size() == 1);
  CHECK(h.host.opened[0].protocol == "ESMTPSA");
  CHECK(h.host.opened[0].auth_user == "alice");
  CHECK(h.host.opened[0].tls_protocol == "TLSv1.3");
}

TEST_CASE("smtp session: AUTH LOGIN, cancellation and bad credentials") {
  SessionPolicy p = Harness::default_policy();
  p.tls_active = true;
  p.auth_available = true;
  Harness h(p);
  h.send("EHLO c\r\n");
  CHECK(h.send("AUTH LOGIN\r\n") == "334 VXNlcm5hbWU6\r\n");
  CHECK(h.send("*\r\n").rfind("501 5.0.0", 0) == 0);
  CHECK(h.send("AUTH LOGIN " + mailwright::encode_base64("bob") + "\r\n") == "334 UGFzc3dvcmQ6\r\n");
  CHECK(h.send(mailwright::encode_base64("wrong") + "\r\n").empty());
  std::string out;
  h.session.auth_result(AuthResult::kBadCredentials, out);
  CHECK(out.rfind("535 5.7.8", 0) == 0);
  CHECK(h.session.authenticated_user().empty());
  CHECK(h.send("AUTH PLAIN !!!!\r\n").rfind("501 5.5.", 0) == 0);
  CHECK(h.send("AUTH PLAIN QUJD\r\n").rfind("501 5.5.2 Malformed", 0) == 0);
  CHECK(h.send("AUTH CRAM-MD5\r\n").rfind("504 5.5.4", 0) == 0);
}

TEST_CASE("smtp session: submission requires AUTH before MAIL") {
  SessionPolicy p = Harness::default_policy();
  p.submission = true;
  p.tls_active = true;
  p.auth_available = true;
  Harness h(p);
  h.send("EHLO c\r\n");
  CHECK(h.send("MAIL FROM:<a@b.example>\r\n").rfind("530 5.7.0", 0) == 0);
}

TEST_CASE("smtp session: BDAT chunks make one message; a refused chunk is read and dropped") {
  Harness h;
  h.send("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\n");
  CHECK(h.send("BDAT 8\r\nline 1\r") == "");
  CHECK(h.send("\n") == "250 2.0.0 8 octets received\r\n");
  CHECK(h.send("BDAT 8 LAST\r\nline 2\r\nNOOP\r\n") ==
        "250 2.0.0 Ok: queued as QID0\r\n250 2.0.0 Ok\r\n");
  REQUIRE(h.host.committed.size() == 1);
  CHECK(h.host.committed[0].find("\r\nline 1\r\nline 2\r\n") != std::string::npos);
  // DATA cannot finish a transaction BDAT began (found by the fuzzer: it opened a second
  // message over the first).
  h.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\n");
  CHECK(h.send("BDAT 2\r\nab") == "250 2.0.0 2 octets received\r\n");
  CHECK(h.send("DATA\r\n").rfind("503 5.5.1", 0) == 0);
  CHECK(h.host.opened.size() == 2);  // the first transaction's and this one's, no third
  CHECK(h.send("RSET\r\n") == "250 2.0.0 Ok\r\n");
  // An empty LAST chunk ends a message too (RFC 3030 2).
  h.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\n");
  CHECK(h.send("BDAT 3\r\nx\r\n") == "250 2.0.0 3 octets received\r\n");
  CHECK(h.send("BDAT 0 LAST\r\n") == "250 2.0.0 Ok: queued as QID2\r\n");
  // BDAT without a transaction: its octets must not be taken as commands.
  CHECK(h.send("BDAT 6 LAST\r\nQUIT\r\n") == "503 5.5.1 Need MAIL command first\r\n");
  CHECK_FALSE(h.session.finished());
}

TEST_CASE("smtp session: VRFY modes") {
  Harness h;
  CHECK(h.send("VRFY alice\r\n").rfind("252 2.5.0", 0) == 0);
  SessionPolicy p = Harness::default_policy();
  p.vrfy = SessionPolicy::Vrfy::kOff;
  Harness off(p);
  CHECK(off.send("VRFY alice\r\n").rfind("502 5.5.1", 0) == 0);
  p.vrfy = SessionPolicy::Vrfy::kCheck;
  std::vector<std::string> domains{"example.org"};
  p.local_domains = &domains;
  Harness check(p);
  CHECK(check.send("VRFY <alice@example.org>\r\n") == "250 2.1.5 <alice@mx.example.org>\r\n");
  CHECK(check.send("VRFY carol\r\n").rfind("550 5.1.1", 0) == 0);
}

TEST_CASE("smtp session: a refused spool gives 451 at DATA") {
  Harness h;
  h.host.fail_open = true;
  h.send("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\n");
  CHECK(h.send("DATA\r\n").rfind("451 4.3.0", 0) == 0);
  h.host.space = false;
  CHECK(h.send("RSET\r\nMAIL FROM:<a@b.example>\r\n") == "250 2.0.0 Ok\r\n452 4.3.1 Insufficient system storage; try again later\r\n");
}
