// mda's command line: mail.local compatible flags plus LMTP mode and a config file.
#pragma once

#include <string>
#include <vector>

#include "libmail/result.h"

namespace mailwright::mda {

struct MdaOptions {
  std::string sender;            // -f or -r; empty when not given
  bool sender_given = false;
  bool lmtp = false;             // -l: speak LMTP (RFC 2033) on stdin/stdout
  bool print_config = false;     // -P: print the effective configuration and exit
  bool check = false;            // -n: check configuration and mailbox directories, then exit
  bool verbose = false;          // -v: log to stderr as well, with debug lines
  std::string config_path;       // -C FILE
  std::vector<std::string> users;
};

// Parses argv (without argv[0]). Errors are EX_USAGE and say what was wrong.
Result<MdaOptions> parse_mda_options(const std::vector<std::string>& args);

const char* mda_usage();

}  // namespace mailwright::mda
