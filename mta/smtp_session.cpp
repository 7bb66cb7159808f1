#include "mta/smtp_session.h"

#include <sysexits.h>

#include <cinttypes>
#include <cstdio>
#include <optional>
#include <vector>

#include "libmail/ascii.h"
#include "libmail/base64.h"
#include "libmail/line_reader.h"
#include "libmail/rfc5322.h"
#include "mta/smtp_command.h"
#include "mta/smtp_data.h"

namespace mailwright::smtp {
namespace {

// A command line, CRLF included: RFC 4954 4 lets an AUTH initial response make it 12288.
constexpr std::size_t kMaxCommandLine = 12288 + 2;
// Message content is handed to the host in pieces of about this size.
constexpr std::size_t kWriteChunk = 64 * 1024;
// Longest SASL field accepted (user names and passwords).
constexpr std::size_t kSaslField = 1024;

mta::BodyType to_queue_body(BodyType body) {
  switch (body) {
    case BodyType::k7Bit:
      return mta::BodyType::k7Bit;
    case BodyType::k8BitMime:
      return mta::BodyType::k8BitMime;
    case BodyType::kBinaryMime:
      return mta::BodyType::kBinaryMime;
    case BodyType::kUnspecified:
      break;
  }
  return mta::BodyType::kUnspecified;
}

unsigned to_queue_notify(unsigned notify) {
  unsigned out = mta::kNotifyNone;
  if (notify & kNotifyNever) out |= mta::kNotifyNever;
  if (notify & kNotifySuccess) out |= mta::kNotifySuccess;
  if (notify & kNotifyFailure) out |= mta::kNotifyFailure;
  if (notify & kNotifyDelay) out |= mta::kNotifyDelay;
  return out;
}

std::string address_literal(const std::string& address) {
  if (address.empty()) return "local";
  if (address.find(':') != std::string::npos) return "[IPv6:" + address + "]";
  return "[" + address + "]";
}

}  // namespace

std::string format_received(const ReceivedInfo& info) {
  std::string out = "Received: from " + (info.helo.empty() ? std::string("unknown") : info.helo);
  out += " (" + address_literal(info.client_address) + ")\r\n\tby " + info.hostname +
         " (Mailwright) with " + info.protocol + " id " + info.queue_id;
  if (!info.tls_protocol.empty()) {
    out += "\r\n\t(using " + info.tls_protocol + " with cipher " + info.tls_cipher + ")";
  }
  if (!info.recipient.empty()) out += "\r\n\tfor <" + info.recipient + ">";
  out += "; " + format_rfc5322_date(static_cast<std::time_t>(info.when)) + "\r\n";
  return out;
}

struct Session::State {
  enum class Phase {
    kCommand,
    kData,         // reading DATA content
    kBdat,         // reading a BDAT chunk
    kBdatDiscard,  // reading a refused BDAT chunk to throw it away
    kCommitting,   // waiting for commit_result
    kSasl,         // waiting for the client's next SASL line
    kAuthCheck,    // waiting for auth_result
    kTls,          // waiting for tls_started
    kClosed,
  };

  State(SessionHost& h, SessionPolicy p) : host(h), policy(std::move(p)) {}

  SessionHost& host;
  SessionPolicy policy;
  Phase phase = Phase::kCommand;
  std::string input;
  std::size_t pos = 0;
  bool skipping_line = false;
  bool in_run = false;
  std::size_t errors = 0;

  // Greeting state.
  bool greeted = false;
  bool esmtp = false;
  std::string helo;
  std::string tls_protocol;
  std::string tls_cipher;
  std::string auth_user;

  // SASL exchange.
  bool sasl_login = false;  // LOGIN (else PLAIN)
  int sasl_step = 0;
  std::string sasl_user;

  // Transaction.
  bool mail_given = false;
  mta::Envelope envelope;
  bool message_open = false;
  std::optional<Status> write_error;
  std::optional<DataReader> data;
  std::optional<BdatReader> bdat;
  bool bdat_failed = false;  // a refused BDAT: later chunks are discarded until LAST
  std::uint64_t discard_left = 0;
  std::string deferred_reply;  // the answer to a discarded BDAT, sent after its octets
  std::string content;

  bool relay_allowed() const { return policy.relay_network || !auth_user.empty(); }

  std::string protocol() const {
    if (!esmtp) return "SMTP";
    std::string p = envelope.smtputf8 ? "UTF8SMTP" : "ESMTP";
    if (!tls_protocol.empty()) p += "S";
    if (!auth_user.empty()) p += "A";
    return p;
  }

  void reply(std::string& out, int code, std::string_view status, std::string_view text) {
    char head[8];
    std::snprintf(head, sizeof head, "%03d ", code);
    out += head;
    if (!status.empty()) {
      out += status;
      out += ' ';
    }
    out += text;
    out += "\r\n";
  }

  void reply(std::string& out, const Error& error, int code) {
    reply(out, code, error.status(), error.text());
  }

  // A refused command: counts towards max_errors.
  void fail(std::string& out, int code, std::string_view status, std::string_view text) {
    reply(out, code, status, text);
    count_error(out);
  }

  void count_error(std::string& out) {
    if (++errors >= policy.max_errors && phase != Phase::kClosed) {
      reply(out, 421, "4.7.0", policy.hostname + " Too many errors; closing the connection");
      close();
    }
  }

  void close() {
    reset_transaction();
    phase = Phase::kClosed;
  }

  void reset_transaction() {
    if (message_open) host.abort_message();
    message_open = false;
    mail_given = false;
    envelope = mta::Envelope();
    write_error.reset();
    data.reset();
    bdat.reset();
    bdat_failed = false;
    content.clear();
  }

  bool waiting() const {
    return phase == Phase::kCommitting || phase == Phase::kAuthCheck || phase == Phase::kTls;
  }

  // --- the input loop ----------------------------------------------------------------------

  void run(std::string& out) {
    if (in_run) return;
    in_run = true;
    while (phase != Phase::kClosed && !waiting() && step(out)) {
    }
    if (pos > 0) {
      input.erase(0, pos);
      pos = 0;
    }
    in_run = false;
  }

  // One unit of work; false when more input is needed.
  bool step(std::string& out) {
    std::string_view rest = std::string_view(input).substr(pos);
    switch (phase) {
      case Phase::kData: {
        Feed f = data->feed(rest, content);
        pos += f.consumed;
        flush_content(false);
        if (f.done) finish_message(out, data->outcome());
        return f.done;
      }
      case Phase::kBdat: {
        Feed f = bdat->feed(rest, content);
        pos += f.consumed;
        flush_content(false);
        if (!f.done) return false;
        if (bdat->message_done()) {
          finish_message(out, bdat->outcome());
        } else {
          phase = Phase::kCommand;
          char text[64];
          std::snprintf(text, sizeof text, "%" PRIu64 " octets received",
                        bdat->outcome().octets);
          reply(out, 250, "2.0.0", text);
        }
        return true;
      }
      case Phase::kBdatDiscard: {
        const std::size_t n = static_cast<std::size_t>(
            std::min<std::uint64_t>(discard_left, rest.size()));
        pos += n;
        discard_left -= n;
        if (discard_left > 0) return false;
        phase = Phase::kCommand;
        out += deferred_reply;
        deferred_reply.clear();
        count_error(out);
        return true;
      }
      case Phase::kCommand:
      case Phase::kSasl:
        return command_step(rest, out);
      default:
        return false;
    }
  }

  bool command_step(std::string_view rest, std::string& out) {
    if (skipping_line) {
      const std::size_t lf = rest.find('\n');
      if (lf == std::string_view::npos) {
        pos += rest.size();
        return false;
      }
      pos += lf + 1;
      skipping_line = false;
      return true;
    }
    const Line line = next_line(rest, kMaxCommandLine);
    switch (line.ending) {
      case LineEnding::kIncomplete:
      case LineEnding::kEof:
        return false;
      case LineEnding::kTooLong:
        pos += line.text.size();
        skipping_line = true;
        if (phase == Phase::kSasl) phase = Phase::kCommand;
        fail(out, 500, "5.5.2", "Line too long");
        return true;
      case LineEnding::kLf:
        pos += line.consumed;
        if (phase == Phase::kSasl) phase = Phase::kCommand;
        fail(out, 500, "5.5.2", "Bare LF received; SMTP lines end with CRLF");
        return true;
      case LineEnding::kCrlf:
        pos += line.consumed;
        if (phase == Phase::kSasl) {
          sasl_line(line.text, out);
        } else {
          command(line.text, out);
        }
        return true;
    }
    return false;
  }

  // --- commands ----------------------------------------------------------------------------

  void command(std::string_view line, std::string& out) {
    SmtpParseOptions options;
    options.lenient_greeting = true;
    options.utf8_recipients = mail_given && envelope.smtputf8;
    auto parsed = parse_smtp_command(line, options);
    if (!parsed) {
      fail(out, smtp_reply_code(parsed.error()), parsed.error().status(), parsed.error().text());
      return;
    }
    SmtpCommand& cmd = *parsed;
    switch (cmd.verb) {
      case SmtpVerb::kEhlo:
      case SmtpVerb::kHelo:
        return greet(cmd, out);
      case SmtpVerb::kMail:
        return mail(cmd, out);
      case SmtpVerb::kRcpt:
        return rcpt(cmd, out);
      case SmtpVerb::kData:
        return start_data(out);
      case SmtpVerb::kBdat:
        return start_bdat(cmd);
      case SmtpVerb::kRset:
        reset_transaction();
        return reply(out, 250, "2.0.0", "Ok");
      case SmtpVerb::kNoop:
        return reply(out, 250, "2.0.0", "Ok");
      case SmtpVerb::kQuit:
        reply(out, 221, "2.0.0", policy.hostname + " closing connection");
        return close();
      case SmtpVerb::kVrfy:
        return vrfy(cmd, out);
      case SmtpVerb::kHelp:
        return reply(out, 214, "2.0.0",
                     "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP "
                     "STARTTLS AUTH; see RFC 5321");
      case SmtpVerb::kStarttls:
        return starttls(out);
      case SmtpVerb::kAuth:
        return auth(cmd, out);
    }
  }

  void greet(const SmtpCommand& cmd, std::string& out) {
    reset_transaction();
    greeted = true;
    esmtp = cmd.verb == SmtpVerb::kEhlo;
    helo = cmd.domain;
    if (!esmtp) {
      reply(out, 250, "", policy.hostname);
      return;
    }
    std::vector<std::string> lines{policy.hostname, "PIPELINING"};
    lines.push_back("SIZE " + std::to_string(policy.max_message_size));
    lines.push_back("8BITMIME");
    lines.push_back("ENHANCEDSTATUSCODES");
    if (policy.smtputf8) lines.push_back("SMTPUTF8");
    lines.push_back("DSN");
    lines.push_back("CHUNKING");
    if (policy.tls_available && tls_protocol.empty()) lines.push_back("STARTTLS");
    if (policy.auth_available && !tls_protocol.empty()) lines.push_back("AUTH PLAIN LOGIN");
    for (std::size_t i = 0; i < lines.size(); ++i) {
      out += i + 1 < lines.size() ? "250-" : "250 ";
      out += lines[i];
      out += "\r\n";
    }
  }

  void mail(const SmtpCommand& cmd, std::string& out) {
    if (!greeted) return fail(out, 503, "5.5.1", "Send HELO or EHLO first");
    if (mail_given) return fail(out, 503, "5.5.1", "Nested MAIL command");
    if (policy.submission && auth_user.empty()) {
      return fail(out, 530, "5.7.0", "Authentication required");
    }
    const MailParameters& p = cmd.mail;
    if (p.smtputf8 && !policy.smtputf8) {
      return fail(out, 555, "5.5.4", "SMTPUTF8 is not offered here");
    }
    if (p.body == BodyType::kBinaryMime) {
      return fail(out, 555, "5.5.4", "BODY=BINARYMIME is not offered here");
    }
    if (p.size && *p.size > policy.max_message_size) {
      return fail(out, 552, "5.3.4", "Message size exceeds fixed limit");
    }
    if (!host.storage_available(p.size.value_or(0))) {
      return reply(out, 452, "4.3.1", "Insufficient system storage; try again later");
    }
    mail_given = true;
    envelope = mta::Envelope();
    envelope.sender = cmd.path.is_null ? std::string() : cmd.path.mailbox.to_string();
    envelope.body = to_queue_body(p.body);
    envelope.smtputf8 = p.smtputf8;
    envelope.ret = p.ret == DsnRet::kFull   ? mta::DsnRet::kFull
                   : p.ret == DsnRet::kHdrs ? mta::DsnRet::kHeaders
                                            : mta::DsnRet::kUnspecified;
    envelope.envid = p.envid.value_or("");
    reply(out, 250, "2.1.0", "Ok");
  }

  void rcpt(const SmtpCommand& cmd, std::string& out) {
    if (!mail_given) return fail(out, 503, "5.5.1", "Need MAIL command first");
    if (envelope.recipients.size() >= policy.max_recipients) {
      return reply(out, 452, "4.5.3", "Too many recipients");
    }
    const mta::RecipientVerdict verdict = host.check_recipient(cmd.path, relay_allowed());
    if (!verdict.accepted) {
      if (verdict.code >= 500) return fail(out, verdict.code, verdict.status, verdict.text);
      return reply(out, verdict.code, verdict.status, verdict.text);
    }
    mta::Recipient r;
    r.address = cmd.path.is_postmaster ? std::string("postmaster") : cmd.path.mailbox.to_string();
    if (!cmd.rcpt.orcpt_type.empty()) {
      r.orcpt = cmd.rcpt.orcpt_type + ";" + cmd.rcpt.orcpt_address;
    }
    r.notify = to_queue_notify(cmd.rcpt.notify);
    bool duplicate = false;
    for (const mta::Recipient& have : envelope.recipients) duplicate |= have.address == r.address;
    if (!duplicate) envelope.recipients.push_back(std::move(r));
    reply(out, 250, "2.1.5", "Ok");
  }

  // Shared start of DATA and the first BDAT: the spool file, the envelope, Received.
  Status open_message() {
    if (!host.storage_available(0)) {
      return Error::temporary(EX_TEMPFAIL, "4.3.1", "Insufficient system storage");
    }
    envelope.arrival_time = host.now();
    envelope.client_address = policy.client_address;
    envelope.helo = helo;
    envelope.auth_user = auth_user;
    envelope.tls_protocol = tls_protocol;
    envelope.tls_cipher = tls_cipher;
    envelope.protocol = protocol();
    if (auto st = host.open_message(envelope); !st) return st;
    message_open = true;
    ReceivedInfo info;
    info.helo = helo;
    info.client_address = policy.client_address;
    info.hostname = policy.hostname;
    info.protocol = envelope.protocol;
    info.queue_id = envelope.queue_id;
    info.tls_protocol = tls_protocol;
    info.tls_cipher = tls_cipher;
    if (envelope.recipients.size() == 1) info.recipient = envelope.recipients[0].address;
    info.when = envelope.arrival_time;
    content = format_received(info);
    return {};
  }

  DataOptions data_options() const {
    DataOptions o;
    o.bare_line_ends =
        policy.normalize_bare_lf ? BareLineEndPolicy::kNormalize : BareLineEndPolicy::kReject;
    o.max_line_length = policy.max_line_length;
    o.max_message_size = policy.max_message_size;
    return o;
  }

  void start_data(std::string& out) {
    if (!mail_given) return fail(out, 503, "5.5.1", "Need MAIL command first");
    if (envelope.recipients.empty()) return fail(out, 554, "5.5.1", "No valid recipients");
    // RFC 3030 3: a transaction that began with BDAT ends with BDAT LAST, never with DATA.
    if (bdat || bdat_failed) return fail(out, 503, "5.5.1", "DATA after BDAT; send RSET");
    if (auto st = open_message(); !st) {
      return reply(out, st.error().status() == "4.3.1" ? 452 : 451, st.error().status(),
                   st.error().text());
    }
    data.emplace(data_options());
    phase = Phase::kData;
    reply(out, 354, "", "End data with <CR><LF>.<CR><LF>");
  }

  void start_bdat(const SmtpCommand& cmd) {
    auto discard = [&](int code, std::string_view status, std::string_view text) {
      deferred_reply.clear();
      reply(deferred_reply, code, status, text);
      discard_left = cmd.chunk_size;
      phase = Phase::kBdatDiscard;
      if (cmd.last_chunk) reset_transaction();
      else if (mail_given) bdat_failed = true;
    };
    if (!mail_given) return discard(503, "5.5.1", "Need MAIL command first");
    if (envelope.recipients.empty()) return discard(554, "5.5.1", "No valid recipients");
    if (data) return discard(503, "5.5.1", "BDAT inside DATA");
    if (bdat_failed) return discard(503, "5.5.1", "Earlier BDAT failed; send RSET");
    if (!message_open) {
      if (auto st = open_message(); !st) {
        return discard(st.error().status() == "4.3.1" ? 452 : 451, st.error().status(),
                       st.error().text());
      }
      bdat.emplace(data_options());
    }
    bdat->begin_chunk(cmd.chunk_size, cmd.last_chunk);
    phase = Phase::kBdat;
  }

  void flush_content(bool all) {
    if (content.empty() || (!all && content.size() < kWriteChunk)) return;
    if (!write_error && message_open) {
      if (auto st = host.write_message(content); !st) write_error = st;
    }
    content.clear();
  }

  void finish_message(std::string& out, const DataOutcome& outcome) {
    flush_content(true);
    phase = Phase::kCommand;
    if (outcome.reject) {
      const DataReject& r = *outcome.reject;
      reply(out, r.reply_code, r.error.status(), r.error.text());
      reset_transaction();
      return;
    }
    if (outcome.has_nul) {
      reply(out, 550, "5.6.0", "NUL octet in message; send it encoded (RFC 2045)");
      reset_transaction();
      return;
    }
    if (write_error) {
      const Error& e = write_error->error();
      reply(out, e.status() == "4.3.1" ? 452 : 451, e.status(),
            "Message could not be written to the queue; try again later");
      reset_transaction();
      return;
    }
    phase = Phase::kCommitting;
    host.commit_message();
  }

  void commit_done(const Status& status, std::string& out) {
    phase = Phase::kCommand;
    if (status) {
      message_open = false;  // committed: no longer ours to abort
      reply(out, 250, "2.0.0", "Ok: queued as " + envelope.queue_id);
    } else {
      const Error& e = status.error();
      reply(out, e.status() == "4.3.1" ? 452 : 451, e.status(),
            "Message could not be queued; try again later");
    }
    reset_transaction();
  }

  void vrfy(const SmtpCommand& cmd, std::string& out) {
    switch (policy.vrfy) {
      case SessionPolicy::Vrfy::kOff:
        return reply(out, 502, "5.5.1", "VRFY is disabled");
      case SessionPolicy::Vrfy::kAmbiguous:
        return reply(out, 252, "2.5.0",
                     "Cannot VRFY user, but will accept message and attempt delivery");
      case SessionPolicy::Vrfy::kCheck:
        break;
    }
    std::string name = cmd.text;
    if (name.size() >= 2 && name.front() == '<' && name.back() == '>') {
      name = name.substr(1, name.size() - 2);
    }
    if (const auto at = name.rfind('@'); at != std::string::npos) {
      if (!mta::is_local_domain(std::string_view(name).substr(at + 1), local_domains())) {
        return reply(out, 252, "2.5.0", "Cannot VRFY a remote address");
      }
      name.resize(at);
    }
    ascii_lower_in_place(name);
    const auto exists = host.local_name_exists(name);
    if (!exists) return reply(out, 451, "4.3.0", "Cannot check now; try again later");
    if (!*exists) return fail(out, 550, "5.1.1", "User unknown");
    reply(out, 250, "2.1.5", "<" + name + "@" + policy.hostname + ">");
  }

  const std::vector<std::string>& local_domains() const {
    static const std::vector<std::string> none;
    return policy.local_domains ? *policy.local_domains : none;
  }

  void starttls(std::string& out) {
    if (!tls_protocol.empty()) return fail(out, 503, "5.5.1", "TLS is already active");
    if (!policy.tls_available) return fail(out, 502, "5.5.1", "STARTTLS is not offered here");
    reply(out, 220, "2.0.0", "Ready to start TLS");
    // Whatever came after STARTTLS was sent in the clear and may be an attacker's
    // (CVE-2011-0411): it is never read.
    pos = input.size();
    reset_transaction();
    phase = Phase::kTls;
    host.start_tls();
  }

  // --- AUTH (RFC 4954) ---------------------------------------------------------------------

  void auth(const SmtpCommand& cmd, std::string& out) {
    if (!policy.auth_available) return fail(out, 502, "5.5.1", "AUTH is not offered here");
    if (tls_protocol.empty()) {
      return fail(out, 538, "5.7.11", "Encryption required for requested authentication mechanism");
    }
    if (!auth_user.empty()) return fail(out, 503, "5.5.1", "Already authenticated");
    if (mail_given) return fail(out, 503, "5.5.1", "AUTH is not allowed during a transaction");
    if (cmd.mechanism != "PLAIN" && cmd.mechanism != "LOGIN") {
      return fail(out, 504, "5.5.4", "Unrecognized authentication type");
    }
    sasl_login = cmd.mechanism == "LOGIN";
    sasl_step = 0;
    sasl_user.clear();
    if (cmd.initial_response) {
      sasl_line(*cmd.initial_response == "=" ? std::string_view() : *cmd.initial_response, out);
      return;
    }
    phase = Phase::kSasl;
    out += sasl_login ? "334 VXNlcm5hbWU6\r\n" : "334 \r\n";  // "Username:"
  }

  void sasl_line(std::string_view line, std::string& out) {
    phase = Phase::kCommand;
    if (line == "*") return fail(out, 501, "5.0.0", "Authentication cancelled");
    bool ok = false;
    std::string decoded = decode_base64(line, ok);
    if (!ok) return fail(out, 501, "5.5.2", "Cannot decode the response");
    if (sasl_login) {
      if (decoded.size() > kSaslField) return fail(out, 501, "5.5.2", "Response too long");
      if (sasl_step == 0) {
        for (unsigned char c : decoded) {
          if (c < 0x20 || c == 0x7f) return fail(out, 501, "5.5.2", "Bad user name");
        }
        sasl_user = std::move(decoded);
        sasl_step = 1;
        phase = Phase::kSasl;
        out += "334 UGFzc3dvcmQ6\r\n";  // "Password:"
        return;
      }
      return check_credentials(sasl_user, decoded, out);
    }
    auto plain = parse_sasl_plain(decoded);
    if (!plain || plain->authcid.size() > kSaslField || plain->password.size() > kSaslField) {
      return fail(out, 501, "5.5.2", "Malformed PLAIN response");
    }
    // Acting for another user would need a notion of administrators we do not have.
    if (!plain->authzid.empty() && plain->authzid != plain->authcid) {
      return fail(out, 535, "5.7.8", "Authentication credentials invalid");
    }
    check_credentials(plain->authcid, plain->password, out);
  }

  void check_credentials(const std::string& user, const std::string& password, std::string&) {
    sasl_user = user;
    phase = Phase::kAuthCheck;
    host.authenticate(user, password);
  }

  void auth_done(AuthResult result, std::string& out) {
    phase = Phase::kCommand;
    switch (result) {
      case AuthResult::kOk:
        auth_user = sasl_user;
        reply(out, 235, "2.7.0", "Authentication successful");
        break;
      case AuthResult::kBadCredentials:
        fail(out, 535, "5.7.8", "Authentication credentials invalid");
        break;
      case AuthResult::kTemporary:
        reply(out, 454, "4.7.0", "Temporary authentication failure");
        break;
    }
    sasl_user.clear();
  }
};

Session::Session(SessionHost& host, SessionPolicy policy)
    : s_(std::make_unique<State>(host, std::move(policy))) {
  if (s_->policy.tls_active) s_->tls_protocol = "TLS";
}

Session::~Session() {
  if (s_->message_open && s_->phase != State::Phase::kCommitting) s_->host.abort_message();
}

std::string Session::greeting() const {
  return "220 " + s_->policy.hostname + " ESMTP Mailwright\r\n";
}

bool Session::process(std::string_view input, std::string& out) {
  if (s_->phase == State::Phase::kClosed) return false;
  if (s_->phase == State::Phase::kTls) return true;  // plaintext sent before TLS: dropped
  s_->input.append(input);
  s_->run(out);
  return s_->phase != State::Phase::kClosed;
}

void Session::input_closed() {
  if (s_->phase != State::Phase::kCommitting) s_->reset_transaction();
}

void Session::commit_result(const Status& status, std::string& out) {
  s_->commit_done(status, out);
  s_->run(out);
}

void Session::auth_result(AuthResult result, std::string& out) {
  s_->auth_done(result, out);
  s_->run(out);
}

void Session::tls_started(std::string protocol, std::string cipher, std::string& out) {
  State& s = *s_;
  s.input.clear();
  s.pos = 0;
  s.skipping_line = false;
  s.greeted = false;
  s.esmtp = false;
  s.helo.clear();
  s.auth_user.clear();
  s.reset_transaction();
  s.tls_protocol = std::move(protocol);
  s.tls_cipher = std::move(cipher);
  s.phase = State::Phase::kCommand;
  (void)out;
}

bool Session::finished() const { return s_->phase == State::Phase::kClosed; }
bool Session::waiting() const { return s_->waiting(); }
bool Session::in_message() const {
  return s_->phase == State::Phase::kData || s_->phase == State::Phase::kBdat ||
         s_->phase == State::Phase::kBdatDiscard;
}
std::size_t Session::buffered_input() const { return s_->input.size() - s_->pos; }
const std::string& Session::authenticated_user() const { return s_->auth_user; }

}  // namespace mailwright::smtp
