// pop3d's configuration: the mailbox keys it shares with mda (so both agree on where mail
// is), plus the server's own. See pop3d.conf(5).
#pragma once

#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "libmail/config.h"
#include "libmail/listen_address.h"
#include "libmail/mailbox_config.h"

namespace mailwright::pop3 {

inline constexpr std::array kPop3dOnlyKeys{
    ConfigKey{"listen", ConfigType::kList, "127.0.0.1:110, [::1]:110",
              "addresses for POP3 (STLS offered when a certificate is set)"},
    ConfigKey{"listen_tls", ConfigType::kList, "",
              "addresses for POP3S, TLS from the first byte (RFC 8314), e.g. *:995"},
    ConfigKey{"tls_certificate", ConfigType::kPath, "", "PEM certificate chain for STLS and POP3S"},
    ConfigKey{"tls_key", ConfigType::kPath, "", "PEM private key of tls_certificate"},
    ConfigKey{"plaintext_login", ConfigType::kChoice, "loopback",
              "where USER/PASS and AUTH PLAIN work without TLS", "always|loopback|never"},
    ConfigKey{"apop_secrets", ConfigType::kPath, "",
              "name:secret lines; when set, APOP is offered (RFC 1939 7)"},
    ConfigKey{"run_as", ConfigType::kString, "",
              "user the server becomes after binding; empty: virtual_owner, or stay"},
    ConfigKey{"pid_file", ConfigType::kPath, "", "PID file written by the daemon"},
    ConfigKey{"idle_timeout", ConfigType::kDuration, "10m",
              "an idle session is closed after this (RFC 1939: at least 10 minutes)", {}, 30,
              86400},
    ConfigKey{"max_sessions", ConfigType::kInt, "10000", "sessions at once, in all", {}, 1,
              1000000},
    ConfigKey{"max_sessions_per_address", ConfigType::kInt, "20",
              "sessions at once from one client address", {}, 1, 1000000},
    ConfigKey{"failed_login_delay", ConfigType::kDuration, "1s",
              "wait before answering a failed login; doubles per failure from one address", {},
              0, 60},
    ConfigKey{"failed_login_delay_max", ConfigType::kDuration, "16s",
              "longest wait after failed logins", {}, 0, 600},
    ConfigKey{"expire_days", ConfigType::kInt, "-1",
              "CAPA EXPIRE: days mail is kept on the server; -1: do not announce", {}, -1, 36500},
    ConfigKey{"login_delay", ConfigType::kDuration, "0",
              "CAPA LOGIN-DELAY: least time between two logins of a user; 0: none", {}, 0,
              86400},
};
inline constexpr auto kPop3dConfigKeys = join_config_keys(kMailboxConfigKeys, kPop3dOnlyKeys);

enum class PlaintextLogin { kAlways, kLoopback, kNever };

struct Pop3Settings {
  MailboxSettings mailbox;
  std::vector<ListenAddress> listen;
  std::vector<ListenAddress> listen_tls;
  std::string tls_certificate;
  std::string tls_key;
  PlaintextLogin plaintext_login = PlaintextLogin::kLoopback;
  std::string apop_secrets;
  std::string run_as;
  std::string pid_file;
  std::chrono::seconds idle_timeout{600};
  std::size_t max_sessions = 10000;
  std::size_t max_sessions_per_address = 20;
  std::chrono::milliseconds failed_login_delay{1000};
  std::chrono::milliseconds failed_login_delay_max{16000};
  std::optional<std::uint32_t> expire_days;
  std::chrono::seconds login_delay{0};
};

Result<Pop3Settings> pop3_settings_from(const Config& config);

}  // namespace mailwright::pop3
