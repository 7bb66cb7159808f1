// mda: the mail delivery agent. Reads one message on standard input and appends it to each
// user's mailbox, or speaks LMTP with -l. See mda(8).
#include <cstdio>
#include <string>
#include <vector>

#include "mda/mda.h"
#include "mda/mda_options.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  auto options = mailwright::mda::parse_mda_options(args);
  if (!options) {
    std::fprintf(stderr, "mda: %s\n%s", options.error().text().c_str(),
                 mailwright::mda::mda_usage());
    return options.error().exit_code();
  }
  return mailwright::mda::run_mda(*options);
}
