// Every length and count the suite enforces, with the rule it comes from. Hitting one gives a
// clear reply or message, never a silent truncation.
#pragma once

#include <cstddef>

namespace mailwright::limits {

// RFC 5321 4.5.3.1.1-3: local part 64 octets, domain 255, path 256 including the brackets.
inline constexpr std::size_t kLocalPart = 64;
inline constexpr std::size_t kDomain = 255;
inline constexpr std::size_t kPath = 256;
// RFC 5321 4.5.3.1.4-6: command line 512 octets, text line 1000, both counting the CRLF.
inline constexpr std::size_t kCommandLine = 512;
inline constexpr std::size_t kTextLine = 1000;
// RFC 5321 4.5.3.1.8: at least 100 recipients must be buffered.
inline constexpr std::size_t kRecipients = 100;
// RFC 5322 2.1.1: a line must not exceed 998 characters; we read header fields of folded lines
// up to this many octets in all, so a header of a million continuation lines cannot exhaust
// memory (Dovecot CVE-2024-23185).
inline constexpr std::size_t kHeaderField = 64 * 1024;
inline constexpr std::size_t kHeaderFields = 10000;
// Longest physical line mda accepts from standard input; longer lines are stored as they come
// but read in pieces of this size.
inline constexpr std::size_t kReadChunk = 64 * 1024;
// User names: longer than any account database allows (Linux useradd: 32).
inline constexpr std::size_t kUserName = 64;
// A configuration file larger than this is refused rather than read.
inline constexpr std::size_t kConfigFile = 1024 * 1024;

}  // namespace mailwright::limits
