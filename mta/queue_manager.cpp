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
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "libmail/accounts.h"
#include "libmail/ascii.h"
#include "libmail/file_io.h"
#include "libmail/log.h"
#include "mta/dsn.h"
#include "mta/injector.h"
#include "mta/queue_id.h"
#include "mta/relay_policy.h"

namespace mailwright::mta {
namespace {

constexpr std::int64_t kLockedRetry = 60;   // another process holds the message
constexpr std::int64_t kErrorRetry = 300;   // the queue file could not be read
// Delivered-To lines are added at the top: this much of the message always holds ours.
constexpr std::uint64_t kMaxHeaderRead = 256 * 1024;

std::int64_t now_seconds() { return static_cast<std::int64_t>(std::time(nullptr)); }

bool is_due(const Recipient& r, std::int64_t now, bool force) {
  if (r.state == DeliveryState::kPending) return true;
  return r.state == DeliveryState::kDeferred && (force || r.next_attempt <= now);
}

std::string lower(std::string s) {
  ascii_lower_in_place(s);
  return s;
}

const char* verdict(const DeliveryOutcome& o) {
  return o.kind == DeliveryOutcome::Kind::kDelivered ? "delivered"
         : o.kind == DeliveryOutcome::Kind::kFailed  ? "failed"
                                                      : "deferred";
}

}  // namespace

bool has_delivered_to(std::string_view header, std::string_view address) {
  constexpr std::string_view kName = "delivered-to:";
  std::size_t pos = 0;
  while (pos < header.size()) {
    std::size_t end = header.find('\n', pos);
    if (end == std::string_view::npos) end = header.size();
    std::string_view line = header.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // the end of the header section
    if (!ascii_istarts_with(line, kName)) continue;
    std::string_view value = line.substr(kName.size());
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (value.size() >= 2 && value.front() == '<' && value.back() == '>') {
      value = value.substr(1, value.size() - 2);
    }
    if (ascii_iequal(value, address)) return true;
  }
  return false;
}

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

// One local recipient's delivery in this attempt: mailboxes through mda, commands and files
// through the launcher, addresses for a new message (queue_manager.h).
struct QueueManager::Plan {
  struct Target {
    TargetOrigin origin;
    std::string user;  // kForward: whose .forward
    bool program;      // |command, else /file
    std::string value;
  };
  std::string forward_user;  // this user's ~/.forward is read before anything starts
  std::string origin;        // "alias NAME", "~USER/.forward": for the log
  std::vector<std::string> mailboxes;
  std::vector<Target> targets;
  std::vector<Recipient> copy;  // the recipients of a new message
  std::string copy_sender;
  std::string delivered_to;     // the header line a new message starts with, or ""
  std::vector<DeliveryOutcome> settled;  // decided without a delivery
  std::vector<std::optional<DeliveryOutcome>> results;  // per mailbox, then per target
  std::size_t waiting = 0;
  bool done = false;  // a->outcomes[index] is set
};

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
  std::map<std::size_t, Plan> plans;  // local recipients by index
  std::optional<std::string> header;  // header_section()
};

QueueManager::QueueManager(event_base* base, MtaContext& context, QueueSettings settings,
                           LmtpDelivery& local, RemoteDeliverer* remote, PrivilegedClient* ops)
    : base_(base),
      context_(context),
      settings_(settings),
      local_(local),
      remote_(remote),
      ops_(ops),
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
  // With every slot taken there is nothing to wake up for: finish() calls run_due().
  if (schedule_.empty() || active_ >= settings_.max_deliveries) {
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
  const RoutingTables tables = context_.routing_tables();

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
      case Transport::Kind::kLocal:
        plan_local(a, i, route.local_name);
        break;
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
  // The ~/.forward files first (one request per user): they decide what is delivered locally.
  std::set<std::string> readers;
  for (const auto& entry : a->plans) {
    if (!entry.second.forward_user.empty()) readers.insert(entry.second.forward_user);
  }
  if (readers.empty()) {
    start_local(a);
  } else {
    ++a->parts;
    auto answers = std::make_shared<std::map<std::string, ForwardLookup>>();
    const std::size_t count = readers.size();
    for (const std::string& user : readers) {
      ops_->read_forward(user, [this, a, user, answers, count](ForwardLookup lookup) {
        (*answers)[user] = std::move(lookup);
        if (answers->size() < count) return;
        for (auto& entry : a->plans) {
          if (!entry.second.forward_user.empty()) {
            apply_forward(a, entry.first, (*answers)[entry.second.forward_user]);
          }
        }
        start_local(a);
        part_done(a);
      });
    }
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
                 verdict(outcomes[k]), printable(outcomes[k].diagnostic).c_str());
        a->outcomes[indexes[k]] = outcomes[k];
      }
      part_done(a);
    };
    remote_->deliver(std::move(job));
  }
  part_done(a);  // releases the hold taken above
}

bool QueueManager::forward_allowed(const std::string& user) const {
  return ops_ != nullptr && context_.settings.forward_files &&
         !context_.settings.mailbox.file_accounts && is_valid_user_name(user);
}

void QueueManager::decide(Attempt* a, std::size_t index, DeliveryOutcome outcome) {
  a->outcomes[index] = std::move(outcome);
  a->plans[index].done = true;
}

// The recipient of a new message made from an expansion of r.
static Recipient expansion_recipient(const Recipient& r, std::string address, bool mailbox_only) {
  Recipient nr;
  nr.address = std::move(address);
  nr.mailbox_only = mailbox_only;
  nr.orcpt = r.orcpt;
  nr.notify = r.notify & ~static_cast<unsigned>(kNotifySuccess);
  if (nr.notify == kNotifyNone && r.notify != kNotifyNone) nr.notify = kNotifyNever;
  return nr;
}

// A local name: through the aliases to what this attempt delivers (a->plans[index]), or an
// outcome decided at once (a->outcomes[index]).
void QueueManager::plan_local(Attempt* a, std::size_t index, const std::string& name) {
  const Recipient& r = a->envelope.recipients[index];
  context_.refresh_aliases();
  const bool aliased = context_.aliases && context_.aliases->contains(name);
  auto mailbox = [&](const std::string& name_or_postmaster, bool forward) {
    // RFC 5321 4.5.1: mail for postmaster must reach someone even where no alias says who:
    // root.
    const std::string user =
        name_or_postmaster == "postmaster" ? std::string("root") : name_or_postmaster;
    Plan plan;
    plan.mailboxes.push_back(user);
    if (forward && forward_allowed(user)) plan.forward_user = user;
    a->plans[index] = std::move(plan);
  };
  // A mailbox named by an earlier expansion is never expanded again. Its owner's ~/.forward
  // still decides where the mail goes, unless the name is an alias itself ("root: \root, ...":
  // the mailbox proper).
  if (r.mailbox_only) return mailbox(name, !aliased);
  if (!aliased) return mailbox(name, true);
  // "user@" one of our own domains is a local name: written so in an alias file it must take
  // part in the expansion (and its loop detection) as a name, or "admin: admin@ourdomain"
  // would make a new message to itself forever.
  auto localise = [this](std::vector<AliasTarget> targets) {
    for (AliasTarget& t : targets) {
      const auto at = t.value.rfind('@');
      if (t.kind != AliasTarget::Kind::kAddress || at == std::string::npos) continue;
      if (!is_local_domain(std::string_view(t.value).substr(at + 1),
                           context_.settings.local_domains)) {
        continue;
      }
      std::string local = lower(t.value.substr(0, at));
      if (is_valid_alias_name(local)) t.value = std::move(local);
    }
    return targets;
  };
  std::map<std::string, std::vector<AliasTarget>, std::less<>> localised;
  auto lookup = [&](std::string_view n) -> const std::vector<AliasTarget>* {
    if (auto it = localised.find(n); it != localised.end()) return &it->second;
    const std::vector<AliasTarget>* raw = context_.aliases->find(n);
    if (raw == nullptr) return nullptr;
    return &localised.emplace(std::string(n), localise(*raw)).first->second;
  };
  // A regular file only (never a FIFO that would stall the loop), read like the alias file.
  auto include = [&](std::string_view path) -> Result<std::vector<AliasTarget>> {
    auto targets = load_include_file(std::string(path));
    if (!targets) return targets.error();
    return localise(std::move(*targets));
  };
  auto expansion = expand_alias(name, lookup, include);
  if (!expansion) {
    const Error& e = expansion.error();
    const std::string diagnostic = "x-mailwright; alias " + name + ": " + e.text();
    a->outcomes[index] = e.is_temporary() ? DeliveryOutcome::deferred(e.status(), diagnostic)
                                          : DeliveryOutcome::failed(e.status(), diagnostic);
    return;
  }
  const auto& targets = expansion->targets;
  // One local mailbox: the common "postmaster: root" case, delivered at once.
  if (targets.size() == 1 && targets[0].kind == AliasTarget::Kind::kAddress &&
      targets[0].value.find('@') == std::string::npos) {
    const std::string user = lower(targets[0].value);
    return mailbox(user, !context_.aliases->contains(user));
  }
  // Commands and files are delivered in this attempt; addresses (several, or a remote one)
  // become a new message, so each is retried and bounced on its own.
  Plan plan;
  plan.origin = "alias " + name;
  const auto owner = context_.aliases->owner_of(name);
  plan.copy_sender = owner ? *owner + "@" + context_.settings.hostname : a->envelope.sender;
  for (std::size_t k = 0; k < targets.size(); ++k) {
    const AliasTarget& t = targets[k];
    if (t.kind == AliasTarget::Kind::kAddress) {
      // expand_alias has expanded local names all the way down: these are mailboxes now.
      const bool local = t.value.find('@') == std::string::npos;
      plan.copy.push_back(expansion_recipient(
          r, local ? t.value + "@" + context_.settings.hostname : t.value, local));
      continue;
    }
    const std::string shown = (t.kind == AliasTarget::Kind::kPipe ? "|" : "") + t.value;
    auto settle = [&](DeliveryOutcome o) {
      log_info(a->id, "to=<%s> %s \"%s\" (alias %s) %s: %s", printable(r.address).c_str(),
               t.kind == AliasTarget::Kind::kPipe ? "command" : "file", printable(shown).c_str(),
               name.c_str(), verdict(o), printable(o.diagnostic, 512).c_str());
      plan.settled.push_back(std::move(o));
    };
    if (!expansion->include_files[k].empty()) {
      // Postfix's default (allow_mail_to_commands = alias, forward): whoever may write an
      // include file should not thereby run commands as someone else.
      settle(DeliveryOutcome::failed(
          "5.7.1", "x-mailwright; alias " + name + ": " + shown + " comes from " +
                       expansion->include_files[k] +
                       ": commands and files in :include: files are not run"));
    } else if (ops_ == nullptr) {
      settle(DeliveryOutcome::failed(
          "5.3.5", "x-mailwright; alias " + name + ": commands and files are not delivered here"));
    } else if (t.kind == AliasTarget::Kind::kFile && t.value == "/dev/null") {
      settle(DeliveryOutcome::delivered("x-mailwright; /dev/null: discarded"));
    } else {
      plan.targets.push_back(
          {TargetOrigin::kAlias, "", t.kind == AliasTarget::Kind::kPipe, t.value});
    }
  }
  a->plans[index] = std::move(plan);
}

// What ~user/.forward says about a plan that was that user's mailbox.
void QueueManager::apply_forward(Attempt* a, std::size_t index, const ForwardLookup& lookup) {
  Plan& plan = a->plans[index];
  const std::string user = std::exchange(plan.forward_user, std::string());
  const std::string file = "~" + user + "/.forward";
  const Recipient& r = a->envelope.recipients[index];
  auto ignore = [&](const std::string& why) {
    log_warning(a->id, "to=<%s> %s ignored, delivering to the mailbox: %s",
                printable(r.address).c_str(), file.c_str(), printable(why, 512).c_str());
  };
  switch (lookup.kind) {
    case ForwardLookup::Kind::kNone:
      return;
    case ForwardLookup::Kind::kUnsafe:
      return ignore(lookup.text);
    case ForwardLookup::Kind::kError:
      log_warning(a->id, "to=<%s> cannot read %s: %s", printable(r.address).c_str(), file.c_str(),
                  printable(lookup.text).c_str());
      return decide(a, index,
                    DeliveryOutcome::deferred(lookup.status.empty() ? "4.3.0" : lookup.status,
                                              "x-mailwright; cannot read " + file + ": " +
                                                  lookup.text));
    case ForwardLookup::Kind::kFound:
      break;
  }
  auto targets = parse_include_file(lookup.text, file);
  if (!targets) return ignore(targets.error().text());
  // sendmail: an empty .forward is no .forward.
  if (targets->empty()) return;
  for (const AliasTarget& t : *targets) {
    if (t.kind == AliasTarget::Kind::kInclude) return ignore(":include: is not allowed here");
  }
  Plan fwd;
  fwd.origin = file;
  fwd.copy_sender = a->envelope.sender;
  std::set<std::pair<AliasTarget::Kind, std::string>> seen;
  for (const AliasTarget& t : *targets) {
    if (!seen.emplace(t.kind, t.value).second) continue;
    switch (t.kind) {
      case AliasTarget::Kind::kAddress: {
        const std::size_t at = t.value.rfind('@');
        const std::string local = t.value.substr(0, at);
        const auto& domains = context_.settings.local_domains;
        const bool here = at == std::string::npos ||
                          std::find(domains.begin(), domains.end(), t.value.substr(at + 1)) !=
                              domains.end();
        if (here && (t.no_expand || ascii_iequal(local, user))) {
          // "\name", or the user's own name: that mailbox, without a .forward (no loop).
          fwd.mailboxes.push_back(t.no_expand ? local : user);
        } else {
          // Anything else is an address like any other: aliases and .forward apply again.
          fwd.copy.push_back(expansion_recipient(
              r, at == std::string::npos ? t.value + "@" + context_.settings.hostname : t.value,
              false));
        }
        break;
      }
      case AliasTarget::Kind::kPipe:
        fwd.targets.push_back({TargetOrigin::kForward, user, true, t.value});
        break;
      case AliasTarget::Kind::kFile:
        if (t.value == "/dev/null") {
          fwd.settled.push_back(DeliveryOutcome::delivered("x-mailwright; /dev/null: discarded"));
        } else {
          fwd.targets.push_back({TargetOrigin::kForward, user, false, t.value});
        }
        break;
      case AliasTarget::Kind::kInclude:
        break;
    }
  }
  if (!fwd.copy.empty()) {
    // Postfix's loop check: a message forwarded by this .forward before has our header.
    const std::string me = lower(user) + "@" + context_.settings.hostname;
    if (has_delivered_to(header_section(a), me)) {
      log_warning(a->id, "to=<%s> mail forwarding loop for %s", printable(r.address).c_str(),
                  me.c_str());
      return decide(a, index, DeliveryOutcome::failed(
                                  "5.4.6", "x-mailwright; mail forwarding loop for " + me));
    }
    fwd.delivered_to = "Delivered-To: " + me + "\r\n";
  }
  log_info(a->id, "to=<%s> %s: %zu mailboxes, %zu commands and files, %zu addresses",
           printable(r.address).c_str(), file.c_str(), fwd.mailboxes.size(), fwd.targets.size(),
           fwd.copy.size());
  plan = std::move(fwd);
}

// Starts what the plans deliver in this attempt: mailboxes through mda (one LMTP session for
// all), commands and files through the launcher.
void QueueManager::start_local(Attempt* a) {
  std::map<std::string, std::vector<std::pair<std::size_t, std::size_t>>> users;
  std::vector<std::size_t> ready;
  for (auto& entry : a->plans) {
    Plan& plan = entry.second;
    if (plan.done) continue;
    plan.results.assign(plan.mailboxes.size() + plan.targets.size(), std::nullopt);
    plan.waiting = plan.results.size();
    if (plan.waiting == 0) {
      ready.push_back(entry.first);
      continue;
    }
    ++a->parts;
    for (std::size_t k = 0; k < plan.mailboxes.size(); ++k) {
      users[plan.mailboxes[k]].emplace_back(entry.first, k);
    }
  }
  for (std::size_t i : ready) finish_plan(a, i);
  if (!users.empty()) {
    LmtpJob job;
    job.sender = a->envelope.sender;
    job.smtputf8 = a->envelope.smtputf8;
    job.message_fd = a->fd.get();
    job.offset = a->body_offset;
    job.length = a->body_length;
    job.log_id = a->id;
    std::vector<std::vector<std::pair<std::size_t, std::size_t>>> who;
    for (auto& entry : users) {
      job.users.push_back(entry.first);
      who.push_back(entry.second);
    }
    job.done = [this, a, who, users = job.users](std::vector<DeliveryOutcome> outcomes) {
      for (std::size_t u = 0; u < who.size(); ++u) {
        const DeliveryOutcome o = u < outcomes.size()
                                      ? outcomes[u]
                                      : DeliveryOutcome::deferred("4.3.0", "x-mailwright; no answer");
        log_info(a->id, "to=<%s> local user=%s %s: %s",
                 printable(a->envelope.recipients[who[u][0].first].address).c_str(),
                 printable(users[u]).c_str(), verdict(o), printable(o.diagnostic).c_str());
        for (const auto& [i, slot] : who[u]) plan_result(a, i, slot, o);
      }
    };
    local_.deliver(std::move(job));
  }
  for (auto& entry : a->plans) {
    const std::size_t i = entry.first;
    Plan& plan = entry.second;
    if (plan.done) continue;
    for (std::size_t k = 0; k < plan.targets.size(); ++k) {
      const Plan::Target& t = plan.targets[k];
      TargetJob job;
      job.origin = t.origin;
      job.user = t.user;
      job.program = t.program;
      job.target = t.value;
      job.sender = a->envelope.sender;
      job.recipient = a->envelope.recipients[i].address;
      job.message_fd = a->fd.get();
      job.offset = a->body_offset;
      job.length = a->body_length;
      const std::size_t slot = plan.mailboxes.size() + k;
      job.done = [this, a, i, slot](DeliveryOutcome o) {
        const Plan& p = a->plans[i];
        const Plan::Target& target = p.targets[slot - p.mailboxes.size()];
        log_info(a->id, "to=<%s> %s \"%s%s\" (%s) %s: %s",
                 printable(a->envelope.recipients[i].address).c_str(),
                 target.program ? "command" : "file", target.program ? "|" : "",
                 printable(target.value).c_str(), p.origin.c_str(), verdict(o),
                 printable(o.diagnostic, 1200).c_str());
        plan_result(a, i, slot, std::move(o));
      };
      ops_->deliver(std::move(job));
    }
  }
}

void QueueManager::plan_result(Attempt* a, std::size_t index, std::size_t slot,
                               DeliveryOutcome outcome) {
  Plan& plan = a->plans[index];
  plan.results[slot] = std::move(outcome);
  if (--plan.waiting > 0) return;
  finish_plan(a, index);
  part_done(a);
}

// Every part of a plan has answered: the recipient's outcome is the worst of them. Nothing is
// queued for the plan's addresses while a part is deferred: on the retry every part runs again.
void QueueManager::finish_plan(Attempt* a, std::size_t index) {
  Plan& plan = a->plans[index];
  plan.done = true;
  std::vector<DeliveryOutcome> all = plan.settled;
  for (const auto& r : plan.results) {
    all.push_back(r ? *r : DeliveryOutcome::deferred("4.3.0", "x-mailwright; no answer"));
  }
  auto first = [&](DeliveryOutcome::Kind kind) -> const DeliveryOutcome* {
    for (const DeliveryOutcome& o : all) {
      if (o.kind == kind) return &o;
    }
    return nullptr;
  };
  if (const DeliveryOutcome* d = first(DeliveryOutcome::Kind::kDeferred)) {
    a->outcomes[index] = *d;
    return;
  }
  std::optional<std::string> queued;
  if (!plan.copy.empty()) {
    const Recipient& r = a->envelope.recipients[index];
    Envelope copy;
    copy.arrival_time = a->now;
    copy.sender = plan.copy_sender;
    copy.body = a->envelope.body;
    copy.smtputf8 = a->envelope.smtputf8;
    copy.ret = a->envelope.ret;
    copy.envid = a->envelope.envid;
    copy.protocol = "local";
    copy.recipients = plan.copy;
    auto id = queue_new_message(*context_.spool, std::move(copy), plan.delivered_to, a->fd.get(),
                                a->body_offset, a->body_length);
    if (!id) {
      a->outcomes[index] = DeliveryOutcome::deferred("4.3.0", "x-mailwright; " + id.error().text());
      return;
    }
    log_info(a->id, "to=<%s> expanded to %zu recipients: %s", printable(r.address).c_str(),
             plan.copy.size(), id->c_str());
    queued_by_us(*id);
    queued = *id;
  }
  if (const DeliveryOutcome* f = first(DeliveryOutcome::Kind::kFailed)) {
    a->outcomes[index] = *f;
  } else if (queued) {
    // RFC 3461 5.2.7.3 (c): "expanded"; each new recipient is retried and bounced on its own.
    a->outcomes[index] = DeliveryOutcome::delivered("x-mailwright; expanded as " + *queued);
    a->outcomes[index]->expanded = true;
  } else if (all.size() == 1) {
    a->outcomes[index] = all[0];
  } else {
    a->outcomes[index] = DeliveryOutcome::delivered(
        "x-mailwright; delivered to " + std::to_string(all.size()) + " targets");
  }
}

// The message's header section (what the loop check looks at), read once per attempt.
const std::string& QueueManager::header_section(Attempt* a) {
  if (!a->header) {
    std::string head(static_cast<std::size_t>(std::min<std::uint64_t>(a->body_length, kMaxHeaderRead)),
                     '\0');
    auto got = pread_full(a->fd.get(), head.data(), head.size(), static_cast<off_t>(a->body_offset));
    head.resize(got ? *got : 0);
    a->header = std::move(head);
  }
  return *a->header;
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
