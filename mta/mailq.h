// mailq (mta -bp): the queue as sendmail lists it -- each message with its id, size, arrival
// time and sender, then its recipients still to be delivered, with the last error of each
// deferred one.
#pragma once

#include <string>

#include "libmail/result.h"
#include "mta/spool.h"

namespace mailwright::mta {

Result<std::string> format_queue_listing(Spool& spool);

}  // namespace mailwright::mta
