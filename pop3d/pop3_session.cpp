#include "pop3d/pop3_session.h"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "libmail/ascii.h"
#include "libmail/line_reader.h"
#include "pop3d/pop3_command.h"

namespace mailwright::pop3 {
namespace {

// RFC 4616 2: servers must take authzid, authcid and passwd of up to 255 octets each; in base64
// that is 1024 octets, which RFC 5034 4 exempts from the 255-octet command limit.
constexpr std::size_t kSaslField = 255;
constexpr std::size_t kSaslLine = 2048;
// A line longer than the limit is answered at once and then skipped up to its LF; a "line" that
// is still going after this much input is an attack on our patience, and the session ends.
constexpr std::size_t kMaxSkippedLine = std::size_t{64} * 1024;
// Input waiting while a reply is streamed or a login is checked. A client that pipelines more
// than this without reading our answers is cut off, so it cannot make us buffer without end.
constexpr std::size_t kMaxBufferedInput = std::size_t{64} * 1024;
// Output one process() or auth_result() call may produce; the rest waits for pump(), so a
// client that sends much and reads nothing only fills its own TCP window.
constexpr std::size_t kReplyBudget = std::size_t{16} * 1024;
// Failed logins (wrong credentials) before the connection is closed.
constexpr int kMaxAuthFailures = 3;

enum class Phase {
  kAuthorization,
  kSaslResponse,  // "+ " sent for AUTH PLAIN, waiting for the client's response line
  kAuthPending,   // SessionHost::authenticate() called, waiting for auth_result()
  kTlsPending,    // "+OK" to STLS sent, waiting for tls_started()
  kTransaction,
  kDone,
};

enum class Listing { kNone, kList, kUidl };

constexpr const char* kBadLogin = "-ERR [AUTH] authentication failed\r\n";

bool valid_in_authorization(Pop3Verb verb) {
  switch (verb) {
    case Pop3Verb::kUser:
    case Pop3Verb::kPass:
    case Pop3Verb::kApop:
    case Pop3Verb::kAuth:
    case Pop3Verb::kStls:
    case Pop3Verb::kCapa:
    case Pop3Verb::kQuit:
      return true;
    default:
      return false;
  }
}

bool valid_in_transaction(Pop3Verb verb) {
  switch (verb) {
    case Pop3Verb::kUser:
    case Pop3Verb::kPass:
    case Pop3Verb::kApop:
    case Pop3Verb::kAuth:
    case Pop3Verb::kStls:
      return false;
    default:
      return true;
  }
}

}  // namespace

struct Session::State {
  State(SessionHost& h, SessionPolicy p) : host(h), policy(std::move(p)) {}

  SessionHost& host;
  SessionPolicy policy;
  Phase phase = Phase::kAuthorization;

  LineBuffer input;
  bool skipping = false;    // inside a too long line, discarding up to its LF
  std::size_t skipped = 0;  // octets of it discarded so far

  std::string user;  // from USER, or the name being or having been authenticated
  int failures = 0;

  bool logged_in = false;
  std::unique_ptr<Maildrop> maildrop;
  std::vector<bool> deleted;

  // Multi-line output in progress: at most one message stream, or a LIST/UIDL listing.
  std::unique_ptr<MessageStream> stream;
  char tail[2] = {'\r', '\n'};  // last two octets the stream produced
  bool stream_empty = true;
  Listing listing = Listing::kNone;
  std::size_t listing_next = 0;
  bool pending = false;  // pump() has output to give (streaming())

  // An answer that arrives from inside SessionHost::authenticate() is kept here and handled
  // once that call returns, so it lands in the right place in the output.
  bool in_authenticate = false;
  bool early_answer = false;
  AuthOutcome early_outcome = AuthOutcome::kBadCredentials;
  std::unique_ptr<Maildrop> early_maildrop;

  bool plaintext_ok() const { return policy.plaintext_auth_allowed || policy.tls_active; }
  std::size_t line_limit() const {
    return phase == Phase::kSaslResponse ? kSaslLine : policy.max_line;
  }

  // --- replies -----------------------------------------------------------------------------

  void capa(std::string& out) const {
    out += "+OK capability list follows\r\n";
    out += "TOP\r\n";
    if (plaintext_ok())
      out += "USER\r\n";
    out += "UIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n";
    if (plaintext_ok())
      out += "SASL PLAIN\r\n";
    if (policy.tls_available && !policy.tls_active && !logged_in) {
      out += "STLS\r\n";
    }
    if (policy.expire_days)
      out += "EXPIRE " + std::to_string(*policy.expire_days) + "\r\n";
    if (policy.login_delay_secs) {
      out += "LOGIN-DELAY " + std::to_string(*policy.login_delay_secs) + "\r\n";
    }
    out += "IMPLEMENTATION Mailwright\r\n.\r\n";
  }

  void plaintext_refused(std::string& out) const {
    out += "-ERR [AUTH] plaintext authentication disallowed on insecure connections";
    out += policy.tls_available ? ", use STLS first\r\n" : "\r\n";
  }

  void maildrop_summary(std::string& out) const {
    std::uint64_t count = 0;
    std::uint64_t octets = 0;
    const auto& messages = maildrop->messages();
    for (std::size_t i = 0; i < messages.size(); ++i) {
      if (deleted[i])
        continue;
      ++count;
      octets += messages[i].size;
    }
    out += "+OK maildrop has " + std::to_string(count) +
           (count == 1 ? " message (" : " messages (") + std::to_string(octets) + " octets)\r\n";
  }

  // Message n (1-based) exists and is not marked deleted (RFC 1939 5).
  bool live(std::uint32_t n) const { return n >= 1 && n <= deleted.size() && !deleted[n - 1]; }

  // --- authentication ----------------------------------------------------------------------

  void start_authentication(const std::string& name, const std::string& password,
                            const std::string& digest, std::string& out) {
    user = name;
    phase = Phase::kAuthPending;
    in_authenticate = true;
    host.authenticate(name, password, digest);
    in_authenticate = false;
    if (early_answer) {
      early_answer = false;
      finish_authentication(early_outcome, std::move(early_maildrop), out);
    }
  }

  void count_failure(std::string& out) {
    out += kBadLogin;
    user.clear();
    ++failures;
    phase = failures >= kMaxAuthFailures ? Phase::kDone : Phase::kAuthorization;
  }

  void finish_authentication(AuthOutcome outcome, std::unique_ptr<Maildrop> opened,
                             std::string& out) {
    if (outcome == AuthOutcome::kOk && !opened)
      outcome = AuthOutcome::kTemporary;
    switch (outcome) {
      case AuthOutcome::kOk:
        maildrop = std::move(opened);
        logged_in = true;
        deleted.assign(maildrop->messages().size(), false);
        phase = Phase::kTransaction;
        maildrop_summary(out);
        return;
      case AuthOutcome::kBadCredentials:
        count_failure(out);
        return;
      case AuthOutcome::kInUse:
        out += "-ERR [IN-USE] maildrop locked by another session\r\n";
        break;
      case AuthOutcome::kTemporary:
        out += "-ERR [SYS/TEMP] maildrop temporarily unavailable, try again later\r\n";
        break;
    }
    user.clear();
    phase = Phase::kAuthorization;
  }

  // RFC 4616 2: message = [authzid] NUL authcid NUL passwd.
  void sasl_plain(std::string_view message, std::string& out) {
    const auto plain = parse_sasl_plain(message);
    if (!plain || plain->password.empty() || plain->authzid.size() > kSaslField ||
        plain->authcid.size() > kSaslField || plain->password.size() > kSaslField) {
      phase = Phase::kAuthorization;
      out += "-ERR malformed PLAIN response\r\n";
      return;
    }
    const std::string& authzid = plain->authzid;
    const std::string& authcid = plain->authcid;
    const std::string& passwd = plain->password;
    // Acting as another user would need a notion of administrators we do not have.
    if (!authzid.empty() && authzid != authcid) {
      count_failure(out);
      return;
    }
    start_authentication(authcid, passwd, "", out);
  }

  void sasl_response(std::string_view line, std::string& out) {
    if (line == "*") {
      phase = Phase::kAuthorization;
      out += "-ERR authentication cancelled\r\n";
      return;
    }
    bool ok = false;
    const std::string message = decode_base64(line, ok);
    if (!ok) {
      phase = Phase::kAuthorization;
      out += "-ERR invalid base64 data\r\n";
      return;
    }
    sasl_plain(message, out);
  }

  void auth(const Pop3Command& cmd, std::string& out) {
    if (cmd.text.empty()) {
      // Not in RFC 5034, but clients (Outlook among them) probe with a bare AUTH.
      out += plaintext_ok() ? "+OK\r\nPLAIN\r\n.\r\n" : "+OK\r\n.\r\n";
      return;
    }
    if (!ascii_iequal(cmd.text, "PLAIN")) {
      out += "-ERR unsupported authentication mechanism\r\n";
      return;
    }
    if (!plaintext_ok()) {
      plaintext_refused(out);
      return;
    }
    if (cmd.text2.empty()) {
      phase = Phase::kSaslResponse;
      out += "+ \r\n";  // RFC 5034 4: the empty challenge
      return;
    }
    // RFC 5034 4: "=" is an empty initial response.
    sasl_response(cmd.text2 == "=" ? std::string_view() : cmd.text2, out);
  }

  // --- multi-line output -------------------------------------------------------------------

  void open_stream(std::uint32_t n, std::optional<std::uint64_t> top, std::string& out) {
    if (!live(n)) {
      out += "-ERR no such message\r\n";
      return;
    }
    Result<std::unique_ptr<MessageStream>> opened = maildrop->open_message(n - 1, top);
    if (!opened || !*opened) {
      // The error's text may name files; the client gets a fixed one.
      const bool temporary = opened ? true : opened.error().is_temporary();
      out += temporary ? "-ERR [SYS/TEMP] unable to read message\r\n"
                       : "-ERR [SYS/PERM] unable to read message\r\n";
      return;
    }
    stream = std::move(*opened);
    tail[0] = '\r';
    tail[1] = '\n';
    stream_empty = true;
    if (top) {
      out += "+OK top of message follows\r\n";
    } else {
      out += "+OK " + std::to_string(maildrop->messages()[n - 1].size) + " octets\r\n";
    }
  }

  // Returns false when the stream made no progress (a broken stream must not spin pump()).
  bool step_stream(std::string& out, std::size_t room) {
    const std::size_t before = out.size();
    Result<bool> more = stream->next(out, room);
    if (!more) {
      // "+OK" is out and part of the message may be too: no reply can be honest now, so end
      // the session rather than let the client take a truncated message for a whole one.
      out.resize(before);
      stream.reset();
      phase = Phase::kDone;
      return false;
    }
    const std::size_t added = out.size() - before;
    if (added >= 2) {
      tail[0] = out[out.size() - 2];
      tail[1] = out[out.size() - 1];
    } else if (added == 1) {
      tail[0] = tail[1];
      tail[1] = out.back();
    }
    if (added > 0)
      stream_empty = false;
    if (*more)
      return added > 0;
    // The terminator must be a line of its own even if the stream forgot the last CRLF.
    if (!stream_empty && !(tail[0] == '\r' && tail[1] == '\n'))
      out += "\r\n";
    out += ".\r\n";
    stream.reset();
    return true;
  }

  void step_listing(std::string& out, std::size_t end) {
    const auto& messages = maildrop->messages();
    while (listing_next < messages.size() && out.size() < end) {
      const std::size_t i = listing_next++;
      if (deleted[i])
        continue;
      out += std::to_string(i + 1);
      out += ' ';
      out += listing == Listing::kList ? std::to_string(messages[i].size) : messages[i].uid;
      out += "\r\n";
    }
    if (listing_next >= messages.size()) {
      out += ".\r\n";
      listing = Listing::kNone;
    }
  }

  // --- commands ----------------------------------------------------------------------------

  void transaction(const Pop3Command& cmd, std::string& out) {
    const auto& messages = maildrop->messages();
    switch (cmd.verb) {
      case Pop3Verb::kStat: {
        std::uint64_t count = 0;
        std::uint64_t octets = 0;
        for (std::size_t i = 0; i < messages.size(); ++i) {
          if (deleted[i])
            continue;
          ++count;
          octets += messages[i].size;
        }
        out += "+OK " + std::to_string(count) + " " + std::to_string(octets) + "\r\n";
        return;
      }
      case Pop3Verb::kList:
      case Pop3Verb::kUidl: {
        const bool list = cmd.verb == Pop3Verb::kList;
        if (cmd.message) {
          const std::uint32_t n = *cmd.message;
          if (!live(n)) {
            out += "-ERR no such message\r\n";
            return;
          }
          out += "+OK " + std::to_string(n) + " " +
                 (list ? std::to_string(messages[n - 1].size) : messages[n - 1].uid) + "\r\n";
          return;
        }
        if (list) {
          std::uint64_t count = 0;
          std::uint64_t octets = 0;
          for (std::size_t i = 0; i < messages.size(); ++i) {
            if (deleted[i])
              continue;
            ++count;
            octets += messages[i].size;
          }
          out += "+OK " + std::to_string(count) + (count == 1 ? " message (" : " messages (") +
                 std::to_string(octets) + " octets)\r\n";
        } else {
          out += "+OK unique-id listing follows\r\n";
        }
        listing = list ? Listing::kList : Listing::kUidl;
        listing_next = 0;
        return;
      }
      case Pop3Verb::kRetr:
        open_stream(*cmd.message, std::nullopt, out);
        return;
      case Pop3Verb::kTop:
        open_stream(*cmd.message, std::uint64_t{cmd.lines}, out);
        return;
      case Pop3Verb::kDele: {
        const std::uint32_t n = *cmd.message;
        if (n == 0 || n > deleted.size()) {
          out += "-ERR no such message\r\n";
        } else if (deleted[n - 1]) {
          out += "-ERR message " + std::to_string(n) + " already deleted\r\n";
        } else {
          deleted[n - 1] = true;
          out += "+OK message " + std::to_string(n) + " deleted\r\n";
        }
        return;
      }
      case Pop3Verb::kNoop:
        out += "+OK\r\n";
        return;
      case Pop3Verb::kRset:
        deleted.assign(deleted.size(), false);
        maildrop_summary(out);
        return;
      case Pop3Verb::kQuit: {
        // RFC 1939 6: the UPDATE state.
        const Status committed = maildrop->commit(deleted);
        out += committed ? "+OK bye\r\n" : "-ERR [SYS/TEMP] some deleted messages not removed\r\n";
        maildrop.reset();
        phase = Phase::kDone;
        return;
      }
      case Pop3Verb::kCapa:
        capa(out);
        return;
      default:
        out += "-ERR command not valid in TRANSACTION state\r\n";
        return;
    }
  }

  void authorization(const Pop3Command& cmd, std::string& out) {
    switch (cmd.verb) {
      case Pop3Verb::kUser:
        if (!plaintext_ok()) {
          plaintext_refused(out);
          return;
        }
        // The same answer for every name: whether it exists shows only after PASS, and then
        // only together with the password.
        user = std::string(cmd.text);
        out += "+OK send PASS\r\n";
        return;
      case Pop3Verb::kPass: {
        if (!plaintext_ok()) {
          plaintext_refused(out);
          return;
        }
        if (user.empty()) {
          out += "-ERR give USER first\r\n";
          return;
        }
        const std::string name = user;
        start_authentication(name, std::string(cmd.text), "", out);
        return;
      }
      case Pop3Verb::kApop:
        // No password crosses the wire, so APOP is allowed without TLS.
        if (policy.apop_banner.empty()) {
          out += "-ERR APOP not supported\r\n";
          return;
        }
        start_authentication(std::string(cmd.text), "", std::string(cmd.text2), out);
        return;
      case Pop3Verb::kAuth:
        auth(cmd, out);
        return;
      case Pop3Verb::kStls:
        if (policy.tls_active) {
          out += "-ERR Command not permitted when TLS active\r\n";  // RFC 2595 4
          return;
        }
        if (!policy.tls_available) {
          out += "-ERR STLS not available\r\n";
          return;
        }
        out += "+OK Begin TLS negotiation\r\n";
        // CVE-2011-0411, CVE-2021-33515: whatever came in plaintext after STLS was sent
        // before the handshake by someone who may not be the client; it must never run.
        input.consume(input.size());
        skipping = false;
        user.clear();  // RFC 2595 4: forget what the client said before TLS
        phase = Phase::kTlsPending;
        host.start_tls();
        return;
      case Pop3Verb::kCapa:
        capa(out);
        return;
      case Pop3Verb::kQuit:
        out += "+OK bye\r\n";
        phase = Phase::kDone;
        return;
      default:
        out += "-ERR command not valid in AUTHORIZATION state\r\n";
        return;
    }
  }

  void command(std::string_view line, std::string& out) {
    if (phase == Phase::kSaslResponse) {
      sasl_response(line, out);
      return;
    }
    const bool in_transaction = phase == Phase::kTransaction;
    // A known verb in the wrong state gets that answer, whatever its arguments.
    if (const std::optional<Pop3Verb> verb = pop3_verb_of(line)) {
      if (in_transaction ? !valid_in_transaction(*verb) : !valid_in_authorization(*verb)) {
        out += in_transaction ? "-ERR command not valid in TRANSACTION state\r\n"
                              : "-ERR command not valid in AUTHORIZATION state\r\n";
        return;
      }
    }
    Result<Pop3Command> cmd = parse_pop3_command(line);
    if (!cmd) {
      out += "-ERR " + cmd.error().text() + "\r\n";
      return;
    }
    if (in_transaction) {
      transaction(*cmd, out);
    } else {
      authorization(*cmd, out);
    }
  }

  bool runnable() const {
    return phase == Phase::kAuthorization || phase == Phase::kSaslResponse ||
           phase == Phase::kTransaction;
  }

  // Produces output until about budget octets were added, the input runs out, or something
  // outside (authentication, TLS) must happen first.
  void drive(std::string& out, std::size_t budget) {
    const std::size_t end = out.size() + (budget == 0 ? 1 : budget);
    while (phase != Phase::kDone && out.size() < end) {
      if (stream) {
        if (!step_stream(out, end - out.size()))
          break;
        continue;
      }
      if (listing != Listing::kNone) {
        step_listing(out, end);
        continue;
      }
      if (!runnable())
        break;
      const Line line = input.next(line_limit());
      if (line.ending == LineEnding::kIncomplete || line.ending == LineEnding::kEof)
        break;
      if (line.ending == LineEnding::kTooLong) {
        input.consume(line.consumed);
        if (!skipping) {
          skipping = true;
          skipped = 0;
          out += "-ERR line too long\r\n";
          if (phase == Phase::kSaslResponse)
            phase = Phase::kAuthorization;  // ends the AUTH
        }
        skipped += line.consumed;
        if (skipped > kMaxSkippedLine)
          phase = Phase::kDone;
        continue;
      }
      // A copy: the line must survive whatever the host does while we handle it.
      const std::string text(line.text);
      input.consume(line.consumed);
      if (skipping) {
        skipping = false;  // the end of a too long line, already answered
        continue;
      }
      command(text, out);
    }
    update_pending();
  }

  void update_pending() {
    pending = false;
    if (phase == Phase::kDone) {
      input.consume(input.size());
      return;
    }
    if (stream || listing != Listing::kNone) {
      pending = true;
      return;
    }
    if (!runnable())
      return;
    const LineEnding next = input.next(line_limit()).ending;
    pending = next == LineEnding::kCrlf || next == LineEnding::kLf || next == LineEnding::kTooLong;
  }
};

Session::Session(SessionHost& host, SessionPolicy policy)
    : s_(std::make_unique<State>(host, std::move(policy))) {}

Session::~Session() = default;

std::string Session::greeting() const {
  std::string g = "+OK " + s_->policy.greeting_host + " POP3 ready";
  if (!s_->policy.apop_banner.empty())
    g += " " + s_->policy.apop_banner;
  return g + "\r\n";
}

bool Session::process(std::string_view input, std::string& out) {
  State& s = *s_;
  if (s.phase == Phase::kDone)
    return false;
  // Plaintext that arrives between STLS and the handshake is dropped for the same reason as
  // what came with STLS.
  if (s.phase == Phase::kTlsPending)
    return true;
  if (input.size() > kMaxBufferedInput - s.input.size()) {
    if (!s.stream && s.listing == Listing::kNone)
      out += "-ERR too much pipelined input\r\n";
    s.phase = Phase::kDone;
    s.pending = false;
    return false;
  }
  s.input.append(input);
  // While earlier output is still waiting for pump(), input is only stored: producing more
  // here would let a client that never reads make us buffer without end.
  if (!s.pending)
    s.drive(out, kReplyBudget);
  return s.phase != Phase::kDone;
}

bool Session::pump(std::string& out, std::size_t max) {
  State& s = *s_;
  if (s.phase == Phase::kDone)
    return false;
  s.drive(out, max);
  return s.pending;
}

bool Session::streaming() const { return s_->pending; }

void Session::auth_result(AuthOutcome outcome, std::unique_ptr<Maildrop> maildrop,
                          std::string& out) {
  State& s = *s_;
  if (s.phase != Phase::kAuthPending)
    return;  // late answer for a session that has ended
  if (s.in_authenticate) {
    s.early_answer = true;
    s.early_outcome = outcome;
    s.early_maildrop = std::move(maildrop);
    return;
  }
  s.finish_authentication(outcome, std::move(maildrop), out);
  s.drive(out, kReplyBudget);
}

void Session::tls_started(std::string& /*out*/) {
  State& s = *s_;
  if (s.phase != Phase::kTlsPending)
    return;
  s.policy.tls_active = true;
  s.input.consume(s.input.size());
  s.skipping = false;
  s.user.clear();
  s.phase = Phase::kAuthorization;
  s.pending = false;
}

bool Session::authenticated() const { return s_->logged_in; }

const std::string& Session::user() const { return s_->user; }

bool Session::finished() const { return s_->phase == Phase::kDone; }

std::size_t Session::buffered_input() const { return s_->input.size(); }

std::string Session::take_buffered_input() {
  State& s = *s_;
  std::string taken;
  taken.reserve(s.input.size());
  for (;;) {
    // With no length limit and at_eof, every line comes back whole, terminator included.
    const Line line = s.input.next(std::numeric_limits<std::size_t>::max(), true);
    if (line.consumed == 0)
      break;
    if (s.skipping) {
      s.skipping = false;
    } else {
      taken.append(line.text.data(), line.consumed);
    }
    s.input.consume(line.consumed);
  }
  s.pending = false;
  return taken;
}

}  // namespace mailwright::pop3
