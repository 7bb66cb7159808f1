#include "mta/mta_config.h"

#include <netdb.h>
#include <sysexits.h>
#include <unistd.h>

#include <cstring>

#include "build_paths.h"
#include "libmail/accounts.h"
#include "libmail/address.h"
#include "libmail/file_io.h"
#include "libmail/ascii.h"

namespace mailwright::mta {

std::string system_hostname() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "localhost";
  std::string name = host;
  if (name.find('.') == std::string::npos) {
    // Only the resolver knows the domain part; this runs once at start-up.
    addrinfo hints{};
    hints.ai_flags = AI_CANONNAME;
    addrinfo* info = nullptr;
    if (::getaddrinfo(host, nullptr, &hints, &info) == 0) {
      if (info != nullptr && info->ai_canonname != nullptr &&
          std::strchr(info->ai_canonname, '.') != nullptr) {
        name = info->ai_canonname;
      }
      ::freeaddrinfo(info);
    }
  }
  return name;
}

std::string mailname_file_hostname(const std::string& path) {
  auto text = read_small_file(path, 4096);
  if (!text) return {};
  std::string name = text->substr(0, text->find('\n'));
  while (!name.empty() && (name.back() == '\r' || name.back() == ' ' || name.back() == '\t')) {
    name.pop_back();
  }
  return is_valid_domain(name) ? name : std::string();
}

Result<MtaSettings> mta_settings_from(const Config& config) {
  MtaSettings s;
  s.mailbox = mailbox_settings_from(config);
  s.hostname = config.get_string("hostname");
  if (s.hostname.empty()) s.hostname = mailname_file_hostname("/etc/mailname");
  if (s.hostname.empty()) s.hostname = system_hostname();
  if (!is_valid_domain(s.hostname)) {
    return Error::from_exit_code(EX_CONFIG, "hostname: '" + s.hostname.substr(0, 64) +
                                                "' is not a domain name; set hostname")
        .with_context(config.origin("hostname"));
  }
  s.local_domains.push_back(lowercase_domain(s.hostname));
  s.local_domains.push_back("localhost");
  for (const std::string& domain : config.get_list("local_domains")) {
    if (!is_valid_domain(domain)) {
      return Error::from_exit_code(EX_CONFIG, "local_domains: '" + domain.substr(0, 64) +
                                                  "' is not a domain name")
          .with_context(config.origin("local_domains"));
    }
    s.local_domains.push_back(lowercase_domain(domain));
  }
  for (const std::string& text : config.get_list("relay_networks")) {
    auto net = parse_network(text);
    if (!net) return Error(net.error()).with_context(config.origin("relay_networks"));
    s.relay_networks.push_back(*net);
  }
  s.aliases = config.get_string("aliases");
  s.spool_dir = config.get_string("spool_dir");
  if (s.spool_dir.empty() || s.spool_dir[0] != '/') {
    return Error::from_exit_code(EX_CONFIG, "spool_dir must be an absolute path")
        .with_context(config.origin("spool_dir"));
  }
  s.spool_reserve = config.get_size("spool_reserve");
  for (const auto& [key, out] : {std::pair{"listen", &s.listen},
                                 {"listen_submission", &s.listen_submission},
                                 {"listen_smtps", &s.listen_smtps}}) {
    for (const std::string& text : config.get_list(key)) {
      auto address = parse_listen_address(text);
      if (!address) return Error(address.error()).with_context(config.origin(key));
      out->push_back(*address);
    }
  }
  s.tls_certificate = config.get_string("tls_certificate");
  s.tls_key = config.get_string("tls_key");
  if (s.tls_certificate.empty() != s.tls_key.empty()) {
    return Error::from_exit_code(EX_CONFIG, "tls_certificate and tls_key go together");
  }
  if (!s.listen_smtps.empty() && s.tls_certificate.empty()) {
    return Error::from_exit_code(EX_CONFIG, "listen_smtps needs tls_certificate and tls_key");
  }
  s.auth = config.get_string("auth") == "accounts";
  s.max_message_size = config.get_size("max_message_size");
  s.max_recipients = static_cast<std::size_t>(config.get_int("max_recipients"));
  s.max_line_length = static_cast<std::size_t>(config.get_int("max_line_length"));
  s.normalize_bare_lf = config.get_string("bare_line_ends") == "normalize";
  s.smtputf8 = config.get_bool("smtputf8");
  const std::string& vrfy = config.get_string("vrfy");
  s.vrfy = vrfy == "check" ? VrfyMode::kCheck : vrfy == "off" ? VrfyMode::kOff
                                                              : VrfyMode::kAmbiguous;
  s.greeting_delay = config.get_duration("greeting_delay");
  s.max_sessions = static_cast<std::size_t>(config.get_int("max_sessions"));
  s.max_sessions_per_address = static_cast<std::size_t>(config.get_int("max_sessions_per_address"));
  s.max_errors = static_cast<std::size_t>(config.get_int("max_errors"));
  s.command_timeout = config.get_duration("command_timeout");
  s.data_timeout = config.get_duration("data_timeout");
  s.failed_login_delay = config.get_duration("failed_login_delay");
  s.failed_login_delay_max = config.get_duration("failed_login_delay_max");
  s.mda = config.get_string("mda");
  if (s.mda.empty()) s.mda = std::string(build::kLibexecDir) + "/mda";
  s.mda_config = config.get_string("mda_config");
  s.relayhost = config.get_string("relayhost");
  s.transports = config.get_string("transports");
  s.smtp_port = static_cast<std::uint16_t>(config.get_int("smtp_port"));
  s.relayhost_password_file = config.get_string("relayhost_password_file");
  for (const std::string& d : config.get_list("tls_required_domains")) {
    s.tls_required_domains.push_back(lowercase_domain(d));
  }
  s.dns_servers = config.get_list("dns_servers");
  s.max_deliveries_per_domain =
      static_cast<std::size_t>(config.get_int("max_deliveries_per_domain"));
  s.retry_interval = config.get_duration("retry_interval");
  s.max_retry_interval = config.get_duration("max_retry_interval");
  s.delay_warning = config.get_duration("delay_warning");
  s.max_queue_lifetime = config.get_duration("max_queue_lifetime");
  s.queue_rescan = config.get_duration("queue_rescan");
  s.max_deliveries = static_cast<std::size_t>(config.get_int("max_deliveries"));
  s.deliver_at_once = config.get_string("delivery_mode") == "immediate";
  s.alias_program_user = config.get_string("alias_program_user");
  if (!is_valid_user_name(s.alias_program_user)) {
    return Error::from_exit_code(EX_CONFIG, "alias_program_user: not a valid user name")
        .with_context(config.origin("alias_program_user"));
  }
  if (s.alias_program_user == "root") {
    return Error::from_exit_code(EX_CONFIG, "alias_program_user must not be root")
        .with_context(config.origin("alias_program_user"));
  }
  s.program_timeout = config.get_duration("program_timeout");
  s.forward_files = config.get_bool("forward_files");
  s.run_as = config.get_string("run_as");
  for (const std::string& name : config.get_list("trusted_users")) {
    if (!is_valid_user_name(name)) {
      return Error::from_exit_code(EX_CONFIG, "trusted_users: '" + name.substr(0, 64) +
                                                  "' is not a user name")
          .with_context(config.origin("trusted_users"));
    }
    s.trusted_users.push_back(name);
  }
  s.pid_file = config.get_string("pid_file");
  return s;
}

}  // namespace mailwright::mta
