// Messages the mta makes itself: delivery status notifications and alias expansions. They are
// queued like mail received by SMTP (incoming/, then one durable commit into queue/), so they
// survive a crash the same way and are delivered by the same code.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "libmail/result.h"
#include "mta/queue_file.h"
#include "mta/spool.h"

namespace mailwright::mta {

// Queues envelope (its queue_id is set here) with the message text followed by length octets
// of body_fd from offset (body_fd may be -1). Returns the new queue id once it is durable.
Result<std::string> queue_new_message(Spool& spool, Envelope envelope, std::string_view text,
                                      int body_fd = -1, std::uint64_t offset = 0,
                                      std::uint64_t length = 0);

// The same under the queue id envelope already has (a caller that wrote it into the message).
Result<std::string> queue_message_as(Spool& spool, Envelope envelope, std::string_view text);

}  // namespace mailwright::mta
