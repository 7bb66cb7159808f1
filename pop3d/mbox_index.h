// The index of an mbox maildrop: where each message is, how large it is on the wire and what
// its UID is; built by one sequential scan of the mailbox, and kept in a file so that a login
// to a large unchanged mailbox reads a few hundred octets per message instead of the mailbox.
//
// Scanning. MboxIndexBuilder finds messages by exactly the rules of libmail's MboxScanner (a
// From_ line starts a message when it is the first line or follows an empty line; the empty
// line before it, and a final empty line at the end, separate messages and belong to none),
// and in the same pass counts what the wire size needs (line ends gaining a CR, mboxrd
// quoted lines losing a '>'; see message_wire.h) and collects what the UID is made of. It
// reads every octet once, in chunks split anywhere, in linear time; its memory is the list of
// messages (IndexedMessage, 48 octets each) plus about 5 KiB. The unit tests and the
// mbox_scan fuzz target check that it agrees with MboxScanner and with WireEncoder.
//
// UIDs (RFC 1939 7). A message's digest is SHA-256 over its From_ line (first
// kUidFromLineOctets octets, without the LF), its first kUidHeadOctets octets as stored and
// its stored length; the UID is the first 16 octets in hex (32 characters). These octets never
// change while the message exists: commit copies kept messages byte for byte, and new mail
// only ever goes after them. So the UID survives other sessions' deletions, new deliveries,
// and the loss of the index (a cold scan computes the same value). The From_ line carries the
// delivery time to the second, so even the same message delivered twice rarely repeats; when
// it does (same sender, same second, same first 4 KiB and length), the copies get "-2", "-3"
// in file order (make_uids_unique, maildrop.h), and deleting the first renames the second.
// A last message that lacks its final newline (never written by mda) changes its UID if mail is
// appended after it, because mda then adds the newline.
//
// The index file, version 1. All integers little-endian; offsets are octets from the start of
// the mailbox. Any deviation from this layout is an error; the caller then rebuilds.
//   0   8  magic "MWPOP3IX"
//   8   4  version (1)
//   12  4  record size (48)
//   16  8  st_dev of the mailbox         } the mailbox this index describes; compared with
//   24  8  st_ino of the mailbox         } fstat of the open mailbox
//   32  8  covered: mailbox octets indexed (the mailbox size when the index was written)
//   40  8  st_mtim.tv_sec then           (signed)
//   48  8  st_mtim.tv_nsec then          (0 .. 999999999)
//   56  8  the last min(8, covered) octets of the covered part, then zero octets
//   64  4  message count (at most kMaxMaildropMessages)
//   68  4  reserved, zero
//   72  48 per message: from_line, start, end, wire_size (4 x 8), digest (16)
//   ... 32 SHA-256 of every octet before it
// Records must be in file order and consistent: from_line + 5 <= start <= end <= covered, a
// message's From_ line at least one octet after the previous message's end, and a wire size
// the stored length can produce. The file may be written by anyone who can write the
// mailbox's directory, so it is parsed as untrusted input (Dovecot CVE-2019-7524 was an index
// file overflowing a buffer); the parser is pure and has a fuzz target (mbox_index_fuzz).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mailwright::pop3 {

// popa3d's MAX_MAILBOX_MESSAGES: beyond this a maildrop is refused, which bounds a session's
// memory (about 130 octets per message) whatever the mailbox holds.
inline constexpr std::size_t kMaxMaildropMessages = 200000;
inline constexpr std::size_t kUidFromLineOctets = 1024;
inline constexpr std::size_t kUidHeadOctets = 4096;

using MessageDigest = std::array<std::uint8_t, 16>;

struct IndexedMessage {
  std::uint64_t from_line = 0;  // offset of the From_ line
  std::uint64_t start = 0;      // first octet of the message proper
  std::uint64_t end = 0;        // one past its last octet
  std::uint64_t wire_size = 0;  // octets RETR sends before dot-stuffing
  MessageDigest digest{};
};

// from_line without its LF and cut to kUidFromLineOctets; head is the message's first
// min(kUidHeadOctets, stored_size) octets.
MessageDigest message_digest(std::string_view from_line, std::string_view head,
                             std::uint64_t stored_size);
// 32 lowercase hex digits.
std::string uid_from_digest(const MessageDigest& digest);

class MboxIndexBuilder {
 public:
  // Scans from offset, which must be a clean point: the start of the file, or the end of a
  // covered part that ends in an empty line (the state is then the same as at file start).
  explicit MboxIndexBuilder(std::uint64_t offset = 0,
                            std::size_t max_messages = kMaxMaildropMessages);
  void feed(std::string_view chunk);
  // Ends the scan at the end of what was fed.
  std::vector<IndexedMessage> finish();
  // Non-empty lines before the first From_ line (not an mbox, or damaged).
  bool garbage_before_first() const { return garbage_; }
  // More than max_messages messages: the caller should stop feeding and refuse.
  bool too_many() const { return too_many_; }

 private:
  void begin_line(std::uint64_t offset);
  void line_bytes(std::string_view bytes);
  void route(std::string_view bytes);
  void commit(std::string_view bytes);
  void line_end(std::uint64_t after_lf);
  void start_message();
  void retract_empty_line();
  void finish_message();

  std::size_t max_messages_;
  std::uint64_t offset_;  // of the next chunk
  bool chunk_has_cr_ = false;
  // The current line.
  bool at_line_start_ = true;
  std::uint64_t line_offset_ = 0;
  bool line_has_bytes_ = false;
  bool prev_line_empty_ = true;  // the start of the file counts as following an empty line
  bool deciding_ = false;        // after an empty line: is this a From_ line? (held_ says)
  std::size_t held_ = 0;         // octets of "From " matched and held back
  bool in_from_line_ = false;
  bool quote_open_ = false;  // the line may still turn out to be ">+From "
  std::size_t quote_gts_ = 0;
  std::size_t quote_matched_ = 0;
  // The current message.
  bool have_message_ = false;
  IndexedMessage current_;
  std::uint64_t committed_end_ = 0;  // one past its last octet so far
  std::uint64_t line_end_octets_ = 0;
  std::uint64_t quoted_lines_ = 0;
  char last_octet_ = '\n';
  bool ends_in_empty_line_ = false;  // its last line is empty: a separator if a From_ follows
  std::string from_text_;
  std::string head_;

  bool garbage_ = false;
  bool too_many_ = false;
  std::vector<IndexedMessage> messages_;
};

struct MboxIndex {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::uint64_t covered = 0;
  std::int64_t mtime_sec = 0;
  std::int64_t mtime_nsec = 0;
  std::array<char, 8> tail{};  // last min(8, covered) octets of the covered part
  std::vector<IndexedMessage> messages;
};

std::string serialize_mbox_index(const MboxIndex& index);

struct MboxIndexParse {
  bool ok = false;
  MboxIndex index;
  std::string_view problem;  // a static text naming the first check that failed
};
// Pure: no I/O, linear in the input, never trusts a length it has not checked.
MboxIndexParse parse_mbox_index(std::string_view data);

// The tail field for a covered part whose last octets are last (at most 8 are used).
std::array<char, 8> index_tail(std::string_view last);

}  // namespace mailwright::pop3
