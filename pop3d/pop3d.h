// pop3d's entry point after argument parsing: configuration, TLS, accounts, then either the
// standalone daemon (-d) or one session on standard input (inetd). Returns a sysexits code.
#pragma once

#include <string>
#include <vector>

#include "libmail/result.h"

namespace mailwright::pop3 {

struct Pop3dOptions {
  bool daemon = false;        // -d: listen as configured
  bool foreground = false;    // -f: with -d, stay in the foreground and log to stderr
  bool implicit_tls = false;  // -s: inetd mode, TLS from the first byte (POP3S)
  bool print_config = false;  // -P
  bool check = false;         // -n
  bool verbose = false;       // -v
  std::string config_path;    // -C
};

Result<Pop3dOptions> parse_pop3d_options(const std::vector<std::string>& args);
const char* pop3d_usage();
int run_pop3d(const Pop3dOptions& options);

}  // namespace mailwright::pop3
