// Maildir delivery (the layout of D. J. Bernstein's maildir(5)): tmp/, new/ and cur/ under
// one directory; a message is written to tmp/ under a unique name, fsync'd, linked into new/,
// and new/ is fsync'd, so a crash leaves either no message or a whole one, never a half.
//
// Unique names are "SECONDS.M<usec>P<pid>Q<n>.HOST,S=<size>,W=<size with CRLF>": the ,S= and
// ,W= fields (as Dovecot writes them) let a POP3 server answer LIST without reading files.
// No locking is needed: names never collide and link(2) is atomic.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "libmail/result.h"

namespace mailwright {

// Creates dir and its tmp/, new/, cur/ (mode 0700) where missing; refuses symlinks there.
Status ensure_maildir(const std::string& dir);

// Characters of a host name that cannot stand in a file name are escaped as maildir(5) says.
std::string maildir_host_part(std::string_view host);

struct MaildirSizes {
  std::uint64_t size = 0;         // octets stored (LF line ends)
  std::uint64_t crlf_size = 0;    // octets a client sees with CRLF line ends
};

// Delivers header_prefix followed by size octets read from src_fd (offset 0). sizes must
// describe the result. Returns the path of the new file under new/.
Result<std::string> deliver_to_maildir(const std::string& dir, std::string_view header_prefix,
                                       int src_fd, std::uint64_t size, const MaildirSizes& sizes);

// Parses ",S=" and ",W=" from a maildir file name; zero where absent.
MaildirSizes maildir_sizes_from_name(std::string_view name);

}  // namespace mailwright
