// The mta's SMTP daemon: every session in one libevent loop. Each connection is a bufferevent
// (plain, upgraded by STARTTLS, or TLS from the first byte on the smtps port) feeding an
// smtp::Session through a SpoolSessionHost.
//
// Group commit: a session whose message is complete asks for a commit and waits. Commits are
// collected while the loop handles whatever else is ready, then made durable together by one
// Spool::commit_batch (one syncfs and one directory fsync for the lot) from an event of the
// lowest priority, which libevent runs only after every ready read of that round. Each waiting
// session then gets its 250, never before its file and queue/ are on disk.
//
// Limits: sessions in all and per client address, the RFC 5321 4.5.3.2 timeouts, an early
// talker check after greeting_delay, and a failed-AUTH delay that grows per client address.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "libmail/client_limits.h"
#include "libmail/daemon.h"
#include "libmail/event_loop.h"
#include "libmail/tls.h"
#include "mta/commit_worker.h"
#include "mta/smtp_host.h"

namespace mailwright::mta {

class SmtpConnection;

// Kinds of listener: the tags given to start_daemon().
inline constexpr char kSmtpTag[] = "smtp";
inline constexpr char kSubmissionTag[] = "submission";
inline constexpr char kSmtpsTag[] = "smtps";

class SmtpServer {
 public:
  // base must have been given 3 priorities (event_base_priority_init) before any event was
  // added. tls may be null (no STARTTLS, no smtps).
  SmtpServer(event_base* base, MtaContext& context, SSL_CTX* tls);
  ~SmtpServer();

  Status listen(std::vector<BoundListener>& listeners);
  // Serves one connected socket (inetd); the loop ends when it is done.
  void serve_connected(int fd, const std::string& tag);
  std::size_t sessions() const { return connections_.size(); }
  // Called with the id of every message once it is durably queued.
  void set_on_queued(std::function<void(const std::string&)> on_queued) {
    on_queued_ = std::move(on_queued);
  }

 private:
  friend class SmtpConnection;
  struct ListenerInfo {
    ConnListener listener;
    std::string tag;
  };
  static void on_accept(evconnlistener* listener, evutil_socket_t fd, sockaddr* addr, int len,
                        void* arg);
  void accept(evutil_socket_t fd, const sockaddr* addr, const std::string& tag);
  void remove(SmtpConnection* connection);
  void request_commit(SmtpConnection* connection);
  static void on_commit(evutil_socket_t, short, void* arg);
  void committed(CommitWorker::Batch& batch, const Status& status);

  event_base* base_;
  MtaContext& context_;
  SSL_CTX* tls_;
  ConnectionLimits limits_;
  FailureDelay failures_;
  std::vector<ListenerInfo> listeners_;
  std::unordered_map<SmtpConnection*, std::unique_ptr<SmtpConnection>> connections_;
  std::vector<SmtpConnection*> commit_queue_;
  Event commit_event_;
  CommitWorker worker_;
  std::uint64_t next_id_ = 1;
  bool exit_when_idle_ = false;
  std::function<void(const std::string&)> on_queued_;
};

}  // namespace mailwright::mta
