#include "mta/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <optional>
#include <set>

#include "libmail/file_io.h"
#include "libmail/log.h"
#include "mta/queue_id.h"

namespace mailwright::mta {

namespace {

Error unsafe(const std::string& path, std::string_view why) {
  return Error::permanent(EX_CONFIG, "5.3.5", path + ": " + std::string(why));
}

// Opens dir (relative to parent_fd, or absolute when parent_fd is AT_FDCWD) without following
// a symlink, creating it with mode if missing, and checks owner and mode.
Result<UniqueFd> open_spool_dir(int parent_fd, const std::string& name, const std::string& path,
                                mode_t mode) {
  bool created = false;
  if (::mkdirat(parent_fd, name.c_str(), mode) == 0) {
    created = true;
  } else if (errno != EEXIST) {
    return Error::from_errno(EX_CANTCREAT, "mkdir " + path, errno);
  }
  int fd = ::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP || errno == ENOTDIR)
      return unsafe(path, "not a directory (symlink?)");
    return Error::from_errno(EX_IOERR, "open " + path, errno);
  }
  UniqueFd dir(fd);
  struct stat st {};
  if (::fstat(dir.get(), &st) != 0)
    return Error::from_errno(EX_IOERR, "fstat " + path, errno);
  if (!S_ISDIR(st.st_mode))
    return unsafe(path, "not a directory");
  if (st.st_uid != ::geteuid())
    return unsafe(path, "not owned by the mail user");
  if (created) {
    // mkdir applies the umask and may drop the sticky bit; set exactly what is documented.
    if (::fchmod(dir.get(), mode) != 0)
      return Error::from_errno(EX_IOERR, "chmod " + path, errno);
  } else if ((st.st_mode & 07777 & ~mode) != 0) {
    return unsafe(path, "mode allows more than documented");
  }
  if (created) {
    int pfd = parent_fd == AT_FDCWD ? -1 : parent_fd;
    if (pfd >= 0 && ::fsync(pfd) != 0)
      return Error::from_errno(EX_IOERR, "fsync spool", errno);
  }
  return dir;
}

Result<std::vector<std::string>> list_directory(int dir_fd, const std::string& what) {
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return Error::from_errno(EX_IOERR, "open " + what, errno);
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    int err = errno;
    ::close(fd);
    return Error::from_errno(EX_IOERR, "opendir " + what, err);
  }
  std::unique_ptr<DIR, FreeWith<::closedir>> owner(dir);
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    struct dirent* entry = ::readdir(dir);
    if (entry == nullptr) {
      if (errno != 0)
        return Error::from_errno(EX_IOERR, "readdir " + what, errno);
      break;
    }
    std::string_view name = entry->d_name;
    if (name == "." || name == "..")
      continue;
    names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

Status fsync_dir_fd(int fd, std::string_view what) {
  if (::fsync(fd) != 0)
    return Error::from_errno(EX_IOERR, "fsync " + std::string(what), errno);
  return {};
}

// Reads at most max octets of name in dir_fd: a regular file with one link, never a symlink.
Result<std::string> read_spool_file(int dir_fd, const std::string& name, std::size_t max) {
  int fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    // A symlink here was put by someone else: quarantine it, never follow it.
    if (errno == ELOOP)
      return Error::permanent(EX_DATAERR, "5.3.0", "symbolic link");
    return Error::from_errno(EX_IOERR, "open " + name, errno);
  }
  UniqueFd file(fd);
  struct stat st {};
  if (::fstat(file.get(), &st) != 0)
    return Error::from_errno(EX_IOERR, "fstat " + name, errno);
  if (!S_ISREG(st.st_mode))
    return Error::permanent(EX_DATAERR, "5.3.0", "not a regular file");
  if (st.st_nlink != 1)
    return Error::permanent(EX_DATAERR, "5.3.0", "more than one link");
  std::string data(std::min<std::size_t>(max, static_cast<std::size_t>(st.st_size)), '\0');
  auto n = pread_full(file.get(), data.data(), data.size(), 0);
  if (!n)
    return n.error();
  data.resize(*n);
  return data;
}

// A name to join to a directory: no '/', not "." or "..".
bool is_plain_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

}  // namespace

Result<Spool> Spool::open(const std::string& root) {
  Spool spool;
  spool.root_ = root;
  auto root_fd = open_spool_dir(AT_FDCWD, root, root, kSpoolRootMode);
  if (!root_fd)
    return root_fd.error();
  spool.root_fd_ = std::move(*root_fd);
  struct Sub {
    const char* name;
    mode_t mode;
    UniqueFd* fd;
  };
  for (const Sub& sub : {Sub{"incoming", kSpoolDirMode, &spool.incoming_fd_},
                         Sub{"queue", kSpoolDirMode, &spool.queue_fd_},
                         Sub{"state", kSpoolDirMode, &spool.state_fd_},
                         Sub{"corrupt", kSpoolDirMode, &spool.corrupt_fd_},
                         Sub{"maildrop", kMaildropMode, &spool.maildrop_fd_}}) {
    auto fd = open_spool_dir(spool.root_fd_.get(), sub.name, root + "/" + sub.name, sub.mode);
    if (!fd)
      return fd.error();
    *sub.fd = std::move(*fd);
  }
  return spool;
}

Result<IncomingFile> Spool::create_incoming(std::string_view queue_id) {
  if (!is_valid_queue_id(queue_id)) {
    return Error::permanent(EX_SOFTWARE, "5.3.0", "invalid queue id");
  }
  std::string name(queue_id);
  int fd = ::openat(incoming_fd_.get(), name.c_str(),
                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, kQueueFileMode);
  if (fd < 0)
    return Error::from_errno(EX_CANTCREAT, "create incoming/" + name, errno);
  UniqueFd file(fd);
  // Held while the message is written, so a recover() started meanwhile (a daemon starting
  // while an inetd session receives) leaves the file alone.
  (void)::flock(file.get(), LOCK_EX | LOCK_NB);
  if (::fchmod(file.get(), kQueueFileMode) != 0) {
    int err = errno;
    (void)::unlinkat(incoming_fd_.get(), name.c_str(), 0);
    return Error::from_errno(EX_IOERR, "chmod incoming/" + name, err);
  }
  return IncomingFile(std::move(name), std::move(file));
}

Status Spool::discard(IncomingFile& file) {
  file.fd_.reset();
  if (::unlinkat(incoming_fd_.get(), file.id_.c_str(), 0) != 0 && errno != ENOENT) {
    return Error::from_errno(EX_IOERR, "unlink incoming/" + file.id_, errno);
  }
  return {};
}

Status Spool::commit(IncomingFile& file) { return commit_batch({&file}); }

Status Spool::commit_batch(const std::vector<IncomingFile*>& files) {
  std::optional<Error> first;
  auto fail = [&](IncomingFile& f, Error e) {
    log_warning(f.id_, "not queued: %s", e.text().c_str());
    f.fd_.reset();
    (void)::unlinkat(incoming_fd_.get(), f.id_.c_str(), 0);
    if (!first)
      first = std::move(e);
  };
  // For a batch, one syncfs() writes every file's data and inode with a single journal
  // commit, where an fsync() per file would force one commit each: this is what lets many
  // sessions share the cost of durability. It flushes whatever else is dirty on the spool's
  // file system too, which is why a lone file still gets its own fsync().
  bool batch_synced = false;
  if (files.size() >= 2) {
    if (::syncfs(incoming_fd_.get()) != 0) {
      Error e = Error::from_errno(EX_IOERR, "syncfs spool", errno);
      for (IncomingFile* f : files) fail(*f, e);
      return e;
    }
    batch_synced = true;
  }
  std::vector<IncomingFile*> renamed;
  for (IncomingFile* f : files) {
    f->committed_ = false;
    if (!f->fd_) {
      fail(*f, Error::temporary(EX_SOFTWARE, "4.3.0", "incoming file already closed"));
      continue;
    }
    // The data must be on disk before the name appears in queue/: one file is fsync'd, a
    // batch is covered by the one syncfs() above.
    if (!batch_synced && ::fsync(f->fd_.get()) != 0) {
      fail(*f, Error::from_errno(EX_IOERR, "fsync incoming/" + f->id_, errno));
      continue;
    }
    // close() reports deferred write errors (NFS, quota).
    if (f->fd_.close() != 0) {
      fail(*f, Error::from_errno(EX_IOERR, "close incoming/" + f->id_, errno));
      continue;
    }
    if (::renameat(incoming_fd_.get(), f->id_.c_str(), queue_fd_.get(), f->id_.c_str()) != 0) {
      fail(*f, Error::from_errno(EX_IOERR, "rename to queue/" + f->id_, errno));
      continue;
    }
    renamed.push_back(f);
  }
  if (renamed.empty())
    return first ? Status(*first) : Status();
  if (::fsync(queue_fd_.get()) != 0) {
    Error e = Error::from_errno(EX_IOERR, "fsync queue", errno);
    // Nobody gets a 250, so none of these may be delivered: take them back out.
    for (IncomingFile* f : renamed) {
      log_warning(f->id_, "not queued: %s", e.text().c_str());
      (void)::unlinkat(queue_fd_.get(), f->id_.c_str(), 0);
    }
    (void)::fsync(queue_fd_.get());
    return first ? *first : e;
  }
  for (IncomingFile* f : renamed) f->committed_ = true;
  return first ? Status(*first) : Status();
}

Result<std::vector<std::string>> Spool::recover() {
  // S1: never acknowledged.
  auto incoming = list_directory(incoming_fd_.get(), "incoming");
  if (!incoming)
    return incoming.error();
  for (const std::string& name : *incoming) {
    {
      UniqueFd probe(::openat(incoming_fd_.get(), name.c_str(),
                              O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
      if (probe && ::flock(probe.get(), LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        continue;  // being written by a live session
      }
    }
    if (::unlinkat(incoming_fd_.get(), name.c_str(), 0) != 0) {
      if (errno == EISDIR || errno == EPERM) {
        // Not ours to delete; keep it for a human.
        auto s = [&]() -> Status {
          if (::renameat(incoming_fd_.get(), name.c_str(), corrupt_fd_.get(),
                         ("incoming." + name).c_str()) != 0) {
            return Error::from_errno(EX_IOERR, "move incoming/" + printable(name), errno);
          }
          return {};
        }();
        if (!s)
          return s.error();
        log_warning("-", "incoming/%s is not a file; moved to corrupt/", printable(name).c_str());
        continue;
      }
      return Error::from_errno(EX_IOERR, "unlink incoming/" + printable(name), errno);
    }
    log_info(is_valid_queue_id(name) ? name : "-", "removed unacknowledged incoming/%s",
             printable(name).c_str());
  }
  if (auto s = fsync_dir_fd(incoming_fd_.get(), "incoming"); !s)
    return s.error();

  auto queued = list_directory(queue_fd_.get(), "queue");
  if (!queued)
    return queued.error();
  std::vector<std::string> ids;
  std::set<std::string> live;
  for (const std::string& name : *queued) {
    if (!is_valid_queue_id(name)) {
      if (auto s = move_to_corrupt(name, "file name is not a queue id"); !s)
        return s.error();
      continue;
    }
    std::size_t body_offset = 0;
    auto envelope = load_envelope(name, body_offset);
    if (!envelope) {
      if (envelope.error().is_temporary())
        return envelope.error();
      if (auto s = move_to_corrupt(name, envelope.error().text()); !s)
        return s.error();
      continue;
    }
    live.insert(name);
    ids.push_back(name);
  }

  // S4: the queue file is gone, so the message is done.
  auto states = list_directory(state_fd_.get(), "state");
  if (!states)
    return states.error();
  for (const std::string& name : *states) {
    if (live.count(name))
      continue;
    if (::unlinkat(state_fd_.get(), name.c_str(), 0) != 0) {
      return Error::from_errno(EX_IOERR, "unlink state/" + printable(name), errno);
    }
  }
  if (auto s = fsync_dir_fd(state_fd_.get(), "state"); !s)
    return s.error();
  return ids;
}

Result<Envelope> Spool::load_envelope(std::string_view queue_id, std::size_t& body_offset) {
  if (!is_valid_queue_id(queue_id))
    return Error::permanent(EX_DATAERR, "5.3.0", "bad queue id");
  std::string name(queue_id);
  auto head = read_spool_file(queue_fd_.get(), name, kMaxEnvelope);
  if (!head)
    return head.error();
  auto envelope = parse_envelope(*head, body_offset);
  if (!envelope)
    return envelope.error();
  if (envelope->queue_id != name) {
    return Error::permanent(EX_DATAERR, "5.3.0", "queue id does not match the file name");
  }
  int fd = ::openat(state_fd_.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return envelope;  // S2
    return Error::from_errno(EX_IOERR, "open state/" + name, errno);
  }
  ::close(fd);
  auto state = read_spool_file(state_fd_.get(), name, kMaxEnvelope);
  if (!state)
    return state.error();
  if (auto s = apply_state_file(*state, *envelope); !s) {
    return s.error().with_context("state file");
  }
  return envelope;
}

Result<UniqueFd> Spool::open_queue_file(std::string_view queue_id) {
  if (!is_valid_queue_id(queue_id))
    return Error::permanent(EX_DATAERR, "5.3.0", "bad queue id");
  std::string name(queue_id);
  UniqueFd fd(::openat(queue_fd_.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd)
    return Error::from_errno(EX_IOERR, "open queue/" + name, errno);
  return fd;
}

Result<std::vector<std::string>> Spool::list_queue() const {
  auto names = list_directory(queue_fd_.get(), "queue");
  if (!names)
    return names.error();
  std::vector<std::string> ids;
  for (std::string& name : *names) {
    if (is_valid_queue_id(name))
      ids.push_back(std::move(name));
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

Status Spool::write_state(const Envelope& envelope) {
  if (!is_valid_queue_id(envelope.queue_id)) {
    return Error::permanent(EX_SOFTWARE, "5.3.0", "invalid queue id");
  }
  return write_file_durably(root_ + "/state/" + envelope.queue_id, serialize_state_file(envelope),
                            kQueueFileMode);
}

Status Spool::remove(std::string_view queue_id) {
  if (!is_valid_queue_id(queue_id))
    return Error::permanent(EX_SOFTWARE, "5.3.0", "bad queue id");
  std::string name(queue_id);
  struct stat st {};
  const bool has_state = ::fstatat(state_fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (::unlinkat(queue_fd_.get(), name.c_str(), 0) != 0 && errno != ENOENT) {
    return Error::from_errno(EX_IOERR, "unlink queue/" + name, errno);
  }
  // Without a state file there is no order to keep: if a crash undoes the unlink, the message
  // is delivered once more (the duplicate RFC 5321 6.1 allows, as with Postfix, which never
  // syncs a removal), never lost. Most messages are delivered at the first attempt and end
  // here without a sync.
  if (!has_state)
    return {};
  if (auto s = fsync_dir_fd(queue_fd_.get(), "queue"); !s)
    return s;
  if (::unlinkat(state_fd_.get(), name.c_str(), 0) != 0 && errno != ENOENT) {
    return Error::from_errno(EX_IOERR, "unlink state/" + name, errno);
  }
  return fsync_dir_fd(state_fd_.get(), "state");
}

// Never overwrites an earlier corrupt file: the first free name of base, base.1, base.2, ...
Status Spool::move_into_corrupt(int from_fd, const std::string& from, const std::string& base) {
  for (int i = 0; i < 1000; ++i) {
    std::string to = i == 0 ? base : base + "." + std::to_string(i);
    if (::renameat2(from_fd, from.c_str(), corrupt_fd_.get(), to.c_str(), RENAME_NOREPLACE) == 0) {
      return {};
    }
    if (errno == ENOENT)
      return {};
    if (errno != EEXIST)
      return Error::from_errno(EX_IOERR, "move to corrupt/", errno);
  }
  return Error::temporary(EX_CANTCREAT, "4.3.0", "corrupt/ has no free name");
}

Status Spool::move_to_corrupt(std::string_view name_view, std::string_view reason) {
  std::string name(name_view);
  if (!is_plain_name(name)) {
    return Error::permanent(EX_SOFTWARE, "5.3.0", "bad name for corrupt/");
  }
  if (auto s = move_into_corrupt(queue_fd_.get(), name, name); !s)
    return s;
  if (is_valid_queue_id(name)) {
    if (auto s = move_into_corrupt(state_fd_.get(), name, name + ".state"); !s)
      return s;
  }
  log_error(is_valid_queue_id(name) ? name : "-", "queue/%s moved to corrupt/: %s",
            printable(name).c_str(), printable(reason).c_str());
  if (auto s = fsync_dir_fd(corrupt_fd_.get(), "corrupt"); !s)
    return s;
  if (auto s = fsync_dir_fd(queue_fd_.get(), "queue"); !s)
    return s;
  return fsync_dir_fd(state_fd_.get(), "state");
}

Result<std::vector<std::string>> Spool::list_maildrop() const {
  return list_directory(maildrop_fd_.get(), "maildrop");
}

Result<UniqueFd> Spool::open_maildrop(std::string_view name_view) const {
  std::string name(name_view);
  if (!is_plain_name(name))
    return Error::permanent(EX_SOFTWARE, "5.3.0", "bad maildrop name");
  // O_NONBLOCK: a FIFO put there must not hang the pickup; O_NOFOLLOW: nor a symlink lead it
  // to a file its author could not read.
  int fd = ::openat(maildrop_fd_.get(), name.c_str(),
                    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    if (errno == ELOOP)
      return Error::permanent(EX_DATAERR, "5.3.0", "symbolic link");
    return Error::from_errno(errno == ENOENT ? EX_NOINPUT : EX_IOERR,
                             "open maildrop/" + printable(name), errno);
  }
  return UniqueFd(fd);
}

Result<struct stat> Spool::stat_maildrop(std::string_view name_view) const {
  std::string name(name_view);
  if (!is_plain_name(name))
    return Error::permanent(EX_SOFTWARE, "5.3.0", "bad maildrop name");
  struct stat st {};
  if (::fstatat(maildrop_fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return Error::from_errno(EX_IOERR, "stat maildrop/" + printable(name), errno);
  }
  return st;
}

Status Spool::remove_maildrop(std::string_view name_view) {
  std::string name(name_view);
  if (!is_plain_name(name))
    return Error::permanent(EX_SOFTWARE, "5.3.0", "bad maildrop name");
  if (::unlinkat(maildrop_fd_.get(), name.c_str(), 0) != 0 && errno != ENOENT) {
    return Error::from_errno(EX_IOERR, "unlink maildrop/" + printable(name), errno);
  }
  return {};
}

Status Spool::maildrop_to_corrupt(std::string_view name_view, std::string_view reason) {
  std::string name(name_view);
  if (!is_plain_name(name))
    return Error::permanent(EX_SOFTWARE, "5.3.0", "bad maildrop name");
  if (auto s = move_into_corrupt(maildrop_fd_.get(), name, "maildrop." + name); !s)
    return s;
  log_error("-", "maildrop/%s moved to corrupt/: %s", printable(name).c_str(),
            printable(reason).c_str());
  return fsync_dir_fd(corrupt_fd_.get(), "corrupt");
}

Result<bool> Spool::has_free_space(std::uint64_t needed, std::uint64_t reserve) const {
  // Asked at every MAIL and DATA: the file system's figures are read at most once a second,
  // which is as fresh as they need to be for keeping a reserve of megabytes.
  const auto now = std::chrono::steady_clock::now();
  if (!space_checked_ || now - space_checked_at_ > std::chrono::seconds(1)) {
    struct statvfs fresh {};
    if (::fstatvfs(queue_fd_.get(), &fresh) != 0)
      return Error::from_errno(EX_IOERR, "statvfs", errno);
    space_ = fresh;
    space_checked_at_ = now;
    space_checked_ = true;
  }
  const struct statvfs& st = space_;
  std::uint64_t unit = st.f_frsize != 0 ? st.f_frsize : st.f_bsize;
  std::uint64_t avail = static_cast<std::uint64_t>(st.f_bavail);
  // Compare in blocks so neither side can overflow.
  std::uint64_t want_blocks = needed / unit + reserve / unit + 2;
  if (needed > UINT64_MAX - reserve)
    return false;
  if (st.f_favail == 0 && st.f_files != 0)
    return false;  // no inode for the file
  return avail >= want_blocks;
}

}  // namespace mailwright::mta
