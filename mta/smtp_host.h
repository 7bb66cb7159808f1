// What every SMTP session of the mta shares (MtaContext: settings, the spool, the account and
// alias lookups, the password check), and the part of smtp::SessionHost that does not depend
// on how the session is driven (SpoolSessionHost: recipients, spool files). The daemon's
// connections and the inetd/stdio session (-bs) derive from it and add committing, AUTH
// and TLS in their own way, so both apply exactly the same policy.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "libmail/accounts.h"
#include "mta/aliases.h"
#include "mta/mta_config.h"
#include "mta/routing.h"
#include "mta/smtp_session.h"
#include "mta/spool.h"

namespace mailwright::mta {

// Checks SMTP AUTH passwords. The answer may come later, from the event loop.
class PasswordChecker {
 public:
  using Done = std::function<void(smtp::AuthResult)>;
  virtual ~PasswordChecker() = default;
  virtual void check(const std::string& user, const std::string& password,
                     const std::string& peer, Done done) = 0;
};

struct MtaContext {
  MtaSettings settings;
  std::unique_ptr<Spool> spool;
  std::unique_ptr<AccountDb> accounts;
  std::optional<AliasTable> aliases;  // nullopt: no alias file
  std::unique_ptr<PasswordChecker> passwords;  // null: no AUTH
  std::optional<TransportTable> transports;    // nullopt: none configured
  std::optional<NextHop> relayhost;            // nullopt: MX lookups

  // The tables route_recipient() needs, pointing into this context.
  RoutingTables routing_tables() const;
  // Whether a local name (lower case) is an account or an alias.
  std::optional<bool> local_name_exists(std::string_view name);
  // Reads the alias file again if it changed (looked at no more than once a second), so an
  // edited file takes effect without a restart; a file with errors keeps the old table.
  void refresh_aliases();
  struct timespec aliases_mtime {};
  std::chrono::steady_clock::time_point aliases_checked{};
};

// Loads the alias file the settings name, or nothing if it does not exist.
Result<std::optional<AliasTable>> load_aliases(const std::string& path);

class SpoolSessionHost : public smtp::SessionHost {
 public:
  SpoolSessionHost(MtaContext& context, std::string log_id)
      : context_(context), log_id_(std::move(log_id)) {}
  ~SpoolSessionHost() override;

  RecipientVerdict check_recipient(const Path& path, bool relay_allowed) override;
  std::optional<bool> local_name_exists(std::string_view name) override;
  bool storage_available(std::uint64_t size) override;
  Status open_message(Envelope& envelope) override;
  Status write_message(std::string_view bytes) override;
  void abort_message() override;
  std::int64_t now() override;

  const std::string& log_id() const { return log_id_; }

 protected:
  // The message written so far, for the driver's commit_message().
  IncomingFile* incoming() { return incoming_ ? &*incoming_ : nullptr; }
  // Hands the message over to be committed elsewhere (another thread): this host no longer
  // touches or discards it.
  std::optional<IncomingFile> take_incoming();
  // After the commit: logs the outcome (durable: the message is in queue/) and forgets the file.
  void committed(const Status& status, bool durable);

  MtaContext& context_;
  std::string log_id_;

 private:
  std::optional<IncomingFile> incoming_;
  Envelope envelope_;  // of the open message, for the log
  std::uint64_t size_ = 0;
};

// The SMTP session policy for a client, from the settings.
smtp::SessionPolicy make_session_policy(const MtaContext& context, const std::string& peer,
                                        bool relay_network, bool submission, bool tls_available,
                                        bool tls_active);

}  // namespace mailwright::mta
