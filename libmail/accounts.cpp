#include "libmail/accounts.h"

#include <pwd.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "libmail/file_io.h"
#include "libmail/limits.h"

namespace mailwright {

bool is_valid_user_name(std::string_view name) {
  if (name.empty() || name.size() > limits::kUserName) return false;
  if (name.front() == '.' || name.front() == '-') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::optional<Account>> SystemAccounts::find(std::string_view name) const {
  if (!is_valid_user_name(name)) return std::optional<Account>{};
  std::string key(name);
  long size_hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size_hint > 0 ? static_cast<std::size_t>(size_hint) : 16384);
  for (;;) {
    struct passwd pw {};
    struct passwd* found = nullptr;
    int rc = ::getpwnam_r(key.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    // getpwnam_r reports "not found" as 0 with a null result; some NSS modules say ENOENT.
    if (rc == 0 && found == nullptr) return std::optional<Account>{};
    if (rc == ENOENT || rc == ESRCH) return std::optional<Account>{};
    if (rc != 0) return Error::from_errno(EX_TEMPFAIL, "account lookup", rc);
    Account account;
    account.name = pw.pw_name;
    account.uid = pw.pw_uid;
    account.gid = pw.pw_gid;
    account.home = pw.pw_dir ? pw.pw_dir : "";
    // The database may match names case-insensitively or by alias; the mailbox name must be
    // the name that was checked, so insist on an exact match.
    if (account.name != key) return std::optional<Account>{};
    return std::optional<Account>(std::move(account));
  }
}

Result<FileAccounts> FileAccounts::parse(std::string_view text, std::string_view file_name,
                                         uid_t owner_uid, gid_t owner_gid) {
  FileAccounts db;
  std::size_t line_no = 0;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    auto where = [&] { return std::string(file_name) + ":" + std::to_string(line_no) + ": "; };
    auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      return Error::from_exit_code(EX_CONFIG, where() + "expected name:{SCHEME}hash");
    }
    std::string_view name = line.substr(0, colon);
    std::string_view rest = line.substr(colon + 1);
    std::string_view hash = rest.substr(0, rest.find(':'));
    if (!is_valid_user_name(name)) {
      return Error::from_exit_code(EX_CONFIG, where() + "invalid user name");
    }
    if (db.accounts_.count(name) != 0) {
      return Error::from_exit_code(EX_CONFIG, where() + "user listed twice");
    }
    Account account;
    account.name = std::string(name);
    account.uid = owner_uid;
    account.gid = owner_gid;
    account.password_hash = std::string(hash);
    db.accounts_.emplace(account.name, std::move(account));
  }
  return db;
}

Result<FileAccounts> FileAccounts::load(const std::string& path, uid_t owner_uid,
                                        gid_t owner_gid) {
  auto text = read_small_file(path, 16 * 1024 * 1024);
  if (!text) return Error::from_exit_code(EX_CONFIG, text.error().text());
  return parse(*text, path, owner_uid, owner_gid);
}

Result<std::optional<Account>> FileAccounts::find(std::string_view name) const {
  auto it = accounts_.find(name);
  if (it == accounts_.end()) return std::optional<Account>{};
  return std::optional<Account>(it->second);
}

}  // namespace mailwright
