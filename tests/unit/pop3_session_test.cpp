#include "pop3d/pop3_session.h"

#include <sysexits.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pop3d/pop3_command.h"

using mailwright::Error;
using mailwright::Result;
using mailwright::Status;
using mailwright::pop3::AuthOutcome;
using mailwright::encode_base64;
using mailwright::pop3::Maildrop;
using mailwright::pop3::MaildropMessage;
using mailwright::pop3::MessageStream;
using mailwright::pop3::Session;
using mailwright::pop3::SessionHost;
using mailwright::pop3::SessionPolicy;

using namespace std::string_literals;

namespace {

// Wire form of a message given with LF line ends: CRLF, dot-stuffed; TOP keeps the header,
// the empty line and that many body lines.
std::string wire_form(const std::string& text, std::optional<std::uint64_t> top) {
  std::string out;
  bool in_body = false;
  std::uint64_t body_lines = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t lf = text.find('\n', pos);
    if (lf == std::string::npos)
      lf = text.size();
    const std::string line = text.substr(pos, lf - pos);
    pos = lf + 1;
    if (in_body && top && body_lines++ >= *top)
      break;
    if (!line.empty() && line[0] == '.')
      out += '.';
    out += line + "\r\n";
    if (line.empty())
      in_body = true;
  }
  return out;
}

std::uint64_t crlf_size(const std::string& text) {
  return text.size() + static_cast<std::uint64_t>(std::count(text.begin(), text.end(), '\n'));
}

struct StreamLog {
  int live = 0;
  int max_live = 0;
  int opened = 0;
};

class FakeStream final : public MessageStream {
 public:
  FakeStream(std::string wire, StreamLog& log, std::optional<std::size_t> fail_after, bool stall)
      : wire_(std::move(wire)), log_(log), fail_after_(fail_after), stall_(stall) {
    ++log_.live;
    ++log_.opened;
    log_.max_live = std::max(log_.max_live, log_.live);
  }
  ~FakeStream() override { --log_.live; }

  Result<bool> next(std::string& out, std::size_t max) override {
    if (stall_)
      return true;
    if (fail_after_ && pos_ >= *fail_after_) {
      return Error::temporary(EX_IOERR, "4.3.0", "/var/mail/joe: read error");
    }
    std::size_t n = std::min(std::max<std::size_t>(max, 1), wire_.size() - pos_);
    if (fail_after_)
      n = std::min(n, *fail_after_ - pos_);
    out.append(wire_, pos_, n);
    pos_ += n;
    return pos_ < wire_.size();
  }

 private:
  std::string wire_;
  std::size_t pos_ = 0;
  StreamLog& log_;
  std::optional<std::size_t> fail_after_;
  bool stall_;  // a broken stream: "more to come" forever, and nothing comes
};

struct MaildropLog {
  std::vector<std::vector<bool>> commits;
  StreamLog streams;
};

class FakeMaildrop final : public Maildrop {
 public:
  FakeMaildrop(std::vector<std::string> texts, MaildropLog& log)
      : texts_(std::move(texts)), log_(log) {
    for (std::size_t i = 0; i < texts_.size(); ++i) {
      messages_.push_back(MaildropMessage{crlf_size(texts_[i]), "uid-" + std::to_string(i + 1)});
    }
  }
  const std::vector<MaildropMessage>& messages() const override { return messages_; }
  Result<std::unique_ptr<MessageStream>> open_message(
      std::size_t index, std::optional<std::uint64_t> top_lines) override {
    if (fail_open)
      return Error::permanent(EX_NOINPUT, "5.3.0", "/var/mail/joe: gone");
    std::string wire = raw ? texts_.at(index) : wire_form(texts_.at(index), top_lines);
    return std::unique_ptr<MessageStream>(
        std::make_unique<FakeStream>(std::move(wire), log_.streams, fail_stream_after, stall));
  }
  Status commit(const std::vector<bool>& deleted) override {
    log_.commits.push_back(deleted);
    if (fail_commit)
      return Error::temporary(EX_IOERR, "4.3.0", "disk full");
    return {};
  }

  bool fail_open = false;
  bool fail_commit = false;
  bool raw = false;  // stream the text exactly as given
  bool stall = false;
  std::optional<std::size_t> fail_stream_after;

 private:
  std::vector<std::string> texts_;
  std::vector<MaildropMessage> messages_;
  MaildropLog& log_;
};

struct AuthCall {
  std::string user, password, digest;
};

class FakeHost final : public SessionHost {
 public:
  void authenticate(const std::string& user, const std::string& password,
                    const std::string& apop_digest) override {
    calls.push_back({user, password, apop_digest});
    if (answer_now && session != nullptr) {
      std::string ignored;
      session->auth_result(AuthOutcome::kOk, make_maildrop(), ignored);
      CHECK(ignored.empty());
    }
  }
  void start_tls() override { ++tls_starts; }

  std::unique_ptr<FakeMaildrop> make_maildrop() {
    return std::make_unique<FakeMaildrop>(messages, log);
  }

  std::vector<AuthCall> calls;
  int tls_starts = 0;
  bool answer_now = false;
  Session* session = nullptr;
  MaildropLog log;
  std::vector<std::string> messages = {"Subject: one\n\nhello\n.dot line\n",
                                       "Subject: two\nX: y\n\nbody 1\nbody 2\nbody 3\n"};
};

// Feeds input and drains everything pump() has.
std::string feed(Session& s, const std::string& input, bool* alive = nullptr) {
  std::string out;
  const bool ok = s.process(input, out);
  if (alive != nullptr)
    *alive = ok;
  while (s.streaming()) s.pump(out, 100);
  return out;
}

std::string answer(Session& s, FakeHost& host, AuthOutcome outcome) {
  std::string out;
  std::unique_ptr<FakeMaildrop> md;
  if (outcome == AuthOutcome::kOk)
    md = host.make_maildrop();
  s.auth_result(outcome, std::move(md), out);
  while (s.streaming()) s.pump(out, 100);
  return out;
}

// A session already in TRANSACTION state.
struct LoggedIn {
  explicit LoggedIn(SessionPolicy policy = {}, std::vector<std::string> messages = {})
      : session(host, std::move(policy)) {
    if (!messages.empty())
      host.messages = std::move(messages);
    REQUIRE(feed(session, "USER joe\r\nPASS secret\r\n") == "+OK send PASS\r\n");
    auto md = host.make_maildrop();
    maildrop = md.get();
    std::string out;
    session.auth_result(AuthOutcome::kOk, std::move(md), out);
    REQUIRE(out.rfind("+OK maildrop has ", 0) == 0);
    REQUIRE(session.authenticated());
  }
  std::string operator()(const std::string& input) { return feed(session, input); }

  FakeHost host;
  Session session;
  FakeMaildrop* maildrop = nullptr;  // owned by session
};

const std::string kMessage1Wire = "Subject: one\r\n\r\nhello\r\n..dot line\r\n";
const std::string kMessage2Wire = "Subject: two\r\nX: y\r\n\r\nbody 1\r\nbody 2\r\nbody 3\r\n";

}  // namespace

TEST_CASE("greets with the host and the APOP banner", "[pop3_session]") {
  FakeHost host;
  SessionPolicy policy;
  policy.greeting_host = "mail.example";
  CHECK(Session(host, policy).greeting() == "+OK mail.example POP3 ready\r\n");
  policy.apop_banner = "<1896.697170952@mail.example>";
  CHECK(Session(host, policy).greeting() ==
        "+OK mail.example POP3 ready <1896.697170952@mail.example>\r\n");
}

TEST_CASE("serves a whole session", "[pop3_session]") {
  FakeHost host;
  Session s(host, {});
  CHECK_FALSE(s.authenticated());
  CHECK(feed(s, "USER joe\r\n") == "+OK send PASS\r\n");
  CHECK(s.user() == "joe");
  CHECK(feed(s, "PASS secret word\r\n").empty());  // waiting for the host
  REQUIRE(host.calls.size() == 1);
  CHECK(host.calls[0].user == "joe");
  CHECK(host.calls[0].password == "secret word");
  CHECK(host.calls[0].digest.empty());
  CHECK(answer(s, host, AuthOutcome::kOk) == "+OK maildrop has 2 messages (80 octets)\r\n");
  CHECK(s.authenticated());
  CHECK(s.user() == "joe");

  CHECK(feed(s, "STAT\r\n") == "+OK 2 80\r\n");
  CHECK(feed(s, "LIST\r\n") == "+OK 2 messages (80 octets)\r\n1 34\r\n2 46\r\n.\r\n");
  CHECK(feed(s, "LIST 2\r\n") == "+OK 2 46\r\n");
  CHECK(feed(s, "RETR 1\r\n") == "+OK 34 octets\r\n" + kMessage1Wire + ".\r\n");
  CHECK(feed(s, "RETR 2\r\n") == "+OK 46 octets\r\n" + kMessage2Wire + ".\r\n");
  CHECK(feed(s, "TOP 2 1\r\n") ==
        "+OK top of message follows\r\nSubject: two\r\nX: y\r\n\r\nbody 1\r\n.\r\n");
  CHECK(feed(s, "TOP 2 0\r\n") ==
        "+OK top of message follows\r\nSubject: two\r\nX: y\r\n\r\n.\r\n");
  CHECK(feed(s, "UIDL\r\n") == "+OK unique-id listing follows\r\n1 uid-1\r\n2 uid-2\r\n.\r\n");
  CHECK(feed(s, "NOOP\r\n") == "+OK\r\n");
  CHECK(feed(s, "DELE 1\r\n") == "+OK message 1 deleted\r\n");
  CHECK(feed(s, "STAT\r\n") == "+OK 1 46\r\n");
  CHECK(feed(s, "CAPA\r\n").rfind("+OK capability list follows\r\n", 0) == 0);
  bool alive = true;
  CHECK(feed(s, "QUIT\r\n", &alive) == "+OK bye\r\n");
  CHECK_FALSE(alive);
  CHECK(s.finished());
  REQUIRE(host.log.commits.size() == 1);
  CHECK(host.log.commits[0] == std::vector<bool>{true, false});
  // Nothing more after the end.
  std::string out;
  CHECK_FALSE(s.process("STAT\r\n", out));
  CHECK(out.empty());
}

TEST_CASE("answers commands given in the wrong state", "[pop3_session]") {
  SECTION("transaction commands before login") {
    FakeHost host;
    Session s(host, {});
    const char* line = GENERATE("STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET",
                                "TOP 1 1", "UIDL", "UIDL 1", "RETR 0", "LIST 4294967297", "TOP 1");
    CAPTURE(line);
    CHECK(feed(s, line + "\r\n"s) == "-ERR command not valid in AUTHORIZATION state\r\n");
    CHECK_FALSE(s.finished());
  }
  SECTION("the same after USER") {
    FakeHost host;
    Session s(host, {});
    feed(s, "USER joe\r\n");
    CHECK(feed(s, "STAT\r\n") == "-ERR command not valid in AUTHORIZATION state\r\n");
    CHECK(feed(s, "RETR 1\r\n") == "-ERR command not valid in AUTHORIZATION state\r\n");
  }
  SECTION("authorization commands after login") {
    LoggedIn c;
    const char* line =
        GENERATE("USER joe", "PASS x", "APOP joe c4c9334bac560ecc979e58001b3e22fb", "AUTH",
                 "AUTH PLAIN", "AUTH PLAIN AGpvZQBzZWNyZXQ=", "STLS", "USER", "PASS");
    CAPTURE(line);
    CHECK(c(line + "\r\n"s) == "-ERR command not valid in TRANSACTION state\r\n");
    CHECK(c.host.calls.size() == 1);
    CHECK(c.host.tls_starts == 0);
  }
  SECTION("commands while a login is checked wait for its answer") {
    FakeHost host;
    Session s(host, {});
    CHECK(feed(s, "USER joe\r\nPASS x\r\n") == "+OK send PASS\r\n");
    CHECK(feed(s, "USER other\r\nPASS y\r\nSTAT\r\n").empty());
    CHECK(host.calls.size() == 1);
    CHECK(answer(s, host, AuthOutcome::kOk) ==
          "+OK maildrop has 2 messages (80 octets)\r\n"
          "-ERR command not valid in TRANSACTION state\r\n"
          "-ERR command not valid in TRANSACTION state\r\n"
          "+OK 2 80\r\n");
  }
  SECTION("commands during an AUTH exchange are its response") {
    FakeHost host;
    Session s(host, {});
    CHECK(feed(s, "AUTH PLAIN\r\n") == "+ \r\n");
    CHECK(feed(s, "QUIT\r\n") == "-ERR malformed PLAIN response\r\n");
    CHECK_FALSE(s.finished());
    CHECK(host.calls.empty());
  }
  SECTION("PASS without USER") {
    FakeHost host;
    Session s(host, {});
    CHECK(feed(s, "PASS x\r\n") == "-ERR give USER first\r\n");
    CHECK(host.calls.empty());
  }
}

TEST_CASE("gives unknown users and wrong passwords the same answers", "[pop3_session]") {
  auto transcript = [](const std::string& user) {
    FakeHost host;
    Session s(host, {});
    std::string t = feed(s, "USER " + user + "\r\nPASS guess\r\n");
    t += answer(s, host, AuthOutcome::kBadCredentials);
    return t;
  };
  const std::string known = transcript("joe");
  const std::string unknown = transcript("nosuchuser");
  CHECK(known == "+OK send PASS\r\n-ERR [AUTH] authentication failed\r\n");
  CHECK(unknown == known);
}

TEST_CASE("closes after three failed logins", "[pop3_session]") {
  FakeHost host;
  Session s(host, {});
  for (int i = 1; i <= 3; ++i) {
    feed(s, "USER joe\r\nPASS wrong\r\n");
    CHECK(answer(s, host, AuthOutcome::kBadCredentials) == "-ERR [AUTH] authentication failed\r\n");
    CHECK(s.finished() == (i == 3));
    CHECK(s.user().empty());
  }
  std::string out;
  CHECK_FALSE(s.process("USER joe\r\n", out));
  CHECK(out.empty());
  CHECK(host.calls.size() == 3);
}

TEST_CASE("reports a locked or unavailable maildrop", "[pop3_session]") {
  FakeHost host;
  Session s(host, {});
  feed(s, "USER joe\r\nPASS x\r\n");
  CHECK(answer(s, host, AuthOutcome::kInUse) ==
        "-ERR [IN-USE] maildrop locked by another session\r\n");
  feed(s, "USER joe\r\nPASS x\r\n");
  CHECK(answer(s, host, AuthOutcome::kTemporary).rfind("-ERR [SYS/TEMP] ", 0) == 0);
  // kOk without a maildrop is a host bug, not a login.
  feed(s, "USER joe\r\nPASS x\r\n");
  std::string out;
  s.auth_result(AuthOutcome::kOk, nullptr, out);
  CHECK(out.rfind("-ERR [SYS/TEMP] ", 0) == 0);
  CHECK_FALSE(s.authenticated());
  CHECK_FALSE(s.finished());  // none of these counts as a failed password
  CHECK(feed(s, "USER joe\r\nPASS x\r\n") == "+OK send PASS\r\n");
  CHECK(answer(s, host, AuthOutcome::kOk).rfind("+OK maildrop has", 0) == 0);
}

TEST_CASE("refuses bad message numbers", "[pop3_session]") {
  LoggedIn c;
  CHECK(c("LIST 0\r\n") == "-ERR invalid message number\r\n");
  CHECK(c("LIST 4294967297\r\n") == "-ERR invalid message number\r\n");
  CHECK(c("LIST 4294967295\r\n") == "-ERR no such message\r\n");
  CHECK(c("LIST 3\r\n") == "-ERR no such message\r\n");
  CHECK(c("RETR 0\r\n") == "-ERR invalid message number\r\n");
  CHECK(c("RETR -1\r\n") == "-ERR invalid message number\r\n");
  CHECK(c("RETR 1x\r\n") == "-ERR invalid message number\r\n");
  CHECK(c("RETR +1\r\n") == "-ERR invalid message number\r\n");
  CHECK(c("RETR 3\r\n") == "-ERR no such message\r\n");
  CHECK(c("TOP 1\r\n") == "-ERR missing argument\r\n");
  CHECK(c("TOP 3 1\r\n") == "-ERR no such message\r\n");
  CHECK(c("DELE 3\r\n") == "-ERR no such message\r\n");
  CHECK(c("UIDL 4294967296\r\n") == "-ERR invalid message number\r\n");
  CHECK(c("STAT 1\r\n") == "-ERR too many arguments\r\n");
  CHECK(c("XTND XMIT\r\n") == "-ERR unknown command\r\n");
  CHECK(c.host.log.streams.opened == 0);
}

TEST_CASE("deletes, hides deleted messages and undeletes on RSET", "[pop3_session]") {
  LoggedIn c;
  CHECK(c("DELE 1\r\n") == "+OK message 1 deleted\r\n");
  CHECK(c("DELE 1\r\n") == "-ERR message 1 already deleted\r\n");
  CHECK(c("RETR 1\r\n") == "-ERR no such message\r\n");
  CHECK(c("TOP 1 0\r\n") == "-ERR no such message\r\n");
  CHECK(c("LIST 1\r\n") == "-ERR no such message\r\n");
  CHECK(c("UIDL 1\r\n") == "-ERR no such message\r\n");
  CHECK(c("LIST\r\n") == "+OK 1 message (46 octets)\r\n2 46\r\n.\r\n");
  CHECK(c("UIDL\r\n") == "+OK unique-id listing follows\r\n2 uid-2\r\n.\r\n");
  CHECK(c("RSET\r\n") == "+OK maildrop has 2 messages (80 octets)\r\n");
  CHECK(c("LIST 1\r\n") == "+OK 1 34\r\n");
  CHECK(c("DELE 2\r\n") == "+OK message 2 deleted\r\n");
  CHECK(c("DELE 1\r\n") == "+OK message 1 deleted\r\n");
  CHECK(c("STAT\r\n") == "+OK 0 0\r\n");
  CHECK(c("LIST\r\n") == "+OK 0 messages (0 octets)\r\n.\r\n");
  CHECK(c("QUIT\r\n") == "+OK bye\r\n");
  REQUIRE(c.host.log.commits.size() == 1);
  CHECK(c.host.log.commits[0] == std::vector<bool>{true, true});
}

TEST_CASE("answers UIDL in both forms", "[pop3_session]") {
  LoggedIn c;
  CHECK(c("UIDL\r\n") == "+OK unique-id listing follows\r\n1 uid-1\r\n2 uid-2\r\n.\r\n");
  CHECK(c("UIDL 2\r\n") == "+OK 2 uid-2\r\n");
  CHECK(c("uidl 1\r\n") == "+OK 1 uid-1\r\n");
  CHECK(c("UIDL 9\r\n") == "-ERR no such message\r\n");
  CHECK(c("UIDL 1 2\r\n") == "-ERR too many arguments\r\n");
}

TEST_CASE("QUIT commits exactly the deleted messages", "[pop3_session]") {
  SECTION("nothing deleted") {
    LoggedIn c;
    CHECK(c("QUIT\r\n") == "+OK bye\r\n");
    REQUIRE(c.host.log.commits.size() == 1);
    CHECK(c.host.log.commits[0] == std::vector<bool>{false, false});
  }
  SECTION("message 2 deleted, message 1 deleted and undeleted") {
    LoggedIn c;
    c("DELE 1\r\nRSET\r\nDELE 2\r\n");
    CHECK(c("QUIT\r\n") == "+OK bye\r\n");
    REQUIRE(c.host.log.commits.size() == 1);
    CHECK(c.host.log.commits[0] == std::vector<bool>{false, true});
  }
  SECTION("a failed commit") {
    LoggedIn c;
    c.maildrop->fail_commit = true;
    c("DELE 1\r\n");
    CHECK(c("QUIT\r\n") == "-ERR [SYS/TEMP] some deleted messages not removed\r\n");
    CHECK(c.session.finished());
  }
}

TEST_CASE("QUIT before login commits nothing", "[pop3_session]") {
  FakeHost host;
  Session s(host, {});
  bool alive = true;
  CHECK(feed(s, "USER joe\r\nQUIT\r\n", &alive) == "+OK send PASS\r\n+OK bye\r\n");
  CHECK_FALSE(alive);
  CHECK(s.finished());
  CHECK(host.calls.empty());
  CHECK(host.log.commits.empty());
}

TEST_CASE("answers pipelined commands in order around a pending login", "[pop3_session]") {
  FakeHost host;
  Session s(host, {});
  bool alive = false;
  CHECK(feed(s, "USER a\r\nPASS b\r\nSTAT\r\nLIST\r\nQUIT\r\n", &alive) == "+OK send PASS\r\n");
  CHECK(alive);
  REQUIRE(host.calls.size() == 1);
  CHECK(host.calls[0].user == "a");
  CHECK(host.calls[0].password == "b");
  CHECK(s.buffered_input() == strlen("STAT\r\nLIST\r\nQUIT\r\n"));
  CHECK(answer(s, host, AuthOutcome::kOk) ==
        "+OK maildrop has 2 messages (80 octets)\r\n"
        "+OK 2 80\r\n"
        "+OK 2 messages (80 octets)\r\n1 34\r\n2 46\r\n.\r\n"
        "+OK bye\r\n");
  CHECK(s.finished());
  REQUIRE(host.log.commits.size() == 1);
}

TEST_CASE("takes an answer given from inside authenticate", "[pop3_session]") {
  FakeHost host;
  Session s(host, {});
  host.session = &s;
  host.answer_now = true;
  CHECK(feed(s, "USER a\r\nPASS b\r\nSTAT\r\n") ==
        "+OK send PASS\r\n+OK maildrop has 2 messages (80 octets)\r\n+OK 2 80\r\n");
}

TEST_CASE("never runs plaintext sent together with STLS", "[pop3_session]") {
  FakeHost host;
  SessionPolicy policy;
  policy.tls_available = true;
  Session s(host, policy);
  CHECK(feed(s, "USER early\r\nSTLS\r\nUSER evil\r\nPASS evil\r\n") ==
        "+OK send PASS\r\n+OK Begin TLS negotiation\r\n");
  CHECK(host.tls_starts == 1);
  CHECK(s.buffered_input() == 0);
  // Still plaintext: the handshake has not happened yet.
  CHECK(feed(s, "USER evil2\r\nPASS evil2\r\n").empty());
  CHECK(s.buffered_input() == 0);
  std::string out;
  s.tls_started(out);
  CHECK(out.empty());
  CHECK(s.user().empty());  // RFC 2595 4: nothing from before TLS is kept
  CHECK(feed(s, "PASS x\r\n") == "-ERR give USER first\r\n");
  CHECK(host.calls.empty());
  CHECK(feed(s, "CAPA\r\n").find("STLS") == std::string::npos);
  CHECK(feed(s, "STLS\r\n") == "-ERR Command not permitted when TLS active\r\n");
  CHECK(host.tls_starts == 1);
  CHECK(feed(s, "USER joe\r\nPASS y\r\n") == "+OK send PASS\r\n");
  REQUIRE(host.calls.size() == 1);
  CHECK(host.calls[0].user == "joe");
}

TEST_CASE("offers STLS only where it can work", "[pop3_session]") {
  SECTION("not configured") {
    FakeHost host;
    Session s(host, {});
    CHECK(feed(s, "STLS\r\n") == "-ERR STLS not available\r\n");
    CHECK(host.tls_starts == 0);
  }
  SECTION("already TLS") {
    FakeHost host;
    SessionPolicy policy;
    policy.tls_available = true;
    policy.tls_active = true;
    Session s(host, policy);
    CHECK(feed(s, "STLS\r\n") == "-ERR Command not permitted when TLS active\r\n");
  }
  SECTION("after login") {
    SessionPolicy policy;
    policy.tls_available = true;
    LoggedIn c(policy);
    CHECK(c("STLS\r\n") == "-ERR command not valid in TRANSACTION state\r\n");
    CHECK(c("CAPA\r\n").find("STLS") == std::string::npos);
  }
}

TEST_CASE("lists capabilities according to policy", "[pop3_session]") {
  auto capa = [](SessionPolicy policy) {
    FakeHost host;
    Session s(host, std::move(policy));
    return feed(s, "CAPA\r\n");
  };
  SECTION("defaults") {
    CHECK(capa({}) ==
          "+OK capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nRESP-CODES\r\n"
          "AUTH-RESP-CODE\r\nPIPELINING\r\nSASL PLAIN\r\nIMPLEMENTATION Mailwright\r\n.\r\n");
  }
  SECTION("plaintext forbidden, TLS available") {
    SessionPolicy p;
    p.plaintext_auth_allowed = false;
    p.tls_available = true;
    CHECK(capa(p) ==
          "+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
          "PIPELINING\r\nSTLS\r\nIMPLEMENTATION Mailwright\r\n.\r\n");
  }
  SECTION("plaintext forbidden, TLS active") {
    SessionPolicy p;
    p.plaintext_auth_allowed = false;
    p.tls_available = true;
    p.tls_active = true;
    const std::string c = capa(p);
    CHECK(c.find("\r\nUSER\r\n") != std::string::npos);
    CHECK(c.find("\r\nSASL PLAIN\r\n") != std::string::npos);
    CHECK(c.find("STLS") == std::string::npos);
  }
  SECTION("EXPIRE and LOGIN-DELAY") {
    SessionPolicy p;
    p.expire_days = 30;
    p.login_delay_secs = 900;
    const std::string c = capa(p);
    CHECK(c.find("\r\nEXPIRE 30\r\n") != std::string::npos);
    CHECK(c.find("\r\nLOGIN-DELAY 900\r\n") != std::string::npos);
    CHECK(capa({}).find("EXPIRE") == std::string::npos);
    CHECK(capa({}).find("LOGIN-DELAY") == std::string::npos);
  }
  SECTION("after login") {
    LoggedIn c;
    CHECK(c("CAPA\r\n") ==
          "+OK capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nRESP-CODES\r\n"
          "AUTH-RESP-CODE\r\nPIPELINING\r\nSASL PLAIN\r\nIMPLEMENTATION Mailwright\r\n.\r\n");
  }
}

TEST_CASE("refuses plaintext passwords without TLS when told to", "[pop3_session]") {
  FakeHost host;
  SessionPolicy policy;
  policy.plaintext_auth_allowed = false;
  policy.tls_available = true;
  Session s(host, policy);
  const std::string refused =
      "-ERR [AUTH] plaintext authentication disallowed on insecure connections, use STLS "
      "first\r\n";
  CHECK(feed(s, "USER joe\r\n") == refused);
  CHECK(feed(s, "PASS x\r\n") == refused);
  CHECK(feed(s, "AUTH PLAIN " + encode_base64("\0joe\0x"s) + "\r\n") == refused);
  CHECK(feed(s, "AUTH\r\n") == "+OK\r\n.\r\n");
  CHECK(host.calls.empty());
  feed(s, "STLS\r\n");
  std::string out;
  s.tls_started(out);
  CHECK(feed(s, "USER joe\r\nPASS x\r\n") == "+OK send PASS\r\n");
  CHECK(host.calls.size() == 1);
}

TEST_CASE("authenticates with AUTH PLAIN", "[pop3_session]") {
  FakeHost host;
  Session s(host, {});
  SECTION("initial response") {
    CHECK(feed(s, "AUTH PLAIN " + encode_base64("\0joe\0pass word"s) + "\r\n").empty());
    REQUIRE(host.calls.size() == 1);
    CHECK(host.calls[0].user == "joe");
    CHECK(host.calls[0].password == "pass word");
    CHECK(s.user() == "joe");
    CHECK(answer(s, host, AuthOutcome::kOk).rfind("+OK maildrop has", 0) == 0);
  }
  SECTION("continuation") {
    CHECK(feed(s, "auth plain\r\n") == "+ \r\n");
    CHECK(feed(s, encode_base64("joe\0joe\0secret"s) + "\r\n").empty());
    REQUIRE(host.calls.size() == 1);
    CHECK(host.calls[0].user == "joe");
    CHECK(host.calls[0].password == "secret");
    CHECK(answer(s, host, AuthOutcome::kBadCredentials) == "-ERR [AUTH] authentication failed\r\n");
  }
  SECTION("cancelled") {
    CHECK(feed(s, "AUTH PLAIN\r\n*\r\n") == "+ \r\n-ERR authentication cancelled\r\n");
    CHECK(feed(s, "NOOP\r\n") == "-ERR command not valid in AUTHORIZATION state\r\n");
  }
  SECTION("bad base64") {
    const std::string bad = GENERATE(
        "AGpvZQBzZWNyZXQ", "AGpvZQB=ZWNyZXQ=", "AGpv ZQBzZWNyZXQ=", "AGpvZQBzZWNyZXQ=\t", "!!!!");
    CAPTURE(bad);
    CHECK(feed(s, "AUTH PLAIN\r\n" + bad + "\r\n") == "+ \r\n-ERR invalid base64 data\r\n");
    if (bad.find_first_of(" \t") == std::string::npos) {
      CHECK(feed(s, "AUTH PLAIN " + bad + "\r\n") == "-ERR invalid base64 data\r\n");
    }
    CHECK(host.calls.empty());
  }
  SECTION("authorization identity of another user") {
    CHECK(feed(s, "AUTH PLAIN " + encode_base64("admin\0joe\0secret"s) + "\r\n") ==
          "-ERR [AUTH] authentication failed\r\n");
    CHECK(host.calls.empty());
  }
  SECTION("malformed messages") {
    const std::string msg =
        GENERATE("joe\0secret"s, "\0\0secret"s, "\0joe\0"s, "\0joe\0se\0cret"s, ""s,
                 "\0jo\ne\0secret"s, "\0"s + std::string(256, 'j') + "\0secret"s);
    CHECK(feed(s, "AUTH PLAIN\r\n" + encode_base64(msg) + "\r\n") ==
          "+ \r\n-ERR malformed PLAIN response\r\n");
    if (msg.size() < 100) {
      CHECK(feed(s, "AUTH PLAIN " + (msg.empty() ? "=" : encode_base64(msg)) + "\r\n") ==
            "-ERR malformed PLAIN response\r\n");
    }
    CHECK(host.calls.empty());
  }
  SECTION("mechanism list and unknown mechanisms") {
    CHECK(feed(s, "AUTH\r\n") == "+OK\r\nPLAIN\r\n.\r\n");
    CHECK(feed(s, "AUTH CRAM-MD5\r\n") == "-ERR unsupported authentication mechanism\r\n");
    CHECK(feed(s, "AUTH LOGIN dXNlcg==\r\n") == "-ERR unsupported authentication mechanism\r\n");
    CHECK(host.calls.empty());
  }
  SECTION("a long response on the continuation line") {
    const std::string msg = "\0joe\0"s + std::string(255, 'p');
    CHECK(feed(s, "AUTH PLAIN\r\n" + encode_base64(msg) + "\r\n") == "+ \r\n");
    REQUIRE(host.calls.size() == 1);
    CHECK(host.calls[0].password == std::string(255, 'p'));
  }
}

TEST_CASE("authenticates with APOP when it is enabled", "[pop3_session]") {
  FakeHost host;
  SECTION("enabled") {
    SessionPolicy policy;
    policy.apop_banner = "<1896.697170952@dbc.mtview.ca.us>";
    policy.plaintext_auth_allowed = false;  // APOP sends no password
    Session s(host, policy);
    CHECK(feed(s, "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n").empty());
    REQUIRE(host.calls.size() == 1);
    CHECK(host.calls[0].user == "mrose");
    CHECK(host.calls[0].password.empty());
    CHECK(host.calls[0].digest == "c4c9334bac560ecc979e58001b3e22fb");
    CHECK(answer(s, host, AuthOutcome::kOk).rfind("+OK maildrop has", 0) == 0);
  }
  SECTION("disabled") {
    Session s(host, {});
    CHECK(feed(s, "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n") ==
          "-ERR APOP not supported\r\n");
    CHECK(host.calls.empty());
  }
}

TEST_CASE("answers too long lines once and goes on", "[pop3_session]") {
  FakeHost host;
  Session s(host, {});
  SECTION("at the limit") {
    const std::string name(255 - strlen("USER \r\n"), 'a');
    CHECK(feed(s, "USER " + name + "\r\n") == "+OK send PASS\r\n");
    CHECK(feed(s, "USER " + name + "a\r\n") == "-ERR line too long\r\n");
    CHECK(s.user() == name);
  }
  SECTION("in one piece") {
    CHECK(feed(s, "USER " + std::string(1000, 'x') + "\r\nNOOP\r\n") ==
          "-ERR line too long\r\n-ERR command not valid in AUTHORIZATION state\r\n");
    CHECK(s.user().empty());
  }
  SECTION("in small pieces") {
    std::string out = feed(s, "PASS ");
    for (int i = 0; i < 100; ++i) {
      out += feed(s, std::string(50, 'y'));
      CHECK(s.buffered_input() <= 255);
    }
    out += feed(s, "\r\nQUIT\r\n");
    CHECK(out == "-ERR line too long\r\n+OK bye\r\n");
  }
  SECTION("a line that never ends") {
    bool alive = true;
    const std::string chunk(4096, 'z');
    std::string out;
    for (int i = 0; i < 20 && alive; ++i) {
      out += feed(s, chunk, &alive);
      CHECK(s.buffered_input() <= 255);
    }
    CHECK(out == "-ERR line too long\r\n");
    CHECK_FALSE(alive);
    CHECK(s.finished());
  }
  SECTION("too long for an AUTH response") {
    CHECK(feed(s, "AUTH PLAIN\r\n" + std::string(3000, 'A') + "\r\nQUIT\r\n") ==
          "+ \r\n-ERR line too long\r\n+OK bye\r\n");
    CHECK(host.calls.empty());
  }
}

TEST_CASE("refuses control characters and never ends a line at a bare CR", "[pop3_session]") {
  FakeHost host;
  Session s(host, {});
  CHECK(feed(s, "USER jo\0e\r\n"s) == "-ERR invalid character in command\r\n");
  CHECK(feed(s, "\0\r\n"s) == "-ERR invalid character in command\r\n");
  CHECK(feed(s, "USER a\rQUIT\r\n") == "-ERR invalid character in command\r\n");
  CHECK_FALSE(s.finished());
  CHECK(s.user().empty());
  CHECK(feed(s, "USER joe\r\nPASS se\0cret\r\n"s) ==
        "+OK send PASS\r\n-ERR invalid character in command\r\n");
  CHECK(host.calls.empty());
  CHECK(feed(s, "USER a\r").empty());  // the LF may still come
  CHECK(feed(s, "\n") == "+OK send PASS\r\n");
}

TEST_CASE("accepts a bare LF as line end", "[pop3_session]") {
  FakeHost host;
  Session s(host, {});
  CHECK(feed(s, "USER joe\nPASS x\n") == "+OK send PASS\r\n");
  CHECK(host.calls.size() == 1);
  CHECK(answer(s, host, AuthOutcome::kOk).rfind("+OK", 0) == 0);
  CHECK(feed(s, "STAT\n") == "+OK 2 80\r\n");
}

TEST_CASE("streams large messages through pump, one at a time", "[pop3_session]") {
  FakeHost host;
  std::string big;
  for (int i = 0; i < 20000; ++i) big += ".line " + std::to_string(i) + "\n";
  host.messages = {big, "small\n"};
  Session s(host, {});
  feed(s, "USER a\r\nPASS b\r\n");
  answer(s, host, AuthOutcome::kOk);
  std::string out;
  CHECK(s.process("RETR 1\r\nRETR 2\r\nRETR 1\r\nQUIT\r\n", out));
  CHECK(out.size() < std::size_t{17} * 1024);  // no more than one piece now
  CHECK(s.streaming());
  int calls = 0;
  while (s.streaming()) {
    const std::size_t before = out.size();
    s.pump(out, 4096);
    CHECK(out.size() - before <= 4096 + 64);
    CHECK(host.log.streams.live <= 1);
    ++calls;
  }
  CHECK(calls > 10);
  CHECK(host.log.streams.max_live == 1);
  CHECK(host.log.streams.opened == 3);
  const std::string wire = wire_form(big, std::nullopt);
  const std::string expected = "+OK " + std::to_string(crlf_size(big)) + " octets\r\n" + wire +
                               ".\r\n+OK 7 octets\r\nsmall\r\n.\r\n+OK " +
                               std::to_string(crlf_size(big)) + " octets\r\n" + wire +
                               ".\r\n+OK bye\r\n";
  CHECK(out == expected);
  CHECK(s.finished());
}

TEST_CASE("keeps commands sent during a stream for later", "[pop3_session]") {
  FakeHost host;
  host.messages = {std::string(100000, 'x') + "\n"};
  Session s(host, {});
  feed(s, "USER a\r\nPASS b\r\n");
  answer(s, host, AuthOutcome::kOk);
  std::string out;
  CHECK(s.process("RETR 1\r\n", out));
  CHECK(s.streaming());
  const std::size_t sent = out.size();
  CHECK(s.process("STAT\r\n", out));
  CHECK(out.size() == sent);  // nothing while the message is still going
  CHECK(s.buffered_input() == 6);
  while (s.streaming()) s.pump(out, 8192);
  const std::string tail = "x\r\n.\r\n+OK 1 100002\r\n";
  REQUIRE(out.size() > tail.size());
  CHECK(out.substr(out.size() - tail.size()) == tail);
  CHECK(out.rfind("+OK 100002 octets\r\n", 0) == 0);
}

TEST_CASE("ends the session when pipelined input piles up", "[pop3_session]") {
  FakeHost host;
  Session s(host, {});
  feed(s, "USER a\r\nPASS b\r\n");
  bool alive = true;
  std::string out;
  for (int i = 0; i < 100 && alive; ++i) {
    alive = s.process(std::string(1000, 'N') + "\r\n", out);
    CHECK(s.buffered_input() <= std::size_t{64} * 1024);
  }
  CHECK_FALSE(alive);
  CHECK(s.finished());
  CHECK(out == "-ERR too much pipelined input\r\n");
  // The late answer changes nothing.
  out.clear();
  s.auth_result(AuthOutcome::kOk, host.make_maildrop(), out);
  CHECK(out.empty());
  CHECK_FALSE(s.authenticated());
}

TEST_CASE("handles maildrop failures while reading", "[pop3_session]") {
  SECTION("a message that cannot be opened") {
    LoggedIn c;
    c.maildrop->fail_open = true;
    CHECK(c("RETR 1\r\n") == "-ERR [SYS/PERM] unable to read message\r\n");
    CHECK(c("TOP 1 1\r\n") == "-ERR [SYS/PERM] unable to read message\r\n");
    CHECK_FALSE(c.session.finished());
  }
  SECTION("a read error half way") {
    LoggedIn c;
    c.maildrop->fail_stream_after = 5;
    bool alive = true;
    const std::string out = feed(c.session, "RETR 1\r\nSTAT\r\n", &alive);
    CHECK(out.rfind("+OK 34 octets\r\n", 0) == 0);
    CHECK(out.find("\r\n.\r\n") == std::string::npos);  // never a false end of message
    CHECK(c.session.finished());
    CHECK(c.host.log.commits.empty());
  }
  SECTION("a stream that makes no progress") {
    LoggedIn c;
    c.maildrop->stall = true;
    std::string out;
    CHECK(c.session.process("RETR 1\r\n", out));
    CHECK(out == "+OK 34 octets\r\n");
    for (int i = 0; i < 3; ++i) {
      CHECK(c.session.pump(out, 4096));  // returns instead of spinning
    }
    CHECK(out == "+OK 34 octets\r\n");
  }
  SECTION("a message without a final line end") {
    LoggedIn c({}, {"abc", "line\r\n", ""});
    c.maildrop->raw = true;
    CHECK(c("RETR 1\r\n") == "+OK 3 octets\r\nabc\r\n.\r\n");
    CHECK(c("RETR 2\r\n") == "+OK 7 octets\r\nline\r\n.\r\n");
    CHECK(c("RETR 3\r\n") == "+OK 0 octets\r\n.\r\n");
  }
}

TEST_CASE("hands over the input it has not processed", "[pop3_session]") {
  FakeHost host;
  Session s(host, {});
  SECTION("commands pipelined after PASS") {
    CHECK(feed(s, "USER a\r\nPASS b\r\nSTAT\nLIST\r\nRE") == "+OK send PASS\r\n");
    CHECK(s.take_buffered_input() == "STAT\nLIST\r\nRE");
    CHECK(s.buffered_input() == 0);
    CHECK(s.take_buffered_input().empty());
  }
  SECTION("never the rest of a too long line") {
    CHECK(feed(s, "USER " + std::string(300, 'x')) == "-ERR line too long\r\n");
    CHECK(s.buffered_input() > 0);
    CHECK(s.take_buffered_input().empty());
  }
}
