#include "libmail/mailbox_lock.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <random>
#include <thread>

#include "libmail/file_io.h"
#include "libmail/log.h"

namespace mailwright {
namespace {

using Clock = std::chrono::steady_clock;

// Backoff from 2 ms to 64 ms with jitter, so thirty waiting deliveries neither spin nor all
// wake at once.
class Backoff {
 public:
  void wait() {
    std::uniform_int_distribution<int> jitter(0, delay_ms_);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_ + jitter(rng_)));
    if (delay_ms_ < 64) delay_ms_ *= 2;
  }

 private:
  int delay_ms_ = 2;
  std::minstd_rand rng_{static_cast<unsigned>(::getpid()) ^
                        static_cast<unsigned>(Clock::now().time_since_epoch().count())};
};

std::string unique_lock_name(const std::string& lock_path) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  for (char* p = host; *p; ++p) {
    if (*p == '/') *p = '_';
  }
  return lock_path + "." + host + "." + std::to_string(::getpid());
}

}  // namespace

Result<DotLock> DotLock::acquire(const std::string& mailbox_path, const LockPolicy& policy) {
  const std::string lock_path = mailbox_path + ".lock";
  const std::string unique = unique_lock_name(lock_path);
  ::unlink(unique.c_str());  // left by an earlier process with our pid that crashed
  auto fd = create_exclusive(unique, 0600);
  if (!fd) return fd.error().with_context("cannot create lock file");
  struct Cleanup {
    const std::string& path;
    ~Cleanup() { ::unlink(path.c_str()); }
  } cleanup{unique};

  const auto deadline = Clock::now() + policy.timeout;
  Backoff backoff;
  for (;;) {
    // link(2) is atomic even over NFS, but its return value is not trustworthy there: the link
    // count of our unique file is.
    int rc = ::link(unique.c_str(), lock_path.c_str());
    int link_errno = errno;
    struct stat st {};
    if (::fstat(fd->get(), &st) != 0) return Error::from_errno(EX_OSERR, "fstat lock", errno);
    if (st.st_nlink == 2) return DotLock(lock_path);
    if (rc != 0 && link_errno != EEXIST) {
      return Error::from_errno(EX_TEMPFAIL, "cannot create " + lock_path, link_errno);
    }
    struct stat held {};
    if (::lstat(lock_path.c_str(), &held) == 0) {
      std::time_t age = std::time(nullptr) - held.st_mtime;
      if (age > static_cast<std::time_t>(policy.stale_after.count())) {
        log_warning("-", "removing stale lock %s (%lld s old)", lock_path.c_str(),
                    static_cast<long long>(age));
        ::unlink(lock_path.c_str());
        continue;
      }
    }
    if (Clock::now() >= deadline) {
      return Error::temporary(EX_TEMPFAIL, "4.2.0", "mailbox is locked: " + lock_path);
    }
    backoff.wait();
  }
}

DotLock::~DotLock() {
  if (!path_.empty()) ::unlink(path_.c_str());
}

void DotLock::touch() const {
  if (!path_.empty()) ::utimensat(AT_FDCWD, path_.c_str(), nullptr, AT_SYMLINK_NOFOLLOW);
}

Status lock_fcntl(int fd, bool exclusive, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  Backoff backoff;
  for (;;) {
    struct flock fl {};
    fl.l_type = exclusive ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0;
    if (::fcntl(fd, F_SETLK, &fl) == 0) return {};
    if (errno != EACCES && errno != EAGAIN && errno != EINTR) {
      return Error::from_errno(EX_TEMPFAIL, "fcntl lock", errno);
    }
    if (Clock::now() >= deadline) {
      return Error::temporary(EX_TEMPFAIL, "4.2.0", "mailbox is locked by another process");
    }
    backoff.wait();
  }
}

void unlock_fcntl(int fd) {
  struct flock fl {};
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;
  ::fcntl(fd, F_SETLK, &fl);
}

}  // namespace mailwright
