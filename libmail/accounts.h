// Accounts: who may receive and fetch mail, and as which Unix user their mailbox is written.
//
// Two backends behind one interface. SystemAccounts reads the system's account database
// (getpwnam_r, so NSS sources work). FileAccounts reads a passwd-like file of virtual users,
// "name:{SCHEME}hash[:anything]" per line, whose mailboxes all belong to one Unix user (the
// one the program runs as): this is how the sandbox and virtual-mail hosts work.
//
// A user name is checked with is_valid_user_name() before any lookup, and only a name that
// passed the check and was found may ever become part of a path.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "libmail/result.h"

namespace mailwright {

struct Account {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;           // empty for virtual accounts
  std::string password_hash;  // "{SCHEME}hash" for virtual accounts; empty for system ones
};

// 1 to limits::kUserName octets of [A-Za-z0-9._-], not starting with '.' or '-': no name that
// passes can be "", ".", "..", contain '/', or be taken for an option.
bool is_valid_user_name(std::string_view name);

class AccountDb {
 public:
  virtual ~AccountDb() = default;
  // nullopt: no such user (permanent). An error: the database could not be read (temporary).
  virtual Result<std::optional<Account>> find(std::string_view name) const = 0;
};

class SystemAccounts final : public AccountDb {
 public:
  Result<std::optional<Account>> find(std::string_view name) const override;
};

class FileAccounts final : public AccountDb {
 public:
  static Result<FileAccounts> parse(std::string_view text, std::string_view file_name,
                                    uid_t owner_uid, gid_t owner_gid);
  static Result<FileAccounts> load(const std::string& path, uid_t owner_uid, gid_t owner_gid);
  Result<std::optional<Account>> find(std::string_view name) const override;
  std::size_t size() const { return accounts_.size(); }

 private:
  std::map<std::string, Account, std::less<>> accounts_;
};

}  // namespace mailwright
