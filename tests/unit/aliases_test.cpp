#include "mta/aliases.h"

#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

using namespace mailwright;
using namespace mailwright::mta;
namespace fs = std::filesystem;
using namespace std::string_literals;
using Kind = AliasTarget::Kind;

namespace {

AliasTarget addr(std::string value) { return AliasTarget{Kind::kAddress, std::move(value)}; }
AliasTarget mailbox(std::string value) {
  return AliasTarget{Kind::kAddress, std::move(value), true};
}
AliasTarget file(std::string value) { return AliasTarget{Kind::kFile, std::move(value)}; }
AliasTarget pipe(std::string value) { return AliasTarget{Kind::kPipe, std::move(value)}; }
AliasTarget include(std::string value) { return AliasTarget{Kind::kInclude, std::move(value)}; }

AliasTable parse_ok(std::string_view text) {
  auto table = AliasTable::parse(text, "aliases");
  INFO(text);
  if (!table)
    FAIL(table.error().text());
  return std::move(table).value();
}

std::vector<AliasTarget> targets_of(std::string_view text, std::string_view name) {
  AliasTable table = parse_ok(text);
  const auto* targets = table.find(name);
  REQUIRE(targets != nullptr);
  return *targets;
}

// The error text of a refused file; every refusal is a configuration error naming the line.
std::string error_of(std::string_view text) {
  auto table = AliasTable::parse(text, "aliases");
  INFO(text);
  REQUIRE_FALSE(table);
  CHECK(table.error().exit_code() == EX_CONFIG);
  CHECK(table.error().is_temporary());
  CHECK(table.error().text().rfind("aliases:", 0) == 0);
  return table.error().text();
}

struct TempDir {
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "aliases_test.XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& content) const {
    std::string p = path + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  std::string path;
};

// An alias table and include files in memory, counting how often each is consulted.
struct World {
  AliasTable table;
  std::map<std::string, std::string> include_files;
  std::map<std::string, int> lookups;
  int includes_read = 0;

  Result<Expansion> expand(std::string_view name, std::size_t max_depth = 20,
                           std::size_t max_targets = 10000) {
    AliasLookup lookup = [this](std::string_view n) {
      ++lookups[std::string(n)];
      return table.find(n);
    };
    IncludeReader reader = [this](std::string_view path) -> Result<std::vector<AliasTarget>> {
      ++includes_read;
      auto it = include_files.find(std::string(path));
      if (it == include_files.end()) {
        return Error::from_exit_code(EX_CONFIG, std::string(path) + ": no such file");
      }
      return parse_include_file(it->second, path);
    };
    return expand_alias(name, lookup, reader, max_depth, max_targets);
  }
};

std::vector<AliasTarget> expand_ok(World& world, std::string_view name) {
  auto expansion = world.expand(name);
  if (!expansion)
    FAIL(expansion.error().text());
  REQUIRE(expansion->include_files.size() == expansion->targets.size());
  return expansion->targets;
}

}  // namespace

TEST_CASE("entries with every kind of target parse", "[aliases]") {
  AliasTable table = parse_ok(
      "# The usual ones\n"
      "postmaster: root\n"
      "Staff: alice, Bob@Example.ORG, \\carol\n"
      "archive: /var/log/mail-archive\n"
      "tracker: \"|/usr/bin/tracker --new, --quiet\"\n"
      "simple: |/usr/bin/simple\n"
      "list: :include:/etc/mail/list, \":INCLUDE: /etc/mail/other list\"\n"
      "quoted-file: \"/var/mail/a \\\"b\\\" \\\\c\"\n"
      "owner-list: joe+lists@[192.0.2.1], \"joe smith\"@Example.net\n");
  CHECK(table.size() == 8);
  CHECK(*table.find("postmaster") == std::vector{addr("root")});
  CHECK(*table.find("staff") ==
        std::vector{addr("alice"), addr("Bob@example.org"), mailbox("carol")});
  CHECK(*table.find("archive") == std::vector{file("/var/log/mail-archive")});
  CHECK(*table.find("tracker") == std::vector{pipe("/usr/bin/tracker --new, --quiet")});
  CHECK(*table.find("simple") == std::vector{pipe("/usr/bin/simple")});
  CHECK(*table.find("list") ==
        std::vector{include("/etc/mail/list"), include("/etc/mail/other list")});
  CHECK(*table.find("quoted-file") == std::vector{file("/var/mail/a \"b\" \\c")});
  CHECK(*table.find("owner-list") ==
        std::vector{addr("joe+lists@[192.0.2.1]"), addr("\"joe smith\"@example.net")});
}

TEST_CASE("a path with a blank must be quoted", "[aliases]") {
  CHECK_THAT(error_of("archive: /var/log/mail archive\n"),
             Catch::Contains("aliases:1:") && Catch::Contains("must be quoted"));
  CHECK_THAT(error_of("bug: |/usr/bin/tracker --new\n"), Catch::Contains("must be quoted"));
  CHECK_THAT(error_of("x: :include: /etc/list\n"), Catch::Contains("must be quoted"));
  CHECK_THAT(error_of("x: /a\\b\n"), Catch::Contains("must be quoted"));
  CHECK(targets_of("x: /var/log/mail-archive\n", "x") ==
        std::vector{file("/var/log/mail-archive")});
}

TEST_CASE("names match in any ASCII case and are stored lower-cased", "[aliases]") {
  AliasTable table = parse_ok("PostMaster: root\nowner-Staff: joe\nstaff: a\n");
  CHECK(table.contains("postmaster"));
  CHECK(table.contains("POSTMASTER"));
  CHECK_FALSE(table.contains("postmaste"));
  CHECK_FALSE(table.contains("postmaster2"));
  CHECK_FALSE(table.contains(""));
  CHECK(table.names() == std::vector<std::string_view>{"owner-staff", "postmaster", "staff"});
  CHECK(table.owner_of("STAFF") == "owner-staff");
  CHECK(table.owner_of("postmaster") == std::nullopt);
  // ASCII only: a Kelvin sign or a dotless i is not folded by any locale.
  CHECK_FALSE(parse_ok("k: a\n").contains("\xE2\x84\xAA"));
  CHECK_FALSE(parse_ok("i: a\n").contains("\xC4\xB1"));
}

TEST_CASE("continuation lines, comments, blank lines and CRLF", "[aliases]") {
  CHECK(targets_of("staff: a,\n  b, c\n\tfoo@example.org\n", "staff") ==
        std::vector{addr("a"), addr("b"), addr("c"), addr("foo@example.org")});
  // Blank and comment lines do not end an entry (Postfix reads them the same way).
  CHECK(targets_of("staff: a\n\n# gone: b\n   # indented comment\n  c\n", "staff") ==
        std::vector{addr("a"), addr("c")});
  // A line break separates targets as a comma does.
  CHECK(targets_of("staff:\n  a\n  b,\n", "staff") == std::vector{addr("a"), addr("b")});
  CHECK(targets_of("staff: a\r\n  b\r\n", "staff") == std::vector{addr("a"), addr("b")});
  CHECK(targets_of("staff : a", "staff") == std::vector{addr("a")});
  CHECK(parse_ok("").size() == 0);
  CHECK(parse_ok("# only a comment\n\n   \n").size() == 0);
  // UTF-8 in a comment is a name, not an address.
  CHECK(parse_ok("# J\xC3\xBCrgen's list\nlist: j\n").size() == 1);
}

TEST_CASE("refusals name the line", "[aliases]") {
  CHECK(error_of("a: b\nb c\n") == "aliases:2: expected name: targets");
  CHECK_THAT(error_of("a: b\n\nb@x: c\n"), Catch::StartsWith("aliases:3: invalid alias name"));
  CHECK_THAT(error_of("-a: b\n"), Catch::StartsWith("aliases:1: invalid alias name"));
  CHECK_THAT(error_of(".a: b\n"), Catch::StartsWith("aliases:1: invalid alias name"));
  CHECK_THAT(error_of(": b\n"), Catch::StartsWith("aliases:1: invalid alias name"));
  CHECK_THAT(error_of("\"a b\": c\n"), Catch::StartsWith("aliases:1: invalid alias name"));
  CHECK_THAT(error_of(std::string(65, 'a') + ": b\n"), Catch::StartsWith("aliases:1: invalid"));
  CHECK(parse_ok(std::string(64, 'a') + ": b\n").size() == 1);
  CHECK(error_of("a: x\n# c\nb: y\nA: z\n") == "aliases:4: alias \"a\" already defined at line 1");
  CHECK(error_of("a: x\nb:\nc: y\n") == "aliases:2: alias without targets");
  CHECK(error_of("a: x\nb:\n\n# nothing\n") == "aliases:2: alias without targets");
  CHECK(error_of("# c\n  a: b\n") == "aliases:2: continuation line without an alias before it");
  CHECK(error_of("a: b,,c\n") == "aliases:1: empty target between commas");
  CHECK(error_of("a: b\n  , c\n") == "aliases:2: empty target between commas");
  CHECK(error_of("a: ,\n") == "aliases:1: empty target between commas");
  CHECK(error_of("a: \"|cmd\n") == "aliases:1: unterminated quote");
  CHECK(error_of("a: \"|cmd\\\"\n") == "aliases:1: unterminated quote");
  CHECK(error_of("a: b\nc: \"|x\\") == "aliases:2: unterminated quote");
}

TEST_CASE("control characters and 8-bit octets are refused", "[aliases]") {
  CHECK(error_of("a: b\nc: d\0e\n"s) == "aliases:2: control character 0x00 in column 5");
  CHECK(error_of("a: b\rc\n") == "aliases:1: control character 0x0D in column 5");
  CHECK(error_of("a: b\r\r\n") == "aliases:1: control character 0x0D in column 5");
  CHECK(error_of("a: b\x1B[2J\n") == "aliases:1: control character 0x1B in column 5");
  CHECK(error_of("a: b\x7F\n") == "aliases:1: control character 0x7F in column 5");
  CHECK(error_of("# \x07 bell in a comment\n") == "aliases:1: control character 0x07 in column 3");
  CHECK(error_of("a: b\n\n\v\n") == "aliases:3: control character 0x0B in column 1");
  CHECK(error_of("a: j\xC3\xBCrgen\n") == "aliases:1: non-ASCII octet in column 5");
  CHECK(error_of("\xEF\xBB\xBF"
                 "a: b\n") == "aliases:1: non-ASCII octet in column 1");
  CHECK(error_of("a: b@\xC3\xA9x.org\n") == "aliases:1: non-ASCII octet in column 6");
  // A tab is a blank.
  CHECK(targets_of("a:\tb,\tc\n\td\n", "a") == std::vector{addr("b"), addr("c"), addr("d")});
}

TEST_CASE("targets that could be read two ways are refused", "[aliases]") {
  // sendmail reads RFC 822 phrases and comments; a typo there must not redirect mail.
  CHECK_THAT(error_of("a: Joe <joe@example.org>\n"),
             Catch::StartsWith("aliases:1: invalid address"));
  CHECK_THAT(error_of("a: joe@example.org (Joe)\n"),
             Catch::StartsWith("aliases:1: invalid address"));
  CHECK_THAT(error_of("a: joe bob\n"), Catch::StartsWith("aliases:1: invalid target"));
  CHECK_THAT(error_of("a: \"joe@example.org\"\n"), Catch::Contains("may be quoted"));
  CHECK_THAT(error_of("a: \"joe\"\n"), Catch::Contains("may be quoted"));
  CHECK_THAT(error_of("a: \"|x\" y\n"), Catch::StartsWith("aliases:1: invalid target"));
  CHECK_THAT(error_of("a: joe@\n"), Catch::StartsWith("aliases:1: invalid address"));
  CHECK_THAT(error_of("a: @example.org\n"), Catch::StartsWith("aliases:1: invalid address"));
  CHECK_THAT(error_of("a: joe@-bad-.org\n"), Catch::StartsWith("aliases:1: invalid address"));
  CHECK_THAT(error_of("a: \\joe@example.org\n"), Catch::Contains("followed by a local name"));
  CHECK_THAT(error_of("a: \\\n"), Catch::Contains("followed by a local name"));
  CHECK_THAT(error_of("a: ../etc\n"), Catch::StartsWith("aliases:1: invalid target"));
  CHECK_THAT(error_of("a: -f\n"), Catch::StartsWith("aliases:1: invalid target"));
  CHECK_THAT(error_of("a: |\n"), Catch::Contains("empty command"));
  CHECK_THAT(error_of("a: \"|  \"\n"), Catch::Contains("empty command"));
  CHECK_THAT(error_of("a: /var/mail/\n"), Catch::Contains("ends with '/'"));
  CHECK_THAT(error_of("a: /\n"), Catch::Contains("ends with '/'"));
  CHECK_THAT(error_of("a: :include:etc/list\n"), Catch::Contains("absolute path"));
  CHECK_THAT(error_of("a: :include:\n"), Catch::Contains("absolute path"));
  CHECK_THAT(error_of("a: :include:/etc/\n"), Catch::Contains("ends with '/'"));
  CHECK_THAT(error_of("a: :incl:/etc/x\n"), Catch::StartsWith("aliases:1: invalid target"));
  // The refusal never echoes the target (it may be long or hostile).
  CHECK(error_of("a: bad target here\n").find("bad target") == std::string::npos);
}

TEST_CASE("addresses are kept in canonical form", "[aliases]") {
  CHECK(targets_of("a: \"joe\"@EXAMPLE.org\n", "a") == std::vector{addr("joe@example.org")});
  CHECK(targets_of("a: \"j,o\"@x.org\n", "a") == std::vector{addr("\"j,o\"@x.org")});
  // Minimum quoting would give |cmd@x.org and /x@y.org, which read back as a command and a file.
  CHECK(targets_of("a: \"|cmd\"@x.org, \"/x\"@y.org\n", "a") ==
        std::vector{addr("\"|cmd\"@x.org"), addr("\"/x\"@y.org")});
  // Literals are compared as text, so their case stays.
  CHECK(targets_of("a: u@[IPv6:2001:DB8::1]\n", "a") == std::vector{addr("u@[IPv6:2001:DB8::1]")});
}

TEST_CASE("to_string gives back the same table", "[aliases]") {
  const std::string text =
      "Zed: \\root, root, R@Example.org\n"
      "a: \"|/bin/sh -c 'echo \\\"hi\\\" \\\\ there, you'\", /var/log/a\\\\b\n"
      "b: \"/path with blank \", :include:/etc/x, \":include:/etc/x y\"\n"
      "c: \"|x\"@y.org, \"a b\"@c.org, \"|\ttab\"\n";
  // The backslash in the unquoted /var/log/a\\b of the text above is refused; quote it.
  REQUIRE_FALSE(AliasTable::parse(text, "t"));
  const std::string fixed =
      "Zed: \\root, root, R@Example.org\n"
      "a: \"|/bin/sh -c 'echo \\\"hi\\\" \\\\ there, you'\", \"/var/log/a\\\\b\"\n"
      "b: \"/path with blank \", :include:/etc/x, \":include:/etc/x y\"\n"
      "c: \"|x\"@y.org, \"a b\"@c.org, \"|\ttab\"\n";
  AliasTable table = parse_ok(fixed);
  CHECK(*table.find("a") ==
        std::vector{pipe("/bin/sh -c 'echo \"hi\" \\ there, you'"), file("/var/log/a\\b")});
  CHECK(*table.find("c") == std::vector{addr("\"|x\"@y.org"), addr("\"a b\"@c.org"), pipe("tab")});
  const std::string canonical = table.to_string();
  CHECK(canonical ==
        "a: \"|/bin/sh -c 'echo \\\"hi\\\" \\\\ there, you'\", \"/var/log/a\\\\b\"\n"
        "b: \"/path with blank \", :include:/etc/x, \":include:/etc/x y\"\n"
        "c: \"|x\"@y.org, \"a b\"@c.org, |tab\n"
        "zed: \\root, root, R@example.org\n");
  AliasTable again = parse_ok(canonical);
  CHECK(again == table);
  CHECK(again.to_string() == canonical);
}

TEST_CASE("include files list targets by line and by comma", "[aliases]") {
  auto targets = parse_include_file(
      "# members\n"
      "alice, bob@example.org\n"
      "\n"
      "   carol,\n"
      "\"|/usr/bin/archive list\"\n"
      ":include:/etc/mail/more\n",
      "/etc/mail/list");
  REQUIRE(targets);
  CHECK(*targets == std::vector{addr("alice"), addr("bob@example.org"), addr("carol"),
                                pipe("/usr/bin/archive list"), include("/etc/mail/more")});
  CHECK(parse_include_file("", "x")->empty());
  CHECK(parse_include_file("# nobody\n", "x")->empty());

  auto bad = parse_include_file("alice\nname: bob\n", "/etc/mail/list");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().text(), Catch::StartsWith("/etc/mail/list:2: invalid target"));
  CHECK(bad.error().exit_code() == EX_CONFIG);
  auto nul = parse_include_file("alice\0\n"s, "l");
  REQUIRE_FALSE(nul);
  CHECK(nul.error().text() == "l:1: control character 0x00 in column 6");
}

TEST_CASE("load reads regular files only", "[aliases]") {
  TempDir dir;
  const std::string path = dir.write("aliases", "postmaster: root\n");
  auto table = AliasTable::load(path);
  REQUIRE(table);
  CHECK(table->contains("postmaster"));

  const std::string broken = dir.write("broken", "a: b\nb\n");
  auto bad = AliasTable::load(broken);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().text() == broken + ":2: expected name: targets");

  auto missing = AliasTable::load(dir.path + "/missing");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().exit_code() == EX_CONFIG);
  CHECK_THAT(missing.error().text(), Catch::StartsWith(dir.path + "/missing: "));

  auto directory = AliasTable::load(dir.path);
  REQUIRE_FALSE(directory);
  CHECK(directory.error().exit_code() == EX_CONFIG);
  CHECK_THAT(directory.error().text(),
             Catch::Contains("not a regular file") || Catch::Contains("Is a directory"));

  // A FIFO without a writer: refused at once rather than waited on.
  const std::string fifo = dir.path + "/fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  auto from_fifo = AliasTable::load(fifo);
  REQUIRE_FALSE(from_fifo);
  CHECK(from_fifo.error().text() == fifo + ": not a regular file");

  auto nul = AliasTable::load(dir.path + "/a\0b"s);
  REQUIRE_FALSE(nul);
  CHECK(nul.error().exit_code() == EX_CONFIG);

  const std::string list = dir.write("list", "alice\nbob\n");
  auto members = load_include_file(list);
  REQUIRE(members);
  CHECK(*members == std::vector{addr("alice"), addr("bob")});
  CHECK_FALSE(load_include_file(fifo));
}

TEST_CASE("a file over the size limit is refused", "[aliases]") {
  TempDir dir;
  const std::string path = dir.path + "/big";
  {
    std::ofstream out(path, std::ios::binary);
    out.seekp(static_cast<std::streamoff>(kMaxAliasFile));
    out.put('\n');  // sparse: one octet past the limit costs no disk
  }
  auto big = AliasTable::load(path);
  REQUIRE_FALSE(big);
  CHECK_THAT(big.error().text(), Catch::Contains("larger than the limit"));
}

TEST_CASE("expansion follows aliases to mailboxes, addresses, files and pipes", "[aliases]") {
  World world;
  world.table = parse_ok(
      "postmaster: root\n"
      "root: admin, \"|/usr/bin/logger\"\n"
      "admin: alice, bob@Example.org, /var/log/admin\n"
      "staff: Admin, carol, alice\n");
  CHECK(expand_ok(world, "postmaster") == std::vector{mailbox("alice"), addr("bob@example.org"),
                                                      file("/var/log/admin"),
                                                      pipe("/usr/bin/logger")});
  // Duplicates are removed, the first kept; names are looked up in any case.
  CHECK(expand_ok(world, "STAFF") == std::vector{mailbox("alice"), addr("bob@example.org"),
                                                 file("/var/log/admin"), mailbox("carol")});
  // A name that is no alias is its own mailbox.
  CHECK(expand_ok(world, "joe") == std::vector{mailbox("joe")});
}

TEST_CASE("an alias reaching itself delivers to its own mailbox", "[aliases]") {
  World world;
  world.table = parse_ok(
      "root: root, admin\n"
      "admin: Root, ops\n"
      "a: b\n"
      "b: c, a\n"
      "c: a\n"
      "self: self\n"
      "keep: \\keep, other\n"
      "other: \\keep\n");
  CHECK(expand_ok(world, "root") == std::vector{mailbox("root"), mailbox("Root"), mailbox("ops")});
  CHECK(expand_ok(world, "a") == std::vector{mailbox("a")});
  CHECK(expand_ok(world, "self") == std::vector{mailbox("self")});
  CHECK(expand_ok(world, "keep") == std::vector{mailbox("keep")});
}

TEST_CASE("include files are read once and their targets remember where they came from",
          "[aliases]") {
  World world;
  world.table = parse_ok(
      "list: :include:/lists/list, owner\n"
      "owner: joe\n"
      "both: :include:/lists/list, :include:/lists/list, list\n"
      "broken: :include:/lists/missing\n"
      "bad: :include:/lists/bad\n"
      "empty: :include:/lists/empty\n"
      "selfish: :include:/lists/self\n");
  world.include_files["/lists/list"] =
      "alice, owner\n\"|/usr/bin/archive\"\n/var/spool/list\n:include:/lists/nested\n";
  world.include_files["/lists/nested"] = "bob@example.org\n:include:/lists/list\n";
  world.include_files["/lists/bad"] = "alice\nbob smith\n";
  world.include_files["/lists/empty"] = "# nobody yet\n";
  world.include_files["/lists/self"] = ":include:/lists/self\n";

  auto expansion = world.expand("list");
  REQUIRE(expansion);
  CHECK(expansion->targets == std::vector{mailbox("alice"), mailbox("joe"),
                                          pipe("/usr/bin/archive"), file("/var/spool/list"),
                                          addr("bob@example.org")});
  // joe comes from the table (owner: joe), though owner was named in the include file.
  CHECK(expansion->include_files ==
        std::vector<std::string>{"/lists/list", "", "/lists/list", "/lists/list", "/lists/nested"});
  CHECK(world.includes_read == 2);

  world.includes_read = 0;
  REQUIRE(world.expand("both"));
  CHECK(world.includes_read == 2);

  auto broken = world.expand("broken");
  REQUIRE_FALSE(broken);
  CHECK(broken.error().text() == "/lists/missing: no such file");
  CHECK(broken.error().exit_code() == EX_CONFIG);

  auto bad = world.expand("bad");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().text(), Catch::StartsWith("/lists/bad:2: invalid target"));

  // Accepting mail for a list with nobody on it would drop the mail.
  for (const char* name : {"empty", "selfish"}) {
    auto nobody = world.expand(name);
    REQUIRE_FALSE(nobody);
    CHECK(nobody.error().exit_code() == EX_NOUSER);
    CHECK(nobody.error().status() == "5.1.1");
  }
}

TEST_CASE("expansion depth and size are bounded", "[aliases]") {
  World world;
  std::string text;
  for (int i = 0; i < 30; ++i) {
    text += "n" + std::to_string(i) + ": n" + std::to_string(i + 1) + "\n";
  }
  world.table = parse_ok(text);
  // From n0, n20 would be the 21st alias nested.
  auto deep = world.expand("n0");
  REQUIRE_FALSE(deep);
  CHECK(deep.error().text() == "alias loop or expansion too deep");
  CHECK(deep.error().status() == "5.4.6");
  CHECK(deep.error().exit_code() == EX_DATAERR);
  CHECK_FALSE(deep.error().is_temporary());
  // Twenty aliases nested are allowed: n10 .. n29 and then the mailbox n30.
  CHECK(expand_ok(world, "n10") == std::vector{mailbox("n30")});
  auto shallow = world.expand("n10", 19);
  REQUIRE_FALSE(shallow);
  CHECK(world.expand("n29", 1));
  CHECK_FALSE(world.expand("n29", 0));
  CHECK(world.expand("nobody", 0));

  World wide;
  std::string members = "big:";
  for (int i = 0; i < 100; ++i) members += " u" + std::to_string(i) + ",";
  wide.table = parse_ok(members + "\n");
  CHECK(wide.expand("big", 20, 100));
  auto too_many = wide.expand("big", 20, 99);
  REQUIRE_FALSE(too_many);
  CHECK(too_many.error().text() == "alias expands to too many targets");
  CHECK(too_many.error().status() == "5.4.6");
}

TEST_CASE("each alias is expanded once, so a lattice cannot explode", "[aliases]") {
  // l0 -> l1a, l1b -> l2a, l2b -> ...: 2^19 paths, 40 aliases.
  World world;
  std::string text;
  for (int i = 0; i < 19; ++i) {
    const std::string next = "l" + std::to_string(i + 1);
    for (const char* side : {"a", "b"}) {
      text.append("l").append(std::to_string(i)).append(side).append(": ");
      text.append(next).append("a, ").append(next).append("b\n");
    }
  }
  text += "l19a: end\nl19b: end\n";
  world.table = parse_ok(text);
  CHECK(expand_ok(world, "l0a") == std::vector{mailbox("end")});
  for (const auto& [name, count] : world.lookups) {
    INFO(name);
    CHECK(count == 1);
  }
}

TEST_CASE("only a valid local name is expanded", "[aliases]") {
  World world;
  world.table = parse_ok("a: b\n");
  for (const std::string name : {"", "a@b", "x@example.org", "joe smith", ".a", "-f", "a/b"}) {
    auto expansion = world.expand(name);
    INFO(name);
    REQUIRE_FALSE(expansion);
    CHECK(expansion.error().exit_code() == EX_NOUSER);
    CHECK(expansion.error().status() == "5.1.1");
  }
}
