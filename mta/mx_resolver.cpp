#include "mta/mx_resolver.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sysexits.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>

#include "libmail/ascii.h"
#include "libmail/file_io.h"
#include "libmail/log.h"

namespace mailwright::mta {
namespace {

// ares_parse_a_reply and ares_parse_aaaa_reply fill a caller's array: one answer's worth.
constexpr int kMaxAnswerAddresses = 64;
constexpr std::size_t kMaxHostsFileSize = 16 * 1024 * 1024;

// ares_library_init once per process; c-ares wants it before the first channel. It is never
// undone: channels may live until exit.
int library_init() {
  static const int status = ares_library_init(ARES_LIB_INIT_ALL);
  return status;
}

// An answer that settles the question for good: the name or the record type does not exist.
bool definite(int status) {
  return status == ARES_SUCCESS || status == ARES_ENODATA || status == ARES_ENOTFOUND ||
         status == ARES_EBADNAME;
}

// Short words for the log: ares_strerror's sentences are long and say "DNS" in every one.
std::string status_word(int status) {
  switch (status) {
    case ARES_ENOTFOUND: return "NXDOMAIN";
    case ARES_ENODATA: return "no records";
    case ARES_ESERVFAIL: return "SERVFAIL";
    case ARES_EREFUSED: return "REFUSED";
    case ARES_ETIMEOUT: return "timed out";
    // Also what c-ares ends with when every server answered REFUSED or SERVFAIL: it tries the
    // next server on those, and says "connection refused" when none is left.
    case ARES_ECONNREFUSED: return "no name server answered";
    case ARES_EBADNAME: return "not a valid name";
    default: return ares_strerror(status);
  }
}

void set_port(sockaddr_storage& ss, std::uint16_t port) {
  if (ss.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(port);
  } else if (ss.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(port);
  }
}

sockaddr_storage from_in4(const in_addr& a) {
  sockaddr_storage ss{};
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  sin->sin_family = AF_INET;
  sin->sin_addr = a;
  return ss;
}

sockaddr_storage from_in6(const void* bytes) {
  sockaddr_storage ss{};
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  sin6->sin6_family = AF_INET6;
  std::memcpy(&sin6->sin6_addr, bytes, sizeof sin6->sin6_addr);
  return ss;
}

void append_note(std::string& notes, std::string_view note) {
  if (!notes.empty()) notes += "; ";
  notes += note;
}

}  // namespace

// --- Pure parts --------------------------------------------------------------------------------

const char* to_string(MxResult::Status status) {
  switch (status) {
    case MxResult::kOk: return "ok";
    case MxResult::kNoSuchDomain: return "nxdomain";
    case MxResult::kNullMx: return "nullmx";
    case MxResult::kNoAddress: return "noaddress";
    case MxResult::kTemporary: return "temporary";
  }
  return "temporary";
}

Error mx_error(const MxResult& result) {
  const std::string& text = result.error_text;
  switch (result.status) {
    case MxResult::kNoSuchDomain: return Error::permanent(EX_NOHOST, "5.1.2", text);
    case MxResult::kNullMx: return Error::permanent(EX_NOHOST, "5.1.10", text);
    case MxResult::kNoAddress: return Error::permanent(EX_NOHOST, "5.4.4", text);
    case MxResult::kOk:  // a caller's mistake; retrying is the safe way to be wrong
    case MxResult::kTemporary: break;
  }
  return Error::temporary(EX_TEMPFAIL, "4.4.3", text);
}

bool is_null_mx(const std::vector<MxRecord>& records) {
  return records.size() == 1 && records[0].preference == 0 &&
         (records[0].host.empty() || records[0].host == ".");
}

std::string normalize_host_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out(name);
  ascii_lower_in_place(out);
  return out;
}

bool is_host_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t label = 0;
  for (std::size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      if (label == 0 || label > 63) return false;
      label = 0;
      continue;
    }
    const char c = name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return false;
    ++label;
  }
  return true;
}

std::vector<MxRecord> order_mx(std::vector<MxRecord> records, std::mt19937_64& rng,
                               std::size_t max_hosts) {
  std::vector<MxRecord> kept;
  for (auto& r : records) {
    r.host = normalize_host_name(r.host);
    if (!is_host_name(r.host)) continue;  // the root, or what no A query could ask for
    auto same = std::find_if(kept.begin(), kept.end(),
                             [&](const MxRecord& k) { return k.host == r.host; });
    if (same == kept.end()) {
      kept.push_back(std::move(r));
    } else {
      same->preference = std::min(same->preference, r.preference);
    }
  }
  // Shuffle, then a stable sort: equal preferences stay in their random order.
  std::shuffle(kept.begin(), kept.end(), rng);
  std::stable_sort(kept.begin(), kept.end(), [](const MxRecord& a, const MxRecord& b) {
    return a.preference < b.preference;
  });
  if (kept.size() > max_hosts) kept.resize(max_hosts);
  return kept;
}

bool same_address(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) {
    const auto& x = reinterpret_cast<const sockaddr_in&>(a);
    const auto& y = reinterpret_cast<const sockaddr_in&>(b);
    return x.sin_addr.s_addr == y.sin_addr.s_addr && x.sin_port == y.sin_port;
  }
  if (a.ss_family == AF_INET6) {
    const auto& x = reinterpret_cast<const sockaddr_in6&>(a);
    const auto& y = reinterpret_cast<const sockaddr_in6&>(b);
    return std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0 &&
           x.sin6_port == y.sin6_port && x.sin6_scope_id == y.sin6_scope_id;
  }
  return false;
}

std::vector<sockaddr_storage> order_addresses(std::vector<sockaddr_storage> addresses,
                                              AddressOrder order, std::size_t max) {
  const sa_family_t first = order == AddressOrder::kIpv4First ? AF_INET : AF_INET6;
  std::vector<sockaddr_storage> out;
  for (const sa_family_t family : {first, static_cast<sa_family_t>(AF_INET + AF_INET6 - first)}) {
    for (const auto& a : addresses) {
      if (a.ss_family != family || out.size() >= max) continue;
      const bool seen = std::any_of(out.begin(), out.end(),
                                    [&](const sockaddr_storage& o) { return same_address(o, a); });
      if (!seen) out.push_back(a);
    }
  }
  return out;
}

void drop_repeated_addresses(std::vector<MxHost>& hosts) {
  std::vector<sockaddr_storage> seen;
  for (auto& host : hosts) {
    std::erase_if(host.addresses, [&](const sockaddr_storage& a) {
      return std::any_of(seen.begin(), seen.end(),
                         [&](const sockaddr_storage& s) { return same_address(s, a); });
    });
    seen.insert(seen.end(), host.addresses.begin(), host.addresses.end());
  }
  std::erase_if(hosts, [](const MxHost& h) { return h.addresses.empty(); });
}

std::string address_to_string(const sockaddr_storage& address) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (address.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(address).sin_addr, buf, sizeof buf);
  } else if (address.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(address).sin6_addr, buf,
              sizeof buf);
  }
  return buf;
}

bool parse_ip_address(std::string_view text, std::uint16_t port, sockaddr_storage& out) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return false;
  const std::string s(text);
  in_addr a4{};
  unsigned char a6[16];
  if (inet_pton(AF_INET, s.c_str(), &a4) == 1) {
    out = from_in4(a4);
  } else if (inet_pton(AF_INET6, s.c_str(), a6) == 1) {
    out = from_in6(a6);
  } else {
    return false;
  }
  set_port(out, port);
  return true;
}

HostsTable HostsTable::parse(std::string_view text) {
  HostsTable table;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    line = line.substr(0, line.find('#'));
    std::vector<std::string_view> fields;
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
      const std::size_t start = i;
      while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
      if (i > start) fields.push_back(line.substr(start, i - start));
    }
    sockaddr_storage address{};
    if (fields.size() < 2 || !parse_ip_address(fields[0], 0, address)) continue;
    for (std::size_t f = 1; f < fields.size(); ++f) {
      auto& list = table.names_[normalize_host_name(fields[f])];
      const bool seen = std::any_of(list.begin(), list.end(), [&](const sockaddr_storage& a) {
        return same_address(a, address);
      });
      if (!seen) list.push_back(address);
    }
  }
  return table;
}

std::vector<sockaddr_storage> HostsTable::lookup(std::string_view name) const {
  auto it = names_.find(normalize_host_name(name));
  return it == names_.end() ? std::vector<sockaddr_storage>{} : it->second;
}

// --- The resolver's state ------------------------------------------------------------------

struct MxResolver::HostsFile {
  bool loaded = false;
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  timespec mtime{};
  HostsTable table;
  std::string last_problem;  // logged once, not per lookup
};

namespace {

struct HostState {
  MxHost host;
  std::vector<sockaddr_storage> found;
  int pending = 0;  // A and AAAA queries not answered yet
  int a_status = ARES_ENODATA;
  int aaaa_status = ARES_ENODATA;
};

}  // namespace

struct MxResolver::Job {
  bool mx = true;  // resolve_mx; false: resolve_host
  std::string name;
  std::uint16_t port = 25;
  MxCallback callback;
  std::vector<HostState> hosts;
  std::size_t hosts_pending = 0;
  std::string notes;  // problems met on the way, for error_text
  MxResult result;
};

// What one c-ares query answers for; c-ares calls its callback exactly once, also with
// ARES_EDESTRUCTION when the channel goes away, and that call frees it.
struct MxResolver::Query {
  MxResolver* resolver;
  Job* job;
  std::size_t host;
  int type;
};

// --- The resolver ----------------------------------------------------------------------------

MxResolver::MxResolver(event_base* base, const ResolverConfig& config)
    : base_(base), config_(config), rng_(std::random_device{}()), hosts_(new HostsFile) {}

MxResolver::~MxResolver() {
  // ares_destroy answers every pending query with ARES_EDESTRUCTION and closes the sockets
  // (on_sock_state): both touch members, so it runs while they are all still here.
  destroying_ = true;
  channel_.reset();
}

Result<std::unique_ptr<MxResolver>> MxResolver::create(event_base* base,
                                                       const ResolverConfig& config) {
  std::unique_ptr<MxResolver> resolver(new MxResolver(base, config));
  if (Status s = resolver->init(); !s) return s.error();
  return Result<std::unique_ptr<MxResolver>>(std::move(resolver));
}

Status MxResolver::init() {
  auto config_error = [](std::string text) {
    return Error::permanent(EX_CONFIG, "5.3.5", "resolver: " + std::move(text));
  };
  if (config_.tries < 1 || config_.tries > 10) return config_error("tries must be 1..10");
  if (config_.timeout.count() < 1 || config_.timeout.count() > 60000) {
    return config_error("timeout must be 1 ms .. 60 s");
  }
  if (config_.max_mx_hosts < 1) return config_error("max_mx_hosts must be at least 1");
  if (config_.max_addresses_per_host < 1 ||
      config_.max_addresses_per_host > static_cast<std::size_t>(kMaxAnswerAddresses)) {
    return config_error("max_addresses_per_host must be 1..64");
  }
  std::string csv;
  for (const auto& server : config_.servers) {
    // c-ares takes one comma-separated string: a comma in an entry would smuggle in another.
    if (server.empty() || server.find_first_of(", \t") != std::string::npos) {
      return config_error("bad name server: " + printable(server));
    }
    if (!csv.empty()) csv += ',';
    csv += server;
  }

  if (const int rc = library_init(); rc != ARES_SUCCESS) {
    return Error::temporary(EX_OSERR, "4.3.0", std::string("c-ares: ") + ares_strerror(rc));
  }
  ares_options options{};
  options.sock_state_cb = &MxResolver::on_sock_state;
  options.sock_state_cb_data = this;
  options.timeout = static_cast<int>(config_.timeout.count());
  options.tries = config_.tries;
  ares_channel channel = nullptr;
  const int rc = ares_init_options(
      &channel, &options, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
  if (rc != ARES_SUCCESS) {
    return Error::temporary(EX_OSERR, "4.3.0", std::string("c-ares: ") + ares_strerror(rc));
  }
  channel_.reset(channel);
  if (!csv.empty()) {
    if (const int set = ares_set_servers_ports_csv(channel, csv.c_str()); set != ARES_SUCCESS) {
      return config_error("bad name server list " + printable(csv) + ": " + ares_strerror(set));
    }
  }

  timer_.reset(evtimer_new(base_, &MxResolver::on_timer, this));
  done_event_.reset(event_new(base_, -1, 0, &MxResolver::on_done, this));
  if (!timer_ || !done_event_) {
    return Error::temporary(EX_OSERR, "4.3.0", "resolver: cannot create events");
  }
  return {};
}

// --- libevent <-> c-ares ------------------------------------------------------------------------

void MxResolver::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
  auto* self = static_cast<MxResolver*>(data);
  if (!readable && !writable) {
    // May free the event whose callback is running (on_socket -> ares_process_fd -> here):
    // libevent allows that, and on_socket does not touch the event afterwards.
    self->sockets_.erase(fd);
    return;
  }
  const short what = static_cast<short>(EV_PERSIST | (readable ? EV_READ : 0) |
                                        (writable ? EV_WRITE : 0));
  Socket& socket = self->sockets_[fd];
  if (socket.event && socket.what == what) return;
  socket.event.reset(event_new(self->base_, fd, what, &MxResolver::on_socket, self));
  socket.what = what;
  if (!socket.event || event_add(socket.event.get(), nullptr) != 0) {
    // The query on this socket then ends by its timeout, a temporary failure.
    log_error("-", "resolver: cannot watch DNS socket %d", fd);
  }
}

void MxResolver::on_socket(evutil_socket_t fd, short what, void* arg) {
  auto* self = static_cast<MxResolver*>(arg);
  ares_process_fd(self->channel_.get(), (what & EV_READ) ? fd : ARES_SOCKET_BAD,
                  (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
  self->update_timer();
}

void MxResolver::on_timer(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<MxResolver*>(arg);
  // No socket is ready: c-ares only looks at its timeouts (retry, next server, give up).
  ares_process_fd(self->channel_.get(), ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  self->update_timer();
}

void MxResolver::update_timer() {
  timeval tv{};
  if (ares_timeout(channel_.get(), nullptr, &tv) == nullptr) {
    evtimer_del(timer_.get());
    return;
  }
  evtimer_add(timer_.get(), &tv);
}

void MxResolver::on_done(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<MxResolver*>(arg);
  const std::weak_ptr<int> alive = self->alive_;
  // Taken first: a callback may start lookups that finish into done_ (handled in the next
  // round) or destroy the resolver (then the rest of the batch is dropped with it).
  std::vector<std::unique_ptr<Job>> batch;
  batch.swap(self->done_);
  for (auto& job : batch) {
    try {
      job->callback(std::move(job->result));
    } catch (const std::exception& e) {
      log_error("-", "resolver callback for %s: %s", printable(job->name).c_str(), e.what());
    } catch (...) {
      log_error("-", "resolver callback for %s failed", printable(job->name).c_str());
    }
    if (alive.expired()) return;
  }
}

// --- Lookups ----------------------------------------------------------------------------------

MxResolver::Job& MxResolver::add_job(MxCallback callback, std::string name, std::uint16_t port,
                                     bool mx) {
  auto job = std::make_unique<Job>();
  job->mx = mx;
  job->name = std::move(name);
  job->port = port;
  job->callback = std::move(callback);
  Job& ref = *job;
  jobs_.emplace(&ref, std::move(job));
  return ref;
}

void MxResolver::finish(Job& job) {
  auto it = jobs_.find(&job);
  if (it == jobs_.end()) return;
  done_.push_back(std::move(it->second));
  jobs_.erase(it);
  event_active(done_event_.get(), EV_TIMEOUT, 0);
}

void MxResolver::resolve_mx(std::string_view domain, MxCallback callback, std::uint16_t port) {
  Job& job = add_job(std::move(callback), normalize_host_name(domain), port, true);
  if (!is_host_name(job.name)) {
    // Address literals and U-labels included: the caller parses the one and converts the
    // other to A-labels (IDNA) before asking.
    job.result.status = MxResult::kNoSuchDomain;
    job.result.error_text = printable(domain) + ": not a domain name that can be looked up";
    finish(job);
    return;
  }
  ares_query(channel_.get(), job.name.c_str(), ns_c_in, ns_t_mx, &MxResolver::on_mx_answer,
             new Query{this, &job, 0, ns_t_mx});
  update_timer();
}

void MxResolver::resolve_host(std::string_view name, std::uint16_t port, MxCallback callback) {
  Job& job = add_job(std::move(callback), normalize_host_name(name), port, false);
  sockaddr_storage address{};
  if (parse_ip_address(name, port, address)) {
    job.result.status = MxResult::kOk;
    job.result.hosts.push_back(MxHost{std::string(name), 0, {address}, false});
    finish(job);
    return;
  }
  if (!is_host_name(job.name)) {
    job.result.status = MxResult::kNoSuchDomain;
    job.result.error_text = printable(name) + ": not a host name that can be looked up";
    finish(job);
    return;
  }
  job.hosts.push_back(HostState{MxHost{job.name, 0, {}, false}, {}, 0, ARES_ENODATA,
                                ARES_ENODATA});
  start_hosts(job);
  update_timer();
}

void MxResolver::on_mx_answer(void* arg, int status, int, unsigned char* abuf, int alen) {
  std::unique_ptr<Query> query(static_cast<Query*>(arg));
  if (query->resolver->destroying_) return;
  query->resolver->mx_answered(*query->job, status, abuf, alen);
}

void MxResolver::mx_answered(Job& job, int status, const unsigned char* abuf, int alen) {
  MxResult& result = job.result;
  std::vector<MxRecord> records;
  if (status == ARES_SUCCESS) {
    ares_mx_reply* reply = nullptr;
    status = ares_parse_mx_reply(abuf, alen, &reply);
    for (const ares_mx_reply* r = reply; r != nullptr; r = r->next) {
      records.push_back(MxRecord{r->host != nullptr ? r->host : "", r->priority});
    }
    if (reply != nullptr) ares_free_data(reply);
  }
  switch (status) {
    case ARES_SUCCESS: break;
    case ARES_ENODATA:
      // No MX (NODATA, or only a CNAME without one): the domain is its own exchanger.
      job.hosts.push_back(HostState{MxHost{job.name, 0, {}, true}, {}, 0, ARES_ENODATA,
                                    ARES_ENODATA});
      start_hosts(job);
      return;
    case ARES_ENOTFOUND:
    case ARES_EBADNAME:
      result.status = MxResult::kNoSuchDomain;
      result.error_text = job.name + ": no such domain (" + status_word(status) + ")";
      finish(job);
      return;
    default:
      result.status = MxResult::kTemporary;
      result.error_text = job.name + ": MX lookup failed: " + status_word(status);
      finish(job);
      return;
  }
  if (is_null_mx(records)) {
    result.status = MxResult::kNullMx;
    result.error_text = job.name + ": domain does not accept mail (null MX, RFC 7505)";
    finish(job);
    return;
  }
  const std::size_t listed = records.size();
  std::vector<MxRecord> ordered = order_mx(std::move(records), rng_, config_.max_mx_hosts);
  if (ordered.empty()) {
    // Only the root or names that are no host names: a definite answer, and no host to try.
    result.status = MxResult::kNoAddress;
    result.error_text = job.name + ": MX records name no usable host";
    finish(job);
    return;
  }
  if (ordered.size() < listed) {
    append_note(job.notes, std::to_string(listed - ordered.size()) +
                               " MX record(s) not used (unusable name, duplicate, or over "
                               "max_mx_hosts)");
  }
  for (auto& r : ordered) {
    job.hosts.push_back(HostState{MxHost{std::move(r.host), r.preference, {}, false}, {}, 0,
                                  ARES_ENODATA, ARES_ENODATA});
  }
  start_hosts(job);
}

void MxResolver::start_hosts(Job& job) {
  // Counted in full before the first query: c-ares may answer some at once (inside
  // ares_query), and the job must not look finished while hosts are still to be started.
  job.hosts_pending = job.hosts.size();
  for (std::size_t i = 0; i < job.hosts.size(); ++i) {
    HostState& h = job.hosts[i];
    if (const HostsTable* table = hosts_table()) {
      std::vector<sockaddr_storage> listed = table->lookup(h.host.name);
      if (!listed.empty()) {
        h.found = std::move(listed);
        h.a_status = h.aaaa_status = ARES_SUCCESS;
        host_done(job);
        continue;
      }
    }
    h.pending = 2;
    send_query(job, i, ns_t_a);
    send_query(job, i, ns_t_aaaa);
  }
}

void MxResolver::send_query(Job& job, std::size_t host, int type) {
  ares_query(channel_.get(), job.hosts[host].host.name.c_str(), ns_c_in, type,
             &MxResolver::on_address_answer, new Query{this, &job, host, type});
}

void MxResolver::on_address_answer(void* arg, int status, int, unsigned char* abuf, int alen) {
  std::unique_ptr<Query> query(static_cast<Query*>(arg));
  if (query->resolver->destroying_) return;
  query->resolver->address_answered(*query->job, query->host, query->type, status, abuf, alen);
}

void MxResolver::address_answered(Job& job, std::size_t host, int type, int status,
                                  const unsigned char* abuf, int alen) {
  HostState& h = job.hosts[host];
  if (status == ARES_SUCCESS && type == ns_t_a) {
    ares_addrttl answers[kMaxAnswerAddresses];
    int count = kMaxAnswerAddresses;
    status = ares_parse_a_reply(abuf, alen, nullptr, answers, &count);
    for (int i = 0; status == ARES_SUCCESS && i < count; ++i) {
      h.found.push_back(from_in4(answers[i].ipaddr));
    }
  } else if (status == ARES_SUCCESS) {
    ares_addr6ttl answers[kMaxAnswerAddresses];
    int count = kMaxAnswerAddresses;
    status = ares_parse_aaaa_reply(abuf, alen, nullptr, answers, &count);
    for (int i = 0; status == ARES_SUCCESS && i < count; ++i) {
      h.found.push_back(from_in6(&answers[i].ip6addr));
    }
  }
  (type == ns_t_a ? h.a_status : h.aaaa_status) = status;
  if (--h.pending == 0) host_done(job);
}

void MxResolver::host_done(Job& job) {
  if (--job.hosts_pending == 0) complete(job);
}

void MxResolver::complete(Job& job) {
  MxResult& result = job.result;
  bool temporary = false;
  bool nxdomain = false;  // of the last host without an address: matters for a single one
  for (auto& h : job.hosts) {
    for (auto& a : h.found) set_port(a, job.port);
    h.host.addresses =
        order_addresses(std::move(h.found), config_.address_order, config_.max_addresses_per_host);
    if (!h.host.addresses.empty()) {
      result.hosts.push_back(std::move(h.host));
      continue;
    }
    // Both families failed. One temporary failure is enough to call it temporary: the other
    // family's NODATA says nothing about this one.
    const bool host_temporary = !definite(h.a_status) || !definite(h.aaaa_status);
    temporary = temporary || host_temporary;
    nxdomain = h.a_status == ARES_ENOTFOUND && h.aaaa_status == ARES_ENOTFOUND;
    const std::string why = host_temporary ? "lookup failed" : nxdomain ? "no such host" : "no address";
    append_note(job.notes, h.host.name + ": " + why + " (A: " + status_word(h.a_status) +
                               ", AAAA: " + status_word(h.aaaa_status) + ")");
  }
  drop_repeated_addresses(result.hosts);
  const bool single = !job.mx || (job.hosts.size() == 1 && job.hosts[0].host.implicit);
  if (!result.hosts.empty()) {
    result.status = MxResult::kOk;
  } else if (temporary) {
    result.status = MxResult::kTemporary;
  } else if (single && nxdomain) {
    result.status = MxResult::kNoSuchDomain;
  } else {
    result.status = MxResult::kNoAddress;
  }
  if (result.status != MxResult::kOk && job.mx) {
    const bool temp = result.status == MxResult::kTemporary;
    const char* what = single ? (temp ? "no MX, and the address lookup failed"
                                      : "no MX and no address")
                              : (temp ? "no mail exchanger could be looked up"
                                      : "no mail exchanger has an address");
    result.error_text = job.name + ": " + what;
  }
  if (!job.notes.empty()) {
    if (!result.error_text.empty()) result.error_text += ": ";
    result.error_text += job.notes;
  }
  finish(job);
}

const HostsTable* MxResolver::hosts_table() {
  if (config_.hosts_file.empty()) return nullptr;
  HostsFile& file = *hosts_;
  auto problem = [&](std::string text) -> const HostsTable* {
    // Like the C library: a hosts file that cannot be read is skipped, and DNS answers.
    if (text != file.last_problem) log_warning("-", "resolver: %s", text.c_str());
    file.last_problem = std::move(text);
    file.loaded = false;
    return nullptr;
  };
  struct stat st {};
  if (::stat(config_.hosts_file.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      file.loaded = false;
      return nullptr;
    }
    return problem(config_.hosts_file + ": " + std::strerror(errno));
  }
  if (file.loaded && st.st_dev == file.dev && st.st_ino == file.ino && st.st_size == file.size &&
      st.st_mtim.tv_sec == file.mtime.tv_sec && st.st_mtim.tv_nsec == file.mtime.tv_nsec) {
    return &file.table;
  }
  auto text = read_small_file(config_.hosts_file, kMaxHostsFileSize);
  if (!text) return problem(text.error().text());
  file.table = HostsTable::parse(*text);
  file.dev = st.st_dev;
  file.ino = st.st_ino;
  file.size = st.st_size;
  file.mtime = st.st_mtim;
  file.loaded = true;
  file.last_problem.clear();
  return &file.table;
}

}  // namespace mailwright::mta
