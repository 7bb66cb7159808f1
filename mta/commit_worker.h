// Group commit off the event loop. Making a batch of messages durable (Spool::commit_batch:
// one syncfs, renames, one fsync of queue/) waits for the disk for anything from a fraction of
// a millisecond to tens of milliseconds; done in the event loop, that wait would stall every
// session. So one worker thread does it: the loop hands over a batch of incoming files and goes
// on reading and accepting; messages that finish meanwhile form the next batch, which is why
// batches grow exactly when the disk is slow. When the batch is on disk the worker wakes the
// loop through an eventfd, and the loop sends the 250s.
//
// Only the worker touches the files of a batch while it is in flight (they are moved out of
// their sessions), and the worker touches nothing else: the spool's directory descriptors are
// only read by both threads, and the kernel serialises what they do to the directories.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "libmail/event_loop.h"
#include "libmail/unique_fd.h"
#include "mta/spool.h"

namespace mailwright::mta {

class CommitWorker {
 public:
  struct Entry {
    IncomingFile file;
    void* owner = nullptr;       // who asked (the loop's business)
    std::uint64_t owner_serial = 0;
  };
  using Batch = std::vector<Entry>;
  // done runs in the event loop with the batch (each file's committed() tells its fate) and
  // the status of commit_batch.
  using Done = std::function<void(Batch&, const Status&)>;

  CommitWorker(event_base* base, Spool& spool, Done done);
  ~CommitWorker();
  CommitWorker(const CommitWorker&) = delete;
  CommitWorker& operator=(const CommitWorker&) = delete;

  bool busy() const { return busy_; }
  // Starts committing batch (must not be busy()).
  void start(Batch batch);

 private:
  void run();
  static void on_wake(evutil_socket_t fd, short, void* arg);

  Spool& spool_;
  Done done_;
  UniqueFd wake_fd_;
  Event wake_event_;
  bool busy_ = false;  // loop thread only

  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool has_work_ = false;
  bool has_result_ = false;
  Batch work_;
  Status result_;
  std::thread thread_;
};

}  // namespace mailwright::mta
