// mta's configuration: the account keys it shares with mda and pop3d (so RCPT checks the same
// users delivery will find), plus the SMTP server's and the spool's own. See mta.conf(5).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "libmail/config.h"
#include "libmail/listen_address.h"
#include "libmail/mailbox_config.h"
#include "mta/relay_policy.h"

namespace mailwright::mta {

inline constexpr std::array kMtaOnlyKeys{
    ConfigKey{"hostname", ConfigType::kString, "",
              "this host's fully qualified name, for the greeting and Received; empty: "
              "/etc/mailname, else the system's"},
    ConfigKey{"local_domains", ConfigType::kList, "",
              "domains whose mail is delivered here; the hostname and localhost always are"},
    ConfigKey{"relay_networks", ConfigType::kList, "",
              "client networks (CIDR) that may relay without AUTH, e.g. 127.0.0.0/8 ::1/128"},
    ConfigKey{"aliases", ConfigType::kPath, "/etc/aliases",
              "alias file: local names that are not accounts but receive mail"},
    ConfigKey{"spool_dir", ConfigType::kPath, "/var/spool/mailwright",
              "the queue: incoming/, queue/, state/, corrupt/, maildrop/"},
    ConfigKey{"spool_reserve", ConfigType::kSize, "100M",
              "free space kept on the spool's file system; below it messages get 452", {}, 0,
              1LL << 50},
    ConfigKey{"listen", ConfigType::kList, "*:25",
              "addresses for SMTP (port 25: relay and local delivery)"},
    ConfigKey{"listen_submission", ConfigType::kList, "",
              "addresses for message submission (RFC 6409, AUTH required), e.g. *:587"},
    ConfigKey{"listen_smtps", ConfigType::kList, "",
              "addresses for submission with TLS from the first byte (RFC 8314), e.g. *:465"},
    ConfigKey{"tls_certificate", ConfigType::kPath, "", "PEM certificate chain for STARTTLS"},
    ConfigKey{"tls_key", ConfigType::kPath, "", "PEM private key of tls_certificate"},
    ConfigKey{"auth", ConfigType::kChoice, "accounts",
              "AUTH PLAIN/LOGIN over TLS: check passwords of the accounts, or offer no AUTH",
              "accounts|off"},
    ConfigKey{"max_message_size", ConfigType::kSize, "35M", "largest message accepted (SIZE)",
              {}, 1024, 1LL << 40},
    ConfigKey{"max_recipients", ConfigType::kInt, "1000", "recipients per message", {}, 1,
              100000},
    ConfigKey{"max_line_length", ConfigType::kInt, "1000",
              "longest message line, CRLF included (RFC 5321: 1000)", {}, 78, 1000000},
    ConfigKey{"bare_line_ends", ConfigType::kChoice, "reject",
              "a bare LF in a message: refuse the message, or store it as CRLF", "reject|normalize"},
    ConfigKey{"smtputf8", ConfigType::kBool, "yes", "offer SMTPUTF8 (RFC 6531)"},
    ConfigKey{"vrfy", ConfigType::kChoice, "252",
              "VRFY: 252 (neither confirm nor deny), check (tell), off (502)", "252|check|off"},
    ConfigKey{"greeting_delay", ConfigType::kDuration, "0",
              "wait before the greeting; clients that talk first are refused", {}, 0, 300},
    ConfigKey{"max_sessions", ConfigType::kInt, "10000", "SMTP sessions at once, in all", {}, 1,
              1000000},
    ConfigKey{"max_sessions_per_address", ConfigType::kInt, "50",
              "SMTP sessions at once from one client address", {}, 1, 1000000},
    ConfigKey{"max_errors", ConfigType::kInt, "20",
              "protocol errors after which a session is closed", {}, 1, 100000},
    ConfigKey{"command_timeout", ConfigType::kDuration, "5m",
              "wait for a command (RFC 5321 4.5.3.2.7: at least 5 minutes)", {}, 1, 86400},
    ConfigKey{"data_timeout", ConfigType::kDuration, "5m",
              "wait for more message data", {}, 1, 86400},
    ConfigKey{"failed_login_delay", ConfigType::kDuration, "1s",
              "wait before answering a failed AUTH; doubles per failure from one address", {},
              0, 60},
    ConfigKey{"failed_login_delay_max", ConfigType::kDuration, "16s",
              "longest wait after failed AUTH", {}, 0, 600},
    ConfigKey{"mda", ConfigType::kPath, "",
              "the mda binary for local delivery; empty: the installed one"},
    ConfigKey{"mda_config", ConfigType::kPath, "", "configuration file passed to mda with -C"},
    ConfigKey{"relayhost", ConfigType::kString, "",
              "send all non-local mail to this host: [host]:port (no MX lookup) or host"},
    ConfigKey{"transports", ConfigType::kPath, "",
              "transport table: domain to smtp:[host]:port, local or error:text per line"},
    ConfigKey{"smtp_port", ConfigType::kInt, "25", "port of the MX hosts mail is sent to", {}, 1,
              65535},
    ConfigKey{"relayhost_password_file", ConfigType::kPath, "",
              "file holding 'user password' for AUTH at the relayhost (over TLS only)"},
    ConfigKey{"tls_required_domains", ConfigType::kList, "",
              "domains whose MX hosts must take STARTTLS, else the mail waits"},
    ConfigKey{"dns_servers", ConfigType::kList, "",
              "name servers as ip or ip:port; empty: those of /etc/resolv.conf"},
    ConfigKey{"max_deliveries_per_domain", ConfigType::kInt, "20",
              "SMTP deliveries at once to one destination domain", {}, 1, 10000},
    ConfigKey{"retry_interval", ConfigType::kDuration, "15m",
              "first retry of a deferred recipient; doubles after each failed attempt", {}, 1,
              86400},
    ConfigKey{"max_retry_interval", ConfigType::kDuration, "4h", "longest wait between retries",
              {}, 1, 7 * 86400},
    ConfigKey{"delay_warning", ConfigType::kDuration, "4h",
              "tell the sender when mail has waited this long; 0: never", {}, 0, 30 * 86400},
    ConfigKey{"max_queue_lifetime", ConfigType::kDuration, "5d",
              "return mail that could not be delivered for this long", {}, 1, 365 * 86400},
    ConfigKey{"queue_rescan", ConfigType::kDuration, "5m",
              "how often the daemon looks for mail other processes queued", {}, 1, 86400},
    ConfigKey{"max_deliveries", ConfigType::kInt, "50", "messages being delivered at once", {}, 1,
              10000},
    ConfigKey{"delivery_mode", ConfigType::kChoice, "immediate",
              "immediate: deliver as soon as queued; queue: wait for the next queue run",
              "immediate|queue"},
    ConfigKey{"alias_program_user", ConfigType::kString, "nobody",
              "user that runs the alias file's |commands and writes its /files; never root"},
    ConfigKey{"program_timeout", ConfigType::kDuration, "10m",
              "longest run of a |command from the aliases or a .forward; then it is killed and "
              "the mail deferred", {}, 1, 86400},
    ConfigKey{"forward_files", ConfigType::kBool, "yes",
              "honour ~/.forward of system accounts (accounts = system)"},
    ConfigKey{"run_as", ConfigType::kString, "",
              "user the SMTP side becomes after binding; empty: the mail user"},
    ConfigKey{"trusted_users", ConfigType::kList, "",
              "users who may set the envelope sender with sendmail -f, besides root and the "
              "mail user"},
    ConfigKey{"pid_file", ConfigType::kPath, "", "PID file written by the daemon"},
};
inline constexpr auto kMtaConfigKeys = join_config_keys(kMailboxConfigKeys, kMtaOnlyKeys);

enum class VrfyMode { kAmbiguous, kCheck, kOff };

struct MtaSettings {
  MailboxSettings mailbox;
  std::string hostname;
  std::vector<std::string> local_domains;  // hostname and localhost included
  std::vector<Network> relay_networks;
  std::string aliases;
  std::string spool_dir;
  std::uint64_t spool_reserve = 0;
  std::vector<ListenAddress> listen;
  std::vector<ListenAddress> listen_submission;
  std::vector<ListenAddress> listen_smtps;
  std::string tls_certificate;
  std::string tls_key;
  bool auth = true;
  std::uint64_t max_message_size = 0;
  std::size_t max_recipients = 1000;
  std::size_t max_line_length = 1000;
  bool normalize_bare_lf = false;
  bool smtputf8 = true;
  VrfyMode vrfy = VrfyMode::kAmbiguous;
  std::chrono::seconds greeting_delay{0};
  std::size_t max_sessions = 10000;
  std::size_t max_sessions_per_address = 50;
  std::size_t max_errors = 20;
  std::chrono::seconds command_timeout{300};
  std::chrono::seconds data_timeout{300};
  std::chrono::milliseconds failed_login_delay{1000};
  std::chrono::milliseconds failed_login_delay_max{16000};
  std::string mda;  // resolved: never empty
  std::string mda_config;
  std::string relayhost;
  std::string transports;
  std::uint16_t smtp_port = 25;
  std::string relayhost_password_file;
  std::vector<std::string> tls_required_domains;
  std::vector<std::string> dns_servers;
  std::size_t max_deliveries_per_domain = 20;
  std::chrono::seconds retry_interval{900};
  std::chrono::seconds max_retry_interval{4 * 3600};
  std::chrono::seconds delay_warning{4 * 3600};
  std::chrono::seconds max_queue_lifetime{5 * 86400};
  std::chrono::seconds queue_rescan{300};
  std::size_t max_deliveries = 50;
  bool deliver_at_once = true;
  std::string alias_program_user;
  std::chrono::seconds program_timeout{600};
  bool forward_files = true;
  std::string run_as;
  std::vector<std::string> trusted_users;
  std::string pid_file;
};

Result<MtaSettings> mta_settings_from(const Config& config);

// This host's name: gethostname(), completed from the resolver when it has no dot.
std::string system_hostname();
// The first line of a mailname file (Debian's /etc/mailname) if it is a domain name, else "".
std::string mailname_file_hostname(const std::string& path);

}  // namespace mailwright::mta
