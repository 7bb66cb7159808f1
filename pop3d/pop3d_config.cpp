#include "pop3d/pop3d_config.h"

#include <sysexits.h>

namespace mailwright::pop3 {

Result<Pop3Settings> pop3_settings_from(const Config& config) {
  Pop3Settings s;
  s.mailbox = mailbox_settings_from(config);
  for (const auto& [key, out] : {std::pair{"listen", &s.listen}, {"listen_tls", &s.listen_tls}}) {
    for (const std::string& text : config.get_list(key)) {
      auto address = parse_listen_address(text);
      if (!address) return address.error().with_context(config.origin(key));
      out->push_back(*address);
    }
  }
  s.tls_certificate = config.get_string("tls_certificate");
  s.tls_key = config.get_string("tls_key");
  if (s.tls_certificate.empty() != s.tls_key.empty()) {
    return Error::from_exit_code(EX_CONFIG, "tls_certificate and tls_key go together");
  }
  if (!s.listen_tls.empty() && s.tls_certificate.empty()) {
    return Error::from_exit_code(EX_CONFIG, "listen_tls needs tls_certificate and tls_key");
  }
  if (s.listen.empty() && s.listen_tls.empty()) {
    return Error::from_exit_code(EX_CONFIG, "nothing to listen on: set listen or listen_tls");
  }
  const std::string& plain = config.get_string("plaintext_login");
  s.plaintext_login = plain == "always"     ? PlaintextLogin::kAlways
                      : plain == "loopback" ? PlaintextLogin::kLoopback
                                            : PlaintextLogin::kNever;
  s.apop_secrets = config.get_string("apop_secrets");
  s.run_as = config.get_string("run_as");
  s.pid_file = config.get_string("pid_file");
  s.idle_timeout = config.get_duration("idle_timeout");
  s.max_sessions = static_cast<std::size_t>(config.get_int("max_sessions"));
  s.max_sessions_per_address = static_cast<std::size_t>(config.get_int("max_sessions_per_address"));
  s.failed_login_delay = config.get_duration("failed_login_delay");
  s.failed_login_delay_max = config.get_duration("failed_login_delay_max");
  if (config.get_int("expire_days") >= 0) {
    s.expire_days = static_cast<std::uint32_t>(config.get_int("expire_days"));
  }
  s.login_delay = config.get_duration("login_delay");
  return s;
}

}  // namespace mailwright::pop3
