#include "mta/smtp_client.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>

#include "libmail/address.h"
#include "libmail/ascii.h"
#include "libmail/base64.h"
#include "libmail/event_loop.h"
#include "libmail/listen_address.h"
#include "libmail/log.h"
#include "libmail/tls.h"
#include "mta/smtp_command.h"

namespace mailwright::mta {

// --- 1. Replies ---------------------------------------------------------------------------------

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Control octets (C0, DEL) become '?': reply text ends up in logs, queue ERROR lines and DSNs.
std::string sanitize(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return out;
}

// "class.subject.detail" (RFC 3463 2: 1-3 digits each after the class) at the start of text,
// followed by a space or the end. Returns its length, or 0.
std::size_t enhanced_code_length(std::string_view text, int klass) {
  if (text.size() < 5 || text[0] != static_cast<char>('0' + klass) || text[1] != '.') return 0;
  std::size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    const std::size_t start = i;
    while (i < text.size() && is_digit(text[i]) && i - start < 4) ++i;
    if (i == start || i - start > 3) return 0;
    if (part == 0) {
      if (i >= text.size() || text[i] != '.') return 0;
      ++i;
    }
  }
  if (i < text.size() && text[i] != ' ') return 0;
  return i;
}

SmtpReplyParse parse_error(const char* text) {
  SmtpReplyParse r;
  r.state = SmtpReplyParse::State::kError;
  r.error = text;
  return r;
}

bool parse_decimal(std::string_view text, std::uint64_t& value) {
  if (text.empty() || text.size() > 20) return false;
  std::uint64_t v = 0;
  for (char c : text) {
    if (!is_digit(c)) return false;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  value = v;
  return true;
}

}  // namespace

std::string SmtpReply::status() const {
  if (!enhanced.empty()) return enhanced;
  const int k = klass();
  return std::string(1, static_cast<char>('0' + (k >= 2 && k <= 5 ? k : 4))) + ".0.0";
}

std::string SmtpReply::to_string() const {
  std::string out = std::to_string(code);
  if (!enhanced.empty()) out += " " + enhanced;
  if (!text.empty()) out += " " + text;
  return out;
}

SmtpReplyParse parse_smtp_reply(std::string_view buffer) {
  SmtpReplyParse result;
  SmtpReply& reply = result.reply;
  std::size_t pos = 0;
  for (std::size_t n = 0;; ++n) {
    const std::string_view rest = buffer.substr(pos);
    const std::size_t lf = rest.substr(0, kMaxReplyLine).find('\n');
    if (lf == std::string_view::npos) {
      if (rest.size() >= kMaxReplyLine) return parse_error("reply line too long");
      return {};  // incomplete
    }
    if (n >= kMaxReplyLines) return parse_error("reply has too many lines");
    std::string_view line = rest.substr(0, lf);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // RFC 5321 4.2: Reply-code = %x32-35 %x30-35 %x30-39, then SP or "-" (or nothing).
    if (line.size() < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
        !is_digit(line[2])) {
      return parse_error("malformed reply line");
    }
    const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (n > 0 && code != reply.code) return parse_error("reply code differs between lines");
    reply.code = code;
    bool last = true;
    if (line.size() > 3) {
      if (line[3] == '-') {
        last = false;
      } else if (line[3] != ' ') {
        return parse_error("malformed reply line");
      }
    }
    reply.lines.push_back(sanitize(line.size() > 4 ? line.substr(4) : std::string_view()));
    pos += lf + 1;
    if (last) break;
  }
  result.state = SmtpReplyParse::State::kComplete;
  result.consumed = pos;

  const std::size_t elen = enhanced_code_length(reply.lines.front(), reply.klass());
  if (elen > 0) reply.enhanced = reply.lines.front().substr(0, elen);
  for (const std::string& line : reply.lines) {
    std::string_view t = line;
    if (!reply.enhanced.empty() && t.substr(0, reply.enhanced.size()) == reply.enhanced &&
        (t.size() == reply.enhanced.size() || t[reply.enhanced.size()] == ' ')) {
      t.remove_prefix(std::min(t.size(), reply.enhanced.size() + 1));
    }
    if (t.empty()) continue;
    if (!reply.text.empty()) reply.text += ' ';
    reply.text += t;
  }
  return result;
}

bool SmtpCapabilities::has_auth(std::string_view mechanism) const {
  return std::find(auth.begin(), auth.end(), mechanism) != auth.end();
}

SmtpCapabilities parse_ehlo_capabilities(const SmtpReply& reply) {
  SmtpCapabilities caps;
  auto add_mechanism = [&caps](std::string_view m) {
    // RFC 4422 3.1: 1-20 of upper-case letters, digits, '-' and '_'.
    if (m.empty() || m.size() > 20) return;
    std::string upper;
    for (char c : m) {
      const char u = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
      if (!((u >= 'A' && u <= 'Z') || is_digit(u) || u == '-' || u == '_')) return;
      upper += u;
    }
    if (!caps.has_auth(upper)) caps.auth.push_back(std::move(upper));
  };
  // The first line is the server's name and greeting; each later line one keyword.
  for (std::size_t i = 1; i < reply.lines.size(); ++i) {
    std::vector<std::string_view> words;
    std::string_view rest = reply.lines[i];
    while (!rest.empty()) {
      const std::size_t sp = rest.find(' ');
      const std::string_view word = rest.substr(0, sp);
      if (!word.empty()) words.push_back(word);
      if (sp == std::string_view::npos) break;
      rest.remove_prefix(sp + 1);
    }
    if (words.empty()) continue;
    const std::string_view key = words[0];
    if (ascii_iequal(key, "PIPELINING")) {
      caps.pipelining = true;
    } else if (ascii_iequal(key, "SIZE")) {
      caps.size = true;
      std::uint64_t limit = 0;
      if (words.size() > 1 && parse_decimal(words[1], limit)) caps.size_limit = limit;
    } else if (ascii_iequal(key, "8BITMIME")) {
      caps.eightbitmime = true;
    } else if (ascii_iequal(key, "BINARYMIME")) {
      caps.binarymime = true;
    } else if (ascii_iequal(key, "SMTPUTF8")) {
      caps.smtputf8 = true;
    } else if (ascii_iequal(key, "DSN")) {
      caps.dsn = true;
    } else if (ascii_iequal(key, "STARTTLS")) {
      caps.starttls = true;
    } else if (ascii_iequal(key, "CHUNKING")) {
      caps.chunking = true;
    } else if (ascii_iequal(key, "ENHANCEDSTATUSCODES")) {
      caps.enhanced_status_codes = true;
    } else if (ascii_iequal(key, "AUTH") || ascii_istarts_with(key, "AUTH=")) {
      if (key.size() > 5) add_mechanism(key.substr(5));
      for (std::size_t w = 1; w < words.size(); ++w) add_mechanism(words[w]);
    }
  }
  return caps;
}

// Spans between line ends are copied whole: per-octet appends would dominate large messages.
void SmtpDataEncoder::encode(std::string_view piece, std::string& out) {
  if (mode_ == Mode::kBinary) {
    out.append(piece);
    return;
  }
  const bool stuff = mode_ == Mode::kDotStuff;
  const char* p = piece.data();
  const char* const end = p + piece.size();
  const char* next_lf = nullptr;  // the first LF at or after p (or end): each octet scanned once
  while (p < end) {
    if (pending_cr_) {
      // A CR ended the previous piece: CRLF if this one starts with LF, else a bare CR.
      pending_cr_ = false;
      out += "\r\n";
      line_start_ = true;
      if (*p == '\n') {
        ++p;
        continue;
      }
      ++repaired_;
    }
    if (line_start_ && stuff && *p == '.') out += '.';
    // The next CR or LF.
    if (next_lf == nullptr || next_lf < p) {
      const void* lf = std::memchr(p, '\n', static_cast<std::size_t>(end - p));
      next_lf = lf != nullptr ? static_cast<const char*>(lf) : end;
    }
    const void* cr = std::memchr(p, '\r', static_cast<std::size_t>(next_lf - p));
    const char* q = cr != nullptr ? static_cast<const char*>(cr) : next_lf;
    if (q > p) {
      out.append(p, static_cast<std::size_t>(q - p));
      line_start_ = false;
    }
    if (q == end) break;
    if (*q == '\n') {  // bare LF
      out += "\r\n";
      line_start_ = true;
      ++repaired_;
      p = q + 1;
      continue;
    }
    // A CR: CRLF, or a bare CR, or undecided at the end of the piece.
    if (q + 1 == end) {
      pending_cr_ = true;
      p = end;
      break;
    }
    out += "\r\n";
    line_start_ = true;
    if (q[1] == '\n') {
      p = q + 2;
    } else {
      ++repaired_;
      p = q + 1;
    }
  }
}

void SmtpDataEncoder::finish(std::string& out) {
  if (mode_ == Mode::kBinary) return;
  if (pending_cr_) {
    pending_cr_ = false;
    out += "\r\n";
    line_start_ = true;
    ++repaired_;
  }
  if (mode_ != Mode::kDotStuff) return;
  // RFC 5321 4.1.1.4: the terminator follows a CRLF; a message not ending in one gets it.
  if (!line_start_) out += "\r\n";
  out += ".\r\n";
  line_start_ = true;
}

SmtpTransaction make_smtp_transaction(const Envelope& envelope,
                                      const std::vector<std::size_t>& recipients,
                                      std::uint64_t message_size) {
  SmtpTransaction t;
  t.sender = envelope.sender;
  t.body = envelope.body;
  t.smtputf8 = envelope.smtputf8;
  t.ret = envelope.ret;
  t.envid = envelope.envid;
  t.size = message_size;
  for (std::size_t i : recipients) {
    if (i >= envelope.recipients.size()) continue;
    const Recipient& r = envelope.recipients[i];
    t.recipients.push_back({r.address, r.orcpt, r.notify});
  }
  return t;
}

std::string SmtpRecipientResult::diagnostic_code() const {
  return (code != 0 ? "smtp; " : "x-mailwright; ") + reply;
}

DeliveryOutcome to_delivery_outcome(const SmtpRecipientResult& result) {
  DeliveryOutcome o;
  switch (result.state) {
    case DeliveryState::kDelivered:
      o.kind = DeliveryOutcome::Kind::kDelivered;
      break;
    case DeliveryState::kFailed:
      o.kind = DeliveryOutcome::Kind::kFailed;
      break;
    case DeliveryState::kDeferred:
    case DeliveryState::kPending:
      o.kind = DeliveryOutcome::Kind::kDeferred;
      break;
  }
  o.status = result.status.empty() ? std::string("4.0.0") : result.status;
  o.diagnostic = result.diagnostic_code();
  o.remote_host = result.code != 0 ? result.remote_host : std::string();
  return o;
}

std::string SmtpRecipientResult::summary() const {
  if (code == 0) return reply;
  std::string host = remote_host.empty() ? std::string("unknown") : remote_host;
  if (!remote_address.empty() && remote_address != remote_host) host += "[" + remote_address + "]";
  if (stage == "greeting") return "host " + host + " refused to talk to me: " + reply;
  return "host " + host + " said: " + reply + " (in reply to " + stage + " command)";
}

// --- 2. The session -----------------------------------------------------------------------------

namespace {

constexpr std::size_t kNoTxn = static_cast<std::size_t>(-1);

enum class Expect {
  kGreeting,
  kEhlo,
  kHelo,
  kStarttls,
  kAuthPlain,
  kAuthLogin0,  // 334 Username:
  kAuthLogin1,  // 334 Password:
  kAuthLogin2,  // 235
  kRset,
  kMail,
  kRcpt,
  kData,
  kDataEnd,
  kBdat,
  kBdatLast,
  kLoneDot,  // the "." sent to a 354 nobody is left for; its reply means nothing
  kQuit,
};

struct Pending {
  Expect kind;
  std::size_t txn = kNoTxn;
  std::size_t rcpt = kNoTxn;
};

const char* stage_name(Expect kind) {
  switch (kind) {
    case Expect::kGreeting:
      return "greeting";
    case Expect::kEhlo:
      return "EHLO";
    case Expect::kHelo:
      return "HELO";
    case Expect::kStarttls:
      return "STARTTLS";
    case Expect::kAuthPlain:
    case Expect::kAuthLogin0:
    case Expect::kAuthLogin1:
    case Expect::kAuthLogin2:
      return "AUTH";
    case Expect::kRset:
      return "RSET";
    case Expect::kMail:
      return "MAIL FROM";
    case Expect::kRcpt:
      return "RCPT TO";
    case Expect::kData:
      return "DATA";
    case Expect::kDataEnd:
    case Expect::kLoneDot:
      return "end of DATA";
    case Expect::kBdat:
    case Expect::kBdatLast:
      return "BDAT";
    case Expect::kQuit:
      return "QUIT";
  }
  return "command";
}

std::string temporary_status(std::string status) {
  if (!status.empty() && status[0] == '5') status[0] = '4';
  return status;
}

bool has_control(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

// EHLO/HELO argument: a domain or an address literal, nothing a server could misread.
bool valid_helo_name(const std::string& name) {
  if (name.empty() || name.size() > 255 || has_control(name)) return false;
  if (name.front() == '[') return parse_mailbox("postmaster@" + name).ok();
  return is_valid_domain(name);
}

// ORCPT addr-type: an atom (RFC 3461 4.2: "rfc822", "utf-8", ...).
bool valid_addr_type(std::string_view type) {
  if (type.empty() || type.size() > 32) return false;
  for (char c : type) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-')) {
      return false;
    }
  }
  return true;
}

}  // namespace

struct SmtpClientSession::State {
  struct Txn {
    SmtpTransaction t;
    std::vector<SmtpRecipientResult> results;
    enum class Phase { kQueued, kActive, kDone } phase = Phase::kQueued;
    std::string mail_line;
    std::vector<std::string> rcpt_lines;  // per recipient; "" when refused locally
    std::vector<std::size_t> rcpt_order;  // recipients sent, in order
    std::size_t rcpt_sent = 0;            // without pipelining: RCPTs sent so far
    std::size_t rcpt_replies = 0;
    std::vector<bool> accepted;
    std::size_t accepted_count = 0;
    bool mail_refused = false;
    bool use_bdat = false;
    bool binary = false;
    bool content_phase = false;  // the driver should send content
    bool end_sent = false;       // the final dot or the LAST chunk went out
    bool data_failed = false;    // a reply to DATA or a BDAT already decided the outcome
    std::size_t bdat_outstanding = 0;
    std::optional<SmtpDataEncoder> encoder;
    std::uint64_t offset = 0;
  };

  explicit State(SmtpClientSettings s) : settings(std::move(s)) {
    expect.push_back({Expect::kGreeting});
  }

  SmtpClientSettings settings;
  SmtpCapabilities caps;
  SmtpConnectionOutcome outcome;
  std::deque<Pending> expect;
  std::vector<Txn> txns;
  std::size_t current = kNoTxn;  // the active transaction
  std::size_t next_queued = 0;  // no queued transaction before this index

  std::string in;
  std::size_t tail = 0;           // octets of in after its last LF
  bool incomplete = false;        // the last parse of in found no complete reply
  bool ready = false;             // greeted (and TLS, AUTH done): transactions may start
  bool tls_active = false;
  bool tls_wanted = false;
  bool starttls_tried = false;
  bool authenticated = false;
  bool need_rset = false;         // a MAIL was sent on this connection
  bool quit_requested = false;
  bool quit_sent = false;
  bool broken = false;            // failed: nothing more will be attempted
  bool closed = false;

  bool pipelining() const { return caps.pipelining && settings.use_pipelining; }

  std::string host_text() const {
    std::string h = settings.remote_host.empty() ? settings.remote_address : settings.remote_host;
    if (!settings.remote_address.empty() && settings.remote_address != h) {
      h += "[" + settings.remote_address + "]";
    }
    return h.empty() ? std::string("the server") : h;
  }

  // --- results -----------------------------------------------------------------------------

  SmtpRecipientResult from_reply(const SmtpReply& reply, std::string_view stage,
                                 bool force_temporary = false) const {
    SmtpRecipientResult r;
    r.code = reply.code;
    r.reply = reply.to_string();
    r.stage = std::string(stage);
    r.remote_host = settings.remote_host;
    r.remote_address = settings.remote_address;
    r.dsn_passed_on = caps.dsn;
    if (reply.klass() == 2 && !force_temporary) {
      r.state = DeliveryState::kDelivered;
      r.status = reply.status();
    } else if (reply.klass() == 5 && !force_temporary) {
      r.state = DeliveryState::kFailed;
      r.status = reply.status();
    } else if (reply.klass() == 4 || reply.klass() == 5) {
      r.state = DeliveryState::kDeferred;
      r.status = temporary_status(reply.status());
    } else {
      // A 354 or 334 where neither belongs, or a 2xx that cannot mean success where it came:
      // the server does not speak the protocol we do.
      r.state = DeliveryState::kDeferred;
      r.status = "4.5.0";
    }
    return r;
  }

  SmtpRecipientResult local(DeliveryState state, std::string_view status, std::string text) const {
    SmtpRecipientResult r;
    r.state = state;
    r.status = std::string(status);
    r.reply = std::move(text);
    r.dsn_passed_on = caps.dsn;
    return r;
  }

  void decide(Txn& x, std::size_t i, const SmtpRecipientResult& r) {
    if (x.results[i].state == DeliveryState::kPending) x.results[i] = r;
  }

  // Applies a reply to every recipient accepted at RCPT and still open.
  void decide_accepted(Txn& x, const SmtpRecipientResult& r) {
    for (std::size_t i : x.rcpt_order) {
      if (x.accepted[i]) decide(x, i, r);
    }
  }

  void decide_all(Txn& x, const SmtpRecipientResult& r) {
    for (std::size_t i = 0; i < x.results.size(); ++i) decide(x, i, r);
  }

  // --- the connection as a whole -------------------------------------------------------------

  void send(std::string& out, std::string_view line, Pending p) {
    out += line;
    out += "\r\n";
    expect.push_back(p);
  }

  // Gives up on the connection: every open recipient of every transaction gets result (a
  // deferral), and nothing more is started. QUIT is sent when the server is still listening.
  void fail_connection(SmtpRecipientResult result, bool try_next, bool quit, std::string& out) {
    if (result.state != DeliveryState::kDeferred) {
      result.state = DeliveryState::kDeferred;
      result.status = temporary_status(result.status);
    }
    for (Txn& x : txns) {
      if (x.phase == Txn::Phase::kDone) continue;
      decide_all(x, result);
      x.phase = Txn::Phase::kDone;
      x.content_phase = false;
    }
    current = kNoTxn;
    next_queued = txns.size();
    if (outcome.error.state == DeliveryState::kPending) outcome.error = result;
    outcome.try_next = outcome.try_next || try_next;
    broken = true;
    ready = false;
    tls_wanted = false;
    expect.clear();
    if (quit && !closed && !quit_sent) {
      quit_sent = true;
      send(out, "QUIT", {Expect::kQuit});
    } else {
      closed = true;
    }
  }

  void fail_local(std::string_view status, std::string text, bool try_next, bool quit,
                  std::string& out) {
    fail_connection(local(DeliveryState::kDeferred, status, std::move(text)), try_next, quit, out);
  }

  // --- input -----------------------------------------------------------------------------------

  void receive(std::string_view input, std::string& out) {
    if (closed || tls_wanted) return;  // after a 220 to STARTTLS: plaintext we never read
    in.append(input);
    const std::size_t lf = input.rfind('\n');
    tail = lf == std::string_view::npos ? tail + input.size() : input.size() - lf - 1;
    // Nothing new can complete or break a reply without an LF, unless its last line is now too
    // long: no reparse (a reply trickling in octet by octet costs linear time, not quadratic).
    if (incomplete && lf == std::string_view::npos && tail < kMaxReplyLine) return;
    std::size_t pos = 0;
    incomplete = false;
    while (!closed && !tls_wanted && pos < in.size()) {
      SmtpReplyParse p = parse_smtp_reply(std::string_view(in).substr(pos));
      if (p.state == SmtpReplyParse::State::kIncomplete) {
        incomplete = true;
        break;
      }
      if (p.state == SmtpReplyParse::State::kError) {
        fail_local("4.5.0", "protocol error: " + p.error + " from host " + host_text(), true,
                   false, out);
        break;
      }
      pos += p.consumed;
      on_reply(p.reply, out);
    }
    if (tls_wanted || closed) {
      in.clear();
      tail = 0;
      incomplete = false;
      return;
    }
    in.erase(0, pos);
  }

  void on_reply(const SmtpReply& reply, std::string& out) {
    if (expect.empty()) return unsolicited(reply, out);
    const Pending p = expect.front();
    expect.pop_front();
    if (p.kind == Expect::kQuit) {
      closed = true;
      return;
    }
    if (p.kind == Expect::kRset && reply.klass() != 2) {
      // On a reused connection this is where a dead one shows: nothing was attempted.
      outcome.stale = true;
      return fail_connection(from_reply(reply, "RSET", true), true, reply.code != 421, out);
    }
    if (reply.code == 421) {
      // RFC 5321 3.8: the server is closing the connection; it took nothing of what is open.
      return fail_connection(from_reply(reply, stage_name(p.kind), true), true, false, out);
    }
    switch (p.kind) {
      case Expect::kGreeting:
        return on_greeting(reply, out);
      case Expect::kEhlo:
      case Expect::kHelo:
        return on_hello(p.kind, reply, out);
      case Expect::kStarttls:
        return on_starttls(reply, out);
      case Expect::kAuthPlain:
      case Expect::kAuthLogin0:
      case Expect::kAuthLogin1:
      case Expect::kAuthLogin2:
        return on_auth(p.kind, reply, out);
      case Expect::kRset:
        return send_mail(out);
      case Expect::kMail:
        return on_mail(p.txn, reply, out);
      case Expect::kRcpt:
        return on_rcpt(p.txn, p.rcpt, reply, out);
      case Expect::kData:
        return on_data(p.txn, reply, out);
      case Expect::kDataEnd:
        decide_accepted(txns[p.txn], from_reply(reply, "end of DATA"));
        return txn_done(p.txn, out);
      case Expect::kBdat:
      case Expect::kBdatLast:
        return on_bdat(p.txn, p.kind == Expect::kBdatLast, reply, out);
      case Expect::kLoneDot:
        return txn_done(p.txn, out);
      case Expect::kQuit:
        break;
    }
  }

  void unsolicited(const SmtpReply& reply, std::string& out) {
    if (current != kNoTxn && txns[current].content_phase && !txns[current].use_bdat) {
      // An answer in the middle of DATA (552 too big, 421, ...): the server no longer reads
      // the message as message, so nothing more may be sent on this connection.
      // A 2xx here cannot be the message's acceptance: it has not all been sent.
      Txn& x = txns[current];
      decide_accepted(x, from_reply(reply, "DATA", reply.klass() == 2));
      return fail_connection(from_reply(reply, "DATA", true), reply.code == 421, false, out);
    }
    if (reply.code == 421) {
      return fail_connection(from_reply(reply, "idle connection", true), true, false, out);
    }
    fail_local("4.5.0", "protocol error: unexpected reply from host " + host_text() + ": " +
                            reply.to_string(),
               true, false, out);
  }

  // --- greeting, EHLO, STARTTLS, AUTH ----------------------------------------------------------

  void on_greeting(const SmtpReply& reply, std::string& out) {
    if (reply.klass() != 2) {
      // 554 included (Postfix: smtp_skip_5xx_greeting): another host may well take the mail.
      return fail_connection(from_reply(reply, "greeting", true), true, true, out);
    }
    send_ehlo(out);
  }

  void send_ehlo(std::string& out) {
    if (!valid_helo_name(settings.helo_name)) {
      return fail_local("4.3.5", "local configuration error: the HELO name is not a domain", false,
                        true, out);
    }
    send(out, "EHLO " + settings.helo_name, {Expect::kEhlo});
  }

  void on_hello(Expect kind, const SmtpReply& reply, std::string& out) {
    if (reply.klass() == 2) {
      caps = kind == Expect::kEhlo ? parse_ehlo_capabilities(reply) : SmtpCapabilities();
      return after_hello(out);
    }
    if (kind == Expect::kEhlo && reply.klass() == 5 && !tls_active) {
      // RFC 5321 3.2: a server that does not know EHLO still knows HELO.
      return send(out, "HELO " + settings.helo_name, {Expect::kHelo});
    }
    fail_connection(from_reply(reply, stage_name(kind), true), true, true, out);
  }

  void after_hello(std::string& out) {
    if (!tls_active && !starttls_tried && settings.tls != SmtpTlsPolicy::kNone) {
      if (caps.starttls && settings.tls_available) {
        starttls_tried = true;
        return send(out, "STARTTLS", {Expect::kStarttls});
      }
      if (settings.tls != SmtpTlsPolicy::kOpportunistic) {
        if (!settings.tls_available) {
          return fail_local("4.3.5", "TLS is required, but no TLS client context is configured",
                            false, true, out);
        }
        return fail_local("4.7.4", "TLS is required, but was not offered by host " + host_text(),
                          true, true, out);
      }
    }
    if (settings.credentials && !authenticated) return start_auth(out);
    ready = true;
    proceed(out);
  }

  void on_starttls(const SmtpReply& reply, std::string& out) {
    if (reply.code == 220) {
      tls_wanted = true;  // receive() drops whatever else came in the clear
      return;
    }
    if (settings.tls != SmtpTlsPolicy::kOpportunistic) {
      return fail_local("4.7.4",
                        "TLS is required, but host " + host_text() +
                            " refused to start TLS: " + reply.to_string(),
                        true, true, out);
    }
    after_hello(out);  // RFC 3207 4: the session goes on in plaintext
  }

  void start_auth(std::string& out) {
    const SmtpCredentials& c = *settings.credentials;
    if (!tls_active && !settings.auth_without_tls) {
      // RFC 5248 X.7.10 "encryption needed" for a plaintext mechanism.
      return fail_local("4.7.10",
                        "credentials are configured for host " + host_text() +
                            ", but TLS is not active to send them",
                        true, true, out);
    }
    const auto bad = [](const std::string& s) {
      return s.find_first_of(std::string_view("\0\r\n", 3)) != std::string::npos;
    };
    if (c.user.empty() || bad(c.user) || bad(c.password) || c.user.size() > 1024 ||
        c.password.size() > 1024) {
      return fail_local("4.3.5", "local configuration error: unusable SMTP AUTH credentials",
                        false, true, out);
    }
    if (caps.has_auth("PLAIN")) {
      std::string message;
      message += '\0';
      message += c.user;
      message += '\0';
      message += c.password;
      return send(out, "AUTH PLAIN " + encode_base64(message), {Expect::kAuthPlain});
    }
    if (caps.has_auth("LOGIN")) return send(out, "AUTH LOGIN", {Expect::kAuthLogin0});
    fail_local("4.7.4",
               "credentials are configured, but host " + host_text() +
                   " offers no AUTH mechanism we support (PLAIN, LOGIN)",
               true, true, out);
  }

  void on_auth(Expect kind, const SmtpReply& reply, std::string& out) {
    const SmtpCredentials& c = *settings.credentials;
    if (kind == Expect::kAuthLogin0 && reply.code == 334) {
      return send(out, encode_base64(c.user), {Expect::kAuthLogin1});
    }
    if (kind == Expect::kAuthLogin1 && reply.code == 334) {
      return send(out, encode_base64(c.password), {Expect::kAuthLogin2});
    }
    if ((kind == Expect::kAuthPlain || kind == Expect::kAuthLogin2) && reply.klass() == 2) {
      authenticated = true;
      ready = true;
      return proceed(out);
    }
    // Refused (535), temporary (454), or a challenge where none belongs: deferred, never
    // bounced, and another host may accept us. A 334 leaves the server inside the SASL
    // exchange, where a QUIT would be read as a response: just close.
    fail_connection(from_reply(reply, "AUTH", true), true, reply.code != 334, out);
  }

  // --- transactions ----------------------------------------------------------------------------

  void proceed(std::string& out) {
    while (ready && !closed && !quit_sent && current == kNoTxn && expect.empty()) {
      while (next_queued < txns.size() && txns[next_queued].phase != Txn::Phase::kQueued) {
        ++next_queued;
      }
      if (next_queued < txns.size()) {
        start_transaction(next_queued, out);
        continue;
      }
      if (quit_requested) {
        quit_sent = true;
        send(out, "QUIT", {Expect::kQuit});
      }
      return;
    }
  }

  void start_transaction(std::size_t index, std::string& out) {
    Txn& x = txns[index];
    x.phase = Txn::Phase::kActive;
    current = index;
    const SmtpTransaction& t = x.t;
    const AddressOptions opts{t.smtputf8};

    if (t.smtputf8 && !caps.smtputf8) {
      decide_all(x, local(DeliveryState::kFailed, "5.6.7",
                          "SMTPUTF8 is required, but was not offered by host " + host_text()));
      return txn_done(index, out);
    }
    if (t.body == BodyType::kBinaryMime &&
        !(caps.binarymime && caps.chunking && settings.use_chunking)) {
      decide_all(x, local(DeliveryState::kFailed, "5.6.3",
                          "BINARYMIME is required, but was not offered by host " + host_text()));
      return txn_done(index, out);
    }
    if (caps.size && caps.size_limit > 0 && t.size > caps.size_limit) {
      decide_all(x, local(DeliveryState::kFailed, "5.3.4",
                          "message size " + std::to_string(t.size) + " exceeds size limit " +
                              std::to_string(caps.size_limit) + " of host " + host_text()));
      return txn_done(index, out);
    }

    // The sender, parsed again: the queue has checked it, but a command line is only ever
    // built from what the RFC 5321 parser accepts whole.
    std::string path = "<>";
    if (!t.sender.empty()) {
      const std::string bracketed = "<" + t.sender + ">";
      auto parsed = parse_reverse_path(bracketed, opts);
      if (!parsed || parsed->length != bracketed.size() || has_control(t.sender)) {
        decide_all(x, local(DeliveryState::kFailed, "5.1.7",
                            "sender address cannot be sent: " +
                                (parsed ? std::string("trailing junk") : parsed.error().text())));
        return txn_done(index, out);
      }
      path = parsed->path.to_string();
    }
    x.mail_line = "MAIL FROM:" + path;
    if (caps.size) x.mail_line += " SIZE=" + std::to_string(t.size);
    x.binary = t.body == BodyType::kBinaryMime;
    if (x.binary) {
      x.mail_line += " BODY=BINARYMIME";
    } else if (t.body == BodyType::k8BitMime && caps.eightbitmime) {
      x.mail_line += " BODY=8BITMIME";
    } else if (t.body == BodyType::k7Bit && caps.eightbitmime) {
      x.mail_line += " BODY=7BIT";
    }
    if (t.smtputf8) x.mail_line += " SMTPUTF8";
    if (caps.dsn) {
      if (t.ret == DsnRet::kFull) x.mail_line += " RET=FULL";
      if (t.ret == DsnRet::kHeaders) x.mail_line += " RET=HDRS";
      // RFC 3461 4.4: at most 100 characters.
      const std::string envid = smtp::encode_xtext(t.envid);
      if (!t.envid.empty() && envid.size() <= 100) x.mail_line += " ENVID=" + envid;
    }

    x.rcpt_lines.assign(t.recipients.size(), std::string());
    x.accepted.assign(t.recipients.size(), false);
    for (std::size_t i = 0; i < t.recipients.size(); ++i) {
      const SmtpRecipient& r = t.recipients[i];
      const std::string bracketed = "<" + r.address + ">";
      auto parsed = parse_forward_path(bracketed, opts);
      if (!parsed || parsed->length != bracketed.size() || has_control(r.address)) {
        decide(x, i, local(DeliveryState::kFailed, "5.1.3",
                           "recipient address cannot be sent: " +
                               (parsed ? std::string("trailing junk") : parsed.error().text())));
        continue;
      }
      std::string line = "RCPT TO:" + parsed->path.to_string();
      if (caps.dsn) {
        if (r.notify & kNotifyNever) {
          line += " NOTIFY=NEVER";
        } else if (r.notify != kNotifyNone) {
          std::string n;
          if (r.notify & kNotifySuccess) n += ",SUCCESS";
          if (r.notify & kNotifyFailure) n += ",FAILURE";
          if (r.notify & kNotifyDelay) n += ",DELAY";
          if (!n.empty()) line += " NOTIFY=" + n.substr(1);
        }
        const std::size_t semi = r.orcpt.find(';');
        if (semi != std::string::npos && semi + 1 < r.orcpt.size() &&
            valid_addr_type(std::string_view(r.orcpt).substr(0, semi))) {
          const std::string orcpt =
              r.orcpt.substr(0, semi) + ";" + smtp::encode_xtext(r.orcpt.substr(semi + 1));
          if (orcpt.size() <= 500) line += " ORCPT=" + orcpt;  // RFC 3461 5.4
        }
      }
      x.rcpt_lines[i] = std::move(line);
      x.rcpt_order.push_back(i);
    }
    if (x.rcpt_order.empty()) return txn_done(index, out);
    x.use_bdat = x.binary || (caps.chunking && settings.use_chunking);

    if (need_rset) {
      // On its own, not pipelined: on a reused connection it is the check that the
      // connection still works, before anything is attempted.
      return send(out, "RSET", {Expect::kRset, index});
    }
    send_mail(out);
  }

  void send_mail(std::string& out) {
    if (current == kNoTxn) return;
    Txn& x = txns[current];
    need_rset = true;
    send(out, x.mail_line, {Expect::kMail, current});
    if (!pipelining()) return;
    // RFC 2920 3.1: MAIL, the RCPTs and DATA in one group; BDAT waits for the RCPT replies.
    for (std::size_t i : x.rcpt_order) send(out, x.rcpt_lines[i], {Expect::kRcpt, current, i});
    x.rcpt_sent = x.rcpt_order.size();
    if (!x.use_bdat) send(out, "DATA", {Expect::kData, current});
  }

  void send_next_rcpt(std::size_t index, std::string& out) {
    Txn& x = txns[index];
    const std::size_t i = x.rcpt_order[x.rcpt_sent++];
    send(out, x.rcpt_lines[i], {Expect::kRcpt, index, i});
  }

  void on_mail(std::size_t index, const SmtpReply& reply, std::string& out) {
    Txn& x = txns[index];
    if (reply.klass() == 2) {
      if (!pipelining()) send_next_rcpt(index, out);
      return;
    }
    x.mail_refused = true;
    const SmtpRecipientResult r = from_reply(reply, "MAIL FROM");
    for (std::size_t i : x.rcpt_order) decide(x, i, r);
    // RFC 5321 5.1 and common practice: a 4xx to MAIL is the host's trouble, not the mail's.
    if (reply.klass() == 4) outcome.try_next = true;
    // Pipelined, the RCPT and DATA replies are still to come (503s, ignored).
    if (!pipelining()) txn_done(index, out);
  }

  void on_rcpt(std::size_t index, std::size_t i, const SmtpReply& reply, std::string& out) {
    Txn& x = txns[index];
    ++x.rcpt_replies;
    if (!x.mail_refused) {
      if (reply.klass() == 2) {
        x.accepted[i] = true;
        ++x.accepted_count;
      } else {
        decide(x, i, from_reply(reply, "RCPT TO"));
      }
    }
    const bool last = x.rcpt_replies == x.rcpt_order.size();
    if (!pipelining()) {
      if (!last) return send_next_rcpt(index, out);
      return after_rcpts(index, out);
    }
    if (last && x.use_bdat) after_rcpts(index, out);
  }

  void after_rcpts(std::size_t index, std::string& out) {
    Txn& x = txns[index];
    if (x.mail_refused || x.accepted_count == 0) return txn_done(index, out);
    if (x.use_bdat) {
      x.content_phase = true;
      x.encoder.emplace(x.binary ? SmtpDataEncoder::Mode::kBinary
                                 : SmtpDataEncoder::Mode::kCanonical);
      return;
    }
    send(out, "DATA", {Expect::kData, index});
  }

  void on_data(std::size_t index, const SmtpReply& reply, std::string& out) {
    Txn& x = txns[index];
    if (x.mail_refused || x.accepted_count == 0) {
      if (reply.code == 354) {
        // RFC 2920 3.1: a server that says 354 with nobody to deliver to gets an empty
        // message, so that it is back to reading commands.
        out += ".\r\n";
        expect.push_back({Expect::kLoneDot, index});
        return;
      }
      return txn_done(index, out);
    }
    if (reply.code == 354) {
      x.content_phase = true;
      x.encoder.emplace(SmtpDataEncoder::Mode::kDotStuff);
      return;
    }
    if (reply.klass() != 4 && reply.klass() != 5) {
      // 250 to DATA: the message was never sent, so this is no acceptance, and the server
      // and we no longer agree on what comes next.
      return fail_connection(from_reply(reply, "DATA", true), true, false, out);
    }
    decide_accepted(x, from_reply(reply, "DATA"));
    txn_done(index, out);
  }

  void on_bdat(std::size_t index, bool last, const SmtpReply& reply, std::string& out) {
    Txn& x = txns[index];
    if (x.bdat_outstanding > 0) --x.bdat_outstanding;
    if (!x.data_failed) {
      if (reply.klass() != 2) {
        // RFC 3030 2: the server refuses the rest of the message; stop sending it.
        decide_accepted(x, from_reply(reply, "BDAT"));
        x.data_failed = true;
        x.content_phase = false;
      } else if (last) {
        decide_accepted(x, from_reply(reply, "BDAT"));
      }
    }
    if (x.bdat_outstanding == 0 && (x.end_sent || x.data_failed)) txn_done(index, out);
  }

  void txn_done(std::size_t index, std::string& out) {
    Txn& x = txns[index];
    // Every path above decides each recipient; this is the net under it.
    decide_all(x, local(DeliveryState::kDeferred, "4.5.0", "internal error: no outcome"));
    x.phase = Txn::Phase::kDone;
    x.content_phase = false;
    if (current == index) current = kNoTxn;
    proceed(out);
  }

  bool wants_content() const {
    if (closed || current == kNoTxn) return false;
    const Txn& x = txns[current];
    if (!x.content_phase) return false;
    return !x.use_bdat || pipelining() || x.bdat_outstanding == 0;
  }

  void content(std::string_view piece, bool last, std::string& out) {
    if (!wants_content()) return;
    Txn& x = txns[current];
    x.offset += piece.size();
    if (!x.use_bdat) {
      x.encoder->encode(piece, out);
      if (!last) return;
      x.encoder->finish(out);
      x.content_phase = false;
      x.end_sent = true;
      expect.push_back({Expect::kDataEnd, current});
      return;
    }
    std::string chunk;
    x.encoder->encode(piece, chunk);
    if (last) x.encoder->finish(chunk);
    if (chunk.empty() && !last) return;
    out += "BDAT " + std::to_string(chunk.size()) + (last ? " LAST\r\n" : "\r\n");
    out += chunk;
    expect.push_back({last ? Expect::kBdatLast : Expect::kBdat, current});
    ++x.bdat_outstanding;
    if (last) {
      x.content_phase = false;
      x.end_sent = true;
    }
  }

  SmtpWait waiting_for() const {
    if (closed) return SmtpWait::kNothing;
    if (tls_wanted) return SmtpWait::kStarttls;
    if (wants_content()) return SmtpWait::kContent;
    if (expect.empty()) return SmtpWait::kNothing;
    switch (expect.front().kind) {
      case Expect::kGreeting:
        return SmtpWait::kGreeting;
      case Expect::kEhlo:
      case Expect::kHelo:
        return SmtpWait::kHelo;
      case Expect::kStarttls:
        return SmtpWait::kStarttls;
      case Expect::kAuthPlain:
      case Expect::kAuthLogin0:
      case Expect::kAuthLogin1:
      case Expect::kAuthLogin2:
        return SmtpWait::kAuth;
      case Expect::kRset:
        return SmtpWait::kRset;
      case Expect::kMail:
        return SmtpWait::kMail;
      case Expect::kRcpt:
        return SmtpWait::kRcpt;
      case Expect::kData:
        return SmtpWait::kDataInit;
      case Expect::kDataEnd:
      case Expect::kBdat:
      case Expect::kBdatLast:
      case Expect::kLoneDot:
        return SmtpWait::kDataEnd;
      case Expect::kQuit:
        return SmtpWait::kQuit;
    }
    return SmtpWait::kNothing;
  }

  static const char* wait_text(SmtpWait wait) {
    switch (wait) {
      case SmtpWait::kNothing:
        return "the connection was idle";
      case SmtpWait::kGreeting:
        return "receiving the initial server greeting";
      case SmtpWait::kHelo:
        return "performing the EHLO handshake";
      case SmtpWait::kStarttls:
        return "performing STARTTLS";
      case SmtpWait::kAuth:
        return "performing AUTH";
      case SmtpWait::kRset:
        return "sending RSET";
      case SmtpWait::kMail:
        return "sending MAIL FROM";
      case SmtpWait::kRcpt:
        return "sending RCPT TO";
      case SmtpWait::kDataInit:
        return "sending DATA command";
      case SmtpWait::kContent:
        return "sending message body";
      case SmtpWait::kDataEnd:
        return "sending end of data -- message may be sent more than once";
      case SmtpWait::kQuit:
        return "sending QUIT";
    }
    return "talking";
  }

  void connection_lost(SmtpLoss loss, std::string_view detail) {
    if (closed) return;
    if (quit_sent) {
      // Everything was decided before QUIT; a server that hangs up instead of saying 221
      // changes nothing.
      closed = true;
      return;
    }
    const SmtpWait wait = waiting_for();
    std::string text = loss == SmtpLoss::kTimeout
                           ? "conversation with host " + host_text() + " timed out while "
                           : "lost connection with host " + host_text() + " while ";
    text += wait_text(wait);
    if (!detail.empty()) text += ": " + sanitize(detail);
    // After the end of the message the server may have taken it: trying another host now
    // would risk a second copy (RFC 1047). Everywhere else, the next host gets a chance.
    const bool end_pending =
        current != kNoTxn && txns[current].end_sent && !txns[current].data_failed;
    if (wait == SmtpWait::kRset) outcome.stale = true;
    std::string ignored;
    fail_local("4.4.2", std::move(text), !end_pending, false, ignored);
  }
};

SmtpClientSession::SmtpClientSession(SmtpClientSettings settings)
    : s_(std::make_unique<State>(std::move(settings))) {}

SmtpClientSession::~SmtpClientSession() = default;

std::size_t SmtpClientSession::add_transaction(SmtpTransaction transaction) {
  State::Txn x;
  x.results.resize(transaction.recipients.size());
  x.t = std::move(transaction);
  s_->txns.push_back(std::move(x));
  State::Txn& added = s_->txns.back();
  if (s_->broken || s_->quit_requested || s_->closed) {
    SmtpRecipientResult r = s_->outcome.error;
    if (r.state == DeliveryState::kPending) {
      r = s_->local(DeliveryState::kDeferred, "4.4.2", "the connection is closed");
    }
    s_->decide_all(added, r);
    added.phase = State::Txn::Phase::kDone;
  }
  return s_->txns.size() - 1;
}

void SmtpClientSession::advance(std::string& out) { s_->proceed(out); }

void SmtpClientSession::finish(std::string& out) {
  s_->quit_requested = true;
  s_->proceed(out);
}

void SmtpClientSession::receive(std::string_view input, std::string& out) {
  s_->receive(input, out);
}

bool SmtpClientSession::wants_content() const { return s_->wants_content(); }

std::uint64_t SmtpClientSession::content_offset() const {
  return s_->current == kNoTxn ? 0 : s_->txns[s_->current].offset;
}

void SmtpClientSession::content(std::string_view piece, bool last, std::string& out) {
  s_->content(piece, last, out);
}

void SmtpClientSession::content_failed(const Error& error) {
  if (s_->closed) return;
  // The message cannot be ended: a server given the terminator now would deliver half of it.
  // The caller closes the connection, which makes the server throw the transaction away.
  std::string ignored;
  s_->fail_local(error.is_temporary() ? error.status() : temporary_status(error.status()),
                 "cannot read the message: " + error.text(), false, false, ignored);
}

bool SmtpClientSession::wants_tls() const { return s_->tls_wanted && !s_->closed; }

void SmtpClientSession::tls_started(std::string& out) {
  State& s = *s_;
  if (!s.tls_wanted) return;
  // RFC 3207 4.2: discard all knowledge from before TLS and say EHLO again.
  s.tls_wanted = false;
  s.tls_active = true;
  s.caps = SmtpCapabilities();
  s.in.clear();
  s.tail = 0;
  s.incomplete = false;
  s.send_ehlo(out);
}

void SmtpClientSession::tls_failed(std::string_view reason, std::string& out) {
  State& s = *s_;
  if (!s.tls_wanted) return;
  s.tls_wanted = false;
  const std::string text =
      "TLS handshake with host " + s.host_text() + " failed: " + sanitize(reason);
  if (s.settings.tls == SmtpTlsPolicy::kOpportunistic) {
    s.outcome.retry_without_tls = true;
    return s.fail_local("4.7.5", text, false, false, out);
  }
  s.fail_local("4.7.5", text, true, false, out);
}

void SmtpClientSession::connection_lost(SmtpLoss loss, std::string_view detail) {
  s_->connection_lost(loss, detail);
}

void SmtpClientSession::clear_outcome() { s_->outcome = SmtpConnectionOutcome(); }

SmtpWait SmtpClientSession::waiting_for() const { return s_->waiting_for(); }

bool SmtpClientSession::idle() const {
  const State& s = *s_;
  if (s.closed || s.quit_sent || !s.ready || s.tls_wanted || !s.expect.empty() ||
      s.current != kNoTxn) {
    return false;
  }
  for (std::size_t i = s.next_queued; i < s.txns.size(); ++i) {
    if (s.txns[i].phase != State::Txn::Phase::kDone) return false;
  }
  return true;
}

bool SmtpClientSession::finished() const { return s_->closed; }
bool SmtpClientSession::tls_active() const { return s_->tls_active; }
const SmtpCapabilities& SmtpClientSession::capabilities() const { return s_->caps; }
const SmtpConnectionOutcome& SmtpClientSession::outcome() const { return s_->outcome; }
std::size_t SmtpClientSession::transaction_count() const { return s_->txns.size(); }

bool SmtpClientSession::transaction_done(std::size_t index) const {
  return index < s_->txns.size() && s_->txns[index].phase == State::Txn::Phase::kDone;
}

const std::vector<SmtpRecipientResult>& SmtpClientSession::results(std::size_t index) const {
  return s_->txns.at(index).results;
}

// --- 3. The libevent driver ---------------------------------------------------------------------

namespace smtp_client_detail {

// Output is refilled with message content while below kHighWater, and the write callback comes
// when it has drained to kLowWater: a few hundred KiB in flight per connection at most.
constexpr std::size_t kHighWater = 256 * 1024;
constexpr std::size_t kLowWater = 64 * 1024;
constexpr std::chrono::milliseconds kCacheQuitTime{5000};

timeval to_timeval(std::chrono::milliseconds ms) {
  if (ms.count() < 0) ms = std::chrono::milliseconds(0);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

class Conn;

// Whoever holds a connection gets its events: a delivery while it runs, the cache while it
// is parked.
class ConnOwner {
 public:
  virtual ~ConnOwner() = default;
  virtual void conn_readable(Conn& c) = 0;
  virtual void conn_writable(Conn& c) = 0;
  virtual void conn_event(Conn& c, short what) = 0;
  virtual void conn_timeout(Conn& c) = 0;
};

class Conn {
 public:
  enum class Stage { kConnecting, kPlain, kHandshake, kTls };

  Conn(event_base* base, ConnOwner* o)
      : owner(o), timer(evtimer_new(base, &Conn::on_timer, this)) {}
  ~Conn() { detach(); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  void callbacks() {
    bufferevent_setcb(bev.get(), &Conn::on_read, &Conn::on_write, &Conn::on_event, this);
  }

  void detach() {
    if (bev) {
      bufferevent_setcb(bev.get(), nullptr, nullptr, nullptr, nullptr);
      bufferevent_disable(bev.get(), EV_READ | EV_WRITE);
    }
    if (timer) event_del(timer.get());
  }

  void arm(std::chrono::milliseconds ms) {
    const timeval tv = to_timeval(ms);
    evtimer_add(timer.get(), &tv);
  }
  void disarm() { event_del(timer.get()); }

  void write(const std::string& out) {
    if (!out.empty()) bufferevent_write(bev.get(), out.data(), out.size());
  }

  // Hands everything read to the session, in place. Stops at a 220 to STARTTLS and at the
  // end of the session; whatever is left then is dropped unread (sent before TLS, or after
  // the end).
  void feed(std::string& out) {
    evbuffer* in = bufferevent_get_input(bev.get());
    while (evbuffer_get_length(in) > 0 && !session->finished() && !session->wants_tls()) {
      evbuffer_iovec vec[8];
      const int n = evbuffer_peek(in, -1, nullptr, vec, 8);
      if (n <= 0) break;
      std::size_t used = 0;
      for (int i = 0; i < n && i < 8 && !session->finished() && !session->wants_tls(); ++i) {
        const std::string_view bytes(static_cast<const char*>(vec[i].iov_base), vec[i].iov_len);
        session->receive(bytes, out);
        used += vec[i].iov_len;
      }
      evbuffer_drain(in, used);
    }
    if (session->finished() || session->wants_tls()) evbuffer_drain(in, evbuffer_get_length(in));
  }

  bool output_pending() const {
    return evbuffer_get_length(bufferevent_get_output(bev.get())) > 0;
  }

  ConnOwner* owner;
  Event timer;
  BufferEvent bev;
  std::unique_ptr<SmtpClientSession> session;
  Stage stage = Stage::kConnecting;
  std::string key;      // for the cache
  std::string host;     // the destination's name ("" if it has none)
  std::string address;  // numeric text
  std::uint16_t port = 0;
  std::chrono::steady_clock::time_point opened = std::chrono::steady_clock::now();
  std::size_t uses = 0;  // deliveries served

 private:
  static void on_read(bufferevent*, void* arg) {
    auto* c = static_cast<Conn*>(arg);
    c->owner->conn_readable(*c);
  }
  static void on_write(bufferevent*, void* arg) {
    auto* c = static_cast<Conn*>(arg);
    c->owner->conn_writable(*c);
  }
  static void on_event(bufferevent*, short what, void* arg) {
    auto* c = static_cast<Conn*>(arg);
    c->owner->conn_event(*c, what);
  }
  static void on_timer(evutil_socket_t, short, void* arg) {
    auto* c = static_cast<Conn*>(arg);
    c->owner->conn_timeout(*c);
  }
};

// Connections are freed from a fresh event, never inside one of their own callbacks.
class Graveyard {
 public:
  explicit Graveyard(event_base* base) : event_(evtimer_new(base, &Graveyard::on_reap, this)) {}

  void bury(std::unique_ptr<Conn> c) {
    if (!c) return;
    c->detach();
    dead_.push_back(std::move(c));
    const timeval zero{0, 0};
    evtimer_add(event_.get(), &zero);
  }

 private:
  static void on_reap(evutil_socket_t, short, void* arg) {
    static_cast<Graveyard*>(arg)->dead_.clear();
  }

  Event event_;
  std::vector<std::unique_ptr<Conn>> dead_;
};

socklen_t sockaddr_length(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) return sizeof(sockaddr_in);
  if (ss.ss_family == AF_INET6) return sizeof(sockaddr_in6);
  return 0;
}

bool is_ip_literal(const std::string& name) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

std::string cache_key(const SmtpDestination& d, const SmtpClientSettings& s) {
  std::string key = lowercase_domain(d.name);
  key += '|';
  key += std::to_string(d.port);
  key += '|';
  key += std::to_string(static_cast<int>(s.tls));
  key += '|';
  key += s.credentials ? s.credentials->user : std::string();
  key += '|';
  key += s.helo_name;
  return key;
}

const char* state_word(DeliveryState state) {
  switch (state) {
    case DeliveryState::kDelivered:
      return "sent";
    case DeliveryState::kFailed:
      return "bounced";
    case DeliveryState::kDeferred:
      return "deferred";
    case DeliveryState::kPending:
      break;
  }
  return "pending";
}

}  // namespace smtp_client_detail

using smtp_client_detail::Conn;

struct SmtpConnectionCache::Impl final : smtp_client_detail::ConnOwner {
  Impl(event_base* b, std::chrono::milliseconds idle, std::chrono::milliseconds age,
       std::size_t uses, std::size_t connections)
      : base(b), idle_time(idle), max_age(age), max_uses(uses), max_connections(connections),
        graveyard(b) {}

  // Takes c if it may be kept: idle, young enough, not used up, room left.
  bool park(std::unique_ptr<Conn>& c) {
    if (!c || !c->session || !c->session->idle() || parked.size() >= max_connections) return false;
    const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - c->opened);
    if (age >= max_age || c->uses >= max_uses) return false;
    c->owner = this;
    c->arm(std::min(idle_time, max_age - age));
    parked.push_back(std::move(c));
    return true;
  }

  std::unique_ptr<Conn> take(const std::string& key) {
    for (auto it = parked.begin(); it != parked.end(); ++it) {
      if ((*it)->key != key) continue;
      std::unique_ptr<Conn> c = std::move(*it);
      parked.erase(it);
      c->disarm();
      return c;
    }
    return nullptr;
  }

  std::unique_ptr<Conn> remove(Conn& c) {
    for (auto* list : {&parked, &quitting}) {
      for (auto it = list->begin(); it != list->end(); ++it) {
        if (it->get() != &c) continue;
        std::unique_ptr<Conn> owned = std::move(*it);
        list->erase(it);
        return owned;
      }
    }
    return nullptr;
  }

  bool is_quitting(const Conn& c) const {
    for (const auto& q : quitting) {
      if (q.get() == &c) return true;
    }
    return false;
  }

  void conn_readable(Conn& c) override {
    if (!is_quitting(c)) {
      // A parked connection has nothing to hear: a server that speaks now is closing it
      // (421 on its idle timeout) or is confused. Either way it is not reused.
      graveyard.bury(remove(c));
      return;
    }
    std::string out;
    c.feed(out);
    c.write(out);
    if (c.session->finished()) graveyard.bury(remove(c));
  }

  void conn_writable(Conn&) override {}

  void conn_event(Conn& c, short) override { graveyard.bury(remove(c)); }

  void conn_timeout(Conn& c) override {
    if (is_quitting(c)) {
      graveyard.bury(remove(c));
      return;
    }
    // Idle for long enough: say QUIT (RFC 5321 4.1.1.10), wait a little for the 221.
    std::unique_ptr<Conn> owned = remove(c);
    std::string out;
    owned->session->finish(out);
    owned->write(out);
    owned->arm(smtp_client_detail::kCacheQuitTime);
    quitting.push_back(std::move(owned));
  }

  event_base* base;
  std::chrono::milliseconds idle_time;
  std::chrono::milliseconds max_age;
  std::size_t max_uses;
  std::size_t max_connections;
  smtp_client_detail::Graveyard graveyard;
  std::vector<std::unique_ptr<Conn>> parked;
  std::vector<std::unique_ptr<Conn>> quitting;
};

SmtpConnectionCache::SmtpConnectionCache(event_base* base, std::chrono::milliseconds idle_time,
                                         std::chrono::milliseconds max_age, std::size_t max_uses,
                                         std::size_t max_connections)
    : impl_(std::make_unique<Impl>(base, idle_time, max_age, max_uses, max_connections)) {}

SmtpConnectionCache::~SmtpConnectionCache() = default;

std::size_t SmtpConnectionCache::size() const { return impl_->parked.size(); }

struct SmtpDelivery::Impl final : smtp_client_detail::ConnOwner {
  Impl(event_base* b, SSL_CTX* t, SmtpDeliveryRequest r, Done d, SmtpConnectionCache* c)
      : base(b),
        tls(t),
        req(std::move(r)),
        done(std::move(d)),
        cache(c),
        graveyard(b),
        done_event(evtimer_new(b, &Impl::on_done, this)) {}

  ~Impl() override {
    if (conn) conn->detach();
  }

  struct Batch {
    std::size_t txn;                      // in the current session
    std::vector<std::size_t> recipients;  // indices into req.transaction.recipients
    bool looked_at = false;               // for the 452 retry
  };

  event_base* base;
  SSL_CTX* tls;
  SmtpDeliveryRequest req;
  Done done;
  SmtpConnectionCache* cache;
  smtp_client_detail::Graveyard graveyard;
  Event done_event;
  std::unique_ptr<Conn> conn;
  std::vector<Batch> batches;
  std::vector<SmtpRecipientResult> results;
  SmtpRecipientResult last_error;
  SmtpDeliveryReport report;
  std::string read_buffer;
  std::size_t host = 0;
  std::size_t addr = 0;
  bool plaintext = false;   // the current address again, without STARTTLS
  bool skip_cache = false;  // the next attempt connects afresh
  int stale_retries = 0;
  bool started = false;
  bool completed = false;
  bool quitting = false;

  SmtpRecipientResult local_error(std::string_view status, std::string text) const {
    SmtpRecipientResult r;
    r.state = DeliveryState::kDeferred;
    r.status = std::string(status);
    r.reply = std::move(text);
    return r;
  }

  void start() {
    if (started) return;
    started = true;
    req.transaction.size = req.source.length;
    results.assign(req.transaction.recipients.size(), SmtpRecipientResult());
    last_error = local_error("4.4.1", "no destination host could be reached");
    if (req.destinations.empty()) {
      last_error = local_error("4.4.4", "no destination host for the recipients");
      return complete();
    }
    if (req.settings.tls != SmtpTlsPolicy::kNone &&
        req.settings.tls != SmtpTlsPolicy::kOpportunistic && tls == nullptr) {
      last_error =
          local_error("4.3.5", "TLS is required, but no TLS client context is configured");
      return complete();
    }
    if (req.source.fd < 0) {
      last_error = local_error("4.3.0", "no message to send");
      return complete();
    }
    next_attempt();
  }

  bool all_final() const {
    for (const SmtpRecipientResult& r : results) {
      if (r.state != DeliveryState::kDelivered && r.state != DeliveryState::kFailed) return false;
    }
    return true;
  }

  void next_attempt() {
    while (!completed) {
      if (all_final() || host >= req.destinations.size()) return complete();
      const SmtpDestination& d = req.destinations[host];
      if (addr >= d.addresses.size()) {
        ++host;
        addr = 0;
        plaintext = false;
        continue;
      }
      if (cache != nullptr && !skip_cache && !plaintext) {
        const std::string key = smtp_client_detail::cache_key(d, req.settings);
        if (std::unique_ptr<Conn> c = cache->impl_->take(key)) return adopt(std::move(c));
      }
      skip_cache = false;
      if (connect(d, d.addresses[addr])) return;
      ++addr;
      plaintext = false;
    }
  }

  SmtpRecipientResult connect_error(const SmtpDestination& d, const std::string& address,
                                    const std::string& what) const {
    SmtpRecipientResult r = local_error(
        "4.4.1", "connect to " + (d.name.empty() ? address : d.name + "[" + address + "]") +
                     ":" + std::to_string(d.port) + ": " + what);
    return r;
  }

  bool connect(const SmtpDestination& d, const sockaddr_storage& target) {
    sockaddr_storage ss = target;
    const socklen_t len = smtp_client_detail::sockaddr_length(ss);
    if (len == 0) {
      last_error = connect_error(d, "?", "unsupported address family");
      return false;
    }
    if (ss.ss_family == AF_INET) {
      reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(d.port);
    } else {
      reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(d.port);
    }
    const std::string address = address_text(reinterpret_cast<const sockaddr*>(&ss));
    const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_error = connect_error(d, address, std::strerror(errno));
      return false;
    }
    // Commands and replies are small and each one is waited for: Nagle would hold every
    // pipelined group until the server's delayed ACK.
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bufferevent* bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == nullptr) {
      ::close(fd);
      last_error = connect_error(d, address, "cannot allocate a bufferevent");
      return false;
    }
    conn = std::make_unique<Conn>(base, this);
    conn->bev.reset(bev);
    conn->host = d.name;
    conn->address = address;
    conn->port = d.port;
    conn->key = smtp_client_detail::cache_key(d, req.settings);
    conn->stage = Conn::Stage::kConnecting;
    conn->callbacks();
    conn->arm(req.timeouts.connect);
    if (bufferevent_socket_connect(bev, reinterpret_cast<sockaddr*>(&ss), static_cast<int>(len)) !=
        0) {
      last_error = connect_error(d, address, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
      graveyard.bury(std::move(conn));
      return false;
    }
    return true;
  }

  void connected() {
    conn->stage = Conn::Stage::kPlain;
    conn->disarm();
    SmtpClientSettings s = req.settings;
    s.remote_host = conn->host.empty() ? conn->address : conn->host;
    s.remote_address = conn->address;
    s.tls_available = tls != nullptr;
    if (plaintext) s.tls = SmtpTlsPolicy::kNone;
    conn->session = std::make_unique<SmtpClientSession>(std::move(s));
    conn->uses = 1;
    log_debug(req.log_id, "connected to %s[%s]:%u", printable(conn->host).c_str(),
              conn->address.c_str(), static_cast<unsigned>(conn->port));
    batches.clear();
    add_open_recipients();
    bufferevent_setwatermark(conn->bev.get(), EV_WRITE, smtp_client_detail::kLowWater, 0);
    bufferevent_enable(conn->bev.get(), EV_READ | EV_WRITE);
    arm_for_wait();
  }

  void adopt(std::unique_ptr<Conn> c) {
    conn = std::move(c);
    conn->owner = this;
    ++conn->uses;
    log_debug(req.log_id, "reusing the connection to %s[%s]:%u", printable(conn->host).c_str(),
              conn->address.c_str(), static_cast<unsigned>(conn->port));
    batches.clear();
    conn->session->clear_outcome();
    add_open_recipients();
    std::string out;
    conn->session->advance(out);
    after_io(out);
  }

  void add_open_recipients() {
    std::vector<std::size_t> open;
    for (std::size_t i = 0; i < results.size(); ++i) {
      if (results[i].state != DeliveryState::kDelivered &&
          results[i].state != DeliveryState::kFailed) {
        open.push_back(i);
      }
    }
    add_batches(open);
  }

  void add_batches(const std::vector<std::size_t>& recipients) {
    const std::size_t per = std::max<std::size_t>(1, req.max_recipients);
    for (std::size_t first = 0; first < recipients.size(); first += per) {
      Batch b;
      SmtpTransaction t;
      const SmtpTransaction& m = req.transaction;
      t.sender = m.sender;
      t.body = m.body;
      t.smtputf8 = m.smtputf8;
      t.ret = m.ret;
      t.envid = m.envid;
      t.size = m.size;
      for (std::size_t k = first; k < recipients.size() && k < first + per; ++k) {
        b.recipients.push_back(recipients[k]);
        t.recipients.push_back(m.recipients[recipients[k]]);
      }
      b.txn = conn->session->add_transaction(std::move(t));
      batches.push_back(std::move(b));
    }
  }

  void merge() {
    if (!conn || !conn->session) return;
    for (const Batch& b : batches) {
      const auto& rs = conn->session->results(b.txn);
      for (std::size_t k = 0; k < b.recipients.size() && k < rs.size(); ++k) {
        if (rs[k].state != DeliveryState::kPending) results[b.recipients[k]] = rs[k];
      }
    }
  }

  void arm_for_wait() {
    const SmtpClientTimeouts& t = req.timeouts;
    std::chrono::milliseconds ms{0};
    switch (conn->session->waiting_for()) {
      case SmtpWait::kNothing:
        conn->disarm();
        return;
      case SmtpWait::kGreeting:
        ms = t.greeting;
        break;
      case SmtpWait::kHelo:
        ms = t.helo;
        break;
      case SmtpWait::kStarttls:
        ms = t.starttls;
        break;
      case SmtpWait::kAuth:
        ms = t.auth;
        break;
      case SmtpWait::kRset:
        ms = t.rset;
        break;
      case SmtpWait::kMail:
        ms = t.mail;
        break;
      case SmtpWait::kRcpt:
        ms = t.rcpt;
        break;
      case SmtpWait::kDataInit:
        ms = t.data_init;
        break;
      case SmtpWait::kContent:
        ms = t.data_block;
        break;
      case SmtpWait::kDataEnd:
        ms = t.data_term;
        break;
      case SmtpWait::kQuit:
        ms = t.quit;
        break;
    }
    conn->arm(ms);
  }

  // Everything that can follow new input or drained output.
  void after_io(std::string& out) {
    if (!conn) return;
    conn->write(out);
    if (conn->session->wants_tls()) return start_tls();
    pump();
    if (conn->session->finished()) return close_connection();
    if (conn->session->idle() && !quitting) return transactions_done();
    arm_for_wait();
  }

  // Reads the next pieces of the message while there is room in the output buffer.
  void pump() {
    evbuffer* output = bufferevent_get_output(conn->bev.get());
    while (conn->session->wants_content() &&
           evbuffer_get_length(output) < smtp_client_detail::kHighWater) {
      const std::uint64_t done_octets = conn->session->content_offset();
      const std::uint64_t left =
          req.source.length > done_octets ? req.source.length - done_octets : 0;
      const std::size_t n = static_cast<std::size_t>(
          std::min<std::uint64_t>(std::max<std::size_t>(req.read_chunk, 1), left));
      read_buffer.resize(n);
      std::size_t got = 0;
      while (got < n) {
        const ssize_t r = ::pread(req.source.fd, read_buffer.data() + got, n - got,
                                  static_cast<off_t>(req.source.offset + done_octets + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
          conn->session->content_failed(Error::from_errno(EX_IOERR, "queue file", errno));
          return;
        }
        if (r == 0) {
          conn->session->content_failed(
              Error::temporary(EX_IOERR, "4.3.0", "queue file ends before the message does"));
          return;
        }
        got += static_cast<std::size_t>(r);
      }
      std::string out;
      const bool last = done_octets + n >= req.source.length;
      conn->session->content(std::string_view(read_buffer.data(), n), last, out);
      conn->write(out);
    }
  }

  void transactions_done() {
    merge();
    // RFC 5321 4.5.3.1.10: recipients refused with 452 ("too many recipients") go in a
    // further transaction, as long as each round gets somebody delivered.
    std::vector<std::size_t> again;
    for (Batch& b : batches) {
      if (b.looked_at) continue;
      b.looked_at = true;
      const auto& rs = conn->session->results(b.txn);
      bool progress = false;
      for (const auto& r : rs) progress = progress || r.state == DeliveryState::kDelivered;
      if (!progress) continue;
      for (std::size_t k = 0; k < rs.size(); ++k) {
        if (rs[k].state == DeliveryState::kDeferred && rs[k].code == 452) {
          again.push_back(b.recipients[k]);
        }
      }
    }
    std::string out;
    if (!again.empty()) {
      add_batches(again);
      conn->session->advance(out);
      return after_io(out);
    }
    if (cache != nullptr && conn->session->outcome().error.state == DeliveryState::kPending &&
        cache->impl_->park(conn)) {
      return complete();
    }
    quitting = true;
    conn->session->finish(out);
    after_io(out);
  }

  void close_connection() {
    if (!conn) return;
    merge();
    const SmtpConnectionOutcome outcome = conn->session->outcome();
    graveyard.bury(std::move(conn));
    batches.clear();
    quitting = false;
    if (outcome.error.state != DeliveryState::kPending) last_error = outcome.error;
    if (outcome.stale && stale_retries < 1) {
      ++stale_retries;
      skip_cache = true;
      return next_attempt();
    }
    if (outcome.retry_without_tls && !plaintext) {
      plaintext = true;
      return next_attempt();
    }
    if (outcome.try_next || outcome.stale || outcome.retry_without_tls) {
      ++addr;
      plaintext = false;
      return next_attempt();
    }
    complete();
  }

  void start_tls() {
    evbuffer* in = bufferevent_get_input(conn->bev.get());
    evbuffer_drain(in, evbuffer_get_length(in));  // sent in the clear after the 220: unread
    SSL* ssl = SSL_new(tls);
    std::string out;
    if (ssl == nullptr) {
      conn->session->tls_failed("SSL_new: " + tls_error_text(), out);
      return after_io(out);
    }
    const std::string& name = conn->host;
    const bool literal = name.empty() || smtp_client_detail::is_ip_literal(name);
    if (!literal) SSL_set_tlsext_host_name(ssl, name.c_str());
    if (req.settings.tls == SmtpTlsPolicy::kRequireVerified) {
      SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
      if (literal) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
                                      name.empty() ? conn->address.c_str() : name.c_str());
      } else {
        SSL_set1_host(ssl, name.c_str());
      }
    }
    bufferevent* filter = bufferevent_openssl_filter_new(base, conn->bev.get(), ssl,
                                                         BUFFEREVENT_SSL_CONNECTING,
                                                         BEV_OPT_CLOSE_ON_FREE);
    if (filter == nullptr) {
      SSL_free(ssl);
      conn->session->tls_failed("cannot set up TLS: " + tls_error_text(), out);
      return after_io(out);
    }
    conn->bev.release();  // owned by the filter now
    conn->bev.reset(filter);
    bufferevent_openssl_set_allow_dirty_shutdown(filter, 1);
    conn->stage = Conn::Stage::kHandshake;
    conn->callbacks();
    bufferevent_setwatermark(filter, EV_WRITE, smtp_client_detail::kLowWater, 0);
    bufferevent_enable(filter, EV_READ | EV_WRITE);
    conn->arm(req.timeouts.starttls);
  }

  std::string handshake_error() {
    std::string text;
    SSL* ssl = bufferevent_openssl_get_ssl(conn->bev.get());
    if (ssl != nullptr && req.settings.tls == SmtpTlsPolicy::kRequireVerified) {
      const long v = SSL_get_verify_result(ssl);
      if (v != X509_V_OK) {
        text = std::string("server certificate not verified: ") +
               X509_verify_cert_error_string(v);
      }
    }
    unsigned long e = 0;
    while ((e = bufferevent_get_openssl_error(conn->bev.get())) != 0) {
      if (ERR_GET_LIB(e) == 0) continue;  // libevent's own errno entries: no text
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      if (!text.empty()) text += "; ";
      text += buf;
    }
    ERR_clear_error();
    return text.empty() ? std::string("connection closed during the handshake") : text;
  }

  void conn_readable(Conn& c) override {
    if (c.stage != Conn::Stage::kPlain && c.stage != Conn::Stage::kTls) return;
    std::string out;
    c.feed(out);
    after_io(out);
  }

  void conn_writable(Conn& c) override {
    if (c.stage != Conn::Stage::kPlain && c.stage != Conn::Stage::kTls) return;
    std::string out;
    after_io(out);
  }

  void conn_event(Conn& c, short what) override {
    switch (c.stage) {
      case Conn::Stage::kConnecting: {
        if (what & BEV_EVENT_CONNECTED) return connected();
        int err = EVUTIL_SOCKET_ERROR();
        int so_error = 0;
        socklen_t len = sizeof so_error;
        const evutil_socket_t fd = bufferevent_getfd(c.bev.get());
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) == 0 && so_error != 0) {
          err = so_error;
        }
        const SmtpDestination& d = req.destinations[host];
        last_error =
            connect_error(d, c.address, err != 0 ? std::strerror(err) : "connection failed");
        graveyard.bury(std::move(conn));
        ++addr;
        plaintext = false;
        return next_attempt();
      }
      case Conn::Stage::kHandshake: {
        std::string out;
        if (what & BEV_EVENT_CONNECTED) {
          c.stage = Conn::Stage::kTls;
          SSL* ssl = bufferevent_openssl_get_ssl(c.bev.get());
          log_debug(req.log_id, "TLS with %s[%s]: %s", printable(c.host).c_str(),
                    c.address.c_str(), tls_description(ssl).c_str());
          c.session->tls_started(out);
        } else {
          c.session->tls_failed(handshake_error(), out);
        }
        return after_io(out);
      }
      case Conn::Stage::kPlain:
      case Conn::Stage::kTls:
        break;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) return;
    std::string out;
    c.feed(out);  // whatever arrived with the close
    if (!c.session->finished()) {
      std::string detail;
      if (what & BEV_EVENT_ERROR) {
        const int err = EVUTIL_SOCKET_ERROR();
        detail = err != 0 ? std::strerror(err) : std::string();
        if (c.stage == Conn::Stage::kTls) {
          const std::string tls_text = handshake_error();
          if (detail.empty()) detail = tls_text;
        }
      }
      c.session->connection_lost((what & BEV_EVENT_ERROR) ? SmtpLoss::kError : SmtpLoss::kClosed,
                                 detail);
    }
    close_connection();
  }

  void conn_timeout(Conn& c) override {
    switch (c.stage) {
      case Conn::Stage::kConnecting: {
        last_error = connect_error(req.destinations[host], c.address, "timed out");
        graveyard.bury(std::move(conn));
        ++addr;
        plaintext = false;
        return next_attempt();
      }
      case Conn::Stage::kHandshake: {
        std::string out;
        c.session->tls_failed("timed out", out);
        return after_io(out);
      }
      case Conn::Stage::kPlain:
      case Conn::Stage::kTls:
        c.session->connection_lost(SmtpLoss::kTimeout, "");
        return close_connection();
    }
  }

  void complete() {
    if (completed) return;
    completed = true;
    if (conn) graveyard.bury(std::move(conn));
    for (std::size_t i = 0; i < results.size(); ++i) {
      SmtpRecipientResult& r = results[i];
      if (r.state == DeliveryState::kPending) r = last_error;
      std::string relay = "none";
      if (!r.remote_host.empty()) {
        relay = r.remote_host;
        if (!r.remote_address.empty() && r.remote_address != r.remote_host) {
          relay += "[" + r.remote_address + "]";
        }
      }
      log_info(req.log_id, "to=<%s> relay=%s status=%s dsn=%s (%s)",
               printable(req.transaction.recipients[i].address).c_str(),
               printable(relay).c_str(), smtp_client_detail::state_word(r.state),
               printable(r.status, 16).c_str(), printable(r.summary(), 512).c_str());
    }
    report.recipients = std::move(results);
    const timeval zero{0, 0};
    evtimer_add(done_event.get(), &zero);
  }

  static void on_done(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Impl*>(arg);
    Done d = std::move(self->done);
    SmtpDeliveryReport r = std::move(self->report);
    if (d) d(std::move(r));  // may destroy *self: nothing after this
  }
};

SmtpDelivery::SmtpDelivery(event_base* base, SSL_CTX* tls, SmtpDeliveryRequest request, Done done,
                           SmtpConnectionCache* cache)
    : impl_(std::make_unique<Impl>(base, tls, std::move(request), std::move(done), cache)) {}

SmtpDelivery::~SmtpDelivery() = default;

void SmtpDelivery::start() { impl_->start(); }

}  // namespace mailwright::mta
