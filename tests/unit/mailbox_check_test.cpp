#include "libmail/mailbox_check.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>

using namespace mailwright;

namespace {

FileFacts dir(uid_t uid, gid_t gid, mode_t mode) {
  FileFacts f;
  f.exists = true;
  f.directory = true;
  f.uid = uid;
  f.gid = gid;
  f.mode = mode;
  return f;
}

FileFacts mbox(uid_t uid, mode_t mode, nlink_t links = 1) {
  FileFacts f;
  f.exists = true;
  f.regular = true;
  f.uid = uid;
  f.mode = mode;
  f.links = links;
  return f;
}

// /var/mail as Debian ships it: root:mail 2775, the group mail being gid 8.
MailStoreFacts system_spool(mode_t mode = 02775, uid_t uid = 0, gid_t gid = 8) {
  MailStoreFacts f;
  f.directory = "/var/mail";
  f.entries_are_mailboxes = true;
  f.dir = dir(uid, gid, mode);
  f.mail_group = "mail";
  f.mail_group_gid = 8;
  return f;
}

MailStoreFacts virtual_spool(mode_t mode = 0755, uid_t uid = 5000) {
  MailStoreFacts f;
  f.directory = "/var/vmail";
  f.entries_are_mailboxes = true;
  f.dir = dir(uid, 5000, mode);
  f.virtual_accounts = true;
  f.owner_name = "vmail";
  f.owner_uid = 5000;
  f.owner_gid = 5000;
  f.mail_group = "mail";
  f.mail_group_gid = 8;
  return f;
}

std::size_t problems(const std::vector<Finding>& findings) {
  std::size_t n = 0;
  for (const Finding& f : findings) n += f.problem ? 1 : 0;
  return n;
}

bool mentions(const std::vector<Finding>& findings, const std::string& text) {
  for (const Finding& f : findings) {
    if (f.problem && (f.text.find(text) != std::string::npos)) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("the usual mail spools pass", "[mailbox_check]") {
  CHECK(problems(judge_mail_store(system_spool(02775))) == 0);
  CHECK(problems(judge_mail_store(system_spool(01777, 0, 0))) == 0);
  CHECK(problems(judge_mail_store(system_spool(03775))) == 0);
  CHECK(problems(judge_mail_store(virtual_spool(0755))) == 0);
  CHECK(problems(judge_mail_store(virtual_spool(0700))) == 0);
  CHECK(problems(judge_mail_store(virtual_spool(0755, 0))) == 1);  // root's, not vmail's 0755
}

TEST_CASE("a spool that lets users replace each other's mailboxes is a problem",
          "[mailbox_check]") {
  auto world = judge_mail_store(system_spool(0777, 0, 0));
  CHECK(mentions(world, "without the sticky bit"));
  auto other_group = judge_mail_store(system_spool(0775, 0, 100));
  CHECK(mentions(other_group, "which is not mail_group"));
  auto owner = judge_mail_store(system_spool(02775, 1000, 8));
  CHECK(mentions(owner, "not root"));
  for (const Finding& f : owner) {
    if (f.problem) CHECK(f.fix == "chown root /var/mail");
  }
}

TEST_CASE("a spool where recipients cannot make dotlocks is a problem", "[mailbox_check]") {
  auto closed = judge_mail_store(system_spool(0755, 0, 0));
  REQUIRE(problems(closed) == 1);
  CHECK(mentions(closed, "cannot create dotlocks"));
  CHECK(closed.front().fix.find("chgrp mail /var/mail && chmod 2775 /var/mail") == 0);
  auto no_group = system_spool(0755, 0, 0);
  no_group.mail_group_gid.reset();
  auto findings = judge_mail_store(no_group);
  CHECK(mentions(findings, "mail_group mail does not exist"));
  // Without the group, 1777 still works: only a note.
  auto sticky = system_spool(01777, 0, 0);
  sticky.mail_group_gid.reset();
  auto noted = judge_mail_store(sticky);
  CHECK(problems(noted) == 0);
  CHECK(noted.size() == 1);
}

TEST_CASE("a missing, linked or wrong kind of spool is reported with its fix",
          "[mailbox_check]") {
  auto missing = system_spool();
  missing.dir = FileFacts{};
  auto m = judge_mail_store(missing);
  REQUIRE(problems(m) == 1);
  CHECK(m.front().text == "mail_spool /var/mail does not exist");
  CHECK(m.front().fix == "mkdir /var/mail && chgrp mail /var/mail && chmod 2775 /var/mail "
                         "(or chmod 1777 /var/mail)");

  auto linked = system_spool();
  linked.dir = FileFacts{};
  linked.dir.exists = true;
  linked.dir.symlink = true;
  linked.dir.link_target = "/var/spool/mail";
  auto l = judge_mail_store(linked);
  REQUIRE(problems(l) == 1);
  CHECK(mentions(l, "is a symbolic link"));
  CHECK(l.front().fix.find("/var/spool/mail") != std::string::npos);

  auto file = system_spool();
  file.dir.directory = false;
  file.dir.regular = true;
  CHECK(mentions(judge_mail_store(file), "is not a directory"));
}

TEST_CASE("mailboxes must be the account's own regular files, private to it",
          "[mailbox_check]") {
  auto f = system_spool();
  FileFacts link;
  link.exists = true;
  link.symlink = true;
  f.entries = {
      {"alice", mbox(1000, 0600), 1000},       // fine
      {"bob", mbox(1001, 0660), 1001},         // Debian's 0660: group mail reads it
      {"carol", mbox(1000, 0600), 1002},       // someone else's file
      {"dave", link, 1003},                    // a planted link
      {"erin", mbox(1004, 0600, 2), 1004},     // a hard link
      {"frank", dir(1005, 1005, 0700), 1005},  // not a file
      {"alice.lock", mbox(1000, 0644), std::nullopt},  // not a mailbox: left alone
      {".x", link, std::nullopt},              // any link in the spool is reported
  };
  auto findings = judge_mail_store(f);
  CHECK(problems(findings) == 6);
  CHECK(mentions(findings, "/var/mail/bob is readable or writable by its group or others"));
  CHECK(mentions(findings, "/var/mail/carol belongs to uid 1000, not to carol"));
  CHECK(mentions(findings, "/var/mail/dave is a symbolic link"));
  CHECK(mentions(findings, "/var/mail/erin has 2 hard links"));
  CHECK(mentions(findings, "/var/mail/frank is not a regular file"));
  CHECK(mentions(findings, "/var/mail/.x is a symbolic link"));
  CHECK_FALSE(mentions(findings, "alice"));
}

TEST_CASE("virtual mailboxes belong to the virtual owner", "[mailbox_check]") {
  auto f = virtual_spool();
  f.entries = {{"joe", mbox(5000, 0600), 5000}, {"ann", mbox(0, 0600), 5000}};
  auto findings = judge_mail_store(f);
  REQUIRE(problems(findings) == 1);
  CHECK(findings.front().fix == "chown vmail /var/vmail/ann");
  auto foreign = virtual_spool(0755, 1234);
  CHECK(mentions(judge_mail_store(foreign), "neither root nor vmail"));
}

TEST_CASE("findings about single files are capped", "[mailbox_check]") {
  auto f = system_spool();
  for (int i = 0; i < 50; ++i) {
    f.entries.push_back({"user" + std::to_string(i), mbox(2000 + i, 0660), 2000 + i});
  }
  auto findings = judge_mail_store(f);
  CHECK(problems(findings) == kMaxEntryFindings + 1);
  CHECK(findings.back().text == "30 more files in /var/mail have problems");
}

TEST_CASE("Maildir templates", "[mailbox_check]") {
  CHECK(maildir_layout("~/Maildir").per_home);
  CHECK(maildir_layout("/var/vmail/shared").shared);
  auto plain = maildir_layout("/var/vmail/%u");
  CHECK(plain.base == "/var/vmail");
  CHECK(plain.entries_are_mailboxes);
  auto nested = maildir_layout("/var/vmail/%u/Maildir");
  CHECK(nested.base == "/var/vmail");
  CHECK(nested.entries_are_mailboxes);
  auto prefixed = maildir_layout("/srv/mail/u-%u");
  CHECK(prefixed.base == "/srv/mail");
  CHECK_FALSE(prefixed.entries_are_mailboxes);

  MailStoreFacts shared;
  shared.maildir = true;
  shared.maildir_template = "/var/vmail/all";
  CHECK(mentions(judge_mail_store(shared), "names one Maildir for every account"));
  MailStoreFacts home;
  home.maildir = true;
  home.maildir_template = "~/Maildir";
  home.virtual_accounts = true;
  CHECK(mentions(judge_mail_store(home), "needs home directories"));

  auto f = virtual_spool(0700);
  f.maildir = true;
  f.maildir_template = "/var/vmail/%u";
  f.entries = {{"joe", dir(5000, 5000, 0700), 5000}, {"ann", mbox(5000, 0600), 5000}};
  auto findings = judge_mail_store(f);
  REQUIRE(problems(findings) == 1);
  CHECK(mentions(findings, "/var/vmail/ann is not a directory"));
}

TEST_CASE("virtual mailboxes never belong to root", "[mailbox_check]") {
  auto f = virtual_spool(0755, 0);
  f.owner_name = "root";
  f.owner_uid = 0;
  f.owner_gid = 0;
  auto findings = judge_mail_store(f);
  REQUIRE(problems(findings) == 1);
  CHECK(findings.front().text ==
        "the virtual mailboxes would belong to root (virtual_owner is empty): mda would write "
        "them and pop3d serve them as root");
  f.owner_configured = true;
  CHECK(mentions(judge_mail_store(f), "(virtual_owner is root)"));
}
