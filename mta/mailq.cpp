#include "mta/mailq.h"

#include <sys/stat.h>

#include <cinttypes>
#include <cstdio>
#include <ctime>

#include "libmail/log.h"

namespace mailwright::mta {
namespace {

std::string short_time(std::int64_t when) {
  std::time_t t = static_cast<std::time_t>(when);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%a %b %e %H:%M", &tm);
  return buf;
}

}  // namespace

Result<std::string> format_queue_listing(Spool& spool) {
  auto ids = spool.list_queue();
  if (!ids) return ids.error();
  if (ids->empty()) return std::string("Mail queue is empty\n");
  std::string out;
  std::size_t listed = 0;
  std::string body;
  for (const std::string& id : *ids) {
    std::size_t offset = 0;
    auto envelope = spool.load_envelope(id, offset);
    if (!envelope) continue;  // delivered meanwhile, or being repaired
    std::uint64_t size = 0;
    if (auto fd = spool.open_queue_file(id)) {
      struct stat st {};
      if (::fstat(fd->get(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) >= offset) {
        size = static_cast<std::uint64_t>(st.st_size) - offset;
      }
    }
    ++listed;
    char line[256];
    std::snprintf(line, sizeof line, "%-20s %9" PRIu64 " %-16s  ", id.c_str(), size,
                  short_time(envelope->arrival_time).c_str());
    body += line;
    body += "<" + printable(envelope->sender) + ">\n";
    for (const Recipient& r : envelope->recipients) {
      if (r.state == DeliveryState::kDelivered || r.state == DeliveryState::kFailed) continue;
      body += std::string(50, ' ') + "<" + printable(r.address) + ">\n";
      if (r.state == DeliveryState::kDeferred) {
        body += std::string(52, ' ') + "(deferred " + std::to_string(r.attempts) +
                (r.attempts == 1 ? " time" : " times") + ", next " +
                short_time(r.next_attempt) + ": " + printable(r.last_error) + ")\n";
      }
    }
  }
  if (listed == 0) return std::string("Mail queue is empty\n");
  out = "Mail queue (" + std::to_string(listed) + (listed == 1 ? " message" : " messages") +
        ")\n";
  out += "--Queue ID---------- ---Size-- ---Arrived-------  Sender/Recipients\n";
  out += body;
  return out;
}

}  // namespace mailwright::mta
