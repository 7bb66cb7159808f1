// The SMTP server protocol (RFC 5321, with ESMTP: RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 2920
// PIPELINING, RFC 3207 STARTTLS, RFC 4954 AUTH PLAIN/LOGIN, RFC 6531 SMTPUTF8, RFC 3461 DSN,
// RFC 3030 CHUNKING, RFC 2034 ENHANCEDSTATUSCODES) as a state machine over bytes: no sockets,
// no clock of its own, no spool. The server feeds it input and sends what it returns; what
// the session cannot do itself (check a recipient, write the spool, check a password, start
// TLS) it asks of SessionHost, so the daemon, inetd mode and the tests drive the same code.
//
// Commands are processed strictly in order, pipelined or not. While the session waits for the
// host (a commit, an AUTH check, TLS), later input is kept unread in the buffer.
//
// Strictness:
//  - a command line must end in CRLF. A bare LF is refused (500 5.5.2); a bare CR or any other
//    control octet is refused by the command parser. A line longer than the limit gets
//    500 5.5.2 and is skipped up to its LF.
//  - the message ends only at CRLF "." CRLF (smtp_data.h: the SMTP smuggling variants never
//    end it), then bare LF is refused or normalised by policy, bare CR refused, NUL refused.
//  - input sent after STARTTLS in the same packet is thrown away unread (CVE-2011-0411).
//  - after max_errors refused commands the session ends with 421.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/address.h"
#include "libmail/result.h"
#include "mta/queue_file.h"
#include "mta/relay_policy.h"

namespace mailwright::smtp {

struct SessionPolicy {
  std::string hostname = "localhost";  // greeting, EHLO, Received
  std::string client_address;          // "192.0.2.1" or "2001:db8::1", for Received
  bool tls_available = false;          // STARTTLS may be offered
  bool tls_active = false;             // TLS from the first byte (port 465)
  bool auth_available = false;         // AUTH offered once TLS is up
  bool submission = false;             // port 587/465: MAIL needs AUTH first (RFC 6409 4.3)
  bool relay_network = false;          // the client is in relay_networks
  const std::vector<std::string>* local_domains = nullptr;  // for VRFY user@domain
  bool smtputf8 = true;
  bool normalize_bare_lf = false;
  enum class Vrfy { kAmbiguous, kCheck, kOff } vrfy = Vrfy::kAmbiguous;
  std::uint64_t max_message_size = 35 * 1024 * 1024;
  std::size_t max_recipients = 1000;
  std::size_t max_line_length = 1000;  // message text lines, CRLF included
  std::size_t max_errors = 20;
};

enum class AuthResult { kOk, kBadCredentials, kTemporary };

class SessionHost {
 public:
  virtual ~SessionHost() = default;
  // RCPT: is this recipient acceptable (relay_allowed: authenticated or a relay network)?
  virtual mta::RecipientVerdict check_recipient(const Path& path, bool relay_allowed) = 0;
  // VRFY with vrfy = check: whether the local name exists (nullopt: cannot tell now).
  virtual std::optional<bool> local_name_exists(std::string_view name) = 0;
  // MAIL with SIZE, and DATA/BDAT: whether the spool has room for size more octets.
  virtual bool storage_available(std::uint64_t size) = 0;
  // Starts a message: creates the spool file and writes the envelope. Sets envelope.queue_id
  // and arrival_time. An error becomes the reply to DATA/BDAT (451 or 452).
  virtual Status open_message(mta::Envelope& envelope) = 0;
  // Appends message octets to the open message.
  virtual Status write_message(std::string_view bytes) = 0;
  // The whole message is written: make it durable. The answer comes back through
  // Session::commit_result(), now or later.
  virtual void commit_message() = 0;
  // Throws the open message away (refused, RSET, or the client went away).
  virtual void abort_message() = 0;
  // Checks a password; the answer comes back through Session::auth_result().
  virtual void authenticate(const std::string& user, const std::string& password) = 0;
  // Called after the 220 to STARTTLS is queued: send pending output, start TLS, then call
  // Session::tls_started().
  virtual void start_tls() = 0;
  // The current time, seconds since the epoch (for Received and the envelope).
  virtual std::int64_t now() = 0;
};

class Session {
 public:
  Session(SessionHost& host, SessionPolicy policy);
  ~Session();

  std::string greeting() const;
  // Takes input and appends every reply it can give now to out. Returns false once the
  // session is over (QUIT, too many errors): send out, then close.
  bool process(std::string_view input, std::string& out);
  // The client closed its side: an open message is aborted.
  void input_closed();

  void commit_result(const Status& status, std::string& out);
  void auth_result(AuthResult result, std::string& out);
  // TLS is up after STARTTLS: back to the start (RFC 3207 4.2), knowing nothing said before.
  void tls_started(std::string protocol, std::string cipher, std::string& out);

  bool finished() const;
  // Waiting for the host (commit, AUTH, TLS): the server should not read more for now.
  bool waiting() const;
  // In the middle of a message (for the data timeout).
  bool in_message() const;
  std::size_t buffered_input() const;
  const std::string& authenticated_user() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// The Received field (RFC 5321 4.4, RFC 3848 with-protocol) put at the top of each message.
struct ReceivedInfo {
  std::string helo;
  std::string client_address;
  std::string hostname;
  std::string protocol;  // SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA (and UTF8 variants)
  std::string queue_id;
  std::string tls_protocol;
  std::string tls_cipher;
  std::string recipient;  // only when the message has exactly one
  std::int64_t when = 0;
};
std::string format_received(const ReceivedInfo& info);

}  // namespace mailwright::smtp
