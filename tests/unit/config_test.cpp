#include "libmail/config.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <climits>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "libmail/limits.h"

using namespace mailwright;
using namespace std::chrono_literals;

namespace {

constexpr ConfigKey kSchema[] = {
    {"greeting", ConfigType::kString, "hello world", "what to say first"},
    {"spool_dir", ConfigType::kPath, "/var/spool/mailwright", "where the queue lives"},
    {"home_mailbox", ConfigType::kPath, "", "mailbox below the home directory"},
    {"workers", ConfigType::kInt, "4", "how many at once", {}, 1, 64},
    {"offset", ConfigType::kInt, "-3", "any integer"},
    {"use_tls", ConfigType::kBool, "no", "offer STARTTLS"},
    {"lock_timeout", ConfigType::kDuration, "5m", "how long to wait for a lock", {}, 1, 3600},
    {"max_age", ConfigType::kDuration, "5d", "bounce after this long"},
    {"message_size_limit", ConfigType::kSize, "10M", "largest message", {}, 1024, 1LL << 30},
    {"buffer", ConfigType::kSize, "64k", "read buffer"},
    {"mynetworks", ConfigType::kList, "127.0.0.1, ::1", "trusted networks"},
    {"mailbox_format", ConfigType::kChoice, "mbox", "how to store mail", "mbox|maildir"},
};

Result<Config> parse(std::string_view text) { return Config::parse(text, "t.conf", kSchema); }

// The error text parsing text gives; fails the test if it parses.
std::string error_of(std::string_view text) {
  Result<Config> config = parse(text);
  REQUIRE_FALSE(config);
  return config.error().text();
}

std::string set_error(std::string_view key, std::string_view value) {
  Config config = Config::defaults(kSchema);
  Status status = config.set(key, value);
  REQUIRE_FALSE(status);
  return status.error().text();
}

// Runs fn in a child process and says whether it died of SIGABRT.
bool aborts(const std::function<void()>& fn) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Catch's own SIGABRT handler would print a report from the child; the default is wanted.
    static_cast<void>(::signal(SIGABRT, SIG_DFL));
    const int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) {
      ::dup2(null, STDOUT_FILENO);
      ::dup2(null, STDERR_FILENO);
    }
    fn();
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

// Every value of a config through its getter, for comparing two configs.
std::string all_values(const Config& c) {
  std::string out = c.get_string("greeting") + "|" + c.get_string("spool_dir") + "|" +
                    c.get_string("home_mailbox") + "|" + std::to_string(c.get_int("workers")) +
                    "|" + std::to_string(c.get_int("offset")) + "|" +
                    (c.get_bool("use_tls") ? "yes" : "no") + "|" +
                    std::to_string(c.get_duration("lock_timeout").count()) + "|" +
                    std::to_string(c.get_duration("max_age").count()) + "|" +
                    std::to_string(c.get_size("message_size_limit")) + "|" +
                    std::to_string(c.get_size("buffer")) + "|" + c.get_string("mailbox_format");
  for (const auto& item : c.get_list("mynetworks")) out += "|" + item;
  return out;
}

class TempDir {
 public:
  TempDir() {
    char name[] = "/tmp/config_test.XXXXXX";
    REQUIRE(::mkdtemp(name) != nullptr);
    path_ = name;
  }
  ~TempDir() {
    const std::string command = "rm -rf '" + path_ + "'";
    static_cast<void>(std::system(command.c_str()));
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name, std::string_view content) const {
    std::string path = path_ + "/" + name;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
    REQUIRE(::close(fd) == 0);
    return path;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

TEST_CASE("defaults give every key its default value", "[config]") {
  const Config config = Config::defaults(kSchema);
  CHECK(config.get_string("greeting") == "hello world");
  CHECK(config.get_string("spool_dir") == "/var/spool/mailwright");
  CHECK(config.get_string("home_mailbox").empty());
  CHECK(config.get_int("workers") == 4);
  CHECK(config.get_int("offset") == -3);
  CHECK_FALSE(config.get_bool("use_tls"));
  CHECK(config.get_duration("lock_timeout") == 5min);
  CHECK(config.get_duration("max_age") == 120h);
  CHECK(config.get_size("message_size_limit") == 10ULL << 20);
  CHECK(config.get_size("buffer") == 64ULL << 10);
  CHECK(config.get_list("mynetworks") == std::vector<std::string>{"127.0.0.1", "::1"});
  CHECK(config.get_string("mailbox_format") == "mbox");
  CHECK(config.origin("workers") == "default");
  // An empty file is the defaults.
  Result<Config> empty = parse("");
  REQUIRE(empty);
  CHECK(all_values(*empty) == all_values(config));
}

TEST_CASE("parses key = value with blanks around '=' and the value", "[config]") {
  auto text = GENERATE(as<std::string>{}, "workers=8", "workers = 8", "workers\t=\t8",
                       "workers   =8   ", "workers = 8\t \n", "\nworkers = 8\n\n");
  Result<Config> config = parse(text);
  REQUIRE(config);
  CHECK(config->get_int("workers") == 8);
}

TEST_CASE("keeps blanks inside a value and everything after the first '='", "[config]") {
  Result<Config> config = parse("greeting =  a  b\tc = d  \n");
  REQUIRE(config);
  CHECK(config->get_string("greeting") == "a  b\tc = d");
}

TEST_CASE("a '#' starts a comment only as the first non-blank character", "[config]") {
  Result<Config> config = parse(
      "# a comment\n"
      "   # an indented comment\n"
      "\t#workers = 9\n"
      "greeting = se#cret # not a comment\n"
      "spool_dir = /var/spool/#queue\n");
  REQUIRE(config);
  CHECK(config->get_int("workers") == 4);
  CHECK(config->get_string("greeting") == "se#cret # not a comment");
  CHECK(config->get_string("spool_dir") == "/var/spool/#queue");
  CHECK(error_of("workers = 4 # four") == "t.conf:1: workers: '4 # four' is not an integer");
}

TEST_CASE("ignores blank and whitespace-only lines", "[config]") {
  Result<Config> config = parse("\n   \n\t\n \t \nworkers = 2\n\n");
  REQUIRE(config);
  CHECK(config->get_int("workers") == 2);
  CHECK(config->origin("workers") == "t.conf:5");
}

TEST_CASE("an indented line continues the previous setting", "[config]") {
  SECTION("joined with a single space") {
    Result<Config> config = parse("greeting = hello\n    big   \n\tworld\nworkers = 3\n");
    REQUIRE(config);
    CHECK(config->get_string("greeting") == "hello big world");
    CHECK(config->get_int("workers") == 3);
    CHECK(config->origin("greeting") == "t.conf:1");
  }
  SECTION("across blank lines and comments") {
    Result<Config> config = parse(
        "mynetworks = 10.0.0.0/8,\n"
        "    # the office\n"
        "    192.0.2.0/24\n"
        "\n"
        "    198.51.100.7\n");
    REQUIRE(config);
    CHECK(config->get_list("mynetworks") ==
          std::vector<std::string>{"10.0.0.0/8", "192.0.2.0/24", "198.51.100.7"});
  }
  SECTION("after an empty value") {
    Result<Config> config = parse("greeting =\n  hi there\n");
    REQUIRE(config);
    CHECK(config->get_string("greeting") == "hi there");
  }
  SECTION("a bad joined value is reported at the line with the key") {
    CHECK(error_of("# c\nworkers = 1\n  2\n") == "t.conf:2: workers: '1 2' is not an integer");
  }
  SECTION("an indented setting is part of the previous value") {
    Result<Config> config = parse("greeting = hi\n  workers = 9\n");
    REQUIRE(config);
    CHECK(config->get_string("greeting") == "hi workers = 9");
    CHECK(config->get_int("workers") == 4);
  }
}

TEST_CASE("a continuation line with no setting before it is an error", "[config]") {
  CHECK(error_of("  workers = 8\n") ==
        "t.conf:1: continuation line with no setting before it (a setting starts in the first "
        "column)");
  CHECK(error_of("# comment\n\n\tvalue\n").starts_with("t.conf:3: continuation line"));
}

TEST_CASE("a key given twice is an error", "[config]") {
  CHECK(error_of("workers = 1\n# c\nworkers = 1\n") == "t.conf:3: 'workers' already set at line 1");
  CHECK(error_of("greeting = a\nworkers = 1\ngreeting = a\n") ==
        "t.conf:3: 'greeting' already set at line 1");
}

TEST_CASE("rejects unknown keys, bad key names and lines without '='", "[config]") {
  CHECK(error_of("workerz = 1") == "t.conf:1: unknown key 'workerz'");
  CHECK(error_of("\nWorkers = 1") == "t.conf:2: 'Workers' is not a valid key (use a-z, 0-9 and _)");
  CHECK(error_of("lock timeout = 1") ==
        "t.conf:1: 'lock timeout' is not a valid key (use a-z, 0-9 and _)");
  CHECK(error_of("work-ers = 1").starts_with("t.conf:1: 'work-ers' is not a valid key"));
  CHECK(error_of("= 1") == "t.conf:1: no key before '='");
  CHECK(error_of("workers 8") == "t.conf:1: 'workers 8' is not a setting (expected key = value)");
  CHECK(error_of("workers: 8").starts_with("t.conf:1: 'workers: 8' is not a setting"));
}

TEST_CASE("errors are temporary EX_CONFIG failures", "[config]") {
  Result<Config> config = parse("nope = 1");
  REQUIRE_FALSE(config);
  CHECK(config.error().exit_code() == EX_CONFIG);
  CHECK(config.error().is_temporary());
  CHECK(config.error().status() == "4.3.5");
}

TEST_CASE("splits lists on commas and blanks and drops empty items", "[config]") {
  Result<Config> config = parse("mynetworks = a, b c,,d\t e ,\n");
  REQUIRE(config);
  CHECK(config->get_list("mynetworks") == std::vector<std::string>{"a", "b", "c", "d", "e"});
  for (const char* empty : {"mynetworks =", "mynetworks = , ,, \t,", "mynetworks =\t"}) {
    Result<Config> c = parse(empty);
    REQUIRE(c);
    CHECK(c->get_list("mynetworks").empty());
  }
}

TEST_CASE("accepts UTF-8 values", "[config]") {
  Result<Config> config = parse("greeting = Grüße aus Köln \xF0\x9F\x99\x82\n");
  REQUIRE(config);
  CHECK(config->get_string("greeting") == "Grüße aus Köln \xF0\x9F\x99\x82");
}

TEST_CASE("rejects NUL bytes, invalid UTF-8 and control characters with the line", "[config]") {
  using namespace std::string_literals;
  CHECK(error_of("workers = 1\ngreeting = a\0b\n"s) == "t.conf:2: NUL byte at column 13");
  CHECK(error_of("\0"s) == "t.conf:1: NUL byte at column 1");
  CHECK(error_of("greeting = \x1b[31mred") == "t.conf:1: control character U+001B at column 12");
  CHECK(error_of("greeting = del\x7f") == "t.conf:1: control character U+007F at column 15");
  CHECK(error_of("greeting = \xC2\x9B"
                 "31m") == "t.conf:1: control character U+009B at column 12");
  CHECK(error_of("greeting = a\x0c") == "t.conf:1: control character U+000C at column 13");
  CHECK(error_of("# comment \x07\n").starts_with("t.conf:1: control character U+0007"));
  // Invalid UTF-8 is refused even in comments and in keys.
  const char* invalid = GENERATE("\xC3\x28",           // lead byte without continuation
                                 "\xC0\xAF",           // overlong '/'
                                 "\xE0\x80\xAF",       // overlong '/'
                                 "\xED\xA0\x80",       // surrogate U+D800
                                 "\xF4\x90\x80\x80",   // above U+10FFFF
                                 "\xF5\x80\x80\x80",   // no such lead byte
                                 "\x80",               // stray continuation byte
                                 "\xFF", "\xE2\x82");  // cut short at the end of the line
  CHECK(error_of(std::string("greeting = ok\n# ") + invalid + "\n") ==
        "t.conf:2: invalid UTF-8 at column 3");
  CHECK(error_of(std::string("greeting = ") + invalid) == "t.conf:1: invalid UTF-8 at column 12");
}

TEST_CASE("accepts CRLF line ends but no other carriage return", "[config]") {
  SECTION("CRLF and LF, even mixed") {
    Result<Config> config =
        parse("# a DOS file\r\ngreeting = hi \r\n\r\nmynetworks = a,\r\n  b\r\nworkers = 5\n");
    REQUIRE(config);
    CHECK(config->get_string("greeting") == "hi");
    CHECK(config->get_list("mynetworks") == std::vector<std::string>{"a", "b"});
    CHECK(config->get_int("workers") == 5);
  }
  SECTION("a bare CR") {
    CHECK(error_of("greeting = a\rb\n") ==
          "t.conf:1: carriage return at column 13 (only CRLF line ends are allowed)");
    CHECK(error_of("workers = 1\rgreeting = x\r").starts_with("t.conf:1: carriage return"));
    CHECK(error_of("greeting = a\r").starts_with("t.conf:1: carriage return at column 13"));
    CHECK(error_of("greeting = a\r\r\n").starts_with("t.conf:1: carriage return at column 13"));
  }
}

TEST_CASE("ignores a byte order mark at the start of the file only", "[config]") {
  Result<Config> config = parse("\xEF\xBB\xBFworkers = 7\r\n");
  REQUIRE(config);
  CHECK(config->get_int("workers") == 7);
  // Columns still count the mark's three bytes.
  CHECK(error_of("\xEF\xBB\xBFworkers = \x01") ==
        "t.conf:1: control character U+0001 at column 14");
  CHECK(error_of("# c\n\xEF\xBB\xBFworkers = 7")
            .starts_with("t.conf:2: '\xEF\xBB\xBFworkers' is not"));
  CHECK(error_of("\xEF\xBB\xBF\xEF\xBB\xBFworkers = 7")
            .starts_with("t.conf:1: '\xEF\xBB\xBFworkers'"));
}

TEST_CASE("refuses text over the size limit, even one huge line", "[config]") {
  const std::string prefix = "greeting = ";
  SECTION("exactly at the limit is fine") {
    const std::string text = prefix + std::string(limits::kConfigFile - prefix.size(), 'a');
    Result<Config> config = parse(text);
    REQUIRE(config);
    CHECK(config->get_string("greeting").size() == limits::kConfigFile - prefix.size());
  }
  SECTION("one byte more is not") {
    const std::string text = prefix + std::string(limits::kConfigFile - prefix.size() + 1, 'a');
    CHECK(error_of(text) == "t.conf:1: file is larger than the limit of 1048576 bytes");
  }
  SECTION("a 10 MB line") {
    CHECK(error_of(prefix + std::string(10 << 20, 'x')).starts_with("t.conf:1: file is larger"));
  }
  SECTION("names the line where the limit was passed") {
    std::string text;
    while (text.size() <= limits::kConfigFile) text += "# 0123456789abcdef\n";  // 19 bytes
    CHECK(error_of(text).starts_with("t.conf:" + std::to_string(limits::kConfigFile / 19 + 1) +
                                     ": file"));
  }
}

TEST_CASE("cuts long values in error messages", "[config]") {
  const std::string text = "workers = " + std::string(5000, '7') + "x";
  const std::string message = error_of(text);
  CHECK(message == "t.conf:1: workers: '" + std::string(64, '7') + "...' is not an integer");
  // Cut between characters, never inside one: 'ü' is two bytes.
  std::string umlauts;
  for (int i = 0; i < 40; ++i) umlauts += "ü";
  CHECK(error_of("workers = " + umlauts) ==
        "t.conf:1: workers: '" + umlauts.substr(0, 64) + "...' is not an integer");
}

TEST_CASE("parses integers with from_chars and checks their range", "[config]") {
  auto value_of = [](std::string_view key, std::string_view value) {
    Result<Config> config = parse(std::string(key) + " = " + std::string(value));
    REQUIRE(config);
    return config->get_int(key);
  };
  CHECK(value_of("offset", "9223372036854775807") == LLONG_MAX);
  CHECK(value_of("offset", "-9223372036854775808") == LLONG_MIN);
  CHECK(value_of("offset", "0") == 0);
  CHECK(value_of("offset", "007") == 7);
  CHECK(value_of("workers", "1") == 1);
  CHECK(value_of("workers", "64") == 64);
  CHECK(error_of("offset = 9223372036854775808") ==
        "t.conf:1: offset: '9223372036854775808' does not fit in 64 bits");
  CHECK(error_of("offset = -9223372036854775809").ends_with("does not fit in 64 bits"));
  CHECK(error_of("offset = 99999999999999999999999999").ends_with("does not fit in 64 bits"));
  CHECK(error_of("workers = 0") == "t.conf:1: workers: '0' is out of range (1 to 64)");
  CHECK(error_of("workers = 65") == "t.conf:1: workers: '65' is out of range (1 to 64)");
  CHECK(error_of("workers = -1").ends_with("is out of range (1 to 64)"));
  const char* bad = GENERATE("10x", "", "+5", "0x10", "1e3", "1.0", "- 1", "1 000", "--1", "x");
  CHECK(error_of(std::string("offset = ") + bad).ends_with("is not an integer"));
}

TEST_CASE("parses booleans in any case", "[config]") {
  auto [text, expected] = GENERATE(table<const char*, bool>({{"yes", true},
                                                             {"YES", true},
                                                             {"true", true},
                                                             {"True", true},
                                                             {"on", true},
                                                             {"On", true},
                                                             {"1", true},
                                                             {"no", false},
                                                             {"NO", false},
                                                             {"false", false},
                                                             {"FALSE", false},
                                                             {"off", false},
                                                             {"oFf", false},
                                                             {"0", false}}));
  Result<Config> config = parse(std::string("use_tls = ") + text);
  REQUIRE(config);
  CHECK(config->get_bool("use_tls") == expected);
  const char* bad = GENERATE("maybe", "", "y", "n", "2", "yes please", "01", "enable");
  CHECK(error_of(std::string("use_tls = ") + bad) ==
        std::string("t.conf:1: use_tls: '") + bad + "' is not a boolean (use yes or no)");
}

TEST_CASE("parses durations with units s, m, h, d and w", "[config]") {
  auto [text, seconds] =
      GENERATE(table<const char*, long long>({{"90", 90},
                                              {"90s", 90},
                                              {"0", 0},
                                              {"0s", 0},
                                              {"15m", 900},
                                              {"4h", 14400},
                                              {"5d", 432000},
                                              {"1w", 604800},
                                              {"9223372036854775807", LLONG_MAX},
                                              {"9223372036854775807s", LLONG_MAX},
                                              {"15250284452471w", 15250284452471LL * 604800}}));
  Result<Config> config = parse(std::string("max_age = ") + text);
  REQUIRE(config);
  CHECK(config->get_duration("max_age") == std::chrono::seconds(seconds));
}

TEST_CASE("rejects malformed, negative and overflowing durations", "[config]") {
  CHECK(error_of("\n\nlock_timeout = 5 minutes") ==
        "t.conf:3: lock_timeout: '5 minutes' is not a duration (use e.g. 90s, 15m, 4h, 5d)");
  const char* bad = GENERATE("15M", "4H", "-5s", "-5", "1.5h", "m", "15mm", "15 m", "1y", "", "+5",
                             "15min", "0x10");
  CHECK(error_of(std::string("max_age = ") + bad)
            .ends_with("is not a duration (use e.g. 90s, "
                       "15m, 4h, 5d)"));
  CHECK(error_of("max_age = 9223372036854775808") ==
        "t.conf:1: max_age: '9223372036854775808' is too large");
  CHECK(error_of("max_age = 15250284452472w").ends_with("is too large"));
  CHECK(error_of("max_age = 153722867280912931m").ends_with("is too large"));
  CHECK(error_of("max_age = 99999999999999999999999d").ends_with("is too large"));
}

TEST_CASE("checks a duration's range in seconds", "[config]") {
  Result<Config> config = parse("lock_timeout = 1h");
  REQUIRE(config);
  CHECK(config->get_duration("lock_timeout") == 1h);
  CHECK(error_of("lock_timeout = 0") == "t.conf:1: lock_timeout: '0' is out of range (1s to 1h)");
  CHECK(error_of("lock_timeout = 61m").ends_with("is out of range (1s to 1h)"));
  CHECK(error_of("lock_timeout = 3601").ends_with("is out of range (1s to 1h)"));
}

TEST_CASE("parses sizes in powers of 1024", "[config]") {
  auto [text, bytes] =
      GENERATE(table<const char*, unsigned long long>({{"1024", 1024},
                                                       {"0", 0},
                                                       {"10k", 10240},
                                                       {"10K", 10240},
                                                       {"10M", 10ULL << 20},
                                                       {"10m", 10ULL << 20},
                                                       {"1G", 1ULL << 30},
                                                       {"1g", 1ULL << 30},
                                                       {"2T", 2ULL << 40},
                                                       {"18446744073709551615", ULLONG_MAX},
                                                       {"17179869183G", 17179869183ULL << 30}}));
  Result<Config> config = parse(std::string("buffer = ") + text);
  REQUIRE(config);
  CHECK(config->get_size("buffer") == bytes);
}

TEST_CASE("rejects malformed, negative and overflowing sizes", "[config]") {
  const char* bad =
      GENERATE("-5", "-5k", "10x", "10 k", "1.5M", "10kb", "10KB", "k", "", "+1", "1e6", "0x10");
  CHECK(error_of(std::string("buffer = ") + bad) ==
        std::string("t.conf:1: buffer: '") + bad + "' is not a size (use e.g. 1024, 10k, 10M, 1G)");
  CHECK(error_of("buffer = 18446744073709551616").ends_with("is too large"));
  CHECK(error_of("buffer = 17179869184G").ends_with("is too large"));
  CHECK(error_of("buffer = 16777216T").ends_with("is too large"));
  CHECK(error_of("message_size_limit = 1023") ==
        "t.conf:1: message_size_limit: '1023' is out of range (1k to 1G)");
  CHECK(error_of("message_size_limit = 1025M").ends_with("is out of range (1k to 1G)"));
  Result<Config> config = parse("message_size_limit = 1G");
  REQUIRE(config);
  CHECK(config->get_size("message_size_limit") == 1ULL << 30);
}

TEST_CASE("paths are absolute or home-relative", "[config]") {
  auto good = GENERATE("/", "/var/mail", "~/Mail", "~/", "");
  Result<Config> config = parse(std::string("home_mailbox = ") + good);
  REQUIRE(config);
  CHECK(config->get_string("home_mailbox") == good);
  auto bad = GENERATE("Mail", "./Mail", "~", "~joe/Mail", "~Mail", "../x");
  CHECK(error_of(std::string("home_mailbox = ") + bad) ==
        std::string("t.conf:1: home_mailbox: '") + bad +
            "' is not an absolute path (start it with / or ~/)");
}

TEST_CASE("a choice must be exactly one of its words", "[config]") {
  Result<Config> config = parse("mailbox_format = maildir");
  REQUIRE(config);
  CHECK(config->get_string("mailbox_format") == "maildir");
  auto bad = GENERATE("Maildir", "mh", "", "mbox|maildir", "mbo", "maildirs", "|");
  CHECK(error_of(std::string("mailbox_format = ") + bad) ==
        std::string("t.conf:1: mailbox_format: '") + bad + "' is not one of: mbox maildir");
}

TEST_CASE("set() overrides a value after validating it", "[config]") {
  Result<Config> parsed = parse("workers = 8\n");
  REQUIRE(parsed);
  Config config = *parsed;
  REQUIRE(config.set("workers", " 16 "));
  CHECK(config.get_int("workers") == 16);
  CHECK(config.origin("workers") == "command line");
  REQUIRE(config.set("workers", "17", "-o workers=17"));
  CHECK(config.get_int("workers") == 17);
  CHECK(config.origin("workers") == "-o workers=17");
  REQUIRE(config.set("mynetworks", "x,,y"));
  CHECK(config.get_list("mynetworks") == std::vector<std::string>{"x", "y"});
  REQUIRE(config.set("greeting", ""));
  CHECK(config.get_string("greeting").empty());

  CHECK(set_error("workers", "0") == "command line: workers: '0' is out of range (1 to 64)");
  CHECK(set_error("nope", "1") == "command line: unknown key 'nope'");
  CHECK(set_error("no\x1bpe", "1") == "command line: unknown key 'no?pe'");
  CHECK(set_error("greeting", "a\nb") ==
        "command line: greeting: control character U+000A at "
        "column 2");
  CHECK(set_error("greeting", "\xFF") == "command line: greeting: invalid UTF-8 at column 1");
  // A failed set() leaves the old value.
  Status failed = config.set("workers", "x");
  CHECK_FALSE(failed);
  CHECK(config.get_int("workers") == 17);
}

TEST_CASE("origin() says where each value came from", "[config]") {
  Result<Config> config =
      Config::parse("# c\n\nworkers = 2\nmynetworks = a\n  b\n", "/etc/m.conf", kSchema);
  REQUIRE(config);
  CHECK(config->origin("workers") == "/etc/m.conf:3");
  CHECK(config->origin("mynetworks") == "/etc/m.conf:4");
  CHECK(config->origin("greeting") == "default");
}

TEST_CASE("dump() shows every key in canonical form", "[config]") {
  constexpr ConfigKey kSmall[] = {
      {"name", ConfigType::kString, "", "who we are"},
      {"verbose", ConfigType::kBool, "TRUE", ""},
      {"timeout", ConfigType::kDuration, "60m", "how long"},
      {"limit", ConfigType::kSize, "1024k", "how much"},
      {"peers", ConfigType::kList, "a b,,c", "who"},
  };
  const Config config = Config::defaults(kSmall);
  CHECK(config.dump() ==
        "# who we are\n"
        "name =\n"
        "verbose = yes\n"
        "# how long\n"
        "timeout = 1h\n"
        "# how much\n"
        "limit = 1M\n"
        "# who\n"
        "peers = a, b, c\n");
}

TEST_CASE("dump() parses back to the same values", "[config]") {
  const char* text =
      GENERATE("",
               "greeting = a  #b\t c\nspool_dir = /x y\nhome_mailbox = ~/\nworkers = 64\n"
               "offset = -9223372036854775808\nuse_tls = ON\nlock_timeout = 90\nmax_age = 1209600\n"
               "message_size_limit = 1025\nbuffer = 18446744073709551615\nmynetworks = ,a,,b c\n"
               "mailbox_format = maildir\n",
               "greeting =\nmynetworks =\nbuffer = 0\nmax_age = 0\n",
               "greeting = Grüße\n  aus\n  Köln\nbuffer = 3072k\nmax_age = 86400s\n");
  Result<Config> first = parse(text);
  REQUIRE(first);
  const std::string dumped = first->dump();
  Result<Config> second = Config::parse(dumped, "dump", kSchema);
  INFO(dumped);
  REQUIRE(second);
  CHECK(all_values(*second) == all_values(*first));
  CHECK(second->dump() == dumped);
}

TEST_CASE("dump() of defaults lists each key with its help", "[config]") {
  const std::string dumped = Config::defaults(kSchema).dump();
  CHECK(dumped.starts_with("# what to say first\ngreeting = hello world\n"));
  CHECK(dumped.find("\n# trusted networks\nmynetworks = 127.0.0.1, ::1\n") != std::string::npos);
  CHECK(dumped.find("\nhome_mailbox =\n") != std::string::npos);
  CHECK(dumped.ends_with("mailbox_format = mbox\n"));
}

TEST_CASE("load() reads a regular file and refuses anything else", "[config]") {
  TempDir dir;
  SECTION("a regular file") {
    const std::string path = dir.file("good.conf", "workers = 9\n");
    Result<Config> config = Config::load(path, kSchema);
    REQUIRE(config);
    CHECK(config->get_int("workers") == 9);
    CHECK(config->origin("workers") == path + ":1");
  }
  SECTION("errors name the file") {
    const std::string path = dir.file("bad.conf", "\nworkers = many\n");
    Result<Config> config = Config::load(path, kSchema);
    REQUIRE_FALSE(config);
    CHECK(config.error().text() == path + ":2: workers: 'many' is not an integer");
  }
  SECTION("a missing file") {
    Result<Config> config = Config::load(dir.path() + "/missing.conf", kSchema);
    REQUIRE_FALSE(config);
    CHECK(config.error().text() == dir.path() + "/missing.conf: No such file or directory");
    CHECK(config.error().exit_code() == EX_CONFIG);
  }
  SECTION("a directory") {
    Result<Config> config = Config::load(dir.path(), kSchema);
    REQUIRE_FALSE(config);
    CHECK(config.error().text() == dir.path() + ": not a regular file");
  }
  SECTION("a FIFO, without waiting for a writer") {
    const std::string fifo = dir.path() + "/fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    Result<Config> config = Config::load(fifo, kSchema);
    REQUIRE_FALSE(config);
    CHECK(config.error().text() == fifo + ": not a regular file");
  }
  SECTION("a device") {
    Result<Config> config = Config::load("/dev/zero", kSchema);
    REQUIRE_FALSE(config);
    CHECK(config.error().text() == "/dev/zero: not a regular file");
  }
  SECTION("a file over the limit") {
    const std::string path = dir.file("big.conf", std::string(limits::kConfigFile + 1, '#'));
    Result<Config> config = Config::load(path, kSchema);
    REQUIRE_FALSE(config);
    CHECK(config.error().text() == path + ": file is larger than the limit of 1048576 bytes");
  }
  SECTION("a file name with a NUL byte") {
    using namespace std::string_literals;
    Result<Config> config = Config::load(dir.path() + "/a\0b"s, kSchema);
    REQUIRE_FALSE(config);
    CHECK(config.error().text().ends_with("file name contains a NUL byte"));
  }
}

TEST_CASE("misusing the schema aborts", "[config]") {
  const Config config = Config::defaults(kSchema);
  CHECK(aborts([&] { static_cast<void>(config.get_int("nope")); }));
  CHECK(aborts([&] { static_cast<void>(config.get_int("greeting")); }));
  CHECK(aborts([&] { static_cast<void>(config.get_string("workers")); }));
  CHECK(aborts([&] { static_cast<void>(config.get_size("max_age")); }));
  CHECK(aborts([&] { static_cast<void>(config.get_list("greeting")); }));
  CHECK(aborts([&] { static_cast<void>(config.origin("nope")); }));
  CHECK_FALSE(aborts([&] { static_cast<void>(config.get_string("mailbox_format")); }));
  CHECK_FALSE(aborts([&] { static_cast<void>(config.get_string("spool_dir")); }));

  static constexpr ConfigKey kBadDefault[] = {{"n", ConfigType::kInt, "ten", ""}};
  static constexpr ConfigKey kTwice[] = {{"n", ConfigType::kInt, "1", ""},
                                         {"n", ConfigType::kInt, "1", ""}};
  static constexpr ConfigKey kBadName[] = {{"N", ConfigType::kInt, "1", ""}};
  static constexpr ConfigKey kNoChoices[] = {{"c", ConfigType::kChoice, "", ""}};
  static constexpr ConfigKey kBadHelp[] = {{"n", ConfigType::kInt, "1", "two\nlines"}};
  CHECK(aborts([] { static_cast<void>(Config::defaults(kBadDefault)); }));
  CHECK(aborts([] { static_cast<void>(Config::defaults(kTwice)); }));
  CHECK(aborts([] { static_cast<void>(Config::defaults(kBadName)); }));
  CHECK(aborts([] { static_cast<void>(Config::defaults(kNoChoices)); }));
  CHECK(aborts([] { static_cast<void>(Config::defaults(kBadHelp)); }));
  CHECK(aborts([] { static_cast<void>(Config::parse("", "x", kTwice)); }));
}
