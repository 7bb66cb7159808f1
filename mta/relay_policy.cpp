#include "mta/relay_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sysexits.h>

#include <cstring>

#include "libmail/ascii.h"

namespace mailwright::mta {

Result<Network> parse_network(std::string_view text) {
  auto bad = [&] {
    return Error::from_exit_code(EX_CONFIG,
                                 "'" + std::string(text.substr(0, 64)) + "' is not a network");
  };
  Network net;
  std::string_view host = text;
  std::optional<unsigned> prefix;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    host = text.substr(0, slash);
    std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return bad();
    unsigned value = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return bad();
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    prefix = value;
  }
  const std::string host_text(host);
  if (host_text.find(':') != std::string::npos) {
    net.family = AF_INET6;
    if (inet_pton(AF_INET6, host_text.c_str(), net.address.data()) != 1) return bad();
    net.prefix = prefix.value_or(128);
    if (net.prefix > 128) return bad();
  } else {
    net.family = AF_INET;
    // inet_pton takes only dotted quads without leading zeros: "010.0.0.1" is refused rather
    // than read as octal.
    if (inet_pton(AF_INET, host_text.c_str(), net.address.data()) != 1) return bad();
    net.prefix = prefix.value_or(32);
    if (net.prefix > 32) return bad();
  }
  const unsigned bytes = net.family == AF_INET ? 4 : 16;
  for (unsigned bit = net.prefix; bit < bytes * 8; ++bit) {
    if (net.address[bit / 8] & (0x80u >> (bit % 8))) {
      return Error::from_exit_code(EX_CONFIG, "'" + std::string(text.substr(0, 64)) +
                                                  "': host bits set after the prefix");
    }
  }
  return net;
}

namespace {

bool prefix_matches(const std::uint8_t* a, const std::uint8_t* b, unsigned bits) {
  const unsigned whole = bits / 8;
  if (std::memcmp(a, b, whole) != 0) return false;
  if (bits % 8 == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff00u >> (bits % 8));
  return (a[whole] & mask) == (b[whole] & mask);
}

}  // namespace

bool address_in_networks(const sockaddr* sa, const std::vector<Network>& networks) {
  std::uint8_t v4[4];
  const std::uint8_t* v6 = nullptr;
  bool have_v4 = false;
  if (sa->sa_family == AF_INET) {
    std::memcpy(v4, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
    have_v4 = true;
  } else if (sa->sa_family == AF_INET6) {
    const auto& a6 = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    v6 = a6.s6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a6)) {
      std::memcpy(v4, a6.s6_addr + 12, 4);
      have_v4 = true;
    }
  } else {
    return false;
  }
  for (const Network& net : networks) {
    if (net.family == AF_INET && have_v4 && prefix_matches(v4, net.address.data(), net.prefix)) {
      return true;
    }
    if (net.family == AF_INET6 && v6 != nullptr &&
        prefix_matches(v6, net.address.data(), net.prefix)) {
      return true;
    }
  }
  return false;
}

bool is_local_domain(std::string_view domain, const std::vector<std::string>& local_domains) {
  // A trailing dot names the same domain ("example.org." is fully qualified).
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  for (const std::string& local : local_domains) {
    if (ascii_iequal(domain, local)) return true;
  }
  return false;
}

RecipientVerdict decide_recipient(const Path& path, const RecipientContext& context) {
  RecipientVerdict v;
  auto refuse = [&](int code, std::string status, std::string text) {
    v.accepted = false;
    v.code = code;
    v.status = std::move(status);
    v.text = std::move(text);
    return v;
  };
  const Mailbox& mailbox = path.mailbox;
  // RFC 5321 4.5.1: <postmaster> without a domain must always be accepted.
  const bool local = path.is_postmaster ||
                     (!mailbox.domain_is_literal && context.local_domains != nullptr &&
                      is_local_domain(mailbox.domain, *context.local_domains));
  if (!local) {
    if (!context.relay_allowed) {
      return refuse(554, "5.7.1", mailbox.domain_is_literal
                                      ? "Address literals are not accepted here"
                                      : "Relay access denied");
    }
    v.accepted = true;
    v.kind = RecipientKind::kRemote;
    return v;
  }
  v.kind = RecipientKind::kLocal;
  std::string name = path.is_postmaster ? std::string("postmaster") : mailbox.local_part;
  ascii_lower_in_place(name);
  // RFC 5321 4.5.1: postmaster@ every local domain is a must, whatever the alias file says.
  if (name == "postmaster") {
    v.accepted = true;
    v.local_name = name;
    return v;
  }
  // No account and no alias can be named with '%', '!', '@', '/' or a control character
  // (accounts.h, aliases.h), so such names are unknown users whatever the lookups say.
  const auto exists = context.local_name_exists ? context.local_name_exists(name)
                                                : std::optional<bool>(false);
  if (!exists) return refuse(451, "4.3.0", "Cannot check the recipient now; try again later");
  if (!*exists) return refuse(550, "5.1.1", "User unknown");
  v.accepted = true;
  v.local_name = std::move(name);
  return v;
}

}  // namespace mailwright::mta
