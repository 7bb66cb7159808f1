// Staging: the message is read once, with line ends normalised to LF and a final newline
// added, into an anonymous memory file; past kMemoryLimit it moves to an unlinked temporary
// file in temp_dir. Every recipient's delivery then copies from there, so stdin is read only
// once, a large message is never held in memory, and a small one costs no disk inode.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "libmail/result.h"
#include "libmail/rfc5322.h"
#include "libmail/unique_fd.h"

namespace mailwright::mda {

struct StagedMessage {
  int fd = -1;              // owned by the stager; valid until the next begin()
  std::uint64_t size = 0;   // octets, LF line ends
  std::uint64_t crlf_size = 0;  // octets once every LF and bare CR is sent as CRLF
};

class MessageStager {
 public:
  static constexpr std::uint64_t kMemoryLimit = 1024 * 1024;

  // An O_TMPFILE file in temp_dir (a named file unlinked at once where O_TMPFILE is missing).
  static Result<MessageStager> create(const std::string& temp_dir);

  void begin();                          // forget the previous message
  Status add(std::string_view raw);      // CRLF or LF text, any chunking
  Result<StagedMessage> finish();        // flush; the data is then readable with pread at 0
  // Reads fd to end of file into a fresh message.
  Result<StagedMessage> stage_from(int fd);

 private:
  MessageStager(std::string temp_dir, UniqueFd fd, bool in_memory)
      : temp_dir_(std::move(temp_dir)), fd_(std::move(fd)), in_memory_(in_memory) {}
  Status flush();
  Status move_to_disk();
  std::string temp_dir_;
  UniqueFd fd_;
  bool in_memory_;
  LfNormalizer normalizer_;
  std::string buffer_;
  std::uint64_t written_ = 0;
  std::uint64_t crlf_extra_ = 0;  // octets the wire form adds (an LF or bare CR becomes CRLF)
  bool pending_cr_ = false;       // the last octet counted was a CR
  Status failed_;
};

}  // namespace mailwright::mda
