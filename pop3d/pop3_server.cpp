#include "pop3d/pop3_server.h"

#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>

#include "libmail/listen_address.h"
#include "libmail/log.h"

namespace mailwright::pop3 {
namespace {

constexpr std::size_t kPumpPiece = 64 * 1024;
constexpr std::size_t kOutputLowWater = 32 * 1024;
constexpr std::size_t kRelayHighWater = 256 * 1024;

bool is_loopback(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) {
    auto addr = ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr);
    return (addr >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    const auto& a6 = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
  }
  return sa->sa_family == AF_UNIX;
}

std::string make_apop_banner() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "localhost");
  unsigned char nonce[8];
  RAND_bytes(nonce, sizeof nonce);
  char buf[512];
  std::snprintf(buf, sizeof buf, "<%d.%02x%02x%02x%02x%02x%02x%02x%02x.%ld@%s>",
                static_cast<int>(::getpid()), nonce[0], nonce[1], nonce[2], nonce[3], nonce[4],
                nonce[5], nonce[6], nonce[7], static_cast<long>(std::time(nullptr)), host);
  return buf;
}

}  // namespace

class Connection final : public SessionHost {
 public:
  Connection(Pop3Server& server, BufferEvent bev, std::string peer, bool loopback,
             bool tls_active, std::string id)
      : server_(server),
        bev_(std::move(bev)),
        peer_(std::move(peer)),
        id_(std::move(id)),
        apop_banner_(server.auth_.apop_enabled() ? make_apop_banner() : std::string()),
        session_(*this, make_policy(server.settings_, loopback, tls_active, server.tls_ != nullptr,
                                    apop_banner_)),
        timer_(evtimer_new(server.base_, &Connection::on_timer, this)),
        flush_timer_(evtimer_new(server.base_, &Connection::on_flush_timer, this)) {
    tls_ = tls_active;
  }

  void start() {
    bufferevent_setcb(bev_.get(), &Connection::on_read, &Connection::on_write,
                      &Connection::on_event, this);
    set_timeouts();
    bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
    send(session_.greeting());
    log_info(id_, "connect from %s", peer_.c_str());
  }

  // SessionHost
  void authenticate(const std::string& user, const std::string& password,
                    const std::string& apop_digest) override {
    LoginRequest request{user, password, apop_banner_, apop_digest, peer_};
    std::weak_ptr<int> alive = alive_;
    // The answer may come now or later; either way it is applied from the event loop, never
    // by re-entering the session from inside its own call.
    server_.auth_.login(std::move(request), [this, alive, user](LoginOutcome result) {
      if (!alive.expired()) on_login(user, std::move(result));
    });
  }

  void on_login(const std::string& user, LoginOutcome result) {
    auto now = std::chrono::steady_clock::now();
    std::chrono::milliseconds delay{0};
    if (result.outcome == AuthOutcome::kOk && server_.settings_.login_delay.count() > 0) {
      auto last = server_.last_login_.find(user);
      if (last != server_.last_login_.end() && now - last->second < server_.settings_.login_delay) {
        result = LoginOutcome();
        result.outcome = AuthOutcome::kTemporary;
        result.detail = "login delay not over";
      }
    }
    if (result.outcome == AuthOutcome::kOk) {
      server_.failures_.record_success(peer_);
      server_.last_login_[user] = now;
      log_info(id_, "login user=%s%s", printable(user).c_str(), tls_ ? " tls" : "");
    } else {
      if (result.outcome == AuthOutcome::kBadCredentials) {
        delay = server_.failures_.record_failure(peer_, now);
      }
      log_notice(id_, "login failed user=%s from %s: %s", printable(user).c_str(), peer_.c_str(),
                 result.detail.c_str());
    }
    pending_ = std::move(result);
    struct timeval tv {};
    tv.tv_sec = delay.count() / 1000;
    tv.tv_usec = (delay.count() % 1000) * 1000;
    evtimer_add(timer_.get(), &tv);
  }

  void start_tls() override { tls_requested_ = true; }

 private:
  static SessionPolicy make_policy(const Pop3Settings& settings, bool loopback, bool tls_active,
                                   bool tls_available, const std::string& apop_banner) {
    SessionPolicy p;
    p.tls_active = tls_active;
    p.tls_available = tls_available;
    p.plaintext_auth_allowed = settings.plaintext_login == PlaintextLogin::kAlways ||
                               (settings.plaintext_login == PlaintextLogin::kLoopback && loopback);
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) == 0) p.greeting_host = host;
    p.apop_banner = apop_banner;
    p.expire_days = settings.expire_days;
    if (settings.login_delay.count() > 0) {
      p.login_delay_secs = static_cast<std::uint32_t>(settings.login_delay.count());
    }
    return p;
  }

  void set_timeouts() {
    struct timeval idle {};
    idle.tv_sec = server_.settings_.idle_timeout.count();
    bufferevent_set_timeouts(bev_.get(), &idle, &idle);
  }

  void send(const std::string& out) {
    if (!out.empty()) bufferevent_write(bev_.get(), out.data(), out.size());
  }

  void after_session_step(bool alive, std::string& out) {
    send(out);
    if (!alive || session_.finished()) {
      closing_ = true;
      bufferevent_disable(bev_.get(), EV_READ);
    }
    if (tls_requested_ && !closing_) upgrade_to_tls();
    if (session_.streaming()) {
      bufferevent_setwatermark(bev_.get(), EV_WRITE, kOutputLowWater, 0);
    }
    maybe_finish();
  }

  void maybe_finish() {
    if (!closing_) return;
    std::size_t pending = evbuffer_get_length(bufferevent_get_output(bev_.get()));
    // After STLS the TLS filter hands its output to the plain bufferevent underneath; the
    // last reply is out only when that one is empty too.
    if (bufferevent* under = bufferevent_get_underlying(bev_.get())) {
      pending += evbuffer_get_length(bufferevent_get_output(under));
    }
    if (pending == 0 && tls_ && !close_notify_sent_) {
      // End TLS properly (close_notify), so the client can tell our close from a cut.
      close_notify_sent_ = true;
      if (SSL* ssl = bufferevent_openssl_get_ssl(bev_.get())) SSL_shutdown(ssl);
      pending = 1;  // look again once that has been written
    }
    if (pending == 0) {
      server_.remove(this);
      return;
    }
    struct timeval soon {0, 20000};
    evtimer_add(flush_timer_.get(), &soon);
  }

  static void on_flush_timer(evutil_socket_t, short, void* arg) {
    static_cast<Connection*>(arg)->maybe_finish();
  }

  void upgrade_to_tls() {
    tls_requested_ = false;
    SSL* ssl = SSL_new(server_.tls_);
    if (ssl == nullptr) {
      log_error(id_, "SSL_new: %s", tls_error_text().c_str());
      closing_ = true;
      return;
    }
    // The filter writes through the plain bufferevent, after the "+OK" already queued there.
    bufferevent* filter = bufferevent_openssl_filter_new(
        server_.base_, bev_.get(), ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (filter == nullptr) {
      SSL_free(ssl);
      closing_ = true;
      return;
    }
    bev_.release();  // now owned by the filter
    bev_.reset(filter);
    tls_ = true;
    bufferevent_setcb(bev_.get(), &Connection::on_read, &Connection::on_write,
                      &Connection::on_event, this);
    set_timeouts();
    bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
    std::string out;
    session_.tls_started(out);
    send(out);
  }

  // System accounts: the session now lives in a process of the user's (privsep.h); from here
  // on this connection only relays bytes both ways, holding back when the client reads slowly.
  void start_relay(UniqueFd socket) {
    relay_.reset(bufferevent_socket_new(server_.base_, socket.release(), BEV_OPT_CLOSE_ON_FREE));
    if (!relay_) {
      closing_ = true;
      maybe_finish();
      return;
    }
    bufferevent_setcb(relay_.get(), &Connection::on_relay_read, nullptr, &Connection::on_relay_event,
                      this);
    bufferevent_enable(relay_.get(), EV_READ | EV_WRITE);
    std::string early = session_.take_buffered_input();  // commands pipelined after PASS
    if (!early.empty()) bufferevent_write(relay_.get(), early.data(), early.size());
    evbuffer* in = bufferevent_get_input(bev_.get());
    bufferevent_write_buffer(relay_.get(), in);
    bufferevent_setwatermark(bev_.get(), EV_WRITE, kOutputLowWater, 0);
  }

  static void on_relay_read(bufferevent* relay, void* arg) {
    auto* self = static_cast<Connection*>(arg);
    bufferevent_write_buffer(self->bev_.get(), bufferevent_get_input(relay));
    if (evbuffer_get_length(bufferevent_get_output(self->bev_.get())) > kRelayHighWater) {
      bufferevent_disable(relay, EV_READ);
    }
  }

  static void on_relay_event(bufferevent*, short what, void* arg) {
    auto* self = static_cast<Connection*>(arg);
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
      // The session process said its last word (QUIT): send it, then close.
      self->closing_ = true;
      bufferevent_disable(self->bev_.get(), EV_READ);
      self->maybe_finish();
    }
  }

  static void on_read(bufferevent* bev, void* arg) {
    auto* self = static_cast<Connection*>(arg);
    evbuffer* in = bufferevent_get_input(bev);
    if (self->relay_) {
      bufferevent_write_buffer(self->relay_.get(), in);
      return;
    }
    if (self->closing_) {
      evbuffer_drain(in, evbuffer_get_length(in));
      return;
    }
    std::string out;
    bool alive = self->feed_session(out);
    self->after_session_step(alive, out);
  }

  // Gives the session the input that waits, but none while it is sending a message or held
  // back output: that input stays in the socket buffer (bounded by TCP) until pump() is done.
  bool feed_session(std::string& out) {
    evbuffer* in = bufferevent_get_input(bev_.get());
    bool alive = true;
    while (alive && evbuffer_get_length(in) > 0 && !tls_requested_ && !session_.streaming() &&
           !session_.finished()) {
      char buf[4096];
      int n = evbuffer_remove(in, buf, sizeof buf);
      if (n <= 0) break;
      alive = session_.process(std::string_view(buf, static_cast<std::size_t>(n)), out);
    }
    // Stop reading from the socket while a stream is pending; on_write resumes.
    if (session_.streaming()) {
      bufferevent_disable(bev_.get(), EV_READ);
    } else if (!closing_) {
      bufferevent_enable(bev_.get(), EV_READ);
    }
    return alive;
  }

  static void on_write(bufferevent* bev, void* arg) {
    auto* self = static_cast<Connection*>(arg);
    if (self->relay_) {
      bufferevent_enable(self->relay_.get(), EV_READ);
      self->maybe_finish();
      return;
    }
    if (self->session_.streaming()) {
      std::string out;
      bool more = self->session_.pump(out, kPumpPiece);
      bool alive = true;
      if (!more) {
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        // Commands the client pipelined behind the stream wait in the input buffer.
        alive = self->feed_session(out);
      }
      self->after_session_step(alive, out);
      return;
    }
    self->maybe_finish();
  }

  static void on_event(bufferevent*, short what, void* arg) {
    auto* self = static_cast<Connection*>(arg);
    if (what & BEV_EVENT_TIMEOUT) {
      log_info(self->id_, "idle timeout, closing");
    } else if (what & BEV_EVENT_ERROR) {
      unsigned long tls_error = bufferevent_get_openssl_error(self->bev_.get());
      if (tls_error != 0) {
        char buf[256];
        ERR_error_string_n(tls_error, buf, sizeof buf);
        log_notice(self->id_, "TLS error: %s", buf);
      }
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
      if (!self->closing_) log_info(self->id_, "disconnected");
      self->server_.remove(self);
    }
  }

  static void on_timer(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Connection*>(arg);
    if (self->pending_.session_socket) {
      self->start_relay(std::move(self->pending_.session_socket));
      self->pending_ = LoginOutcome();
      return;
    }
    std::string out;
    self->session_.auth_result(self->pending_.outcome, std::move(self->pending_.maildrop), out);
    self->pending_ = LoginOutcome();
    bool alive = self->feed_session(out);
    self->after_session_step(alive, out);
  }

  Pop3Server& server_;
  BufferEvent relay_;  // to the session process, once a system account has logged in
  BufferEvent bev_;
  std::string peer_;
  std::string id_;
  std::string apop_banner_;  // before session_: the session's policy is made from it
  Session session_;
  Event timer_;
  Event flush_timer_;  // polls for the end of output that a TLS filter passed down
  LoginOutcome pending_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  bool tls_requested_ = false;
  bool tls_ = false;
  bool closing_ = false;
  bool close_notify_sent_ = false;

 public:
  const std::string& peer() const { return peer_; }
  // Stops every callback: the object is about to be freed from the event loop.
  void detach() {
    if (relay_) bufferevent_setcb(relay_.get(), nullptr, nullptr, nullptr, nullptr);
    bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
    bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
    event_del(timer_.get());
    event_del(flush_timer_.get());
  }
};

Pop3Server::Pop3Server(event_base* base, const Pop3Settings& settings, Authenticator& auth,
                       SSL_CTX* tls)
    : base_(base),
      settings_(settings),
      auth_(auth),
      tls_(tls),
      limits_(settings.max_sessions, settings.max_sessions_per_address),
      failures_(settings.failed_login_delay, settings.failed_login_delay_max,
                std::chrono::seconds(900)) {}

Pop3Server::~Pop3Server() = default;

Status Pop3Server::listen(std::vector<BoundListener>& listeners) {
  for (BoundListener& l : listeners) {
    bool implicit_tls = l.tag == "pop3s";
    // One pointer per listener kind: the callback needs to know whether TLS starts at once.
    evconnlistener* listener = evconnlistener_new(
        base_, &Pop3Server::on_accept, this, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0,
        l.fd.release());
    if (listener == nullptr) return Error::temporary(71, "4.3.0", "evconnlistener_new failed");
    listeners_.emplace_back(listener);
    listener_tls_.push_back(implicit_tls);
    log_info("-", "listening on %s (%s)", l.address.to_string().c_str(), l.tag.c_str());
  }
  return {};
}

void Pop3Server::on_accept(evconnlistener* listener, evutil_socket_t fd, sockaddr* addr, int,
                           void* arg) {
  auto* self = static_cast<Pop3Server*>(arg);
  bool implicit_tls = false;
  for (std::size_t i = 0; i < self->listeners_.size(); ++i) {
    if (self->listeners_[i].get() == listener) implicit_tls = self->listener_tls_[i];
  }
  self->accept(fd, addr, implicit_tls);
}

void Pop3Server::accept(evutil_socket_t fd, const sockaddr* addr, bool implicit_tls) {
  const std::string peer = address_text(addr);
  if (!limits_.admit(peer)) {
    static constexpr char kBusy[] = "-ERR [SYS/TEMP] too many sessions, try again later\r\n";
    [[maybe_unused]] ssize_t ignored = ::send(fd, kBusy, sizeof kBusy - 1, MSG_NOSIGNAL);
    ::close(fd);
    log_notice("-", "refused %s: session limit", peer.c_str());
    return;
  }
  evutil_make_socket_nonblocking(fd);
  if (addr->sa_family == AF_INET || addr->sa_family == AF_INET6) {
    // Replies are written whole; Nagle would hold the tail of each one until the client's
    // delayed ACK, some 40 ms per command.
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  bufferevent* bev = nullptr;
  if (implicit_tls) {
    SSL* ssl = SSL_new(tls_);
    if (ssl != nullptr) {
      bev = bufferevent_openssl_socket_new(base_, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                           BEV_OPT_CLOSE_ON_FREE);
    }
  } else {
    bev = bufferevent_socket_new(base_, fd, BEV_OPT_CLOSE_ON_FREE);
  }
  if (bev == nullptr) {
    ::close(fd);
    limits_.release(peer);
    return;
  }
  char id[24];
  std::snprintf(id, sizeof id, "pop%llx", static_cast<unsigned long long>(next_id_++));
  auto connection = std::make_unique<Connection>(*this, BufferEvent(bev), peer, is_loopback(addr),
                                                 implicit_tls, id);
  Connection* raw = connection.get();
  connections_.emplace(raw, std::move(connection));
  raw->start();
}

void Pop3Server::serve_connected(int fd, bool implicit_tls, bool exit_when_idle) {
  exit_when_idle_ = exit_when_idle;
  sockaddr_storage ss {};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    ss.ss_family = AF_UNIX;
  }
  accept(fd, reinterpret_cast<sockaddr*>(&ss), implicit_tls);
}

void Pop3Server::remove(Connection* connection) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  limits_.release(connection->peer());
  connection->detach();
  // Freed from the event loop, never from inside the connection's own callback frame.
  auto doomed = std::move(it->second);
  connections_.erase(it);
  event_base_once(
      base_, -1, EV_TIMEOUT,
      [](evutil_socket_t, short, void* p) { delete static_cast<Connection*>(p); },
      doomed.release(), nullptr);
  if (exit_when_idle_ && connections_.empty()) event_base_loopexit(base_, nullptr);
}

}  // namespace mailwright::pop3
