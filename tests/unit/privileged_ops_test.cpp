#include "mta/privileged_ops.h"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "mta/queue_manager.h"

using namespace mailwright;
using namespace mailwright::mta;
namespace fs = std::filesystem;
using namespace std::string_literals;
using Kind = OpResult::Kind;

namespace {

OpRequest program_request() {
  OpRequest r;
  r.type = OpRequest::Type::kRunProgram;
  r.origin = TargetOrigin::kForward;
  r.user = "alice";
  r.target = "/usr/bin/procmail -d alice";
  r.sender = "a$(touch${IFS}/tmp/x)b@example.org";
  r.recipient = "alice@example.org";
  r.offset = 120;
  r.length = 4096;
  return r;
}

std::string replace_field(const OpRequest& r, std::size_t index, const std::string& value) {
  std::string packet = encode_request(r);
  std::size_t start = 1;
  for (std::size_t i = 0; i < index; ++i) start = packet.find('\0', start) + 1;
  std::size_t end = packet.find('\0', start);
  if (end == std::string::npos) end = packet.size();
  return packet.substr(0, start) + value + packet.substr(end);
}

struct stat make_stat(mode_t mode, uid_t uid) {
  struct stat st {};
  st.st_mode = mode;
  st.st_uid = uid;
  return st;
}

int exited(int code) { return code << 8; }

struct TempDir {
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "privileged_ops_test.XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& content, mode_t mode) const {
    std::string p = path + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    ::chmod(p.c_str(), mode);
    return p;
  }
  std::string path;
};

// Waits (bounded) for the worker's one packet.
Result<OpResult> wait_result(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return Error::temporary(EX_TEMPFAIL, "4.3.0", "timeout");
  std::string packet(kMaxResultPacket + 1, '\0');
  const ssize_t n = ::recv(fd, packet.data(), packet.size(), 0);
  if (n <= 0) return Error::temporary(EX_TEMPFAIL, "4.3.0", "no packet");
  packet.resize(static_cast<std::size_t>(n));
  return decode_result(packet);
}

}  // namespace

TEST_CASE("requests round-trip through their packet") {
  const OpRequest r = program_request();
  auto back = decode_request(encode_request(r));
  REQUIRE(back);
  CHECK(*back == r);

  OpRequest file = r;
  file.type = OpRequest::Type::kAppendFile;
  file.origin = TargetOrigin::kAlias;
  file.user.clear();
  file.target = "/var/log/mail-archive";
  file.sender.clear();  // <>
  auto file_back = decode_request(encode_request(file));
  REQUIRE(file_back);
  CHECK(*file_back == file);

  OpRequest read;
  read.type = OpRequest::Type::kReadForward;
  read.user = "bob";
  auto read_back = decode_request(encode_request(read));
  REQUIRE(read_back);
  CHECK(read_back->type == OpRequest::Type::kReadForward);
  CHECK(read_back->user == "bob");
}

TEST_CASE("every field of a request is checked") {
  const OpRequest r = program_request();
  auto refused = [](const std::string& packet) {
    auto got = decode_request(packet);
    return !got && !got.error().is_temporary();
  };
  CHECK(refused(""));
  CHECK(refused("L"));
  CHECK(refused("X"s + "alice"));
  CHECK(refused("R"));
  CHECK(refused("R../etc"));
  CHECK(refused("R-alice"));
  CHECK(refused("Ralice"s + '\0' + "bob"));
  CHECK(refused(std::string(kMaxRequestPacket + 1, 'R')));
  // origin and user
  CHECK(refused(replace_field(r, 0, "root")));
  CHECK(refused(replace_field(r, 1, "")));           // forward needs its user
  CHECK(refused(replace_field(r, 1, "al/ice")));
  OpRequest alias = r;
  alias.origin = TargetOrigin::kAlias;
  CHECK(refused(encode_request(alias)));               // alias names no user
  alias.user.clear();
  CHECK(decode_request(encode_request(alias)));
  // the command
  CHECK(refused(replace_field(r, 2, "")));
  CHECK(refused(replace_field(r, 2, " leading blank")));
  CHECK(refused(replace_field(r, 2, "evil\ncommand")));
  CHECK(refused(replace_field(r, 2, std::string(kMaxTarget + 1, 'x'))));
  CHECK(decode_request(replace_field(r, 2, "a\tb")));  // tabs are fine in a command
  // the path of a file
  OpRequest file = r;
  file.type = OpRequest::Type::kAppendFile;
  for (const char* bad : {"relative", "/a/../etc/passwd", "/a/./b", "/a//b", "/dir/", "/a\tb"}) {
    file.target = bad;
    INFO(bad);
    CHECK(refused(encode_request(file)));
  }
  file.target = "/var/mail/archive.mbox";
  CHECK(decode_request(encode_request(file)));
  // sender and recipient: any text without control characters, bounded
  CHECK(refused(replace_field(r, 3, "a\rb@example.org")));
  CHECK(refused(replace_field(r, 3, std::string(kMaxEnvelopeAddress + 1, 'a'))));
  CHECK(refused(replace_field(r, 4, "")));
  CHECK(refused(replace_field(r, 4, "x\x7f@example.org")));
  // numbers: decimal, no sign, no leading zero, bounded
  for (const char* bad : {"", "-1", "+1", "01", "1x", "99999999999999999999"}) {
    INFO(bad);
    CHECK(refused(replace_field(r, 5, bad)));
    CHECK(refused(replace_field(r, 6, bad)));
  }
  CHECK(decode_request(replace_field(r, 5, "0")));
  // field count
  CHECK(refused(encode_request(r) + '\0' + "extra"));
  CHECK(refused(encode_request(r).substr(0, encode_request(r).rfind('\0'))));
}

TEST_CASE("results round-trip and are checked") {
  for (const OpResult& r : {OpResult{Kind::kDelivered, "2.0.0", "ok"},
                            OpResult{Kind::kDeferred, "4.3.0", "later"},
                            OpResult{Kind::kFailed, "5.1.1", "no"},
                            OpResult{Kind::kNoForward, "", ""},
                            OpResult{Kind::kUnsafe, "", "~a/.forward: writable by group or others"},
                            OpResult{Kind::kForward, "", "\\alice, |/bin/cat\n"}}) {
    auto back = decode_result(encode_result(r));
    REQUIRE(back);
    CHECK(*back == r);
  }
  CHECK_FALSE(decode_result(""));
  CHECK_FALSE(decode_result("D"));
  CHECK_FALSE(decode_result("D4.3.0"s + '\0' + "x"));  // class must match the kind
  CHECK_FALSE(decode_result("Q5.3.0"s + '\0' + "x"));
  CHECK_FALSE(decode_result("F2.0.0"s + '\0' + "x"));
  CHECK_FALSE(decode_result("F5.x.0"s + '\0' + "x"));
  CHECK_FALSE(decode_result("N4.3.0"s + '\0'));        // no status for a .forward answer
  CHECK_FALSE(decode_result("Z"s + '\0' + "x"));
}

TEST_CASE("a .forward is judged as sendmail judges it") {
  const uid_t alice = 1000;
  const struct stat home = make_stat(S_IFDIR | 0755, alice);
  const struct stat file = make_stat(S_IFREG | 0644, alice);
  CHECK(forward_file_problem(home, file, alice).empty());
  CHECK(forward_file_problem(home, make_stat(S_IFREG | 0600, alice), alice).empty());
  CHECK(forward_file_problem(home, make_stat(S_IFREG | 0644, 0), alice).empty());  // root's
  CHECK(forward_file_problem(make_stat(S_IFDIR | 0700, 0), file, alice).empty());
  CHECK(forward_file_problem(home, make_stat(S_IFREG | 0664, alice), alice) ==
        "writable by group or others");
  CHECK(forward_file_problem(home, make_stat(S_IFREG | 0646, alice), alice) ==
        "writable by group or others");
  CHECK(forward_file_problem(home, make_stat(S_IFREG | 0644, 1001), alice) ==
        "belongs to another user");
  CHECK(forward_file_problem(home, make_stat(S_IFIFO | 0644, alice), alice) ==
        "not a regular file");
  CHECK(forward_file_problem(home, make_stat(S_IFDIR | 0755, alice), alice) ==
        "not a regular file");
  CHECK(forward_file_problem(make_stat(S_IFDIR | 0775, alice), file, alice) ==
        "home directory is writable by group or others");
  CHECK(forward_file_problem(make_stat(S_IFDIR | 01777, 0), file, alice) ==
        "home directory is writable by group or others");
  CHECK(forward_file_problem(make_stat(S_IFDIR | 0755, 1001), file, alice) ==
        "home directory belongs to another user");
  CHECK(forward_file_problem(make_stat(S_IFREG | 0755, alice), file, alice) ==
        "home directory is not a directory");
}

TEST_CASE("exit statuses map as sysexits says") {
  auto r = program_result(exited(0), false, "");
  CHECK(r.kind == Kind::kDelivered);
  CHECK(r.status == "2.0.0");

  r = program_result(exited(EX_TEMPFAIL), false, "try later\n");
  CHECK(r.kind == Kind::kDeferred);
  CHECK(r.status[0] == '4');
  CHECK(r.text == "command exited with status 75 (temporary failure): try later");

  r = program_result(exited(EX_NOUSER), false, "no such ticket queue\n");
  CHECK(r.kind == Kind::kFailed);
  CHECK(r.status == "5.1.1");
  CHECK(r.text.find("no such ticket queue") != std::string::npos);

  for (int code : {EX_OSERR, EX_IOERR, EX_SOFTWARE, EX_CONFIG}) {
    INFO(code);
    CHECK(program_result(exited(code), false, "").kind == Kind::kDeferred);
  }
  for (int code : {EX_USAGE, EX_DATAERR, EX_UNAVAILABLE, EX_NOPERM, EX_CANTCREAT}) {
    INFO(code);
    CHECK(program_result(exited(code), false, "").kind == Kind::kFailed);
  }
  // Not a sysexits code: the command failed.
  for (int code : {1, 2, 126, 127, 255}) {
    INFO(code);
    r = program_result(exited(code), false, "sh: 1: nosuch: not found");
    CHECK(r.kind == Kind::kFailed);
    CHECK(r.status == "5.3.0");
    CHECK(r.text == "command exited with status " + std::to_string(code) +
                        ": sh: 1: nosuch: not found");
  }
  r = program_result(SIGKILL, false, "");
  CHECK(r.kind == Kind::kDeferred);
  CHECK(r.text == "command killed by signal 9");
  r = program_result(SIGKILL, true, "partial");
  CHECK(r.kind == Kind::kDeferred);
  CHECK(r.text == "command time limit exceeded: partial");
}

TEST_CASE("captured output becomes one clean line") {
  CHECK(clean_output("") == "");
  CHECK(clean_output("  line one\r\n\tline two\n\n") == "line one line two");
  CHECK(clean_output("esc\x1b[31mred\x7f and \xc3\xa9") == "esc [31mred and");
  CHECK(clean_output(std::string(5000, 'x')).size() == kMaxCapturedOutput);
  CHECK(clean_output("abcdef", 3) == "abc");
}

TEST_CASE("CRLF becomes LF across chunk boundaries") {
  const std::string in = "a\r\nb\rc\r\n\r\nd\r";
  for (std::size_t split = 0; split <= in.size(); ++split) {
    CrlfToLf lf;
    std::string out;
    lf.feed(in.substr(0, split), out);
    lf.feed(in.substr(split), out);
    lf.finish(out);
    INFO(split);
    CHECK(out == "a\nb\rc\n\nd\r");
  }
}

TEST_CASE("Delivered-To lines are found in the header section only") {
  const std::string header =
      "Received: from x\r\n\tby y\r\nDelivered-To: alice@mx.example.org\r\n"
      "delivered-to:   <Bob@MX.example.org> \r\nSubject: s\r\n\r\n"
      "Delivered-To: carol@mx.example.org\r\n";
  CHECK(has_delivered_to(header, "alice@mx.example.org"));
  CHECK(has_delivered_to(header, "bob@mx.example.org"));
  CHECK_FALSE(has_delivered_to(header, "carol@mx.example.org"));  // in the body
  CHECK_FALSE(has_delivered_to(header, "alice@example.org"));
  CHECK(has_delivered_to("Delivered-To: a@b\nSubject: x\n", "a@b"));
  CHECK_FALSE(has_delivered_to("X-Delivered-To: a@b\n", "a@b"));
  CHECK_FALSE(has_delivered_to("", "a@b"));
}

TEST_CASE("a command from the alias file runs with the message on stdin") {
  TempDir dir;
  // Root runs it as nobody; anyone else as themselves (the launcher's direct mode).
  const bool root = ::geteuid() == 0;
  const passwd* me = ::getpwuid(::geteuid());
  REQUIRE(me != nullptr);
  const std::string user = root ? "nobody" : me->pw_name;
  if (root && ::getpwnam("nobody") == nullptr) {
    WARN("no user nobody: skipped");
    return;
  }
  const std::string command = "echo \"[$SENDER] [$RECIPIENT] [$USER] [$PWD]\"; cat; exit 67";
  OpsPolicy policy;
  std::string quoted;  // the alias file's quoting: a backslash before '"' and '\\'
  for (char c : command) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  policy.aliases = dir.write("aliases", "tracker: \"|" + quoted + "\"\nslow: \"|sleep 30\"\n", 0644);
  policy.program_user = user;
  policy.program_timeout = std::chrono::seconds(1);
  const std::string prefix = "garbage before the message";
  const std::string body = "Subject: hi\r\n\r\nline $(one)\r\n";
  const std::string message_path = dir.write("message", prefix + body, 0600);
  auto open_message = [&] { return UniqueFd(::open(message_path.c_str(), O_RDONLY | O_CLOEXEC)); };

  OpRequest r;
  r.type = OpRequest::Type::kRunProgram;
  r.origin = TargetOrigin::kAlias;
  r.target = command;
  r.sender = "a$(touch${IFS}/tmp/pwned)b@example.org";
  r.recipient = "tracker@example.org";
  r.offset = prefix.size();
  r.length = body.size();

  SECTION("runs, and its exit status and output come back") {
    auto answer = start_operation(encode_request(r), open_message(), policy);
    REQUIRE(answer);
    auto got = wait_result(answer->get(), 10000);
    REQUIRE(got);
    CHECK(got->kind == Kind::kFailed);
    CHECK(got->status == "5.1.1");
    CHECK(got->text == "command exited with status 67 (user unknown): [a$(touch${IFS}/tmp/pwned)b@example.org] "
                       "[tracker@example.org] [" + user + "] [/] Return-Path: "
                       "<a$(touch${IFS}/tmp/pwned)b@example.org> Subject: hi line $(one)");
  }
  SECTION("a command the alias file does not list is refused") {
    r.target = "echo hacked";
    auto answer = start_operation(encode_request(r), open_message(), policy);
    REQUIRE_FALSE(answer);
    INFO(answer.error().text());
    CHECK(answer.error().text().find("does not list") != std::string::npos);
  }
  SECTION("an alias file others may write is not trusted") {
    ::chmod(policy.aliases.c_str(), 0664);
    auto answer = start_operation(encode_request(r), open_message(), policy);
    REQUIRE_FALSE(answer);
    CHECK(answer.error().status() == "4.3.5");
  }
  SECTION("the message must be in the file, and come read-only") {
    r.length = body.size() + 1;
    CHECK_FALSE(start_operation(encode_request(r), open_message(), policy));
    r.length = body.size();
    CHECK_FALSE(start_operation(encode_request(r), UniqueFd(), policy));
    CHECK_FALSE(start_operation(
        encode_request(r), UniqueFd(::open(message_path.c_str(), O_RDWR | O_CLOEXEC)), policy));
  }
  SECTION("the time limit kills it and defers") {
    r.target = "sleep 30";
    auto answer = start_operation(encode_request(r), open_message(), policy);
    if (!answer) FAIL(answer.error().text());
    auto got = wait_result(answer->get(), 10000);
    REQUIRE(got);
    CHECK(got->kind == Kind::kDeferred);
    CHECK(got->text == "command time limit exceeded");
  }
}
