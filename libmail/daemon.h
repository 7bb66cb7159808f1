// Process start-up shared by the daemons: detaching, the PID file and signal dispositions.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "libmail/event_loop.h"
#include "libmail/listen_address.h"
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

// Daemon start-up, written once for mta and pop3d: bind every listening socket (as root when
// a port needs it), detach unless in the foreground, write the PID file, then become run_as
// for good. What runs after start_daemon() returns never has root.
struct ListenSpec {
  std::string tag;  // what the socket is for, e.g. "pop3" or "pop3s"
  ListenAddress address;
};
struct BoundListener {
  std::string tag;
  ListenAddress address;
  UniqueFd fd;
};
struct DaemonStart {
  std::vector<ListenSpec> listen;
  bool foreground = false;
  std::string pid_file;  // empty: none
  std::string run_as;    // empty: stay the user we are
};
struct RunningDaemon {
  std::vector<BoundListener> listeners;
  std::optional<PidFile> pid_file;
};
Result<RunningDaemon> start_daemon(const DaemonStart& start);

// Becomes user (its uid, its primary group, no supplementary groups) for good.
Status become_user(const std::string& user);

// SIGTERM and SIGINT end the loop (after on_stop), SIGHUP calls on_reload; all through the
// event loop, so no handler runs in signal context.
class SignalEvents {
 public:
  SignalEvents(event_base* base, std::function<void()> on_stop, std::function<void()> on_reload);

 private:
  static void on_signal(evutil_socket_t sig, short, void* arg);
  event_base* base_;
  std::function<void()> on_stop_, on_reload_;
  Event term_, int_, hup_;
};

// SIGPIPE ignored (write errors come back as EPIPE), SIGXFSZ ignored (a file-size limit makes
// write fail with EFBIG, so the caller can roll back instead of dying mid-write).
void ignore_disruptive_signals();

}  // namespace mailwright
