// Drives a POP3 Session with a fake host and an in-memory maildrop through arbitrary input,
// cut into chunks whose sizes come from the input itself. Logins are answered, sometimes at
// once from inside authenticate() and sometimes later, alternately with success and with each
// kind of failure; STLS is "completed" after a while; pump() is called with varying limits and
// not always to the end before more input arrives.
//
// Checks: no crash or sanitizer report; every output line ends in CRLF and is a status line
// ("+OK", "-ERR", "+ ") or part of a multi-line reply that ends in "."; message bodies are
// dot-stuffed and as long as "+OK n octets" said; at most one message stream is open; no call
// returns much more output than its limit; buffered input stays bounded.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.h"
#include "pop3d/pop3_session.h"

namespace {

using mailwright::Result;
using mailwright::Status;
using mailwright::pop3::AuthOutcome;
using mailwright::pop3::Maildrop;
using mailwright::pop3::MaildropMessage;
using mailwright::pop3::MessageStream;
using mailwright::pop3::Session;
using mailwright::pop3::SessionHost;
using mailwright::pop3::SessionPolicy;

void check(bool ok) {
  if (!ok)
    std::abort();
}

constexpr std::size_t kMaxInputHeld = std::size_t{64} * 1024;
constexpr std::size_t kReplyBudget = std::size_t{16} * 1024;
constexpr std::size_t kSlack = 1024;  // one reply line or CAPA beyond a limit

// Wire form: CRLF line ends, dot-stuffed, TOP cut after that many body lines.
std::string wire_form(const std::string& text, std::optional<std::uint64_t> top) {
  std::string out;
  bool in_body = false;
  std::uint64_t body_lines = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t lf = text.find('\n', pos);
    if (lf == std::string::npos)
      lf = text.size();
    const std::string_view line = std::string_view(text).substr(pos, lf - pos);
    pos = lf + 1;
    if (in_body && top && body_lines++ >= *top)
      break;
    if (!line.empty() && line[0] == '.')
      out += '.';
    out.append(line);
    out += "\r\n";
    if (line.empty())
      in_body = true;
  }
  return out;
}

std::uint64_t unstuffed_size(const std::string& wire) {
  std::uint64_t n = 0;
  std::size_t pos = 0;
  while (pos < wire.size()) {
    const std::size_t end = wire.find("\r\n", pos);
    const std::size_t len = end - pos;
    n += len + 2 - ((len > 0 && wire[pos] == '.') ? 1 : 0);
    pos = end + 2;
  }
  return n;
}

int g_live_streams = 0;

class FakeStream final : public MessageStream {
 public:
  explicit FakeStream(std::string wire) : wire_(std::move(wire)) {
    ++g_live_streams;
    check(g_live_streams == 1);
  }
  ~FakeStream() override { --g_live_streams; }
  Result<bool> next(std::string& out, std::size_t max) override {
    const std::size_t n = std::min(max == 0 ? 1 : max, wire_.size() - pos_);
    out.append(wire_, pos_, n);
    pos_ += n;
    return pos_ < wire_.size();
  }

 private:
  std::string wire_;
  std::size_t pos_ = 0;
};

const std::vector<std::string>& texts() {
  static const std::vector<std::string> t = [] {
    std::vector<std::string> v = {
        "Subject: one\n\nhello\n.\n..\n.dot\n",
        "",
        "no newline at the end",
        "Subject: two\nX: y\n\nbody 1\n\nbody 3\n",
    };
    std::string big = "Subject: big\n\n";
    for (int i = 0; i < 2000; ++i)
      big += (i % 7 == 0 ? ".line " : "line ") + std::to_string(i) + "\n";
    v.push_back(big);
    return v;
  }();
  return t;
}

class FakeMaildrop final : public Maildrop {
 public:
  explicit FakeMaildrop(int* commits) : commits_(commits) {
    for (std::size_t i = 0; i < texts().size(); ++i) {
      const std::string wire = wire_form(texts()[i], std::nullopt);
      messages_.push_back(MaildropMessage{unstuffed_size(wire), "u" + std::to_string(i)});
    }
  }
  const std::vector<MaildropMessage>& messages() const override { return messages_; }
  Result<std::unique_ptr<MessageStream>> open_message(
      std::size_t index, std::optional<std::uint64_t> top_lines) override {
    check(index < messages_.size());
    return std::unique_ptr<MessageStream>(
        std::make_unique<FakeStream>(wire_form(texts()[index], top_lines)));
  }
  Status commit(const std::vector<bool>& deleted) override {
    check(deleted.size() == messages_.size());
    ++*commits_;
    return {};
  }

 private:
  std::vector<MaildropMessage> messages_;
  int* commits_;
};

class Host final : public SessionHost {
 public:
  void authenticate(const std::string& user, const std::string& password,
                    const std::string& apop_digest) override {
    check(!auth_pending && !tls_pending);
    check(!user.empty());
    for (char c : user) check(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
    check(password.empty() != apop_digest.empty());
    auth_pending = true;
    if (answer_at_once && session != nullptr) {
      std::string ignored;
      answer(ignored);
      check(ignored.empty());  // the reply goes to the process() call in progress
    }
  }
  void start_tls() override {
    check(!tls_pending);
    tls_pending = true;
  }

  void answer(std::string& out) {
    auth_pending = false;
    const int k = answers++ + first_answer;
    AuthOutcome outcome = AuthOutcome::kOk;
    if (k % 2 == 1) {
      static constexpr AuthOutcome kFailures[] = {AuthOutcome::kBadCredentials, AuthOutcome::kInUse,
                                                  AuthOutcome::kTemporary};
      outcome = kFailures[(k / 2) % 3];
    }
    std::unique_ptr<Maildrop> md;
    if (outcome == AuthOutcome::kOk)
      md = std::make_unique<FakeMaildrop>(&commits);
    session->auth_result(outcome, std::move(md), out);
  }

  Session* session = nullptr;
  bool auth_pending = false;
  bool tls_pending = false;
  bool answer_at_once = false;
  int first_answer = 0;
  int answers = 0;
  int commits = 0;
};

// Follows the replies line by line across calls.
class ReplyChecker {
 public:
  void feed(std::string_view out) {
    pending_ += out;
    std::size_t pos = 0;
    for (;;) {
      const std::size_t end = pending_.find("\r\n", pos);
      if (end == std::string::npos)
        break;
      line(std::string_view(pending_).substr(pos, end - pos));
      pos = end + 2;
    }
    pending_.erase(0, pos);
    // A reply never contains a bare LF or a CR outside CRLF: the rest must be a prefix of a line.
    check(pending_.find('\n') == std::string::npos);
  }
  bool complete() const { return pending_.empty() && body_ == Body::kNone; }

 private:
  enum class Body { kNone, kMessage, kListing, kCapa, kMechanisms };

  static bool starts_with(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
  }
  static bool digits(std::string_view s) {
    if (s.empty())
      return false;
    for (char c : s) {
      if (c < '0' || c > '9')
        return false;
    }
    return true;
  }

  void line(std::string_view l) {
    check(l.find('\r') == std::string_view::npos);
    if (body_ != Body::kNone) {
      body_line(l);
      return;
    }
    check(l.size() + 2 <= 512);  // RFC 2449 4: first line of a response
    if (l == "+ ")
      return;
    if (starts_with(l, "-ERR")) {
      check(l.size() == 4 || l[4] == ' ');
      return;
    }
    check(starts_with(l, "+OK"));
    check(l.size() == 3 || l[3] == ' ');
    if (l == "+OK") {
      if (!logged_in_)
        body_ = Body::kMechanisms;  // bare AUTH; after login it is NOOP
      return;
    }
    const std::string_view text = l.substr(4);
    if (starts_with(text, "maildrop has ")) {
      logged_in_ = true;
    } else if (text == "capability list follows") {
      body_ = Body::kCapa;
    } else if (text == "top of message follows") {
      body_ = Body::kMessage;
      expected_.reset();
      size_ = 0;
    } else if (text == "unique-id listing follows" ||
               text.find(" messages (") != std::string_view::npos) {
      body_ = Body::kListing;
    } else if (const std::size_t sp = text.find(' '); sp != std::string_view::npos &&
                                                      text.substr(sp) == " octets" &&
                                                      digits(text.substr(0, sp))) {
      body_ = Body::kMessage;
      expected_ = std::stoull(std::string(text.substr(0, sp)));
      size_ = 0;
    }
  }

  void body_line(std::string_view l) {
    if (l == ".") {
      if (body_ == Body::kMessage && expected_)
        check(size_ == *expected_);
      body_ = Body::kNone;
      return;
    }
    switch (body_) {
      case Body::kMessage:
        // Dot-stuffed: a line of the message that starts with '.' is sent with one more.
        if (!l.empty() && l[0] == '.')
          check(l.size() >= 2 && l[1] == '.');
        size_ += l.size() + 2 - ((!l.empty() && l[0] == '.') ? 1 : 0);
        break;
      case Body::kListing: {
        const std::size_t sp = l.find(' ');
        check(sp != std::string_view::npos && digits(l.substr(0, sp)) && sp + 1 < l.size());
        break;
      }
      case Body::kCapa:
      case Body::kMechanisms:
        check(!l.empty() && l[0] >= 'A' && l[0] <= 'Z');
        break;
      case Body::kNone:
        break;
    }
  }

  std::string pending_;
  Body body_ = Body::kNone;
  bool logged_in_ = false;
  std::optional<std::uint64_t> expected_;
  std::uint64_t size_ = 0;
};

class Rng {
 public:
  explicit Rng(std::uint32_t seed) : state_(seed * 2654435761u + 1) {}
  std::uint32_t next() {
    state_ = state_ * 1103515245u + 12345u;
    return state_ >> 8;
  }

 private:
  std::uint32_t state_;
};

void run(const std::uint8_t* data, std::size_t size) {
  const std::uint8_t flags = data[0];
  Rng rng(data[1]);
  std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);

  SessionPolicy policy;
  policy.tls_available = (flags & 1) != 0;
  policy.tls_active = (flags & 2) != 0;
  policy.plaintext_auth_allowed = (flags & 4) == 0;
  if ((flags & 8) != 0)
    policy.apop_banner = "<1.2@fuzz>";
  if ((flags & 16) != 0)
    policy.expire_days = 7;
  if ((flags & 16) != 0)
    policy.login_delay_secs = 60;
  policy.max_line = (flags & 32) != 0 ? 64 : 255;

  Host host;
  Session session(host, policy);
  host.session = &session;
  host.answer_at_once = (flags & 64) != 0;
  host.first_answer = (flags & 128) != 0 ? 1 : 0;

  ReplyChecker checker;
  checker.feed(session.greeting());

  // One step of what the server does between reads; false when there is nothing to do.
  auto step = [&]() {
    std::string out;
    if (session.streaming()) {
      const std::size_t max = 1 + rng.next() % 5000;
      session.pump(out, max);
      check(out.size() <= max + kSlack);
    } else if (host.auth_pending) {
      host.answer(out);
      check(out.size() <= kReplyBudget + kSlack);
    } else if (host.tls_pending) {
      host.tls_pending = false;
      session.tls_started(out);
      check(out.empty());
    } else {
      return false;
    }
    checker.feed(out);
    check(session.buffered_input() <= kMaxInputHeld);
    return true;
  };

  while (!input.empty() && !session.finished()) {
    const std::size_t n = std::min<std::size_t>(input.size(), 1 + rng.next() % 300);
    std::string out;
    const bool alive = session.process(input.substr(0, n), out);
    input.remove_prefix(n);
    check(alive == !session.finished());
    check(out.size() <= kReplyBudget + kSlack);
    check(session.buffered_input() <= kMaxInputHeld);
    checker.feed(out);
    for (std::uint32_t k = rng.next() % 4; k > 0 && step(); --k) {
    }
  }
  // The server drains what is pending; it must come to an end.
  for (int i = 0; i < 1000000 && !session.finished() && step(); ++i) {
  }
  check(!session.streaming() || session.finished());
  if (!session.finished())
    check(checker.complete());
  check(host.commits <= 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2)
    return 0;
  run(data, size);
  check(g_live_streams == 0);  // the session let go of its stream
  return 0;
}
