// TLS with OpenSSL: contexts for our servers (STARTTLS/STLS and implicit TLS) and for the
// SMTP client. TLS 1.2 is the floor, renegotiation is off, and every failure comes back as an
// Error carrying OpenSSL's own reason.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "libmail/result.h"
#include "libmail/unique_fd.h"

namespace mailwright {

using SslCtx = std::unique_ptr<SSL_CTX, FreeWith<SSL_CTX_free>>;
using Ssl = std::unique_ptr<SSL, FreeWith<SSL_free>>;

// Loads a PEM certificate chain and its private key; refuses a key that does not match.
Result<SslCtx> make_server_tls_context(const std::string& cert_file, const std::string& key_file);
// A client context that verifies peers against the system's trust store when asked to.
Result<SslCtx> make_client_tls_context();

// Drains OpenSSL's error queue into one line of text.
std::string tls_error_text();
// "TLSv1.3 TLS_AES_256_GCM_SHA384" for logs and Received headers.
std::string tls_description(const SSL* ssl);

}  // namespace mailwright
