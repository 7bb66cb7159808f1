#include "mda/mda_options.h"

#include <sysexits.h>

namespace mailwright::mda {

const char* mda_usage() {
  return "usage: mda [-dv] [-C file] [-f sender] user ...\n"
         "       mda -l [-v] [-C file]\n"
         "       mda -P | -n [-C file]\n";
}

Result<MdaOptions> parse_mda_options(const std::vector<std::string>& args) {
  MdaOptions opts;
  std::size_t i = 0;
  auto usage = [](std::string why) { return Error::permanent(EX_USAGE, "5.5.4", std::move(why)); };
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') break;
    for (std::size_t j = 1; j < arg.size(); ++j) {
      char flag = arg[j];
      switch (flag) {
        case 'd':  // mail.local's "deliver" flag: delivery is all mda does
          break;
        case 'l':
          opts.lmtp = true;
          break;
        case 'P':
          opts.print_config = true;
          break;
        case 'n':
          opts.check = true;
          break;
        case 'v':
          opts.verbose = true;
          break;
        case 'f':
        case 'r':
        case 'C': {
          // The value is the rest of this word or the next word, as getopt(3) does it.
          std::string value;
          if (j + 1 < arg.size()) {
            value = arg.substr(j + 1);
          } else if (i + 1 < args.size()) {
            value = args[++i];
          } else {
            return usage(std::string("option -") + flag + " needs a value");
          }
          if (flag == 'C') {
            opts.config_path = value;
          } else {
            opts.sender = value;
            opts.sender_given = true;
          }
          j = arg.size();
          break;
        }
        default:
          return usage(std::string("unknown option -") + flag);
      }
    }
  }
  for (; i < args.size(); ++i) opts.users.push_back(args[i]);
  const int modes = int{opts.lmtp} + int{opts.print_config} + int{opts.check};
  if (modes > 1) return usage("-l, -P and -n exclude each other");
  if (opts.lmtp && !opts.users.empty()) return usage("-l takes no user names");
  if (modes == 0 && opts.users.empty()) return usage("no recipient given");
  return opts;
}

}  // namespace mailwright::mda
