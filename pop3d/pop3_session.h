// The POP3 protocol (RFC 1939, RFC 2449 CAPA and response codes, RFC 2595 STLS, RFC 5034
// AUTH PLAIN) as a state machine over bytes: no sockets, no clock, no password database of
// its own. The server feeds it input and sends what it returns; the session asks the server
// for what it cannot do itself (authenticate, start TLS, open the maildrop) through
// SessionHost, so tests drive it directly.
//
// Commands are processed strictly in order, also when pipelined; while a RETR or TOP is being
// streamed (pump()) or an authentication is pending, later commands wait in the input buffer.
//
// Limits: a command line longer than SessionPolicy::max_line (an AUTH response: 2048 octets)
// gets "-ERR line too long" and is skipped up to its LF; one still going after 64 KiB ends the
// session. At most 64 KiB of unprocessed input is held (more ends the session), so the server
// should not read while streaming(). process() and auth_result() add at most about 16 KiB of
// output, and process() adds none while streaming() (it only stores the input); multi-line
// replies (RETR, TOP, LIST, UIDL) and commands held back beyond that are produced by pump(). Input that follows STLS in the same read, or arrives before
// tls_started(), is discarded unread (CVE-2011-0411, CVE-2021-33515).
//
// The session does not log; passwords pass through it only to SessionHost::authenticate().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pop3d/maildrop.h"

namespace mailwright::pop3 {

struct SessionPolicy {
  bool tls_available = false;        // STLS may be offered
  bool tls_active = false;           // the connection is already TLS (POP3S, or after STLS)
  bool plaintext_auth_allowed = true;  // USER/PASS and AUTH PLAIN before TLS
  std::string greeting_host = "localhost";
  std::string apop_banner;           // "<pid.clock@host>" when APOP is enabled, else empty
  std::optional<std::uint32_t> expire_days;      // CAPA EXPIRE
  std::optional<std::uint32_t> login_delay_secs; // CAPA LOGIN-DELAY
  std::size_t max_line = 255;        // RFC 2449: command lines up to 255 octets incl. CRLF
};

// What the session needs from its surroundings.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  // Starts checking credentials; the answer comes back through Session::auth_result().
  // For APOP, password is empty and digest holds the client's MD5 digest.
  virtual void authenticate(const std::string& user, const std::string& password,
                            const std::string& apop_digest) = 0;
  // Called after "+OK" to STLS has been queued: the server must send pending output, then
  // start TLS before reading more input, and call Session::tls_started().
  virtual void start_tls() = 0;
};

enum class AuthOutcome { kOk, kBadCredentials, kInUse, kTemporary };

class Session {
 public:
  Session(SessionHost& host, SessionPolicy policy);
  ~Session();

  std::string greeting() const;
  // Takes input and appends every reply it can give now to out. Returns false once the
  // session is over (QUIT handled, or a fatal protocol error): send out, then close.
  bool process(std::string_view input, std::string& out);
  // While a message is being sent: appends up to about max octets more of it (and, when it
  // is finished, goes on with pipelined commands). Returns true while more is pending.
  // Check finished() afterwards: a pipelined QUIT may have ended the session.
  bool pump(std::string& out, std::size_t max);
  // pump() has output to give: a message or listing being sent, or pipelined commands held
  // back by the output limit.
  bool streaming() const;

  // The answer to SessionHost::authenticate. On kOk, maildrop is the opened maildrop. May be
  // called from inside authenticate(); the reply then goes to that process() call's out.
  // Appends the reply and the replies to commands pipelined after it; check finished().
  void auth_result(AuthOutcome outcome, std::unique_ptr<Maildrop> maildrop, std::string& out);
  // TLS is up after STLS: back in AUTHORIZATION, knowing nothing the client said before.
  void tls_started(std::string& out);

  bool authenticated() const;
  // The name from USER, or the one being (or having been) authenticated; empty if none.
  const std::string& user() const;
  // The session is over (QUIT, a third failed login, a fatal error): send out, then close.
  bool finished() const;
  // Octets of input received but not yet processed (bounded; see the limits above).
  std::size_t buffered_input() const;
  // Returns the input received but not yet processed, and forgets it: for a server that hands
  // the connection to another process once authenticate() has been called (privilege
  // separation). The rest of a too long line already answered is left out. The session must
  // not be used for this connection afterwards.
  std::string take_buffered_input();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace mailwright::pop3
