// The mbox mailbox format as Mailwright writes and reads it: the mboxrd variant.
//
// Writing: each message is "From SENDER DATE\n", the message with LF line ends, every line
// that matches ">*From " given one more '>' in front, then one empty line. A message that did
// not end in a newline gets one. Because every ">*From " line is quoted (not only those after
// an empty line, as mboxo does), the quoting is reversible: reading removes exactly one '>'
// from each ">+From " line and gives back the message byte for byte.
//
// Reading: a message starts at a line "From " that is the first line of the file or follows
// an empty line (so files written by mboxo writers such as mail.local read correctly too)
// and ends before the empty line that precedes the next one, or at the end of the file.
//
// Opening: open_mbox_for_append() never follows a symlink and refuses anything but a regular
// file with one link owned by the expected user: the classic attacks on /var/mail
// (a symlink to /etc/passwd, a hard link to another user's file, a FIFO) all fail there.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.h"
#include "libmail/unique_fd.h"

namespace mailwright {

// The sender as it may appear in a From_ line: "MAILER-DAEMON" for the null sender, and
// blanks replaced by '_' so the line still splits into sender and date.
std::string mbox_sender(std::string_view sender);
// "From SENDER Sun Nov 29 10:48:00 2026\n", the date in ctime(3) form, local time.
std::string mbox_from_line(std::string_view sender, std::time_t when);

// Streaming mboxrd quoting of LF-terminated text; chunk boundaries may fall anywhere.
class MboxrdQuoter {
 public:
  void feed(std::string_view in, std::string& out);
  // Flushes a held partial line start and adds the final newline if the text lacked one.
  void finish(std::string& out);

 private:
  bool at_line_start_ = true;
  bool wrote_any_ = false;
  bool last_was_newline_ = false;
  std::string pending_;  // a line start that may yet turn out to be ">*From "
  void emit(std::string_view s, std::string& out);
};

// Undoes the quoting of one message's stored text (not including its From_ line).
std::string mboxrd_unquote(std::string_view stored);

struct MboxMessage {
  std::uint64_t from_line = 0;  // offset of the From_ line
  std::uint64_t start = 0;      // first octet of the message proper
  std::uint64_t end = 0;        // one past its last octet (its final LF included)
};

// Finds the messages of an mbox read in sequential chunks (offsets are absolute), in linear
// time and with memory bounded by the longest line start it must look at.
class MboxScanner {
 public:
  void feed(std::string_view chunk);
  // Ends the scan; returns the messages found. garbage_before_first() tells whether the file
  // did not start with a From_ line (not an mbox, or damaged).
  std::vector<MboxMessage> finish();
  bool garbage_before_first() const { return garbage_; }

 private:
  void end_of_line(std::uint64_t next_offset);
  std::vector<MboxMessage> messages_;
  std::uint64_t offset_ = 0;
  bool at_line_start_ = true;
  bool prev_line_empty_ = true;  // the start of the file counts as following an empty line
  bool garbage_ = false;
  std::string head_;             // first octets of the current line, up to 5
  std::uint64_t line_offset_ = 0;
  bool line_empty_ = true;
};

std::vector<MboxMessage> scan_mbox(std::string_view data, bool* garbage_before_first = nullptr);

// Opens (creating it 0600 if missing) the mbox at path for appending, as the current
// effective user, refusing symlinks, hard links, non-regular files and files not owned by
// expected_uid. EX_CANTCREAT (permanent) for a mailbox that must not be touched.
Result<UniqueFd> open_mbox_for_append(const std::string& path, uid_t expected_uid);

// Appends one message: from_line, then header_prefix (e.g. "Return-Path: <a@b>\n"), then
// size octets of LF-normalized text read from src_fd at offset 0, quoted, then the empty
// separator line. The mbox must be locked. On any failure the file is truncated back to its
// size before the call. With sync, the data is on disk (fdatasync) before success.
Status append_to_mbox(int mbox_fd, std::string_view from_line, std::string_view header_prefix,
                      int src_fd, std::uint64_t size, bool sync);

}  // namespace mailwright
