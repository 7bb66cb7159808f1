// Who may send mail where: client networks (CIDR) and the decision made at RCPT.
//
// The decision is a pure function of the parsed forward path (libmail/address.h has already
// refused anything that is not RFC 5321 syntax), whether the client may relay, and lookups of
// local names. The relay tricks of old all end in one of two places:
//  - "u%other@local", "other!u@local", "\"u@other\"@local": the domain is local, so the whole
//    local part is looked up as a local name. No account or alias can have '%', '!' or '@' in
//    its name (accounts.h, aliases.h), so they are unknown users: 550, never relayed.
//  - "@local:u@other" (a source route): the route is dropped by the parser (RFC 5321 C) and
//    the mailbox u@other is judged like any remote address: relayed only for clients that may.
// Address literals ("u@[192.0.2.1]") are accepted only from clients that may relay: we cannot
// tell cheaply whether a literal names this host, and no legitimate sender needs one.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/address.h"
#include "libmail/result.h"

namespace mailwright::mta {

struct Network {
  int family = AF_INET;  // AF_INET or AF_INET6
  std::array<std::uint8_t, 16> address{};
  unsigned prefix = 0;  // significant bits
};

// "192.0.2.0/24", "10.1.2.3" (= /32), "2001:db8::/32", "::1". Host bits must be zero.
Result<Network> parse_network(std::string_view text);
// Whether sa (IPv4, IPv6, or IPv4-mapped IPv6) lies in one of networks.
bool address_in_networks(const sockaddr* sa, const std::vector<Network>& networks);

enum class RecipientKind { kLocal, kRemote };

struct RecipientVerdict {
  bool accepted = false;
  RecipientKind kind = RecipientKind::kRemote;
  std::string local_name;  // kLocal: the name looked up (folded to lower case)
  int code = 250;          // the reply when refused
  std::string status;      // enhanced status code
  std::string text;
};

struct RecipientContext {
  bool relay_allowed = false;  // authenticated, or a client in relay_networks
  // Domains delivered here, compared case-insensitively (the hostname and localhost included).
  const std::vector<std::string>* local_domains = nullptr;
  // Whether a local name (lower case) is an account or an alias. nullopt: could not tell now
  // (a database could not be read), which is a temporary failure.
  std::function<std::optional<bool>(std::string_view)> local_name_exists;
};

RecipientVerdict decide_recipient(const Path& path, const RecipientContext& context);

bool is_local_domain(std::string_view domain, const std::vector<std::string>& local_domains);

}  // namespace mailwright::mta
