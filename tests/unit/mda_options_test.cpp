#include "mda/mda_options.h"

#include <sysexits.h>

#include <catch2/catch.hpp>

using namespace mailwright;
using mailwright::mda::parse_mda_options;

TEST_CASE("mda parses mail.local style arguments", "[mda_options]") {
  auto o = parse_mda_options({"-d", "-f", "a@b", "joe", "ann"});
  REQUIRE(o);
  CHECK(o->sender == "a@b");
  CHECK(o->users == std::vector<std::string>{"joe", "ann"});
  auto glued = parse_mda_options({"-ra@b", "-Cfile", "joe"});
  REQUIRE(glued);
  CHECK(glued->sender == "a@b");
  CHECK(glued->config_path == "file");
  auto dashdash = parse_mda_options({"--", "-joe"});
  REQUIRE(dashdash);
  CHECK(dashdash->users == std::vector<std::string>{"-joe"});
  CHECK(parse_mda_options({"-l"})->lmtp);
  CHECK(parse_mda_options({"-P"})->print_config);
  CHECK(parse_mda_options({"-vn"})->check);
}

TEST_CASE("mda refuses bad usage with EX_USAGE", "[mda_options]") {
  auto args = GENERATE(as<std::vector<std::string>>{}, std::vector<std::string>{},
                       std::vector<std::string>{"-x", "joe"}, std::vector<std::string>{"-f"},
                       std::vector<std::string>{"-l", "joe"}, std::vector<std::string>{"-l", "-n"});
  auto o = parse_mda_options(args);
  REQUIRE_FALSE(o);
  CHECK(o.error().exit_code() == EX_USAGE);
}
