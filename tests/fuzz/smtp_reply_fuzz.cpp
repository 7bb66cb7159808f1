// The SMTP client's side of the wire, from hostile servers' bytes. The first input octet picks
// options and a chunk size; the rest is used three ways:
//  1. parse_smtp_reply(): a complete reply has a code of 200..559, 1..kMaxReplyLines lines, no
//     control octet in any line or the text, an enhanced code of the reply's class or none, and
//     parses the same from exactly its own octets, while one octet less is incomplete;
//     parse_ehlo_capabilities() gives upper-case mechanism names of 1..20 octets.
//  2. SmtpClientSession fed the rest as server replies in chunks (STARTTLS "completed" or
//     "failed" when asked, a fixed message when content is wanted): everything it sends is
//     CRLF-terminated lines without NUL, bare CR or bare LF (so no reply can inject a command);
//     after connection_lost() no recipient is left undecided, and every status's class agrees
//     with its state.
//  3. SmtpDataEncoder: the rest as a stored message, encoded for DATA in chunks and read back by
//     the server's own DataReader (bare line ends refused): it ends exactly at the end of what
//     was sent, refuses nothing, and gives back the message with every bare CR or LF as CRLF
//     and a final CRLF added where missing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mta/smtp_client.h"
#include "mta/smtp_data.h"

namespace {

using mailwright::mta::DeliveryState;
using mailwright::mta::SmtpClientSession;
using mailwright::mta::SmtpClientSettings;
using mailwright::mta::SmtpDataEncoder;
using mailwright::mta::SmtpReplyParse;
using mailwright::mta::SmtpTlsPolicy;
using mailwright::mta::SmtpTransaction;

void check(bool ok) {
  if (!ok) std::abort();
}

void check_text(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    check(u >= 0x20 && u != 0x7f);
  }
}

void fuzz_parser(std::string_view input) {
  const SmtpReplyParse p = mailwright::mta::parse_smtp_reply(input);
  if (!p.complete()) {
    check(p.consumed == 0);
    return;
  }
  const auto& r = p.reply;
  check(p.consumed > 0 && p.consumed <= input.size());
  check(input[p.consumed - 1] == '\n');
  check(r.code >= 200 && r.code <= 559);
  check(!r.lines.empty() && r.lines.size() <= mailwright::mta::kMaxReplyLines);
  for (const auto& line : r.lines) check_text(line);
  check_text(r.text);
  check_text(r.to_string());
  if (!r.enhanced.empty()) {
    check(r.enhanced[0] == static_cast<char>('0' + r.code / 100));
    check(r.status() == r.enhanced);
  }
  const SmtpReplyParse again = mailwright::mta::parse_smtp_reply(input.substr(0, p.consumed));
  check(again.complete() && again.consumed == p.consumed && again.reply.lines == r.lines);
  const SmtpReplyParse shorter =
      mailwright::mta::parse_smtp_reply(input.substr(0, p.consumed - 1));
  check(shorter.state == SmtpReplyParse::State::kIncomplete);
  const auto caps = mailwright::mta::parse_ehlo_capabilities(r);
  for (const auto& m : caps.auth) {
    check(!m.empty() && m.size() <= 20);
    for (char c : m) check(!(c >= 'a' && c <= 'z'));
  }
}

void check_sent(std::string_view out) {
  std::size_t pos = 0;
  while (pos < out.size()) {
    const std::size_t crlf = out.find("\r\n", pos);
    check(crlf != std::string_view::npos);
    for (std::size_t i = pos; i < crlf; ++i) {
      check(out[i] != '\r' && out[i] != '\n' && out[i] != '\0');
    }
    pos = crlf + 2;
  }
}

void check_result(const mailwright::mta::SmtpRecipientResult& r) {
  check(r.state != DeliveryState::kPending);
  check(!r.status.empty());
  const char want = r.state == DeliveryState::kDelivered ? '2'
                    : r.state == DeliveryState::kFailed  ? '5'
                                                         : '4';
  check(r.status[0] == want);
}

void fuzz_session(unsigned char options, std::string_view input) {
  SmtpClientSettings s;
  s.helo_name = "client.example.org";
  s.remote_host = "mx.example.net";
  s.remote_address = "192.0.2.1";
  s.tls = static_cast<SmtpTlsPolicy>(options & 3);
  s.tls_available = (options & 4) != 0;
  if (options & 8) s.credentials = mailwright::mta::SmtpCredentials{"user", "secret"};
  s.auth_without_tls = (options & 16) != 0;
  s.use_chunking = (options & 32) != 0;
  SmtpClientSession session(s);
  SmtpTransaction t;
  t.sender = "alice@example.org";
  t.size = 30;
  t.envid = "env+id";
  t.ret = mailwright::mta::DsnRet::kFull;
  t.body = mailwright::mta::BodyType::k8BitMime;
  t.recipients = {{"bob@example.net", "rfc822;bob@example.net", mailwright::mta::kNotifySuccess},
                  {"carol@example.net", "", 0}};
  session.add_transaction(t);
  session.add_transaction(t);
  std::string out;
  if (options & 64) session.finish(out);
  const std::size_t chunk = 1 + (options >> 5);
  while (!input.empty() && !session.finished()) {
    const std::string_view piece = input.substr(0, chunk);
    input.remove_prefix(piece.size());
    session.receive(piece, out);
    if (session.wants_tls()) {
      if (piece.size() % 2 == 0) {
        session.tls_started(out);
      } else {
        session.tls_failed("fuzz", out);
      }
    }
    for (int i = 0; i < 3 && session.wants_content(); ++i) {
      session.content(i == 0 ? "Subject: x\r\n" : "\r\n.body\r\n", i == 2, out);
    }
    if (session.idle() && (options & 128)) session.finish(out);
  }
  check_sent(out);
  session.connection_lost(mailwright::mta::SmtpLoss::kClosed, "fuzz");
  check(session.finished());
  for (std::size_t i = 0; i < session.transaction_count(); ++i) {
    check(session.transaction_done(i));
    for (const auto& r : session.results(i)) check_result(r);
  }
}

void fuzz_encoder(unsigned char options, std::string_view message) {
  SmtpDataEncoder encoder(SmtpDataEncoder::Mode::kDotStuff);
  std::string wire;
  const std::size_t chunk = 1 + options % 17;
  for (std::size_t i = 0; i < message.size(); i += chunk) {
    encoder.encode(message.substr(i, chunk), wire);
  }
  encoder.finish(wire);

  std::string expected;
  for (std::size_t i = 0; i < message.size(); ++i) {
    const char c = message[i];
    if (c == '\r') {
      expected += "\r\n";
      if (i + 1 < message.size() && message[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      expected += "\r\n";
    } else {
      expected += c;
    }
  }
  const bool ends_in_crlf =
      expected.size() >= 2 && expected.compare(expected.size() - 2, 2, "\r\n") == 0;
  if (!expected.empty() && !ends_in_crlf) expected += "\r\n";

  mailwright::smtp::DataOptions o;
  o.max_line_length = 0;
  o.max_message_size = 0;
  mailwright::smtp::DataReader reader(o);
  std::string content;
  const auto feed = reader.feed(wire, content);
  check(feed.done);
  check(feed.consumed == wire.size());
  check(!reader.outcome().reject);
  check(content == expected);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const unsigned char options = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  fuzz_parser(input);
  fuzz_session(options, input);
  fuzz_encoder(options, input);
  return 0;
}
