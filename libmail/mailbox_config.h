// Where mailboxes are and whom they belong to: the settings mda.conf and pop3d.conf share,
// so the agent that writes a mailbox and the server that reads it always agree.
//
//   mailbox_format   = mbox | maildir
//   mail_spool       = /var/mail          mbox files: mail_spool/USER
//   maildir          = ~/Maildir          "~/" is the account's home; "%u" the user name
//   accounts         = system | file      system accounts, or virtual users listed in a file
//   account_file     = PATH               "name:{SCHEME}hash" lines (accounts = file)
//   virtual_owner    = USER               Unix user owning virtual mailboxes (default: the
//                                         user the program runs as)
//   mail_group       = mail               group kept while delivering, for dotlocks in the spool
//   lock_timeout     = 60s                longest wait for a mailbox lock
//   stale_lock_after = 5m                 a dotlock older than this was left by a crash
#pragma once

#include <array>
#include <memory>
#include <string>

#include "libmail/accounts.h"
#include "libmail/config.h"
#include "libmail/mailbox_lock.h"
#include "libmail/result.h"

namespace mailwright {

inline constexpr std::array kMailboxConfigKeys{
    ConfigKey{"mailbox_format", ConfigType::kChoice, "mbox",
              "mailbox format: mbox (one file per user) or maildir (a directory)", "mbox|maildir"},
    ConfigKey{"mail_spool", ConfigType::kPath, "/var/mail", "directory of mbox files, one per user"},
    ConfigKey{"maildir", ConfigType::kString, "~/Maildir",
              "Maildir of a user: ~/ is the home directory, %u the user name"},
    ConfigKey{"accounts", ConfigType::kChoice, "system",
              "where users come from: system accounts or the account_file", "system|file"},
    ConfigKey{"account_file", ConfigType::kPath, "",
              "virtual users, one name:{SCHEME}hash per line (accounts = file)"},
    ConfigKey{"virtual_owner", ConfigType::kString, "",
              "Unix user owning virtual mailboxes; empty: the user the program runs as"},
    ConfigKey{"mail_group", ConfigType::kString, "mail",
              "group kept while delivering as root, so dotlocks can be made in mail_spool"},
    ConfigKey{"lock_timeout", ConfigType::kDuration, "60s", "longest wait for a mailbox lock",
              {}, 1, 3600},
    ConfigKey{"stale_lock_after", ConfigType::kDuration, "5m",
              "a dotlock older than this is removed as left by a crash", {}, 10, 86400},
};

template <std::size_t N, std::size_t M>
constexpr std::array<ConfigKey, N + M> join_config_keys(const std::array<ConfigKey, N>& a,
                                                        const std::array<ConfigKey, M>& b) {
  std::array<ConfigKey, N + M> out{};
  for (std::size_t i = 0; i < N; ++i) out[i] = a[i];
  for (std::size_t i = 0; i < M; ++i) out[N + i] = b[i];
  return out;
}

struct MailboxSettings {
  bool maildir = false;
  std::string mail_spool;
  std::string maildir_template;
  bool file_accounts = false;
  std::string account_file;
  std::string virtual_owner;
  std::string mail_group;
  LockPolicy lock;
};

MailboxSettings mailbox_settings_from(const Config& config);

struct MailboxIdentity {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups to hold while touching the mailbox
};

// The account database the settings name. Virtual accounts are owned by virtual_owner, or by
// the running user.
Result<std::unique_ptr<AccountDb>> open_account_db(const MailboxSettings& settings);

// The path of account's mailbox: mail_spool/NAME, or the expanded maildir template.
// account.name must have passed is_valid_user_name (every AccountDb guarantees it).
Result<std::string> mailbox_path(const MailboxSettings& settings, const Account& account);

// The ids to hold while delivering to account: its own uid and gid, plus mail_group when
// that group exists.
MailboxIdentity mailbox_identity(const MailboxSettings& settings, const Account& account);

}  // namespace mailwright
