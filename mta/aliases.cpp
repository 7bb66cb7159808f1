#include "mta/aliases.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <utility>

#include "libmail/address.h"
#include "libmail/ascii.h"
#include "libmail/file_io.h"

namespace mailwright::mta {

namespace {

using Kind = AliasTarget::Kind;

constexpr std::string_view kIncludePrefix = ":include:";

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

// Walks the lines of a file, refusing bad octets, and hands out those that are neither blank
// nor comments. Errors name the file and the line.
class LineWalker {
 public:
  LineWalker(std::string_view text, std::string_view file_name)
      : text_(text), file_name_(file_name) {}

  // The next line with content, without its line end; false at the end of the text.
  Result<bool> next(std::string_view& line) {
    while (!text_.empty()) {
      const std::size_t lf = text_.find('\n');
      line = text_.substr(0, lf);
      text_.remove_prefix(lf == std::string_view::npos ? text_.size() : lf + 1);
      ++number_;
      // A CR only as part of a CRLF line end, so a file edited on Windows still reads.
      if (!line.empty() && line.back() == '\r')
        line.remove_suffix(1);
      const std::string_view content = trim(line);
      const bool comment = !content.empty() && content.front() == '#';
      for (std::size_t i = 0; i < line.size(); ++i) {
        const auto c = static_cast<unsigned char>(line[i]);
        if ((c < 0x20 && c != '\t') || c == 0x7F) {
          static constexpr char kHex[] = "0123456789ABCDEF";
          return error(std::string("control character 0x") + kHex[c >> 4] + kHex[c & 15] +
                       " in column " + std::to_string(i + 1));
        }
        // Comments may name people; nothing else may depend on an encoding.
        if (c >= 0x80 && !comment)
          return error("non-ASCII octet in column " + std::to_string(i + 1));
      }
      if (!content.empty() && !comment)
        return true;
    }
    return false;
  }

  std::size_t line_number() const { return number_; }
  Error error(std::string_view reason) const { return error_at(number_, reason); }
  Error error_at(std::size_t line, std::string_view reason) const {
    return Error::from_exit_code(EX_CONFIG, std::string(file_name_) + ":" + std::to_string(line) +
                                                ": " + std::string(reason));
  }

 private:
  std::string_view text_;
  std::string_view file_name_;
  std::size_t number_ = 0;
};

// Index of the quote closing the quoted string that starts at s[0], or npos.
std::size_t closing_quote(std::string_view s) {
  for (std::size_t i = 1; i < s.size(); ++i) {
    if (s[i] == '\\')
      ++i;
    else if (s[i] == '"')
      return i;
  }
  return std::string_view::npos;
}

std::string unquote(std::string_view inner) {
  std::string out;
  for (std::size_t i = 0; i < inner.size(); ++i) {
    if (inner[i] == '\\' && i + 1 < inner.size())
      ++i;
    out += inner[i];
  }
  return out;
}

bool ends_like_directory(std::string_view path) { return path.back() == '/'; }

// A command, file or include target; text is unquoted and starts with '|', '/' or ":include:".
Result<AliasTarget> parse_special(std::string_view text, const LineWalker& at) {
  if (text.front() == '|') {
    std::string_view command = trim(text.substr(1));
    if (command.empty())
      return at.error("empty command after '|'");
    return AliasTarget{Kind::kPipe, std::string(command)};
  }
  if (text.front() == '/') {
    if (ends_like_directory(text))
      return at.error("file target ends with '/'");
    return AliasTarget{Kind::kFile, std::string(text)};
  }
  std::string_view path = text.substr(kIncludePrefix.size());
  while (!path.empty() && is_blank(path.front())) path.remove_prefix(1);
  if (path.empty() || path.front() != '/')
    return at.error(":include: needs an absolute path");
  if (ends_like_directory(path))
    return at.error(":include: path ends with '/'");
  return AliasTarget{Kind::kInclude, std::string(path)};
}

bool is_special(std::string_view text) {
  return !text.empty() &&
         (text.front() == '|' || text.front() == '/' || ascii_istarts_with(text, kIncludePrefix));
}

// One target, already trimmed and not empty.
Result<AliasTarget> parse_target(std::string_view token, const LineWalker& at) {
  if (token.front() == '"' && closing_quote(token) == token.size() - 1) {
    const std::string inner = unquote(token.substr(1, token.size() - 2));
    // A quoted address would be read as a local part by one program and as a whole address by
    // the next; only what needs the quotes may have them.
    if (!is_special(inner))
      return at.error("only a |command, a /file or an :include: may be quoted");
    return parse_special(inner, at);
  }
  if (is_special(token)) {
    for (char c : token) {
      if (is_blank(c) || c == '"' || c == '\\') {
        return at.error("a command or path holding blanks, quotes or backslashes must be quoted");
      }
    }
    return parse_special(token, at);
  }
  if (token.front() == '\\') {
    if (!is_valid_alias_name(token.substr(1)))
      return at.error("'\\' must be followed by a local name");
    return AliasTarget{Kind::kAddress, std::string(token.substr(1)), true};
  }
  if (token.find('@') != std::string_view::npos) {
    auto mailbox = parse_mailbox(token);
    if (!mailbox)
      return at.error("invalid address: " + mailbox.error().text());
    if (!mailbox->domain_is_literal)
      mailbox->domain = lowercase_domain(mailbox->domain);
    std::string canonical = mailbox->to_string();
    // "|x"@y is written |x@y in the minimum quoting, which reads back as a command.
    if (canonical.front() == '|' || canonical.front() == '/') {
      const std::size_t at_sign = canonical.find('@');  // a dot-string holds no '@'
      canonical = '"' + canonical.substr(0, at_sign) + '"' + canonical.substr(at_sign);
    }
    return AliasTarget{Kind::kAddress, std::move(canonical)};
  }
  if (!is_valid_alias_name(token)) {
    return at.error("invalid target (not a local name, user@domain, /file, |command or :include:)");
  }
  return AliasTarget{Kind::kAddress, std::string(token)};
}

// Appends the targets of one line: commas outside quotes separate them, a comma may end the
// line, and no target is empty.
Status parse_targets(std::string_view text, const LineWalker& at, std::vector<AliasTarget>& out) {
  std::vector<std::string_view> tokens;
  std::size_t start = 0;
  bool quoted = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (quoted) {
      if (text[i] == '\\')
        ++i;
      else if (text[i] == '"')
        quoted = false;
    } else if (text[i] == '"') {
      quoted = true;
    } else if (text[i] == ',') {
      tokens.push_back(trim(text.substr(start, i - start)));
      start = i + 1;
    }
  }
  if (quoted)
    return at.error("unterminated quote");
  const std::string_view last = trim(text.substr(start));
  if (!last.empty())
    tokens.push_back(last);
  for (std::string_view token : tokens) {
    if (token.empty())
      return at.error("empty target between commas");
    auto target = parse_target(token, at);
    if (!target)
      return target.error();
    out.push_back(std::move(*target));
  }
  return {};
}

bool needs_quotes(std::string_view text) {
  for (char c : text) {
    if (is_blank(c) || c == ',' || c == '"' || c == '\\')
      return true;
  }
  return false;
}

std::string format_target(const AliasTarget& target) {
  std::string text;
  switch (target.kind) {
    case Kind::kAddress:
      return target.no_expand ? "\\" + target.value : target.value;
    case Kind::kFile:
      text = target.value;
      break;
    case Kind::kPipe:
      text = "|" + target.value;
      break;
    case Kind::kInclude:
      text = std::string(kIncludePrefix) + target.value;
      break;
  }
  if (!needs_quotes(text))
    return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\')
      quoted += '\\';
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

Result<std::string> read_alias_file(const std::string& path) {
  if (path.find('\0') != std::string::npos) {
    return Error::from_exit_code(EX_CONFIG, "file name contains a NUL byte");
  }
  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever. Regular files, the
  // only kind read, do not notice it.
  auto fd = open_file(path, O_RDONLY | O_NOCTTY | O_NONBLOCK);
  if (!fd)
    return Error::from_exit_code(EX_CONFIG, fd.error().text());
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0)
    return Error::from_errno(EX_CONFIG, path, errno);
  if (!S_ISREG(st.st_mode))
    return Error::from_exit_code(EX_CONFIG, path + ": not a regular file");
  const std::string too_large =
      path + ": file is larger than the limit of " + std::to_string(kMaxAliasFile) + " bytes";
  if (st.st_size < 0 || static_cast<unsigned long long>(st.st_size) > kMaxAliasFile) {
    return Error::from_exit_code(EX_CONFIG, too_large);
  }
  std::string text;
  text.reserve(static_cast<std::size_t>(st.st_size));
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd->get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return Error::from_errno(EX_CONFIG, path, errno);
    if (n == 0)
      break;
    // The file may have grown since fstat.
    if (text.size() + static_cast<std::size_t>(n) > kMaxAliasFile) {
      return Error::from_exit_code(EX_CONFIG, too_large);
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
  return text;
}

Error expansion_error(std::string text) {
  return Error::permanent(EX_DATAERR, "5.4.6", std::move(text));
}

class Expander {
 public:
  Expander(const AliasLookup& lookup, const IncludeReader& include, std::size_t max_depth,
           std::size_t max_targets)
      : lookup_(lookup), include_(include), max_depth_(max_depth), max_targets_(max_targets) {}

  // A local name found in source ("" for the table) with depth aliases and includes open.
  Status visit_name(std::string_view name, const std::string& source, std::size_t depth) {
    std::string key = lower(name);
    // Reached again from inside its own expansion: the name's own mailbox.
    if (active_.count(key) != 0)
      return add_final(local(name), source);
    // Expanded already along another branch: everything it gives is in the result.
    if (done_.count(key) != 0)
      return {};
    const std::vector<AliasTarget>* targets = lookup_(name);
    if (targets == nullptr) {
      done_.insert(std::move(key));
      return add_final(local(name), source);
    }
    if (depth >= max_depth_)
      return expansion_error("alias loop or expansion too deep");
    auto inserted = active_.insert(std::move(key)).first;
    for (const AliasTarget& target : *targets) {
      if (Status s = visit(target, std::string(), depth + 1); !s)
        return s;
    }
    done_.insert(*inserted);
    active_.erase(inserted);
    return {};
  }

  Expansion take() { return std::move(out_); }

 private:
  static AliasTarget local(std::string_view name) {
    return AliasTarget{Kind::kAddress, std::string(name), true};
  }

  Status visit(const AliasTarget& target, const std::string& source, std::size_t depth) {
    switch (target.kind) {
      case Kind::kAddress:
        if (target.no_expand)
          return add_final(local(target.value), source);
        if (target.value.find('@') != std::string::npos)
          return add_final(target, source);
        return visit_name(target.value, source, depth);
      case Kind::kFile:
      case Kind::kPipe:
        return add_final(target, source);
      case Kind::kInclude:
        break;
    }
    // An include file met again (a loop or a second mention) adds nothing new.
    if (!includes_.insert(target.value).second)
      return {};
    if (depth >= max_depth_)
      return expansion_error("alias loop or expansion too deep");
    auto listed = include_(target.value);
    if (!listed)
      return listed.error();
    for (const AliasTarget& t : *listed) {
      if (Status s = visit(t, target.value, depth + 1); !s)
        return s;
    }
    return {};
  }

  Status add_final(AliasTarget target, const std::string& source) {
    if (!finals_.emplace(target.kind, target.value).second)
      return {};
    if (out_.targets.size() >= max_targets_) {
      return expansion_error("alias expands to too many targets");
    }
    out_.targets.push_back(std::move(target));
    out_.include_files.push_back(source);
    return {};
  }

  const AliasLookup& lookup_;
  const IncludeReader& include_;
  const std::size_t max_depth_;
  const std::size_t max_targets_;
  std::set<std::string> active_;  // lower-cased alias names being expanded
  std::set<std::string> done_;    // lower-cased alias names expanded
  std::set<std::string> includes_;
  std::set<std::pair<Kind, std::string>> finals_;
  Expansion out_;
};

}  // namespace

bool is_valid_alias_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxAliasName)
    return false;
  if (name.front() == '.' || name.front() == '-')
    return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '+' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

bool AliasTable::NameLess::operator()(std::string_view a, std::string_view b) const {
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    const char x = ascii_lower(a[i]);
    const char y = ascii_lower(b[i]);
    if (x != y)
      return static_cast<unsigned char>(x) < static_cast<unsigned char>(y);
  }
  return a.size() < b.size();
}

Result<AliasTable> AliasTable::parse(std::string_view text, std::string_view file_name) {
  AliasTable table;
  std::map<std::string, std::size_t, NameLess> defined_at;
  std::vector<AliasTarget>* current = nullptr;
  std::size_t current_line = 0;
  LineWalker lines(text, file_name);
  auto finish = [&]() -> Status {
    if (current != nullptr && current->empty())
      return lines.error_at(current_line, "alias without targets");
    return {};
  };
  std::string_view line;
  for (;;) {
    auto more = lines.next(line);
    if (!more)
      return more.error();
    if (!*more)
      break;
    std::string_view rest;
    if (is_blank(line.front())) {
      if (current == nullptr)
        return lines.error("continuation line without an alias before it");
      rest = line;
    } else {
      if (Status s = finish(); !s)
        return s.error();
      const std::size_t colon = line.find(':');
      if (colon == std::string_view::npos)
        return lines.error("expected name: targets");
      const std::string_view name = trim(line.substr(0, colon));
      if (!is_valid_alias_name(name)) {
        return lines.error(
            "invalid alias name (1 to 64 of A-Z a-z 0-9 . _ + -, no leading . or -)");
      }
      const std::string key = lower(name);
      auto [it, fresh] = defined_at.emplace(key, lines.line_number());
      if (!fresh) {
        return lines.error("alias \"" + key + "\" already defined at line " +
                           std::to_string(it->second));
      }
      current = &table.entries_[key];
      current_line = lines.line_number();
      rest = line.substr(colon + 1);
    }
    if (Status s = parse_targets(rest, lines, *current); !s)
      return s.error();
  }
  if (Status s = finish(); !s)
    return s.error();
  return table;
}

Result<AliasTable> AliasTable::load(const std::string& path) {
  auto text = read_alias_file(path);
  if (!text)
    return text.error();
  return parse(*text, path);
}

const std::vector<AliasTarget>* AliasTable::find(std::string_view name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

std::optional<std::string> AliasTable::owner_of(std::string_view list) const {
  auto it = entries_.find("owner-" + std::string(list));
  if (it == entries_.end())
    return std::nullopt;
  return it->first;
}

std::vector<std::string_view> AliasTable::names() const {
  std::vector<std::string_view> out;
  out.reserve(entries_.size());
  for (const auto& entry : entries_) out.emplace_back(entry.first);
  return out;
}

std::string AliasTable::to_string() const {
  std::string out;
  for (const auto& [name, targets] : entries_) {
    out += name;
    out += ':';
    for (std::size_t i = 0; i < targets.size(); ++i) {
      out += i == 0 ? " " : ", ";
      out += format_target(targets[i]);
    }
    out += '\n';
  }
  return out;
}

Result<std::vector<AliasTarget>> parse_include_file(std::string_view text,
                                                    std::string_view file_name) {
  std::vector<AliasTarget> targets;
  LineWalker lines(text, file_name);
  std::string_view line;
  for (;;) {
    auto more = lines.next(line);
    if (!more)
      return more.error();
    if (!*more)
      break;
    if (Status s = parse_targets(line, lines, targets); !s)
      return s.error();
  }
  return targets;
}

Result<std::vector<AliasTarget>> load_include_file(const std::string& path) {
  auto text = read_alias_file(path);
  if (!text)
    return text.error();
  return parse_include_file(*text, path);
}

Result<Expansion> expand_alias(std::string_view name, const AliasLookup& lookup,
                               const IncludeReader& include, std::size_t max_depth,
                               std::size_t max_targets) {
  if (!is_valid_alias_name(name)) {
    return Error::permanent(EX_NOUSER, "5.1.1", "not a valid local name");
  }
  Expander expander(lookup, include, max_depth, max_targets);
  if (Status s = expander.visit_name(name, std::string(), 0); !s)
    return s.error();
  Expansion expansion = expander.take();
  if (expansion.targets.empty()) {
    return Error::permanent(EX_NOUSER, "5.1.1", "alias expands to no recipients");
  }
  return expansion;
}

}  // namespace mailwright::mta
