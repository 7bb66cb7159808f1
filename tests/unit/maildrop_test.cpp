#include "pop3d/maildrop.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/file_io.h"
#include "libmail/mailbox_lock.h"
#include "libmail/maildir.h"
#include "libmail/mbox.h"
#include "pop3d/maildir_maildrop.h"
#include "pop3d/mbox_index.h"
#include "pop3d/mbox_maildrop.h"
#include "pop3d/message_wire.h"

using namespace mailwright;
using namespace mailwright::pop3;
namespace fs = std::filesystem;

namespace {

constexpr std::time_t kWhen = 1'790'000'000;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "maildrop_test.XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      throw std::runtime_error("mkdtemp");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

void append_file(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

// One message as mda stores it: From_ line, quoted text (a final newline added), empty line.
std::string mbox_entry(std::string_view text, std::string_view sender = "alice@example.org",
                       std::time_t when = kWhen) {
  std::string out = mbox_from_line(sender, when);
  MboxrdQuoter quoter;
  quoter.feed(text, out);
  quoter.finish(out);
  out.push_back('\n');
  return out;
}

// An independent statement of the wire rules: bare LF and bare CR become CRLF, and a final
// CRLF is added when missing.
std::string expected_wire(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      if (i == 0 || text[i - 1] != '\r')
        out.push_back('\r');
      out.push_back('\n');
    } else if (c == '\r') {
      out.push_back('\r');
      if (i + 1 == text.size() || text[i + 1] != '\n')
        out.push_back('\n');
    } else {
      out.push_back(c);
    }
  }
  if (!out.empty() && out.substr(out.size() - 2) != "\r\n")
    out.append("\r\n");
  return out;
}

// Removes RFC 1939 byte-stuffing; checks that every line ends in CRLF on the way.
std::string undot(std::string_view wire) {
  std::string out;
  std::size_t pos = 0;
  while (pos < wire.size()) {
    std::size_t nl = wire.find('\n', pos);
    REQUIRE(nl != std::string_view::npos);  // every line ends
    REQUIRE(nl > pos);
    REQUIRE(wire[nl - 1] == '\r');
    std::string_view line = wire.substr(pos, nl + 1 - pos);
    REQUIRE(line.substr(0, line.size() - 2).find_first_of("\r\n") == std::string_view::npos);
    if (line[0] == '.') {
      REQUIRE(line.size() > 2);  // a lone "." would end the response
      REQUIRE(line[1] == '.');
      line.remove_prefix(1);
    }
    out.append(line);
    pos = nl + 1;
  }
  return out;
}

std::string encode(std::string_view text, bool mboxrd, std::optional<std::uint64_t> top,
                   std::size_t piece) {
  WireEncoder enc({mboxrd, top});
  std::string out;
  for (std::size_t i = 0; i < text.size(); i += piece) {
    if (!enc.feed(text.substr(i, piece), out))
      break;
  }
  enc.finish(out);
  return out;
}

std::string retrieve(Maildrop& drop, std::size_t index, std::optional<std::uint64_t> top = {},
                     std::size_t max = std::size_t{16} * 1024) {
  auto stream = drop.open_message(index, top);
  REQUIRE(stream);
  std::string out;
  for (int guard = 0; guard < 10'000'000; ++guard) {
    auto more = (*stream)->next(out, max);
    REQUIRE(more);
    if (!*more)
      return out;
  }
  FAIL("stream never ended");
  return out;
}

Account test_account() {
  Account account;
  account.name = "joe";
  account.uid = ::geteuid();
  account.gid = ::getegid();
  return account;
}

MailboxSettings mbox_settings(const TempDir& spool) {
  MailboxSettings settings;
  settings.maildir = false;
  settings.mail_spool = spool.path();
  settings.lock.timeout = std::chrono::milliseconds(300);
  return settings;
}

std::vector<std::string> uids_of(const Maildrop& drop) {
  std::vector<std::string> out;
  for (const auto& m : drop.messages()) out.push_back(m.uid);
  return out;
}

MaildropOpen open_ok(const MailboxSettings& settings) {
  MaildropOpen open = open_maildrop(settings, test_account());
  INFO(open.text);
  REQUIRE(open.error == MaildropError::kNone);
  REQUIRE(open.maildrop);
  return open;
}

IndexUse use_of(const MaildropOpen& open) {
  const MboxScanReport* report = mbox_scan_report(*open.maildrop);
  REQUIRE(report);
  return report->use;
}

// Delivers as mda does (dotlock, open, exclusive fcntl lock, append_to_mbox).
void deliver(const std::string& path, std::string_view text, std::time_t when = kWhen + 60) {
  auto dotlock = DotLock::acquire(path, LockPolicy{});
  REQUIRE(dotlock);
  auto fd = open_mbox_for_append(path, ::geteuid());
  REQUIRE(fd);
  REQUIRE(lock_fcntl(fd->get(), true, std::chrono::seconds(1)));
  UniqueFd src(::memfd_create("message", MFD_CLOEXEC));
  REQUIRE(src);
  REQUIRE(write_all(src.get(), text));
  REQUIRE(append_to_mbox(fd->get(), mbox_from_line("bob@example.net", when), "", src.get(),
                         text.size(), true));
}

// Messages with every awkward property the format allows.
const std::vector<std::string> kTricky = {
    "Subject: plain\n\nHello.\n",
    "Subject: quoted\n\nFrom the start\n>From one\n>>From two\nFrom\n>From\n",
    "Subject: dots\n\n.\n..\n.hidden\n. \n",
    "Subject: empty body\n\n",
    "Subject: no separator line at all\n",
    "",
    "Subject: no final newline\n\nlast line",
    "Subject: crlf\r\n\r\nalready CRLF\r\nmixed\nbare\rcr\r",
    "Subject: blank lines\n\n\n\nFrom here\n\n\n",
    ".Subject: leading dot header\n\nbody\n",
};

}  // namespace

// ---------------------------------------------------------------- wire form

TEST_CASE("wire form: CRLF, final CRLF, dot-stuffing and mboxrd unquoting", "[maildrop]") {
  CHECK(encode("a\nb\n", false, {}, 100) == "a\r\nb\r\n");
  CHECK(encode("a", false, {}, 100) == "a\r\n");
  CHECK(encode("", false, {}, 100) == "");
  CHECK(encode(".\n..x\n", false, {}, 100) == "..\r\n...x\r\n");
  CHECK(encode("a\rb\r\nc\r", false, {}, 100) == "a\r\nb\r\nc\r\n");
  CHECK(encode("\r.x\n", false, {}, 100) == "\r\n..x\r\n");
  CHECK(encode(">From a\n>>From b\n>Fro\n> From\nFrom c\n", true, {}, 100) ==
        "From a\r\n>From b\r\n>Fro\r\n> From\r\nFrom c\r\n");
  CHECK(encode(">From a\n", false, {}, 100) == ">From a\r\n");
  CHECK(encode(">Fro", true, {}, 100) == ">Fro\r\n");
  CHECK(encode(">>>>", true, {}, 100) == ">>>>\r\n");
  CHECK(encode(">.x\n", true, {}, 100) == ">.x\r\n");
}

TEST_CASE("wire form does not depend on where the input is split", "[maildrop]") {
  for (const std::string& text : kTricky) {
    const std::string& stored = text;
    for (bool mboxrd : {false, true}) {
      const std::string whole = encode(stored, mboxrd, {}, stored.size() + 1);
      for (std::size_t piece = 1; piece <= 7; ++piece) {
        INFO("piece " << piece << " mboxrd " << mboxrd << " text " << text);
        CHECK(encode(stored, mboxrd, {}, piece) == whole);
      }
    }
    const std::string wire = encode(text, false, {}, 3);
    CHECK(undot(wire) == expected_wire(text));
    WireSizeCounter counter;
    for (char c : text) counter.feed(std::string_view(&c, 1));
    CHECK(counter.size() == expected_wire(text).size());
  }
}

TEST_CASE("TOP sends the header, the empty line and n body lines", "[maildrop]") {
  const std::string msg = "A: 1\nB: 2\n\none\n.two\nthree\n";
  CHECK(encode(msg, false, 0, 100) == "A: 1\r\nB: 2\r\n\r\n");
  CHECK(encode(msg, false, 1, 100) == "A: 1\r\nB: 2\r\n\r\none\r\n");
  CHECK(encode(msg, false, 2, 1) == "A: 1\r\nB: 2\r\n\r\none\r\n..two\r\n");
  CHECK(encode(msg, false, 99, 2) == encode(msg, false, {}, 100));
  // All header: sent whole.
  CHECK(encode("A: 1\nB: 2", false, 0, 100) == "A: 1\r\nB: 2\r\n");
  // A CRLF empty line ends the header too; a body line without its newline gets one.
  CHECK(encode("A: 1\r\n\r\nx", false, 5, 100) == "A: 1\r\n\r\nx\r\n");
}

// ---------------------------------------------------------------- the scanner

TEST_CASE("the index builder finds what MboxScanner finds, with exact wire sizes", "[maildrop]") {
  std::string mbox;
  for (const std::string& text : kTricky) mbox += mbox_entry(text);
  std::vector<std::string> variants = {
      mbox,
      mbox.substr(0, mbox.size() - 1),  // no final empty line
      mbox + "\n\n",                    // extra empty lines at the end
      "garbage\n\n" + mbox,             // not starting with a From_ line
      "\n" + mbox,
      "From x\n",
      "From x",
      "From ",
      "From x\n\nFrom y\nFrom z\n\n\nFrom w\r\n\r\nFrom v\n\n",
      "From x\nbody\n\n>From y\n\nFrom",
      "",
      "\n\n\n",
  };
  for (const std::string& data : variants) {
    INFO("mbox: " << data);
    bool garbage = false;
    const auto expected = scan_mbox(data, &garbage);
    for (std::size_t piece : {std::size_t{1}, std::size_t{2}, std::size_t{5}, data.size() + 1}) {
      MboxIndexBuilder builder;
      for (std::size_t i = 0; i < data.size(); i += piece) {
        builder.feed(std::string_view(data).substr(i, piece));
      }
      const auto found = builder.finish();
      CHECK(builder.garbage_before_first() == garbage);
      REQUIRE(found.size() == expected.size());
      for (std::size_t i = 0; i < found.size(); ++i) {
        CHECK(found[i].from_line == expected[i].from_line);
        CHECK(found[i].start == expected[i].start);
        CHECK(found[i].end == expected[i].end);
        const std::string_view stored =
            std::string_view(data).substr(found[i].start, found[i].end - found[i].start);
        const std::string wire = encode(stored, true, {}, 4096);
        CHECK(found[i].wire_size == undot(wire).size());
        CHECK(undot(wire) == expected_wire(mboxrd_unquote(stored)));
      }
    }
  }
}

TEST_CASE("index files round-trip and anything else is rejected", "[maildrop]") {
  MboxIndex index;
  index.device = 42;
  index.inode = 4242;
  index.covered = 300;
  index.mtime_sec = 1'790'000'000;
  index.mtime_nsec = 123456789;
  index.tail = index_tail("ab\n\n");
  index.messages.push_back({0, 40, 100, 110, {1, 2, 3}});
  index.messages.push_back({101, 150, 299, 160, {4, 5, 6}});
  const std::string data = serialize_mbox_index(index);
  CHECK(data.size() == 72 + 2 * 48 + 32);
  MboxIndexParse parsed = parse_mbox_index(data);
  REQUIRE(parsed.ok);
  CHECK(serialize_mbox_index(parsed.index) == data);
  CHECK(parsed.index.messages[1].digest == index.messages[1].digest);

  // Every single-octet change and every truncation is caught.
  for (std::size_t i = 0; i < data.size(); ++i) {
    std::string bad = data;
    bad[i] = static_cast<char>(bad[i] ^ 0x40);
    INFO("octet " << i);
    CHECK_FALSE(parse_mbox_index(bad).ok);
    CHECK_FALSE(parse_mbox_index(std::string_view(data).substr(0, i)).ok);
  }
  // A well-formed file whose records are inconsistent: rejected for that, not the checksum.
  auto reject_reason = [](const MboxIndex& bad) {
    return std::string(parse_mbox_index(serialize_mbox_index(bad)).problem);
  };
  MboxIndex bad = index;
  bad.messages[1].from_line = 100;  // no separator after message 1
  CHECK(reject_reason(bad) == "messages overlap or lack a separator");
  bad = index;
  bad.messages[1].end = 301;
  CHECK(reject_reason(bad) == "offset beyond the covered part");
  bad = index;
  bad.messages[0].start = 3;
  CHECK(reject_reason(bad) == "From_ line too short");
  bad = index;
  bad.messages[0].wire_size = 1000;
  CHECK(reject_reason(bad) == "impossible wire size");
  bad = index;
  bad.tail = index_tail("12345678");
  bad.covered = 3;
  bad.messages.clear();
  CHECK(reject_reason(bad) == "tail padding not zero");
}

TEST_CASE("make_uids_unique numbers repeats in order and avoids existing UIDs", "[maildrop]") {
  std::vector<MaildropMessage> m = {{1, "a"}, {1, "b"}, {1, "a"}, {1, "a-2"}, {1, "a"}};
  make_uids_unique(m);
  CHECK(m[0].uid == "a");
  CHECK(m[1].uid == "b");
  CHECK(m[2].uid == "a-3");  // "a-2" is another message's own UID
  CHECK(m[3].uid == "a-2");
  CHECK(m[4].uid == "a-4");
}

// ---------------------------------------------------------------- mbox maildrops

TEST_CASE("mbox: sizes are exactly what RETR sends, for awkward messages", "[maildrop]") {
  TempDir spool;
  std::string mbox;
  for (const std::string& text : kTricky) mbox += mbox_entry(text);
  write_file(spool / "joe", mbox);
  auto open = open_ok(mbox_settings(spool));
  Maildrop& drop = *open.maildrop;
  REQUIRE(drop.messages().size() == kTricky.size());
  for (std::size_t i = 0; i < kTricky.size(); ++i) {
    INFO("message " << i + 1);
    // mda adds a final newline to a message that lacks one.
    std::string text = kTricky[i];
    if (!text.empty() && text.back() != '\n')
      text.push_back('\n');
    const std::string small = retrieve(drop, i, {}, 3);
    const std::string big = retrieve(drop, i, {}, 1 << 20);
    CHECK(small == big);
    CHECK(undot(big) == expected_wire(text));
    CHECK(drop.messages()[i].size == undot(big).size());
    const std::string& uid = drop.messages()[i].uid;
    CHECK(uid.size() == 32);
    CHECK(uid.find_first_not_of("0123456789abcdef") == std::string::npos);
  }
}

TEST_CASE("mbox: a last message without its final newline", "[maildrop]") {
  TempDir spool;
  write_file(spool / "joe",
             mbox_entry("A: 1\n\nfirst\n") + "From x Thu Jan  1 00:00:00 2026\nB: 2\n\nno newline");
  auto open = open_ok(mbox_settings(spool));
  REQUIRE(open.maildrop->messages().size() == 2);
  const std::string wire = retrieve(*open.maildrop, 1);
  CHECK(wire == "B: 2\r\n\r\nno newline\r\n");
  CHECK(open.maildrop->messages()[1].size == wire.size());
}

TEST_CASE("mbox: TOP 0 and TOP n", "[maildrop]") {
  TempDir spool;
  write_file(spool / "joe", mbox_entry("Subject: x\nX: y\n\n1\n.2\n>From 3\n4\n") +
                                mbox_entry("Subject: no body\n"));
  auto open = open_ok(mbox_settings(spool));
  Maildrop& drop = *open.maildrop;
  CHECK(retrieve(drop, 0, 0) == "Subject: x\r\nX: y\r\n\r\n");
  CHECK(retrieve(drop, 0, 2, 1) == "Subject: x\r\nX: y\r\n\r\n1\r\n..2\r\n");
  CHECK(retrieve(drop, 0, 3) == "Subject: x\r\nX: y\r\n\r\n1\r\n..2\r\n>From 3\r\n");
  CHECK(retrieve(drop, 0, 100) == retrieve(drop, 0));
  CHECK(retrieve(drop, 1, 0) == "Subject: no body\r\n");
}

TEST_CASE("mbox: UIDs are the same warm, cold, and after a deletion", "[maildrop]") {
  TempDir spool;
  const std::string path = spool / "joe";
  std::string mbox;
  for (int i = 0; i < 6; ++i) {
    mbox += mbox_entry("Subject: " + std::to_string(i) + "\n\nbody " + std::to_string(i) + "\n",
                       "a@b", kWhen + i);
  }
  mbox += mbox_entry("Subject: 1\n\nbody 1\n", "a@b", kWhen + 1);  // an exact repeat of #2
  write_file(path, mbox);
  const auto settings = mbox_settings(spool);

  std::vector<std::string> cold;
  {
    auto open = open_ok(settings);
    CHECK(use_of(open) == IndexUse::kFullScan);
    cold = uids_of(*open.maildrop);
  }
  REQUIRE(cold.size() == 7);
  CHECK(cold[6] == cold[1] + "-2");
  CHECK(fs::exists(mbox_index_path(path)));
  {
    auto open = open_ok(settings);
    CHECK(use_of(open) == IndexUse::kWarm);
    CHECK(mbox_scan_report(*open.maildrop)->scanned_octets == 0);
    CHECK(uids_of(*open.maildrop) == cold);
  }
  REQUIRE(fs::remove(mbox_index_path(path)));
  {
    auto open = open_ok(settings);
    CHECK(use_of(open) == IndexUse::kFullScan);
    CHECK(uids_of(*open.maildrop) == cold);
    std::vector<bool> deleted(7, false);
    deleted[2] = true;
    REQUIRE(open.maildrop->commit(deleted));
  }
  std::vector<std::string> expected = cold;
  expected.erase(expected.begin() + 2);
  {
    auto open = open_ok(settings);
    CHECK(use_of(open) == IndexUse::kWarm);  // commit wrote the index of the new file
    CHECK(uids_of(*open.maildrop) == expected);
  }
  REQUIRE(fs::remove(mbox_index_path(path)));
  auto open = open_ok(settings);
  CHECK(uids_of(*open.maildrop) == expected);
}

TEST_CASE("mbox: commit keeps the rest byte for byte, and mail that came meanwhile", "[maildrop]") {
  TempDir spool;
  const std::string path = spool / "joe";
  const std::string m1 = mbox_entry("Subject: 1\n\none\n", "a@b", kWhen);
  const std::string m2 = mbox_entry("Subject: 2\n\n>From two\n", "a@b", kWhen + 1);
  const std::string m3 = mbox_entry("Subject: 3\n\nthree\n", "a@b", kWhen + 2);
  write_file(path, m1 + m2 + m3);
  ::chmod(path.c_str(), 0640);
  const auto settings = mbox_settings(spool);

  auto open = open_ok(settings);
  const auto before = uids_of(*open.maildrop);
  deliver(path, "Subject: new\n\nnew mail\n");
  CHECK(open.maildrop->messages().size() == 3);  // the session does not see it
  REQUIRE(open.maildrop->commit({false, true, false}));
  open.maildrop.reset();

  std::string delivered = read_file(path).substr(m1.size() + m3.size());
  CHECK(read_file(path) == m1 + m3 + delivered);
  CHECK(delivered.rfind("From bob@example.net ", 0) == 0);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);
  CHECK_FALSE(fs::exists(mbox_commit_temp_path(path)));

  auto again = open_ok(settings);
  CHECK(use_of(again) == IndexUse::kIncremental);
  REQUIRE(again.maildrop->messages().size() == 3);
  CHECK(again.maildrop->messages()[0].uid == before[0]);
  CHECK(again.maildrop->messages()[1].uid == before[2]);
  CHECK(undot(retrieve(*again.maildrop, 2)) == "Subject: new\r\n\r\nnew mail\r\n");
}

TEST_CASE("mbox: deleting every message leaves an empty mailbox; nothing deleted, no write",
          "[maildrop]") {
  TempDir spool;
  const std::string path = spool / "joe";
  write_file(path, mbox_entry("A: 1\n\nx\n") + mbox_entry("A: 2\n\ny\n"));
  const auto settings = mbox_settings(spool);
  {
    auto open = open_ok(settings);
    struct stat before {};
    REQUIRE(::stat(path.c_str(), &before) == 0);
    REQUIRE(open.maildrop->commit({false, false}));
    struct stat after {};
    REQUIRE(::stat(path.c_str(), &after) == 0);
    CHECK(before.st_ino == after.st_ino);
    REQUIRE(open.maildrop->commit({true, true}));
  }
  CHECK(read_file(path).empty());
  auto open = open_ok(settings);
  CHECK(open.maildrop->messages().empty());
}

TEST_CASE("mbox: the mended separator before new mail does not stick to a kept message",
          "[maildrop]") {
  TempDir spool;
  const std::string path = spool / "joe";
  // Written by something other than mda: the last message lacks its separating empty line,
  // so mda's append starts with "\n".
  const std::string m1 = mbox_entry("A: 1\n\nkept\n");
  const std::string m2 = "From x Thu Jan  1 00:00:00 2026\nA: 2\n\ngone\n";
  write_file(path, m1 + m2);
  const auto settings = mbox_settings(spool);
  auto open = open_ok(settings);
  const auto kept = open.maildrop->messages()[0];
  deliver(path, "A: 3\n\nnew\n");
  REQUIRE(read_file(path).substr(m1.size() + m2.size(), 6) == "\nFrom ");
  REQUIRE(open.maildrop->commit({false, true}));
  open.maildrop.reset();
  CHECK(read_file(path).substr(0, m1.size() + 5) == m1 + "From ");
  REQUIRE(fs::remove(mbox_index_path(path)));
  auto again = open_ok(settings);
  REQUIRE(again.maildrop->messages().size() == 2);
  CHECK(again.maildrop->messages()[0].uid == kept.uid);
  CHECK(again.maildrop->messages()[0].size == kept.size);
}

TEST_CASE("mbox: text before the first From_ line survives a commit", "[maildrop]") {
  TempDir spool;
  const std::string path = spool / "joe";
  const std::string junk = "not a message\n\n";
  write_file(path, junk + mbox_entry("A: 1\n\nx\n") + mbox_entry("A: 2\n\ny\n"));
  auto open = open_ok(mbox_settings(spool));
  REQUIRE(open.maildrop->messages().size() == 2);
  REQUIRE(open.maildrop->commit({true, false}));
  CHECK(read_file(path) == junk + mbox_entry("A: 2\n\ny\n"));
}

TEST_CASE("mbox: a mailbox rewritten by another program is not committed over", "[maildrop]") {
  TempDir spool;
  const std::string path = spool / "joe";
  const std::string original = mbox_entry("A: 1\n\nx\n") + mbox_entry("A: 2\n\ny\n");
  write_file(path, original);
  auto open = open_ok(mbox_settings(spool));
  // Same size, same inode, different text (a MUA rewriting a Status: header in place).
  std::string changed = original;
  changed[changed.find("y\n")] = 'z';
  {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    f.write(changed.data(), static_cast<std::streamsize>(changed.size()));
  }
  auto committed = open.maildrop->commit({true, false});
  REQUIRE_FALSE(committed);
  CHECK(committed.error().is_temporary());
  CHECK(committed.error().text().find("no messages were deleted") != std::string::npos);
  CHECK(read_file(path) == changed);
}

TEST_CASE("mbox: one session at a time", "[maildrop]") {
  TempDir spool;
  write_file(spool / "joe", mbox_entry("A: 1\n\nx\n"));
  const auto settings = mbox_settings(spool);
  auto first = open_ok(settings);
  MaildropOpen second = open_maildrop(settings, test_account());
  CHECK(second.error == MaildropError::kInUse);
  CHECK_FALSE(second.maildrop);
  CHECK_FALSE(second.text.empty());
  first.maildrop.reset();
  auto third = open_ok(settings);
  CHECK(third.maildrop->messages().size() == 1);
}

TEST_CASE("mbox: a bad index is ignored and rebuilt", "[maildrop]") {
  TempDir spool;
  const std::string path = spool / "joe";
  std::string mbox;
  for (int i = 0; i < 5; ++i) mbox += mbox_entry("N: " + std::to_string(i) + "\n\nx\n");
  write_file(path, mbox);
  const auto settings = mbox_settings(spool);
  std::vector<std::string> uids;
  {
    auto open = open_ok(settings);
    uids = uids_of(*open.maildrop);
  }
  const std::string good = read_file(mbox_index_path(path));
  std::mt19937 rng(7);
  std::vector<std::string> bad = {
      "",
      good.substr(0, good.size() / 2),
      good.substr(0, good.size() - 1),
      good + "x",
  };
  std::string flipped = good;
  flipped[100] = static_cast<char>(flipped[100] ^ 1);
  bad.push_back(flipped);
  for (std::size_t n : {std::size_t{10}, good.size(), std::size_t{100000}}) {
    std::string noise(n, '\0');
    for (char& c : noise) c = static_cast<char>(rng());
    bad.push_back(noise);
  }
  std::string magic_then_noise = good.substr(0, 16);
  magic_then_noise.resize(good.size(), 'A');
  bad.push_back(magic_then_noise);
  for (const std::string& b : bad) {
    INFO("index of " << b.size() << " octets");
    write_file(mbox_index_path(path), b);
    {
      auto open = open_ok(settings);
      CHECK(use_of(open) == IndexUse::kFullScan);
      CHECK(uids_of(*open.maildrop) == uids);
    }
    CHECK(read_file(mbox_index_path(path)) == good);
  }
  // An index for another file, and one whose mailbox changed in place, are not used either.
  write_file(path + "2", mbox);
  {
    Account account = test_account();
    account.name = "joe2";
    REQUIRE(open_maildrop(settings, account).maildrop);
  }
  std::filesystem::copy_file(mbox_index_path(path + "2"), mbox_index_path(path),
                             fs::copy_options::overwrite_existing);
  CHECK(use_of(open_ok(settings)) == IndexUse::kFullScan);
  std::string same_size = mbox;
  same_size[same_size.size() - 3] = 'y';
  write_file(path, same_size);  // same inode and size, new mtime
  CHECK(use_of(open_ok(settings)) == IndexUse::kFullScan);
}

TEST_CASE("mbox: the index grows with appended mail without a rescan", "[maildrop]") {
  TempDir spool;
  const std::string path = spool / "joe";
  write_file(path, mbox_entry("A: 1\n\nx\n") + mbox_entry("A: 2\n\ny\n"));
  const auto settings = mbox_settings(spool);
  std::vector<std::string> uids;
  {
    auto open = open_ok(settings);
    uids = uids_of(*open.maildrop);
  }
  const auto old_size = fs::file_size(path);
  deliver(path, "A: 3\n\nz\n");
  const auto new_size = fs::file_size(path);
  std::vector<std::string> incremental;
  {
    auto open = open_ok(settings);
    CHECK(use_of(open) == IndexUse::kIncremental);
    CHECK(mbox_scan_report(*open.maildrop)->scanned_octets == new_size - old_size);
    incremental = uids_of(*open.maildrop);
    REQUIRE(incremental.size() == 3);
    CHECK(std::vector<std::string>(incremental.begin(), incremental.begin() + 2) == uids);
    CHECK(undot(retrieve(*open.maildrop, 2)) == "A: 3\r\n\r\nz\r\n");
  }
  CHECK(use_of(open_ok(settings)) == IndexUse::kWarm);
  REQUIRE(fs::remove(mbox_index_path(path)));
  CHECK(uids_of(*open_ok(settings).maildrop) == incremental);

  // Growth that is not a new message (text added to the last one) means a full scan.
  append_file(path, "more text\n");
  auto open = open_ok(settings);
  CHECK(use_of(open) == IndexUse::kFullScan);
  CHECK(open.maildrop->messages().size() == 3);
}

TEST_CASE("mbox: dangerous or missing mailboxes", "[maildrop]") {
  TempDir spool;
  const std::string path = spool / "joe";
  const auto settings = mbox_settings(spool);

  SECTION("a mailbox that does not exist is empty") {
    auto open = open_ok(settings);
    CHECK(open.maildrop->messages().empty());
    CHECK(open.maildrop->commit({}));
    CHECK_FALSE(fs::exists(path));
    CHECK(open_maildrop(settings, test_account()).error == MaildropError::kInUse);
  }
  SECTION("a spool that does not exist is empty") {
    MailboxSettings missing = settings;
    missing.mail_spool = spool / "nowhere";
    auto open = open_maildrop(missing, test_account());
    REQUIRE(open.maildrop);
    CHECK(open.maildrop->messages().empty());
  }
  SECTION("a symlink is not followed") {
    write_file(spool / "target", mbox_entry("A: 1\n\nx\n"));
    REQUIRE(::symlink("target", path.c_str()) == 0);
    auto open = open_maildrop(settings, test_account());
    CHECK(open.error == MaildropError::kTemporary);
    CHECK(open.text.find("symbolic link") != std::string::npos);
  }
  SECTION("a hard link is refused") {
    write_file(path, mbox_entry("A: 1\n\nx\n"));
    REQUIRE(::link(path.c_str(), (spool / "other").c_str()) == 0);
    auto open = open_maildrop(settings, test_account());
    CHECK(open.error == MaildropError::kTemporary);
    CHECK(open.text.find("more than one link") != std::string::npos);
  }
  SECTION("a directory or a FIFO is refused") {
    if (GENERATE(false, true)) {
      REQUIRE(::mkdir(path.c_str(), 0700) == 0);
    } else {
      REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    }
    auto open = open_maildrop(settings, test_account());
    CHECK(open.error == MaildropError::kTemporary);
    CHECK(open.text.find("not a regular file") != std::string::npos);
  }
  SECTION("another owner's mailbox is refused") {
    write_file(path, mbox_entry("A: 1\n\nx\n"));
    Account other = test_account();
    other.uid += 1;
    auto open = open_maildrop(settings, other);
    CHECK(open.error == MaildropError::kTemporary);
    CHECK(open.text.find("owned by another user") != std::string::npos);
  }
  SECTION("a symlinked session lock is refused") {
    write_file(path, mbox_entry("A: 1\n\nx\n"));
    REQUIRE(::symlink("target", mbox_session_lock_path(path).c_str()) == 0);
    auto open = open_maildrop(settings, test_account());
    CHECK(open.error == MaildropError::kTemporary);
    CHECK_FALSE(fs::exists(spool / "target"));
  }
  SECTION("a delivery lock held too long is a temporary error") {
    write_file(path, mbox_entry("A: 1\n\nx\n"));
    write_file(path + ".lock", "");
    const auto started = std::chrono::steady_clock::now();
    auto open = open_maildrop(settings, test_account());
    CHECK(open.error == MaildropError::kTemporary);
    CHECK(open.text.find("locked") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
  }
  SECTION("a commit left half done by a crash is cleaned up") {
    write_file(path, mbox_entry("A: 1\n\nx\n"));
    write_file(mbox_commit_temp_path(path), "partial");
    auto open = open_ok(settings);
    CHECK_FALSE(fs::exists(mbox_commit_temp_path(path)));
  }
}

// ---------------------------------------------------------------- Maildir maildrops

namespace {

// As mda does it: a final newline added where missing, ,S= and ,W= in the name.
std::string deliver_maildir(const std::string& dir, std::string text) {
  if (!text.empty() && text.back() != '\n')
    text.push_back('\n');
  UniqueFd src(::memfd_create("message", MFD_CLOEXEC));
  REQUIRE(src);
  REQUIRE(write_all(src.get(), text));
  MaildirSizes sizes;
  sizes.size = text.size();
  sizes.crlf_size =
      text.size() + static_cast<std::uint64_t>(std::count(text.begin(), text.end(), '\n'));
  auto path = deliver_to_maildir(dir, "", src.get(), text.size(), sizes);
  REQUIRE(path);
  return *path;
}

}  // namespace

TEST_CASE("Maildir: a round trip", "[maildrop]") {
  TempDir home;
  const std::string dir = home / "Maildir";
  REQUIRE(ensure_maildir(dir));
  MailboxSettings settings;
  settings.maildir = true;
  settings.maildir_template = dir;

  const std::vector<std::string> texts = {"A: 1\n\n.dot\n", "A: 2\n\nFrom x\n>From y\n",
                                          "A: 3\n\nno newline"};
  std::vector<std::string> bases;
  for (const std::string& t : texts) {
    const std::string p = deliver_maildir(dir, t);
    bases.push_back(fs::path(p).filename().string());
  }
  // Written by another agent: no size fields, a name that sorts by time before the rest.
  write_file(dir + "/cur/1000000000.M5P1.other:2,S", "A: 0\r\n\r\nold\r\nbare\rno newline");

  std::vector<std::string> uids;
  {
    auto open = open_ok(settings);
    Maildrop& drop = *open.maildrop;
    REQUIRE(drop.messages().size() == 4);
    CHECK(fs::is_empty(dir + "/new"));
    CHECK(drop.messages()[0].uid == "1000000000.M5P1.other");
    for (std::size_t i = 0; i < texts.size(); ++i) {
      INFO("message " << i + 2);
      CHECK(drop.messages()[i + 1].uid == bases[i]);
      const std::string wire = retrieve(drop, i + 1, {}, 5);
      CHECK(undot(wire) == expected_wire(texts[i]));  // "no newline" gets its CRLF either way
    }
    for (std::size_t i = 0; i < 4; ++i) {
      CHECK(drop.messages()[i].size == undot(retrieve(drop, i)).size());
    }
    CHECK(retrieve(drop, 1, 0) == "A: 1\r\n\r\n");
    CHECK(open_maildrop(settings, test_account()).error == MaildropError::kInUse);
    uids = uids_of(drop);

    // An IMAP client sets a flag meanwhile: the file is found under its new name.
    const std::string old_name = dir + "/cur/" + bases[0] + ":2,";
    REQUIRE(fs::exists(old_name));
    fs::rename(old_name, old_name + "S");
    CHECK(undot(retrieve(drop, 1)) == expected_wire(texts[0]));
    REQUIRE(drop.commit({false, true, false, false}));
    CHECK_FALSE(fs::exists(old_name + "S"));
  }
  deliver_maildir(dir, "A: 4\n\nlater\n");
  auto open = open_ok(settings);
  REQUIRE(open.maildrop->messages().size() == 4);
  std::vector<std::string> expected = uids;
  expected.erase(expected.begin() + 1);
  const auto now = uids_of(*open.maildrop);
  CHECK(std::vector<std::string>(now.begin(), now.begin() + 3) == expected);
}

TEST_CASE("Maildir: size fields are used only when ,S= matches the file", "[maildrop]") {
  TempDir home;
  const std::string dir = home / "Maildir";
  REQUIRE(ensure_maildir(dir));
  MailboxSettings settings;
  settings.maildir = true;
  settings.maildir_template = dir;
  // Fields that lie (the file was edited after delivery), and fields that tell the truth
  // about a size that cannot be computed from the name alone.
  write_file(dir + "/cur/1700000000.M1P1Q1.host,S=5,W=6:2,", "A: 1\n\nedited later\n");
  write_file(dir + "/cur/1700000001.M1P1Q1.host,S=9,W=999:2,", "A: 1\n\nxx\n");
  auto open = open_ok(settings);
  REQUIRE(open.maildrop->messages().size() == 2);
  CHECK(open.maildrop->messages()[0].size == undot(retrieve(*open.maildrop, 0)).size());
  CHECK(open.maildrop->messages()[1].size == 999);  // believed: ,S= matches
}

TEST_CASE("Maildir: missing or dangerous directories", "[maildrop]") {
  TempDir home;
  MailboxSettings settings;
  settings.maildir = true;
  settings.maildir_template = home / "Maildir";
  SECTION("missing: empty") {
    auto open = open_ok(settings);
    CHECK(open.maildrop->messages().empty());
    CHECK(open.maildrop->commit({}));
  }
  SECTION("a symlink: refused") {
    REQUIRE(ensure_maildir(home / "elsewhere"));
    REQUIRE(::symlink("elsewhere", (home / "Maildir").c_str()) == 0);
    CHECK(open_maildrop(settings, test_account()).error == MaildropError::kTemporary);
  }
}

// ---------------------------------------------------------------- performance (hidden)

TEST_CASE("mbox: cold and warm open of a large mailbox", "[.][maildrop-perf]") {
  const char* kib_env = std::getenv("MW_PERF_MESSAGE_KIB");
  const std::size_t kib = kib_env ? std::strtoul(kib_env, nullptr, 10) : 4;
  constexpr int kMessages = 20000;
  TempDir spool;
  const std::string path = spool / "joe";
  {
    std::string body;
    while (body.size() < kib * 1024)
      body += "The quick brown fox jumps over the lazy dog. 0123456789\n";
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < kMessages; ++i) {
      const std::string text = "Message-ID: <" + std::to_string(i) +
                               "@example.org>\nSubject: " + std::to_string(i) + "\n\n" + body;
      const std::string entry = mbox_entry(text, "a@b", kWhen + i);
      out.write(entry.data(), static_cast<std::streamsize>(entry.size()));
    }
  }
  const auto settings = mbox_settings(spool);
  auto timed_open = [&](IndexUse expected) {
    const auto t0 = std::chrono::steady_clock::now();
    auto open = open_ok(settings);
    const auto t1 = std::chrono::steady_clock::now();
    CHECK(use_of(open) == expected);
    CHECK(open.maildrop->messages().size() == kMessages);
    return std::chrono::duration<double, std::milli>(t1 - t0).count();
  };
  auto drop_cache = [&] {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    ::fdatasync(fd.get());
    ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  };
  drop_cache();
  const double cold_uncached = timed_open(IndexUse::kFullScan);
  REQUIRE(fs::remove(mbox_index_path(path)));
  const double cold_cached = timed_open(IndexUse::kFullScan);
  drop_cache();
  const double warm = timed_open(IndexUse::kWarm);
  const double warm_again = timed_open(IndexUse::kWarm);
  std::cout << kMessages << " messages, " << fs::file_size(path) / (std::uintmax_t{1024} * 1024)
            << " MiB: cold open " << cold_uncached << " ms (file not in page cache), "
            << cold_cached << " ms (cached); warm open " << warm << " ms (mailbox not cached), "
            << warm_again << " ms\n";
}
