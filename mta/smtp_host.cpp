#include "mta/smtp_host.h"

#include <sys/stat.h>
#include <sysexits.h>

#include <cerrno>
#include <ctime>

#include "libmail/file_io.h"
#include "libmail/log.h"
#include "mta/queue_id.h"

namespace mailwright::mta {

void MtaContext::refresh_aliases() {
  const auto now = std::chrono::steady_clock::now();
  if (settings.aliases.empty() || now - aliases_checked < std::chrono::seconds(1)) return;
  aliases_checked = now;
  struct stat st {};
  if (::stat(settings.aliases.c_str(), &st) != 0) {
    if (errno == ENOENT && aliases) {
      log_notice("-", "alias file %s is gone: no aliases", settings.aliases.c_str());
      aliases.reset();
    }
    return;
  }
  if (st.st_mtim.tv_sec == aliases_mtime.tv_sec && st.st_mtim.tv_nsec == aliases_mtime.tv_nsec) {
    return;
  }
  aliases_mtime = st.st_mtim;
  auto table = AliasTable::load(settings.aliases);
  if (!table) {
    log_error("-", "%s (keeping the aliases read before)", table.error().text().c_str());
    return;
  }
  log_info("-", "alias file %s read: %zu aliases", settings.aliases.c_str(), table->size());
  aliases = std::move(*table);
}

RoutingTables MtaContext::routing_tables() const {
  RoutingTables tables;
  tables.local_domains = &settings.local_domains;
  tables.transports = transports ? &*transports : nullptr;
  tables.relayhost = relayhost ? &*relayhost : nullptr;
  tables.smtp_port = settings.smtp_port;
  return tables;
}

std::optional<bool> MtaContext::local_name_exists(std::string_view name) {
  refresh_aliases();
  if (aliases && aliases->contains(name)) return true;
  if (!accounts) return false;
  auto account = accounts->find(name);
  if (!account) return std::nullopt;
  return account->has_value();
}

Result<std::optional<AliasTable>> load_aliases(const std::string& path) {
  if (path.empty()) return std::optional<AliasTable>();
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::optional<AliasTable>();
    return Error::from_errno(EX_CONFIG, "aliases " + path, errno);
  }
  auto table = AliasTable::load(path);
  if (!table) return table.error();
  return std::optional<AliasTable>(std::move(*table));
}

SpoolSessionHost::~SpoolSessionHost() { SpoolSessionHost::abort_message(); }

RecipientVerdict SpoolSessionHost::check_recipient(const Path& path, bool relay_allowed) {
  RecipientContext rc;
  rc.relay_allowed = relay_allowed;
  rc.local_domains = &context_.settings.local_domains;
  rc.local_name_exists = [this](std::string_view name) {
    return context_.local_name_exists(name);
  };
  RecipientVerdict v = decide_recipient(path, rc);
  if (!v.accepted) {
    log_info(log_id_, "refused rcpt %s: %d %s %s", printable(path.to_string()).c_str(), v.code,
             v.status.c_str(), v.text.c_str());
  }
  return v;
}

std::optional<bool> SpoolSessionHost::local_name_exists(std::string_view name) {
  return context_.local_name_exists(name);
}

bool SpoolSessionHost::storage_available(std::uint64_t size) {
  auto ok = context_.spool->has_free_space(size, context_.settings.spool_reserve);
  if (!ok) {
    log_warning(log_id_, "%s", ok.error().text().c_str());
    return false;
  }
  if (!*ok) log_warning(log_id_, "spool below its free space reserve: refusing mail");
  return *ok;
}

Status SpoolSessionHost::open_message(Envelope& envelope) {
  abort_message();
  envelope.queue_id = new_queue_id();
  auto file = context_.spool->create_incoming(envelope.queue_id);
  if (!file) {
    log_error(log_id_, "%s", file.error().text().c_str());
    return file.error();
  }
  incoming_.emplace(std::move(*file));
  envelope_ = envelope;
  size_ = 0;
  const std::string head = serialize_envelope(envelope);
  if (auto st = write_message(head); !st) return st;
  size_ = 0;
  return {};
}

Status SpoolSessionHost::write_message(std::string_view bytes) {
  if (!incoming_) return Error::temporary(EX_SOFTWARE, "4.3.0", "no message open");
  if (auto st = write_all(incoming_->fd(), bytes); !st) {
    const bool full = st.error().status() == "4.3.1";
    log_error(log_id_, "writing incoming/%s: %s", incoming_->queue_id().c_str(),
              st.error().text().c_str());
    return Error::temporary(EX_TEMPFAIL, full ? "4.3.1" : "4.3.0", "spool write failed");
  }
  size_ += bytes.size();
  return {};
}

void SpoolSessionHost::abort_message() {
  if (!incoming_) return;
  if (!incoming_->committed()) (void)context_.spool->discard(*incoming_);
  incoming_.reset();
}

std::optional<IncomingFile> SpoolSessionHost::take_incoming() {
  std::optional<IncomingFile> file = std::move(incoming_);
  incoming_.reset();
  return file;
}

void SpoolSessionHost::committed(const Status& status, bool durable) {
  if (status && durable) {
    std::string rcpts;
    for (const Recipient& r : envelope_.recipients) {
      if (!rcpts.empty()) rcpts += ',';
      rcpts += r.address;
    }
    log_info(envelope_.queue_id, "from=<%s> size=%llu nrcpt=%zu proto=%s client=%s%s%s to=%s",
             printable(envelope_.sender).c_str(), static_cast<unsigned long long>(size_),
             envelope_.recipients.size(), envelope_.protocol.c_str(),
             envelope_.client_address.empty() ? "local" : envelope_.client_address.c_str(),
             envelope_.auth_user.empty() ? "" : " user=",
             printable(envelope_.auth_user).c_str(), printable(rcpts).c_str());
  } else {
    log_warning(log_id_, "not queued: %s",
                status ? "commit failed" : status.error().text().c_str());
  }
  incoming_.reset();
}

std::int64_t SpoolSessionHost::now() { return static_cast<std::int64_t>(std::time(nullptr)); }

smtp::SessionPolicy make_session_policy(const MtaContext& context, const std::string& peer,
                                        bool relay_network, bool submission, bool tls_available,
                                        bool tls_active) {
  const MtaSettings& s = context.settings;
  smtp::SessionPolicy p;
  p.hostname = s.hostname;
  p.client_address = peer;
  p.tls_available = tls_available;
  p.tls_active = tls_active;
  p.auth_available = context.passwords != nullptr;
  p.submission = submission;
  p.relay_network = relay_network;
  p.local_domains = &s.local_domains;
  p.smtputf8 = s.smtputf8;
  p.normalize_bare_lf = s.normalize_bare_lf;
  p.vrfy = s.vrfy == VrfyMode::kCheck ? smtp::SessionPolicy::Vrfy::kCheck
           : s.vrfy == VrfyMode::kOff ? smtp::SessionPolicy::Vrfy::kOff
                                      : smtp::SessionPolicy::Vrfy::kAmbiguous;
  p.max_message_size = s.max_message_size;
  p.max_recipients = s.max_recipients;
  p.max_line_length = s.max_line_length;
  p.max_errors = s.max_errors;
  return p;
}

}  // namespace mailwright::mta
