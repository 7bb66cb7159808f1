#include "libmail/accounts.h"

#include <catch2/catch.hpp>

#include "libmail/mailbox_config.h"

using namespace mailwright;

TEST_CASE("user names that could become paths or options are invalid", "[accounts]") {
  auto name = GENERATE(as<std::string>{}, "", ".", "..", "../x", "a/b", "-f", ".hidden", "a b",
                       "a\nb", std::string("a\0b", 3), "x@y", "üser", std::string(65, 'a'));
  CHECK_FALSE(is_valid_user_name(name));
}

TEST_CASE("ordinary user names are valid", "[accounts]") {
  auto name = GENERATE(as<std::string>{}, "root", "joe", "j.doe", "mail_user", "a-b", "A1",
                       "_svc", std::string(64, 'a'));
  CHECK(is_valid_user_name(name));
}

TEST_CASE("account file lists virtual users owned by one Unix user", "[accounts]") {
  auto db = FileAccounts::parse("# users\ndemo:{PLAIN}pw\nbob:{SHA512-CRYPT}$6$x$y:extra\n\n",
                                "users", 1000, 1001);
  REQUIRE(db);
  CHECK(db->size() == 2);
  auto bob = db->find("bob");
  REQUIRE(bob);
  REQUIRE(bob->has_value());
  CHECK((*bob)->uid == 1000);
  CHECK((*bob)->gid == 1001);
  CHECK((*bob)->password_hash == "{SHA512-CRYPT}$6$x$y");
  auto ghost = db->find("ghost");
  REQUIRE(ghost);
  CHECK_FALSE(ghost->has_value());
}

TEST_CASE("account file errors name the line", "[accounts]") {
  auto bad = FileAccounts::parse("ok:{PLAIN}x\n../etc:{PLAIN}x\n", "users", 0, 0);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().text() == "users:2: invalid user name");
  auto twice = FileAccounts::parse("a:x\na:y\n", "users", 0, 0);
  REQUIRE_FALSE(twice);
  CHECK(twice.error().text() == "users:2: user listed twice");
  CHECK_FALSE(FileAccounts::parse("nocolon\n", "users", 0, 0));
}

TEST_CASE("mailbox paths come from the settings", "[accounts]") {
  MailboxSettings s;
  s.mail_spool = "/var/mail";
  Account joe;
  joe.name = "joe";
  joe.home = "/home/joe";
  CHECK(*mailbox_path(s, joe) == "/var/mail/joe");
  s.maildir = true;
  s.maildir_template = "~/Maildir";
  CHECK(*mailbox_path(s, joe) == "/home/joe/Maildir");
  s.maildir_template = "/srv/mail/%u/Maildir";
  CHECK(*mailbox_path(s, joe) == "/srv/mail/joe/Maildir");
  s.maildir_template = "~/Maildir";
  joe.home.clear();
  CHECK_FALSE(mailbox_path(s, joe));
  s.maildir_template = "relative/%u";
  CHECK_FALSE(mailbox_path(s, joe));
}
