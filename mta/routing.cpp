#include "mta/routing.h"

#include <arpa/inet.h>
#include <sysexits.h>

#include "libmail/address.h"
#include "libmail/ascii.h"
#include "libmail/file_io.h"
#include "mta/relay_policy.h"

namespace mailwright::mta {
namespace {

constexpr std::size_t kMaxTransportFile = 16 * 1024 * 1024;

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

Error bad(std::string_view what, std::string_view text) {
  return Error::from_exit_code(EX_CONFIG, std::string(what) + " '" +
                                              std::string(text.substr(0, 64)) + "'");
}

}  // namespace

Result<NextHop> parse_next_hop(std::string_view text, std::uint16_t default_port) {
  NextHop hop;
  hop.port = default_port;
  std::string_view rest = text;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("bad next hop", text);
    hop.host = std::string(rest.substr(1, close - 1));
    hop.mx_lookup = false;
    rest.remove_prefix(close + 1);
    // "[IPv6:2001:db8::1]" as in RFC 5321 address literals.
    if (ascii_istarts_with(hop.host, "IPv6:")) hop.host.erase(0, 5);
  } else {
    const auto colon = rest.rfind(':');
    hop.host = std::string(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon);
  }
  if (!rest.empty()) {
    if (rest.front() != ':' || rest.size() < 2 || rest.size() > 6) return bad("bad port in", text);
    unsigned port = 0;
    for (char c : rest.substr(1)) {
      if (c < '0' || c > '9') return bad("bad port in", text);
      port = port * 10 + static_cast<unsigned>(c - '0');
    }
    if (port == 0 || port > 65535) return bad("bad port in", text);
    hop.port = static_cast<std::uint16_t>(port);
  }
  hop.literal = is_ip_literal(hop.host);
  if (hop.literal) {
    hop.mx_lookup = false;
  } else if (!is_valid_domain(hop.host)) {
    return bad("bad host name in", text);
  }
  hop.host = hop.literal ? hop.host : lowercase_domain(hop.host);
  return hop;
}

Result<Transport> parse_transport(std::string_view text) {
  Transport t;
  if (text == "local") {
    t.kind = Transport::Kind::kLocal;
    return t;
  }
  if (ascii_istarts_with(text, "smtp:")) {
    auto hop = parse_next_hop(text.substr(5), 25);
    if (!hop) return hop.error();
    t.kind = Transport::Kind::kSmtp;
    t.hop = *hop;
    return t;
  }
  if (ascii_istarts_with(text, "error:")) {
    std::string_view rest = trim(text.substr(6));
    t.kind = Transport::Kind::kError;
    const auto space = rest.find(' ');
    std::string_view status = rest.substr(0, space);
    const bool is_status = status.size() >= 5 && (status[0] == '4' || status[0] == '5') &&
                           status[1] == '.' &&
                           status.find_first_not_of("0123456789.") == std::string_view::npos;
    if (is_status) {
      t.status = std::string(status);
      t.text = std::string(space == std::string_view::npos ? std::string_view()
                                                           : trim(rest.substr(space)));
    } else {
      t.status = "5.1.2";
      t.text = std::string(rest);
    }
    if (t.text.empty()) t.text = "Mail for this domain is not accepted";
    for (char c : t.text) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return bad("bad error text", text);
    }
    return t;
  }
  return bad("unknown transport", text);
}

Result<TransportTable> TransportTable::parse(std::string_view text, std::string_view file_name) {
  TransportTable table;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const auto lf = text.find('\n');
    std::string_view line = trim(text.substr(0, lf));
    text = lf == std::string_view::npos ? std::string_view() : text.substr(lf + 1);
    if (line.empty() || line.front() == '#') continue;
    auto where = [&](const std::string& why) {
      return Error::from_exit_code(EX_CONFIG, std::string(file_name) + ":" +
                                                  std::to_string(line_no) + ": " + why);
    };
    const auto blank = line.find_first_of(" \t");
    if (blank == std::string_view::npos) return where("a domain and a transport are needed");
    std::string domain(line.substr(0, blank));
    ascii_lower_in_place(domain);
    const std::string_view bare = domain.front() == '.' ? std::string_view(domain).substr(1)
                                                        : std::string_view(domain);
    if (domain != "*" && !is_valid_domain(bare)) return where("bad domain '" + domain + "'");
    auto transport = parse_transport(trim(line.substr(blank)));
    if (!transport) return where(transport.error().text());
    if (!table.entries_.emplace(domain, *transport).second) {
      return where("'" + domain + "' listed twice");
    }
  }
  return table;
}

Result<TransportTable> TransportTable::load(const std::string& path) {
  auto text = read_small_file(path, kMaxTransportFile);
  if (!text) return Error::from_exit_code(EX_CONFIG, "transports: " + text.error().text());
  return parse(*text, path);
}

const Transport* TransportTable::find(std::string_view domain) const {
  if (auto it = entries_.find(domain); it != entries_.end()) return &it->second;
  for (std::size_t dot = domain.find('.'); dot != std::string_view::npos;
       dot = domain.find('.', dot + 1)) {
    if (auto it = entries_.find(domain.substr(dot)); it != entries_.end()) return &it->second;
  }
  return nullptr;
}

const Transport* TransportTable::fallback() const {
  auto it = entries_.find("*");
  return it == entries_.end() ? nullptr : &it->second;
}

Route route_recipient(std::string_view address, const RoutingTables& tables) {
  Route route;
  if (ascii_iequal(address, "postmaster")) {
    route.transport.kind = Transport::Kind::kLocal;
    route.local_name = "postmaster";
    return route;
  }
  AddressOptions utf8;
  utf8.allow_utf8 = true;
  auto mailbox = parse_mailbox(address, utf8);
  if (!mailbox) {
    route.transport.kind = Transport::Kind::kError;
    route.transport.status = "5.1.3";
    route.transport.text = "Bad recipient address syntax";
    return route;
  }
  if (mailbox->domain_is_literal) {
    std::string host = mailbox->domain.substr(1, mailbox->domain.size() - 2);
    if (ascii_istarts_with(host, "IPv6:")) host.erase(0, 5);
    route.domain = mailbox->domain;
    route.transport.kind = Transport::Kind::kSmtp;
    route.transport.hop = NextHop{host, tables.smtp_port, false, true};
    return route;
  }
  route.domain = lowercase_domain(mailbox->domain);
  if (!route.domain.empty() && route.domain.back() == '.') route.domain.pop_back();
  const Transport* entry = tables.transports ? tables.transports->find(route.domain) : nullptr;
  const bool local = tables.local_domains && is_local_domain(route.domain, *tables.local_domains);
  if (entry == nullptr && local) {
    route.transport.kind = Transport::Kind::kLocal;
  } else if (entry != nullptr) {
    route.transport = *entry;
  } else if (const Transport* any = tables.transports ? tables.transports->fallback() : nullptr) {
    route.transport = *any;
  } else if (tables.relayhost != nullptr) {
    route.transport.kind = Transport::Kind::kSmtp;
    route.transport.hop = *tables.relayhost;
  } else {
    route.transport.kind = Transport::Kind::kSmtp;
    route.transport.hop = NextHop{route.domain, tables.smtp_port, true, false};
  }
  if (route.transport.kind == Transport::Kind::kLocal) {
    route.local_name = mailbox->local_part;
    ascii_lower_in_place(route.local_name);
  }
  return route;
}

}  // namespace mailwright::mta
