// The MX resolver: ordering, null MX, hosts files, addresses -- and the resolver itself on a
// real event loop, answered by a tiny DNS server in this process (UDP on 127.0.0.1).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "libmail/event_loop.h"
#include "libmail/unique_fd.h"
#include "mta/mx_resolver.h"

using mailwright::EventBase;
using mailwright::make_event_base;
using mailwright::UniqueFd;
using namespace mailwright::mta;

namespace {

sockaddr_storage v4(const char* text, std::uint16_t port = 0) {
  sockaddr_storage ss{};
  REQUIRE(parse_ip_address(text, port, ss));
  REQUIRE(ss.ss_family == AF_INET);
  return ss;
}

sockaddr_storage v6(const char* text, std::uint16_t port = 0) {
  sockaddr_storage ss{};
  REQUIRE(parse_ip_address(text, port, ss));
  REQUIRE(ss.ss_family == AF_INET6);
  return ss;
}

std::vector<std::string> names(const std::vector<MxRecord>& records) {
  std::vector<std::string> out;
  for (const auto& r : records) out.push_back(r.host);
  return out;
}

std::vector<std::string> texts(const std::vector<sockaddr_storage>& addresses) {
  std::vector<std::string> out;
  for (const auto& a : addresses) out.push_back(address_to_string(a));
  return out;
}

std::uint16_t port_of(const sockaddr_storage& ss) {
  return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in&>(ss).sin_port
                                       : reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
}

}  // namespace

TEST_CASE("null MX is a single 0 . record and nothing else") {
  CHECK(is_null_mx({{".", 0}}));
  CHECK(is_null_mx({{"", 0}}));  // c-ares gives the root as ""
  CHECK_FALSE(is_null_mx({}));
  CHECK_FALSE(is_null_mx({{".", 10}}));
  CHECK_FALSE(is_null_mx({{".", 0}, {"mx.example", 10}}));
  CHECK_FALSE(is_null_mx({{"mx.example", 0}}));
}

TEST_CASE("host names: LDH labels, lengths, normalization") {
  CHECK(is_host_name("mx1.example.org"));
  CHECK(is_host_name("a"));
  CHECK(is_host_name("_dmarc.x-y.example"));
  CHECK(is_host_name(std::string(63, 'a') + ".example"));
  CHECK_FALSE(is_host_name(std::string(64, 'a') + ".example"));
  CHECK_FALSE(is_host_name(""));
  CHECK_FALSE(is_host_name("."));
  CHECK_FALSE(is_host_name("a..b"));
  CHECK_FALSE(is_host_name(".a"));
  CHECK_FALSE(is_host_name("a.b."));  // normalize first
  CHECK_FALSE(is_host_name("[192.0.2.1]"));
  CHECK_FALSE(is_host_name("bad name.example"));
  CHECK_FALSE(is_host_name("b\\046d.example"));
  CHECK_FALSE(is_host_name("bücher.example"));  // U-labels: the caller converts (IDNA)
  std::string long_name;
  while (long_name.size() < 250) long_name += "abcdefghi.";
  long_name += "abcd";
  CHECK_FALSE(is_host_name(long_name));
  CHECK(normalize_host_name("MX1.Example.ORG.") == "mx1.example.org");
  CHECK(normalize_host_name(".") == "");
}

TEST_CASE("MX records are ordered by preference, deduplicated, cleaned and capped") {
  std::mt19937_64 rng(42);
  auto ordered = order_mx({{"c.example", 30}, {"A.example.", 10}, {"b.example", 20}}, rng, 10);
  CHECK(names(ordered) == std::vector<std::string>{"a.example", "b.example", "c.example"});
  CHECK(ordered[0].preference == 10);

  SECTION("a name listed twice is tried once, at its best preference") {
    ordered = order_mx({{"b.example", 5}, {"a.example", 10}, {"B.EXAMPLE.", 1}}, rng, 10);
    CHECK(names(ordered) == std::vector<std::string>{"b.example", "a.example"});
    CHECK(ordered[0].preference == 1);
  }
  SECTION("the root and names that are no host names are dropped") {
    ordered = order_mx({{".", 10}, {"", 0}, {"bad name", 5}, {"ok.example", 20}}, rng, 10);
    CHECK(names(ordered) == std::vector<std::string>{"ok.example"});
  }
  SECTION("the cap keeps the most preferred") {
    std::vector<MxRecord> many;
    for (unsigned i = 0; i < 20; ++i) many.push_back({"mx" + std::to_string(i) + ".example", 100 - i});
    ordered = order_mx(many, rng, 3);
    CHECK(names(ordered) == std::vector<std::string>{"mx19.example", "mx18.example", "mx17.example"});
  }
  SECTION("an empty set stays empty") { CHECK(order_mx({}, rng, 10).empty()); }
}

TEST_CASE("equal preferences are shuffled, and only among themselves") {
  std::mt19937_64 rng(7);
  std::set<std::vector<std::string>> seen;
  for (int run = 0; run < 200; ++run) {
    auto ordered = order_mx(
        {{"z.example", 20}, {"a.example", 10}, {"b.example", 10}, {"c.example", 10}}, rng, 10);
    REQUIRE(ordered.size() == 4);
    CHECK(ordered.back().host == "z.example");
    seen.insert(names(ordered));
  }
  CHECK(seen.size() == 6);  // every order of a, b, c turned up
}

TEST_CASE("addresses: family order, duplicates, cap") {
  const std::vector<sockaddr_storage> mixed{v6("2001:db8::1"), v4("192.0.2.1"), v6("2001:db8::2"),
                                            v4("192.0.2.2"), v4("192.0.2.1")};
  CHECK(texts(order_addresses(mixed, AddressOrder::kIpv4First, 10)) ==
        std::vector<std::string>{"192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"});
  CHECK(texts(order_addresses(mixed, AddressOrder::kIpv6First, 10)) ==
        std::vector<std::string>{"2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2"});
  CHECK(texts(order_addresses(mixed, AddressOrder::kIpv4First, 3)) ==
        std::vector<std::string>{"192.0.2.1", "192.0.2.2", "2001:db8::1"});
  CHECK(order_addresses({}, AddressOrder::kIpv4First, 3).empty());
}

TEST_CASE("an address already tried under a better MX is not tried again") {
  std::vector<MxHost> hosts{
      {"a.example", 10, {v4("192.0.2.1", 25)}, false},
      {"b.example", 20, {v4("192.0.2.1", 25), v4("192.0.2.2", 25)}, false},
      {"c.example", 30, {v4("192.0.2.2", 25)}, false},
  };
  drop_repeated_addresses(hosts);
  REQUIRE(hosts.size() == 2);
  CHECK(hosts[0].name == "a.example");
  CHECK(hosts[1].name == "b.example");
  CHECK(texts(hosts[1].addresses) == std::vector<std::string>{"192.0.2.2"});
}

TEST_CASE("IP addresses in text") {
  sockaddr_storage ss{};
  CHECK(parse_ip_address("192.0.2.7", 2525, ss));
  CHECK(ss.ss_family == AF_INET);
  CHECK(port_of(ss) == 2525);
  CHECK(parse_ip_address("2001:DB8::7", 25, ss));
  CHECK(address_to_string(ss) == "2001:db8::7");
  for (const char* bad : {"", "192.0.2", "192.0.2.256", "[192.0.2.1]", "host.example",
                          "fe80::1%eth0", "1.2.3.4 "}) {
    INFO(bad);
    CHECK_FALSE(parse_ip_address(bad, 25, ss));
  }
}

TEST_CASE("hosts files") {
  const auto table = HostsTable::parse(
      "# comment line\n"
      "127.0.0.1\tlocalhost\n"
      "192.0.2.10  Relay.Example relay   # trailing comment\n"
      "2001:db8::10 relay.example\r\n"
      "192.0.2.10 relay.example\n"  // a repeat
      "fe80::1%eth0 linklocal.example\n"
      "not-an-address bogus.example\n"
      "192.0.2.11\n"
      "   \n"
      "192.0.2.12 last.example");
  CHECK(texts(table.lookup("relay.example")) ==
        std::vector<std::string>{"192.0.2.10", "2001:db8::10"});
  CHECK(texts(table.lookup("RELAY.example.")) ==
        std::vector<std::string>{"192.0.2.10", "2001:db8::10"});
  CHECK(texts(table.lookup("relay")) == std::vector<std::string>{"192.0.2.10"});
  CHECK(texts(table.lookup("last.example")) == std::vector<std::string>{"192.0.2.12"});
  CHECK(table.lookup("linklocal.example").empty());
  CHECK(table.lookup("bogus.example").empty());
  CHECK(table.lookup("nowhere.example").empty());
}

TEST_CASE("failures become errors with the right class and status code") {
  MxResult r;
  r.error_text = "why";
  r.status = MxResult::kNoSuchDomain;
  CHECK(mx_error(r).status() == "5.1.2");
  CHECK_FALSE(mx_error(r).is_temporary());
  r.status = MxResult::kNullMx;
  CHECK(mx_error(r).status() == "5.1.10");
  r.status = MxResult::kNoAddress;
  CHECK(mx_error(r).status() == "5.4.4");
  r.status = MxResult::kTemporary;
  CHECK(mx_error(r).status() == "4.4.3");
  CHECK(mx_error(r).is_temporary());
  CHECK(mx_error(r).text() == "why");
}

// --- The resolver on an event loop ------------------------------------------------------------

namespace {

// A DNS server for tests: answers UDP queries on 127.0.0.1 from a table, on the same event
// loop as the resolver. Enough of RFC 1035 for A, AAAA and MX: no compression in questions,
// answers point at the question with a compression pointer.
class FakeDns {
 public:
  struct Answer {
    int rcode = 0;                    // 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED
    std::vector<std::string> rdata;   // raw RDATA of each answer record
    bool drop = false;                // never answer: the client times out
  };

  explicit FakeDns(event_base* base) {
    fd_ = UniqueFd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    REQUIRE(fd_);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
    socklen_t len = sizeof sin;
    REQUIRE(::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&sin), &len) == 0);
    port_ = ntohs(sin.sin_port);
    event_.reset(event_new(base, fd_.get(), EV_READ | EV_PERSIST, &FakeDns::on_read, this));
    event_add(event_.get(), nullptr);
  }

  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

  // Unlisted (name, type) pairs: NXDOMAIN when the name has nothing at all, else NODATA.
  void set(const std::string& name, int type, Answer answer) { table_[{name, type}] = answer; }
  void mx(const std::string& name, std::vector<std::pair<unsigned, std::string>> exchangers) {
    Answer a;
    for (auto& [pref, host] : exchangers) {
      std::string rd;
      rd += static_cast<char>(pref >> 8);
      rd += static_cast<char>(pref & 0xff);
      rd += encode_name(host);
      a.rdata.push_back(rd);
    }
    set(name, 15, a);
  }
  void a(const std::string& name, std::vector<const char*> addresses) {
    Answer ans;
    for (const char* text : addresses) {
      in_addr addr{};
      REQUIRE(inet_pton(AF_INET, text, &addr) == 1);
      ans.rdata.emplace_back(reinterpret_cast<const char*>(&addr), 4);
    }
    set(name, 1, ans);
  }
  void aaaa(const std::string& name, std::vector<const char*> addresses) {
    Answer ans;
    for (const char* text : addresses) {
      in6_addr addr{};
      REQUIRE(inet_pton(AF_INET6, text, &addr) == 1);
      ans.rdata.emplace_back(reinterpret_cast<const char*>(&addr), 16);
    }
    set(name, 28, ans);
  }
  int queries(const std::string& name, int type) const {
    auto it = counts_.find({name, type});
    return it == counts_.end() ? 0 : it->second;
  }
  int total_queries() const {
    int n = 0;
    for (const auto& [key, count] : counts_) n += count;
    return n;
  }

 private:
  static std::string encode_name(const std::string& name) {
    std::string out;
    std::size_t start = 0;
    while (start < name.size()) {
      std::size_t dot = name.find('.', start);
      if (dot == std::string::npos) dot = name.size();
      out += static_cast<char>(dot - start);
      out += name.substr(start, dot - start);
      start = dot + 1;
    }
    return out + '\0';
  }

  static void on_read(evutil_socket_t fd, short, void* arg) {
    auto* self = static_cast<FakeDns*>(arg);
    unsigned char buf[1500];
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof peer;
    const ssize_t n = ::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&peer),
                                 &peer_len);
    if (n < 12) return;
    // The question: labels up to the root, then type and class.
    std::size_t pos = 12;
    std::string name;
    while (pos < static_cast<std::size_t>(n) && buf[pos] != 0) {
      const std::size_t len = buf[pos];
      if (!name.empty()) name += '.';
      name.append(reinterpret_cast<const char*>(buf + pos + 1), len);
      pos += 1 + len;
    }
    if (pos + 5 > static_cast<std::size_t>(n)) return;
    const int type = (buf[pos + 1] << 8) | buf[pos + 2];
    const std::size_t question_end = pos + 5;
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    ++self->counts_[{name, type}];

    Answer answer;
    if (auto it = self->table_.find({name, type}); it != self->table_.end()) {
      answer = it->second;
    } else {
      bool known = false;
      for (const auto& [key, value] : self->table_) known = known || key.first == name;
      answer.rcode = known ? 0 : 3;
    }
    if (answer.drop) return;
    std::string reply(reinterpret_cast<const char*>(buf), question_end);
    reply[2] = static_cast<char>(0x84 | (buf[2] & 0x01));  // QR, AA, RD copied
    reply[3] = static_cast<char>(0x80 | answer.rcode);     // RA
    const std::size_t count = answer.rcode == 0 ? answer.rdata.size() : 0;
    reply[6] = static_cast<char>(count >> 8);
    reply[7] = static_cast<char>(count & 0xff);
    reply[8] = reply[9] = reply[10] = reply[11] = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const std::string& rd = answer.rdata[i];
      const char rr[] = {'\xc0', '\x0c', static_cast<char>(type >> 8),
                         static_cast<char>(type & 0xff), 0, 1, 0, 0, 0, 60,
                         static_cast<char>(rd.size() >> 8), static_cast<char>(rd.size() & 0xff)};
      reply.append(rr, sizeof rr);
      reply += rd;
    }
    ::sendto(fd, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&peer), peer_len);
  }

  UniqueFd fd_;
  std::uint16_t port_ = 0;
  mailwright::Event event_;
  std::map<std::pair<std::string, int>, Answer> table_;
  std::map<std::pair<std::string, int>, int> counts_;
};

struct Fixture {
  EventBase base = make_event_base();
  FakeDns dns{base.get()};
  ResolverConfig config;
  std::unique_ptr<MxResolver> resolver;

  Fixture() {
    config.servers = {dns.server()};
    config.hosts_file.clear();
    config.timeout = std::chrono::milliseconds(200);
    config.tries = 1;
  }

  MxResolver& get() {
    if (!resolver) {
      auto created = MxResolver::create(base.get(), config);
      REQUIRE(created);
      resolver = std::move(*created);
    }
    return *resolver;
  }

  // Runs the loop until the resolver has nothing pending (bounded: a hung test fails).
  void run() {
    timeval limit{10, 0};
    event_base_loopexit(base.get(), &limit);
    while (get().pending() > 0) {
      if (event_base_loop(base.get(), EVLOOP_ONCE) != 0) break;
      if (event_base_got_exit(base.get())) break;
    }
    REQUIRE(get().pending() == 0);
  }

  MxResult mx(const std::string& domain) {
    std::optional<MxResult> got;
    get().resolve_mx(domain, [&](MxResult r) { got = std::move(r); });
    CHECK_FALSE(got);  // never inside resolve_mx
    run();
    REQUIRE(got);
    return *got;
  }

  MxResult host(const std::string& name, std::uint16_t port) {
    std::optional<MxResult> got;
    get().resolve_host(name, port, [&](MxResult r) { got = std::move(r); });
    CHECK_FALSE(got);
    run();
    REQUIRE(got);
    return *got;
  }
};

std::string describe(const MxResult& r) {
  std::string out = to_string(r.status);
  for (const auto& h : r.hosts) {
    out += " | " + std::to_string(h.preference) + " " + h.name;
    for (const auto& a : h.addresses) out += " " + address_to_string(a);
    if (h.implicit) out += " (implicit)";
  }
  return out;
}

}  // namespace

TEST_CASE("resolver: MX hosts in order, with IPv4 and IPv6 addresses") {
  Fixture f;
  f.dns.mx("example.test", {{20, "mx2.example.test"}, {10, "mx1.example.test"}});
  f.dns.a("mx1.example.test", {"192.0.2.1", "192.0.2.11"});
  f.dns.aaaa("mx1.example.test", {"2001:db8::1"});
  f.dns.a("mx2.example.test", {"192.0.2.2"});
  const MxResult r = f.mx("Example.TEST.");
  INFO(describe(r) << " / " << r.error_text);
  REQUIRE(r.status == MxResult::kOk);
  REQUIRE(r.hosts.size() == 2);
  CHECK(r.hosts[0].name == "mx1.example.test");
  CHECK(r.hosts[0].preference == 10);
  CHECK_FALSE(r.hosts[0].implicit);
  CHECK(texts(r.hosts[0].addresses) ==
        std::vector<std::string>{"192.0.2.1", "192.0.2.11", "2001:db8::1"});
  CHECK(port_of(r.hosts[0].addresses[0]) == 25);
  CHECK(r.hosts[1].name == "mx2.example.test");
  CHECK(texts(r.hosts[1].addresses) == std::vector<std::string>{"192.0.2.2"});
  CHECK(r.error_text.empty());
}

TEST_CASE("resolver: IPv6 first when configured") {
  Fixture f;
  f.config.address_order = AddressOrder::kIpv6First;
  f.dns.mx("example.test", {{10, "mx.example.test"}});
  f.dns.a("mx.example.test", {"192.0.2.1"});
  f.dns.aaaa("mx.example.test", {"2001:db8::1"});
  const MxResult r = f.mx("example.test");
  REQUIRE(r.status == MxResult::kOk);
  CHECK(texts(r.hosts[0].addresses) == std::vector<std::string>{"2001:db8::1", "192.0.2.1"});
}

TEST_CASE("resolver: no MX means the domain itself (implicit MX)") {
  Fixture f;
  f.dns.a("plain.test", {"192.0.2.5"});
  const MxResult r = f.mx("plain.test");
  INFO(describe(r) << " / " << r.error_text);
  REQUIRE(r.status == MxResult::kOk);
  REQUIRE(r.hosts.size() == 1);
  CHECK(r.hosts[0].name == "plain.test");
  CHECK(r.hosts[0].implicit);
  CHECK(r.hosts[0].preference == 0);
  CHECK(texts(r.hosts[0].addresses) == std::vector<std::string>{"192.0.2.5"});
  CHECK(f.dns.queries("plain.test", 15) == 1);
}

TEST_CASE("resolver: NXDOMAIN, null MX, and names that cannot be asked") {
  Fixture f;
  f.dns.mx("nullmx.test", {{0, ""}});
  MxResult r = f.mx("nowhere.test");
  CHECK(r.status == MxResult::kNoSuchDomain);
  CHECK(r.error_text.find("nowhere.test") != std::string::npos);
  r = f.mx("nullmx.test");
  CHECK(r.status == MxResult::kNullMx);
  CHECK(r.hosts.empty());
  CHECK(f.dns.total_queries() == 2);  // no address lookups after a null MX
  r = f.mx("[192.0.2.1]");
  CHECK(r.status == MxResult::kNoSuchDomain);
  r = f.mx("");
  CHECK(r.status == MxResult::kNoSuchDomain);
  CHECK(f.dns.total_queries() == 2);
}

TEST_CASE("resolver: exchangers without addresses") {
  Fixture f;
  SECTION("all names NXDOMAIN or NODATA: permanent") {
    f.dns.mx("dead.test", {{10, "gone.dead.test"}, {20, "noaddr.dead.test"}});
    f.dns.set("noaddr.dead.test", 16, {});  // the name exists (a TXT record), no A/AAAA
    const MxResult r = f.mx("dead.test");
    INFO(r.error_text);
    CHECK(r.status == MxResult::kNoAddress);
    CHECK(r.error_text.find("gone.dead.test") != std::string::npos);
  }
  SECTION("one lookup failing temporarily makes it temporary") {
    f.dns.mx("flaky.test", {{10, "gone.flaky.test"}, {20, "broken.flaky.test"}});
    f.dns.set("broken.flaky.test", 1, {2, {}, false});  // SERVFAIL for A
    const MxResult r = f.mx("flaky.test");
    INFO(r.error_text);
    CHECK(r.status == MxResult::kTemporary);
  }
  SECTION("one good exchanger is enough; the failures are noted") {
    f.dns.mx("half.test", {{10, "broken.half.test"}, {20, "good.half.test"}});
    f.dns.set("broken.half.test", 1, {2, {}, false});
    f.dns.set("broken.half.test", 28, {2, {}, false});
    f.dns.a("good.half.test", {"192.0.2.20"});
    const MxResult r = f.mx("half.test");
    REQUIRE(r.status == MxResult::kOk);
    REQUIRE(r.hosts.size() == 1);
    CHECK(r.hosts[0].name == "good.half.test");
    CHECK(r.error_text.find("broken.half.test") != std::string::npos);
  }
  SECTION("implicit MX whose domain has no address") {
    f.dns.set("bare.test", 16, {});
    CHECK(f.mx("bare.test").status == MxResult::kNoAddress);
  }
  SECTION("MX set of only unusable names") {
    f.dns.mx("odd.test", {{10, ""}, {20, ""}});
    CHECK(f.mx("odd.test").status == MxResult::kNoAddress);
  }
}

TEST_CASE("resolver: SERVFAIL and timeouts are temporary, and bounded") {
  Fixture f;
  f.dns.set("servfail.test", 15, {2, {}, false});
  f.dns.set("refused.test", 15, {5, {}, false});
  f.dns.set("silent.test", 15, {0, {}, true});
  CHECK(f.mx("servfail.test").status == MxResult::kTemporary);
  CHECK(f.mx("refused.test").status == MxResult::kTemporary);
  const auto start = std::chrono::steady_clock::now();
  const MxResult r = f.mx("silent.test");
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(r.status == MxResult::kTemporary);
  CHECK(r.error_text.find("timed out") != std::string::npos);
  CHECK(waited >= std::chrono::milliseconds(150));
  CHECK(waited < std::chrono::seconds(3));
}

TEST_CASE("resolver: retries a lost query (tries)") {
  Fixture f;
  f.config.tries = 3;
  f.dns.set("silent.test", 15, {0, {}, true});
  CHECK(f.mx("silent.test").status == MxResult::kTemporary);
  CHECK(f.dns.queries("silent.test", 15) == 3);
}

TEST_CASE("resolver: equal preferences come out in both orders") {
  Fixture f;
  f.dns.mx("eq.test", {{10, "a.eq.test"}, {10, "b.eq.test"}});
  f.dns.a("a.eq.test", {"192.0.2.1"});
  f.dns.a("b.eq.test", {"192.0.2.2"});
  std::set<std::string> firsts;
  for (int i = 0; i < 64 && firsts.size() < 2; ++i) {
    const MxResult r = f.mx("eq.test");
    REQUIRE(r.hosts.size() == 2);
    firsts.insert(r.hosts[0].name);
  }
  CHECK(firsts.size() == 2);
}

TEST_CASE("resolver: many lookups at once") {
  Fixture f;
  for (int i = 0; i < 100; ++i) {
    const std::string d = "d" + std::to_string(i) + ".test";
    f.dns.mx(d, {{10, "mx." + d}});
    f.dns.a("mx." + d, {"192.0.2.1"});
  }
  std::vector<std::optional<MxResult>> got(100);
  for (int i = 0; i < 100; ++i) {
    f.get().resolve_mx("d" + std::to_string(i) + ".test",
                       [&got, i](MxResult r) { got[static_cast<std::size_t>(i)] = std::move(r); });
  }
  CHECK(f.get().pending() == 100);
  f.run();
  for (int i = 0; i < 100; ++i) {
    REQUIRE(got[static_cast<std::size_t>(i)]);
    CHECK(got[static_cast<std::size_t>(i)]->status == MxResult::kOk);
    CHECK(got[static_cast<std::size_t>(i)]->hosts.at(0).name ==
          "mx.d" + std::to_string(i) + ".test");
  }
}

TEST_CASE("resolver: hosts file first, for addresses only") {
  Fixture f;
  char path[] = "/tmp/mw-hosts-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text = "192.0.2.99 mx.files.test relay\n";
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::close(fd);
  f.config.hosts_file = path;
  f.dns.mx("files.test", {{10, "mx.files.test"}});
  f.dns.a("mx.files.test", {"192.0.2.1"});  // the file wins
  MxResult r = f.mx("files.test");
  REQUIRE(r.status == MxResult::kOk);
  CHECK(texts(r.hosts[0].addresses) == std::vector<std::string>{"192.0.2.99"});
  CHECK(f.dns.queries("mx.files.test", 1) == 0);
  r = f.host("relay", 2525);
  REQUIRE(r.status == MxResult::kOk);
  CHECK(texts(r.hosts[0].addresses) == std::vector<std::string>{"192.0.2.99"});
  CHECK(port_of(r.hosts[0].addresses[0]) == 2525);
  CHECK(f.dns.total_queries() == 1);  // only the MX query went to DNS
  // A changed file is read again.
  const std::string text2 = "192.0.2.98 relay # changed\n";
  REQUIRE(::truncate(path, 0) == 0);
  FILE* out = std::fopen(path, "w");
  REQUIRE(out);
  std::fputs(text2.c_str(), out);
  std::fclose(out);
  r = f.host("relay", 25);
  REQUIRE(r.status == MxResult::kOk);
  CHECK(texts(r.hosts[0].addresses) == std::vector<std::string>{"192.0.2.98"});
  ::unlink(path);
  // A hosts file that is gone: DNS answers.
  r = f.host("mx.files.test", 25);
  REQUIRE(r.status == MxResult::kOk);
  CHECK(texts(r.hosts[0].addresses) == std::vector<std::string>{"192.0.2.1"});
}

TEST_CASE("resolver: resolve_host") {
  Fixture f;
  f.dns.a("smart.test", {"192.0.2.30"});
  f.dns.aaaa("smart.test", {"2001:db8::30"});
  f.dns.set("v6only.test", 28, {0, {std::string(16, '\x01')}, false});
  MxResult r = f.host("smart.test", 587);
  REQUIRE(r.status == MxResult::kOk);
  REQUIRE(r.hosts.size() == 1);
  CHECK(r.hosts[0].name == "smart.test");
  CHECK_FALSE(r.hosts[0].implicit);
  CHECK(texts(r.hosts[0].addresses) == std::vector<std::string>{"192.0.2.30", "2001:db8::30"});
  CHECK(port_of(r.hosts[0].addresses[1]) == 587);
  CHECK(f.dns.queries("smart.test", 15) == 0);  // no MX lookup
  r = f.host("v6only.test", 25);
  REQUIRE(r.status == MxResult::kOk);
  CHECK(texts(r.hosts[0].addresses) == std::vector<std::string>{"101:101:101:101:101:101:101:101"});
  CHECK(f.host("missing.test", 25).status == MxResult::kNoSuchDomain);
  f.dns.set("txtonly.test", 16, {});
  CHECK(f.host("txtonly.test", 25).status == MxResult::kNoAddress);
  r = f.host("192.0.2.40", 2525);  // an address is its own answer
  REQUIRE(r.status == MxResult::kOk);
  CHECK(texts(r.hosts[0].addresses) == std::vector<std::string>{"192.0.2.40"});
  CHECK(port_of(r.hosts[0].addresses[0]) == 2525);
  CHECK(f.host("bad host", 25).status == MxResult::kNoSuchDomain);
}

TEST_CASE("resolver: a callback may start lookups and may destroy the resolver") {
  Fixture f;
  f.dns.mx("one.test", {{10, "mx.one.test"}});
  f.dns.a("mx.one.test", {"192.0.2.1"});
  f.dns.a("two.test", {"192.0.2.2"});
  std::optional<MxResult> second;
  f.get().resolve_mx("one.test", [&](MxResult) {
    f.get().resolve_mx("two.test", [&](MxResult r) { second = std::move(r); });
  });
  f.run();
  REQUIRE(second);
  CHECK(second->status == MxResult::kOk);

  bool third_ran = false;
  f.get().resolve_host("192.0.2.3", 25, [&](MxResult) { f.resolver.reset(); });
  f.get().resolve_host("192.0.2.4", 25, [&](MxResult) { third_ran = true; });
  timeval limit{5, 0};
  event_base_loopexit(f.base.get(), &limit);
  while (f.resolver && event_base_loop(f.base.get(), EVLOOP_ONCE) == 0) {
  }
  CHECK_FALSE(f.resolver);
  CHECK_FALSE(third_ran);  // dropped with the resolver
}

TEST_CASE("resolver: destroyed with lookups pending, no callback runs") {
  Fixture f;
  f.dns.set("silent.test", 15, {0, {}, true});
  bool ran = false;
  // Sent at once (ares_query writes the query), answered only once the loop runs.
  f.get().resolve_mx("silent.test", [&](MxResult) { ran = true; });
  f.get().resolve_mx("also.test", [&](MxResult) { ran = true; });
  // Finished at once, its callback waiting for the loop.
  f.get().resolve_host("192.0.2.1", 25, [&](MxResult) { ran = true; });
  CHECK(f.get().pending() == 3);
  f.resolver.reset();
  timeval limit{0, 300000};
  event_base_loopexit(f.base.get(), &limit);
  event_base_dispatch(f.base.get());
  CHECK_FALSE(ran);
  CHECK(f.dns.queries("also.test", 15) == 1);  // it was asked, and answered to nobody
}

TEST_CASE("resolver: bad configurations are refused") {
  EventBase base = make_event_base();
  ResolverConfig config;
  config.servers = {"127.0.0.1:53,10.0.0.1"};
  CHECK_FALSE(MxResolver::create(base.get(), config));
  config.servers = {"nonsense"};
  CHECK_FALSE(MxResolver::create(base.get(), config));
  config.servers = {"127.0.0.1:5353", "[::1]:5353"};
  CHECK(MxResolver::create(base.get(), config));
  config.tries = 0;
  auto bad = MxResolver::create(base.get(), config);
  REQUIRE_FALSE(bad);
  CHECK_FALSE(bad.error().is_temporary());
  config.tries = 2;
  config.max_addresses_per_host = 65;
  CHECK_FALSE(MxResolver::create(base.get(), config));
}
