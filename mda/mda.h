// mda's entry point after argument parsing: configuration, then one message on stdin to the
// named users, or an LMTP session, or the -P / -n reports. Returns a sysexits(3) code.
#pragma once

#include <array>

#include "libmail/config.h"
#include "libmail/mailbox_config.h"
#include "mda/mda_options.h"

namespace mailwright::mda {

inline constexpr std::array kMdaOnlyKeys{
    ConfigKey{"temp_dir", ConfigType::kPath, "/tmp",
              "where a message is staged while it is delivered to its recipients"},
};
inline constexpr auto kMdaConfigKeys = join_config_keys(kMailboxConfigKeys, kMdaOnlyKeys);

int run_mda(const MdaOptions& options);

}  // namespace mailwright::mda
