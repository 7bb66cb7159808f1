#include "mta/queue_manager.h"

#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>

#include "libmail/ascii.h"
#include "libmail/file_io.h"
#include "libmail/log.h"
#include "mta/dsn.h"
#include "mta/injector.h"
#include "mta/queue_id.h"

namespace mailwright::mta {
namespace {

constexpr std::int64_t kLockedRetry = 60;   // another process holds the message
constexpr std::int64_t kErrorRetry = 300;   // the queue file could not be read
constexpr std::size_t kMaxIncludeFile = 1024 * 1024;

std::int64_t now_seconds() { return static_cast<std::int64_t>(std::time(nullptr)); }

bool is_due(const Recipient& r, std::int64_t now, bool force) {
  if (r.state == DeliveryState::kPending) return true;
  return r.state == DeliveryState::kDeferred && (force || r.next_attempt <= now);
}

std::string lower(std::string s) {
  ascii_lower_in_place(s);
  return s;
}

}  // namespace

std::chrono::seconds retry_delay(std::uint32_t attempts, std::chrono::seconds first,
                                 std::chrono::seconds most) {
  auto delay = first;
  for (std::uint32_t i = 1; i < attempts && delay < most; ++i) delay *= 2;
  return std::min(delay, most);
}

bool QueueFilter::matches(const Envelope& envelope) const {
  if (!id_contains.empty() && envelope.queue_id.find(id_contains) == std::string::npos) {
    return false;
  }
  if (recipient_contains.empty()) return true;
  const std::string want = lower(recipient_contains);
  for (const Recipient& r : envelope.recipients) {
    if (lower(r.address).find(want) != std::string::npos) return true;
  }
  return false;
}

struct QueueManager::Attempt {
  std::string id;
  UniqueFd fd;
  Envelope envelope;
  std::uint64_t body_offset = 0;
  std::uint64_t body_length = 0;
  std::int64_t now = 0;
  bool force = false;
  std::vector<std::optional<DeliveryOutcome>> outcomes;
  int parts = 0;
};

QueueManager::QueueManager(event_base* base, MtaContext& context, QueueSettings settings,
                           LmtpDelivery& local, RemoteDeliverer* remote)
    : base_(base),
      context_(context),
      settings_(settings),
      local_(local),
      remote_(remote),
      timer_(evtimer_new(base, &QueueManager::on_timer, this)),
      rescan_timer_(event_new(base, -1, EV_PERSIST, &QueueManager::on_rescan, this)) {}

QueueManager::~QueueManager() {
  for (Attempt* a : attempts_) delete a;
}

Status QueueManager::start() {
  auto ids = context_.spool->list_queue();
  if (!ids) return ids.error();
  const std::int64_t now = now_seconds();
  for (const std::string& id : *ids) {
    std::size_t offset = 0;
    auto envelope = context_.spool->load_envelope(id, offset);
    std::int64_t when = now;
    if (envelope) {
      std::optional<std::int64_t> soonest;
      for (const Recipient& r : envelope->recipients) {
        if (r.state == DeliveryState::kPending) soonest = now;
        if (r.state == DeliveryState::kDeferred) {
          soonest = std::min(soonest.value_or(r.next_attempt), r.next_attempt);
        }
      }
      when = soonest.value_or(now);
    }
    // delivery_mode = queue: what is queued waits for the first queue run, like new mail.
    if (!settings_.deliver_at_once) when = std::max(when, now + settings_.rescan_interval.count());
    schedule(id, std::max(when, now));
  }
  // New files in queue/ from other processes (mta -bs from inetd, local submission) are seen
  // at once; a rescan now and then catches what inotify could not report (overflow).
  if (settings_.deliver_at_once) inotify_.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (inotify_) {
    const std::string dir = context_.spool->root() + "/queue";
    if (::inotify_add_watch(inotify_.get(), dir.c_str(), IN_MOVED_TO) < 0) {
      log_warning("-", "inotify on %s: %s", dir.c_str(), std::strerror(errno));
      inotify_.reset();
    } else {
      inotify_event_.reset(event_new(base_, inotify_.get(), EV_READ | EV_PERSIST,
                                     &QueueManager::on_inotify, this));
      event_add(inotify_event_.get(), nullptr);
    }
  }
  timeval tv{};
  tv.tv_sec = settings_.rescan_interval.count();
  event_add(rescan_timer_.get(), &tv);
  log_info("-", "queue: %zu messages", items_.size());
  run_due();
  return {};
}

Status QueueManager::run_once(const QueueFilter& filter, std::function<void()> on_done) {
  on_done_ = std::move(on_done);
  auto ids = context_.spool->list_queue();
  if (!ids) return ids.error();
  filter_ = filter;
  run_once_mode_ = true;
  const std::int64_t now = now_seconds();
  for (const std::string& id : *ids) {
    if (!filter.id_contains.empty() && id.find(filter.id_contains) == std::string::npos) continue;
    items_[id].force = true;
    schedule(id, now);
  }
  run_due();
  maybe_done();
  return {};
}

void QueueManager::add(const std::string& id) {
  auto [it, fresh] = items_.try_emplace(id);
  if (!fresh) return;
  schedule(id, now_seconds());
  run_due();
}

void QueueManager::schedule(const std::string& id, std::int64_t when) {
  Item& item = items_[id];
  schedule_.erase({item.next, id});
  item.next = when;
  schedule_.insert({when, id});
  arm_timer();
}

void QueueManager::arm_timer() {
  if (schedule_.empty()) {
    event_del(timer_.get());
    return;
  }
  const std::int64_t wait = std::max<std::int64_t>(0, schedule_.begin()->first - now_seconds());
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(wait);
  evtimer_add(timer_.get(), &tv);
}

void QueueManager::on_timer(evutil_socket_t, short, void* arg) {
  static_cast<QueueManager*>(arg)->run_due();
}

void QueueManager::on_rescan(evutil_socket_t, short, void* arg) {
  static_cast<QueueManager*>(arg)->rescan();
}

void QueueManager::on_inotify(evutil_socket_t fd, short, void* arg) {
  auto* self = static_cast<QueueManager*>(arg);
  alignas(inotify_event) char buf[16 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    for (ssize_t pos = 0; pos < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + pos);
      pos += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      if (ev->mask & IN_Q_OVERFLOW) {
        self->rescan();
        continue;
      }
      if (ev->len == 0) continue;
      const std::string name(ev->name);
      if (is_valid_queue_id(name)) self->add(name);
    }
  }
}

void QueueManager::rescan() {
  auto ids = context_.spool->list_queue();
  if (!ids) {
    log_error("-", "%s", ids.error().text().c_str());
    return;
  }
  for (const std::string& id : *ids) {
    if (items_.count(id) == 0) add(id);
  }
}

void QueueManager::run_due() {
  const std::int64_t now = now_seconds();
  while (active_ < settings_.max_deliveries && !schedule_.empty() &&
         schedule_.begin()->first <= now) {
    const std::string id = schedule_.begin()->second;
    schedule_.erase(schedule_.begin());
    begin(id);
  }
  arm_timer();
}

void QueueManager::begin(const std::string& id) {
  Item& item = items_[id];
  if (item.active) return;
  auto attempt = std::make_unique<Attempt>();
  attempt->id = id;
  attempt->now = now_seconds();
  attempt->force = item.force;
  item.force = false;
  auto fd = context_.spool->open_queue_file(id);
  if (!fd) {
    // Gone: delivered and removed by another process (mta -q) since we listed it.
    items_.erase(id);
    return;
  }
  if (::flock(fd->get(), LOCK_EX | LOCK_NB) != 0) {
    if (!run_once_mode_) schedule(id, attempt->now + kLockedRetry);
    else items_.erase(id);
    return;
  }
  attempt->fd = std::move(*fd);
  std::size_t offset = 0;
  auto envelope = context_.spool->load_envelope(id, offset);
  if (!envelope) {
    log_error(id, "%s", envelope.error().text().c_str());
    if (!envelope.error().is_temporary()) {
      (void)context_.spool->move_to_corrupt(id, envelope.error().text());
      items_.erase(id);
    } else if (!run_once_mode_) {
      schedule(id, attempt->now + kErrorRetry);
    }
    return;
  }
  if (run_once_mode_ && !filter_.matches(*envelope)) {
    items_.erase(id);
    return;
  }
  struct stat st {};
  if (::fstat(attempt->fd.get(), &st) != 0 || static_cast<std::uint64_t>(st.st_size) < offset) {
    log_error(id, "cannot size the queue file");
    if (!run_once_mode_) schedule(id, attempt->now + kErrorRetry);
    return;
  }
  attempt->envelope = std::move(*envelope);
  attempt->body_offset = offset;
  attempt->body_length = static_cast<std::uint64_t>(st.st_size) - offset;
  attempt->outcomes.resize(attempt->envelope.recipients.size());
  item.active = true;
  ++active_;
  Attempt* a = attempt.release();
  attempts_.insert(a);
  dispatch(a);
}

// Routes every due recipient and starts the deliveries; finish() runs when all have answered.
void QueueManager::dispatch(Attempt* a) {
  const Envelope& env = a->envelope;
  RoutingTables tables;
  tables.local_domains = &context_.settings.local_domains;
  tables.transports = context_.transports ? &*context_.transports : nullptr;
  tables.relayhost = context_.relayhost ? &*context_.relayhost : nullptr;
  tables.smtp_port = context_.settings.smtp_port;

  std::map<std::string, std::vector<std::size_t>> local_users;  // user -> recipient indexes
  std::map<std::string, std::vector<std::size_t>> remote;       // hop key -> recipient indexes
  std::map<std::string, std::pair<NextHop, std::string>> hops;  // hop key -> hop, domain
  for (std::size_t i = 0; i < env.recipients.size(); ++i) {
    const Recipient& r = env.recipients[i];
    if (!is_due(r, a->now, a->force)) continue;
    Route route = route_recipient(r.address, tables);
    switch (route.transport.kind) {
      case Transport::Kind::kError: {
        const Transport& t = route.transport;
        const std::string diagnostic = "x-mailwright; " + t.text;
        a->outcomes[i] = t.status[0] == '4' ? DeliveryOutcome::deferred(t.status, diagnostic)
                                            : DeliveryOutcome::failed(t.status, diagnostic);
        break;
      }
      case Transport::Kind::kLocal: {
        auto user = resolve_local(a, i, route.local_name);
        if (user) local_users[*user].push_back(i);
        break;
      }
      case Transport::Kind::kSmtp: {
        const NextHop& hop = route.transport.hop;
        const std::string key = hop.host + "|" + std::to_string(hop.port) +
                                (hop.mx_lookup ? "|mx" : "|a");
        remote[key].push_back(i);
        hops.emplace(key, std::make_pair(hop, route.domain));
        break;
      }
    }
  }

  a->parts = 1;  // held until every part has been started
  if (!local_users.empty()) {
    ++a->parts;
    LmtpJob job;
    job.sender = env.sender;
    job.smtputf8 = env.smtputf8;
    job.message_fd = a->fd.get();
    job.offset = a->body_offset;
    job.length = a->body_length;
    job.log_id = a->id;
    std::vector<std::vector<std::size_t>> who;
    for (auto& [user, indexes] : local_users) {
      job.users.push_back(user);
      who.push_back(indexes);
    }
    job.done = [this, a, who, users = job.users](std::vector<DeliveryOutcome> outcomes) {
      for (std::size_t u = 0; u < who.size() && u < outcomes.size(); ++u) {
        log_info(a->id, "to=<%s> local user=%s %s: %s", 
                 printable(a->envelope.recipients[who[u][0]].address).c_str(),
                 printable(users[u]).c_str(),
                 outcomes[u].kind == DeliveryOutcome::Kind::kDelivered ? "delivered"
                 : outcomes[u].kind == DeliveryOutcome::Kind::kFailed  ? "failed"
                                                                        : "deferred",
                 printable(outcomes[u].diagnostic).c_str());
        for (std::size_t i : who[u]) a->outcomes[i] = outcomes[u];
      }
      part_done(a);
    };
    local_.deliver(std::move(job));
  }
  for (auto& [key, indexes] : remote) {
    if (remote_ == nullptr) {
      for (std::size_t i : indexes) {
        a->outcomes[i] = DeliveryOutcome::deferred("4.4.0", "x-mailwright; no remote delivery");
      }
      continue;
    }
    ++a->parts;
    RemoteDeliverer::Job job;
    job.envelope = &a->envelope;
    job.recipients = indexes;
    job.hop = hops[key].first;
    job.domain = hops[key].second;
    job.message_fd = a->fd.get();
    job.offset = a->body_offset;
    job.length = a->body_length;
    job.log_id = a->id;
    job.done = [this, a, indexes = indexes](std::vector<DeliveryOutcome> outcomes) {
      for (std::size_t k = 0; k < indexes.size() && k < outcomes.size(); ++k) {
        const Recipient& r = a->envelope.recipients[indexes[k]];
        log_info(a->id, "to=<%s> relay=%s %s: %s", printable(r.address).c_str(),
                 outcomes[k].remote_host.empty() ? "none" : outcomes[k].remote_host.c_str(),
                 outcomes[k].kind == DeliveryOutcome::Kind::kDelivered ? "delivered"
                 : outcomes[k].kind == DeliveryOutcome::Kind::kFailed  ? "failed"
                                                                        : "deferred",
                 printable(outcomes[k].diagnostic).c_str());
        a->outcomes[indexes[k]] = outcomes[k];
      }
      part_done(a);
    };
    remote_->deliver(std::move(job));
  }
  part_done(a);  // releases the hold taken above
}

// A local name: through the aliases to the users to hand to mda. Returns the user to deliver
// to, or nullopt when the recipient was dealt with here (expanded into a new message, or an
// error recorded in a->outcomes).
std::optional<std::string> QueueManager::resolve_local(Attempt* a, std::size_t index,
                                                       const std::string& name) {
  const Recipient& r = a->envelope.recipients[index];
  context_.refresh_aliases();
  if (!context_.aliases || !context_.aliases->contains(name)) {
    // RFC 5321 4.5.1: mail for postmaster must reach someone even without an alias: root.
    return name == "postmaster" ? std::string("root") : name;
  }
  auto lookup = [this](std::string_view n) { return context_.aliases->find(n); };
  auto include = [](std::string_view path) -> Result<std::vector<AliasTarget>> {
    auto text = read_small_file(std::string(path), kMaxIncludeFile);
    if (!text) return text.error();
    return parse_include_file(*text, path);
  };
  auto expansion = expand_alias(name, lookup, include);
  if (!expansion) {
    const Error& e = expansion.error();
    const std::string diagnostic = "x-mailwright; alias " + name + ": " + e.text();
    a->outcomes[index] = e.is_temporary() ? DeliveryOutcome::deferred(e.status(), diagnostic)
                                       : DeliveryOutcome::failed(e.status(), diagnostic);
    return std::nullopt;
  }
  const auto& targets = expansion->targets;
  for (const AliasTarget& t : targets) {
    if (t.kind == AliasTarget::Kind::kPipe || t.kind == AliasTarget::Kind::kFile) {
      a->outcomes[index] = DeliveryOutcome::failed(
          "5.3.5", "x-mailwright; alias " + name +
                       ": pipe and file targets are not delivered by this mta; use mda or a "
                       "user's own filter");
      return std::nullopt;
    }
  }
  // One local mailbox: the common "postmaster: root" case, delivered at once.
  if (targets.size() == 1 && targets[0].kind == AliasTarget::Kind::kAddress &&
      targets[0].value.find('@') == std::string::npos) {
    return lower(targets[0].value);
  }
  // Several targets, or a remote one: a new message to the expansion. This recipient is then
  // done ("expanded", RFC 3461 5.2.7.3 (c)); each target is retried and bounced on its own.
  Envelope copy;
  copy.arrival_time = a->now;
  const auto owner = context_.aliases->owner_of(name);
  copy.sender = owner ? *owner + "@" + context_.settings.hostname : a->envelope.sender;
  copy.body = a->envelope.body;
  copy.smtputf8 = a->envelope.smtputf8;
  copy.ret = a->envelope.ret;
  copy.envid = a->envelope.envid;
  copy.protocol = "local";
  for (const AliasTarget& t : targets) {
    Recipient nr;
    nr.address = t.value.find('@') == std::string::npos
                     ? t.value + "@" + context_.settings.hostname
                     : t.value;
    nr.orcpt = r.orcpt;
    nr.notify = r.notify & ~static_cast<unsigned>(kNotifySuccess);
    if (nr.notify == kNotifyNone && r.notify != kNotifyNone) nr.notify = kNotifyNever;
    copy.recipients.push_back(std::move(nr));
  }
  auto queued = queue_new_message(*context_.spool, std::move(copy), {}, a->fd.get(),
                                  a->body_offset, a->body_length);
  if (!queued) {
    a->outcomes[index] =
        DeliveryOutcome::deferred("4.3.0", "x-mailwright; " + queued.error().text());
    return std::nullopt;
  }
  log_info(a->id, "to=<%s> expanded to %zu recipients: %s", printable(r.address).c_str(),
           targets.size(), queued->c_str());
  queued_by_us(*queued);
  a->outcomes[index] = DeliveryOutcome::delivered("x-mailwright; expanded as " + *queued);
  a->outcomes[index]->expanded = true;
  return std::nullopt;
}

void QueueManager::part_done(Attempt* a) {
  if (--a->parts == 0) finish(a);
}

void QueueManager::finish(Attempt* a) {
  std::unique_ptr<Attempt> owner(a);
  attempts_.erase(a);
  Envelope& env = a->envelope;
  const std::int64_t now = now_seconds();
  std::vector<std::size_t> failed, delayed, succeeded;
  bool changed = false;
  for (std::size_t i = 0; i < env.recipients.size(); ++i) {
    if (!a->outcomes[i]) continue;
    Recipient& r = env.recipients[i];
    const DeliveryOutcome& o = *a->outcomes[i];
    changed = true;
    switch (o.kind) {
      case DeliveryOutcome::Kind::kDelivered:
        r.state = DeliveryState::kDelivered;
        r.last_error.clear();
        if (should_notify(r.notify, DsnKind::kSuccess)) succeeded.push_back(i);
        break;
      case DeliveryOutcome::Kind::kFailed:
        r.state = DeliveryState::kFailed;
        r.last_error = o.status + " " + o.diagnostic;
        failed.push_back(i);
        break;
      case DeliveryOutcome::Kind::kDeferred:
        ++r.attempts;
        r.last_error = o.status + " " + o.diagnostic;
        if (now - env.arrival_time >= settings_.max_queue_lifetime.count()) {
          r.state = DeliveryState::kFailed;
          r.last_error += " (gave up: too long in the queue)";
          failed.push_back(i);
          break;
        }
        r.state = DeliveryState::kDeferred;
        r.next_attempt =
            now + retry_delay(r.attempts, settings_.retry_interval, settings_.max_retry_interval)
                      .count();
        if (settings_.delay_warning.count() > 0 && !r.warned &&
            now - env.arrival_time >= settings_.delay_warning.count()) {
          r.warned = true;
          delayed.push_back(i);
        }
        break;
    }
  }
  bool all_final = true;
  std::optional<std::int64_t> next;
  for (const Recipient& r : env.recipients) {
    if (r.state == DeliveryState::kPending || r.state == DeliveryState::kDeferred) {
      all_final = false;
      const std::int64_t when = r.state == DeliveryState::kPending ? now : r.next_attempt;
      next = std::min(next.value_or(when), when);
    }
  }
  // The new states are on disk before anything is reported or removed.
  if (changed && !all_final) {
    if (auto st = context_.spool->write_state(env); !st) {
      log_error(a->id, "%s", st.error().text().c_str());
    }
  }
  notify(a, DsnKind::kFailure, failed);
  notify(a, DsnKind::kDelay, delayed);
  notify(a, DsnKind::kSuccess, succeeded);
  Item& item = items_[a->id];
  item.active = false;
  --active_;
  if (all_final) {
    if (auto st = context_.spool->remove(a->id); !st) {
      log_error(a->id, "%s", st.error().text().c_str());
    } else {
      log_info(a->id, "removed");
    }
    items_.erase(a->id);
  } else if (run_once_mode_) {
    items_.erase(a->id);
  } else {
    schedule(a->id, std::max(next.value_or(now), now));
  }
  a->fd.reset();  // drops the lock
  run_due();
  maybe_done();
}

// Sends the envelope sender a delivery status notification about recipients (RFC 3464).
void QueueManager::notify(Attempt* a, DsnKind kind, const std::vector<std::size_t>& recipients) {
  if (recipients.empty()) return;
  const Envelope& env = a->envelope;
  std::vector<std::size_t> wanted;
  for (std::size_t i : recipients) {
    if (should_notify(env.recipients[i].notify, kind)) wanted.push_back(i);
  }
  if (wanted.empty()) return;
  std::string to = env.sender;
  if (!is_bounce_allowed(to)) {
    // A notification about a notification: RFC 5321 4.5.5 says never to answer it, but a
    // failure is worth a postmaster's look (a "double bounce"), unless it was for the
    // postmaster already.
    if (kind != DsnKind::kFailure) return;
    for (std::size_t i : wanted) {
      if (ascii_istarts_with(env.recipients[i].address, "postmaster")) {
        log_warning(a->id, "double bounce to postmaster dropped");
        return;
      }
    }
    to = "postmaster@" + context_.settings.hostname;
  }
  DsnInput in;
  in.kind = kind;
  in.reporting_mta = context_.settings.hostname;
  in.to = to;
  in.envid = env.envid;
  in.arrival = env.arrival_time;
  in.now = now_seconds();
  in.ret = env.ret;
  in.smtputf8 = env.smtputf8;
  in.unique_id = a->id + std::to_string(static_cast<int>(kind)) + std::to_string(in.now);
  for (std::size_t i : wanted) {
    const Recipient& r = env.recipients[i];
    const DeliveryOutcome& o = *a->outcomes[i];
    DsnRecipient d;
    d.address = r.address;
    d.original = r.orcpt;
    d.action = kind == DsnKind::kFailure ? DsnAction::kFailed
               : kind == DsnKind::kDelay ? DsnAction::kDelayed
               : o.expanded              ? DsnAction::kExpanded
                                         : DsnAction::kDelivered;
    d.status = o.status;
    d.remote_mta = o.remote_host;
    d.diagnostic = o.diagnostic;
    d.last_attempt = in.now;
    if (kind == DsnKind::kDelay) {
      d.will_retry_until = env.arrival_time + settings_.max_queue_lifetime.count();
    }
    in.recipients.push_back(std::move(d));
  }
  // The original: whole when it may be returned, else enough for its header.
  const std::uint64_t want = std::min<std::uint64_t>(a->body_length, in.max_returned + 1);
  std::string original(static_cast<std::size_t>(want), '\0');
  auto got = pread_full(a->fd.get(), original.data(), original.size(),
                        static_cast<off_t>(a->body_offset));
  if (!got) {
    log_error(a->id, "notification not sent: %s", got.error().text().c_str());
    return;
  }
  original.resize(*got);
  in.original = original;
  auto dsn = make_dsn(in);
  if (!dsn) {
    log_error(a->id, "notification not made: %s", dsn.error().text().c_str());
    return;
  }
  Envelope note;
  note.arrival_time = in.now;
  note.sender = "";
  note.body = dsn->body;
  note.smtputf8 = dsn->smtputf8;
  note.protocol = "local";
  Recipient rcpt;
  rcpt.address = to;
  // A notification that fails goes to the postmaster (above); a double bounce never does.
  rcpt.notify = is_bounce_allowed(env.sender) ? kNotifyFailure : kNotifyNever;
  note.recipients.push_back(std::move(rcpt));
  auto queued = queue_new_message(*context_.spool, std::move(note), dsn->message);
  if (!queued) {
    log_error(a->id, "notification not queued: %s", queued.error().text().c_str());
    return;
  }
  log_info(a->id, "sender notification (%s): %s",
           kind == DsnKind::kFailure ? "failure" : kind == DsnKind::kDelay ? "delay" : "success",
           queued->c_str());
  queued_by_us(*queued);
}

// A message this process queued: the daemon would see it through inotify anyway; a queue run
// takes it along unless it was asked for part of the queue only.
void QueueManager::queued_by_us(const std::string& id) {
  if (run_once_mode_ && (!filter_.id_contains.empty() || !filter_.recipient_contains.empty())) {
    return;
  }
  if (items_.count(id) == 0) {
    items_[id].force = run_once_mode_;
    schedule(id, now_seconds());
    // Started from run_due() once the current attempt is out of the way.
    event_active(timer_.get(), EV_TIMEOUT, 0);
  }
}

void QueueManager::maybe_done() {
  if (on_done_ && active_ == 0 && schedule_.empty()) {
    auto done = std::move(on_done_);
    on_done_ = nullptr;
    done();
  }
}

}  // namespace mailwright::mta
