#include "mta/privileged_client.h"

#include <sys/socket.h>
#include <sysexits.h>

#include <cerrno>
#include <memory>
#include <optional>

namespace mailwright::mta {
namespace {

// A .forward worker gives up after privileged_ops.cpp's alarm (120 s); a command after
// program_timeout plus its copying slack (300 s).
constexpr std::chrono::seconds kForwardWait{150};
constexpr std::chrono::seconds kTargetSlack{360};

}  // namespace

class PrivilegedClient::Op {
 public:
  Op(PrivilegedClient& owner, std::function<void(Result<OpResult>)> done)
      : owner_(owner), done_(std::move(done)) {}

  // Waits for the worker's packet on fd, at most timeout.
  void wait(UniqueFd fd, std::chrono::seconds timeout) {
    fd_ = std::move(fd);
    event_.reset(event_new(owner_.base_, fd_.get(), EV_READ, &Op::on_event, this));
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count());
    event_add(event_.get(), &tv);
  }
  // Answers with error from the event loop.
  void fail_soon(Error error) {
    early_.emplace(std::move(error));
    event_.reset(evtimer_new(owner_.base_, &Op::on_event, this));
    timeval tv{};
    evtimer_add(event_.get(), &tv);
  }
  std::function<void(Result<OpResult>)>& done() { return done_; }

 private:
  static void on_event(evutil_socket_t, short what, void* arg) {
    auto* self = static_cast<Op*>(arg);
    self->owner_.finished(self, self->outcome(what));
  }

  Result<OpResult> outcome(short what) {
    if (early_) return *early_;
    if ((what & EV_TIMEOUT) != 0) {
      return Error::temporary(EX_TEMPFAIL, "4.3.0", "no answer from the delivery helper in time");
    }
    std::string packet(kMaxResultPacket + 1, '\0');
    ssize_t n;
    do {
      n = ::recv(fd_.get(), packet.data(), packet.size(), MSG_DONTWAIT | MSG_TRUNC);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      return Error::temporary(EX_TEMPFAIL, "4.3.0", "the delivery helper ended without an answer");
    }
    if (static_cast<std::size_t>(n) > kMaxResultPacket) {
      return Error::temporary(EX_PROTOCOL, "4.3.0", "oversized answer from a delivery helper");
    }
    packet.resize(static_cast<std::size_t>(n));
    return decode_result(packet);
  }

  PrivilegedClient& owner_;
  std::function<void(Result<OpResult>)> done_;
  UniqueFd fd_;
  Event event_;
  std::optional<Error> early_;
};

PrivilegedClient::~PrivilegedClient() {
  for (Op* op : ops_) delete op;
}

void PrivilegedClient::start(const std::string& packet, int fd, std::chrono::seconds timeout,
                             std::function<void(Result<OpResult>)> done) {
  auto op = std::make_unique<Op>(*this, std::move(done));
  auto answer = launcher_.request(packet, fd);
  if (answer) {
    op->wait(std::move(*answer), timeout);
  } else {
    op->fail_soon(answer.error());
  }
  ops_.insert(op.release());
}

void PrivilegedClient::finished(Op* op, Result<OpResult> result) {
  std::unique_ptr<Op> owned(op);
  ops_.erase(op);
  auto done = std::move(op->done());
  owned.reset();
  done(std::move(result));
}

void PrivilegedClient::read_forward(const std::string& user,
                                    std::function<void(ForwardLookup)> done) {
  // A lookup for this user is under way: its answer serves this one too.
  auto [waiting, first] = forward_waiting_.try_emplace(user);
  waiting->second.push_back(std::move(done));
  if (!first) return;
  OpRequest req;
  req.type = OpRequest::Type::kReadForward;
  req.user = user;
  auto answer = [this, user](ForwardLookup lookup) {
    auto node = forward_waiting_.extract(user);
    if (node.empty()) return;
    for (auto& waiter : node.mapped()) waiter(lookup);
  };
  start(encode_request(req), -1, kForwardWait, [answer = std::move(answer)](Result<OpResult> r) {
    ForwardLookup out;
    if (!r) {
      // A refused request (5.x.x) is a fault of ours, not a reason to hold mail back forever.
      out.kind = r.error().is_temporary() ? ForwardLookup::Kind::kError
                                          : ForwardLookup::Kind::kUnsafe;
      out.text = r.error().text();
      out.status = r.error().is_temporary() ? r.error().status() : "";
      answer(std::move(out));
      return;
    }
    switch (r->kind) {
      case OpResult::Kind::kNoForward:
        out.kind = ForwardLookup::Kind::kNone;
        break;
      case OpResult::Kind::kUnsafe:
        out.kind = ForwardLookup::Kind::kUnsafe;
        break;
      case OpResult::Kind::kForward:
        out.kind = ForwardLookup::Kind::kFound;
        break;
      default:
        out.kind = ForwardLookup::Kind::kError;
        out.status = r->kind == OpResult::Kind::kDeferred ? r->status : "4.3.0";
        break;
    }
    out.text = std::move(r->text);
    answer(std::move(out));
  });
}

void PrivilegedClient::deliver(TargetJob job) {
  OpRequest req;
  req.type = job.program ? OpRequest::Type::kRunProgram : OpRequest::Type::kAppendFile;
  req.origin = job.origin;
  req.user = job.origin == TargetOrigin::kForward ? job.user : std::string();
  req.target = job.target;
  req.sender = job.sender;
  req.recipient = job.recipient;
  req.offset = job.offset;
  req.length = job.length;
  start(encode_request(req), job.message_fd, program_timeout_ + kTargetSlack,
        [done = std::move(job.done)](Result<OpResult> r) {
          if (!r) {
            const std::string diagnostic = "x-mailwright; " + r.error().text();
            done(r.error().is_temporary()
                     ? DeliveryOutcome::deferred(r.error().status(), diagnostic)
                     : DeliveryOutcome::failed(r.error().status(), diagnostic));
            return;
          }
          const std::string diagnostic = "x-unix; " + r->text;
          switch (r->kind) {
            case OpResult::Kind::kDelivered:
              done(DeliveryOutcome::delivered(diagnostic));
              return;
            case OpResult::Kind::kFailed:
              done(DeliveryOutcome::failed(r->status, diagnostic));
              return;
            case OpResult::Kind::kDeferred:
              done(DeliveryOutcome::deferred(r->status, diagnostic));
              return;
            default:
              done(DeliveryOutcome::deferred("4.3.0", "x-mailwright; unexpected helper answer"));
              return;
          }
        });
}

}  // namespace mailwright::mta
