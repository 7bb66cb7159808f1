#include "mta/queue_id.h"

#include <sys/time.h>
#include <unistd.h>

#include <mutex>

namespace mailwright::mta {

namespace {

constexpr char kAlphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";

void append_base32(std::string& out, std::uint64_t value, int digits) {
  for (int i = digits - 1; i >= 0; --i) {
    out.push_back(kAlphabet[(value >> (5 * i)) & 31]);
  }
}

}  // namespace

std::string format_queue_id(std::uint64_t seconds, std::uint32_t microseconds, std::uint32_t pid,
                            std::uint32_t counter) {
  std::string id;
  id.reserve(kQueueIdLength);
  append_base32(id, seconds, 7);
  append_base32(id, microseconds, 4);
  append_base32(id, pid, 5);
  append_base32(id, counter, 4);
  return id;
}

std::string new_queue_id() {
  static std::mutex mutex;
  static std::uint64_t last_usec = 0;
  static std::uint32_t counter = 0;
  struct timeval tv {};
  ::gettimeofday(&tv, nullptr);
  auto now =
      static_cast<std::uint64_t>(tv.tv_sec) * 1000000u + static_cast<std::uint64_t>(tv.tv_usec);
  std::uint64_t usec = 0;
  std::uint32_t count = 0;
  {
    std::lock_guard<std::mutex> lock(mutex);
    // Every call gets a later microsecond than the one before, even when the clock is stepped
    // back or two calls fall in one microsecond, so one process never repeats a time.
    if (now <= last_usec)
      now = last_usec + 1;
    last_usec = now;
    usec = now;
    count = counter++;
  }
  return format_queue_id(usec / 1000000u, static_cast<std::uint32_t>(usec % 1000000u),
                         static_cast<std::uint32_t>(::getpid()), count);
}

bool is_valid_queue_id(std::string_view id) {
  if (id.size() != kQueueIdLength)
    return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'V')))
      return false;
  }
  return true;
}

}  // namespace mailwright::mta
