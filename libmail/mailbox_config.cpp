#include "libmail/mailbox_config.h"

#include <grp.h>
#include <pwd.h>
#include <sysexits.h>
#include <unistd.h>

namespace mailwright {

MailboxSettings mailbox_settings_from(const Config& config) {
  MailboxSettings s;
  s.maildir = config.get_string("mailbox_format") == "maildir";
  s.mail_spool = config.get_string("mail_spool");
  s.maildir_template = config.get_string("maildir");
  s.file_accounts = config.get_string("accounts") == "file";
  s.account_file = config.get_string("account_file");
  s.virtual_owner = config.get_string("virtual_owner");
  s.mail_group = config.get_string("mail_group");
  s.lock.timeout = config.get_duration("lock_timeout");
  s.lock.stale_after = config.get_duration("stale_lock_after");
  return s;
}

Result<std::unique_ptr<AccountDb>> open_account_db(const MailboxSettings& settings) {
  if (!settings.file_accounts) return std::unique_ptr<AccountDb>(new SystemAccounts());
  if (settings.account_file.empty()) {
    return Error::from_exit_code(EX_CONFIG, "accounts = file needs account_file");
  }
  uid_t uid = ::geteuid();
  gid_t gid = ::getegid();
  if (!settings.virtual_owner.empty()) {
    auto owner = SystemAccounts().find(settings.virtual_owner);
    if (!owner) return owner.error();
    if (!owner->has_value()) {
      return Error::from_exit_code(EX_CONFIG,
                                   "virtual_owner: no such user: " + settings.virtual_owner);
    }
    uid = (*owner)->uid;
    gid = (*owner)->gid;
  }
  auto db = FileAccounts::load(settings.account_file, uid, gid);
  if (!db) return db.error();
  return std::unique_ptr<AccountDb>(new FileAccounts(std::move(*db)));
}

Result<std::string> mailbox_path(const MailboxSettings& settings, const Account& account) {
  if (!settings.maildir) return settings.mail_spool + "/" + account.name;
  std::string path;
  std::string_view tmpl = settings.maildir_template;
  if (tmpl.substr(0, 2) == "~/") {
    if (account.home.empty() || account.home[0] != '/') {
      return Error::from_exit_code(EX_CONFIG, "maildir = ~/...: " + account.name +
                                                  " has no home directory");
    }
    path = account.home;
    tmpl.remove_prefix(1);
  }
  for (std::size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] == '%' && i + 1 < tmpl.size() && tmpl[i + 1] == 'u') {
      path += account.name;
      ++i;
    } else {
      path += tmpl[i];
    }
  }
  if (path.empty() || path[0] != '/') {
    return Error::from_exit_code(EX_CONFIG, "maildir must be absolute or start with ~/");
  }
  return path;
}

MailboxIdentity mailbox_identity(const MailboxSettings& settings, const Account& account) {
  MailboxIdentity id;
  id.uid = account.uid;
  id.gid = account.gid;
  if (!settings.mail_group.empty()) {
    struct group grp {};
    struct group* found = nullptr;
    char buf[16384];
    if (::getgrnam_r(settings.mail_group.c_str(), &grp, buf, sizeof buf, &found) == 0 && found) {
      id.groups.push_back(found->gr_gid);
    }
  }
  return id;
}

}  // namespace mailwright
