#include "mta/remote_delivery.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <cstring>

#include "libmail/address.h"
#include "libmail/ascii.h"
#include "libmail/log.h"

namespace mailwright::mta {
namespace {

std::uint16_t port_of(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
  return 0;
}

void set_port(sockaddr_storage& ss, std::uint16_t port) {
  if (ss.ss_family == AF_INET) reinterpret_cast<sockaddr_in&>(ss).sin_port = htons(port);
  if (ss.ss_family == AF_INET6) reinterpret_cast<sockaddr_in6&>(ss).sin6_port = htons(port);
}

bool same_ip(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) {
    return std::memcmp(&reinterpret_cast<const sockaddr_in&>(a).sin_addr,
                       &reinterpret_cast<const sockaddr_in&>(b).sin_addr, 4) == 0;
  }
  return std::memcmp(&reinterpret_cast<const sockaddr_in6&>(a).sin6_addr,
                     &reinterpret_cast<const sockaddr_in6&>(b).sin6_addr, 16) == 0;
}

}  // namespace

std::vector<sockaddr_storage> own_addresses(const std::vector<ListenAddress>& listen) {
  std::vector<sockaddr_storage> out;
  std::vector<sockaddr_storage> interfaces;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) == 0) {
    for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr) continue;
      const int family = i->ifa_addr->sa_family;
      if (family != AF_INET && family != AF_INET6) continue;
      sockaddr_storage ss{};
      std::memcpy(&ss, i->ifa_addr, family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
      interfaces.push_back(ss);
    }
    ::freeifaddrs(list);
  }
  for (const ListenAddress& l : listen) {
    sockaddr_storage ss{};
    if (parse_ip_address(l.host, l.port, ss)) {
      out.push_back(ss);
      continue;
    }
    for (sockaddr_storage i : interfaces) {  // a wildcard: every address of this host
      set_port(i, l.port);
      out.push_back(i);
    }
  }
  return out;
}

RemoteDelivery::RemoteDelivery(event_base* base, MxResolver& resolver, SSL_CTX* tls,
                               RemoteSettings settings)
    : base_(base),
      resolver_(resolver),
      tls_(tls),
      settings_(std::move(settings)),
      cache_(base) {}

RemoteDelivery::~RemoteDelivery() {
  for (SmtpDelivery* d : deliveries_) delete d;
}

void RemoteDelivery::deliver(Job job) {
  const std::string domain = job.domain;
  if (active_[domain] >= settings_.max_per_domain) {
    waiting_[domain].push_back(std::move(job));
    return;
  }
  ++active_[domain];
  start(std::move(job));
}

void RemoteDelivery::start(Job job) {
  const NextHop hop = job.hop;
  if (hop.literal) {
    MxResult r;
    MxHost host;
    host.name = hop.host;
    sockaddr_storage ss{};
    if (parse_ip_address(hop.host, hop.port, ss)) {
      host.addresses.push_back(ss);
      r.status = MxResult::kOk;
      r.hosts.push_back(std::move(host));
    } else {
      r.status = MxResult::kNoAddress;
      r.error_text = "bad address literal";
    }
    resolved(std::move(job), std::move(r));
    return;
  }
  // The callback owns the job until the lookup answers.
  auto holder = std::make_shared<Job>(std::move(job));
  auto callback = [this, holder](MxResult result) { resolved(std::move(*holder), std::move(result)); };
  if (hop.mx_lookup) {
    resolver_.resolve_mx(hop.host, callback, hop.port);
  } else {
    resolver_.resolve_host(hop.host, hop.port, callback);
  }
}

bool RemoteDelivery::is_self(const MxHost& host, std::uint16_t port) const {
  if (ascii_iequal(host.name, settings_.hostname)) return true;
  for (const sockaddr_storage& a : host.addresses) {
    for (const sockaddr_storage& own : settings_.own_addresses) {
      if (same_ip(a, own) && port_of(own) == port) return true;
    }
  }
  return false;
}

void RemoteDelivery::resolved(Job job, MxResult result) {
  const std::string domain = job.domain;
  auto fail_all = [&](DeliveryOutcome outcome) {
    std::vector<DeliveryOutcome> outcomes(job.recipients.size(), outcome);
    auto done = std::move(job.done);
    finished(domain);
    done(std::move(outcomes));
  };
  if (result.status != MxResult::kOk) {
    const Error e = mx_error(result);
    const std::string diagnostic = "x-mailwright; " + job.hop.host + ": " + e.text();
    // A relayhost or transport host that does not resolve is a mistake in this host's
    // configuration, not in the recipient's address: the mail waits for it to be mended
    // instead of bouncing everything routed there.
    const bool configured_hop = !domain_equal(job.hop.host, domain);
    if (e.is_temporary() || configured_hop) {
      return fail_all(DeliveryOutcome::deferred(
          e.is_temporary() ? e.status() : "4.4.3",
          configured_hop && !e.is_temporary() ? diagnostic + " (a configured next hop)"
                                              : diagnostic));
    }
    return fail_all(DeliveryOutcome::failed(e.status(), diagnostic));
  }
  // RFC 5321 5.1: when we are one of the exchangers, only those preferred over us may take
  // the mail; none left means it would come back to us.
  std::optional<unsigned> own_preference;
  for (const MxHost& h : result.hosts) {
    if (is_self(h, job.hop.port)) {
      own_preference = std::min(own_preference.value_or(h.preference), h.preference);
    }
  }
  std::vector<SmtpDestination> destinations;
  for (const MxHost& h : result.hosts) {
    if (own_preference && (h.preference >= *own_preference || !job.hop.mx_lookup)) continue;
    SmtpDestination d;
    d.name = h.name;
    d.addresses = h.addresses;
    d.port = job.hop.port;
    destinations.push_back(std::move(d));
  }
  if (destinations.empty()) {
    return fail_all(DeliveryOutcome::failed(
        "5.4.6", "x-mailwright; mail for " + job.hop.host + " loops back to myself"));
  }
  SmtpDeliveryRequest request;
  request.log_id = job.log_id;
  request.destinations = std::move(destinations);
  const Envelope& env = *job.envelope;
  request.transaction.sender = env.sender;
  request.transaction.body = env.body;
  request.transaction.smtputf8 = env.smtputf8;
  request.transaction.ret = env.ret;
  request.transaction.envid = env.envid;
  request.transaction.size = job.length;
  for (std::size_t i : job.recipients) {
    const Recipient& r = env.recipients[i];
    request.transaction.recipients.push_back(SmtpRecipient{r.address, r.orcpt, r.notify});
  }
  request.source = SmtpMessageSource{job.message_fd, job.offset, job.length};
  request.settings.helo_name = settings_.hostname;
  request.settings.remote_host = job.hop.host;
  request.settings.tls_available = tls_ != nullptr;
  request.settings.tls = SmtpTlsPolicy::kOpportunistic;
  for (const std::string& d : settings_.tls_required_domains) {
    if (ascii_iequal(d, domain)) request.settings.tls = SmtpTlsPolicy::kRequire;
  }
  if (settings_.relayhost && settings_.relayhost_credentials && job.hop == *settings_.relayhost) {
    request.settings.credentials = settings_.relayhost_credentials;
  }
  request.timeouts = settings_.timeouts;
  auto done = std::move(job.done);
  const std::size_t count = job.recipients.size();
  auto slot = std::make_shared<SmtpDelivery*>(nullptr);
  auto* delivery = new SmtpDelivery(
      base_, tls_, std::move(request),
      [this, done = std::move(done), domain, count, slot](SmtpDeliveryReport report) {
        std::vector<DeliveryOutcome> outcomes;
        for (std::size_t k = 0; k < count; ++k) {
          outcomes.push_back(k < report.recipients.size()
                                 ? to_delivery_outcome(report.recipients[k])
                                 : DeliveryOutcome::deferred("4.3.0", "x-mailwright; no result"));
        }
        // Freed from the loop, not from inside its own callback.
        SmtpDelivery* finished_delivery = *slot;
        deliveries_.erase(finished_delivery);
        event_base_once(
            base_, -1, EV_TIMEOUT,
            [](evutil_socket_t, short, void* p) { delete static_cast<SmtpDelivery*>(p); },
            finished_delivery, nullptr);
        auto report_to = done;
        finished(domain);
        report_to(std::move(outcomes));
      },
      &cache_);
  *slot = delivery;
  deliveries_.insert(delivery);
  delivery->start();
}

void RemoteDelivery::finished(const std::string& domain) {
  if (active_[domain] > 0) --active_[domain];
  auto it = waiting_.find(domain);
  if (it != waiting_.end() && !it->second.empty()) {
    Job next = std::move(it->second.front());
    it->second.pop_front();
    if (it->second.empty()) waiting_.erase(it);
    ++active_[domain];
    start(std::move(next));
  } else if (active_[domain] == 0) {
    active_.erase(domain);
  }
}

}  // namespace mailwright::mta
