// Password checks for virtual accounts ("{SCHEME}hash" as in account files) and for APOP.
//
// Schemes: {PLAIN} (the sandbox and tests), {CRYPT}, {SHA512-CRYPT}, {SHA256-CRYPT},
// {BLF-CRYPT}, {YESCRYPT}, {MD5-CRYPT}: all but PLAIN go through crypt_r(3), which tells the
// algorithm from the hash itself. Comparisons take constant time, and a check against no
// account costs as much as one against a real SHA-512 hash, so timing does not tell which
// user names exist.
#pragma once

#include <string>
#include <string_view>

namespace mailwright {

// True when password matches stored ("{SCHEME}hash"); false for a wrong password, an unknown
// scheme or a malformed hash.
bool verify_password(std::string_view stored, std::string_view password);
// Spends the time of one SHA-512-crypt check and returns false: the answer for unknown users.
bool verify_password_of_nobody(std::string_view password);
// APOP (RFC 1939 7): MD5 of the greeting's banner followed by the shared secret, in hex.
bool verify_apop(std::string_view banner, std::string_view secret, std::string_view digest);
std::string md5_hex(std::string_view data);

}  // namespace mailwright
