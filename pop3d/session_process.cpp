#include "pop3d/session_process.h"

#include <sysexits.h>

#include "libmail/event_loop.h"
#include "libmail/log.h"
#include "pop3d/pop3_session.h"

namespace mailwright::pop3 {
namespace {

constexpr std::size_t kPiece = 64 * 1024;

class SessionProcess final : public SessionHost {
 public:
  SessionProcess(event_base* base, int fd, const Pop3Settings& settings,
                 std::unique_ptr<Maildrop> maildrop)
      : base_(base),
        bev_(bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE)),
        maildrop_(std::move(maildrop)),
        session_(*this, policy(settings)) {
    struct timeval idle {};
    idle.tv_sec = settings.idle_timeout.count();
    bufferevent_set_timeouts(bev_.get(), &idle, &idle);
  }

  // The login process already did AUTHORIZATION; replay it so the session's state machine
  // stands where the client left it, and send only the reply to PASS.
  void start(const std::string& user) {
    std::string discard;
    session_.process("USER " + user + "\r\n", discard);
    std::string out;
    session_.process("PASS -\r\n", out);
    bufferevent_setcb(bev_.get(), &SessionProcess::on_read, &SessionProcess::on_write,
                      &SessionProcess::on_event, this);
    bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
    after_step(out);
  }

  void authenticate(const std::string&, const std::string&, const std::string&) override {
    std::string out;
    session_.auth_result(AuthOutcome::kOk, std::move(maildrop_), out);
    pending_reply_ += out;
  }
  void start_tls() override {}

 private:
  static SessionPolicy policy(const Pop3Settings& settings) {
    SessionPolicy p;
    p.expire_days = settings.expire_days;
    if (settings.login_delay.count() > 0) {
      p.login_delay_secs = static_cast<std::uint32_t>(settings.login_delay.count());
    }
    p.tls_active = true;  // the client's transport is the login process's business
    p.plaintext_auth_allowed = true;
    return p;
  }

  void after_step(std::string& out) {
    out.insert(0, pending_reply_);
    pending_reply_.clear();
    if (!out.empty()) bufferevent_write(bev_.get(), out.data(), out.size());
    if (session_.streaming()) bufferevent_setwatermark(bev_.get(), EV_WRITE, kPiece / 2, 0);
    if (session_.finished()) {
      bufferevent_disable(bev_.get(), EV_READ);
      finishing_ = true;
    }
    if (finishing_ && evbuffer_get_length(bufferevent_get_output(bev_.get())) == 0) {
      event_base_loopexit(base_, nullptr);
    }
  }

  static void on_read(bufferevent* bev, void* arg) {
    auto* self = static_cast<SessionProcess*>(arg);
    evbuffer* in = bufferevent_get_input(bev);
    std::string out;
    while (evbuffer_get_length(in) > 0 && !self->session_.finished()) {
      char buf[16384];
      int n = evbuffer_remove(in, buf, sizeof buf);
      if (n <= 0) break;
      self->session_.process(std::string_view(buf, static_cast<std::size_t>(n)), out);
    }
    self->after_step(out);
  }

  static void on_write(bufferevent* bev, void* arg) {
    auto* self = static_cast<SessionProcess*>(arg);
    std::string out;
    if (self->session_.streaming()) {
      if (!self->session_.pump(out, kPiece)) bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    }
    self->after_step(out);
  }

  static void on_event(bufferevent*, short what, void* arg) {
    auto* self = static_cast<SessionProcess*>(arg);
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
      // The client left without QUIT: nothing is deleted (RFC 1939 6).
      event_base_loopexit(self->base_, nullptr);
    }
  }

  event_base* base_;
  BufferEvent bev_;
  std::unique_ptr<Maildrop> maildrop_;
  Session session_;
  std::string pending_reply_;
  bool finishing_ = false;
};

}  // namespace

int serve_session_process(int fd, const Pop3Settings& settings, const std::string& user,
                          std::unique_ptr<Maildrop> maildrop) {
  EventBase base = make_event_base();
  SessionProcess process(base.get(), fd, settings, std::move(maildrop));
  process.start(user);
  event_base_dispatch(base.get());
  log_info("-", "session of %s ended", printable(user).c_str());
  return EX_OK;
}

}  // namespace mailwright::pop3
