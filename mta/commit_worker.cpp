#include "mta/commit_worker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

#include "libmail/log.h"

namespace mailwright::mta {

CommitWorker::CommitWorker(event_base* base, Spool& spool, Done done)
    : spool_(spool),
      done_(std::move(done)),
      wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      wake_event_(event_new(base, wake_fd_.get(), EV_READ | EV_PERSIST, &CommitWorker::on_wake,
                            this)) {
  event_add(wake_event_.get(), nullptr);
  thread_ = std::thread([this] { run(); });
}

CommitWorker::~CommitWorker() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
  event_del(wake_event_.get());
}

void CommitWorker::start(Batch batch) {
  busy_ = true;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    work_ = std::move(batch);
    has_work_ = true;
  }
  cv_.notify_one();
}

void CommitWorker::run() {
  for (;;) {
    Batch batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stop_ || has_work_; });
      if (has_work_) {
        batch = std::move(work_);
        has_work_ = false;
      } else {
        return;  // stopping, nothing in hand
      }
    }
    std::vector<IncomingFile*> files;
    files.reserve(batch.size());
    for (Entry& e : batch) files.push_back(&e.file);
    Status status = spool_.commit_batch(files);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      work_ = std::move(batch);
      result_ = std::move(status);
      has_result_ = true;
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t ignored = ::write(wake_fd_.get(), &one, sizeof one);
  }
}

void CommitWorker::on_wake(evutil_socket_t fd, short, void* arg) {
  auto* self = static_cast<CommitWorker*>(arg);
  std::uint64_t count = 0;
  [[maybe_unused]] ssize_t ignored = ::read(fd, &count, sizeof count);
  Batch batch;
  Status status;
  {
    std::lock_guard<std::mutex> lock(self->mutex_);
    if (!self->has_result_) return;
    batch = std::move(self->work_);
    self->work_.clear();
    status = std::move(self->result_);
    self->has_result_ = false;
  }
  self->busy_ = false;
  self->done_(batch, status);
}

}  // namespace mailwright::mta
