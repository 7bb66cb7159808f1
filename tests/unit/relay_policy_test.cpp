// Client networks and the RCPT decision.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "mta/relay_policy.h"

using mailwright::mta::address_in_networks;
using mailwright::mta::Network;
using mailwright::mta::parse_network;

namespace {

sockaddr_storage v4(const char* text) {
  sockaddr_storage ss{};
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  sin->sin_family = AF_INET;
  REQUIRE(inet_pton(AF_INET, text, &sin->sin_addr) == 1);
  return ss;
}

sockaddr_storage v6(const char* text) {
  sockaddr_storage ss{};
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  sin6->sin6_family = AF_INET6;
  REQUIRE(inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1);
  return ss;
}

bool in(const sockaddr_storage& ss, const std::vector<Network>& nets) {
  return address_in_networks(reinterpret_cast<const sockaddr*>(&ss), nets);
}

}  // namespace

TEST_CASE("networks parse strictly") {
  for (const char* good : {"127.0.0.0/8", "10.1.2.3", "0.0.0.0/0", "::1", "2001:db8::/32",
                           "192.168.1.128/25"}) {
    INFO(good);
    CHECK(parse_network(good));
  }
  for (const char* bad : {"", "127.0.0.1/8", "10.0.0.0/33", "::/129", "010.0.0.1", "10.0.0",
                          "10.0.0.0/", "10.0.0.0/a", "host.example", "10.0.0.0/8x",
                          "2001:db8::1/32", "1.2.3.4/0008"}) {
    INFO(bad);
    CHECK_FALSE(parse_network(bad));
  }
}

TEST_CASE("addresses match networks, IPv4-mapped IPv6 included") {
  std::vector<Network> nets{*parse_network("127.0.0.0/8"), *parse_network("192.0.2.128/25"),
                            *parse_network("2001:db8:1::/48")};
  CHECK(in(v4("127.1.2.3"), nets));
  CHECK(in(v4("192.0.2.200"), nets));
  CHECK_FALSE(in(v4("192.0.2.127"), nets));
  CHECK_FALSE(in(v4("128.0.0.1"), nets));
  CHECK(in(v6("::ffff:127.0.0.1"), nets));
  CHECK(in(v6("2001:db8:1:ffff::9"), nets));
  CHECK_FALSE(in(v6("2001:db8:2::1"), nets));
  CHECK_FALSE(in(v6("::1"), nets));
  CHECK_FALSE(in(v4("10.0.0.1"), {}));
}

TEST_CASE("local domains compare without case and with a trailing dot") {
  std::vector<std::string> domains{"example.org", "localhost"};
  CHECK(mailwright::mta::is_local_domain("EXAMPLE.org", domains));
  CHECK(mailwright::mta::is_local_domain("example.org.", domains));
  CHECK_FALSE(mailwright::mta::is_local_domain("sub.example.org", domains));
  CHECK_FALSE(mailwright::mta::is_local_domain("example.org.evil", domains));
}

TEST_CASE("a recipient that cannot be checked now is a temporary failure") {
  std::vector<std::string> domains{"example.org"};
  mailwright::mta::RecipientContext rc;
  rc.local_domains = &domains;
  rc.local_name_exists = [](std::string_view) { return std::optional<bool>(); };
  mailwright::Path path;
  path.mailbox.local_part = "alice";
  path.mailbox.domain = "example.org";
  auto v = mailwright::mta::decide_recipient(path, rc);
  CHECK_FALSE(v.accepted);
  CHECK(v.code == 451);
  path.mailbox.local_part = "PostMaster";
  v = mailwright::mta::decide_recipient(path, rc);
  CHECK(v.accepted);
  CHECK(v.local_name == "postmaster");
}
