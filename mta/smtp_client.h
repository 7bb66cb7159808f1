// The SMTP client for remote delivery: to the next hop's MX hosts or to a smart host. RFC 5321
// with SIZE (RFC 1870), 8BITMIME (RFC 6152), PIPELINING (RFC 2920), STARTTLS (RFC 3207), AUTH
// PLAIN/LOGIN (RFC 4954), SMTPUTF8 (RFC 6531), DSN (RFC 3461), CHUNKING/BINARYMIME (RFC 3030) and
// ENHANCEDSTATUSCODES (RFC 2034). Three layers, so the protocol is testable without sockets:
//
//  1. parse_smtp_reply(), parse_ehlo_capabilities() and SmtpDataEncoder: pure functions and a
//     pure encoder (what the server says; what the message looks like on the wire).
//  2. SmtpClientSession: one connection as a state machine over bytes, like smtp::Session for
//     the server. Replies in, commands and message content out; no sockets, no clock, no files.
//  3. SmtpDelivery: the libevent driver. Connects to each address of each destination in turn,
//     runs a session, reads the message from the queue file, applies the timeouts, and reports
//     one result per recipient. SmtpConnectionCache optionally keeps idle connections.
//
// Decisions, and why:
//  - Replies: a line may end in bare LF as well as CRLF. What a server says only drives our own
//    state machine (no second party re-parses it, so there is nothing to smuggle), and old
//    appliances that end replies in LF exist; refusing them would defer mail for no gain. A CR
//    inside a line, and every other control octet, is replaced by '?' in the text we keep, so a
//    reply can never split a log line, a queue ERROR line or a DSN field. Lines are capped at
//    kMaxReplyLine octets and replies at kMaxReplyLines lines (RFC 5321 4.5.3.1.5 allows 512;
//    the caps only bound memory), and every line of a multi-line reply must carry the same code
//    (RFC 5321 4.2.1): anything else is a protocol error and the connection is given up.
//  - Message content: sent with DATA it is dot-stuffed (RFC 5321 4.5.2) and put into canonical
//    CRLF form: a bare LF or bare CR becomes CRLF. The queue never holds either (the server
//    refuses or normalises them), but if one got there, passing it on could let the next hop
//    see an end of data we never sent (SMTP smuggling, CVE-2023-51764 and relatives). The same
//    canonical form is used for BDAT; only BODY=BINARYMIME goes out octet for octet.
//  - BODY=8BITMIME is declared when the envelope says so and the peer offers 8BITMIME. When the
//    peer does not offer it, the message is sent anyway, undeclared. RFC 6152 3 wants the client
//    to bounce or to convert to 7 bit; converting needs a MIME rewriter we do not have, bouncing
//    loses mail to a server that merely forgot to say it is 8-bit clean (practically every server
//    today is), and sending is what Postfix does with disable_mime_output_conversion = yes.
//  - SMTPUTF8 mail to a peer without SMTPUTF8 fails permanently with 5.6.7 (RFC 6531 3.5 leaves
//    no other choice without a downgrade, RFC 6857, which we do not implement). BINARYMIME to a
//    peer without CHUNKING and BINARYMIME fails with 5.6.3. A message larger than the peer's SIZE
//    fails with 5.3.4 without being sent (RFC 1870 6).
//  - DSN parameters (RET, ENVID, NOTIFY, ORCPT) are sent only when the peer offers DSN. When it
//    does not, SmtpRecipientResult::dsn_passed_on is false and the queue manager owes a
//    "relayed" DSN to recipients that asked for NOTIFY=SUCCESS (RFC 3461 4.1).
//  - STARTTLS (SmtpTlsPolicy): kOpportunistic uses it whenever offered, without verifying the
//    certificate (RFC 7435: the norm between MTAs, where MX names come from unauthenticated
//    DNS). If the handshake fails, the same address is tried again once in plaintext, as Postfix
//    does; a 4xx/5xx to STARTTLS just continues in plaintext. kRequire: no STARTTLS offered, or
//    refused, is 4.7.4 ("TLS is required, but was not offered by host X", Postfix's text and
//    code); a failed handshake is 4.7.5; both defer and try the next host. kRequireVerified also
//    verifies the certificate chain against the system trust store (libmail's client context
//    loads it) and the destination's name (SSL_set1_host): meant for smart hosts, whose names
//    come from our configuration, not from DNS.
//  - AUTH: when credentials are configured, the destination is taken to need them. PLAIN is used
//    (with an initial response) if offered, else LOGIN; only over TLS unless auth_without_tls.
//    If we cannot authenticate (no TLS, no common mechanism) or the server refuses (535), the
//    recipients are deferred and the next host is tried: sending without AUTH to a smart host
//    would bounce the mail as "relaying denied", and a refused password is a configuration
//    problem that must not bounce mail (Postfix's smtp_sasl_auth_soft_bounce).
//  - Which failures move on to the next host (RFC 5321 5.1, and 3.8 for 421): a failed connect,
//    a lost connection or timeout, a protocol error, 421 anywhere, anything but 2xx to the
//    greeting (554 included, as Postfix's smtp_skip_5xx_greeting), EHLO/HELO or AUTH, TLS
//    required and not possible, and 4xx to MAIL. Refused recipients (5xx) are final; 4xx at
//    RCPT or after the data defers the recipient without trying another host. A connection lost
//    after the end of the message was sent but before its reply defers without trying another
//    host, which would risk a duplicate (RFC 1047).
//  - Failures before MAIL leave the recipients deferred with a status of class 4 even when the
//    server's reply was 5xx (a 554 greeting, a 535 to AUTH); the reply itself is kept for the
//    Diagnostic-Code.
//  - PIPELINING (when offered): MAIL, every RCPT and DATA go out in one write; without it, one
//    command per reply. RSET is sent before every transaction but the first on a connection, on
//    its own: on a reused connection it is also the check that the connection still works, and a
//    failure there means nothing was attempted (SmtpConnectionOutcome::stale). BDAT (when
//    CHUNKING is offered): one chunk per piece of content the driver reads; with PIPELINING the
//    chunks are not waited for, without it each chunk waits for its 250. The first BDAT is sent
//    only after the RCPT replies, so a message is not streamed to a server that took nobody.
//  - 452 to some RCPTs (RFC 5321 4.5.3.1.10, "too many recipients"): those recipients are
//    deferred in that transaction; SmtpDelivery then sends them in a further transaction on the
//    same connection, once per transaction that made progress.
//  - Commands are never built from unchecked strings: the sender and every recipient are parsed
//    again with libmail's RFC 5321 parsers (address.h, UTF-8 only with SMTPUTF8) and refused
//    locally (5.1.7 / 5.1.3) if that fails, so no CR, LF, NUL or stray '>' reaches the wire; the
//    HELO name must be a domain or an address literal; ENVID and ORCPT are xtext-encoded;
//    credentials holding NUL, CR or LF are refused (4.3.5, a configuration error).
//
// Not done here (see the open points in the report): converting 8-bit to 7-bit, SMTPUTF8
// downgrades, line folding for lines longer than 998 octets, DANE/MTA-STS, TLS session resumption
// across connections, and the LMTP variant.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/ssl.h>

#include "libmail/result.h"
#include "mta/delivery_outcome.h"
#include "mta/queue_file.h"

struct event_base;

namespace mailwright::mta {

// --- 1. Replies, capabilities, message encoding ----------------------------------------------

// One reply line, CRLF included, and the lines of one reply. RFC 5321 4.5.3.1.5 says 512
// octets per line; these only bound what a hostile server can make us hold.
inline constexpr std::size_t kMaxReplyLine = 4096;
inline constexpr std::size_t kMaxReplyLines = 100;

struct SmtpReply {
  int code = 0;  // 200..599
  // The RFC 3463 code at the start of the first line ("5.1.1") when it is well formed and its
  // class matches the reply code's first digit (RFC 2034 3); "" otherwise.
  std::string enhanced;
  // The text of each line after "NNN-" / "NNN " (may be empty), as sent except that control
  // octets are replaced by '?'.
  std::vector<std::string> lines;
  // The lines joined by single spaces, with the enhanced code removed from the front of each
  // line that starts with it.
  std::string text;

  int klass() const { return code / 100; }  // 2, 3, 4 or 5
  bool positive() const { return code >= 200 && code < 400; }
  bool temporary() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500; }
  // enhanced, or the class default ("2.0.0", "4.0.0", "5.0.0").
  std::string status() const;
  // "550 5.1.1 text of all lines": one line for logs, queue ERROR lines and DSN Diagnostic-Code.
  std::string to_string() const;
};

struct SmtpReplyParse {
  enum class State { kIncomplete, kComplete, kError };
  State state = State::kIncomplete;
  std::size_t consumed = 0;  // kComplete: octets of this reply, terminators included; else 0
  SmtpReply reply;           // kComplete only
  std::string error;         // kError: a fixed text that never echoes the input

  bool complete() const { return state == State::kComplete; }
};

// Parses the reply at the front of buffer (which may hold more: pipelined replies). Lines end in
// CRLF or bare LF. A line is "NNN", "NNN text" or (all but the last) "NNN-text", with NNN of
// 200..599. kError: a malformed line, codes differing between lines, a line longer than
// kMaxReplyLine (also while incomplete), more than kMaxReplyLines lines.
SmtpReplyParse parse_smtp_reply(std::string_view buffer);

// What a server offers in its EHLO reply (RFC 5321 4.1.1.1: first line the domain, then one
// keyword with optional parameters per line; keywords case-insensitive).
struct SmtpCapabilities {
  bool pipelining = false;
  bool size = false;
  std::uint64_t size_limit = 0;  // SIZE n; 0 when none is declared (or it does not parse)
  bool eightbitmime = false;
  bool binarymime = false;
  bool smtputf8 = false;
  bool dsn = false;
  bool starttls = false;
  bool chunking = false;
  bool enhanced_status_codes = false;
  std::vector<std::string> auth;  // mechanisms, upper case; "AUTH=..." (pre-RFC 4954) counts

  bool has_auth(std::string_view mechanism) const;
};

SmtpCapabilities parse_ehlo_capabilities(const SmtpReply& reply);

// Message content on the wire. The caller passes the stored message in pieces of any size (a
// piece may end between CR and LF or right before a '.'); the encoder keeps the little state
// that needs. kDotStuff (DATA): canonical CRLF, a '.' doubled at every line start, and finish()
// adds a missing final CRLF and the ".\r\n" terminator. kCanonical (BDAT): canonical CRLF only.
// kBinary (BDAT with BODY=BINARYMIME): octets as they are.
class SmtpDataEncoder {
 public:
  enum class Mode { kDotStuff, kCanonical, kBinary };
  explicit SmtpDataEncoder(Mode mode) : mode_(mode) {}

  void encode(std::string_view piece, std::string& out);
  void finish(std::string& out);
  // Bare CRs and LFs that were turned into CRLF (for a log line; 0 for any queued message).
  std::uint64_t repaired_line_ends() const { return repaired_; }

 private:
  Mode mode_;
  bool line_start_ = true;
  bool pending_cr_ = false;
  std::uint64_t repaired_ = 0;
};

// --- 2. The session ---------------------------------------------------------------------------

enum class SmtpTlsPolicy { kNone, kOpportunistic, kRequire, kRequireVerified };

struct SmtpCredentials {
  std::string user;
  std::string password;
};

struct SmtpRecipient {
  std::string address;  // forward path without brackets, as in the queue; "postmaster" allowed
  std::string orcpt;    // "" or "addr-type;decoded address", as in the queue
  unsigned notify = kNotifyNone;  // mta::NotifyFlags
};

struct SmtpTransaction {
  std::string sender;  // reverse path without brackets; "" for <>
  BodyType body = BodyType::kUnspecified;
  bool smtputf8 = false;
  DsnRet ret = DsnRet::kUnspecified;
  std::string envid;        // decoded, as in the queue; "" when not given
  std::uint64_t size = 0;   // octets of the message as stored, for SIZE=
  std::vector<SmtpRecipient> recipients;
};

// The transaction for some recipients (indices into envelope.recipients) of a queued message.
SmtpTransaction make_smtp_transaction(const Envelope& envelope,
                                      const std::vector<std::size_t>& recipients,
                                      std::uint64_t message_size);

struct SmtpRecipientResult {
  // kPending only while undecided; a finished session or delivery leaves none pending.
  DeliveryState state = DeliveryState::kPending;
  int code = 0;           // the server's reply code; 0 when the outcome is our own decision
  std::string status;     // RFC 3463; its class always agrees with state
  std::string reply;      // the server's reply as SmtpReply::to_string(), or our own text
  std::string stage;      // what it answered: "greeting", "MAIL FROM", "RCPT TO", "end of DATA"
  std::string remote_host;     // the server's name (DSN Remote-MTA); "" when none answered
  std::string remote_address;  // its address text
  bool dsn_passed_on = false;  // the peer offered DSN, so NOTIFY/ORCPT went on with the mail

  // For a DSN Diagnostic-Code: "smtp; 550 5.1.1 ..." when the server said it, else
  // "x-mailwright; " and our own text.
  std::string diagnostic_code() const;
  // One line for logs and the queue: "host mx.example.net said: 550 5.1.1 ... (in reply to
  // RCPT TO command)", or our own text.
  std::string summary() const;
};

struct SmtpClientSettings {
  std::string helo_name;       // our name in EHLO/HELO: a domain or an address literal
  std::string remote_host;     // the server's name, for results and texts
  std::string remote_address;  // its address text, for texts ("" if unknown)
  SmtpTlsPolicy tls = SmtpTlsPolicy::kOpportunistic;
  bool tls_available = false;  // the driver can start TLS (it has a client context)
  std::optional<SmtpCredentials> credentials;
  bool auth_without_tls = false;  // allow AUTH over a plaintext connection
  bool use_pipelining = true;     // when offered
  bool use_chunking = true;       // BDAT when offered
};

// What the session waits for: the driver applies the matching timeout.
enum class SmtpWait {
  kNothing,   // idle (or finished)
  kGreeting,
  kHelo,      // EHLO or HELO
  kStarttls,  // the reply to STARTTLS, then the handshake
  kAuth,
  kRset,
  kMail,
  kRcpt,
  kDataInit,  // the 354 to DATA
  kContent,   // the driver should send content (data block timeout)
  kDataEnd,   // the reply to the end of the message or to a BDAT chunk
  kQuit,
};

// How a connection ended, for the driver's choice of what to do next.
struct SmtpConnectionOutcome {
  bool try_next = false;           // RFC 5321 5.1: try the remaining recipients elsewhere
  bool retry_without_tls = false;  // opportunistic STARTTLS failed: same address, plaintext
  bool stale = false;              // broke at the RSET before a transaction: nothing attempted
  SmtpRecipientResult error;       // why it ended early; state kPending if it did not
};

enum class SmtpLoss { kClosed, kTimeout, kError };

class SmtpClientSession {
 public:
  explicit SmtpClientSession(SmtpClientSettings settings);
  ~SmtpClientSession();
  SmtpClientSession(const SmtpClientSession&) = delete;
  SmtpClientSession& operator=(const SmtpClientSession&) = delete;

  // Queues a transaction; returns its index for results(). Allowed at any time before
  // finish(); call advance() afterwards when the session may be idle.
  std::size_t add_transaction(SmtpTransaction transaction);
  // Appends whatever can be sent now (RSET and MAIL for a transaction added to an idle
  // session).
  void advance(std::string& out);
  // No more transactions: QUIT once the queued ones are done.
  void finish(std::string& out);
  // Bytes from the server; appends what to send in answer.
  void receive(std::string_view input, std::string& out);

  // Content: while wants_content(), the driver passes the next piece of the stored message
  // (content_offset() octets have been passed so far); last marks the final piece (may be
  // empty). If the message cannot be read, content_failed() defers the transaction and the
  // connection must be closed without ending the message (the server must not get half).
  bool wants_content() const;
  std::uint64_t content_offset() const;
  void content(std::string_view piece, bool last, std::string& out);
  void content_failed(const Error& error);

  // STARTTLS was answered 220: send out, then start the TLS handshake (discarding any input
  // already read: it came before TLS), then call tls_started() or tls_failed().
  bool wants_tls() const;
  void tls_started(std::string& out);
  void tls_failed(std::string_view reason, std::string& out);

  // The connection is gone (EOF, error, timeout): undecided recipients are deferred.
  void connection_lost(SmtpLoss loss, std::string_view detail);

  // Resets outcome() before a reused session takes new transactions.
  void clear_outcome();

  SmtpWait waiting_for() const;
  // Every transaction is done and the connection can take another one.
  bool idle() const;
  // Nothing more will happen: send what was returned, then close.
  bool finished() const;
  bool tls_active() const;
  const SmtpCapabilities& capabilities() const;
  const SmtpConnectionOutcome& outcome() const;
  std::size_t transaction_count() const;
  bool transaction_done(std::size_t index) const;
  const std::vector<SmtpRecipientResult>& results(std::size_t index) const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// The same, as the queue manager's RemoteDeliverer reports it (delivery_outcome.h).
DeliveryOutcome to_delivery_outcome(const SmtpRecipientResult& result);

// --- 3. The libevent driver -------------------------------------------------------------------

// RFC 5321 4.5.3.2 timeouts (greeting, MAIL, RCPT, DATA initiation, data block, DATA
// termination); the others as Postfix has them (connect 30 s, HELO/STARTTLS 300 s, RSET 20 s).
// Each runs from the last progress: a reply received or content written.
struct SmtpClientTimeouts {
  std::chrono::milliseconds connect{30'000};
  std::chrono::milliseconds greeting{300'000};
  std::chrono::milliseconds helo{300'000};
  std::chrono::milliseconds starttls{300'000};  // the reply and the handshake
  std::chrono::milliseconds auth{300'000};
  std::chrono::milliseconds mail{300'000};
  std::chrono::milliseconds rcpt{300'000};
  std::chrono::milliseconds data_init{120'000};
  std::chrono::milliseconds data_block{180'000};
  std::chrono::milliseconds data_term{600'000};
  std::chrono::milliseconds rset{20'000};
  std::chrono::milliseconds quit{60'000};
};

// One host to try: an MX (in preference order) or a smart host.
struct SmtpDestination {
  std::string name;  // for SNI, certificate checks, logs, DSN; "" uses the address text
  std::vector<sockaddr_storage> addresses;  // tried in order
  std::uint16_t port = 25;
};

// The stored message: length octets at offset of fd, read with pread (the fd is not owned and
// must stay open until the delivery is done).
struct SmtpMessageSource {
  int fd = -1;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};

struct SmtpDeliveryRequest {
  std::string log_id;  // the queue id, for log lines
  std::vector<SmtpDestination> destinations;
  SmtpTransaction transaction;  // one message; size is set from source.length
  SmtpMessageSource source;
  // helo_name, tls, credentials, auth_without_tls, use_*; the driver sets remote_host,
  // remote_address and tls_available per connection.
  SmtpClientSettings settings;
  SmtpClientTimeouts timeouts;
  std::size_t max_recipients = 100;  // per transaction (RFC 5321 4.5.3.1.8 guarantees 100)
  std::size_t read_chunk = 64 * 1024;  // content is read and sent in pieces of this size
};

struct SmtpDeliveryReport {
  // One per recipient of the request, in its order; none kPending.
  std::vector<SmtpRecipientResult> recipients;
};

class SmtpConnectionCache;

// The process must ignore SIGPIPE (the daemons do, libmail/daemon.cpp): a server that closes
// while we write is an error on the connection, not a reason to die.
class SmtpDelivery {
 public:
  // Called once, from the event loop (never from inside start()); may destroy the SmtpDelivery.
  using Done = std::function<void(SmtpDeliveryReport)>;

  // tls may be null (no STARTTLS; kRequire* then defers everything with 4.3.5). cache may be
  // null; if given it must outlive the delivery.
  SmtpDelivery(event_base* base, SSL_CTX* tls, SmtpDeliveryRequest request, Done done,
               SmtpConnectionCache* cache = nullptr);
  // Destroying an unfinished delivery closes its connection; done is not called.
  ~SmtpDelivery();
  SmtpDelivery(const SmtpDelivery&) = delete;
  SmtpDelivery& operator=(const SmtpDelivery&) = delete;

  void start();

  struct Impl;  // public only so that SmtpConnectionCache can name it as a friend

 private:
  std::unique_ptr<Impl> impl_;
};

// Idle connections kept for the next message to the same host (keyed by host name, port, TLS
// policy, credentials user and HELO name). A connection is parked when a delivery has finished
// its transactions on it, and is closed with QUIT when it has been idle for idle_time, has been
// open for max_age or has carried max_uses deliveries; a server that speaks or closes while it
// is parked gets it closed at once. A delivery that takes one sends RSET first; if that fails,
// it connects afresh. Destroying the cache closes every connection it holds.
class SmtpConnectionCache {
 public:
  SmtpConnectionCache(event_base* base,
                      std::chrono::milliseconds idle_time = std::chrono::seconds(5),
                      std::chrono::milliseconds max_age = std::chrono::seconds(300),
                      std::size_t max_uses = 100, std::size_t max_connections = 100);
  ~SmtpConnectionCache();
  SmtpConnectionCache(const SmtpConnectionCache&) = delete;
  SmtpConnectionCache& operator=(const SmtpConnectionCache&) = delete;

  std::size_t size() const;  // connections parked (not counting those saying QUIT)

  struct Impl;

 private:
  friend struct SmtpDelivery::Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mailwright::mta
