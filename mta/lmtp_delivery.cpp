#include "mta/lmtp_delivery.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <memory>

#include "libmail/log.h"
#include "mta/smtp_client.h"

namespace mailwright::mta {
namespace {

// A reply of mda's as an outcome; the status is the enhanced code mda sends
// (ENHANCEDSTATUSCODES), or the reply class's generic one.
DeliveryOutcome outcome_of(const SmtpReply& reply) {
  const std::string diagnostic = "smtp; " + reply.to_string();
  if (reply.code >= 200 && reply.code < 300) return DeliveryOutcome::delivered(diagnostic);
  if (reply.code >= 500) return DeliveryOutcome::failed(reply.status(), diagnostic);
  return DeliveryOutcome::deferred(reply.code >= 400 ? reply.status() : "4.3.0", diagnostic);
}

}  // namespace

class LmtpDelivery::Session {
 public:
  explicit Session(LmtpDelivery& owner)
      : owner_(owner), idle_timer_(evtimer_new(owner.base_, &Session::on_idle_timer, this)) {}

  // Starts mda; the first job goes out once it has greeted and answered LHLO.
  void start(LmtpJob job) {
    take(std::move(job));
    auto fd = owner_.launcher_.launch();
    if (!fd) {
      fail_all(fd.error().text());
      return;
    }
    evutil_make_socket_nonblocking(fd->get());
    bev_.reset(bufferevent_socket_new(owner_.base_, fd->release(), BEV_OPT_CLOSE_ON_FREE));
    if (!bev_) {
      fail_all("bufferevent_socket_new failed");
      return;
    }
    bufferevent_setcb(bev_.get(), &Session::on_read, nullptr, &Session::on_event, this);
    timeval tv{};
    tv.tv_sec = owner_.timeout_.count();
    bufferevent_set_timeouts(bev_.get(), &tv, &tv);
    bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
  }

  // Another job on a session that is idle (greeted, between transactions).
  void reuse(LmtpJob job) {
    event_del(idle_timer_.get());
    take(std::move(job));
    send_transaction();
    step_ = Step::kMail;
  }

  std::size_t jobs_done() const { return jobs_done_; }

 private:
  enum class Step { kGreeting, kLhlo, kMail, kRcpt, kData, kIdle, kQuit, kDone };

  void take(LmtpJob job) {
    job_ = std::move(job);
    outcomes_.assign(job_.users.size(), DeliveryOutcome{});
    decided_.assign(job_.users.size(), false);
    accepted_.clear();
    rcpt_index_ = 0;
    data_index_ = 0;
    skip_ = 0;
    has_job_ = true;
  }

  static void on_read(bufferevent*, void* arg) { static_cast<Session*>(arg)->read(); }

  static void on_event(bufferevent*, short what, void* arg) {
    auto* self = static_cast<Session*>(arg);
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
      self->fail_all(what & BEV_EVENT_TIMEOUT ? "timeout talking to mda"
                                             : "mda closed the connection");
    }
  }

  static void on_idle_timer(evutil_socket_t, short, void* arg) {
    // Unused for a while: say goodbye, mda exits.
    auto* self = static_cast<Session*>(arg);
    self->send("QUIT\r\n");
    self->step_ = Step::kQuit;
    self->owner_.not_idle(self);
  }

  void send(const std::string& text) { bufferevent_write(bev_.get(), text.data(), text.size()); }

  void read() {
    evbuffer* in = bufferevent_get_input(bev_.get());
    for (;;) {
      const std::size_t len = evbuffer_get_length(in);
      if (len == 0) return;
      const auto* data = reinterpret_cast<const char*>(evbuffer_pullup(in, -1));
      // The SMTP client's parser: line and line-count limits bound what is buffered.
      SmtpReplyParse parsed = parse_smtp_reply(std::string_view(data, len));
      if (parsed.state == SmtpReplyParse::State::kIncomplete) return;
      if (parsed.state == SmtpReplyParse::State::kError) {
        fail_all("bad reply from mda: " + parsed.error);
        return;
      }
      evbuffer_drain(in, parsed.consumed);
      if (!handle(parsed.reply)) return;
    }
  }

  void decide(std::size_t i, DeliveryOutcome outcome) {
    outcomes_[i] = std::move(outcome);
    decided_[i] = true;
  }

  // Returns false when this object must not be used any more in this call.
  bool handle(const SmtpReply& reply) {
    switch (step_) {
      case Step::kGreeting:
        if (reply.code != 220) return fail_all("mda greeting: " + reply.to_string());
        send("LHLO " + owner_.hostname_ + "\r\n");
        step_ = Step::kLhlo;
        return true;
      case Step::kLhlo:
        if (reply.code != 250) return fail_all("LHLO: " + reply.to_string());
        send_transaction();
        step_ = Step::kMail;
        return true;
      case Step::kMail:
        if (reply.code != 250) {
          // The transaction failed as a whole: each recipient gets MAIL's answer, and mda
          // answers the RCPTs and the BDAT we pipelined with errors we skip.
          for (std::size_t i = 0; i < outcomes_.size(); ++i) {
            decide(i, outcome_of(reply));
          }
          skip_ = job_.users.size() + 1;
          step_ = Step::kData;
          return true;
        }
        step_ = Step::kRcpt;
        return true;
      case Step::kRcpt:
        if (reply.code >= 200 && reply.code < 300) {
          accepted_.push_back(rcpt_index_);
        } else {
          decide(rcpt_index_, outcome_of(reply));
        }
        if (++rcpt_index_ == job_.users.size()) {
          step_ = Step::kData;
          // No recipient accepted: one answer to BDAT (an error), to skip.
          if (accepted_.empty()) skip_ = 1;
          if (skip_ == 0) return true;
        }
        return true;
      case Step::kData:
        if (skip_ > 0) {
          if (--skip_ == 0) return job_done();
          return true;
        }
        // RFC 2033 4.2: one reply per accepted recipient, in RCPT order.
        decide(accepted_[data_index_], outcome_of(reply));
        if (++data_index_ == accepted_.size()) return job_done();
        return true;
      case Step::kIdle:
        return fail_all("unexpected reply from mda");
      case Step::kQuit:
        return close();  // QUIT's 221
      case Step::kDone:
        return false;
    }
    return false;
  }

  void send_transaction() {
    std::string cmds = "MAIL FROM:<" + job_.sender + ">";
    if (job_.smtputf8) cmds += " SMTPUTF8";
    cmds += "\r\n";
    for (const std::string& user : job_.users) cmds += "RCPT TO:<" + user + ">\r\n";
    char bdat[64];
    std::snprintf(bdat, sizeof bdat, "BDAT %" PRIu64 " LAST\r\n", job_.length);
    cmds += bdat;
    send(cmds);
    if (job_.length > 0) {
      // Straight from the queue file; libevent uses sendfile or mmap where it can.
      evbuffer_file_segment* seg = evbuffer_file_segment_new(
          job_.message_fd, static_cast<ev_off_t>(job_.offset),
          static_cast<ev_off_t>(job_.length), 0);
      if (seg == nullptr ||
          evbuffer_add_file_segment(bufferevent_get_output(bev_.get()), seg, 0, -1) != 0) {
        if (seg != nullptr) evbuffer_file_segment_free(seg);
        fail_all("cannot read the queue file");
        return;
      }
      evbuffer_file_segment_free(seg);  // the buffer holds its own reference
    }
  }

  // Every recipient of the job has its answer: report it, then wait for the next job (or end
  // after enough of them, so no mda lives for ever).
  bool job_done() {
    report();
    if (++jobs_done_ >= kJobsPerSession) {
      send("QUIT\r\n");
      step_ = Step::kQuit;
      return true;
    }
    step_ = Step::kIdle;
    timeval tv{kIdleSeconds, 0};
    evtimer_add(idle_timer_.get(), &tv);
    owner_.idle(this);
    return true;
  }

  void report() {
    if (!has_job_) return;
    has_job_ = false;
    auto* call = new Report{std::move(job_.done), std::move(outcomes_)};
    // The caller learns the result from the event loop, never from inside deliver().
    event_base_once(
        owner_.base_, -1, EV_TIMEOUT,
        [](evutil_socket_t, short, void* p) {
          std::unique_ptr<Report> r(static_cast<Report*>(p));
          if (r->done) r->done(std::move(r->outcomes));
        },
        call, nullptr);
  }

  bool fail_all(const std::string& why) {
    if (step_ == Step::kDone) return false;
    if (has_job_) {
      log_warning(job_.log_id, "local delivery: %s", why.c_str());
      for (std::size_t i = 0; i < outcomes_.size(); ++i) {
        if (!decided_[i]) outcomes_[i] = DeliveryOutcome::deferred("4.3.0", "x-local; " + why);
      }
      report();
    }
    return close();
  }

  bool close() {
    step_ = Step::kDone;
    event_del(idle_timer_.get());
    if (bev_) bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
    owner_.finished(this);  // deletes this, later
    return false;
  }

  struct Report {
    std::function<void(std::vector<DeliveryOutcome>)> done;
    std::vector<DeliveryOutcome> outcomes;
  };
  static constexpr std::size_t kJobsPerSession = 1000;
  static constexpr long kIdleSeconds = 10;

  LmtpDelivery& owner_;
  Event idle_timer_;
  LmtpJob job_;
  bool has_job_ = false;
  BufferEvent bev_;
  Step step_ = Step::kGreeting;
  std::vector<DeliveryOutcome> outcomes_;
  std::vector<bool> decided_;
  std::vector<std::size_t> accepted_;
  std::size_t rcpt_index_ = 0;
  std::size_t data_index_ = 0;
  std::size_t skip_ = 0;
  std::size_t jobs_done_ = 0;
};

LmtpDelivery::~LmtpDelivery() {
  for (Session* s : sessions_) delete s;
}

void LmtpDelivery::deliver(LmtpJob job) {
  // An idle mda is reused: no fork, no exec, no LHLO per message.
  if (!idle_.empty()) {
    Session* session = idle_.back();
    idle_.pop_back();
    session->reuse(std::move(job));
    return;
  }
  auto* session = new Session(*this);
  sessions_.push_back(session);
  session->start(std::move(job));
}

void LmtpDelivery::idle(Session* session) { idle_.push_back(session); }

void LmtpDelivery::not_idle(Session* session) {
  idle_.erase(std::remove(idle_.begin(), idle_.end(), session), idle_.end());
}

void LmtpDelivery::finished(Session* session) {
  not_idle(session);
  sessions_.erase(std::remove(sessions_.begin(), sessions_.end(), session), sessions_.end());
  event_base_once(
      base_, -1, EV_TIMEOUT, [](evutil_socket_t, short, void* p) { delete static_cast<Session*>(p); },
      session, nullptr);
}

}  // namespace mailwright::mta
