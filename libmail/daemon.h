// Process start-up shared by the daemons: detaching, the PID file and signal dispositions.
#pragma once

#include <string>

#include "libmail/result.h"
#include "libmail/unique_fd.h"

namespace mailwright {

// fork, setsid, fork again, chdir("/"), umask 022, standard descriptors to /dev/null.
// Returns in the grandchild only; the parents exit 0.
Status daemonize();

// An flock(2)ed file holding our PID. A second instance fails to lock it and reports the
// running one instead of starting twice. The file is removed when the object dies.
class PidFile {
 public:
  static Result<PidFile> create(const std::string& path);
  PidFile(PidFile&&) noexcept = default;
  PidFile& operator=(PidFile&&) noexcept = default;
  ~PidFile();

 private:
  PidFile(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  UniqueFd fd_;
};

// SIGPIPE ignored (write errors come back as EPIPE), SIGXFSZ ignored (a file-size limit makes
// write fail with EFBIG, so the caller can roll back instead of dying mid-write).
void ignore_disruptive_signals();

}  // namespace mailwright
