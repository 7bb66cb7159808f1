#include <sysexits.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "mta/mta.h"
#include "mta/mta_config.h"

using namespace mailwright;
using namespace mailwright::mta;

namespace {

MtaOptions parsed(std::vector<std::string> args) {
  auto o = parse_mta_options(args);
  const std::string why = o ? std::string() : o.error().text();
  INFO(why);
  REQUIRE(o);
  return *o;
}

int refused(std::vector<std::string> args) {
  auto o = parse_mta_options(args);
  return o ? 0 : o.error().exit_code();
}

}  // namespace

TEST_CASE("mta options: addresses alone mean -bm, as for sendmail", "[mta_options]") {
  MtaOptions o = parsed({"alice", "bob@example.org"});
  CHECK(o.mode == MtaMode::kSubmit);
  CHECK(o.addresses == std::vector<std::string>{"alice", "bob@example.org"});
  CHECK_FALSE(o.extract_recipients);
  CHECK_FALSE(o.ignore_dots);
  CHECK(parsed({"-bm", "x"}).mode == MtaMode::kSubmit);
}

TEST_CASE("mta options: how real callers call sendmail", "[mta_options]") {
  // PHP's mail()
  MtaOptions php = parsed({"-t", "-i"});
  CHECK((php.extract_recipients && php.ignore_dots && php.addresses.empty()));
  CHECK(parsed({"-ti"}).extract_recipients);
  CHECK(parsed({"-ti"}).ignore_dots);
  // cron
  MtaOptions cron = parsed({"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"});
  CHECK(cron.full_name == "CronDaemon");
  CHECK(cron.body == BodyType::k8BitMime);
  CHECK(cron.addresses == std::vector<std::string>{"root"});
  // mutt, s-nail: "--" ends the flags, so an address may not pass for one
  MtaOptions mutt = parsed({"-oem", "-oi", "--", "-oQ/tmp@x", "joe"});
  CHECK(mutt.ignore_dots);
  CHECK(mutt.addresses == std::vector<std::string>{"-oQ/tmp@x", "joe"});
  // git send-email's envelope sender
  CHECK(parsed({"-i", "-f", "me@x.example", "a@b"}).sender == "me@x.example");
  CHECK(parsed({"-rme@x.example", "a@b"}).sender == "me@x.example");
  CHECK(parsed({"-f", "", "a@b"}).sender == "");
  // flags stop at the first address, as sendmail's getopt does
  MtaOptions late = parsed({"a@b", "-t"});
  CHECK_FALSE(late.extract_recipients);
  CHECK(late.addresses == std::vector<std::string>{"a@b", "-t"});
}

TEST_CASE("mta options: DSN flags", "[mta_options]") {
  CHECK(parsed({"-N", "never", "a"}).notify == kNotifyNever);
  CHECK(parsed({"-Nsuccess,DELAY", "a"}).notify == (kNotifySuccess | kNotifyDelay));
  CHECK(parsed({"-R", "hdrs", "a"}).ret == DsnRet::kHeaders);
  CHECK(parsed({"-RFULL", "a"}).ret == DsnRet::kFull);
  CHECK(parsed({"-V", "id-1", "a"}).envid == "id-1");
  CHECK(refused({"-N", "never,success", "a"}) == EX_USAGE);
  CHECK(refused({"-N", "", "a"}) == EX_USAGE);
  CHECK(refused({"-R", "some", "a"}) == EX_USAGE);
  CHECK(refused({"-B", "BINARYMIME", "a"}) == EX_USAGE);
}

TEST_CASE("mta options: modes and their arguments", "[mta_options]") {
  CHECK(parsed({"-bv", "a"}).mode == MtaMode::kVerify);
  CHECK(parsed({"-bd", "-q15m"}).queue_interval == "15m");
  CHECK(parsed({"-q"}).mode == MtaMode::kQueueRun);
  CHECK(parsed({"-qR", "example.org"}).queue_recipient == "example.org");
  CHECK(parsed({"-qIABC"}).queue_id == "ABC");
  CHECK(parsed({"-bp"}).mode == MtaMode::kListQueue);
  CHECK(parsed({"-C", "/etc/x.conf", "-bi"}).config_path == "/etc/x.conf");
  CHECK(parsed({"-O", "DeliveryMode=b", "-odb", "a"}).mode == MtaMode::kSubmit);
  CHECK(refused({}) == EX_USAGE);              // no recipients
  CHECK(refused({"-i"}) == EX_USAGE);          // still none
  CHECK(refused({"-bv"}) == EX_USAGE);
  CHECK(refused({"-bp", "a"}) == EX_USAGE);
  CHECK(refused({"-bd", "-bs"}) == EX_USAGE);
  CHECK(refused({"-bm", "-bv", "a"}) == EX_USAGE);
  CHECK(refused({"-q", "a"}) == EX_USAGE);
  CHECK(refused({"-X", "a"}) == EX_USAGE);
  CHECK(refused({"-bx"}) == EX_USAGE);
  CHECK(refused({"--help"}) == EX_USAGE);
  CHECK(refused({"-f"}) == EX_USAGE);
  CHECK(refused({"-o"}) == EX_USAGE);
}

TEST_CASE("mta options: the name it is called by", "[mta_options]") {
  CHECK(arguments_for_name("/usr/bin/mailq", {}) == std::vector<std::string>{"-bp"});
  CHECK(arguments_for_name("newaliases", {}) == std::vector<std::string>{"-bi"});
  CHECK(arguments_for_name("/usr/sbin/sendmail", {"-t"}) == std::vector<std::string>{"-t"});
}

TEST_CASE("mta config: /etc/mailname names the host when hostname is empty", "[mta_options]") {
  char dir[] = "/tmp/mailname_test.XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  const std::string path = std::string(dir) + "/mailname";
  auto write = [&](const std::string& text) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  write("mail.example.org\n");
  CHECK(mailname_file_hostname(path) == "mail.example.org");
  write("mail.example.org \r\nsecond line\n");
  CHECK(mailname_file_hostname(path) == "mail.example.org");
  write("not a domain!\n");
  CHECK(mailname_file_hostname(path).empty());
  std::remove(path.c_str());
  CHECK(mailname_file_hostname(path).empty());
  ::rmdir(dir);
}
