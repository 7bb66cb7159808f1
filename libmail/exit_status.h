// The one table that maps sysexits(3) codes to temporary/permanent and to an RFC 3463 status.
// mda exits through it; mta reads mda's exit status through it.
#pragma once

#include <sysexits.h>

#include <string_view>

namespace mailwright {

struct ExitStatusInfo {
  int code;
  bool temporary;
  std::string_view status;  // RFC 3463 enhanced status code
  std::string_view text;    // what the code means, for logs and replies
};

// Unknown codes (a crashed child, a signal) are treated as temporary failures: retrying is
// safer than bouncing mail for a fault of ours.
const ExitStatusInfo& exit_status_info(int code);

// Orders failures so that a multi-recipient run can report the worst one: temporary beats
// permanent beats success. A caller that gets a permanent code bounces the message for every
// recipient it named, so one recipient's temporary failure must win or their mail is lost;
// mail.local does the same.
int worse_exit_code(int a, int b);

}  // namespace mailwright
