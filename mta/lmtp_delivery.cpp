#include "mta/lmtp_delivery.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <deque>
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

// Jobs for the same recipients share a session (and mda's lock on their mailbox).
std::string job_key(const LmtpJob& job) {
  std::string key;
  for (const std::string& user : job.users) {
    key += user;
    key += '\n';
  }
  return key;
}

}  // namespace

class LmtpDelivery::Session {
 public:
  explicit Session(LmtpDelivery& owner)
      : owner_(owner), idle_timer_(evtimer_new(owner.base_, &Session::on_idle_timer, this)) {}

  // Starts mda; the jobs go out once it has greeted and answered LHLO.
  void start(LmtpJob job) {
    queue(std::move(job));
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

  // Another job, on a session that is idle or has jobs in flight for the same mailboxes: it is
  // pipelined behind them, and mda makes the lot durable with one sync (mda/lmtp.h).
  void add(LmtpJob job) {
    event_del(idle_timer_.get());
    queue(std::move(job));
    if (step_ == Step::kReady) send_transaction(jobs_.back());
  }

  // Whether job may be pipelined here: the same recipients as the jobs in flight (so a
  // mailbox that is slow to lock holds up no one else's mail), and room left.
  bool takes(const std::string& key) const {
    return step_ != Step::kQuit && step_ != Step::kDone && !jobs_.empty() && key_ == key &&
           jobs_.size() < kPipelineDepth && jobs_taken_ < kJobsPerSession;
  }

 private:
  enum class Step { kGreeting, kLhlo, kReady, kQuit, kDone };

  // One transaction in flight: its replies come in order (MAIL, each RCPT, then BDAT's).
  struct InFlight {
    LmtpJob job;
    std::vector<DeliveryOutcome> outcomes;
    std::vector<bool> decided;
    std::vector<std::size_t> accepted;
    enum class Phase { kMail, kRcpt, kData } phase = Phase::kMail;
    std::size_t rcpt_index = 0;
    std::size_t data_index = 0;
    std::size_t skip = 0;  // replies to skip before the job is done
  };

  void queue(LmtpJob job) {
    key_ = job_key(job);
    InFlight f;
    f.outcomes.assign(job.users.size(), DeliveryOutcome{});
    f.decided.assign(job.users.size(), false);
    f.job = std::move(job);
    jobs_.push_back(std::move(f));
    ++jobs_taken_;
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

  static void decide(InFlight& f, std::size_t i, DeliveryOutcome outcome) {
    f.outcomes[i] = std::move(outcome);
    f.decided[i] = true;
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
        step_ = Step::kReady;
        for (InFlight& f : jobs_) send_transaction(f);
        return true;
      case Step::kReady:
        if (jobs_.empty()) return fail_all("unexpected reply from mda");
        return handle_job(reply);
      case Step::kQuit:
        if (!jobs_.empty()) return handle_job(reply);
        return close();  // QUIT's 221
      case Step::kDone:
        return false;
    }
    return false;
  }

  bool handle_job(const SmtpReply& reply) {
    InFlight& f = jobs_.front();
    const std::size_t users = f.job.users.size();
    switch (f.phase) {
      case InFlight::Phase::kMail:
        if (reply.code != 250) {
          // The transaction failed as a whole: each recipient gets MAIL's answer, and mda
          // answers the RCPTs and the BDAT we pipelined with errors we skip.
          for (std::size_t i = 0; i < users; ++i) decide(f, i, outcome_of(reply));
          f.skip = users + 1;
          f.phase = InFlight::Phase::kData;
          return true;
        }
        f.phase = InFlight::Phase::kRcpt;
        return true;
      case InFlight::Phase::kRcpt:
        if (reply.code >= 200 && reply.code < 300) {
          f.accepted.push_back(f.rcpt_index);
        } else {
          decide(f, f.rcpt_index, outcome_of(reply));
        }
        if (++f.rcpt_index == users) {
          f.phase = InFlight::Phase::kData;
          // No recipient accepted: one answer to BDAT (an error), to skip.
          if (f.accepted.empty()) f.skip = 1;
        }
        return true;
      case InFlight::Phase::kData:
        if (f.skip > 0) {
          if (--f.skip == 0) return job_done();
          return true;
        }
        // RFC 2033 4.2: one reply per accepted recipient, in RCPT order.
        decide(f, f.accepted[f.data_index], outcome_of(reply));
        if (++f.data_index == f.accepted.size()) return job_done();
        return true;
    }
    return true;
  }

  void send_transaction(const InFlight& f) {
    const LmtpJob& job = f.job;
    std::string cmds = "MAIL FROM:<" + job.sender + ">";
    if (job.smtputf8) cmds += " SMTPUTF8";
    cmds += "\r\n";
    for (const std::string& user : job.users) cmds += "RCPT TO:<" + user + ">\r\n";
    char bdat[64];
    std::snprintf(bdat, sizeof bdat, "BDAT %" PRIu64 " LAST\r\n", job.length);
    cmds += bdat;
    send(cmds);
    if (job.length > 0) {
      // Straight from the queue file; libevent uses sendfile or mmap where it can.
      evbuffer_file_segment* seg = evbuffer_file_segment_new(
          job.message_fd, static_cast<ev_off_t>(job.offset), static_cast<ev_off_t>(job.length),
          0);
      if (seg == nullptr ||
          evbuffer_add_file_segment(bufferevent_get_output(bev_.get()), seg, 0, -1) != 0) {
        if (seg != nullptr) evbuffer_file_segment_free(seg);
        // Not from inside add(): the caller learns of it from the loop, as always.
        event_base_once(
            owner_.base_, -1, EV_TIMEOUT,
            [](evutil_socket_t, short, void* p) {
              static_cast<Session*>(p)->fail_all("cannot read the queue file");
            },
            this, nullptr);
        return;
      }
      evbuffer_file_segment_free(seg);  // the buffer holds its own reference
    }
  }

  // Every recipient of the front job has its answer: report it; with no job left, wait for
  // the next one (or end after enough of them, so no mda lives for ever).
  bool job_done() {
    report(jobs_.front());
    jobs_.pop_front();
    if (!jobs_.empty()) return true;
    if (step_ == Step::kQuit) return true;
    if (jobs_taken_ >= kJobsPerSession) {
      send("QUIT\r\n");
      step_ = Step::kQuit;
      return true;
    }
    timeval tv{kIdleSeconds, 0};
    evtimer_add(idle_timer_.get(), &tv);
    owner_.idle(this);
    return true;
  }

  void report(InFlight& f) {
    auto* call = new Report{std::move(f.job.done), std::move(f.outcomes)};
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
    for (InFlight& f : jobs_) {
      log_warning(f.job.log_id, "local delivery: %s", why.c_str());
      for (std::size_t i = 0; i < f.outcomes.size(); ++i) {
        if (!f.decided[i]) f.outcomes[i] = DeliveryOutcome::deferred("4.3.0", "x-local; " + why);
      }
      report(f);
    }
    jobs_.clear();
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
  // mda commits what one read brings in with one sync; 32 transactions make that read large
  // enough for the sync to be shared, and bound what waits behind a slow mailbox.
  static constexpr std::size_t kPipelineDepth = 32;
  static constexpr long kIdleSeconds = 10;

  LmtpDelivery& owner_;
  Event idle_timer_;
  std::deque<InFlight> jobs_;
  std::string key_;  // job_key of the jobs in flight
  BufferEvent bev_;
  Step step_ = Step::kGreeting;
  std::size_t jobs_taken_ = 0;
};

LmtpDelivery::~LmtpDelivery() {
  for (Session* s : sessions_) delete s;
}

void LmtpDelivery::deliver(LmtpJob job) {
  // Behind jobs for the same mailboxes, or on an idle mda (no fork, exec or LHLO per
  // message), or on a new one.
  const std::string key = job_key(job);
  for (Session* session : sessions_) {
    if (session->takes(key)) {
      session->add(std::move(job));
      return;
    }
  }
  if (!idle_.empty()) {
    Session* session = idle_.back();
    idle_.pop_back();
    session->add(std::move(job));
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
