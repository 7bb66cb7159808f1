#include "mta/smtp_server.h"

#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "libmail/listen_address.h"
#include "libmail/log.h"

namespace mailwright::mta {
namespace {

// Unread input a waiting session may hold before the socket is no longer read.
constexpr std::size_t kMaxHeldInput = 256 * 1024;
constexpr int kCommitPriority = 2;  // of 3: after every connection's events of the round

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

}  // namespace

class SmtpConnection final : public SpoolSessionHost {
 public:
  SmtpConnection(SmtpServer& server, BufferEvent bev, std::string peer, std::string id,
                 smtp::SessionPolicy policy, bool implicit_tls)
      : SpoolSessionHost(server.context_, std::move(id)),
        server_(server),
        bev_(std::move(bev)),
        peer_(std::move(peer)),
        session_(*this, std::move(policy)),
        timer_(evtimer_new(server.base_, &SmtpConnection::on_timer, this)),
        flush_timer_(evtimer_new(server.base_, &SmtpConnection::on_flush_timer, this)),
        tls_(implicit_tls) {}

  void start() {
    bufferevent_setcb(bev_.get(), &SmtpConnection::on_read, &SmtpConnection::on_write,
                      &SmtpConnection::on_event, this);
    set_timeouts();
    bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
    log_info(log_id_, "connect from %s", peer_.empty() ? "local" : peer_.c_str());
    const auto delay = server_.context_.settings.greeting_delay;
    if (delay.count() > 0 && !tls_) {
      greeting_pending_ = true;
      // The delay is ours, not the client's: command_timeout runs from the greeting on
      // (set_timeouts() again when it is sent), else a delay as long as command_timeout
      // would drop every client before it was greeted.
      timeval limit{};
      limit.tv_sec =
          static_cast<time_t>(delay.count() + server_.context_.settings.command_timeout.count());
      bufferevent_set_timeouts(bev_.get(), &limit, &limit);
      timeval tv = to_timeval(std::chrono::duration_cast<std::chrono::milliseconds>(delay));
      evtimer_add(timer_.get(), &tv);
      return;
    }
    send(session_.greeting());
  }

  // --- SessionHost: the parts that need the event loop --------------------------------------

  void commit_message() override { server_.request_commit(this); }

  std::optional<IncomingFile> file_to_commit() { return take_incoming(); }
  std::uint64_t serial() const { return serial_; }
  void set_serial(std::uint64_t serial) { serial_ = serial; }

  void commit_done(const Status& status, bool durable) {
    committed(status, durable);
    std::string out;
    session_.commit_result(status, out);
    after_step(out);
  }

  void authenticate(const std::string& user, const std::string& password) override {
    std::weak_ptr<int> alive = alive_;
    auth_user_ = user;
    server_.context_.passwords->check(user, password, peer_, [this, alive](smtp::AuthResult r) {
      if (!alive.expired()) on_auth(r);
    });
  }

  void start_tls() override { tls_requested_ = true; }

  const std::string& peer() const { return peer_; }

  void detach() {
    bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
    bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
    event_del(timer_.get());
    event_del(flush_timer_.get());
  }

 private:
  void on_auth(smtp::AuthResult result) {
    std::chrono::milliseconds delay{0};
    if (result == smtp::AuthResult::kOk) {
      server_.failures_.record_success(peer_);
      log_info(log_id_, "auth user=%s", printable(auth_user_).c_str());
    } else {
      if (result == smtp::AuthResult::kBadCredentials) {
        delay = server_.failures_.record_failure(peer_, std::chrono::steady_clock::now());
      }
      log_notice(log_id_, "auth failed user=%s from %s", printable(auth_user_).c_str(),
                 peer_.c_str());
    }
    auth_result_ = result;
    auth_pending_ = true;
    timeval tv = to_timeval(delay);
    evtimer_add(timer_.get(), &tv);
  }

  static void on_timer(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<SmtpConnection*>(arg);
    if (self->greeting_pending_) {
      self->greeting_pending_ = false;
      evbuffer* in = bufferevent_get_input(self->bev_.get());
      if (evbuffer_get_length(in) > 0) {
        // RFC 5321 4.3.1: the client speaks after the greeting. One that does not is a
        // spam engine not listening (or a smuggling attempt).
        log_notice(self->log_id_, "early talker from %s refused", self->peer_.c_str());
        self->send("554 5.5.1 Protocol error: talked before the greeting\r\n");
        self->closing_ = true;
        bufferevent_disable(self->bev_.get(), EV_READ);
        self->maybe_finish();
        return;
      }
      self->send(self->session_.greeting());
      self->set_timeouts();
      return;
    }
    if (self->auth_pending_) {
      self->auth_pending_ = false;
      std::string out;
      self->session_.auth_result(self->auth_result_, out);
      self->after_step(out);
    }
  }

  void set_timeouts() {
    const auto& s = server_.context_.settings;
    timeval tv{};
    tv.tv_sec = session_.in_message() ? s.data_timeout.count() : s.command_timeout.count();
    // Writes get the same bound: a client that stops reading our replies is gone as well.
    bufferevent_set_timeouts(bev_.get(), &tv, &tv);
  }

  void send(const std::string& out) {
    if (!out.empty()) bufferevent_write(bev_.get(), out.data(), out.size());
  }

  static void on_read(bufferevent*, void* arg) { static_cast<SmtpConnection*>(arg)->feed(); }

  void feed() {
    evbuffer* in = bufferevent_get_input(bev_.get());
    if (closing_) {
      evbuffer_drain(in, evbuffer_get_length(in));
      return;
    }
    if (greeting_pending_) return;  // judged when the greeting is due
    std::string out;
    bool alive = true;
    while (alive && !tls_requested_ && !session_.waiting() && evbuffer_get_length(in) > 0) {
      // Read in place, without copying into a buffer of our own first.
      evbuffer_iovec vec[4];
      int n = evbuffer_peek(in, -1, nullptr, vec, 4);
      if (n <= 0) break;
      std::size_t used = 0;
      for (int i = 0; i < n && i < 4 && alive && !tls_requested_ && !session_.waiting(); ++i) {
        alive = session_.process(
            std::string_view(static_cast<const char*>(vec[i].iov_base), vec[i].iov_len), out);
        used += vec[i].iov_len;
      }
      evbuffer_drain(in, used);
    }
    after_step(out, alive);
  }

  void after_step(std::string& out, bool alive = true) {
    send(out);
    if (!alive || session_.finished()) {
      closing_ = true;
      bufferevent_disable(bev_.get(), EV_READ);
      maybe_finish();
      return;
    }
    if (tls_requested_) {
      upgrade_to_tls();
      return;
    }
    set_timeouts();
    const std::size_t held =
        session_.buffered_input() + evbuffer_get_length(bufferevent_get_input(bev_.get()));
    if (session_.waiting() && held > kMaxHeldInput) {
      bufferevent_disable(bev_.get(), EV_READ);
    } else {
      bufferevent_enable(bev_.get(), EV_READ);
      // Input that arrived while the session waited is in the buffer already: no new read
      // event will come for it.
      if (!session_.waiting() &&
          evbuffer_get_length(bufferevent_get_input(bev_.get())) > 0) {
        feed();
      }
    }
  }

  void upgrade_to_tls() {
    tls_requested_ = false;
    SSL* ssl = server_.tls_ != nullptr ? SSL_new(server_.tls_) : nullptr;
    bufferevent* filter = nullptr;
    if (ssl != nullptr) {
      // Plaintext the client sent after STARTTLS is discarded (the session already ignores
      // it; this drops what libevent has read ahead).
      evbuffer* in = bufferevent_get_input(bev_.get());
      evbuffer_drain(in, evbuffer_get_length(in));
      filter = bufferevent_openssl_filter_new(server_.base_, bev_.get(), ssl,
                                              BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
      if (filter == nullptr) SSL_free(ssl);
    }
    if (filter == nullptr) {
      log_error(log_id_, "cannot start TLS: %s", tls_error_text().c_str());
      closing_ = true;
      maybe_finish();
      return;
    }
    bev_.release();  // owned by the filter now
    bev_.reset(filter);
    tls_ = true;
    bufferevent_setcb(bev_.get(), &SmtpConnection::on_read, &SmtpConnection::on_write,
                      &SmtpConnection::on_event, this);
    set_timeouts();
    bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
  }

  static std::string tls_error_text() {
    char buf[256];
    unsigned long e = ERR_get_error();
    if (e == 0) return "unknown error";
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
  }

  void tls_up() {
    SSL* ssl = bufferevent_openssl_get_ssl(bev_.get());
    std::string protocol = ssl != nullptr ? SSL_get_version(ssl) : "TLS";
    std::string cipher = ssl != nullptr ? SSL_get_cipher_name(ssl) : "";
    log_info(log_id_, "TLS %s %s", protocol.c_str(), cipher.c_str());
    std::string out;
    session_.tls_started(std::move(protocol), std::move(cipher), out);
    after_step(out);
  }

  void maybe_finish() {
    if (!closing_) return;
    std::size_t pending = evbuffer_get_length(bufferevent_get_output(bev_.get()));
    if (bufferevent* under = bufferevent_get_underlying(bev_.get())) {
      pending += evbuffer_get_length(bufferevent_get_output(under));
    }
    if (pending == 0 && tls_ && !close_notify_sent_) {
      close_notify_sent_ = true;
      if (SSL* ssl = bufferevent_openssl_get_ssl(bev_.get())) SSL_shutdown(ssl);
      pending = 1;
    }
    if (pending == 0) {
      server_.remove(this);
      return;
    }
    timeval soon{0, 20000};
    evtimer_add(flush_timer_.get(), &soon);
  }

  static void on_flush_timer(evutil_socket_t, short, void* arg) {
    static_cast<SmtpConnection*>(arg)->maybe_finish();
  }

  static void on_write(bufferevent*, void* arg) {
    static_cast<SmtpConnection*>(arg)->maybe_finish();
  }

  static void on_event(bufferevent*, short what, void* arg) {
    auto* self = static_cast<SmtpConnection*>(arg);
    if (what & BEV_EVENT_CONNECTED) {
      if (self->tls_) self->tls_up();
      return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
      log_info(self->log_id_, "timeout, closing");
      if (!self->closing_ && (what & BEV_EVENT_READING)) {
        // RFC 5321 4.5.3.2: say why, then close; a client that does not read this either
        // hits the write timeout and is cut off.
        self->send("421 4.4.2 " + self->server_.context_.settings.hostname +
                   " Timeout; closing the connection\r\n");
        self->session_.input_closed();
        self->closing_ = true;
        self->maybe_finish();
        return;
      }
    } else if (what & BEV_EVENT_ERROR) {
      unsigned long tls_error = bufferevent_get_openssl_error(self->bev_.get());
      if (tls_error != 0) {
        char buf[256];
        ERR_error_string_n(tls_error, buf, sizeof buf);
        log_notice(self->log_id_, "TLS error: %s", buf);
      }
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
      if (!self->closing_) log_info(self->log_id_, "disconnected");
      self->session_.input_closed();
      self->server_.remove(self);
    }
  }

  SmtpServer& server_;
  BufferEvent bev_;
  std::string peer_;
  smtp::Session session_;
  Event timer_;
  Event flush_timer_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::string auth_user_;
  smtp::AuthResult auth_result_ = smtp::AuthResult::kTemporary;
  bool auth_pending_ = false;
  bool greeting_pending_ = false;
  bool tls_requested_ = false;
  bool tls_ = false;
  bool closing_ = false;
  bool close_notify_sent_ = false;
  std::uint64_t serial_ = 0;
};

SmtpServer::SmtpServer(event_base* base, MtaContext& context, SSL_CTX* tls)
    : base_(base),
      context_(context),
      tls_(tls),
      limits_(context.settings.max_sessions, context.settings.max_sessions_per_address),
      failures_(context.settings.failed_login_delay, context.settings.failed_login_delay_max,
                std::chrono::seconds(900)),
      commit_event_(event_new(base, -1, 0, &SmtpServer::on_commit, this)),
      worker_(base, *context.spool,
              [this](CommitWorker::Batch& batch, const Status& status) {
                committed(batch, status);
              }) {
  event_priority_set(commit_event_.get(), kCommitPriority);
}

SmtpServer::~SmtpServer() {
  for (auto& [raw, connection] : connections_) connection->detach();
}

Status SmtpServer::listen(std::vector<BoundListener>& listeners) {
  for (BoundListener& l : listeners) {
    if (l.tag != kSmtpTag && l.tag != kSubmissionTag && l.tag != kSmtpsTag) continue;
    evconnlistener* listener = evconnlistener_new(
        base_, &SmtpServer::on_accept, this, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0,
        l.fd.release());
    if (listener == nullptr) return Error::temporary(EX_OSERR, "4.3.0", "evconnlistener_new failed");
    listeners_.push_back({ConnListener(listener), l.tag});
    log_info("-", "listening on %s (%s)", l.address.to_string().c_str(), l.tag.c_str());
  }
  return {};
}

void SmtpServer::on_accept(evconnlistener* listener, evutil_socket_t fd, sockaddr* addr, int,
                           void* arg) {
  auto* self = static_cast<SmtpServer*>(arg);
  for (const ListenerInfo& info : self->listeners_) {
    if (info.listener.get() == listener) return self->accept(fd, addr, info.tag);
  }
  ::close(fd);
}

void SmtpServer::accept(evutil_socket_t fd, const sockaddr* addr, const std::string& tag) {
  const bool inet = addr->sa_family == AF_INET || addr->sa_family == AF_INET6;
  const std::string peer = inet ? address_text(addr) : std::string();
  if (!limits_.admit(peer)) {
    static constexpr char kBusy[] = "421 4.7.0 Too many connections; try again later\r\n";
    [[maybe_unused]] ssize_t ignored = ::send(fd, kBusy, sizeof kBusy - 1, MSG_NOSIGNAL);
    ::close(fd);
    log_notice("-", "refused %s: session limit", peer.c_str());
    return;
  }
  evutil_make_socket_nonblocking(fd);
  if (inet) {
    // Replies are written whole; Nagle would hold each one until the client's delayed ACK.
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  const bool implicit_tls = tag == kSmtpsTag && tls_ != nullptr;
  bufferevent* bev = nullptr;
  if (implicit_tls) {
    if (SSL* ssl = SSL_new(tls_)) {
      bev = bufferevent_openssl_socket_new(base_, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                           BEV_OPT_CLOSE_ON_FREE);
      if (bev == nullptr) SSL_free(ssl);
    }
  } else {
    bev = bufferevent_socket_new(base_, fd, BEV_OPT_CLOSE_ON_FREE);
  }
  if (bev == nullptr) {
    ::close(fd);
    limits_.release(peer);
    return;
  }
  // A Unix socket or a pipe from inetd is a local client: as trusted as loopback.
  const bool relay_network =
      !inet || address_in_networks(addr, context_.settings.relay_networks);
  const bool submission = tag == kSubmissionTag || tag == kSmtpsTag;
  char id[24];
  std::snprintf(id, sizeof id, "smtp%llx", static_cast<unsigned long long>(next_id_++));
  auto policy = make_session_policy(context_, peer, relay_network && !submission, submission,
                                    tls_ != nullptr, implicit_tls);
  auto connection = std::make_unique<SmtpConnection>(*this, BufferEvent(bev), peer, id,
                                                     std::move(policy), implicit_tls);
  SmtpConnection* raw = connection.get();
  raw->set_serial(next_id_);
  connections_.emplace(raw, std::move(connection));
  raw->start();
}

void SmtpServer::serve_connected(int fd, const std::string& tag) {
  exit_when_idle_ = true;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) ss.ss_family = AF_UNIX;
  accept(fd, reinterpret_cast<sockaddr*>(&ss), tag);
}

void SmtpServer::remove(SmtpConnection* connection) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  limits_.release(connection->peer());
  connection->detach();
  commit_queue_.erase(std::remove(commit_queue_.begin(), commit_queue_.end(), connection),
                      commit_queue_.end());
  auto doomed = std::move(it->second);
  connections_.erase(it);
  // Freed from the event loop, never from inside the connection's own callback frame.
  event_base_once(
      base_, -1, EV_TIMEOUT,
      [](evutil_socket_t, short, void* p) { delete static_cast<SmtpConnection*>(p); },
      doomed.release(), nullptr);
  if (exit_when_idle_ && connections_.empty()) event_base_loopexit(base_, nullptr);
}

void SmtpServer::request_commit(SmtpConnection* connection) {
  commit_queue_.push_back(connection);
  if (commit_queue_.size() == 1) event_active(commit_event_.get(), EV_TIMEOUT, 0);
}

void SmtpServer::on_commit(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<SmtpServer*>(arg);
  // One batch at a time: what asks meanwhile is the next batch, started when this one is done.
  if (self->worker_.busy() || self->commit_queue_.empty()) return;
  CommitWorker::Batch batch;
  for (SmtpConnection* c : self->commit_queue_) {
    if (auto file = c->file_to_commit()) {
      batch.push_back(CommitWorker::Entry{std::move(*file), c, c->serial()});
    } else {
      c->commit_done(Error::temporary(EX_SOFTWARE, "4.3.0", "no message to commit"), false);
    }
  }
  self->commit_queue_.clear();
  if (!batch.empty()) self->worker_.start(std::move(batch));
}

void SmtpServer::committed(CommitWorker::Batch& batch, const Status& batch_status) {
  std::vector<std::string> queued;
  for (CommitWorker::Entry& e : batch) {
    if (e.file.committed()) queued.push_back(e.file.queue_id());
  }
  for (CommitWorker::Entry& e : batch) {
    auto* owner = static_cast<SmtpConnection*>(e.owner);
    // The client may have gone while its message was on the way to the disk (it then never
    // heard 250 and will send it again: the duplicate RFC 5321 6.1 allows, never a loss).
    auto it = connections_.find(owner);
    if (it == connections_.end() || owner->serial() != e.owner_serial) continue;
    const bool durable = e.file.committed();
    Status st = durable ? Status()
                        : (batch_status ? Status(Error::temporary(EX_IOERR, "4.3.0", "not committed"))
                                        : batch_status);
    owner->commit_done(st, durable);
  }
  if (on_queued_) {
    for (const std::string& id : queued) on_queued_(id);
  }
  if (!commit_queue_.empty()) event_active(commit_event_.get(), EV_TIMEOUT, 0);
}

}  // namespace mailwright::mta
