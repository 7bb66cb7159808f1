// Per-client bookkeeping for servers: how many connections each address holds (so one
// client cannot take every slot) and how long its next failed login must wait (so password
// guessing gets slower with every failure, per address, not per connection).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <unordered_map>

namespace mailwright {

class ConnectionLimits {
 public:
  ConnectionLimits(std::size_t max_total, std::size_t max_per_address)
      : max_total_(max_total), max_per_address_(max_per_address) {}
  // Counts a new connection from address, or refuses it (false) when a limit is reached.
  bool admit(const std::string& address);
  void release(const std::string& address);
  std::size_t total() const { return total_; }

 private:
  std::size_t max_total_;
  std::size_t max_per_address_;
  std::size_t total_ = 0;
  std::unordered_map<std::string, std::size_t> per_address_;
};

class FailureDelay {
 public:
  using Clock = std::chrono::steady_clock;
  FailureDelay(std::chrono::milliseconds base, std::chrono::milliseconds max,
               std::chrono::seconds forget_after)
      : base_(base), max_(max), forget_after_(forget_after) {}
  // Records a failure and returns how long to wait before answering it: base, doubling with
  // each recent failure from the same address, at most max.
  std::chrono::milliseconds record_failure(const std::string& address, Clock::time_point now);
  void record_success(const std::string& address) { failures_.erase(address); }
  std::size_t tracked() const { return failures_.size(); }

 private:
  struct Entry {
    unsigned count = 0;
    Clock::time_point last;
  };
  void expire(Clock::time_point now);
  std::chrono::milliseconds base_, max_;
  std::chrono::seconds forget_after_;
  std::unordered_map<std::string, Entry> failures_;
  Clock::time_point last_sweep_{};
};

}  // namespace mailwright
