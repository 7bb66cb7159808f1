#include "mta/stdio_session.h"

#include <poll.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>

#include "libmail/file_io.h"
#include "libmail/limits.h"
#include "libmail/log.h"

namespace mailwright::mta {
namespace {

class StdioHost final : public SpoolSessionHost {
 public:
  explicit StdioHost(MtaContext& context) : SpoolSessionHost(context, "stdio") {}
  void attach(smtp::Session& session, std::string& out) {
    session_ = &session;
    out_ = &out;
  }

  void commit_message() override {
    IncomingFile* file = incoming();
    Status st = file != nullptr
                    ? context_.spool->commit(*file)
                    : Status(Error::temporary(EX_SOFTWARE, "4.3.0", "no message open"));
    committed(st, file != nullptr && file->committed());
    session_->commit_result(st, *out_);
  }
  void authenticate(const std::string&, const std::string&) override {
    session_->auth_result(smtp::AuthResult::kTemporary, *out_);
  }
  void start_tls() override {}

 private:
  smtp::Session* session_ = nullptr;
  std::string* out_ = nullptr;
};

}  // namespace

int run_stdio_session(MtaContext& context, int in_fd, int out_fd) {
  StdioHost host(context);
  auto policy = make_session_policy(context, "", true, false, false, false);
  policy.auth_available = false;
  smtp::Session session(host, std::move(policy));
  std::string out = session.greeting();
  host.attach(session, out);
  const int timeout_ms = static_cast<int>(context.settings.command_timeout.count() * 1000);
  std::string buf(limits::kReadChunk, '\0');
  for (;;) {
    if (!out.empty()) {
      if (auto st = write_all(out_fd, out); !st) {
        session.input_closed();
        return EX_IOERR;
      }
      out.clear();
    }
    if (session.finished()) return EX_OK;
    pollfd p{in_fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, timeout_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      out = "421 4.4.2 " + context.settings.hostname + " Timeout; closing the connection\r\n";
      (void)write_all(out_fd, out);
      session.input_closed();
      return EX_TEMPFAIL;
    }
    const ssize_t n = ::read(in_fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      session.input_closed();
      return EX_OK;
    }
    session.process(std::string_view(buf.data(), static_cast<std::size_t>(n)), out);
  }
}

}  // namespace mailwright::mta
