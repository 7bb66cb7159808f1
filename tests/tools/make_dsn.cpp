// Test helper: reads a queue file (mta/queue_file.h: envelope, END, message) on standard input
// and writes the DSN that mta/dsn.h makes of it to standard output, so the integration test can
// hand our output to other parsers (Python's email package).
//
//   make_dsn failure|delay|success REPORTING-MTA NOW [--max-returned N] [--remote-mta HOST]
//            [--retry-until T] [--unique-id ID]
//
// The recipients reported are those whose STATE fits the kind (failed, deferred, delivered) and
// whose NOTIFY asks for it (should_notify); their ERROR becomes the status and the diagnostic.
// Exit status: 0 with the DSN written; 1 when no DSN is due (nobody to report, or the sender is
// <>); 2 for bad usage or a bad queue file.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>

#include "mta/dsn.h"
#include "mta/queue_file.h"

using namespace mailwright::mta;

namespace {

int usage() {
  std::cerr << "usage: make_dsn failure|delay|success REPORTING-MTA NOW [--max-returned N]"
               " [--remote-mta HOST] [--retry-until T] [--unique-id ID] < queue-file\n";
  return 2;
}

int run(int argc, char** argv) {
  if (argc < 4)
    return usage();
  DsnInput in;
  const std::string_view kind = argv[1];
  DsnAction action = DsnAction::kFailed;
  DeliveryState state = DeliveryState::kFailed;
  if (kind == "failure") {
    in.kind = DsnKind::kFailure;
    action = DsnAction::kFailed;
    state = DeliveryState::kFailed;
  } else if (kind == "delay") {
    in.kind = DsnKind::kDelay;
    action = DsnAction::kDelayed;
    state = DeliveryState::kDeferred;
  } else if (kind == "success") {
    in.kind = DsnKind::kSuccess;
    action = DsnAction::kDelivered;
    state = DeliveryState::kDelivered;
  } else {
    return usage();
  }
  in.reporting_mta = argv[2];
  in.now = std::strtoll(argv[3], nullptr, 10);
  std::string remote_mta;
  std::int64_t retry_until = 0;
  for (int i = 4; i < argc; i += 2) {
    if (i + 1 >= argc)
      return usage();
    const std::string_view opt = argv[i];
    const char* value = argv[i + 1];
    if (opt == "--max-returned") {
      in.max_returned = std::strtoull(value, nullptr, 10);
    } else if (opt == "--remote-mta") {
      remote_mta = value;
    } else if (opt == "--retry-until") {
      retry_until = std::strtoll(value, nullptr, 10);
    } else if (opt == "--unique-id") {
      in.unique_id = value;
    } else {
      return usage();
    }
  }

  const std::string file{std::istreambuf_iterator<char>(std::cin),
                         std::istreambuf_iterator<char>()};
  std::size_t body = 0;
  auto envelope = parse_envelope(file, body);
  if (!envelope) {
    std::cerr << "make_dsn: " << envelope.error().text() << "\n";
    return 2;
  }
  if (!is_bounce_allowed(envelope->sender)) {
    std::cerr << "make_dsn: no DSN to the null sender\n";
    return 1;
  }
  in.to = envelope->sender;
  in.envid = envelope->envid;
  in.arrival = envelope->arrival_time;
  in.ret = envelope->ret;
  in.smtputf8 = envelope->smtputf8;
  in.original = std::string_view(file).substr(body);
  if (in.unique_id.empty())
    in.unique_id = envelope->queue_id + "-" + std::string(kind);
  for (const Recipient& r : envelope->recipients) {
    if (r.state != state || !should_notify(r.notify, in.kind))
      continue;
    DsnRecipient d;
    d.address = r.address;
    d.original = r.orcpt;
    d.action = action;
    d.status = status_from_reply(r.last_error, action);
    d.remote_mta = remote_mta;
    if (!r.last_error.empty())
      d.diagnostic = "smtp; " + r.last_error;
    d.last_attempt = in.now;
    d.will_retry_until = retry_until;
    in.recipients.push_back(std::move(d));
  }
  if (in.recipients.empty()) {
    std::cerr << "make_dsn: no recipient to report\n";
    return 1;
  }
  auto dsn = make_dsn(in);
  if (!dsn) {
    std::cerr << "make_dsn: " << dsn.error().text() << "\n";
    return 2;
  }
  const std::size_t written = std::fwrite(dsn->message.data(), 1, dsn->message.size(), stdout);
  return written == dsn->message.size() && std::fflush(stdout) == 0 ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // bad_alloc reading a huge input
    std::cerr << "make_dsn: " << e.what() << "\n";
    return 2;
  }
}
