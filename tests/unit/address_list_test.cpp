#include "libmail/address_list.h"

#include <sysexits.h>

#include <catch2/catch.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/address.h"
#include "libmail/limits.h"

using namespace mailwright;
using namespace std::string_literals;

namespace {

using Addresses = std::vector<std::string>;

struct Case {
  std::string value;
  Addresses addresses;
};

struct Refusal {
  std::string value;
  std::string reason;  // what the error text starts with
};

Addresses parse(std::string_view value) {
  const Result<Addresses> parsed = parse_address_list(value);
  INFO("error: " << (parsed ? std::string() : parsed.error().text()));
  REQUIRE(parsed.ok());
  return *parsed;
}

// The error text, or "" when the value parses.
std::string refusal(std::string_view value) {
  const Result<Addresses> parsed = parse_address_list(value);
  return parsed ? std::string() : parsed.error().text();
}

// What the caller does with each address: an SMTP forward path, a local name given a domain.
void require_forward_paths(const std::vector<Mailbox>& mailboxes) {
  for (const Mailbox& mailbox : mailboxes) {
    const std::string address = mailbox.to_string();
    const std::string path = "<" + address + (mailbox.domain.empty() ? "@local.example" : "") + ">";
    INFO(path);
    const Result<PathParse> parsed = parse_forward_path(path, AddressOptions{.allow_utf8 = true});
    REQUIRE(parsed.ok());
    CHECK(parsed->length == path.size());
    CHECK(parsed->path.mailbox.local_part == mailbox.local_part);
    if (!mailbox.domain.empty()) {
      CHECK(parsed->path.mailbox.domain == mailbox.domain);
    }
  }
}

void check_case(const Case& c) {
  INFO("value: " << c.value);
  CHECK(parse(c.value) == c.addresses);
  const Result<std::vector<Mailbox>> mailboxes = parse_address_list_mailboxes(c.value);
  REQUIRE(mailboxes.ok());
  require_forward_paths(*mailboxes);
}

}  // namespace

TEST_CASE("RFC 5322 appendix A.1 addressing examples", "[address_list]") {
  const Case c = GENERATE(values<Case>({
      // A.1.1
      {"John Doe <jdoe@machine.example>", {"jdoe@machine.example"}},
      {" Mary Smith <mary@example.net>", {"mary@example.net"}},
      // A.1.2
      {" \"Joe Q. Public\" <john.q.public@example.com>", {"john.q.public@example.com"}},
      {" Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>",
       {"mary@x.test", "jdoe@example.org", "one@y.test"}},
      {" <boss@nil.test>, \"Giant; \\\"Big\\\" Box\" <sysservices@example.net>",
       {"boss@nil.test", "sysservices@example.net"}},
      // A.1.3
      {" A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;",
       {"c@a.test", "joe@where.test", "jdoe@one.test"}},
      {" Undisclosed recipients:;", {}},
  }));
  check_case(c);
}

TEST_CASE("RFC 5322 appendix A.2 to A.4: replies, resending, trace", "[address_list]") {
  const Case c = GENERATE(values<Case>({
      {" Mary Smith <mary@example.net>", {"mary@example.net"}},
      {" John Doe <jdoe@machine.example>", {"jdoe@machine.example"}},
      {" Jane Brown <j-brown@other.example>", {"j-brown@other.example"}},
      {" John Doe <jdoe@node.example>", {"jdoe@node.example"}},
  }));
  check_case(c);
}

TEST_CASE("RFC 5322 appendix A.5: white space, comments and other oddities", "[address_list]") {
  const Case c = GENERATE(values<Case>({
      {" Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", {"pete@silly.test"}},
      {"A Group(Some people)\r\n"
       "     :Chris Jones <c@(Chris's host.)public.example>,\r\n"
       "         joe@example.org,\r\n"
       "  John <jdoe@one.test> (my dear friend); (the end of the group)",
       {"c@public.example", "joe@example.org", "jdoe@one.test"}},
      {"(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;", {}},
  }));
  check_case(c);
}

TEST_CASE("RFC 5322 appendix A.6: obsolete addressing, white space and comments",
          "[address_list]") {
  const Case c = GENERATE(values<Case>({
      // A.6.1
      {" Joe Q. Public <john.q.public@example.com>", {"john.q.public@example.com"}},
      {" Mary Smith <@node.test:mary@example.net>, , jdoe@test  . example",
       {"mary@example.net", "jdoe@test.example"}},
      // A.6.2
      {" Mary Smith <mary@example.net>", {"mary@example.net"}},
      // A.6.3: a line of WSP only (obs-FWS), and CFWS inside the domain.
      {" John Doe <jdoe@machine(comment).  example>", {"jdoe@machine.example"}},
      {" Mary Smith\r\n  \r\n          <mary@example.net>", {"mary@example.net"}},
  }));
  check_case(c);
}

TEST_CASE("mailboxes, groups and list elements", "[address_list]") {
  const Case c = GENERATE(values<Case>({
      {"a@b", {"a@b"}},
      {"a@b, c@d", {"a@b", "c@d"}},
      {"a@b,c@d,e@f", {"a@b", "c@d", "e@f"}},
      {"<a@b>", {"a@b"}},
      {"< a@b >", {"a@b"}},
      {"Joe <a@b>, \"Smith, Jane\" <c@d>", {"a@b", "c@d"}},
      {"\"\" <a@b>", {"a@b"}},
      {"Dr. J. R. \"Bob\" Dobbs <bob@subgenius.example>", {"bob@subgenius.example"}},
      {"a@b, a@b", {"a@b", "a@b"}},  // duplicates are the caller's business
      {"friends: a@b, \"C D\" <c@d>;", {"a@b", "c@d"}},
      {"friends: a@b, \"C D\" <c@d>; , e@f", {"a@b", "c@d", "e@f"}},
      {"x@y, empty:;, z@w", {"x@y", "z@w"}},
      {"g1: a@b;, g2: c@d;", {"a@b", "c@d"}},
      {"\"quoted group\": a@b;", {"a@b"}},
      {"group: , , a@b, , ;", {"a@b"}},  // obs-group-list and obs-mbox-list
      {"group: (nobody) ;", {}},
      // obs-addr-list: empty elements anywhere.
      {"a@b,,c@d", {"a@b", "c@d"}},
      {",a@b", {"a@b"}},
      {"a@b,", {"a@b"}},
      {" , (c) , a@b , (c) , ", {"a@b"}},
      // No address at all is an empty list (an empty Bcc:).
      {"", {}},
      {"   ", {}},
      {"(just a comment)", {}},
      {",,,", {}},
  }));
  check_case(c);
}

TEST_CASE("local parts: dot-atoms, quoted strings and obs-local-part", "[address_list]") {
  const Case c = GENERATE(values<Case>({
      {"first.last@x", {"first.last@x"}},
      {"!#$%&'*+-/=?^_`{|}~@x", {"!#$%&'*+-/=?^_`{|}~@x"}},
      // Quotes go unless they are needed.
      {"\"quoted\"@x", {"quoted@x"}},
      {"\"a b\"@x", {"\"a b\"@x"}},
      {"\"a\\\"b\"@x", {"\"a\\\"b\"@x"}},
      {"\"a\\\\b\"@x", {"\"a\\\\b\"@x"}},
      {"\"\\a\\b\"@x", {"ab@x"}},
      {"\"a@b\"@x", {"\"a@b\"@x"}},
      {"\"a,b\"@x", {"\"a,b\"@x"}},
      {"\"john..doe\"@x", {"\"john..doe\"@x"}},
      {"\"\"@x", {"\"\"@x"}},
      // obs-local-part: words joined by dots, CFWS around them.
      {"a . b@x", {"a.b@x"}},
      {"\"a\".b@x", {"a.b@x"}},
      {"a.\"b c\".d@x", {"\"a.b c.d\"@x"}},
      {"a(c).(c)b@x", {"a.b@x"}},
      {" a @ x ", {"a@x"}},
      {"(c)a(c)@(c)x(c)", {"a@x"}},
      // A fold inside a quoted string leaves its WSP.
      {"\"a\r\n b\"@x", {"\"a b\"@x"}},
  }));
  check_case(c);
}

TEST_CASE("domains: obs-domain and domain literals", "[address_list]") {
  const Case c = GENERATE(values<Case>({
      {"a@Example.ORG", {"a@Example.ORG"}},
      {"a@b . c . d", {"a@b.c.d"}},
      {"a@b(c).d", {"a@b.d"}},
      {"a@[192.0.2.1]", {"a@[192.0.2.1]"}},
      {"a@ [192.0.2.1] ", {"a@[192.0.2.1]"}},
      {"a@[ 192.0.2.1 ]", {"a@[192.0.2.1]"}},
      {"Joe <a@[IPv6:2001:db8::1]>", {"a@[IPv6:2001:db8::1]"}},
      {"a@[x-tag:anything]", {"a@[x-tag:anything]"}},
  }));
  check_case(c);
}

TEST_CASE("source routes are read and dropped (obs-route)", "[address_list]") {
  const Case c = GENERATE(values<Case>({
      {"<@a,@b:u@d>", {"u@d"}},
      {"<@a:u@d>", {"u@d"}},
      {"Joe <@relay.example:victim@elsewhere.example>", {"victim@elsewhere.example"}},
      {"< @a , @b : u@d >", {"u@d"}},
      {"<,@a,,@b,:u@d>", {"u@d"}},
      {"<(c)@a(c),(c)@[192.0.2.1]:u@d>", {"u@d"}},
  }));
  check_case(c);
}

TEST_CASE("local names without a domain, as sendmail -t reads them", "[address_list]") {
  const Case c = GENERATE(values<Case>({
      {"joe", {"joe"}},
      {"joe, jane@example.org", {"joe", "jane@example.org"}},
      {"Joe <joe>", {"joe"}},
      {"staff: joe, jane;", {"joe", "jane"}},
      {"first.last", {"first.last"}},
      {"\"joe smith\"", {"\"joe smith\""}},
      {"(comment) joe (comment)", {"joe"}},
  }));
  check_case(c);

  // A local name is told apart by its domain, never by an '@' in its text.
  const Result<std::vector<Mailbox>> mailboxes = parse_address_list_mailboxes("\"a@b\", c@d");
  REQUIRE(mailboxes.ok());
  REQUIRE(mailboxes->size() == 2);
  CHECK((*mailboxes)[0].local_part == "a@b");
  CHECK((*mailboxes)[0].domain.empty());
  CHECK((*mailboxes)[0].local_part_was_quoted);
  CHECK((*mailboxes)[0].to_string() == "\"a@b\"");
  CHECK((*mailboxes)[1].domain == "d");
}

TEST_CASE("the mailboxes say what was written", "[address_list]") {
  const Result<std::vector<Mailbox>> mailboxes =
      parse_address_list_mailboxes("\"a\".b@x, c@[192.0.2.1], d@E.example");
  REQUIRE(mailboxes.ok());
  REQUIRE(mailboxes->size() == 3);
  CHECK((*mailboxes)[0] ==
        Mailbox{.local_part = "a.b", .domain = "x", .local_part_was_quoted = true});
  CHECK((*mailboxes)[1] ==
        Mailbox{.local_part = "c", .domain = "[192.0.2.1]", .domain_is_literal = true});
  CHECK((*mailboxes)[2] == Mailbox{.local_part = "d", .domain = "E.example"});
}

TEST_CASE("comments nest, hold quoted-pairs and go anywhere CFWS may", "[address_list]") {
  const Case c = GENERATE(values<Case>({
      {"(a (nested) \\) comment) a@b", {"a@b"}},
      {"a@b (a (b (c (d))))", {"a@b"}},
      {"(\\(not nested) a@b", {"a@b"}},
      {"(quoted \"string\" inside) a@b", {"a@b"}},
      {"Joe (c) <(c) a (c) @ (c) b (c)> (c)", {"a@b"}},
      {"g (c) : (c) a@b (c) ; (c)", {"a@b"}},
      {"(folded\r\n comment) a@b", {"a@b"}},
      {"(tab\tinside) a@b", {"a@b"}},
  }));
  check_case(c);

  const std::string deepest = std::string(64, '(') + std::string(64, ')') + " a@b";
  CHECK(parse(deepest) == Addresses{"a@b"});
  const std::string too_deep = std::string(65, '(') + std::string(65, ')') + " a@b";
  CHECK(refusal(too_deep).starts_with("comments nested more than 64 deep"));
  // Depth counts nesting, not comments: any number of them side by side is fine.
  std::string many;
  for (int i = 0; i < 1000; ++i) {
    many += "(c)";
  }
  CHECK(parse(many + "a@b" + many) == Addresses{"a@b"});
}

TEST_CASE("folding: CRLF or LF before WSP, and a final line end", "[address_list]") {
  const Case c = GENERATE(values<Case>({
      {"a@b,\r\n c@d", {"a@b", "c@d"}},
      {"a@b,\n\tc@d", {"a@b", "c@d"}},
      {"\r\n a@b", {"a@b"}},
      {"Joe\r\n <a@b>", {"a@b"}},
      {"a@b\r\n", {"a@b"}},
      {"a@b\n", {"a@b"}},
      {"a@b,\r\n \r\n c@d", {"a@b", "c@d"}},
      {"a@b\r\n \r\n", {"a@b"}},
  }));
  check_case(c);
}

TEST_CASE("UTF-8 in local parts, domains and display names (RFC 6532)", "[address_list]") {
  const Case c = GENERATE(values<Case>({
      {"J\xC3\xB6rg <j\xC3\xB6rg@m\xC3\xBCnchen.example>", {"j\xC3\xB6rg@m\xC3\xBCnchen.example"}},
      {"\"\xE7\x94\xB0\xE4\xB8\xAD\" <\xE7\x94\xB0\xE4\xB8\xAD@example.jp>",
       {"\xE7\x94\xB0\xE4\xB8\xAD@example.jp"}},
      {"\"\xC3\xA9 \xC3\xA9\"@x", {"\"\xC3\xA9 \xC3\xA9\"@x"}},
      {"(\xC3\xA9t\xC3\xA9) a@b", {"a@b"}},
      // A legacy 8-bit display name is dropped with the rest of the name.
      {"J\xF6rg <joerg@example.org>", {"joerg@example.org"}},
      {"\"J\xF6rg\" <joerg@example.org>", {"joerg@example.org"}},
  }));
  check_case(c);
}

TEST_CASE("RFC 2047 encoded-words in display names are skipped", "[address_list]") {
  const Case c = GENERATE(values<Case>({
      {"=?UTF-8?B?SsO2cmc=?= <j@example.org>", {"j@example.org"}},
      {"=?iso-8859-1?q?J=F6rg?= Smith <j@example.org>", {"j@example.org"}},
      // Encoders that leave specials in a phrase: still one word each.
      {"=?utf-8?q?Smith,_John?= <j@example.org>, k@example.org",
       {"j@example.org", "k@example.org"}},
      {"=?utf-8?q?a:b;c?= <j@example.org>", {"j@example.org"}},
      {"=?utf-8?q?Mr._Smith?= <j@example.org>", {"j@example.org"}},
      {"=?utf-8*en?q?a(b)?= <j@example.org>", {"j@example.org"}},
      // Only atext and dots: atoms to the grammar, and a valid local part.
      {"=?a?b?c?=@example.org", {"=?a?b?c?=@example.org"}},
      {"\"=?a?b?c.d?=\"@example.org", {"=?a?b?c.d?=@example.org"}},
      {"=?a?b?c.d?=@example.org", {"=?a?b?c.d?=@example.org"}},
  }));
  check_case(c);
}

TEST_CASE("refuses malformed lists with a reason", "[address_list]") {
  const Refusal r = GENERATE(values<Refusal>({
      // Unbalanced.
      {"\"a@b", "unbalanced '\"' at octet 1"},
      {"\"a\\\"@b", "unbalanced '\"'"},
      {"(a@b", "unbalanced '(' at octet 1"},
      {"((a) a@b", "unbalanced '('"},
      {"(a\\) a@b", "unbalanced '('"},
      {"a@b)", "')' without '('"},
      {"<a@b", "unbalanced '<' at octet 1"},
      {"Joe <a@b, c@d", "expected '>' after the address"},
      {"Joe <a@b", "unbalanced '<'"},
      {"a@b>", "'>' without '<'"},
      {"a@[1.2.3.4", "unbalanced '['"},
      {"a@b]", "']' without '['"},
      {"g: a@b", "group not closed with ';' at octet 1"},
      {"g: a@b, c@d", "group not closed with ';'"},
      {"g:", "group not closed with ';'"},
      {"a@b;", "';' outside a group"},
      {";", "';' outside a group"},
      // Addresses.
      {"a@", "missing domain after '@' at the end of the field"},
      {"a@, b@c", "missing domain after '@' at octet 3"},
      {"<a@>", "missing domain after '@'"},
      {"a@(comment)", "missing domain after '@'"},
      {"@b", "missing local part before '@'"},
      {"Joe <@b>", "source route not ended with ':'"},
      {"a@b@c", "second '@' in an address"},
      {"<a@b@c>", "second '@' in an address"},
      {"a@b c@d", "expected ',' after an address"},
      {"a@b <c@d>", "'<' after an address"},
      {"joe@example.org <joe@example.org>", "'<' after an address"},
      {"a..b@c", "two dots in a row in a local part"},
      {".a@b", "local part starts with a dot"},
      {"a.@b", "local part ends with a dot"},
      {"a b@c", "words of a local part not joined by dots"},
      {"\"a\"b@c", "words of a local part not joined by dots"},
      {"a@b.", "domain ends with a dot"},
      {"a@.b", "missing domain after '@'"},
      {"a@b..c", "two dots in a row in a domain"},
      {"a@[192.0.2.1].com", "expected ',' after an address"},
      {"Joe Smith", "display name without an address"},
      {"Joe Smith, a@b", "display name without an address"},
      {"<>", "empty angle brackets"},
      {"Joe <>", "empty angle brackets"},
      {"<joe smith>", "words of a local part not joined by dots"},
      {". <a@b>", "display name starts with a dot"},
      {"Joe <a@b> <c@d>", "'<' after an address"},
      {"[192.0.2.1]", "unexpected '['"},
      {"a\\b@c", "backslash outside a quoted string or comment"},
      {"=?utf-8?q?a,b?=@example.org", "invalid character in a local part"},
      // Groups.
      {"g: h: a@b;;", "group inside a group"},
      {": a@b;", "group without a name"},
      {"a@b: c@d;", "expected ',' after an address"},
      // Source routes.
      {"<@a>", "source route not ended with ':'"},
      {"<@a:>", "source route without an address"},
      {"<@a:joe>", "source route before a local name"},
      {"<@a@b:u@d>", "source route not ended with ':'"},
      {"<@:u@d>", "missing domain after '@'"},
      {"<,u@d>", "malformed source route"},
      // Domain literals.
      {"a@[1.2 .3.4]", "space inside a domain literal"},
      {"a@[1.2.3.\\4]", "backslash in a domain literal"},
      {"a@[1[2]", "'[' inside a domain literal"},
      // What SMTP cannot carry, refused here rather than at the first relay.
      {"a@b_c.example", "invalid character in domain"},
      {"a@[192.0.2.256]", "malformed IPv4 address literal"},
      {"a@[010.0.0.1]", "malformed IPv4 address literal"},
      {"a@-b.example", "domain label starts with a hyphen"},
      {"\"a\tb\"@c", "control character in address"},
      {std::string(65, 'a') + "@b", "local part longer than 64 octets"},
      {std::string(65, 'a'), "local part longer than 64 octets"},
      {"a@" + std::string(63, 'b') + "." + std::string(63, 'c') + "." + std::string(63, 'd') + "." +
           std::string(63, 'e'),
       "address longer than 254 octets"},
      {"j\xF6rg@example.org", "malformed UTF-8 in address"},
      {"\"j\xF6rg\"@example.org", "malformed UTF-8 in address"},
      {"\xC2\x85@example.org", "control character in address"},
  }));
  INFO("value: " << r.value);
  CHECK_THAT(refusal(r.value), Catch::StartsWith(r.reason));
}

TEST_CASE("refuses NUL, CR, LF and control characters outside a fold", "[address_list]") {
  const Refusal r = GENERATE(values<Refusal>({
      {"a\0b@c"s, "NUL octet at octet 2"},
      {"a@b\0"s, "NUL octet"},
      {"(\0) a@b"s, "NUL octet"},
      {"\"a\0\"@b"s, "NUL octet"},
      {"a@b,\r\nc@d", "CR or LF that is not part of a folded line at octet 5"},
      {"a@b,\nc@d", "CR or LF that is not part of a folded line"},
      {"a@b,\r c@d", "CR or LF that is not part of a folded line"},
      {"a@b\rc", "CR or LF that is not part of a folded line"},
      {"a@b\r", "CR or LF that is not part of a folded line"},
      {"a@b\r\n\r\n", "CR or LF that is not part of a folded line"},
      {"a@b\n\n", "CR or LF that is not part of a folded line"},
      {"\"a\r\nb\"@c", "CR or LF that is not part of a folded line"},
      {"(a\nb) c@d", "CR or LF that is not part of a folded line"},
      {"\"a\\\r\n b\"@c", "backslash before a line end"},
      {"a\x01@b", "control character"},
      {"a@b\x7F", "control character"},
      {"(\x1B[31m) a@b", "control character"},
      {"\"\\\x01\"@b", "control character"},
      {"a@[1.2.3.4\x01]", "control character"},
      {"Joe\x0B <a@b>", "control character"},
  }));
  INFO("value: " << r.value);
  CHECK_THAT(refusal(r.value), Catch::StartsWith(r.reason));
}

TEST_CASE("a refusal is a permanent data error quoting only a short clean excerpt",
          "[address_list]") {
  const Result<Addresses> parsed =
      parse_address_list("ok@example.org, bad\x1B[2J\xFF@" + std::string(200, 'x'));
  REQUIRE(!parsed.ok());
  CHECK(!parsed.error().is_temporary());
  CHECK(parsed.error().exit_code() == EX_DATAERR);
  CHECK(parsed.error().status() == "5.1.3");
  CHECK(parsed.error().text() == "control character at octet 20: \"?[2J?@xxxxxxxxxxxxxx...\"");
  CHECK(parsed.error().text().find('\x1B') == std::string::npos);

  const std::string text = refusal("(" + std::string(1000, 'z'));
  CHECK(text == "unbalanced '(' at octet 1: \"(zzzzzzzzzzzzzzzzzzz...\"");
}

TEST_CASE("bounds the input", "[address_list]") {
  // The largest value allowed parses; one octet more is refused without being read.
  std::string largest;
  while (largest.size() + 10 <= limits::kHeaderField) {
    largest += "a@example,";
  }
  largest.append(limits::kHeaderField - largest.size(), ' ');
  const Result<Addresses> parsed = parse_address_list(largest);
  REQUIRE(parsed.ok());
  CHECK(parsed->size() == limits::kHeaderField / 10);
  CHECK(refusal(largest + " ") == "address list longer than 65536 octets");

  // Long runs of anything stay linear (a quadratic parser would take minutes here).
  CHECK(refusal(std::string(limits::kHeaderField, '(')).starts_with("comments nested"));
  CHECK(refusal(std::string(limits::kHeaderField, '"')).starts_with("display name without"));
  CHECK(refusal(std::string(limits::kHeaderField, '<')).starts_with("expected '>'"));
  CHECK(refusal(std::string(limits::kHeaderField, ',')).empty());
  CHECK(refusal(std::string(limits::kHeaderField, '.')).starts_with("local part starts"));
  CHECK(refusal(std::string(limits::kHeaderField, 'a')).starts_with("local part longer"));
  CHECK(refusal("g:" + std::string(limits::kHeaderField - 2, ',')).starts_with("group not"));
  std::string words;
  while (words.size() + 6 <= limits::kHeaderField) {
    words += "=?a?b?";
  }
  CHECK(refusal(words).starts_with("local part longer"));
}

TEST_CASE("the output reads back as the same list", "[address_list]") {
  const std::string value =
      "Joe <\"a b\"@x>, \"q\".r@[192.0.2.1], staff: joe, \"x@y\";, "
      "<@route:\xC3\xA9@m\xC3\xBCnchen.example>, \"\"@e, \"a\\\\b\"@c";
  const Addresses first = parse(value);
  REQUIRE(first.size() == 7);
  std::string joined;
  for (const std::string& address : first) {
    joined += (joined.empty() ? "" : ", ") + address;
  }
  CHECK(parse(joined) == first);
}
