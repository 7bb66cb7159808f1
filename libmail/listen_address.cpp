#include "libmail/listen_address.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace mailwright {

std::string ListenAddress::to_string() const {
  std::string h = host.empty() ? "*" : host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  return h + ":" + std::to_string(port);
}

Result<ListenAddress> parse_listen_address(std::string_view text) {
  auto bad = [&](const char* why) {
    return Error::from_exit_code(EX_CONFIG, "listen address '" + std::string(text) + "': " + why);
  };
  ListenAddress out;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return bad("expected [address]:port");
    }
    out.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("expected host:port");
    out.host = std::string(text.substr(0, colon));
    if (out.host.find(':') != std::string::npos) return bad("put an IPv6 address in brackets");
    port = text.substr(colon + 1);
  }
  if (out.host == "*") out.host.clear();
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value == 0 ||
      value > 65535) {
    return bad("port must be 1 to 65535");
  }
  out.port = static_cast<std::uint16_t>(value);
  return out;
}

std::string address_text(const struct sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    }
  } else if (sa->sa_family == AF_UNIX) {
    return "local";
  }
  return buf;
}

Result<std::vector<UniqueFd>> bind_listeners(const ListenAddress& address, int backlog) {
  struct addrinfo hints {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  struct addrinfo* list = nullptr;
  const std::string port = std::to_string(address.port);
  int rc = ::getaddrinfo(address.host.empty() ? nullptr : address.host.c_str(), port.c_str(),
                         &hints, &list);
  if (rc != 0) {
    return Error::from_exit_code(EX_CONFIG,
                                 address.to_string() + ": " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, FreeWith<freeaddrinfo>> owner(list);
  std::vector<UniqueFd> fds;
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
      // A host without IPv6 still serves IPv4 for "*".
      if (errno == EAFNOSUPPORT && address.host.empty()) continue;
      return Error::from_errno(EX_OSERR, "socket " + address.to_string(), errno);
    }
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6) {
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno == EADDRNOTAVAIL && address.host.empty()) continue;
      return Error::from_errno(EX_OSERR, "bind " + address.to_string(), errno);
    }
    if (::listen(fd.get(), backlog) != 0) {
      return Error::from_errno(EX_OSERR, "listen " + address.to_string(), errno);
    }
    fds.push_back(std::move(fd));
  }
  if (fds.empty()) {
    return Error::from_exit_code(EX_OSERR, address.to_string() + ": no address to listen on");
  }
  return fds;
}

}  // namespace mailwright
