#include "libmail/pam_login.h"

#include <security/pam_appl.h>

#include <cstdlib>
#include <cstring>

namespace mailwright {
namespace {

// Answers every password prompt with the password; anything else is refused, so a module
// that asks questions we cannot answer fails the login instead of hanging it.
int converse(int n, const pam_message** msgs, pam_response** replies, void* data) {
  if (n <= 0 || n > PAM_MAX_NUM_MSG) return PAM_CONV_ERR;
  auto* out = static_cast<pam_response*>(std::calloc(static_cast<std::size_t>(n), sizeof(pam_response)));
  if (out == nullptr) return PAM_BUF_ERR;
  const char* password = static_cast<const char*>(data);
  for (int i = 0; i < n; ++i) {
    switch (msgs[i]->msg_style) {
      case PAM_PROMPT_ECHO_OFF:
        out[i].resp = ::strdup(password);
        break;
      case PAM_ERROR_MSG:
      case PAM_TEXT_INFO:
        break;
      default:
        for (int j = 0; j < i; ++j) std::free(out[j].resp);
        std::free(out);
        return PAM_CONV_ERR;
    }
  }
  *replies = out;
  return PAM_SUCCESS;
}

}  // namespace

PamResult pam_login(const std::string& service, const std::string& user,
                    const std::string& password, const std::string& remote_host) {
  PamResult result;
  pam_conv conv{&converse, const_cast<char*>(password.c_str())};
  pam_handle_t* pamh = nullptr;
  int rc = ::pam_start(service.c_str(), user.c_str(), &conv, &pamh);
  if (rc != PAM_SUCCESS) {
    result.detail = "pam_start failed";
    return result;
  }
  ::pam_set_item(pamh, PAM_RHOST, remote_host.c_str());
  rc = ::pam_authenticate(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
  if (rc == PAM_SUCCESS) rc = ::pam_acct_mgmt(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
  result.ok = rc == PAM_SUCCESS;
  if (!result.ok) result.detail = ::pam_strerror(pamh, rc);
  ::pam_end(pamh, rc);
  return result;
}

}  // namespace mailwright
