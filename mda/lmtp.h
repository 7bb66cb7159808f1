// LMTP (RFC 2033) on standard input and output: the MTA hands many messages to one mda
// process. The session is a state machine over bytes in and replies out, with no I/O of its
// own, so tests drive it directly.
//
// Commands: LHLO, MAIL, RCPT, DATA, BDAT (RFC 3030 CHUNKING), RSET, NOOP, VRFY, HELP, QUIT.
// After the message, one reply per accepted recipient, in RCPT order (RFC 2033 4.2).
// DATA ends only at CRLF "." CRLF: a "." line ended by a bare LF is message text, so no
// second message can be smuggled in. BDAT counts octets exactly and unstuffs nothing.
//
// Replies to deliveries are held, with everything after them, until the batch of deliveries
// made from one read of input is durable (MailboxWriter::commit): a client that pipelines
// several BDAT transactions gets them all synced at once, yet hears no success early.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.h"
#include "mda/delivery.h"
#include "mda/staging.h"

namespace mailwright::mda {

class LmtpSession {
 public:
  // lenient_line_ends: take a bare LF as CRLF, for a person typing at a terminal. Never for
  // a peer program: it would reopen the smuggling hole that strict line ends close.
  LmtpSession(MailboxWriter& writer, MessageStager& stager, std::string host,
              bool lenient_line_ends = false);

  std::string greeting() const;
  // Takes input and processes every complete command and message in it. at_eof: the client
  // closed its side; the session then ends.
  void process(std::string_view input, bool at_eof);
  // Makes the deliveries so far durable (one commit for all of them) and returns the replies
  // to send now. Call it once the input at hand is processed.
  std::string take_replies();
  bool finished() const { return finished_; }

 private:
  enum class State { kCommand, kData, kBdat };
  struct Recipient {
    std::string address;  // as given, for replies
    Account account;
  };
  struct Piece {
    std::string text;     // fixed text, or the success text of a deferred delivery
    std::string failure;  // for a deferred delivery: text if the batch fails to commit
    bool deferred = false;
  };

  void handle_command(std::string_view line);
  void handle_data_line(std::string_view text, bool crlf, bool continues);
  void begin_message();
  void deliver_message();
  void reply(std::string text);
  void reset_transaction();
  std::string flush_replies();

  MailboxWriter& writer_;
  MessageStager& stager_;
  std::string host_;
  bool lenient_;
  std::string input_;
  std::size_t input_pos_ = 0;
  State state_ = State::kCommand;
  bool greeted_ = false;
  bool have_sender_ = false;
  std::string sender_;
  std::vector<Recipient> recipients_;
  bool in_line_ = false;          // DATA: the current line began in an earlier chunk
  bool prev_crlf_ = true;         // DATA: the previous line ended in CRLF
  std::uint64_t bdat_left_ = 0;   // BDAT: octets of this chunk still to read
  bool bdat_last_ = false;
  bool bdat_discard_ = false;    // BDAT outside a transaction: read and drop
  bool bdat_started_ = false;     // a BDAT transaction is open
  Status message_error_;          // first failure while staging this message
  std::vector<Piece> replies_;
  bool finished_ = false;
};

// Runs a session on in_fd/out_fd until QUIT or end of input. Returns an exit code.
int run_lmtp(MailboxWriter& writer, MessageStager& stager, int in_fd, int out_fd);

}  // namespace mailwright::mda
