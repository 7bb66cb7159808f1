#include "mta/spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "libmail/file_io.h"
#include "mta/queue_file.h"
#include "mta/queue_id.h"

using namespace mailwright;
using namespace mailwright::mta;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "spool_test.XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
  }
  std::string path;
};

Envelope envelope_for(const std::string& id) {
  Envelope e;
  e.queue_id = id;
  e.arrival_time = 1700000000;
  e.sender = "a@example.org";
  Recipient r;
  r.address = "b@example.net";
  e.recipients.push_back(r);
  Recipient r2;
  r2.address = "c@example.net";
  e.recipients.push_back(r2);
  return e;
}

const std::string kMessage = "Subject: hi\r\n\r\nbody\r\n";

void write_message(IncomingFile& f) {
  REQUIRE(write_all(f.fd(), serialize_envelope(envelope_for(f.queue_id())) + kMessage));
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::size_t count_files(const std::string& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir)) ++n;
  return n;
}

}  // namespace

TEST_CASE("open creates the documented layout", "[spool]") {
  TempDir tmp;
  std::string root = tmp.path + "/spool";
  auto spool = Spool::open(root);
  REQUIRE(spool);
  struct Want {
    const char* name;
    mode_t mode;
  };
  for (Want w : {Want{"", kSpoolRootMode}, Want{"/incoming", 0700}, Want{"/queue", 0700},
                 Want{"/state", 0700}, Want{"/corrupt", 0700}, Want{"/maildrop", 01733}}) {
    struct stat st {};
    REQUIRE(::lstat((root + w.name).c_str(), &st) == 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK((st.st_mode & 07777) == w.mode);
  }
  // Opening again finds everything in place.
  CHECK(Spool::open(root));
}

TEST_CASE("open refuses symlinks and loose modes", "[spool]") {
  TempDir tmp;
  std::string root = tmp.path + "/spool";
  REQUIRE(Spool::open(root));
  SECTION("symlinked subdirectory") {
    REQUIRE(::rename((root + "/queue").c_str(), (tmp.path + "/elsewhere").c_str()) == 0);
    REQUIRE(::symlink((tmp.path + "/elsewhere").c_str(), (root + "/queue").c_str()) == 0);
    auto s = Spool::open(root);
    REQUIRE_FALSE(s);
    CHECK_FALSE(s.error().is_temporary());
  }
  SECTION("symlinked root") {
    REQUIRE(::symlink(root.c_str(), (tmp.path + "/link").c_str()) == 0);
    CHECK_FALSE(Spool::open(tmp.path + "/link"));
  }
  SECTION("group-writable subdirectory") {
    REQUIRE(::chmod((root + "/incoming").c_str(), 0770) == 0);
    CHECK_FALSE(Spool::open(root));
  }
  SECTION("a file where a directory should be") {
    REQUIRE(::rmdir((root + "/corrupt").c_str()) == 0);
    std::ofstream(root + "/corrupt") << "x";
    CHECK_FALSE(Spool::open(root));
  }
}

TEST_CASE("commit moves a message into queue/", "[spool]") {
  TempDir tmp;
  auto spool = Spool::open(tmp.path + "/spool");
  REQUIRE(spool);
  std::string id = new_queue_id();
  auto f = spool->create_incoming(id);
  REQUIRE(f);
  CHECK(exists(tmp.path + "/spool/incoming/" + id));
  struct stat st {};
  REQUIRE(::fstat(f->fd(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  // The same id cannot be created twice (O_EXCL).
  CHECK_FALSE(spool->create_incoming(id));
  write_message(*f);
  CHECK_FALSE(f->committed());
  REQUIRE(spool->commit(*f));
  CHECK(f->committed());
  CHECK_FALSE(exists(tmp.path + "/spool/incoming/" + id));
  std::string content = slurp(tmp.path + "/spool/queue/" + id);
  std::size_t body = 0;
  auto e = parse_envelope(content, body);
  REQUIRE(e);
  CHECK(*e == envelope_for(id));
  CHECK(content.substr(body) == kMessage);

  std::size_t offset = 0;
  auto loaded = spool->load_envelope(id, offset);
  REQUIRE(loaded);
  CHECK(*loaded == envelope_for(id));
  CHECK(offset == body);
}

TEST_CASE("create_incoming refuses bad ids and does not follow symlinks", "[spool]") {
  TempDir tmp;
  auto spool = Spool::open(tmp.path + "/spool");
  REQUIRE(spool);
  CHECK_FALSE(spool->create_incoming("../queue/x"));
  CHECK_FALSE(spool->create_incoming(""));
  std::string id = new_queue_id();
  REQUIRE(::symlink((tmp.path + "/target").c_str(), (tmp.path + "/spool/incoming/" + id).c_str()) ==
          0);
  CHECK_FALSE(spool->create_incoming(id));
  CHECK_FALSE(exists(tmp.path + "/target"));
}

TEST_CASE("commit_batch commits 50 files with one directory fsync", "[spool]") {
  TempDir tmp;
  auto spool = Spool::open(tmp.path + "/spool");
  REQUIRE(spool);
  std::vector<IncomingFile> files;
  for (int i = 0; i < 50; ++i) {
    auto f = spool->create_incoming(new_queue_id());
    REQUIRE(f);
    write_message(*f);
    files.push_back(std::move(*f));
  }
  std::vector<IncomingFile*> batch;
  for (auto& f : files) batch.push_back(&f);
  REQUIRE(spool->commit_batch(batch));
  for (auto& f : files) {
    CHECK(f.committed());
    CHECK(exists(tmp.path + "/spool/queue/" + f.queue_id()));
  }
  CHECK(count_files(tmp.path + "/spool/queue") == 50);
  CHECK(count_files(tmp.path + "/spool/incoming") == 0);
  auto ids = spool->recover();
  REQUIRE(ids);
  CHECK(ids->size() == 50);
}

TEST_CASE("commit_batch reports a failed file and commits the rest", "[spool]") {
  TempDir tmp;
  auto spool = Spool::open(tmp.path + "/spool");
  REQUIRE(spool);
  auto a = spool->create_incoming(new_queue_id());
  auto b = spool->create_incoming(new_queue_id());
  REQUIRE(a);
  REQUIRE(b);
  write_message(*a);
  write_message(*b);
  // b vanishes before the commit (as if removed by hand): its rename fails.
  REQUIRE(::unlink((tmp.path + "/spool/incoming/" + b->queue_id()).c_str()) == 0);
  CHECK_FALSE(spool->commit_batch({&*a, &*b}));
  CHECK(a->committed());
  CHECK_FALSE(b->committed());
  CHECK(exists(tmp.path + "/spool/queue/" + a->queue_id()));
  CHECK_FALSE(exists(tmp.path + "/spool/queue/" + b->queue_id()));
}

TEST_CASE("recover removes incoming leftovers and quarantines corrupt files", "[spool]") {
  TempDir tmp;
  std::string root = tmp.path + "/spool";
  auto spool = Spool::open(root);
  REQUIRE(spool);
  // A good message.
  auto good = spool->create_incoming(new_queue_id());
  REQUIRE(good);
  write_message(*good);
  REQUIRE(spool->commit(*good));
  // An unacknowledged one, left by a process that died (its lock went with it), and one
  // still being written by a live session (locked), which recovery must leave alone.
  {
    auto left = spool->create_incoming(new_queue_id());
    REQUIRE(left);
    write_message(*left);
  }
  auto live = spool->create_incoming(new_queue_id());
  REQUIRE(live);
  write_message(*live);
  // A truncated queue file (a disk that lied), one whose ID does not match its name, and a
  // file whose name is not a queue id.
  std::string bad_id = new_queue_id();
  std::string full = serialize_envelope(envelope_for(bad_id));
  REQUIRE(write_file_durably(root + "/queue/" + bad_id, full.substr(0, full.size() / 2), 0600));
  std::string renamed_id = new_queue_id();
  REQUIRE(write_file_durably(root + "/queue/" + renamed_id,
                             serialize_envelope(envelope_for(new_queue_id())) + kMessage, 0600));
  REQUIRE(write_file_durably(root + "/queue/junk.txt", "hello", 0600));
  // An orphan state file: its message is done.
  std::string done_id = new_queue_id();
  REQUIRE(write_file_durably(root + "/state/" + done_id,
                             serialize_state_file(envelope_for(done_id)), 0600));

  auto ids = spool->recover();
  REQUIRE(ids);
  REQUIRE(ids->size() == 1);
  CHECK((*ids)[0] == good->queue_id());
  CHECK(count_files(root + "/incoming") == 1);
  CHECK(exists(root + "/incoming/" + live->queue_id()));
  CHECK_FALSE(exists(root + "/queue/" + bad_id));
  CHECK(slurp(root + "/corrupt/" + bad_id) == full.substr(0, full.size() / 2));
  CHECK(exists(root + "/corrupt/" + renamed_id));
  CHECK(exists(root + "/corrupt/junk.txt"));
  CHECK_FALSE(exists(root + "/state/" + done_id));
  CHECK(count_files(root + "/queue") == 1);

  SECTION("an earlier corrupt file of the same name is never overwritten") {
    REQUIRE(write_file_durably(root + "/queue/" + bad_id, "second", 0600));
    auto again = spool->recover();
    REQUIRE(again);
    CHECK(again->size() == 1);
    CHECK(slurp(root + "/corrupt/" + bad_id) == full.substr(0, full.size() / 2));
    CHECK(slurp(root + "/corrupt/" + bad_id + ".1") == "second");
  }
  SECTION("a corrupt state file quarantines its message too") {
    REQUIRE(write_file_durably(root + "/state/" + good->queue_id(), "MWSTATE 1\nID x\n", 0600));
    auto again = spool->recover();
    REQUIRE(again);
    CHECK(again->empty());
    CHECK(exists(root + "/corrupt/" + good->queue_id()));
    CHECK(exists(root + "/corrupt/" + good->queue_id() + ".state"));
  }
  SECTION("a symlink in queue/ is quarantined, not followed") {
    std::string link_id = new_queue_id();
    REQUIRE(::symlink((root + "/corrupt/" + renamed_id).c_str(),
                      (root + "/queue/" + link_id).c_str()) == 0);
    auto again = spool->recover();
    REQUIRE(again);
    CHECK(again->size() == 1);
    CHECK(exists(root + "/corrupt/" + link_id));
  }
}

TEST_CASE("state updates survive and are read back; remove deletes both files", "[spool]") {
  TempDir tmp;
  std::string root = tmp.path + "/spool";
  auto spool = Spool::open(root);
  REQUIRE(spool);
  auto f = spool->create_incoming(new_queue_id());
  REQUIRE(f);
  write_message(*f);
  REQUIRE(spool->commit(*f));
  std::string id = f->queue_id();
  std::string before = slurp(root + "/queue/" + id);

  std::size_t offset = 0;
  auto e = spool->load_envelope(id, offset);
  REQUIRE(e);
  e->recipients[0].state = DeliveryState::kDelivered;
  e->recipients[1].state = DeliveryState::kDeferred;
  e->recipients[1].attempts = 1;
  e->recipients[1].next_attempt = 1700000600;
  e->recipients[1].last_error = "421 4.3.2 try later\r\n250 ok";
  REQUIRE(spool->write_state(*e));
  CHECK(slurp(root + "/queue/" + id) == before);  // the queue file is never rewritten

  auto reread = spool->load_envelope(id, offset);
  REQUIRE(reread);
  CHECK(*reread == *e);
  auto ids = spool->recover();
  REQUIRE(ids);
  CHECK(ids->size() == 1);
  CHECK(exists(root + "/state/" + id));

  REQUIRE(spool->remove(id));
  CHECK_FALSE(exists(root + "/queue/" + id));
  CHECK_FALSE(exists(root + "/state/" + id));
}

TEST_CASE("free space check", "[spool]") {
  TempDir tmp;
  auto spool = Spool::open(tmp.path + "/spool");
  REQUIRE(spool);
  auto small = spool->has_free_space(1024, 0);
  REQUIRE(small);
  CHECK(*small);
  auto huge = spool->has_free_space(UINT64_MAX / 2, UINT64_MAX / 2);
  REQUIRE(huge);
  CHECK_FALSE(*huge);
  auto overflow = spool->has_free_space(UINT64_MAX, 10);
  REQUIRE(overflow);
  CHECK_FALSE(*overflow);
}
