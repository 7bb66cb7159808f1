// File I/O that acknowledges only what is on disk.
//
// Every descriptor is opened with O_CLOEXEC. Functions that create files take explicit modes
// and refuse to follow a symlink in the last component. write_file_durably() is the durable
// write: temp file, write, fsync, close (checked), rename, fsync of the directory; after it
// returns success a crash at any moment leaves either the old file or the new one.
// Errors are temporary (disk full, I/O error) unless the cause is permanent by nature.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>
#include <string_view>

#include "libmail/result.h"
#include "libmail/unique_fd.h"

namespace mailwright {

// open(2) with O_CLOEXEC added and EINTR retried.
Result<UniqueFd> open_file(const std::string& path, int flags, mode_t mode = 0);
// Creates a new file that must not exist yet (O_CREAT|O_EXCL|O_NOFOLLOW), with exactly mode
// (the umask does not apply: fchmod after creation).
Result<UniqueFd> create_exclusive(const std::string& path, mode_t mode, int extra_flags = 0);

// Writes all of data, retrying short writes and EINTR.
Status write_all(int fd, std::string_view data);
// Reads up to max_size octets of a regular file; a larger file is an error.
Result<std::string> read_small_file(const std::string& path, std::size_t max_size);
// pread(2) of exactly len octets (short only at end of file); returns what was read.
Result<std::size_t> pread_full(int fd, char* buf, std::size_t len, off_t offset);

Status fsync_fd(int fd, std::string_view what);
Status fsync_directory(const std::string& dir);
Status write_file_durably(const std::string& path, std::string_view data, mode_t mode);
// The same atomic replacement without the fsyncs, for caches that are checked when read (an
// index with a checksum): after a crash the file is old, new or damaged, and a damaged one
// only costs a rebuild.
Status replace_file_atomically(const std::string& path, std::string_view data, mode_t mode);

// "/a/b/c" -> "/a/b"; "c" -> "."; "/c" -> "/".
std::string parent_directory(std::string_view path);
// Creates dir (one level) with mode if missing; an existing non-directory is an error.
Status make_directory(const std::string& dir, mode_t mode);
// Creates every missing directory of path, each with mode.
Status make_directories(const std::string& path, mode_t mode);

}  // namespace mailwright
