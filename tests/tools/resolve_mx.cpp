// resolve_mx: the mta's MX resolver from the command line, for the integration tests (and for
// a look at what delivery would do with a domain).
//
//   resolve_mx [--server ADDR[:PORT]]... [--hosts FILE | --no-hosts] [--timeout MS] [--tries N]
//              [--ipv6-first] [--port N] [--max-hosts N] [--host] NAME...
//
// Every NAME is looked up at once (so the resolver is exercised with concurrent queries) and
// the results are printed in argument order, one block per NAME:
//   ; NAME
//   STATUS PREF HOST ADDR,ADDR[ implicit]     one line per host, kOk only
//   STATUS - NAME -                           when there is no host to try
//   ; error: TEXT                             when the resolver said what failed
// STATUS is ok, nxdomain, nullmx, noaddress or temporary. --host looks names up as hosts
// (A/AAAA only, no MX). Exit status: 0 when every lookup ended (whatever its status), 64 for
// usage, 78 for a resolver configuration the resolver refused.
#include <sysexits.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "libmail/event_loop.h"
#include "libmail/log.h"
#include "mta/mx_resolver.h"

using mailwright::mta::AddressOrder;
using mailwright::mta::MxResolver;
using mailwright::mta::MxResult;
using mailwright::mta::ResolverConfig;

namespace {

int usage() {
  std::fputs(
      "usage: resolve_mx [--server ADDR[:PORT]]... [--hosts FILE | --no-hosts] [--timeout MS]\n"
      "                  [--tries N] [--ipv6-first] [--port N] [--max-hosts N] [--host] NAME...\n",
      stderr);
  return EX_USAGE;
}

bool parse_number(const char* text, long min, long max, long& out) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < min || v > max) return false;
  out = v;
  return true;
}

void print(const std::string& name, const MxResult& result) {
  std::printf("; %s\n", name.c_str());
  const char* status = mailwright::mta::to_string(result.status);
  if (result.hosts.empty()) std::printf("%s - %s -\n", status, name.c_str());
  for (const auto& host : result.hosts) {
    std::string addresses;
    for (const auto& a : host.addresses) {
      if (!addresses.empty()) addresses += ',';
      addresses += mailwright::mta::address_to_string(a);
    }
    std::printf("%s %u %s %s%s\n", status, host.preference, host.name.c_str(), addresses.c_str(),
                host.implicit ? " implicit" : "");
  }
  if (!result.error_text.empty()) {
    std::printf("; error: %s\n", mailwright::printable(result.error_text, 1000).c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  mailwright::log_open("resolve_mx", mailwright::LogTarget::kStderr, true);
  ResolverConfig config;
  bool hosts_only = false;
  long port = 25;
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    long n = 0;
    if (arg == "--server" && has_value) {
      config.servers.emplace_back(argv[++i]);
    } else if (arg == "--hosts" && has_value) {
      config.hosts_file = argv[++i];
    } else if (arg == "--no-hosts") {
      config.hosts_file.clear();
    } else if (arg == "--timeout" && has_value && parse_number(argv[++i], 1, 600000, n)) {
      config.timeout = std::chrono::milliseconds(n);
    } else if (arg == "--tries" && has_value && parse_number(argv[++i], 1, 100, n)) {
      config.tries = static_cast<int>(n);
    } else if (arg == "--ipv6-first") {
      config.address_order = AddressOrder::kIpv6First;
    } else if (arg == "--port" && has_value && parse_number(argv[++i], 1, 65535, n)) {
      port = n;
    } else if (arg == "--max-hosts" && has_value && parse_number(argv[++i], 1, 1000, n)) {
      config.max_mx_hosts = static_cast<std::size_t>(n);
    } else if (arg == "--host") {
      hosts_only = true;
    } else if (arg.starts_with("--")) {
      return usage();
    } else {
      names.push_back(arg);
    }
  }
  if (names.empty()) return usage();

  auto base = mailwright::make_event_base();
  auto resolver = MxResolver::create(base.get(), config);
  if (!resolver) {
    std::fprintf(stderr, "resolve_mx: %s\n", resolver.error().text().c_str());
    return resolver.error().is_temporary() ? EX_TEMPFAIL : EX_CONFIG;
  }
  std::vector<MxResult> results(names.size());
  std::size_t outstanding = names.size();
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto done = [&, i](MxResult result) {
      results[i] = std::move(result);
      if (--outstanding == 0) event_base_loopexit(base.get(), nullptr);
    };
    if (hosts_only) {
      (*resolver)->resolve_host(names[i], static_cast<std::uint16_t>(port), done);
    } else {
      (*resolver)->resolve_mx(names[i], done, static_cast<std::uint16_t>(port));
    }
  }
  event_base_dispatch(base.get());
  if (outstanding != 0) {
    std::fprintf(stderr, "resolve_mx: the event loop ended with %zu lookups pending\n",
                 outstanding);
    return EX_SOFTWARE;
  }
  for (std::size_t i = 0; i < names.size(); ++i) print(names[i], results[i]);
  return 0;
}
