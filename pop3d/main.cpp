// pop3d: the POP3 server. See pop3d(8).
#include <cstdio>
#include <string>
#include <vector>

#include "pop3d/pop3d.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  auto options = mailwright::pop3::parse_pop3d_options(args);
  if (!options) {
    std::fprintf(stderr, "pop3d: %s\n%s", options.error().text().c_str(),
                 mailwright::pop3::pop3d_usage());
    return options.error().exit_code();
  }
  return mailwright::pop3::run_pop3d(*options);
}
