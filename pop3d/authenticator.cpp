#include "pop3d/authenticator.h"

#include <sysexits.h>

#include "libmail/file_io.h"
#include "libmail/password.h"

namespace mailwright::pop3 {

Result<std::unique_ptr<VirtualAuthenticator>> VirtualAuthenticator::create(
    const MailboxSettings& settings, const std::string& apop_secrets) {
  auto accounts = open_account_db(settings);
  if (!accounts) return accounts.error();
  std::unique_ptr<VirtualAuthenticator> auth(
      new VirtualAuthenticator(settings, std::move(*accounts)));
  if (!apop_secrets.empty()) {
    auto text = read_small_file(apop_secrets, 16 * 1024 * 1024);
    if (!text) return Error::from_exit_code(EX_CONFIG, text.error().text());
    std::string_view rest = *text;
    while (!rest.empty()) {
      auto nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty() || line.front() == '#') continue;
      auto colon = line.find(':');
      if (colon == std::string_view::npos || !is_valid_user_name(line.substr(0, colon))) {
        return Error::from_exit_code(EX_CONFIG, apop_secrets + ": expected name:secret lines");
      }
      auth->secrets_.emplace(std::string(line.substr(0, colon)),
                             std::string(line.substr(colon + 1)));
    }
  }
  return auth;
}

void VirtualAuthenticator::login(LoginRequest request, Done done) { done(check(request)); }

LoginOutcome VirtualAuthenticator::check(const LoginRequest& request) {
  const std::string& user = request.user;
  const std::string& password = request.password;
  const std::string& apop_banner = request.apop_banner;
  const std::string& apop_digest = request.apop_digest;
  LoginOutcome result;
  auto found = accounts_->find(user);
  if (!found) {
    result.outcome = AuthOutcome::kTemporary;
    result.detail = found.error().text();
    return result;
  }
  bool ok = false;
  if (!apop_digest.empty()) {
    auto secret = secrets_.find(user);
    ok = found->has_value() && secret != secrets_.end() &&
         verify_apop(apop_banner, secret->second, apop_digest);
    if (!ok) result.detail = "APOP digest mismatch or no secret";
  } else if (found->has_value()) {
    ok = verify_password((*found)->password_hash, password);
    if (!ok) result.detail = "wrong password";
  } else {
    verify_password_of_nobody(password);
    result.detail = "unknown user";
  }
  if (!ok) return result;
  MaildropOpen opened = open_maildrop(settings_, **found);
  if (!opened.maildrop) {
    result.outcome =
        opened.error == MaildropError::kInUse ? AuthOutcome::kInUse : AuthOutcome::kTemporary;
    result.detail = opened.text;
    return result;
  }
  result.outcome = AuthOutcome::kOk;
  result.maildrop = std::move(opened.maildrop);
  return result;
}

}  // namespace mailwright::pop3
