#include "mda/lmtp.h"

#include <poll.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <optional>
#include <cstdio>
#include <cstring>

#include "libmail/address.h"
#include "libmail/ascii.h"
#include "libmail/file_io.h"
#include "libmail/limits.h"
#include "libmail/line_reader.h"
#include "libmail/log.h"

namespace mailwright::mda {
namespace {

constexpr std::size_t kMaxRecipients = 1000;
// Input gathered into one batch of deliveries before they are committed together.
constexpr std::size_t kMaxBatchInput = 4 * 1024 * 1024;

bool starts_with_word(std::string_view line, std::string_view word) {
  if (!ascii_istarts_with(line, word)) return false;
  return line.size() == word.size() || line[word.size()] == ' ' || word.back() == ':';
}

std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// ESMTP parameters after a path: "KEY=VALUE" words. Returns false on a parameter we do not
// know: RFC 5321 3.3 wants 555 for those.
bool parameters_ok(std::string_view params, bool mail) {
  params = trim_spaces(params);
  while (!params.empty()) {
    auto space = params.find(' ');
    std::string_view word = params.substr(0, space);
    params = space == std::string_view::npos ? std::string_view() : trim_spaces(params.substr(space));
    std::string_view key = word.substr(0, word.find('='));
    static constexpr std::string_view kMailParams[] = {"BODY", "SIZE", "SMTPUTF8", "RET",
                                                       "ENVID", "AUTH"};
    static constexpr std::string_view kRcptParams[] = {"NOTIFY", "ORCPT"};
    bool known = false;
    if (mail) {
      for (auto k : kMailParams) known = known || ascii_iequal(key, k);
    } else {
      for (auto k : kRcptParams) known = known || ascii_iequal(key, k);
    }
    if (!known) return false;
  }
  return true;
}

// "<user>" with no domain: a valid user name in brackets.
std::optional<std::string_view> bare_user(std::string_view arg) {
  if (arg.empty() || arg.front() != '<') return std::nullopt;
  auto close = arg.find('>');
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view inside = arg.substr(1, close - 1);
  if (!is_valid_user_name(inside)) return std::nullopt;
  return inside;
}

std::string code_for(const Error& error) {
  return error.is_temporary() ? "451" : "550";
}

}  // namespace

LmtpSession::LmtpSession(MailboxWriter& writer, MessageStager& stager, std::string host,
                         bool lenient_line_ends)
    : writer_(writer), stager_(stager), host_(std::move(host)), lenient_(lenient_line_ends) {}

std::string LmtpSession::greeting() const { return "220 " + host_ + " LMTP mda ready\r\n"; }

void LmtpSession::reply(std::string text) {
  replies_.push_back(Piece{std::move(text) + "\r\n", {}, false});
}

void LmtpSession::reset_transaction() {
  have_sender_ = false;
  sender_.clear();
  recipients_.clear();
  bdat_started_ = false;
  state_ = State::kCommand;
}

void LmtpSession::begin_message() {
  stager_.begin();
  message_error_ = Status();
  in_line_ = false;
  prev_crlf_ = true;  // the DATA command line itself ended in CRLF
}

void LmtpSession::process(std::string_view input, bool at_eof) {
  // Compact consumed input so a long session stays linear.
  if (input_pos_ > 0 && input_pos_ >= input_.size() / 2) {
    input_.erase(0, input_pos_);
    input_pos_ = 0;
  }
  input_.append(input);
  while (!finished_) {
    std::string_view rest = std::string_view(input_).substr(input_pos_);
    if (state_ == State::kBdat) {
      std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(bdat_left_, rest.size()));
      if (take > 0 && message_error_ && !bdat_discard_) {
        message_error_ = stager_.add(rest.substr(0, take));
      }
      input_pos_ += take;
      bdat_left_ -= take;
      if (bdat_left_ > 0) break;
      if (bdat_discard_) {
        bdat_discard_ = false;
        state_ = State::kCommand;
      } else if (bdat_last_) {
        deliver_message();
        reset_transaction();
      } else {
        reply("250 2.0.0 chunk received");
        state_ = State::kCommand;
      }
      continue;
    }
    const std::size_t max = state_ == State::kData ? limits::kReadChunk : limits::kCommandLine;
    Line line = next_line(rest, max, at_eof);
    if (line.ending == LineEnding::kIncomplete) break;
    if (line.ending == LineEnding::kEof && line.consumed == 0) break;
    input_pos_ += line.consumed;
    if (lenient_ && line.ending == LineEnding::kLf) line.ending = LineEnding::kCrlf;
    if (state_ == State::kData) {
      handle_data_line(line.text, line.ending == LineEnding::kCrlf,
                       line.ending == LineEnding::kTooLong);
      continue;
    }
    if (line.ending == LineEnding::kTooLong) {
      reply("500 5.5.2 line too long");
      // Skip the rest of the over-long line.
      std::string_view after = std::string_view(input_).substr(input_pos_);
      auto nl = after.find('\n');
      if (nl == std::string_view::npos) {
        input_pos_ = input_.size();
        break;
      }
      input_pos_ += nl + 1;
      continue;
    }
    if (line.ending == LineEnding::kLf || line.has_bare_cr) {
      reply("500 5.5.2 command lines must end with CRLF");
      continue;
    }
    handle_command(line.text);
  }
  if (at_eof) finished_ = true;
}

std::string LmtpSession::take_replies() { return flush_replies(); }

void LmtpSession::handle_command(std::string_view line) {
  if (starts_with_word(line, "LHLO")) {
    if (trim_spaces(line.substr(4)).empty()) return reply("501 5.5.4 LHLO needs a host name");
    greeted_ = true;
    reset_transaction();
    return reply("250-" + host_ + "\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n" +
                 "250-8BITMIME\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN");
  }
  if (starts_with_word(line, "QUIT")) {
    reply("221 2.0.0 " + host_ + " closing connection");
    finished_ = true;
    return;
  }
  if (starts_with_word(line, "NOOP")) return reply("250 2.0.0 OK");
  if (starts_with_word(line, "RSET")) {
    reset_transaction();
    return reply("250 2.0.0 OK");
  }
  if (starts_with_word(line, "VRFY")) return reply("252 2.5.0 cannot VRFY, but will try");
  if (starts_with_word(line, "HELP")) {
    return reply("214 2.0.0 LHLO MAIL RCPT DATA BDAT RSET NOOP VRFY QUIT");
  }
  if (!greeted_) return reply("503 5.5.1 say LHLO first");
  if (starts_with_word(line, "MAIL FROM:")) {
    if (have_sender_) return reply("503 5.5.1 sender already given");
    AddressOptions opts;
    opts.allow_utf8 = true;
    auto path = parse_reverse_path(trim_spaces(line.substr(10)), opts);
    if (!path) return reply("501 " + path.error().status_text());
    std::string_view params = trim_spaces(line.substr(10)).substr(path->length);
    if (!parameters_ok(params, true)) return reply("555 5.5.4 unsupported MAIL parameter");
    have_sender_ = true;
    sender_ = path->path.is_null ? std::string() : path->path.mailbox.to_string();
    return reply("250 2.1.0 sender OK");
  }
  if (starts_with_word(line, "RCPT TO:")) {
    if (!have_sender_) return reply("503 5.5.1 need MAIL before RCPT");
    if (recipients_.size() >= kMaxRecipients) return reply("452 4.5.3 too many recipients");
    AddressOptions opts;
    opts.allow_utf8 = true;
    std::string_view arg = trim_spaces(line.substr(8));
    std::string user, address;
    std::size_t used = 0;
    if (auto bare = bare_user(arg)) {
      // mail.local accepts a plain user name; a local agent has no use for the domain.
      user = std::string(*bare);
      address = "<" + user + ">";
      used = bare->size() + 2;
    } else {
      auto path = parse_forward_path(arg, opts);
      if (!path) return reply("501 " + path.error().status_text());
      user = path->path.is_postmaster ? "postmaster" : path->path.mailbox.local_part;
      address = path->path.to_string();
      used = path->length;
    }
    if (!parameters_ok(arg.substr(used), false)) {
      return reply("555 5.5.4 unsupported RCPT parameter");
    }
    auto account = writer_.find_recipient(user);
    if (!account) return reply(code_for(account.error()) + " " + account.error().status_text());
    recipients_.push_back(Recipient{address, std::move(*account)});
    return reply("250 2.1.5 recipient OK");
  }
  if (starts_with_word(line, "DATA")) {
    if (!have_sender_) return reply("503 5.5.1 need MAIL before DATA");
    if (recipients_.empty()) return reply("503 5.5.1 no valid recipients");
    if (bdat_started_) return reply("503 5.5.1 DATA after BDAT");
    begin_message();
    state_ = State::kData;
    return reply("354 end data with <CR><LF>.<CR><LF>");
  }
  if (starts_with_word(line, "BDAT")) {
    std::string_view args = trim_spaces(line.substr(4));
    std::string_view size_text = args.substr(0, args.find(' '));
    std::string_view last = trim_spaces(args.substr(size_text.size()));
    std::uint64_t size = 0;
    auto [ptr, ec] = std::from_chars(size_text.data(), size_text.data() + size_text.size(), size);
    bool is_last = last.size() == 4 && starts_with_word(last, "LAST");
    if (ec != std::errc() || ptr != size_text.data() + size_text.size() || size_text.empty() ||
        (!last.empty() && !is_last)) {
      // The octets that follow cannot be found reliably: RFC 3030 says close the session.
      reply("501 5.5.4 bad BDAT arguments");
      finished_ = true;
      return;
    }
    if (!have_sender_ || recipients_.empty()) {
      // Swallow the chunk so the session stays in step with the client, then refuse it.
      reply("503 5.5.1 need MAIL and RCPT before BDAT");
      state_ = State::kBdat;
      bdat_left_ = size;
      bdat_discard_ = true;
      return;
    }
    if (!bdat_started_) {
      begin_message();
      bdat_started_ = true;
    }
    state_ = State::kBdat;
    bdat_left_ = size;
    bdat_last_ = is_last;
    return;
  }
  reply("500 5.5.2 command not recognized");
}

void LmtpSession::handle_data_line(std::string_view text, bool crlf, bool continues) {
  // Only CRLF "." CRLF ends the data: "\n.\r\n" (a bare LF before the dot) is one of the
  // smuggling variants, so the line before the dot must have ended in CRLF too.
  const bool after_crlf = prev_crlf_;
  prev_crlf_ = crlf;
  if (!in_line_ && after_crlf && crlf && text == ".") {
    deliver_message();
    reset_transaction();
    return;
  }
  if (!in_line_ && !text.empty() && text.front() == '.') text.remove_prefix(1);
  if (message_error_) {
    message_error_ = stager_.add(text);
    if (message_error_ && !continues) message_error_ = stager_.add("\n");
  }
  in_line_ = continues;
}

void LmtpSession::deliver_message() {
  Result<StagedMessage> staged =
      message_error_ ? stager_.finish() : Result<StagedMessage>(message_error_.error());
  for (const Recipient& rcpt : recipients_) {
    if (!staged) {
      const Error& e = staged.error();
      reply(code_for(e) + " " + e.status() + " " + rcpt.address + " " + e.text());
      continue;
    }
    Status st = writer_.deliver(rcpt.account, *staged, sender_, true);
    if (!st) {
      const Error& e = st.error();
      log_warning("lmtp", "%s: %s", printable(rcpt.address).c_str(), e.text().c_str());
      reply(code_for(e) + " " + e.status() + " " + rcpt.address + " " + e.text());
      continue;
    }
    log_info("lmtp", "delivered to %s, %llu octets", rcpt.account.name.c_str(),
             static_cast<unsigned long long>(staged->size));
    Piece piece;
    piece.deferred = true;
    piece.text = "250 2.1.5 " + rcpt.address + " delivered\r\n";
    piece.failure = "451 4.3.0 " + rcpt.address + " not delivered: sync failed\r\n";
    replies_.push_back(std::move(piece));
  }
}

std::string LmtpSession::flush_replies() {
  bool committed = true;
  if (writer_.pending() > 0) {
    Status st = writer_.commit();
    if (!st) {
      log_error("lmtp", "%s", st.error().text().c_str());
      committed = false;
    }
  }
  writer_.end_batch();
  std::string out;
  for (Piece& piece : replies_) out += (piece.deferred && !committed) ? piece.failure : piece.text;
  replies_.clear();
  return out;
}

int run_lmtp(MailboxWriter& writer, MessageStager& stager, int in_fd, int out_fd) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "localhost");
  LmtpSession session(writer, stager, host, ::isatty(in_fd) == 1);
  if (!write_all(out_fd, session.greeting())) return EX_IOERR;
  std::string buf(64 * 1024, '\0');
  auto read_some = [&]() -> ssize_t {
    for (;;) {
      ssize_t n = ::read(in_fd, buf.data(), buf.size());
      if (n >= 0 || errno != EINTR) return n;
    }
  };
  while (!session.finished()) {
    ssize_t n = read_some();
    if (n < 0) {
      log_error("lmtp", "read: %s", std::strerror(errno));
      return EX_IOERR;
    }
    session.process(std::string_view(buf.data(), static_cast<std::size_t>(n)), n == 0);
    // Whatever the client has already sent joins this batch, so one commit covers it all;
    // nothing is waited for, so a client that waits for our replies is answered at once.
    std::size_t batch = static_cast<std::size_t>(n);
    while (n > 0 && !session.finished() && batch < kMaxBatchInput) {
      pollfd pfd{in_fd, POLLIN, 0};
      if (::poll(&pfd, 1, 0) <= 0) break;
      n = read_some();
      if (n < 0) break;
      session.process(std::string_view(buf.data(), static_cast<std::size_t>(n)), n == 0);
      batch += static_cast<std::size_t>(n);
    }
    std::string out = session.take_replies();
    if (!out.empty() && !write_all(out_fd, out)) return EX_IOERR;
  }
  return EX_OK;
}

}  // namespace mailwright::mda
