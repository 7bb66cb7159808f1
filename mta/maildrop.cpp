#include "mta/maildrop.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>

#include "libmail/address.h"
#include "libmail/ascii.h"
#include "libmail/file_io.h"
#include "libmail/log.h"
#include "libmail/rfc5322.h"
#include "libmail/unique_fd.h"
#include "mta/injector.h"
#include "mta/queue_id.h"

namespace mailwright::mta {
namespace {

constexpr std::size_t kRandomHex = 32;
constexpr std::int64_t kStaleTemporary = 24 * 3600;
// Room for the Received: field and header fields sendmail adds on top of max_message_size.
constexpr std::uint64_t kDropSlack = 64 * 1024;

Result<std::string> random_hex() {
  unsigned char raw[kRandomHex / 2];
  std::size_t got = 0;
  while (got < sizeof raw) {
    const ssize_t n = ::getrandom(raw + got, sizeof raw - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno(EX_OSERR, "getrandom", errno);
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const unsigned char c : raw) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

bool is_random_part(std::string_view s) {
  return s.size() == kRandomHex &&
         std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool is_temporary_name(std::string_view name) {
  return name.substr(0, 2) == "t." && is_random_part(name.substr(2));
}

// The message as the queue stores it: CRLF lines, no NUL, no bare CR or LF, lines within the
// limit, ending in CRLF unless empty.
std::optional<std::string> wire_text_problem(std::string_view body, std::size_t max_line) {
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c == '\0') return "a NUL octet at offset " + std::to_string(i);
    if (c == '\r') {
      if (i + 1 >= body.size() || body[i + 1] != '\n') {
        return "a CR without LF at offset " + std::to_string(i);
      }
      if (i + 2 - line_start > max_line) return "a line longer than the limit";
      ++i;
      line_start = i + 1;
    } else if (c == '\n') {
      return "an LF without CR at offset " + std::to_string(i);
    }
  }
  if (line_start != body.size()) return "the message does not end with CRLF";
  return std::nullopt;
}

// address as the queue stores it (canonical, no brackets), or nullopt when it is none.
std::optional<std::string> canonical_path(std::string_view address, bool utf8, bool reverse) {
  AddressOptions options;
  options.allow_utf8 = utf8;
  const std::string bracketed = "<" + std::string(address) + ">";
  auto parsed = reverse ? parse_reverse_path(bracketed, options)
                        : parse_forward_path(bracketed, options);
  if (!parsed || parsed->length != bracketed.size()) return std::nullopt;
  const std::string text = parsed->path.to_string();
  return text.substr(1, text.size() - 2);
}

}  // namespace

bool is_drop_name(std::string_view name) {
  return name.size() == kQueueIdLength + 1 + kRandomHex && name[kQueueIdLength] == '.' &&
         is_valid_queue_id(name.substr(0, kQueueIdLength)) &&
         is_random_part(name.substr(kQueueIdLength + 1));
}

bool is_trusted_user(uid_t uid, std::string_view name, uid_t mail_uid,
                     const std::vector<std::string>& trusted_users) {
  if (uid == 0 || uid == mail_uid) return true;
  return std::find(trusted_users.begin(), trusted_users.end(), name) != trusted_users.end();
}

Status drop_message(const std::string& spool_root, const Envelope& envelope,
                    std::string_view message) {
  const std::string where = spool_root + "/maildrop";
  // O_PATH: the user may search maildrop/ but not read it, and needs no more than that to
  // create and rename files in it.
  UniqueFd dir(::open(where.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) {
    const int err = errno;
    const std::string why = where + ": " + std::strerror(err) +
                            " (is the mta installed? `mta -bV` as root checks the spool)";
    if (err == ENOENT || err == ENOTDIR || err == ELOOP) {
      return Error::permanent(EX_CANTCREAT, "5.3.0", why);
    }
    return Error::temporary(EX_TEMPFAIL, "4.3.0", why);
  }
  struct stat st {};
  if (::fstat(dir.get(), &st) != 0) return Error::from_errno(EX_OSERR, "fstat " + where, errno);
  if ((st.st_mode & 07777) != kMaildropMode) {
    return Error::permanent(EX_CONFIG, "5.3.0",
                            where + " must have mode 1733 (sticky, writable by all)");
  }
  auto random = random_hex();
  if (!random) return random.error();
  const std::string temporary = "t." + *random;
  const std::string final_name = envelope.queue_id + "." + *random;
  UniqueFd file(::openat(dir.get(), temporary.c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!file) {
    const int err = errno;
    return Error::temporary(EX_TEMPFAIL, "4.3.0",
                            "create " + where + "/" + temporary + ": " + std::strerror(err));
  }
  bool renamed = false;
  auto fail = [&](const std::string& why) -> Status {
    (void)::unlinkat(dir.get(), (renamed ? final_name : temporary).c_str(), 0);
    return Error::temporary(EX_TEMPFAIL, "4.3.0", where + ": " + why);
  };
  auto fail_errno = [&](const char* what, int err) {
    return fail(std::string(what) + ": " + std::strerror(err));
  };
  const std::string head = serialize_envelope(envelope);
  for (std::string_view part : {std::string_view(head), message}) {
    if (auto written = write_all(file.get(), part); !written) return fail(written.error().text());
  }
  if (::fchmod(file.get(), 0644) != 0) return fail_errno("chmod", errno);
  if (::fsync(file.get()) != 0) return fail_errno("fsync", errno);
  if (::renameat(dir.get(), temporary.c_str(), dir.get(), final_name.c_str()) != 0) {
    return fail_errno("rename", errno);
  }
  renamed = true;
  if (::syncfs(file.get()) != 0) return fail_errno("syncfs", errno);
  return {};
}

Result<PickedUp> accept_dropped(std::string_view file, const DropOwner& owner,
                                const PickupPolicy& policy, std::string_view new_queue_id,
                                std::int64_t now) {
  auto refuse = [](std::string why) { return Error::permanent(EX_DATAERR, "5.6.0", std::move(why)); };
  std::size_t body_offset = 0;
  auto parsed = parse_envelope(file, body_offset);
  if (!parsed) return parsed.error();
  const Envelope& in = *parsed;
  const std::string_view body = file.substr(body_offset);
  if (in.recipients.empty()) return refuse("no recipients");
  if (in.recipients.size() > policy.max_recipients) return refuse("too many recipients");
  if (policy.max_message_size != 0 && body.size() > policy.max_message_size) {
    return refuse("larger than max_message_size");
  }
  if (auto problem = wire_text_problem(body, policy.max_line_length)) return refuse(*problem);

  PickedUp out;
  Envelope& e = out.envelope;
  e.arrival_time = now;
  e.body = in.body;
  e.smtputf8 = in.smtputf8;
  e.ret = in.ret;
  e.envid = in.envid;
  e.auth_user = owner.name;
  out.claimed_sender = in.sender;
  auto sender = owner.trusted ? canonical_path(in.sender, true, true)
                              : canonical_path(owner.name + "@" + policy.hostname, false, true);
  if (!sender) {
    return refuse(owner.trusted ? "the envelope sender is not an address"
                                : "the user name makes no address");
  }
  e.sender = std::move(*sender);
  if (!is_ascii(e.sender)) e.smtputf8 = true;
  for (const Recipient& r : in.recipients) {
    Recipient clean;
    auto address = canonical_path(r.address, true, false);
    if (!address) return refuse("a recipient is not an address");
    clean.address = std::move(*address);
    if (!is_ascii(clean.address)) e.smtputf8 = true;
    clean.orcpt = r.orcpt;
    clean.notify = r.notify;
    e.recipients.push_back(std::move(clean));
  }
  out.received = "Received: by " + policy.hostname + " (Mailwright, from user " + owner.name +
                 ", uid " + std::to_string(owner.uid) + ")\r\n\tid " + std::string(new_queue_id) +
                 "; " + format_rfc5322_date(static_cast<std::time_t>(now)) + "\r\n";
  out.body_offset = body_offset;
  return out;
}

namespace {

Result<DropOwner> owner_of(const struct stat& st, const std::vector<std::string>& trusted_users) {
  passwd pw{};
  passwd* found = nullptr;
  std::string buf(16384, '\0');
  if (::getpwuid_r(st.st_uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return Error::permanent(EX_NOUSER, "5.1.8",
                            "uid " + std::to_string(st.st_uid) + " has no passwd entry");
  }
  DropOwner owner;
  owner.uid = st.st_uid;
  owner.name = pw.pw_name;
  owner.trusted = is_trusted_user(st.st_uid, owner.name, ::geteuid(), trusted_users);
  return owner;
}

// One finished file; an error means the file is hostile or broken and goes to corrupt/.
// Returns the queue id, or "" when the file was not (or no longer) ours to take.
Result<std::string> pick_one(Spool& spool, const std::string& name, const PickupPolicy& policy,
                             const std::vector<std::string>& trusted_users) {
  auto fd = spool.open_maildrop(name);
  if (!fd) {
    // Gone meanwhile (another pickup took it), or a file the mail user may not read, which no
    // sendmail wrote: a link to somebody else's file, or one made unreadable.
    if (fd.error().exit_code() == EX_NOINPUT) return std::string();
    return Error::permanent(EX_DATAERR, "5.3.0", fd.error().text());
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return Error::from_errno(EX_IOERR, "fstat", errno);
  if (!S_ISREG(st.st_mode)) return Error::permanent(EX_DATAERR, "5.3.0", "not a regular file");
  // Held while the file is queued: a second pickup (daemon and mta -q) waits its turn and then
  // sees the link count 0.
  if (::flock(fd->get(), LOCK_EX | LOCK_NB) != 0) return std::string();
  if (::fstat(fd->get(), &st) != 0) return Error::from_errno(EX_IOERR, "fstat", errno);
  if (st.st_nlink == 0) return std::string();
  if (st.st_nlink != 1) return Error::permanent(EX_DATAERR, "5.3.0", "more than one link");
  auto owner = owner_of(st, trusted_users);
  if (!owner) return owner.error();
  const std::uint64_t limit = (policy.max_message_size == 0 ? (1ULL << 34)
                                                            : policy.max_message_size) +
                              kMaxEnvelope + kDropSlack;
  if (static_cast<std::uint64_t>(st.st_size) > limit) {
    return Error::permanent(EX_DATAERR, "5.3.4", "from " + owner->name + ": too large");
  }
  // Read one octet past the size: the owner may still be writing through an open descriptor.
  std::string data(static_cast<std::size_t>(st.st_size) + 1, '\0');
  auto n = pread_full(fd->get(), data.data(), data.size(), 0);
  if (!n) return n.error();
  if (*n != static_cast<std::size_t>(st.st_size)) {
    return Error::permanent(EX_DATAERR, "5.3.0", "from " + owner->name + ": changed while read");
  }
  data.resize(*n);
  const std::string id = new_queue_id();
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  auto picked = accept_dropped(data, *owner, policy, id, now);
  if (!picked) return picked.error().with_context("from " + owner->name);
  if (!owner->trusted && picked->claimed_sender != picked->envelope.sender) {
    log_notice(id, "user %s may not set the sender <%s>: using <%s>", owner->name.c_str(),
               printable(picked->claimed_sender).c_str(), picked->envelope.sender.c_str());
  }
  Envelope envelope = std::move(picked->envelope);
  envelope.queue_id = id;
  std::string text = std::move(picked->received);
  text.append(data, picked->body_offset, std::string::npos);
  const std::string sender = envelope.sender;
  auto queued = queue_message_as(spool, std::move(envelope), text);
  if (!queued) return queued.error();
  log_info(id, "from=<%s> uid=%u user=%s: picked up from maildrop", printable(sender).c_str(),
           static_cast<unsigned>(owner->uid), owner->name.c_str());
  if (auto removed = spool.remove_maildrop(name); !removed) {
    log_error(id, "%s (the message may be queued twice)", removed.error().text().c_str());
  }
  return id;
}

}  // namespace

Status pickup_maildrop(Spool& spool, const PickupPolicy& policy,
                       const std::vector<std::string>& trusted_users,
                       const std::function<void(const std::string&)>& queued) {
  auto names = spool.list_maildrop();
  if (!names) return names.error();
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  for (const std::string& name : *names) {
    if (is_temporary_name(name)) {
      // A sendmail that died before its rename: its author got no exit 0 for it. Such a file
      // may still be 0600, which the mail user cannot open, but can look at and remove.
      auto st = spool.stat_maildrop(name);
      if (st && now - st->st_mtime > kStaleTemporary) (void)spool.remove_maildrop(name);
      continue;
    }
    Result<std::string> id = is_drop_name(name)
                                 ? pick_one(spool, name, policy, trusted_users)
                                 : Result<std::string>(Error::permanent(
                                       EX_DATAERR, "5.3.0", "not a submission's name"));
    if (!id) {
      if (id.error().is_temporary()) {
        log_error("-", "maildrop/%s: %s", printable(name).c_str(), id.error().text().c_str());
        continue;
      }
      if (auto moved = spool.maildrop_to_corrupt(name, id.error().text()); !moved) {
        log_error("-", "%s", moved.error().text().c_str());
      }
      continue;
    }
    if (!id->empty()) queued(*id);
  }
  return {};
}

MaildropPickup::MaildropPickup(event_base* base, Spool& spool, PickupPolicy policy,
                               std::vector<std::string> trusted_users,
                               std::function<void(const std::string&)> queued,
                               std::chrono::seconds rescan)
    : base_(base),
      spool_(spool),
      policy_(std::move(policy)),
      trusted_users_(std::move(trusted_users)),
      queued_(std::move(queued)),
      rescan_(rescan) {}

Status MaildropPickup::start() {
  inotify_.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  const std::string dir = spool_.root() + "/maildrop";
  if (!inotify_ || ::inotify_add_watch(inotify_.get(), dir.c_str(), IN_MOVED_TO) < 0) {
    log_warning("-", "inotify on %s: %s; local submissions wait for the rescan", dir.c_str(),
                std::strerror(errno));
    inotify_.reset();
  } else {
    inotify_event_.reset(event_new(base_, inotify_.get(), EV_READ | EV_PERSIST,
                                   &MaildropPickup::on_inotify, this));
    event_add(inotify_event_.get(), nullptr);
  }
  rescan_timer_.reset(event_new(base_, -1, EV_PERSIST, &MaildropPickup::on_rescan, this));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(std::max<std::int64_t>(1, rescan_.count()));
  event_add(rescan_timer_.get(), &tv);
  run();
  return {};
}

void MaildropPickup::on_inotify(evutil_socket_t fd, short, void* arg) {
  auto* self = static_cast<MaildropPickup*>(arg);
  alignas(inotify_event) char buf[16 * 1024];
  bool any = false;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    any = true;
  }
  // Whatever the events say, one pass over the directory takes every finished file.
  if (any) self->run();
}

void MaildropPickup::on_rescan(evutil_socket_t, short, void* arg) {
  static_cast<MaildropPickup*>(arg)->run();
}

void MaildropPickup::run() {
  if (auto st = pickup_maildrop(spool_, policy_, trusted_users_, queued_); !st) {
    log_error("-", "pickup: %s", st.error().text().c_str());
  }
}

}  // namespace mailwright::mta
