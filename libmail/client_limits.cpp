#include "libmail/client_limits.h"

namespace mailwright {

bool ConnectionLimits::admit(const std::string& address) {
  if (total_ >= max_total_) return false;
  std::size_t& n = per_address_[address];
  if (n >= max_per_address_) {
    if (n == 0) per_address_.erase(address);
    return false;
  }
  ++n;
  ++total_;
  return true;
}

void ConnectionLimits::release(const std::string& address) {
  auto it = per_address_.find(address);
  if (it == per_address_.end()) return;
  if (--it->second == 0) per_address_.erase(it);
  --total_;
}

void FailureDelay::expire(Clock::time_point now) {
  // Sweep at most once a minute so a flood of addresses costs amortised constant time.
  if (now - last_sweep_ < std::chrono::minutes(1)) return;
  last_sweep_ = now;
  for (auto it = failures_.begin(); it != failures_.end();) {
    it = now - it->second.last > forget_after_ ? failures_.erase(it) : std::next(it);
  }
}

std::chrono::milliseconds FailureDelay::record_failure(const std::string& address,
                                                       Clock::time_point now) {
  expire(now);
  Entry& e = failures_[address];
  if (e.count > 0 && now - e.last > forget_after_) e.count = 0;
  e.last = now;
  ++e.count;
  auto delay = base_;
  for (unsigned i = 1; i < e.count && delay < max_; ++i) delay *= 2;
  return delay < max_ ? delay : max_;
}

}  // namespace mailwright
