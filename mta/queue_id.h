// Queue ids: unique, sortable names for queued messages, safe to use as file names.
//
// An id is kQueueIdLength (20) characters of the RFC 4648 base32hex alphabet [0-9A-V], so it
// holds no '/', '.', lower case or anything else a path could be built from. Fields, each a
// fixed number of base32 digits, most significant first:
//   7  seconds since the epoch (35 bits: until the year 3058)
//   4  microseconds within the second (20 bits)
//   5  process id (25 bits; Linux pid_max is at most 2^22)
//   4  per-process counter (20 bits, wraps)
// Because the alphabet is in ASCII order and every field has a fixed width, ids sort by
// arrival time as strings. Two processes running at the same time have different pids; one
// process never repeats a time because each call uses a microsecond later than the last one
// it used (so a clock stepped back, or many ids in one microsecond, run ahead of the real
// clock for a while rather than repeat), and the counter changes on every call too. A pid
// reused by a later process would need the same microsecond too; the spool still creates files
// with O_EXCL, so even that cannot overwrite a message (the caller retries with a new id).
//
// new_queue_id() is thread-safe and fork-safe (the pid is read on every call).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mailwright::mta {

inline constexpr std::size_t kQueueIdLength = 20;

// A fresh id from the real-time clock, getpid() and the process counter.
std::string new_queue_id();

// The id for explicit parts, for tests; each field is reduced modulo its width.
std::string format_queue_id(std::uint64_t seconds, std::uint32_t microseconds, std::uint32_t pid,
                            std::uint32_t counter);

// Exactly kQueueIdLength characters of [0-9A-V]. A name that passes can be joined to a
// directory path as it is.
bool is_valid_queue_id(std::string_view id);

}  // namespace mailwright::mta
