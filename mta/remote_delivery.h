// Remote delivery: the queue manager's RemoteDeliverer made of the MX resolver (c-ares) and the
// SMTP client. For each next hop it finds the hosts (MX records, or the hop's own addresses
// for [host] routes, smart hosts and address literals), drops those that are this very mta
// (RFC 5321 5.1: only exchangers preferred over us are tried, and if we are the best one the
// mail has nowhere to go: a loop, bounced with 5.4.6), and hands the message to SmtpDelivery,
// which tries the hosts in order. Deliveries to one domain are limited
// (max_deliveries_per_domain) so a slow or dead destination holds only its own slots; the
// rest wait in a per-domain line while other domains go on.
#pragma once

#include <sys/socket.h>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "libmail/event_loop.h"
#include "libmail/listen_address.h"
#include "mta/mx_resolver.h"
#include "mta/queue_manager.h"
#include "mta/smtp_client.h"

namespace mailwright::mta {

struct RemoteSettings {
  std::string hostname;  // EHLO name, and how we recognise ourselves among MX hosts
  std::vector<sockaddr_storage> own_addresses;  // addresses (with ports) that reach us
  std::vector<std::string> tls_required_domains;  // STARTTLS or defer, for these
  std::optional<NextHop> relayhost;
  std::optional<SmtpCredentials> relayhost_credentials;  // AUTH at the relay host
  std::size_t max_per_domain = 20;
  SmtpClientTimeouts timeouts;
};

// The addresses a listen setting makes us reachable at: the address itself, or for a wildcard
// every address of the host's interfaces; each with the setting's port.
std::vector<sockaddr_storage> own_addresses(const std::vector<ListenAddress>& listen);

class RemoteDelivery final : public RemoteDeliverer {
 public:
  RemoteDelivery(event_base* base, MxResolver& resolver, SSL_CTX* tls, RemoteSettings settings);
  ~RemoteDelivery() override;
  void deliver(Job job) override;

 private:
  void start(Job job);
  void resolved(Job job, MxResult result);
  void finished(const std::string& domain);
  bool is_self(const MxHost& host, std::uint16_t port) const;

  event_base* base_;
  MxResolver& resolver_;
  SSL_CTX* tls_;
  RemoteSettings settings_;
  SmtpConnectionCache cache_;
  std::map<std::string, std::size_t> active_;
  std::map<std::string, std::deque<Job>> waiting_;
  std::set<SmtpDelivery*> deliveries_;
};

}  // namespace mailwright::mta
