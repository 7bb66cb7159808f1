// Drives an SMTP Session with a fake host through arbitrary input, cut into chunks whose sizes
// come from the input's first octet. Commits and AUTH checks are answered sometimes at once
// from inside the host call and sometimes later; STARTTLS is "completed" after a while.
//
// Checks: no crash or sanitizer report; every reply line is "NNN text" or "NNN-text" ending in
// CRLF with a code of 2xx-5xx; nothing is committed that was not opened, and never more than
// one commit per message; the number of 250 "queued" replies equals the commits that
// succeeded; no 250 queued is sent while its commit is pending; buffered input stays bounded
// by what was sent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mta/smtp_session.h"

namespace {

using mailwright::Error;
using mailwright::Path;
using mailwright::Status;
using mailwright::mta::Envelope;
using mailwright::mta::RecipientVerdict;
using mailwright::smtp::AuthResult;
using mailwright::smtp::Session;
using mailwright::smtp::SessionHost;
using mailwright::smtp::SessionPolicy;

void check(bool ok) {
  if (!ok) std::abort();
}

struct Host final : SessionHost {
  Session* session = nullptr;
  std::string* out = nullptr;
  unsigned step = 0;
  bool open = false;
  bool commit_pending = false;
  bool auth_pending = false;
  bool tls_pending = false;
  int opened = 0;
  int committed = 0;
  std::vector<std::string> domains{"example.org"};

  RecipientVerdict check_recipient(const Path& path, bool relay_allowed) override {
    mailwright::mta::RecipientContext rc;
    rc.relay_allowed = relay_allowed;
    rc.local_domains = &domains;
    rc.local_name_exists = [this](std::string_view name) -> std::optional<bool> {
      if (++step % 11 == 0) return std::nullopt;
      return name == "alice";
    };
    return mailwright::mta::decide_recipient(path, rc);
  }
  std::optional<bool> local_name_exists(std::string_view name) override { return name == "alice"; }
  bool storage_available(std::uint64_t) override { return ++step % 13 != 0; }
  Status open_message(Envelope& envelope) override {
    check(!open);
    if (++step % 17 == 0) return Error::temporary(75, "4.3.0", "no");
    envelope.queue_id = "Q" + std::to_string(opened++);
    open = true;
    return {};
  }
  Status write_message(std::string_view) override {
    check(open);
    if (++step % 19 == 0) return Error::temporary(75, "4.3.1", "full");
    return {};
  }
  void commit_message() override {
    check(open && !commit_pending);
    if (++step % 2 == 0) {
      finish_commit(*out);
    } else {
      commit_pending = true;
    }
  }
  void finish_commit(std::string& o) {
    const bool ok = ++step % 7 != 0;
    open = false;
    commit_pending = false;
    if (ok) ++committed;
    session->commit_result(ok ? Status() : Status(Error::temporary(74, "4.3.0", "x")), o);
  }
  void abort_message() override { open = false; }
  void authenticate(const std::string&, const std::string& password) override {
    if (++step % 2 == 0) {
      session->auth_result(password == "secret" ? AuthResult::kOk : AuthResult::kBadCredentials,
                           *out);
    } else {
      auth_pending = true;
    }
  }
  void start_tls() override { tls_pending = true; }
  std::int64_t now() override { return 1700000000; }
};

void check_replies(std::string_view out, int& queued) {
  std::size_t pos = 0;
  while (pos < out.size()) {
    const std::size_t end = out.find("\r\n", pos);
    check(end != std::string_view::npos);
    const std::string_view line = out.substr(pos, end - pos);
    check(line.size() >= 4);
    check(line[0] >= '2' && line[0] <= '5');
    check(line[1] >= '0' && line[1] <= '9' && line[2] >= '0' && line[2] <= '9');
    check(line[3] == ' ' || line[3] == '-');
    for (char c : line) check(c != '\r' && c != '\n' && c != '\0');
    if (line.rfind("250 2.0.0 Ok: queued as ", 0) == 0) ++queued;
    pos = end + 2;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t chunk = 1 + data[0] % 64;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  SessionPolicy policy;
  policy.hostname = "mx.example.org";
  policy.client_address = "192.0.2.1";
  policy.tls_available = (data[0] & 1) != 0;
  policy.auth_available = true;
  policy.normalize_bare_lf = (data[0] & 2) != 0;
  policy.relay_network = (data[0] & 4) != 0;
  policy.max_message_size = 4096;
  policy.max_recipients = 5;
  policy.max_line_length = 200;
  policy.max_errors = 50;
  Host host;
  Session session(host, policy);
  std::string out;
  host.session = &session;
  host.out = &out;
  int queued = 0;
  std::size_t sent = 0;
  while (!input.empty() && !session.finished()) {
    const std::string_view piece = input.substr(0, chunk);
    input.remove_prefix(piece.size());
    sent += piece.size();
    out.clear();
    session.process(piece, out);
    check(session.buffered_input() <= sent);
    // Later answers arrive between reads, as from an event loop.
    if (host.commit_pending && host.step % 3 == 0) host.finish_commit(out);
    if (host.auth_pending) {
      host.auth_pending = false;
      session.auth_result(AuthResult::kTemporary, out);
    }
    if (host.tls_pending && host.step % 2 == 0) {
      host.tls_pending = false;
      session.tls_started("TLSv1.3", "TLS_AES_128_GCM_SHA256", out);
    }
    check_replies(out, queued);
    ++host.step;
  }
  if (host.commit_pending) {
    out.clear();
    host.finish_commit(out);
    check_replies(out, queued);
  }
  check(queued == host.committed);
  return 0;
}
