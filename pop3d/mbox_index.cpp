#include "pop3d/mbox_index.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "libmail/unique_fd.h"

namespace mailwright::pop3 {
namespace {

constexpr std::string_view kFrom = "From ";
constexpr std::string_view kMagic = "MWPOP3IX";
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kHeaderSize = 72;
constexpr std::size_t kRecordSize = 48;
constexpr std::size_t kChecksumSize = 32;
// Tells this digest apart from any other SHA-256 of the same octets.
constexpr std::string_view kDigestDomain = "mailwright pop3 uid 1";

using MdCtx = std::unique_ptr<EVP_MD_CTX, FreeWith<EVP_MD_CTX_free>>;
using Md = std::unique_ptr<EVP_MD, FreeWith<EVP_MD_free>>;

// Fetched once: OpenSSL 3 looks an implicitly named algorithm up again on every init, which
// would cost more than hashing a small message.
const EVP_MD* sha256_method() {
  static const Md md(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  return md.get();
}

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    // Without SHA-256 the library is broken, not the input: nothing sensible to do.
    const EVP_MD* md = sha256_method();
    if (md == nullptr || !ctx_ || EVP_DigestInit_ex(ctx_.get(), md, nullptr) != 1)
      std::abort();
  }
  void update(std::string_view data) {
    if (EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) != 1)
      std::abort();
  }
  std::array<std::uint8_t, 32> finish() {
    std::array<std::uint8_t, 32> out{};
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), out.data(), &len) != 1 || len != out.size())
      std::abort();
    return out;
  }

 private:
  MdCtx ctx_;
};

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
std::uint32_t get_u32(std::string_view in, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in[at + i]);
  return v;
}
std::uint64_t get_u64(std::string_view in, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in[at + i]);
  return v;
}

// Whether a message of stored octets can have this wire size: each octet at most doubles
// (bare CR or LF), plus a final CRLF; unquoting loses at most one octet per 8 (">From \r\n").
bool plausible_wire_size(std::uint64_t stored, std::uint64_t wire) {
  if (stored == 0)
    return wire == 0;
  if (stored > (UINT64_MAX - 2) / 2)
    return false;
  return wire <= 2 * stored + 2 && wire >= stored - stored / 8;
}

}  // namespace

MessageDigest message_digest(std::string_view from_line, std::string_view head,
                             std::uint64_t stored_size) {
  from_line = from_line.substr(0, kUidFromLineOctets);
  head = head.substr(0, kUidHeadOctets);
  std::string lengths;
  put_u64(lengths, stored_size);
  put_u32(lengths, static_cast<std::uint32_t>(from_line.size()));
  put_u32(lengths, static_cast<std::uint32_t>(head.size()));
  Sha256 sha;
  sha.update(kDigestDomain);
  sha.update(lengths);
  sha.update(from_line);
  sha.update(head);
  const auto full = sha.finish();
  MessageDigest digest{};
  std::copy_n(full.begin(), digest.size(), digest.begin());
  return digest;
}

std::string uid_from_digest(const MessageDigest& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * digest.size());
  for (std::uint8_t b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

std::array<char, 8> index_tail(std::string_view last) {
  std::array<char, 8> tail{};
  if (last.size() > tail.size())
    last.remove_prefix(last.size() - tail.size());
  std::copy(last.begin(), last.end(), tail.begin());
  return tail;
}

MboxIndexBuilder::MboxIndexBuilder(std::uint64_t offset, std::size_t max_messages)
    : max_messages_(max_messages), offset_(offset) {
  from_text_.reserve(kUidFromLineOctets);
  head_.reserve(kUidHeadOctets);
}

void MboxIndexBuilder::feed(std::string_view chunk) {
  chunk_has_cr_ = std::memchr(chunk.data(), '\r', chunk.size()) != nullptr;
  std::size_t pos = 0;
  while (pos < chunk.size()) {
    if (at_line_start_)
      begin_line(offset_ + pos);
    const void* nl = std::memchr(chunk.data() + pos, '\n', chunk.size() - pos);
    const std::size_t seg_end =
        nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - chunk.data()) : chunk.size();
    if (seg_end > pos)
      line_bytes(chunk.substr(pos, seg_end - pos));
    if (!nl)
      break;
    line_end(offset_ + seg_end + 1);
    pos = seg_end + 1;
  }
  offset_ += chunk.size();
}

void MboxIndexBuilder::begin_line(std::uint64_t offset) {
  at_line_start_ = false;
  line_offset_ = offset;
  line_has_bytes_ = false;
  deciding_ = prev_line_empty_;
  held_ = 0;
  in_from_line_ = false;
  quote_open_ = true;
  quote_gts_ = 0;
  quote_matched_ = 0;
}

void MboxIndexBuilder::line_bytes(std::string_view bytes) {
  line_has_bytes_ = true;
  while (deciding_ && !bytes.empty()) {
    if (bytes.front() != kFrom[held_]) {
      deciding_ = false;
      route(kFrom.substr(0, held_));
      break;
    }
    bytes.remove_prefix(1);
    if (++held_ == kFrom.size()) {
      deciding_ = false;
      start_message();
    }
  }
  if (!deciding_ && !bytes.empty())
    route(bytes);
}

void MboxIndexBuilder::route(std::string_view bytes) {
  if (bytes.empty())
    return;
  if (in_from_line_) {
    if (from_text_.size() < kUidFromLineOctets) {
      from_text_.append(bytes.substr(0, kUidFromLineOctets - from_text_.size()));
    }
  } else if (have_message_) {
    commit(bytes);
  } else {
    garbage_ = true;
  }
}

// Octets of a message line, never an LF.
void MboxIndexBuilder::commit(std::string_view bytes) {
  if (chunk_has_cr_) {
    line_end_octets_ += static_cast<std::uint64_t>(std::count(bytes.begin(), bytes.end(), '\r'));
  }
  if (quote_open_) {
    for (char c : bytes) {
      if (quote_matched_ == 0 && c == '>') {
        ++quote_gts_;
      } else if (quote_gts_ > 0 && c == kFrom[quote_matched_]) {
        if (++quote_matched_ == kFrom.size()) {
          ++quoted_lines_;
          quote_open_ = false;
          break;
        }
      } else {
        quote_open_ = false;
        break;
      }
    }
  }
  if (head_.size() < kUidHeadOctets) {
    head_.append(bytes.substr(0, kUidHeadOctets - head_.size()));
  }
  committed_end_ += bytes.size();
  last_octet_ = bytes.back();
  ends_in_empty_line_ = false;
}

void MboxIndexBuilder::line_end(std::uint64_t after_lf) {
  if (deciding_) {  // a line shorter than "From "
    deciding_ = false;
    route(kFrom.substr(0, held_));
  }
  if (in_from_line_) {
    current_.start = after_lf;
    committed_end_ = after_lf;
    in_from_line_ = false;
  } else if (have_message_) {
    // A CR right before the LF was counted as bare; together they are one CRLF.
    if (last_octet_ == '\r') {
      --line_end_octets_;
    } else {
      ++line_end_octets_;
    }
    if (head_.size() < kUidHeadOctets)
      head_.push_back('\n');
    ++committed_end_;
    last_octet_ = '\n';
    ends_in_empty_line_ = !line_has_bytes_;
  } else if (line_has_bytes_) {
    garbage_ = true;
  }
  prev_line_empty_ = !line_has_bytes_;
  at_line_start_ = true;
}

void MboxIndexBuilder::start_message() {
  if (have_message_) {
    // deciding_ was set, so the line before this one was empty, and it was the current
    // message's last line: it is the separator, not part of the message.
    retract_empty_line();
    finish_message();
  }
  have_message_ = true;
  in_from_line_ = true;
  current_ = IndexedMessage{};
  current_.from_line = line_offset_;
  from_text_.assign(kFrom);
  head_.clear();
  line_end_octets_ = 0;
  quoted_lines_ = 0;
  last_octet_ = '\n';  // the octet before a message is the From_ line's LF
  ends_in_empty_line_ = false;
}

void MboxIndexBuilder::retract_empty_line() {
  if (!ends_in_empty_line_)
    return;
  // The empty line is one LF after an LF: it was counted as one octet gaining one.
  --committed_end_;
  --line_end_octets_;
  head_.resize(std::min<std::uint64_t>(head_.size(), committed_end_ - current_.start));
  last_octet_ = '\n';
  ends_in_empty_line_ = false;
}

void MboxIndexBuilder::finish_message() {
  have_message_ = false;
  if (messages_.size() >= max_messages_) {
    too_many_ = true;
    return;
  }
  current_.end = committed_end_;
  const std::uint64_t stored = current_.end - current_.start;
  const bool needs_final_crlf = stored > 0 && last_octet_ != '\n' && last_octet_ != '\r';
  current_.wire_size = stored - quoted_lines_ + line_end_octets_ + (needs_final_crlf ? 2 : 0);
  current_.digest = message_digest(from_text_, head_, stored);
  messages_.push_back(current_);
}

std::vector<IndexedMessage> MboxIndexBuilder::finish() {
  if (!at_line_start_) {  // the file ends inside a line
    if (deciding_) {
      deciding_ = false;
      route(kFrom.substr(0, held_));
    }
    if (in_from_line_) {
      current_.start = offset_;
      committed_end_ = offset_;
      in_from_line_ = false;
    }
    at_line_start_ = true;
  } else if (have_message_) {
    retract_empty_line();  // the writer's final empty line is a separator
  }
  if (have_message_)
    finish_message();
  return std::move(messages_);
}

std::string serialize_mbox_index(const MboxIndex& index) {
  std::string out;
  out.reserve(kHeaderSize + index.messages.size() * kRecordSize + kChecksumSize);
  out.append(kMagic);
  put_u32(out, kVersion);
  put_u32(out, kRecordSize);
  put_u64(out, index.device);
  put_u64(out, index.inode);
  put_u64(out, index.covered);
  put_u64(out, static_cast<std::uint64_t>(index.mtime_sec));
  put_u64(out, static_cast<std::uint64_t>(index.mtime_nsec));
  out.append(index.tail.data(), index.tail.size());
  put_u32(out, static_cast<std::uint32_t>(index.messages.size()));
  put_u32(out, 0);
  for (const IndexedMessage& m : index.messages) {
    put_u64(out, m.from_line);
    put_u64(out, m.start);
    put_u64(out, m.end);
    put_u64(out, m.wire_size);
    out.append(reinterpret_cast<const char*>(m.digest.data()), m.digest.size());
  }
  Sha256 sha;
  sha.update(out);
  const auto sum = sha.finish();
  out.append(reinterpret_cast<const char*>(sum.data()), sum.size());
  return out;
}

MboxIndexParse parse_mbox_index(std::string_view data) {
  MboxIndexParse result;
  auto fail = [&](std::string_view problem) {
    result.ok = false;
    result.problem = problem;
    result.index = MboxIndex{};
    return result;
  };
  if (data.size() < kHeaderSize + kChecksumSize)
    return fail("shorter than a header");
  if (data.substr(0, kMagic.size()) != kMagic)
    return fail("bad magic");
  if (get_u32(data, 8) != kVersion)
    return fail("unknown version");
  if (get_u32(data, 12) != kRecordSize)
    return fail("bad record size");
  const std::uint32_t count = get_u32(data, 64);
  if (count > kMaxMaildropMessages)
    return fail("too many messages");
  if (get_u32(data, 68) != 0)
    return fail("reserved field not zero");
  // count is bounded above, so this cannot overflow.
  if (data.size() != kHeaderSize + std::size_t{count} * kRecordSize + kChecksumSize) {
    return fail("size does not match the message count");
  }
  const std::string_view body = data.substr(0, data.size() - kChecksumSize);
  Sha256 sha;
  sha.update(body);
  const auto sum = sha.finish();
  if (std::memcmp(sum.data(), data.data() + body.size(), kChecksumSize) != 0) {
    return fail("checksum mismatch");
  }

  MboxIndex& index = result.index;
  index.device = get_u64(data, 16);
  index.inode = get_u64(data, 24);
  index.covered = get_u64(data, 32);
  index.mtime_sec = static_cast<std::int64_t>(get_u64(data, 40));
  index.mtime_nsec = static_cast<std::int64_t>(get_u64(data, 48));
  if (index.mtime_nsec < 0 || index.mtime_nsec > 999999999)
    return fail("bad mtime");
  std::copy_n(data.data() + 56, index.tail.size(), index.tail.begin());
  const std::size_t tail_len =
      static_cast<std::size_t>(std::min<std::uint64_t>(index.covered, index.tail.size()));
  for (std::size_t i = tail_len; i < index.tail.size(); ++i) {
    if (index.tail[i] != 0)
      return fail("tail padding not zero");
  }

  index.messages.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t at = kHeaderSize + i * kRecordSize;
    IndexedMessage m;
    m.from_line = get_u64(data, at);
    m.start = get_u64(data, at + 8);
    m.end = get_u64(data, at + 16);
    m.wire_size = get_u64(data, at + 24);
    std::copy_n(reinterpret_cast<const std::uint8_t*>(data.data() + at + 32), m.digest.size(),
                m.digest.begin());
    // Written so that no sum can overflow: each bound is checked before it is relied on.
    if (m.from_line > index.covered || m.start > index.covered || m.end > index.covered) {
      return fail("offset beyond the covered part");
    }
    if (m.start < m.from_line || m.start - m.from_line < kFrom.size()) {
      return fail("From_ line too short");
    }
    if (m.end < m.start)
      return fail("message ends before it starts");
    if (!index.messages.empty() && m.from_line <= index.messages.back().end) {
      return fail("messages overlap or lack a separator");
    }
    if (!plausible_wire_size(m.end - m.start, m.wire_size))
      return fail("impossible wire size");
    index.messages.push_back(m);
  }
  result.ok = true;
  return result;
}

}  // namespace mailwright::pop3
