#include "libmail/password.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>
#include <memory>

namespace mailwright {
namespace {

bool equal_constant_time(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool crypt_matches(std::string_view hash, std::string_view password) {
  if (hash.empty() || hash.find('\0') != std::string_view::npos) return false;
  if (password.find('\0') != std::string_view::npos) return false;
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  const std::string key(password);
  const std::string setting(hash);
  const char* out = ::crypt_r(key.c_str(), setting.c_str(), data.get());
  // crypt_r reports failure as a string starting with '*' (libxcrypt) or as nullptr.
  if (out == nullptr || out[0] == '*') return false;
  return equal_constant_time(out, hash);
}

// A real SHA-512-crypt hash (of a password nobody has), so the dummy check costs the same.
constexpr std::string_view kNobodyHash =
    "$6$mailwrightdummy$87Kfej0nIvHIr.h.VGGM5mV2sv0EdEVkjGQWuUnOPhO7P1OBZZn3dZCMGSnidVb1q2DCdFIiz."
    "wKSwjG6IsL1.";

}  // namespace

bool verify_password(std::string_view stored, std::string_view password) {
  if (stored.empty() || stored.front() != '{') return crypt_matches(stored, password);
  auto close = stored.find('}');
  if (close == std::string_view::npos) return false;
  std::string_view scheme = stored.substr(1, close - 1);
  std::string_view hash = stored.substr(close + 1);
  if (scheme == "PLAIN") return equal_constant_time(hash, password);
  for (std::string_view known :
       {"CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "YESCRYPT", "MD5-CRYPT"}) {
    if (scheme == known) return crypt_matches(hash, password);
  }
  return false;
}

bool verify_password_of_nobody(std::string_view password) {
  crypt_matches(kNobodyHash, password);
  return false;
}

std::string md5_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

bool verify_apop(std::string_view banner, std::string_view secret, std::string_view digest) {
  std::string lower(digest);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  }
  return equal_constant_time(md5_hex(std::string(banner) + std::string(secret)), lower);
}

}  // namespace mailwright
