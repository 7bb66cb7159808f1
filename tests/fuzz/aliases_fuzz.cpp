// Fuzzes AliasTable::parse and parse_include_file (mta/aliases.h) on raw bytes and checks what
// the header promises: refusals are configuration errors naming FILE:LINE, every stored name and
// target is valid for its kind, to_string() parses back to the same table and is a fixed point.
// Then the input is split at a line "%%": every alias (up to a bound) of the part before it is
// expanded, with every :include: path reading the part after it as an include file, and the
// result is checked: never empty, no duplicates, only final kinds, local names never to be
// expanded again, the limits held. Touches no files.
#include <sysexits.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "libmail/address.h"
#include "mta/aliases.h"

namespace {

using mailwright::Error;
using mailwright::Result;
using mailwright::mta::AliasTable;
using mailwright::mta::AliasTarget;
using mailwright::mta::is_valid_alias_name;
using Kind = AliasTarget::Kind;

constexpr std::size_t kMaxDepth = 8;
constexpr std::size_t kMaxTargets = 500;
constexpr std::size_t kMaxExpanded = 32;

[[noreturn]] void fail(const char* what, const std::string& detail) {
  static_cast<void>(std::fprintf(stderr, "aliases_fuzz: %s\n%s\n", what, detail.c_str()));
  std::abort();
}

void require(bool condition, const char* what, const std::string& detail = "") {
  if (!condition)
    fail(what, detail);
}

// "FILE:LINE: reason" with LINE a positive decimal number.
void check_refusal(const Error& error, std::string_view file_name) {
  const std::string& text = error.text();
  require(error.exit_code() == EX_CONFIG, "refusal is not EX_CONFIG", text);
  require(text.rfind(std::string(file_name) + ":", 0) == 0, "refusal without FILE:", text);
  std::size_t i = file_name.size() + 1;
  require(i < text.size() && text[i] >= '1' && text[i] <= '9', "refusal without LINE", text);
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  require(text.compare(i, 2, ": ") == 0, "refusal without ': '", text);
}

bool no_controls(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u >= 0x7F)
      return false;
  }
  return true;
}

void check_target(const AliasTarget& t) {
  const std::string& v = t.value;
  require(!v.empty() && no_controls(v), "target value empty or with a bad octet", v);
  require(!t.no_expand || t.kind == Kind::kAddress, "no_expand on a non-address", v);
  switch (t.kind) {
    case Kind::kAddress:
      if (v.find('@') == std::string::npos || t.no_expand) {
        require(is_valid_alias_name(v), "local target is not a valid name", v);
      } else {
        auto mailbox = mailwright::parse_mailbox(v);
        require(mailbox.ok(), "address target does not parse", v);
        require(v.front() != '|' && v.front() != '/', "address reads as a command or file", v);
      }
      break;
    case Kind::kFile:
    case Kind::kInclude:
      require(v.front() == '/' && v.back() != '/', "path not absolute or ends in '/'", v);
      break;
    case Kind::kPipe:
      require(v.front() != ' ' && v.front() != '\t' && v.back() != ' ' && v.back() != '\t',
              "command not trimmed", v);
      break;
  }
}

void check_table(const AliasTable& table) {
  const auto names = table.names();
  require(names.size() == table.size(), "names() and size() disagree");
  for (std::string_view name : names) {
    const std::string n(name);
    require(is_valid_alias_name(name), "invalid stored name", n);
    for (char c : name) require(!(c >= 'A' && c <= 'Z'), "stored name not lower case", n);
    const auto* targets = table.find(name);
    require(targets != nullptr && !targets->empty(), "stored name without targets", n);
    for (const AliasTarget& t : *targets) check_target(t);
  }
}

void check_expansion(const AliasTable& table, std::string_view include_text) {
  const auto names = table.names();
  mailwright::mta::AliasLookup lookup = [&](std::string_view n) { return table.find(n); };
  mailwright::mta::IncludeReader include =
      [&](std::string_view path) -> Result<std::vector<AliasTarget>> {
    require(!path.empty() && path.front() == '/', "include of a relative path", std::string(path));
    return mailwright::mta::parse_include_file(include_text, "inc");
  };
  for (std::size_t i = 0; i < names.size() && i < kMaxExpanded; ++i) {
    const std::string name(names[i]);
    auto expansion = mailwright::mta::expand_alias(name, lookup, include, kMaxDepth, kMaxTargets);
    if (!expansion) {
      const Error& e = expansion.error();
      const bool limit = e.exit_code() == EX_DATAERR && e.status() == "5.4.6";
      const bool nobody = e.exit_code() == EX_NOUSER && e.status() == "5.1.1";
      if (!limit && !nobody)
        check_refusal(e, "inc");
      require(!e.is_temporary() || e.exit_code() == EX_CONFIG, "unexpected temporary error",
              e.text());
      continue;
    }
    const auto& targets = expansion->targets;
    require(!targets.empty(), "empty expansion", name);
    require(targets.size() <= kMaxTargets, "too many targets", name);
    require(expansion->include_files.size() == targets.size(), "include_files size", name);
    std::set<std::pair<Kind, std::string>> seen;
    for (const AliasTarget& t : targets) {
      check_target(t);
      require(t.kind != Kind::kInclude, "include in the final targets", t.value);
      require(seen.emplace(t.kind, t.value).second, "duplicate final target", t.value);
      if (t.kind == Kind::kAddress && t.value.find('@') == std::string::npos) {
        require(t.no_expand, "local mailbox without no_expand", t.value);
      }
    }
    for (const std::string& source : expansion->include_files) {
      require(source.empty() || source.front() == '/', "bad include provenance", source);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  auto table = AliasTable::parse(input, "fuzz");
  if (!table) {
    check_refusal(table.error(), "fuzz");
  } else {
    check_table(*table);
    const std::string text = table->to_string();
    auto again = AliasTable::parse(text, "dump");
    if (!again)
      fail("to_string() does not parse", again.error().text() + "\n" + text);
    require(*again == *table, "to_string() changes the table", text);
    require(again->to_string() == text, "to_string() is not a fixed point", text);
  }

  const std::size_t split = input.find("\n%%\n");
  if (split == std::string_view::npos) {
    if (table)
      check_expansion(*table, "");
  } else {
    auto head = AliasTable::parse(input.substr(0, split + 1), "fuzz");
    if (head)
      check_expansion(*head, input.substr(split + 4));
  }

  auto targets = mailwright::mta::parse_include_file(input, "inc");
  if (!targets) {
    check_refusal(targets.error(), "inc");
  } else {
    for (const AliasTarget& t : *targets) check_target(t);
  }
  return 0;
}
