#include "libmail/address.h"

#include <sysexits.h>

#include <catch2/catch.hpp>
#include <string>

#include "libmail/limits.h"

using namespace mailwright;
using namespace std::string_literals;

namespace {

constexpr AddressOptions kUtf8{.allow_utf8 = true};

struct ValidPath {
  std::string input;
  std::string local_part;
  std::string domain;
  bool literal;
  bool quoted;
  std::string canonical;
};

// The reason a forward path is refused, or "" if it is accepted.
std::string forward_reason(std::string_view text, const AddressOptions& opts = {}) {
  const Result<PathParse> parsed = parse_forward_path(text, opts);
  return parsed ? std::string() : parsed.error().text();
}

std::string reverse_reason(std::string_view text, const AddressOptions& opts = {}) {
  const Result<PathParse> parsed = parse_reverse_path(text, opts);
  return parsed ? std::string() : parsed.error().text();
}

std::string mailbox_reason(std::string_view text, const AddressOptions& opts = {}) {
  const Result<Mailbox> parsed = parse_mailbox(text, opts);
  return parsed ? std::string() : parsed.error().text();
}

// labels of the given lengths joined by dots
std::string domain_of(std::initializer_list<std::size_t> labels) {
  std::string domain;
  char letter = 'a';
  for (const std::size_t length : labels) {
    if (!domain.empty()) {
      domain += '.';
    }
    domain.append(length, letter++);
  }
  return domain;
}

}  // namespace

TEST_CASE("parses valid paths to what they say", "[address]") {
  const ValidPath c = GENERATE(values<ValidPath>({
      {"<a@b>", "a", "b", false, false, "<a@b>"},
      {"<user@example.org>", "user", "example.org", false, false, "<user@example.org>"},
      {"<First.Last@Mail.Example.ORG>", "First.Last", "Mail.Example.ORG", false, false,
       "<First.Last@Mail.Example.ORG>"},
      {"<!#$%&'*+-/=?^_`{|}~@x.y>", "!#$%&'*+-/=?^_`{|}~", "x.y", false, false,
       "<!#$%&'*+-/=?^_`{|}~@x.y>"},
      {"<user+tag@sub-domain.example>", "user+tag", "sub-domain.example", false, false,
       "<user+tag@sub-domain.example>"},
      {"<1@2.3>", "1", "2.3", false, false, "<1@2.3>"},
      {"<a@xn--bcher-kva.example>", "a", "xn--bcher-kva.example", false, false,
       "<a@xn--bcher-kva.example>"},
      {"<a@a-b--c.d0>", "a", "a-b--c.d0", false, false, "<a@a-b--c.d0>"},
      // Quoted local parts: quotes removed, quoted-pairs decoded, re-quoted only if needed.
      {R"(<"quoted"@x>)", "quoted", "x", false, true, "<quoted@x>"},
      {R"(<"a.b"@x>)", "a.b", "x", false, true, "<a.b@x>"},
      {R"(<"a b"@x>)", "a b", "x", false, true, R"(<"a b"@x>)"},
      {R"(<"a\"b"@x>)", "a\"b", "x", false, true, R"(<"a\"b"@x>)"},
      {R"(<"a\\b"@x>)", "a\\b", "x", false, true, R"(<"a\\b"@x>)"},
      {R"(<"\a\b"@x>)", "ab", "x", false, true, "<ab@x>"},
      {R"(<"\ "@x>)", " ", "x", false, true, R"(<" "@x>)"},
      {R"(<""@x>)", "", "x", false, true, R"(<""@x>)"},
      {R"(<".a"@x>)", ".a", "x", false, true, R"(<".a"@x>)"},
      {R"(<"a..b"@x>)", "a..b", "x", false, true, R"(<"a..b"@x>)"},
      {R"(<"a>b"@x>)", "a>b", "x", false, true, R"(<"a>b"@x>)"},
      {R"(<"(comment);<>[]:,"@x>)", "(comment);<>[]:,", "x", false, true,
       R"(<"(comment);<>[]:,"@x>)"},
      // Address literals keep their brackets.
      {"<a@[192.0.2.1]>", "a", "[192.0.2.1]", true, false, "<a@[192.0.2.1]>"},
      {"<a@[0.0.0.0]>", "a", "[0.0.0.0]", true, false, "<a@[0.0.0.0]>"},
      {"<a@[255.255.255.255]>", "a", "[255.255.255.255]", true, false, "<a@[255.255.255.255]>"},
      {"<a@[IPv6:2001:db8::1]>", "a", "[IPv6:2001:db8::1]", true, false, "<a@[IPv6:2001:db8::1]>"},
      {"<a@[ipv6:::1]>", "a", "[ipv6:::1]", true, false, "<a@[ipv6:::1]>"},
      {"<a@[IPv6:1:2:3:4:5:6:7:8]>", "a", "[IPv6:1:2:3:4:5:6:7:8]", true, false,
       "<a@[IPv6:1:2:3:4:5:6:7:8]>"},
      {"<a@[IPv6:1:2:3:4:5:6::]>", "a", "[IPv6:1:2:3:4:5:6::]", true, false,
       "<a@[IPv6:1:2:3:4:5:6::]>"},
      {"<a@[IPv6:::ffff:192.0.2.1]>", "a", "[IPv6:::ffff:192.0.2.1]", true, false,
       "<a@[IPv6:::ffff:192.0.2.1]>"},
      {"<a@[IPv6:1:2:3:4:5:6:192.0.2.1]>", "a", "[IPv6:1:2:3:4:5:6:192.0.2.1]", true, false,
       "<a@[IPv6:1:2:3:4:5:6:192.0.2.1]>"},
      {"<a@[x400:c=us;a=;p=x]>", "a", "[x400:c=us;a=;p=x]", true, false, "<a@[x400:c=us;a=;p=x]>"},
      {"<a@[-tag:v:w]>", "a", "[-tag:v:w]", true, false, "<a@[-tag:v:w]>"},
  }));
  CAPTURE(c.input);
  for (const bool forward : {true, false}) {
    const Result<PathParse> parsed =
        forward ? parse_forward_path(c.input) : parse_reverse_path(c.input);
    REQUIRE(parsed);
    CHECK(parsed->length == c.input.size());
    const Path& path = parsed->path;
    CHECK_FALSE(path.is_null);
    CHECK_FALSE(path.is_postmaster);
    CHECK_FALSE(path.had_source_route);
    CHECK(path.mailbox.local_part == c.local_part);
    CHECK(path.mailbox.domain == c.domain);
    CHECK(path.mailbox.domain_is_literal == c.literal);
    CHECK(path.mailbox.local_part_was_quoted == c.quoted);
    CHECK(path.to_string() == c.canonical);

    // The canonical form parses back to the same mailbox and is a fixed point.
    const Result<PathParse> again = parse_forward_path(path.to_string());
    REQUIRE(again);
    CHECK(again->path.mailbox.local_part == c.local_part);
    CHECK(again->path.mailbox.domain == c.domain);
    CHECK(again->path.to_string() == c.canonical);
  }
  // The same text without brackets is a valid bare mailbox.
  const std::string bare = c.input.substr(1, c.input.size() - 2);
  const Result<Mailbox> mailbox = parse_mailbox(bare);
  REQUIRE(mailbox);
  CHECK(mailbox->local_part == c.local_part);
  CHECK(mailbox->domain == c.domain);
  CHECK("<" + mailbox->to_string() + ">" == c.canonical);
}

TEST_CASE("relay tricks parse to what they really are", "[address]") {
  SECTION("percent hack is just a local part") {
    const Result<PathParse> parsed = parse_forward_path("<user%other@local>");
    REQUIRE(parsed);
    CHECK(parsed->path.mailbox.local_part == "user%other");
    CHECK(parsed->path.mailbox.domain == "local");
  }
  SECTION("bang path is just a local part") {
    const Result<PathParse> parsed = parse_forward_path("<a!b@c>");
    REQUIRE(parsed);
    CHECK(parsed->path.mailbox.local_part == "a!b");
    CHECK(parsed->path.mailbox.domain == "c");
  }
  SECTION("an '@' inside quotes belongs to the local part") {
    const Result<PathParse> parsed = parse_forward_path(R"(<"u@other"@local>)");
    REQUIRE(parsed);
    CHECK(parsed->path.mailbox.local_part == "u@other");
    CHECK(parsed->path.mailbox.local_part_was_quoted);
    CHECK(parsed->path.mailbox.domain == "local");
    CHECK(parsed->path.to_string() == R"(<"u@other"@local>)");
  }
  SECTION("a source route is dropped") {
    const Result<PathParse> parsed = parse_forward_path("<@a:b@c>");
    REQUIRE(parsed);
    CHECK(parsed->path.had_source_route);
    CHECK(parsed->path.mailbox.local_part == "b");
    CHECK(parsed->path.mailbox.domain == "c");
    CHECK(parsed->path.to_string() == "<b@c>");
    CHECK(parsed->length == 8);
  }
  SECTION("a longer source route is dropped") {
    const std::string text = "<@relay.example,@Other.Example:user@[192.0.2.1]> SIZE=1";
    const Result<PathParse> parsed = parse_reverse_path(text);
    REQUIRE(parsed);
    CHECK(parsed->path.had_source_route);
    CHECK(parsed->path.mailbox.local_part == "user");
    CHECK(parsed->path.mailbox.domain == "[192.0.2.1]");
    CHECK(parsed->path.to_string() == "<user@[192.0.2.1]>");
    CHECK(parsed->length == text.find('>') + 1);
  }
  SECTION("a second unquoted '@' is refused, not split") {
    CHECK(forward_reason("<a@b@c>") == "second '@' in address");
    CHECK(mailbox_reason("a@b@c") == "second '@' in address");
  }
}

TEST_CASE("refuses malformed paths with a reason", "[address]") {
  const auto [input, reason] = GENERATE(table<std::string, std::string>({
      {"", "missing path"},
      {"a@b", "path does not start with '<'"},
      {" <a@b>", "path does not start with '<'"},
      {"<a@b", "path not closed with '>'"},
      {"<a", "path not closed with '>'"},
      {"<", "empty local part"},
      {"<a>", "missing '@' and domain"},
      {"<a@>", "missing domain"},
      {"<a@b@c>", "second '@' in address"},
      {"<<a@b>>", "invalid character in local part"},
      {"<a b@c>", "space in address outside quotes"},
      {"<a@b c>", "space in address outside quotes"},
      {"< a@b>", "space in address outside quotes"},
      {"<a@b >", "space in address outside quotes"},
      {"<a @b>", "space in address outside quotes"},
      // Dot-string structure.
      {"<@>", "missing domain"},
      {"<.a@b>", "local part starts with a dot"},
      {"<a.@b>", "local part ends with a dot"},
      {"<a..b@c>", "two dots in a row in local part"},
      {"<.@b>", "local part starts with a dot"},
      {"<a@b.>", "domain ends with a dot"},
      {"<a@.b>", "domain starts with a dot"},
      {"<a@.>", "domain starts with a dot"},
      {"<a@b..c>", "empty label in domain"},
      {"<a@-b.c>", "domain label starts with a hyphen"},
      {"<a@b-.c>", "domain label ends with a hyphen"},
      {"<a@b.c->", "domain label ends with a hyphen"},
      {"<a@b.-c>", "domain label starts with a hyphen"},
      {"<a@->", "domain label starts with a hyphen"},
      {"<a@b_c.d>", "invalid character in domain"},
      {"<a@b/c>", "invalid character in domain"},
      {"<a@b:25>", "invalid character in domain"},
      {"<a@b[1.2.3.4]>", "invalid character in domain"},
      // Characters that RFC 5322 atext leaves out.
      {"<a;b@c>", "invalid character in local part"},
      {"<a(b)@c>", "invalid character in local part"},
      {"<a,b@c>", "invalid character in local part"},
      {"<a:b@c>", "invalid character in local part"},
      {"<a[b@c>", "invalid character in local part"},
      {"<a\\b@c>", "invalid character in local part"},
      {"<a\"b\"@c>", "invalid character in local part"},
      // Quoted strings.
      {"<\"abc@d>", "unbalanced quote"},
      {"<\"abc>", "unbalanced quote"},
      {"<\"a\\\">", "unbalanced quote"},
      {"<\"", "unbalanced quote"},
      {"<\"a\\", "backslash at end of address"},
      {"<\"a\"b@c>", "expected '@' after quoted local part"},
      {"<\"a\".b@c>", "expected '@' after quoted local part"},
      {"<\"a\">", "missing '@' and domain"},
      // Address literals.
      {"<a@[1.2.3.999]>", "malformed IPv4 address literal"},
      {"<a@[1.2.3.256]>", "malformed IPv4 address literal"},
      {"<a@[1.2.3]>", "malformed IPv4 address literal"},
      {"<a@[1.2.3.4.5]>", "malformed IPv4 address literal"},
      {"<a@[1.2.3.4.]>", "malformed IPv4 address literal"},
      {"<a@[.1.2.3.4]>", "malformed IPv4 address literal"},
      {"<a@[1..2.3]>", "malformed IPv4 address literal"},
      {"<a@[1.2.3.1234]>", "malformed IPv4 address literal"},
      {"<a@[1.2.3.0001]>", "malformed IPv4 address literal"},
      {"<a@[010.0.0.1]>", "malformed IPv4 address literal"},
      {"<a@[a.b.c.d]>", "malformed IPv4 address literal"},
      {"<a@[example.org]>", "malformed IPv4 address literal"},
      {"<a@[IPv6:zz]>", "malformed IPv6 address literal"},
      {"<a@[IPv6:]>", "malformed IPv6 address literal"},
      {"<a@[ipv6:zz]>", "malformed IPv6 address literal"},
      {"<a@[IPV6:1:2]>", "malformed IPv6 address literal"},
      {"<a@[IPv6:1:2:3:4:5:6:7]>", "malformed IPv6 address literal"},
      {"<a@[IPv6:1:2:3:4:5:6:7:8:9]>", "malformed IPv6 address literal"},
      {"<a@[IPv6:1:2:3:4:5:6:7::]>", "malformed IPv6 address literal"},
      {"<a@[IPv6:1::2::3]>", "malformed IPv6 address literal"},
      {"<a@[IPv6:12345::]>", "malformed IPv6 address literal"},
      {"<a@[IPv6:fe80::1%eth0]>", "malformed IPv6 address literal"},
      {"<a@[IPv6:192.0.2.1]>", "malformed IPv6 address literal"},
      {"<a@[IPv6:::1.2.3.999]>", "malformed IPv6 address literal"},
      {"<a@[IPv6:1:2:3:4:5:6:7:1.2.3.4]>", "malformed IPv6 address literal"},
      {"<a@[IPv6::1]>", "malformed IPv6 address literal"},
      {"<a@[]>", "empty address literal"},
      {"<a@[tag:]>", "empty general address literal"},
      {"<a@[:x]>", "malformed address literal tag"},
      {"<a@[tag-:x]>", "malformed address literal tag"},
      {"<a@[t_g:x]>", "malformed address literal tag"},
      {"<a@[1.2.3.4>", "unterminated address literal"},
      {"<a@[1.2.3.4", "unterminated address literal"},
      {"<a@[1.2.3.4]x>", "invalid character after address literal"},
      {"<a@[1.2.3.4][5.6.7.8]>", "invalid character after address literal"},
      {"<a@[1.2.3.4] >", "space in address outside quotes"},
      {"<a@[1.2. 3.4]>", "space in address outside quotes"},
      {"<a@[a\\]b]>", "invalid character in address literal"},
      {"<a@[a[b]>", "invalid character in address literal"},
      {"<a@[1.2.3.4]", "path not closed with '>'"},
      // Source routes.
      {"<@b>", "source route not ended with ':'"},
      {"<@a", "source route not ended with ':'"},
      {"<@a,@b>", "source route not ended with ':'"},
      {"<@a,b:c@d>", "malformed source route"},
      {"<@a,>", "malformed source route"},
      {"<@a,:c@d>", "malformed source route"},
      {"<@:a@b>", "missing domain"},
      {"<@a:>", "empty local part"},
      {"<@a:@b:c@d>", "empty local part"},
      {"<@a;b:c@d>", "invalid character in domain"},
      {"<@-a:b@c>", "domain label starts with a hyphen"},
      {"<@a.:b@c>", "domain ends with a dot"},
      {"<@[192.0.2.1]:b@c>", "address literal in source route"},
      {"<@a:\"b\"c@d>", "expected '@' after quoted local part"},
  }));
  CAPTURE(input);
  CHECK(forward_reason(input) == reason);
  CHECK(reverse_reason(input) == reason);
  CHECK(forward_reason(input, kUtf8) == reason);
}

TEST_CASE("a refusal is a permanent data error with the RFC 3463 status", "[address]") {
  const Result<PathParse> sender = parse_reverse_path("<a..b@c>");
  REQUIRE_FALSE(sender);
  CHECK_FALSE(sender.error().is_temporary());
  CHECK(sender.error().exit_code() == EX_DATAERR);
  CHECK(sender.error().status() == "5.1.7");
  CHECK(sender.error().status_text() == "5.1.7 two dots in a row in local part");

  const Result<PathParse> recipient = parse_forward_path("<a..b@c>");
  REQUIRE_FALSE(recipient);
  CHECK_FALSE(recipient.error().is_temporary());
  CHECK(recipient.error().exit_code() == EX_DATAERR);
  CHECK(recipient.error().status() == "5.1.3");

  const Result<Mailbox> mailbox = parse_mailbox("a..b@c");
  REQUIRE_FALSE(mailbox);
  CHECK_FALSE(mailbox.error().is_temporary());
  CHECK(mailbox.error().exit_code() == EX_DATAERR);
  CHECK(mailbox.error().status() == "5.1.3");
}

TEST_CASE("null reverse-path and postmaster", "[address]") {
  SECTION("<> is a null reverse-path") {
    const Result<PathParse> parsed = parse_reverse_path("<> SIZE=10");
    REQUIRE(parsed);
    CHECK(parsed->path.is_null);
    CHECK(parsed->length == 2);
    CHECK(parsed->path.mailbox == Mailbox{});
    CHECK(parsed->path.to_string() == "<>");
  }
  SECTION("<> is not a recipient") {
    const Result<PathParse> parsed = parse_forward_path("<>");
    REQUIRE_FALSE(parsed);
    CHECK(parsed.error().text() == "null path not allowed for a recipient");
    CHECK(parsed.error().status() == "5.1.3");
  }
  SECTION("<postmaster> without a domain, in any case, as a recipient") {
    const std::string text =
        GENERATE(as<std::string>(), "<postmaster>", "<Postmaster>", "<POSTMASTER>", "<PostMaster>");
    CAPTURE(text);
    const Result<PathParse> parsed = parse_forward_path(text + " NOTIFY=NEVER");
    REQUIRE(parsed);
    CHECK(parsed->path.is_postmaster);
    CHECK(parsed->length == 12);
    CHECK(parsed->path.mailbox.local_part == text.substr(1, 10));
    CHECK(parsed->path.mailbox.domain.empty());
    CHECK(parsed->path.to_string() == text);
    const Result<PathParse> again = parse_forward_path(parsed->path.to_string());
    REQUIRE(again);
    CHECK(again->path == parsed->path);
  }
  SECTION("<postmaster> is not a sender") {
    CHECK(reverse_reason("<postmaster>") == "missing '@' and domain");
    CHECK(reverse_reason("<Postmaster>") == "missing '@' and domain");
  }
  SECTION("postmaster with a domain is an ordinary mailbox") {
    const Result<PathParse> parsed = parse_forward_path("<postmaster@x>");
    REQUIRE(parsed);
    CHECK_FALSE(parsed->path.is_postmaster);
    CHECK(parsed->path.mailbox.local_part == "postmaster");
    CHECK(parsed->path.mailbox.domain == "x");
  }
  SECTION("only the exact word, unquoted, without a route") {
    CHECK(forward_reason("<postmasterx>") == "missing '@' and domain");
    CHECK(forward_reason("<\"postmaster\">") == "missing '@' and domain");
    CHECK(forward_reason("<@a:postmaster>") == "missing '@' and domain");
    CHECK(forward_reason("<postmaster@>") == "missing domain");
    CHECK(forward_reason("<postmaster") == "path not closed with '>'");
    CHECK(mailbox_reason("postmaster") == "missing '@' and domain");
  }
}

TEST_CASE("reports the length consumed up to the closing '>'", "[address]") {
  const auto [input, length] = GENERATE(table<std::string, std::size_t>({
      {"<a@b> SIZE=10", 5},
      {"<a@b>", 5},
      {"<a@b>junk", 5},
      {"<a@b>>", 5},
      {"<\"a>b\"@c> BODY=8BITMIME", 9},
      {"<a@[192.0.2.1]> SIZE=1", 15},
      {"<a@[x:>]> X", 9},
      {"<@r:a@b> RET=HDRS", 8},
  }));
  CAPTURE(input);
  const Result<PathParse> parsed = parse_forward_path(input);
  REQUIRE(parsed);
  CHECK(parsed->length == length);
  // Nothing after the '>' changes the result.
  const Result<PathParse> alone = parse_forward_path(std::string_view(input).substr(0, length));
  REQUIRE(alone);
  CHECK(alone->path == parsed->path);
  CHECK(alone->length == length);
}

TEST_CASE("enforces the RFC 5321 size limits at their boundaries", "[address]") {
  SECTION("local part: 64 octets, as written") {
    const std::string local64(64, 'l');
    CHECK(forward_reason("<" + local64 + "@x>").empty());
    CHECK(forward_reason("<" + local64 + "l@x>") == "local part longer than 64 octets");
    const std::string quoted64 = "\"" + std::string(62, 'q') + "\"";
    CHECK(forward_reason("<" + quoted64 + "@x>").empty());
    CHECK(forward_reason("<\"" + std::string(63, 'q') + "\"@x>") ==
          "local part longer than 64 octets");
    // The quoted-pairs count: this decodes to 32 octets but is 66 on the wire.
    std::string escaped = "\"";
    for (int i = 0; i < 32; ++i) {
      escaped += "\\e";
    }
    escaped += "\"";
    CHECK(forward_reason("<" + escaped + "@x>") == "local part longer than 64 octets");
    CHECK(mailbox_reason(local64 + "@x").empty());
    CHECK(mailbox_reason(local64 + "l@x") == "local part longer than 64 octets");
  }
  SECTION("domain: 255 octets") {
    const std::string domain255 = domain_of({63, 63, 63, 63});
    const std::string domain256 = domain_of({63, 63, 63, 62, 1});
    REQUIRE(domain255.size() == 255);
    REQUIRE(domain256.size() == 256);
    CHECK(is_valid_domain(domain255));
    CHECK_FALSE(is_valid_domain(domain256));
    CHECK(mailbox_reason("a@" + domain256) == "domain longer than 255 octets");
    CHECK(forward_reason("<a@" + domain256 + ">") == "domain longer than 255 octets");
    // A 255-octet domain never fits in a path or a mailbox: those limits are tighter.
    CHECK(mailbox_reason("a@" + domain255) == "address longer than 254 octets");
    CHECK(forward_reason("<a@" + domain255 + ">") == "path longer than 256 octets");
    const std::string literal256 = "[x:" + std::string(252, 'v') + "]";
    REQUIRE(literal256.size() == 256);
    CHECK(forward_reason("<a@" + literal256 + ">") == "domain longer than 255 octets");
  }
  SECTION("ASCII label: 63 octets") {
    CHECK(is_valid_domain(domain_of({63, 2})));
    CHECK_FALSE(is_valid_domain(domain_of({64, 2})));
    CHECK(forward_reason("<a@" + domain_of({2, 64}) + ">") == "domain label longer than 63 octets");
  }
  SECTION("path: 256 octets counting the brackets") {
    const std::string local64(64, 'l');
    const std::string path256 = "<" + local64 + "@" + domain_of({63, 63, 61}) + ">";
    const std::string path257 = "<" + local64 + "@" + domain_of({63, 63, 62}) + ">";
    REQUIRE(path256.size() == 256);
    REQUIRE(path257.size() == 257);
    const Result<PathParse> parsed = parse_reverse_path(path256 + " SIZE=1");
    REQUIRE(parsed);
    CHECK(parsed->length == 256);
    CHECK(forward_reason(path257) == "path longer than 256 octets");
    CHECK(reverse_reason(path257) == "path longer than 256 octets");
  }
  SECTION("a source route counts towards the path") {
    const std::string route = "<@" + domain_of({63, 63, 63, 58}) + ":";
    const std::string path257 = route + "a@b>";
    REQUIRE(path257.size() == 257);
    CHECK(forward_reason(path257) == "path longer than 256 octets");
    CHECK(forward_reason(route.substr(0, route.size() - 2) + ":a@b>").empty());
  }
  SECTION("bare mailbox: 254 octets, so that it fits in a path") {
    const std::string mailbox254 = std::string(64, 'l') + "@" + domain_of({63, 63, 61});
    const std::string mailbox255 = std::string(64, 'l') + "@" + domain_of({63, 63, 62});
    REQUIRE(mailbox254.size() == 254);
    REQUIRE(mailbox255.size() == 255);
    CHECK(mailbox_reason(mailbox254).empty());
    CHECK(mailbox_reason(mailbox255) == "address longer than 254 octets");
    CHECK(forward_reason("<" + mailbox254 + ">").empty());
  }
}

TEST_CASE("refuses NUL, CR, LF and control characters anywhere", "[address]") {
  const auto [input, reason] = GENERATE(table<std::string, std::string>({
      {"<a\0@b>"s, "NUL octet in address"},
      {"<\0a@b>"s, "NUL octet in address"},
      {"<a@b\0>"s, "NUL octet in address"},
      {"<a@b\0.c>"s, "NUL octet in address"},
      {"<\"a\0\"@b>"s, "NUL octet in address"},
      {"<\"a\\\0\"@b>"s, "NUL octet in address"},
      {"<a@[1.2.3.4\0]>"s, "NUL octet in address"},
      {"<@r\0:a@b>"s, "NUL octet in address"},
      {"<a\r\n@b>", "CR or LF in address"},
      {"<a@b\r\n>", "CR or LF in address"},
      {"<a@b\n>", "CR or LF in address"},
      {"<a@b\r>", "CR or LF in address"},
      {"<\"a\r\nRCPT TO:<x@y>\"@b>", "CR or LF in address"},
      {"<\"a\\\n\"@b>", "CR or LF in address"},
      {"<a\t@b>", "control character in address"},
      {"<\"a\tb\"@c>", "control character in address"},
      {"<a\x7f@b>", "control character in address"},
      {"<\"a\x7f\"@b>", "control character in address"},
      {"<\"a\\\x01\"@b>", "control character in address"},
      {"<a@b\x1b[31m>", "control character in address"},
      {"<a@[1.2.3.4\x1b]>", "control character in address"},
  }));
  CAPTURE(input);
  CHECK(forward_reason(input) == reason);
  CHECK(reverse_reason(input) == reason);
  CHECK(forward_reason(input, kUtf8) == reason);
  // Without brackets, as a bare mailbox: the same reason.
  if (input.back() == '>' && input[1] != '@') {
    CHECK(mailbox_reason(input.substr(1, input.size() - 2)) == reason);
  }
}

TEST_CASE("refuses 8-bit octets unless SMTPUTF8 is in use", "[address]") {
  const std::string input = GENERATE(as<std::string>(), "<jörg@example.org>", "<a@bücher.example>",
                                     "<\"jö rg\"@x>", "<@bücher.de:a@b>");
  CAPTURE(input);
  CHECK(forward_reason(input) == "8-bit octet in address without SMTPUTF8");
  CHECK(reverse_reason(input) == "8-bit octet in address without SMTPUTF8");
  CHECK(forward_reason(input, kUtf8).empty());
}

TEST_CASE("accepts well-formed UTF-8 with SMTPUTF8 (RFC 6531 3.3)", "[address]") {
  const ValidPath c = GENERATE(values<ValidPath>({
      {"<jörg@example.org>", "jörg", "example.org", false, false, "<jörg@example.org>"},
      {"<a@bücher.example>", "a", "bücher.example", false, false, "<a@bücher.example>"},
      {"<用户@例子.广告>", "用户", "例子.广告", false, false, "<用户@例子.广告>"},
      {"<\"jörg\"@x>", "jörg", "x", false, true, "<jörg@x>"},
      {"<\"jö rg\"@x>", "jö rg", "x", false, true, "<\"jö rg\"@x>"},
      {"<😀.😀@x>", "😀.😀", "x", false, false, "<😀.😀@x>"},
      {"<a@[192.0.2.1]>", "a", "[192.0.2.1]", true, false, "<a@[192.0.2.1]>"},
  }));
  CAPTURE(c.input);
  const Result<PathParse> parsed = parse_forward_path(c.input, kUtf8);
  REQUIRE(parsed);
  CHECK(parsed->length == c.input.size());
  CHECK(parsed->path.mailbox.local_part == c.local_part);
  CHECK(parsed->path.mailbox.domain == c.domain);
  CHECK(parsed->path.mailbox.domain_is_literal == c.literal);
  CHECK(parsed->path.mailbox.local_part_was_quoted == c.quoted);
  CHECK(parsed->path.to_string() == c.canonical);
  const Result<PathParse> again = parse_forward_path(c.canonical, kUtf8);
  REQUIRE(again);
  CHECK(again->path.mailbox.local_part == c.local_part);
  CHECK(again->path.to_string() == c.canonical);
}

TEST_CASE("refuses malformed UTF-8 even with SMTPUTF8", "[address]") {
  const auto [input, reason] = GENERATE(table<std::string, std::string>({
      {"<a\xC3@b>", "malformed UTF-8 in address"},                  // truncated
      {"<a\xC3\xC3\xA9@b>", "malformed UTF-8 in address"},          // lead without tail
      {"<a\xC0\xAF@b>", "malformed UTF-8 in address"},              // overlong '/'
      {"<a\xE0\x80\xAF@b>", "malformed UTF-8 in address"},          // overlong, 3 octets
      {"<a\xF0\x80\x80\xAF@b>", "malformed UTF-8 in address"},      // overlong, 4 octets
      {"<a\xED\xA0\x80@b>", "malformed UTF-8 in address"},          // surrogate U+D800
      {"<a\xF4\x90\x80\x80@b>", "malformed UTF-8 in address"},      // past U+10FFFF
      {"<a\xF8\x88\x80\x80\x80@b>", "malformed UTF-8 in address"},  // 5 octets
      {"<a\xFF@b>", "malformed UTF-8 in address"},
      {"<a\x80@b>", "malformed UTF-8 in address"},  // lone continuation
      {"<a@b\xC3>", "malformed UTF-8 in address"},
      {"<a@b\xC3(.c>", "malformed UTF-8 in address"},
      {"<\"a\xC3\"@b>", "malformed UTF-8 in address"},
      {"<a\xC2\x85@b>", "control character in address"},  // NEL, a C1 control
      {"<\"a\xC2\x9B\"@b>", "control character in address"},
      {"<a@b\xC2\x80>", "control character in address"},
      // quoted-pairSMTP stays ASCII under RFC 6531.
      {"<\"a\\\xC3\xA9\"@b>", "backslash before a non-ASCII character"},
      // Address literals stay ASCII too.
      {"<a@[1.2.3.\xC3\xA9]>", "invalid character in address literal"},
      {"<a\xC2\xA0@b>", ""},  // U+00A0 is not a control
  }));
  CAPTURE(input);
  CHECK(forward_reason(input, kUtf8) == reason);
  CHECK(forward_reason(input) == "8-bit octet in address without SMTPUTF8");
}

TEST_CASE("shell metacharacters: the grammar decides, not fear", "[address]") {
  // Shell safety is the job of never passing an address to a shell (execve with a checked argv),
  // not of this parser: '`', '$', '|', '&', '\'', '{', '}' and '!' are RFC 5322 atext, so these
  // are valid mailboxes and must stay valid. ';', '(', ')', '<', '>', '\\' and space are not.
  const std::string valid =
      GENERATE(as<std::string>(), "<`id`@x>", "<$HOME@x>", "<a|b@x>", "<a&b@x>", "<a'b@x>",
               "<{a}@x>", "<~root@x>", "<!!@x>", "<\";sleep 5;\"@x>", "<\"$(id)\"@x>");
  CAPTURE(valid);
  CHECK(forward_reason(valid).empty());
  CHECK(reverse_reason(valid).empty());

  // OpenSMTPD CVE-2020-7247: "MAIL FROM:<;sleep 5;>" and "RCPT TO:<`id`>" must be refused.
  CHECK(reverse_reason("<;sleep 5;>") == "invalid character in local part");
  CHECK(reverse_reason("<;sleep 5;@x>") == "invalid character in local part");
  CHECK(forward_reason("<`id`>") == "missing '@' and domain");
  CHECK(reverse_reason("<`id`>") == "missing '@' and domain");
  CHECK(forward_reason("<$(id)@x>") == "invalid character in local part");
  CHECK(forward_reason("<a@x;id>") == "invalid character in domain");
  CHECK(forward_reason("<a@$(id)>") == "invalid character in domain");
}

TEST_CASE("parse_mailbox takes exactly one bare mailbox", "[address]") {
  SECTION("valid") {
    const Result<Mailbox> plain = parse_mailbox("Joe.Bloggs@Example.ORG");
    REQUIRE(plain);
    CHECK(plain->local_part == "Joe.Bloggs");
    CHECK(plain->domain == "Example.ORG");
    CHECK(plain->to_string() == "Joe.Bloggs@Example.ORG");
    const Result<Mailbox> quoted = parse_mailbox(R"("joe bloggs"@[IPv6:::1])");
    REQUIRE(quoted);
    CHECK(quoted->local_part == "joe bloggs");
    CHECK(quoted->local_part_was_quoted);
    CHECK(quoted->domain == "[IPv6:::1]");
    CHECK(quoted->domain_is_literal);
  }
  SECTION("invalid") {
    const auto [input, reason] = GENERATE(table<std::string, std::string>({
        {"", "empty address"},
        {"<a@b>", "invalid character in local part"},
        {"a@b>", "invalid character in domain"},
        {"a>@b", "invalid character in local part"},
        {"a@b ", "space in address outside quotes"},
        {" a@b", "space in address outside quotes"},
        {"a@b SIZE=1", "space in address outside quotes"},
        {"a", "missing '@' and domain"},
        {"a@", "missing domain"},
        {"@b", "empty local part"},
        {"@r:a@b", "empty local part"},
        {"a@b,c@d", "invalid character in domain"},
        {"\"a\"", "missing '@' and domain"},
        {"\"a", "unbalanced quote"},
        {"a@[1.2.3.4]>", "invalid character after address literal"},
        {"a@[1.2.3.4", "unterminated address literal"},
        {"jörg@x", "8-bit octet in address without SMTPUTF8"},
    }));
    CAPTURE(input);
    CHECK(mailbox_reason(input) == reason);
  }
  SECTION("SMTPUTF8") {
    const Result<Mailbox> parsed = parse_mailbox("jörg@bücher.example", kUtf8);
    REQUIRE(parsed);
    CHECK(parsed->local_part == "jörg");
    CHECK(parsed->domain == "bücher.example");
  }
}

TEST_CASE("is_dot_string follows RFC 5321 Dot-string", "[address]") {
  const auto [text, ascii, utf8] = GENERATE(table<std::string, bool, bool>({
      {"a", true, true},
      {"a.b.c", true, true},
      {"!#$%&'*+-/=?^_`{|}~", true, true},
      {"user%other", true, true},
      {"", false, false},
      {".a", false, false},
      {"a.", false, false},
      {"a..b", false, false},
      {".", false, false},
      {"a b", false, false},
      {"a@b", false, false},
      {"a\"b", false, false},
      {"a\\b", false, false},
      {"a;b", false, false},
      {"a\0b"s, false, false},
      {"jörg", false, true},
      {"j\xC3rg", false, false},
      {"a\xC2\x85", false, false},
  }));
  CAPTURE(text);
  CHECK(is_dot_string(text) == ascii);
  CHECK(is_dot_string(text, kUtf8) == utf8);
}

TEST_CASE("is_valid_domain follows RFC 5321 Domain", "[address]") {
  const auto [text, ascii, utf8] = GENERATE(table<std::string, bool, bool>({
      {"a", true, true},
      {"example.org", true, true},
      {"Example.ORG", true, true},
      {"a-b.c-d", true, true},
      {"a--b.0", true, true},
      {"1.2.3.4", true, true},
      {"xn--bcher-kva.example", true, true},
      {"", false, false},
      {".", false, false},
      {"a.", false, false},
      {".a", false, false},
      {"a..b", false, false},
      {"-a", false, false},
      {"a-", false, false},
      {"a_b", false, false},
      {"a b", false, false},
      {"a\0b"s, false, false},
      {"[192.0.2.1]", false, false},
      {"bücher.example", false, true},
      {"-bücher.example", false, false},
      {"b\xC3.example", false, false},
  }));
  CAPTURE(text);
  CHECK(is_valid_domain(text) == ascii);
  CHECK(is_valid_domain(text, kUtf8) == utf8);
}

TEST_CASE("domains compare ASCII case-insensitively", "[address]") {
  CHECK(domain_equal("Example.ORG", "example.org"));
  CHECK(domain_equal("", ""));
  CHECK(domain_equal("[IPv6:ABCD::1]", "[ipv6:abcd::1]"));
  CHECK_FALSE(domain_equal("example.org", "example.org."));
  CHECK_FALSE(domain_equal("example.org", "example.com"));
  CHECK_FALSE(domain_equal("a", "b"));
  CHECK_FALSE(domain_equal("[IPv6:0::1]", "[IPv6::1]"));
  // Only ASCII letters fold: 'Ü' (C3 9C) and 'ü' (C3 BC) stay different.
  CHECK_FALSE(domain_equal("BÜCHER.de", "bücher.de"));
  CHECK(domain_equal("Bücher.DE", "bücher.de"));
  // '@' (0x40) and '`' (0x60) differ by the case bit but are not letters.
  CHECK_FALSE(domain_equal("@", "`"));
  CHECK_FALSE(domain_equal("[", "{"));

  CHECK(lowercase_domain("Mail.Example.ORG") == "mail.example.org");
  CHECK(lowercase_domain("BÜCHER.de") == "bÜcher.de");
  CHECK(lowercase_domain("[IPv6:ABCD::1]") == "[ipv6:abcd::1]");
  CHECK(lowercase_domain("@[\\]^_") == "@[\\]^_");

  // The local part keeps its case; only the domain may be folded.
  const Result<PathParse> parsed = parse_forward_path("<John.Smith@Example.ORG>");
  REQUIRE(parsed);
  CHECK(parsed->path.mailbox.local_part == "John.Smith");
  CHECK(parsed->path.mailbox.domain == "Example.ORG");
}

TEST_CASE("to_string quotes only what needs quoting", "[address]") {
  Mailbox mailbox;
  mailbox.domain = "x";
  const auto [local_part, text] = GENERATE(table<std::string, std::string>({
      {"plain", "plain@x"},
      {"a.b", "a.b@x"},
      {"a b", "\"a b\"@x"},
      {"a\"b", R"("a\"b"@x)"},
      {"a\\b", R"("a\\b"@x)"},
      {"", R"(""@x)"},
      {"a..b", R"("a..b"@x)"},
      {"u@other", R"("u@other"@x)"},
      {"jörg", "jörg@x"},
  }));
  mailbox.local_part = local_part;
  CHECK(mailbox.to_string() == text);
  const Result<Mailbox> parsed = parse_mailbox(mailbox.to_string(), kUtf8);
  REQUIRE(parsed);
  CHECK(parsed->local_part == local_part);
}
