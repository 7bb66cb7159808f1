// Where a recipient goes: a local mailbox (through aliases, then mda), another MTA by SMTP,
// or nowhere (an error). Pure: the caller supplies the local domains, the transport table
// and the smart host; no DNS here.
//
// The transport table (mta.conf "transports", a file like sendmail's mailertable or
// Postfix's transport(5)) has one entry per line:
//
//   example.com        smtp:[mail.example.com]:2525   this host and port, no MX lookup
//   .example.com       smtp:relay.example.net          every subdomain; MX lookup of the host
//   legacy.example     local                           deliver here
//   old.example        error:5.1.2 this domain is gone  refuse with this status and text
//   *                  smtp:[smarthost.example]        everything else (like relayhost)
//
// Blank lines and lines starting with '#' are ignored. Lookup order for a domain: the exact
// name, then ".parent" entries from the nearest parent up, then the local domains, then "*",
// then relayhost, then the domain's own MX records.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.h"

namespace mailwright::mta {

struct NextHop {
  std::string host;         // host name or address literal without brackets
  std::uint16_t port = 25;
  bool mx_lookup = true;    // false for [host]: use the host's addresses only
  bool literal = false;     // host is an IP address
  friend bool operator==(const NextHop&, const NextHop&) = default;
};

struct Transport {
  enum class Kind { kLocal, kSmtp, kError };
  Kind kind = Kind::kSmtp;
  NextHop hop;              // kSmtp
  std::string status;       // kError: RFC 3463 status, 5.x.x or 4.x.x
  std::string text;         // kError
  friend bool operator==(const Transport&, const Transport&) = default;
};

// "smtp:[host]:port", "smtp:host", "smtp:[192.0.2.1]", "local", "error:5.1.2 text".
Result<Transport> parse_transport(std::string_view text);
// A relayhost setting: "[host]:port", "host", "host:port".
Result<NextHop> parse_next_hop(std::string_view text, std::uint16_t default_port);

class TransportTable {
 public:
  static Result<TransportTable> parse(std::string_view text, std::string_view file_name);
  static Result<TransportTable> load(const std::string& path);
  // The entry for domain (exact, then ".parent"), or nullptr.
  const Transport* find(std::string_view domain) const;
  const Transport* fallback() const;  // "*"
  std::size_t size() const { return entries_.size(); }

 private:
  std::map<std::string, Transport, std::less<>> entries_;
};

struct Route {
  Transport transport;
  std::string local_name;  // kLocal: the local part, lower case
  std::string domain;      // the recipient's domain, lower case ("" for postmaster)
};

struct RoutingTables {
  const std::vector<std::string>* local_domains = nullptr;
  const TransportTable* transports = nullptr;  // may be null
  const NextHop* relayhost = nullptr;           // may be null
  std::uint16_t smtp_port = 25;                 // for MX deliveries
};

// address is a recipient as stored in the queue: "local@domain" (canonical, RFC 5321) or
// "postmaster". An address that does not parse is an error route (5.1.3).
Route route_recipient(std::string_view address, const RoutingTables& tables);

}  // namespace mailwright::mta
