// Listening sockets: "host:port" addresses as configuration gives them, bound before
// privileges are dropped.
//
// Accepted forms: "127.0.0.1:25", "[::1]:25", "*:25" (all IPv4 and IPv6 addresses), ":25"
// (same as "*:25"), "localhost:2525" (resolved once, at start-up, through the hosts file and
// DNS). Ports 1..65535.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.h"
#include "libmail/unique_fd.h"

namespace mailwright {

struct ListenAddress {
  std::string host;  // "" means every address
  std::uint16_t port = 0;
  std::string to_string() const;
};

Result<ListenAddress> parse_listen_address(std::string_view text);

// Binds every address the spec stands for, non-blocking and close-on-exec, with a deep
// backlog (a shallow one is how OpenSMTPD collapses under load).
Result<std::vector<UniqueFd>> bind_listeners(const ListenAddress& address, int backlog = 4096);

// The numeric text of a peer or local address ("192.0.2.1", "2001:db8::1").
std::string address_text(const struct sockaddr* sa);

}  // namespace mailwright
