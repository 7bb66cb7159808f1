#include "libmail/exit_status.h"

#include <catch2/catch.hpp>

#include "libmail/result.h"

using namespace mailwright;

TEST_CASE("maps sysexits codes to temporary or permanent", "[exit_status]") {
  CHECK(exit_status_info(EX_TEMPFAIL).temporary);
  CHECK(exit_status_info(EX_TEMPFAIL).status == "4.2.0");
  CHECK_FALSE(exit_status_info(EX_NOUSER).temporary);
  CHECK(exit_status_info(EX_NOUSER).status == "5.1.1");
  CHECK(exit_status_info(12345).temporary);
}

TEST_CASE("orders failures temporary over permanent over success", "[exit_status]") {
  CHECK(worse_exit_code(EX_OK, EX_TEMPFAIL) == EX_TEMPFAIL);
  CHECK(worse_exit_code(EX_OK, EX_NOUSER) == EX_NOUSER);
  CHECK(worse_exit_code(EX_TEMPFAIL, EX_NOUSER) == EX_TEMPFAIL);
  CHECK(worse_exit_code(EX_NOUSER, EX_TEMPFAIL) == EX_TEMPFAIL);
  CHECK(worse_exit_code(EX_OK, EX_OK) == EX_OK);
}

TEST_CASE("Result carries a value or an error", "[result]") {
  Result<int> good = 7;
  REQUIRE(good);
  CHECK(*good == 7);
  Result<int> bad = Error::from_errno(EX_IOERR, "write", 28);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().is_temporary());
  CHECK(bad.error().text() == "write: No space left on device");
  CHECK(bad.error().with_context("/var/mail/joe").text() ==
        "/var/mail/joe: write: No space left on device");
  Status fine;
  CHECK(fine.ok());
}
