// mta: the mail transfer agent. See mta(8).
#include <cstdio>
#include <string>
#include <vector>

#include "mta/mta.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  args = mailwright::mta::arguments_for_name(argc > 0 ? argv[0] : "mta", std::move(args));
  auto options = mailwright::mta::parse_mta_options(args);
  if (!options) {
    std::fprintf(stderr, "mta: %s\n%s", options.error().text().c_str(),
                 mailwright::mta::mta_usage());
    return options.error().exit_code();
  }
  return mailwright::mta::run_mta(*options);
}
