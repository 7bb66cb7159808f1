// pop3d's network side: every session of the process in one libevent loop. Each connection
// is a bufferevent (plain, STLS-upgraded, or TLS from the start for POP3S) feeding a
// pop3::Session; replies go out as the session produces them, and a RETR is streamed in
// pieces as the socket drains, so a slow client of a large message holds little memory.
//
// Limits: sessions in all and per client address, an idle timeout, and a failed-login delay
// that grows per client address (answers are delayed, other sessions go on meanwhile).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "libmail/client_limits.h"
#include "libmail/daemon.h"
#include "libmail/event_loop.h"
#include "libmail/tls.h"
#include "pop3d/authenticator.h"
#include "pop3d/pop3d_config.h"

namespace mailwright::pop3 {

class Connection;

class Pop3Server {
 public:
  // tls may be null (no STLS, no POP3S).
  Pop3Server(event_base* base, const Pop3Settings& settings, Authenticator& auth, SSL_CTX* tls);
  ~Pop3Server();

  // Starts accepting on sockets tagged "pop3" or "pop3s".
  Status listen(std::vector<BoundListener>& listeners);
  // Serves one already connected socket (inetd mode); exit_when_idle ends the loop after it.
  void serve_connected(int fd, bool implicit_tls, bool exit_when_idle);
  std::size_t sessions() const { return connections_.size(); }

 private:
  friend class Connection;
  static void on_accept(evconnlistener* listener, evutil_socket_t fd, sockaddr* addr, int len,
                        void* arg);
  void accept(evutil_socket_t fd, const sockaddr* addr, bool implicit_tls);
  void remove(Connection* connection);

  event_base* base_;
  const Pop3Settings& settings_;
  Authenticator& auth_;
  SSL_CTX* tls_;
  ConnectionLimits limits_;
  FailureDelay failures_;
  std::vector<ConnListener> listeners_;
  std::vector<bool> listener_tls_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> last_login_;
  std::uint64_t next_id_ = 1;
  bool exit_when_idle_ = false;
};

}  // namespace mailwright::pop3
