// The aliases(5) file: local names that are not accounts but receive mail, and their expansion.
//
// Syntax, as sendmail and Postfix read it, minus the parts nobody needs and everyone gets wrong:
//
//   # comment                      first non-blank character '#'; may hold UTF-8
//   postmaster: root               name ':' targets separated by commas
//   staff: alice, bob@example.org,
//     carol                        a line starting with a blank continues the entry above
//   log: /var/log/mail-archive     an absolute path: the message is appended to the file
//   bug: "|/usr/bin/tracker --new" a command (quoted because it has blanks): piped to it
//   list: :include:/etc/mail/list  the targets listed in another file
//   root: \root, admin             \name: root's own mailbox, never expanded again
//
// Names are 1 to 64 octets of [A-Za-z0-9._+-], not starting with '.' or '-', and match without
// regard to ASCII case. A target is an address (a local name of the same alphabet, or a mailbox
// local@domain checked by parse_mailbox), `/path`, `|command`, `:include:/path` or `\name`. A
// target holding blanks, commas, quotes or backslashes is written as a whole in double quotes, in
// which a backslash escapes the next octet; only a command, a file or an include can be quoted
// whole (`"joe smith"@example.org` is an address with a quoted local part, for parse_mailbox).
// Targets never span lines: a line break separates targets like a comma, and a comma may end a
// line. Blank and comment lines are skipped, also between an entry and its continuation lines.
//
// Refused, with "FILE:LINE: reason" (EX_CONFIG): control characters but tab (a CR is allowed only
// right before the LF), octets >= 0x80 outside comment lines (an address that needs SMTPUTF8
// cannot be reached from every message, and a path or command should not depend on an
// encoding), invalid names, a name defined twice (both lines named), an entry without targets,
// a continuation line before the first entry, empty targets between commas, unbalanced quotes,
// and anything sendmail would read as an RFC 822 phrase or comment ("Joe <joe@x>"): a typo in
// this file must not quietly send mail somewhere else.
//
// Parsers and expand_alias() are pure: no I/O, no globals. Only load() and load_include_file()
// touch the file system.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.h"

namespace mailwright::mta {

// Far larger than any real alias file; bounds what one read can take.
inline constexpr std::size_t kMaxAliasFile = 64 * 1024 * 1024;
inline constexpr std::size_t kMaxAliasName = 64;

struct AliasTarget {
  enum class Kind { kAddress, kFile, kPipe, kInclude };
  Kind kind = Kind::kAddress;
  // kAddress: a local name as written, or local@domain in canonical form with the domain in lower
  // case (Mailbox::to_string). kFile, kInclude: an absolute path. kPipe: the command without
  // the '|', blanks trimmed.
  std::string value;
  // kAddress only: "\name", deliver to the mailbox of name without looking it up as an alias.
  bool no_expand = false;

  friend bool operator==(const AliasTarget&, const AliasTarget&) = default;
};

// [A-Za-z0-9._+-], 1 to kMaxAliasName octets, not starting with '.' or '-'. Every valid user
// name (accounts.h) is a valid alias name.
bool is_valid_alias_name(std::string_view name);

class AliasTable {
 public:
  static Result<AliasTable> parse(std::string_view text, std::string_view file_name);
  // Reads a regular file of at most kMaxAliasFile octets (a FIFO or device is refused without
  // blocking on it). Every failure is EX_CONFIG: mail waits until the file is fixed.
  static Result<AliasTable> load(const std::string& path);

  // The targets of name in any ASCII case, or nullptr. Valid until the table changes.
  const std::vector<AliasTarget>* find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  // "owner-list" (as stored, lower case) if that alias exists: sendmail sends the errors of a
  // list's deliveries there instead of to the original sender.
  std::optional<std::string> owner_of(std::string_view list) const;
  std::size_t size() const { return entries_.size(); }
  // Every name, lower case, sorted; the views live as long as the table.
  std::vector<std::string_view> names() const;

  // The table in canonical syntax, one line per entry in name order; parse() gives it back.
  std::string to_string() const;

  friend bool operator==(const AliasTable&, const AliasTable&) = default;

 private:
  // ASCII case-insensitive and transparent, so find() needs no lower-cased copy.
  struct NameLess {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const;
  };
  std::map<std::string, std::vector<AliasTarget>, NameLess> entries_;
};

// The targets of one :include: file: the same target syntax, one or more per line separated by
// commas, no "name:" and no continuation lines (leading blanks are ignored). Blank and comment
// lines are allowed and an empty file gives no targets. Errors as for AliasTable::parse.
Result<std::vector<AliasTarget>> parse_include_file(std::string_view text,
                                                    std::string_view file_name);
// Reads and parses an include file like AliasTable::load. It does not check who owns the file:
// sendmail runs the files and commands of an include file as its owner, and that is the
// caller's decision (see Expansion::include_files).
Result<std::vector<AliasTarget>> load_include_file(const std::string& path);

struct Expansion {
  // Final targets in the order first reached, each once: local names (kAddress without '@',
  // always no_expand: a mailbox, not to be expanded again), remote addresses (kAddress with
  // '@'; whether their domain is local is the caller's business), files and pipes. Never empty.
  std::vector<AliasTarget> targets;
  // For each of targets, the :include: file it was written in, or "" for the alias table. The
  // table is written by root, an include file may be written by anybody: files and commands
  // must be run with the rights of whoever wrote them.
  std::vector<std::string> include_files;
};

using AliasLookup = std::function<const std::vector<AliasTarget>*(std::string_view name)>;
using IncludeReader = std::function<Result<std::vector<AliasTarget>>(std::string_view path)>;

// Expands the local name (a local part, without a domain) recursively. A name that is no alias
// is itself the one final target. An alias whose expansion reaches its own name again delivers
// to the mailbox of that name (sendmail: "root: root, admin" is root's mailbox and admin), so a
// loop a -> b -> a ends in the mailbox a. Each alias and include file is expanded at most once
// per call (sendmail suppresses them as duplicates), which also bounds the work by the size of
// the table. include() errors are returned as they are.
//
// Errors: a name that is not a valid alias name, or an expansion with no final target at all
// (only empty include files: accepting the mail would drop it), Error::permanent(EX_NOUSER,
// "5.1.1"), so a local part like "a@b" can never come back as a remote address; nesting deeper
// than max_depth (aliases and include files) or more than max_targets final targets,
// Error::permanent(EX_DATAERR, "5.4.6"). The recursion depth is at most max_depth.
Result<Expansion> expand_alias(std::string_view name, const AliasLookup& lookup,
                               const IncludeReader& include, std::size_t max_depth = 20,
                               std::size_t max_targets = 10000);

}  // namespace mailwright::mta
