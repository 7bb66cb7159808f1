#include "libmail/mailbox_check.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "libmail/log.h"

namespace mailwright {
namespace {

std::string octal(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

std::string who(uid_t uid, const std::string& name) {
  return name.empty() ? "uid " + std::to_string(uid) : name;
}

std::string group_of(const FileFacts& f) {
  return f.group.empty() ? "gid " + std::to_string(f.gid) : f.group;
}

// The mode and owners in one phrase, so every message about the directory says what it saw.
std::string described(const FileFacts& f) {
  return "mode " + octal(f.mode) + ", " + who(f.uid, f.user) + ":" + group_of(f);
}

class Findings {
 public:
  void problem(std::string text, std::string fix) {
    out_.push_back({true, std::move(text), std::move(fix)});
  }
  void note(std::string text) { out_.push_back({false, std::move(text), {}}); }
  // Findings about single files stop at kMaxEntryFindings; the rest are only counted.
  void entry_problem(std::string text, std::string fix) {
    if (entries_++ < kMaxEntryFindings) problem(std::move(text), std::move(fix));
  }
  std::vector<Finding> finish(const std::string& directory) {
    if (entries_ > kMaxEntryFindings) {
      problem(std::to_string(entries_ - kMaxEntryFindings) + " more files in " + directory +
                  " have problems",
              "mend the ones above and run the check again to see the rest");
    }
    return std::move(out_);
  }

 private:
  std::vector<Finding> out_;
  std::size_t entries_ = 0;
};

// The directory itself. Returns false when it is not a directory that can be looked into.
bool judge_directory(const MailStoreFacts& f, const std::string& what, Findings& out) {
  const std::string& path = f.directory;
  const FileFacts& d = f.dir;
  const std::string group_fix =
      f.mail_group.empty() ? std::string("chmod 1777 ") + path
                           : "chgrp " + f.mail_group + " " + path + " && chmod 2775 " + path +
                                 " (or chmod 1777 " + path + ")";
  if (!d.exists && d.error.empty()) {
    if (f.virtual_accounts) {
      out.problem(what + " " + path + " does not exist",
                  "mkdir -m 755 " + path + " && chown " + f.owner_name + " " + path);
    } else if (f.maildir) {
      out.note(what + " " + path + " does not exist yet; each user's Maildir is made in it");
    } else {
      out.problem(what + " " + path + " does not exist",
                  "mkdir " + path + " && " + group_fix);
    }
    return false;
  }
  if (!d.error.empty()) {
    out.problem("cannot examine " + what + " " + path + ": " + d.error,
                "make every directory above " + path + " searchable");
    return false;
  }
  if (d.symlink) {
    // Harmless only while the link and every directory above it stay root's; naming the
    // directory itself leaves nothing to check.
    out.problem(what + " " + path + " is a symbolic link",
                d.link_target.empty()
                    ? "point it at an existing directory, then name that directory in the "
                      "configuration"
                    : "name the directory itself in the configuration: " + d.link_target);
    return false;
  }
  if (!d.directory) {
    out.problem(what + " " + path + " is not a directory",
                "move it away and make the directory: mkdir " + path);
    return false;
  }
  const bool sticky = (d.mode & S_ISVTX) != 0;
  const bool others_write = (d.mode & S_IWOTH) != 0;
  const bool group_write = (d.mode & S_IWGRP) != 0;
  if (others_write && !sticky) {
    out.problem(path + " is writable by everyone without the sticky bit (" + described(d) +
                    "): any user can remove or replace another's mailbox",
                f.virtual_accounts ? "chmod o-w " + path : "chmod +t " + path + ", or " +
                                                               group_fix);
  }
  if (f.virtual_accounts) {
    if (d.uid != 0 && d.uid != f.owner_uid) {
      out.problem(path + " belongs to " + who(d.uid, d.user) + ", neither root nor " +
                      f.owner_name + " who owns the virtual mailboxes",
                  "chown " + f.owner_name + " " + path);
    }
    const bool owner_writes = (d.uid == f.owner_uid && (d.mode & S_IWUSR) != 0) ||
                              (group_write && d.gid == f.owner_gid) || others_write;
    if (!owner_writes) {
      out.problem(f.owner_name + ", who owns the virtual mailboxes, cannot create files in " +
                      path + " (" + described(d) + ")",
                  "chown " + f.owner_name + " " + path + " && chmod u+rwx " + path);
    }
    if (group_write && !sticky && d.gid != f.owner_gid) {
      out.problem(path + " is writable by group " + group_of(d) +
                      ": its members can remove or replace any mailbox",
                  "chmod g-w " + path);
    }
    return true;
  }
  // System accounts: every recipient writes here as themselves.
  if (d.uid != 0) {
    out.problem(path + " belongs to " + who(d.uid, d.user) +
                    ", not root: that user can remove or replace any mailbox in it",
                "chown root " + path);
  }
  const bool mail_group_writes = group_write && f.mail_group_gid && d.gid == *f.mail_group_gid;
  if (group_write && !sticky && !mail_group_writes) {
    out.problem(path + " is writable by group " + group_of(d) + ", which is not mail_group" +
                    (f.mail_group.empty() ? std::string() : " (" + f.mail_group + ")") +
                    ": its members can remove or replace any mailbox",
                f.mail_group.empty() ? "chmod g-w " + path : "chgrp " + f.mail_group + " " + path);
  }
  if (!f.maildir && !mail_group_writes && !others_write) {
    if (!f.mail_group.empty() && !f.mail_group_gid) {
      out.problem("mail_group " + f.mail_group + " does not exist and " + path +
                      " is not writable by everyone: recipients cannot make dotlocks, and "
                      "every delivery fails",
                  "groupadd --system " + f.mail_group + " && " + group_fix);
    } else {
      out.problem("recipients cannot create dotlocks in " + path + " (" + described(d) +
                      "): every delivery fails",
                  group_fix);
    }
  } else if (!f.maildir && !mail_group_writes && !f.mail_group.empty() && !f.mail_group_gid) {
    out.note("mail_group " + f.mail_group + " does not exist; deliveries rely on " + path +
             " being writable by everyone");
  }
  return true;
}

void judge_entry(const MailStoreFacts& f, const StoreEntry& e, Findings& out) {
  const std::string path = f.directory + "/" + printable(e.name, 64);
  if (e.file.symlink) {
    out.entry_problem(path + " is a symbolic link: mda and pop3d refuse to follow it",
                      e.owner ? "rm " + path + " (mda makes a new mailbox at the next delivery)"
                              : "rm " + path);
    return;
  }
  if (!e.owner) return;  // not a mailbox: a lock, pop3d's index, someone's stray file
  const std::string user = printable(e.name, 64);
  const std::string owner = f.virtual_accounts ? f.owner_name : user;
  if (f.maildir) {
    if (!e.file.directory) {
      out.entry_problem(path + " is not a directory: mail to " + user + " is refused",
                        "move it out of " + f.directory);
      return;
    }
    if (e.file.uid != *e.owner) {
      out.entry_problem(path + " belongs to uid " + std::to_string(e.file.uid) + ", not to " +
                            owner + ": mda and pop3d refuse it",
                        "chown -R " + owner + " " + path);
    }
    if ((e.file.mode & 022) != 0) {
      out.entry_problem(path + " is writable by its group or others (mode " +
                            octal(e.file.mode) + ")",
                        "chmod go-w " + path);
    }
    return;
  }
  if (!e.file.regular) {
    out.entry_problem(path + " is not a regular file: mail to " + user + " is refused",
                      "move it out of " + f.directory);
    return;
  }
  if (e.file.links != 1) {
    out.entry_problem(path + " has " + std::to_string(e.file.links) +
                          " hard links: mda and pop3d refuse it",
                      "remove the other names (find / -xdev -samefile " + path + ")");
  }
  if (e.file.uid != *e.owner) {
    out.entry_problem(path + " belongs to uid " + std::to_string(e.file.uid) + ", not to " +
                          owner + ": mda and pop3d refuse it",
                      "chown " + owner + " " + path);
  }
  if ((e.file.mode & 066) != 0) {
    out.entry_problem(path + " is readable or writable by its group or others (mode " +
                          octal(e.file.mode) + ")",
                      "chmod 600 " + path);
  }
}

FileFacts facts_of(const struct stat& st) {
  FileFacts f;
  f.exists = true;
  f.symlink = S_ISLNK(st.st_mode);
  f.directory = S_ISDIR(st.st_mode);
  f.regular = S_ISREG(st.st_mode);
  f.uid = st.st_uid;
  f.gid = st.st_gid;
  f.mode = st.st_mode & 07777;
  f.links = st.st_nlink;
  return f;
}

FileFacts examine(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    FileFacts f;
    if (errno != ENOENT) f.error = std::strerror(errno);
    return f;
  }
  FileFacts f = facts_of(st);
  if (f.symlink) {
    char resolved[PATH_MAX];
    if (::realpath(path.c_str(), resolved) != nullptr) f.link_target = resolved;
  }
  if (const passwd* pw = ::getpwuid(st.st_uid)) f.user = pw->pw_name;
  if (const group* gr = ::getgrgid(st.st_gid)) f.group = gr->gr_name;
  return f;
}

}  // namespace

MaildirLayout maildir_layout(const std::string& tmpl) {
  MaildirLayout layout;
  if (tmpl.rfind("~/", 0) == 0) {
    layout.per_home = true;
    return layout;
  }
  const auto at = tmpl.find("%u");
  if (at == std::string::npos) {
    layout.shared = true;
    return layout;
  }
  const auto start = tmpl.rfind('/', at);
  if (start == std::string::npos) return layout;
  layout.base = start == 0 ? "/" : tmpl.substr(0, start);
  const auto end = tmpl.find('/', at);
  layout.entries_are_mailboxes = tmpl.substr(start + 1, end == std::string::npos
                                                            ? std::string::npos
                                                            : end - start - 1) == "%u";
  return layout;
}

std::vector<Finding> judge_mail_store(const MailStoreFacts& f) {
  Findings out;
  if (f.maildir) {
    const MaildirLayout layout = maildir_layout(f.maildir_template);
    if (layout.shared) {
      out.problem("maildir = " + f.maildir_template +
                      " names one Maildir for every account: users would read each other's "
                      "mail",
                  "put %u in it, e.g. maildir = /var/vmail/%u, or use ~/Maildir");
      return out.finish(f.directory);
    }
    if (layout.per_home) {
      if (f.virtual_accounts) {
        out.problem("maildir = " + f.maildir_template +
                        " needs home directories, which virtual accounts do not have",
                    "set maildir to an absolute template, e.g. /var/vmail/%u");
      } else {
        out.note("Maildirs are in the users' home directories; each is checked when mail is "
                 "delivered to it");
      }
      return out.finish(f.directory);
    }
  }
  if (f.virtual_accounts && f.owner_uid == 0) {
    // Both programs take the owner's identity for virtual mail: root's would put every
    // mailbox, and every POP3 session, beyond the reach of the privilege model.
    out.problem(std::string("the virtual mailboxes would belong to root (virtual_owner ") +
                    (f.owner_configured ? "is " + f.owner_name : std::string("is empty")) +
                    "): mda would write them and pop3d serve them as root",
                "set virtual_owner to the unprivileged Unix user that owns them");
  }
  if (f.directory.empty()) return out.finish(f.directory);
  if (!judge_directory(f, f.maildir ? "the Maildir directory" : "mail_spool", out)) {
    return out.finish(f.directory);
  }
  if (!f.listing_error.empty()) {
    out.note("cannot list " + f.directory + " (" + f.listing_error +
             "): the mailboxes in it were not checked; run the check as root");
  }
  for (const StoreEntry& e : f.entries) {
    if (!f.entries_are_mailboxes && !e.file.symlink) continue;
    judge_entry(f, e, out);
  }
  return out.finish(f.directory);
}

MailStoreFacts gather_mail_store(const MailboxSettings& settings, const AccountDb* accounts) {
  MailStoreFacts f;
  f.maildir = settings.maildir;
  f.maildir_template = settings.maildir_template;
  f.virtual_accounts = settings.file_accounts;
  f.owner_configured = !settings.virtual_owner.empty();
  f.mail_group = settings.mail_group;
  if (!settings.mail_group.empty()) {
    if (const group* gr = ::getgrnam(settings.mail_group.c_str())) f.mail_group_gid = gr->gr_gid;
  }
  if (f.virtual_accounts) {
    const passwd* pw = settings.virtual_owner.empty()
                           ? ::getpwuid(::geteuid())
                           : ::getpwnam(settings.virtual_owner.c_str());
    if (pw != nullptr) {
      f.owner_name = pw->pw_name;
      f.owner_uid = pw->pw_uid;
      f.owner_gid = pw->pw_gid;
    } else {
      f.owner_name = settings.virtual_owner.empty() ? "uid " + std::to_string(::geteuid())
                                                    : settings.virtual_owner;
      f.owner_uid = ::geteuid();
      f.owner_gid = ::getegid();
    }
  }
  if (settings.maildir) {
    const MaildirLayout layout = maildir_layout(settings.maildir_template);
    f.directory = layout.base;
    f.entries_are_mailboxes = layout.entries_are_mailboxes;
  } else {
    f.directory = settings.mail_spool;
    f.entries_are_mailboxes = true;
  }
  if (f.directory.empty()) return f;
  f.dir = examine(f.directory);
  if (!f.dir.directory) return f;
  DIR* dir = ::opendir(f.directory.c_str());
  if (dir == nullptr) {
    f.listing_error = std::strerror(errno);
    return f;
  }
  const int dfd = ::dirfd(dir);
  while (const dirent* de = ::readdir(dir)) {
    const std::string name = de->d_name;
    if (name == "." || name == "..") continue;
    struct stat st {};
    if (::fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
    StoreEntry e{name, facts_of(st), std::nullopt};
    // Only a name that passes the check may be looked up (accounts.h), and only a name found
    // is a mailbox; anything else in the directory is left to whoever made it.
    if (accounts != nullptr && is_valid_user_name(name)) {
      auto found = accounts->find(name);
      if (found && found->has_value()) e.owner = (*found)->uid;
    }
    f.entries.push_back(std::move(e));
  }
  ::closedir(dir);
  std::sort(f.entries.begin(), f.entries.end(),
            [](const StoreEntry& a, const StoreEntry& b) { return a.name < b.name; });
  return f;
}

int print_findings(const std::vector<Finding>& findings) {
  int problems = 0;
  for (const Finding& finding : findings) {
    if (finding.problem) {
      std::printf("problem: %s\n  fix: %s\n", finding.text.c_str(), finding.fix.c_str());
      ++problems;
    } else {
      std::printf("note: %s\n", finding.text.c_str());
    }
  }
  return problems;
}

}  // namespace mailwright
