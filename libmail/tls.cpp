#include "libmail/tls.h"

#include <openssl/err.h>
#include <sysexits.h>

namespace mailwright {

std::string tls_error_text() {
  std::string text;
  unsigned long code = 0;
  while ((code = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    if (!text.empty()) text += "; ";
    text += buf;
  }
  return text.empty() ? "unknown TLS error" : text;
}

namespace {

void apply_common_settings(SSL_CTX* ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);  // idle sessions keep no TLS buffers
}

}  // namespace

Result<SslCtx> make_server_tls_context(const std::string& cert_file, const std::string& key_file) {
  SslCtx ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return Error::from_exit_code(EX_SOFTWARE, "SSL_CTX_new: " + tls_error_text());
  apply_common_settings(ctx.get());
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_file.c_str()) != 1) {
    return Error::from_exit_code(EX_CONFIG, cert_file + ": " + tls_error_text());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return Error::from_exit_code(EX_CONFIG, key_file + ": " + tls_error_text());
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return Error::from_exit_code(EX_CONFIG, key_file + ": key does not match the certificate");
  }
  return ctx;
}

Result<SslCtx> make_client_tls_context() {
  SslCtx ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return Error::from_exit_code(EX_SOFTWARE, "SSL_CTX_new: " + tls_error_text());
  apply_common_settings(ctx.get());
  SSL_CTX_set_default_verify_paths(ctx.get());
  return ctx;
}

std::string tls_description(const SSL* ssl) {
  if (ssl == nullptr) return "";
  return std::string(SSL_get_version(ssl)) + " " + SSL_get_cipher_name(ssl);
}

}  // namespace mailwright
