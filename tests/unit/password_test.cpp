#include "libmail/password.h"

#include <catch2/catch.hpp>

using namespace mailwright;

TEST_CASE("checks passwords of every supported scheme", "[password]") {
  CHECK(verify_password("{PLAIN}secret", "secret"));
  CHECK_FALSE(verify_password("{PLAIN}secret", "Secret"));
  CHECK_FALSE(verify_password("{PLAIN}secret", "secret "));
  // "x" hashed with SHA-512-crypt.
  const std::string sha512 =
      "$6$mailwrightdummy$87Kfej0nIvHIr.h.VGGM5mV2sv0EdEVkjGQWuUnOPhO7P1OBZZn3dZCMGSnidVb1q2DCd"
      "FIiz.wKSwjG6IsL1.";
  CHECK(verify_password("{SHA512-CRYPT}" + sha512, "x"));
  CHECK(verify_password("{CRYPT}" + sha512, "x"));
  CHECK(verify_password(sha512, "x"));
  CHECK_FALSE(verify_password("{SHA512-CRYPT}" + sha512, "y"));
  CHECK_FALSE(verify_password("{SHA512-CRYPT}" + sha512, std::string("x\0y", 3)));
}

TEST_CASE("refuses unknown schemes and malformed hashes", "[password]") {
  CHECK_FALSE(verify_password("{ROT13}frperg", "secret"));
  CHECK_FALSE(verify_password("{PLAIN", "x"));
  CHECK_FALSE(verify_password("", ""));
  CHECK_FALSE(verify_password("{CRYPT}", ""));
  CHECK_FALSE(verify_password("{CRYPT}*", "x"));
  CHECK_FALSE(verify_password("{CRYPT}!locked", "x"));
  CHECK_FALSE(verify_password_of_nobody("x"));
}

TEST_CASE("APOP digest is MD5 of banner and secret", "[password]") {
  // RFC 1939 section 7's example.
  const std::string banner = "<1896.697170952@dbc.mtview.ca.us>";
  CHECK(md5_hex(banner + "tanstaaf") == "c4c9334bac560ecc979e58001b3e22fb");
  CHECK(verify_apop(banner, "tanstaaf", "c4c9334bac560ecc979e58001b3e22fb"));
  CHECK(verify_apop(banner, "tanstaaf", "C4C9334BAC560ECC979E58001B3E22FB"));
  CHECK_FALSE(verify_apop(banner, "tanstaaf", "c4c9334bac560ecc979e58001b3e22fc"));
  CHECK_FALSE(verify_apop(banner, "wrong", "c4c9334bac560ecc979e58001b3e22fb"));
}
