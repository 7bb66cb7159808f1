// Base64 (RFC 4648 section 4) for SASL exchanges (RFC 4422) in POP3 and SMTP AUTH, and the
// SASL PLAIN message (RFC 4616).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mailwright {

// Decoded strictly as RFC 5034 section 4 and RFC 4954 section 4 demand: only the 64
// alphabet characters and padding, length a multiple of 4, '=' only as the last one or two
// characters, and pad bits zero (so every accepted input is the canonical encoding of its
// output). No whitespace. ok tells whether the input was accepted; the result is empty if not.
std::string decode_base64(std::string_view text, bool& ok);
std::string encode_base64(std::string_view data);

// RFC 4616: authzid NUL authcid NUL passwd. nullopt unless there are exactly two NULs, the
// authcid is not empty, and neither name holds a control character.
struct SaslPlain {
  std::string authzid;
  std::string authcid;
  std::string password;
};
std::optional<SaslPlain> parse_sasl_plain(std::string_view message);

}  // namespace mailwright
