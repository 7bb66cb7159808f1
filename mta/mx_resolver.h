// Where mail for a domain goes: MX records (RFC 5321 5.1), null MX (RFC 7505), the implicit MX
// (RFC 5321 5.1, after RFC 974), and the IPv4 and IPv6 addresses of every exchanger -- looked
// up with c-ares on the mta's libevent loop, so no lookup ever blocks the process.
//
// resolve_mx(domain): one MX query, then A and AAAA for each exchanger, all at once.
//   NXDOMAIN for the domain             kNoSuchDomain  permanent  5.1.2
//   a single "0 ." MX (null MX)         kNullMx        permanent  5.1.10
//   no MX (NODATA)                      the domain itself, implicit = true
//   exchangers, none with an address    kNoAddress     permanent  5.4.4  (every answer was a
//                                       definite NXDOMAIN or NODATA: Postfix and Exim bounce too;
//                                       retrying would only delay the same bounce)
//   SERVFAIL, REFUSED, timeout, ...     kTemporary     temporary  4.4.3  (also when exchangers
//                                       have no address and at least one lookup failed so)
// One exchanger with an address is enough for kOk: RFC 5321 5.1 has the client try the
// exchangers in order, and a host whose lookup failed cannot be tried anyway; error_text then
// still says which failed, for the log.
//
// resolve_host(name, port): A and AAAA of one host, for smart hosts and transport entries that
// skip the MX lookup. An IP address given as the name is returned as it is. Address literals
// ("[192.0.2.1]") are the caller's to parse; resolve_mx refuses them.
//
// The hosts file. Addresses (never MX records) are looked up in hosts_file first and in DNS
// only for names it does not list, as the C library's "hosts: files dns" does. The file is
// read here rather than by c-ares: c-ares 1.18 has no per-channel hosts path (only
// $CARES_HOSTS, which a local user could set for a program run on their behalf), and its
// ares_getaddrinfo asks A and AAAA as one lookup that reports the status of whichever answer
// came last, so SERVFAIL for one family and NODATA for the other could end either way. Here A
// and AAAA are separate ares_query calls, each with its own status. It is re-read when its
// inode, size or mtime changes (one stat(2) per lookup).
//
// Names are asked as given, without search domains: names in mail are fully qualified
// (RFC 5321 2.3.5). Equal preferences are shuffled (RFC 5321 5.1 "MUST randomize").
//
// Callbacks always run from the event loop, never inside resolve_mx/resolve_host, so a caller
// may start a lookup while holding state a callback changes. A callback may start lookups and
// may destroy the resolver. Destroying the resolver drops pending lookups: their callbacks
// never run. A caller that may go away before its answer guards its callback (a weak_ptr, as
// SmtpConnection does for AUTH). Not thread-safe: one resolver per event loop.
#pragma once

#include <ares.h>
#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "libmail/event_loop.h"
#include "libmail/result.h"
#include "libmail/unique_fd.h"

namespace mailwright::mta {

enum class AddressOrder { kIpv4First, kIpv6First };

struct ResolverConfig {
  // Name servers as "127.0.0.1:5353", "[::1]:53" or "192.0.2.53" (port 53); empty: those of
  // /etc/resolv.conf.
  std::vector<std::string> servers;
  // Wait for the first answer from a server; c-ares doubles it each round over the servers.
  // With one server the worst case is timeout * (2^tries - 1): 15 s by default.
  std::chrono::milliseconds timeout{5000};
  int tries = 2;
  // Looked up before DNS for A/AAAA; empty: DNS only.
  std::string hosts_file = "/etc/hosts";
  // Many test setups and small hosts have no IPv6 route: IPv4 first by default.
  AddressOrder address_order = AddressOrder::kIpv4First;
  std::size_t max_mx_hosts = 10;           // exchangers looked up, most preferred first
  std::size_t max_addresses_per_host = 8;  // at most 64 (one DNS answer's worth)
};

struct MxHost {
  std::string name;  // lower case, no trailing dot
  unsigned preference = 0;
  std::vector<sockaddr_storage> addresses;  // port set; ordered by address_order
  bool implicit = false;  // no MX: the domain itself (RFC 5321 5.1)
};

struct MxResult {
  enum Status {
    kOk,
    kNoSuchDomain,  // NXDOMAIN: permanent, 5.1.2
    kNullMx,        // RFC 7505 "0 .": the domain accepts no mail, permanent, 5.1.10
    kNoAddress,     // exchangers (or the implicit one) exist, none has an address: 5.4.4
    kTemporary,     // SERVFAIL, timeout, refused: 4.4.3
  };
  Status status = kTemporary;
  // kOk: the hosts to try, in order, each with at least one address; no address appears twice.
  std::vector<MxHost> hosts;
  // What failed, for logs and bounces (may be set with kOk: exchangers that were skipped).
  std::string error_text;
};

// The failure as an Error for a delivery attempt or a bounce. result.status must not be kOk.
Error mx_error(const MxResult& result);
const char* to_string(MxResult::Status status);  // "ok", "nxdomain", "nullmx", ...

using MxCallback = std::function<void(MxResult)>;

// --- The pure parts, tested without a network ----------------------------------------------

struct MxRecord {
  std::string host;
  unsigned preference = 0;
};

// RFC 7505: exactly one MX record, preference 0, exchange the root ("." or "" as c-ares gives
// it). A root exchange in any other set is only a host that cannot be reached.
bool is_null_mx(const std::vector<MxRecord>& records);
// Lower case, one trailing dot dropped.
std::string normalize_host_name(std::string_view name);
// LDH labels (and '_', seen in the wild) of 1..63 octets, 253 octets in all, no trailing dot.
bool is_host_name(std::string_view name);
// The exchangers to try: names normalized, roots and names that are not host names dropped,
// duplicates kept once at their lowest preference, ordered by preference with equal ones
// shuffled by rng, at most max_hosts.
std::vector<MxRecord> order_mx(std::vector<MxRecord> records, std::mt19937_64& rng,
                               std::size_t max_hosts);
// One host's addresses: duplicates dropped, the preferred family first (each family in the
// order given), at most max.
std::vector<sockaddr_storage> order_addresses(std::vector<sockaddr_storage> addresses,
                                              AddressOrder order, std::size_t max);
// Drops from each host the addresses an earlier (more preferred) host already has, and then
// hosts left with no address: the same server is not tried twice under two names.
void drop_repeated_addresses(std::vector<MxHost>& hosts);
bool same_address(const sockaddr_storage& a, const sockaddr_storage& b);
// "192.0.2.1", "2001:db8::1" (no port).
std::string address_to_string(const sockaddr_storage& address);
// An IPv4 or IPv6 address in text (no brackets), with port.
bool parse_ip_address(std::string_view text, std::uint16_t port, sockaddr_storage& out);

// hosts(5): "address name alias..." lines, '#' comments. Names are folded to lower case;
// lines with an address that does not parse (a zone index, garbage) are skipped.
class HostsTable {
 public:
  static HostsTable parse(std::string_view text);
  // Every address listed for name (any case, trailing dot allowed), in file order; port 0.
  std::vector<sockaddr_storage> lookup(std::string_view name) const;
  std::size_t size() const { return names_.size(); }

 private:
  std::unordered_map<std::string, std::vector<sockaddr_storage>> names_;
};

// --- The resolver ----------------------------------------------------------------------------

class MxResolver {
 public:
  // A permanent EX_CONFIG error for a bad configuration (a server c-ares cannot parse, a
  // limit out of range), temporary when c-ares cannot start.
  static Result<std::unique_ptr<MxResolver>> create(event_base* base,
                                                    const ResolverConfig& config);
  ~MxResolver();
  MxResolver(const MxResolver&) = delete;
  MxResolver& operator=(const MxResolver&) = delete;

  // The addresses get port (25 for SMTP, or the transport's).
  void resolve_mx(std::string_view domain, MxCallback callback, std::uint16_t port = 25);
  // The result has one host (preference 0, implicit false) when kOk.
  void resolve_host(std::string_view name, std::uint16_t port, MxCallback callback);

  // Lookups whose callback has not run yet.
  std::size_t pending() const { return jobs_.size() + done_.size(); }

 private:
  struct Job;
  struct Query;
  struct HostsFile;
  struct Socket {
    Event event;
    short what = 0;
  };
  using Channel = std::unique_ptr<ares_channeldata, FreeWith<ares_destroy>>;

  MxResolver(event_base* base, const ResolverConfig& config);
  Status init();

  // libevent and c-ares trampolines.
  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_socket(evutil_socket_t fd, short what, void* arg);
  static void on_timer(evutil_socket_t fd, short what, void* arg);
  static void on_done(evutil_socket_t fd, short what, void* arg);
  static void on_mx_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  static void on_address_answer(void* arg, int status, int timeouts, unsigned char* abuf,
                                int alen);

  Job& add_job(MxCallback callback, std::string name, std::uint16_t port, bool mx);
  void mx_answered(Job& job, int status, const unsigned char* abuf, int alen);
  void start_hosts(Job& job);
  void send_query(Job& job, std::size_t host, int type);
  void address_answered(Job& job, std::size_t host, int type, int status,
                        const unsigned char* abuf, int alen);
  void host_done(Job& job);
  void complete(Job& job);
  void finish(Job& job);
  void update_timer();
  const HostsTable* hosts_table();

  event_base* base_;
  ResolverConfig config_;
  std::mt19937_64 rng_;
  std::unordered_map<ares_socket_t, Socket> sockets_;
  Event timer_;       // ares_timeout(): retries and timeouts
  Event done_event_;  // runs finished lookups' callbacks from the loop
  std::unordered_map<Job*, std::unique_ptr<Job>> jobs_;
  std::vector<std::unique_ptr<Job>> done_;
  std::unique_ptr<HostsFile> hosts_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // a callback may destroy us
  bool destroying_ = false;
  // Last: c-ares calls back into the members above while it shuts down (~MxResolver).
  Channel channel_;
};

}  // namespace mailwright::mta
