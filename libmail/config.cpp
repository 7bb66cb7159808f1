#include "libmail/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include "libmail/limits.h"
#include "libmail/log.h"
#include "libmail/unique_fd.h"

namespace mailwright {
namespace {

constexpr std::size_t kNotFound = static_cast<std::size_t>(-1);
// Long enough to recognise a value, short enough that a 1 MiB line cannot flood a log.
constexpr std::size_t kQuoteMax = 64;
constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// Length of the well-formed UTF-8 sequence at s[i] (Unicode 15, table 3-7: no overlong forms,
// no surrogates, nothing above U+10FFFF), or 0 if there is none.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) -> unsigned {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0x100;
  };
  auto in = [](unsigned b, unsigned lo, unsigned hi) { return b >= lo && b <= hi; };
  const unsigned b0 = byte(0);
  if (b0 < 0x80)
    return 1;
  if (in(b0, 0xC2, 0xDF))
    return in(byte(1), 0x80, 0xBF) ? 2 : 0;
  if (in(b0, 0xE0, 0xEF)) {
    const unsigned lo = b0 == 0xE0 ? 0xA0 : 0x80;
    const unsigned hi = b0 == 0xED ? 0x9F : 0xBF;
    return in(byte(1), lo, hi) && in(byte(2), 0x80, 0xBF) ? 3 : 0;
  }
  if (in(b0, 0xF0, 0xF4)) {
    const unsigned lo = b0 == 0xF0 ? 0x90 : 0x80;
    const unsigned hi = b0 == 0xF4 ? 0x8F : 0xBF;
    return in(byte(1), lo, hi) && in(byte(2), 0x80, 0xBF) && in(byte(3), 0x80, 0xBF) ? 4 : 0;
  }
  return 0;
}

// C0 controls but tab, DEL, and the C1 controls U+0080-U+009F (encoded C2 80 - C2 9F), which
// some terminals obey as escape sequences.
bool is_control(std::string_view s, std::size_t i, std::size_t len) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (len == 1)
    return (b0 < 0x20 && b0 != '\t') || b0 == 0x7F;
  return len == 2 && b0 == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0;
}

// What is wrong with the first bad byte of one line (without its line end), if anything.
// Columns count bytes from 1, plus skipped (the length of a byte order mark removed before).
std::optional<std::string> find_bad_byte(std::string_view line, std::size_t skipped = 0) {
  for (std::size_t i = 0; i < line.size();) {
    const std::size_t len = utf8_length(line, i);
    if (len != 0 && !is_control(line, i, len)) {
      i += len;
      continue;
    }
    const std::string column = " at column " + std::to_string(skipped + i + 1);
    if (len == 0)
      return "invalid UTF-8" + column;
    if (line[i] == '\0')
      return "NUL byte" + column;
    if (line[i] == '\r')
      return "carriage return" + column + " (only CRLF line ends are allowed)";
    constexpr std::string_view kHex = "0123456789ABCDEF";
    const auto last = static_cast<unsigned char>(line[i + len - 1]);
    return std::string("control character U+00") + kHex[last >> 4] + kHex[last & 0xF] + column;
  }
  return std::nullopt;
}

// 'text' for an error message: at most kQuoteMax bytes, cut between characters, with anything
// that is not printable UTF-8 shown as '?' (set() quotes text that was never validated).
std::string quoted(std::string_view text) {
  std::string out = "'";
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len = utf8_length(text, i);
    const bool good = len != 0 && !is_control(text, i, len);
    if (!good)
      len = 1;
    if (out.size() - 1 + len > kQuoteMax) {
      out += "...";
      break;
    }
    out += good ? text.substr(i, len) : std::string_view("?");
    i += len;
  }
  out += '\'';
  return out;
}

bool is_key_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

bool is_valid_key(std::string_view key) {
  return !key.empty() && std::all_of(key.begin(), key.end(), is_key_char);
}

const char* type_name(ConfigType type) {
  switch (type) {
    case ConfigType::kString:
      return "string";
    case ConfigType::kPath:
      return "path";
    case ConfigType::kInt:
      return "int";
    case ConfigType::kBool:
      return "bool";
    case ConfigType::kDuration:
      return "duration";
    case ConfigType::kSize:
      return "size";
    case ConfigType::kList:
      return "list";
    case ConfigType::kChoice:
      return "choice";
  }
  return "unknown";
}

// A wrong getter or a broken schema is a bug in the program: abort so it gets fixed. Daemons
// have stderr on /dev/null, so say it in syslog too.
[[noreturn]] void config_bug(const std::string& what) {
  static_cast<void>(std::fprintf(stderr, "config: %s\n", what.c_str()));
  if (log_target() == LogTarget::kSyslog)
    log_error("-", "config: %s", what.c_str());
  std::abort();
}

std::size_t index_in(std::span<const ConfigKey> schema, std::string_view key) {
  for (std::size_t i = 0; i < schema.size(); ++i) {
    if (schema[i].name == key)
      return i;
  }
  return kNotFound;
}

struct Unit {
  char name;
  unsigned long long factor;
};
constexpr unsigned long long kMinute = 60;
constexpr unsigned long long kHour = 60 * kMinute;
constexpr unsigned long long kDay = 24 * kHour;
constexpr unsigned long long kWeek = 7 * kDay;
constexpr Unit kDurationUnits[] = {{'w', kWeek}, {'d', kDay}, {'h', kHour}, {'m', kMinute}};
constexpr Unit kSizeUnits[] = {
    {'T', 1ULL << 40}, {'G', 1ULL << 30}, {'M', 1ULL << 20}, {'k', 1024}};

std::string format_duration(long long seconds) {
  for (const Unit& unit : kDurationUnits) {
    const auto factor = static_cast<long long>(unit.factor);
    if (seconds > 0 && seconds % factor == 0)
      return std::to_string(seconds / factor) + unit.name;
  }
  return std::to_string(seconds) + "s";
}

std::string format_size(unsigned long long bytes) {
  for (const Unit& unit : kSizeUnits) {
    if (bytes > 0 && bytes % unit.factor == 0)
      return std::to_string(bytes / unit.factor) + unit.name;
  }
  return std::to_string(bytes);
}

enum class AmountStatus { kOk, kSyntax, kTooLarge };

// "15m" -> 900 given factor_of('m') == 60. Digits, then at most one unit character that
// factor_of knows (it returns 0 for the others); no sign, no space, no fraction. The result
// must not exceed limit.
template <typename FactorOf>
AmountStatus parse_amount(std::string_view text, FactorOf factor_of, unsigned long long limit,
                          unsigned long long& out) {
  unsigned long long number = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, number);
  if (ec == std::errc::invalid_argument)
    return AmountStatus::kSyntax;
  unsigned long long factor = 1;
  if (ptr != end) {
    if (end - ptr != 1)
      return AmountStatus::kSyntax;
    factor = factor_of(*ptr);
    if (factor == 0)
      return AmountStatus::kSyntax;
  }
  if (ec == std::errc::result_out_of_range || number > limit / factor) {
    return AmountStatus::kTooLarge;
  }
  out = number * factor;
  return AmountStatus::kOk;
}

unsigned long long duration_factor(char unit) {
  switch (unit) {
    case 's':
      return 1;
    case 'm':
      return kMinute;
    case 'h':
      return kHour;
    case 'd':
      return kDay;
    case 'w':
      return kWeek;
    default:
      return 0;  // uppercase too: "15M" could be read as months
  }
}

unsigned long long size_factor(char unit) {
  switch (unit) {
    case 'k':
    case 'K':
      return 1ULL << 10;
    case 'm':
    case 'M':
      return 1ULL << 20;
    case 'g':
    case 'G':
      return 1ULL << 30;
    case 't':
    case 'T':
      return 1ULL << 40;
    default:
      return 0;
  }
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; };
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [&](char x, char y) { return lower(x) == lower(y); });
}

std::optional<bool> parse_bool(std::string_view text) {
  for (std::string_view word : {"yes", "true", "on", "1"}) {
    if (equals_ignoring_case(text, word))
      return true;
  }
  for (std::string_view word : {"no", "false", "off", "0"}) {
    if (equals_ignoring_case(text, word))
      return false;
  }
  return std::nullopt;
}

bool is_choice(std::string_view text, std::string_view choices) {
  while (true) {
    const std::size_t bar = choices.find('|');
    if (choices.substr(0, bar) == text)
      return true;
    if (bar == std::string_view::npos)
      return false;
    choices.remove_prefix(bar + 1);
  }
}

std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> items;
  std::size_t i = 0;
  while (i < text.size()) {
    auto separator = [](char c) { return c == ',' || is_blank(c); };
    while (i < text.size() && separator(text[i])) ++i;
    const std::size_t start = i;
    while (i < text.size() && !separator(text[i])) ++i;
    if (i > start)
      items.emplace_back(text.substr(start, i - start));
  }
  return items;
}

std::string join_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty())
      out += ", ";
    out += item;
  }
  return out;
}

std::string range_text(const ConfigKey& key) {
  switch (key.type) {
    case ConfigType::kDuration:
      return format_duration(key.min) + " to " + format_duration(key.max);
    case ConfigType::kSize:
      return format_size(key.min < 0 ? 0 : static_cast<unsigned long long>(key.min)) + " to " +
             format_size(static_cast<unsigned long long>(key.max));
    default:
      return std::to_string(key.min) + " to " + std::to_string(key.max);
  }
}

bool has_range(const ConfigKey& key) { return key.max > key.min; }

// Parses one complete value (already trimmed, joined and checked for bad bytes) for key. On
// failure the error text is "key: what is wrong"; the caller puts "FILE:LINE: " in front.
struct ParsedValue {
  std::string text;
  long long number = 0;
  unsigned long long size = 0;
  std::vector<std::string> list;
  std::string error;  // empty when the value is good
};

ParsedValue parse_value(const ConfigKey& key, std::string_view text) {
  ParsedValue v;
  const std::string prefix = std::string(key.name) + ": " + quoted(text);
  auto out_of_range = [&] {
    v.error = prefix + " is out of range (" + range_text(key) + ")";
    return v;
  };
  switch (key.type) {
    case ConfigType::kString:
      break;
    case ConfigType::kPath:
      if (!text.empty() && !text.starts_with('/') && !text.starts_with("~/")) {
        v.error = prefix + " is not an absolute path (start it with / or ~/)";
        return v;
      }
      break;
    case ConfigType::kChoice:
      if (!is_choice(text, key.choices)) {
        std::string words(key.choices);
        std::replace(words.begin(), words.end(), '|', ' ');
        v.error = prefix + " is not one of: " + words;
        return v;
      }
      break;
    case ConfigType::kInt: {
      const char* end = text.data() + text.size();
      auto [ptr, ec] = std::from_chars(text.data(), end, v.number);
      if (ec == std::errc::invalid_argument || ptr != end) {
        v.error = prefix + " is not an integer";
        return v;
      }
      if (ec == std::errc::result_out_of_range) {
        v.error = prefix + " does not fit in 64 bits";
        return v;
      }
      if (has_range(key) && (v.number < key.min || v.number > key.max))
        return out_of_range();
      v.text = std::to_string(v.number);
      return v;
    }
    case ConfigType::kBool: {
      const std::optional<bool> flag = parse_bool(text);
      if (!flag) {
        v.error = prefix + " is not a boolean (use yes or no)";
        return v;
      }
      v.number = *flag ? 1 : 0;
      v.text = *flag ? "yes" : "no";
      return v;
    }
    case ConfigType::kDuration: {
      unsigned long long seconds = 0;
      switch (parse_amount(text, duration_factor, LLONG_MAX, seconds)) {
        case AmountStatus::kSyntax:
          v.error = prefix + " is not a duration (use e.g. 90s, 15m, 4h, 5d)";
          return v;
        case AmountStatus::kTooLarge:
          v.error = prefix + " is too large";
          return v;
        case AmountStatus::kOk:
          break;
      }
      v.number = static_cast<long long>(seconds);
      if (has_range(key) && (v.number < key.min || v.number > key.max))
        return out_of_range();
      v.text = format_duration(v.number);
      return v;
    }
    case ConfigType::kSize: {
      switch (parse_amount(text, size_factor, ULLONG_MAX, v.size)) {
        case AmountStatus::kSyntax:
          v.error = prefix + " is not a size (use e.g. 1024, 10k, 10M, 1G)";
          return v;
        case AmountStatus::kTooLarge:
          v.error = prefix + " is too large";
          return v;
        case AmountStatus::kOk:
          break;
      }
      // min and max are signed: a negative min admits every size from 0 up, a negative max none.
      if (has_range(key) && ((key.min > 0 && v.size < static_cast<unsigned long long>(key.min)) ||
                             key.max < 0 || v.size > static_cast<unsigned long long>(key.max))) {
        return out_of_range();
      }
      v.text = format_size(v.size);
      return v;
    }
    case ConfigType::kList:
      v.list = split_list(text);
      v.text = join_list(v.list);
      return v;
  }
  v.text = std::string(text);
  return v;
}

}  // namespace

Config Config::defaults(std::span<const ConfigKey> schema) {
  Config config(schema);
  config.values_.reserve(schema.size());
  for (std::size_t i = 0; i < schema.size(); ++i) {
    const ConfigKey& key = schema[i];
    const std::string name(key.name);
    if (!is_valid_key(key.name))
      config_bug("schema key '" + name + "' is not a valid key name");
    if (index_in(schema, key.name) != i)
      config_bug("schema names '" + name + "' twice");
    if (find_bad_byte(key.help) || key.help.find('\t') != std::string_view::npos) {
      config_bug("help for '" + name + "' is not one printable line");
    }
    if (key.type == ConfigType::kChoice &&
        (key.choices.empty() || key.choices.starts_with('|') || key.choices.ends_with('|') ||
         key.choices.find("||") != std::string_view::npos)) {
      config_bug("choices for '" + name + "' are empty or have an empty word");
    }
    if (find_bad_byte(key.default_value) || trim(key.default_value) != key.default_value) {
      config_bug("default for '" + name + "' has control characters or surrounding blanks");
    }
    ParsedValue parsed = parse_value(key, key.default_value);
    if (!parsed.error.empty())
      config_bug("bad default: " + parsed.error);
    config.values_.push_back(Value{std::move(parsed.text), parsed.number, parsed.size,
                                   std::move(parsed.list), "default"});
  }
  return config;
}

Result<Config> Config::parse(std::string_view text, std::string_view file_name,
                             std::span<const ConfigKey> schema) {
  auto error_at = [&](std::size_t line, std::string_view what) {
    std::string message(file_name);
    message += ':';
    message += std::to_string(line);
    message += ": ";
    message += what;
    return Error::from_exit_code(EX_CONFIG, std::move(message));
  };
  if (text.size() > limits::kConfigFile) {
    // Refuse before reading any of it; name the line where the limit was passed.
    const auto newlines = std::count(text.begin(), text.begin() + limits::kConfigFile, '\n');
    return error_at(
        static_cast<std::size_t>(newlines) + 1,
        "file is larger than the limit of " + std::to_string(limits::kConfigFile) + " bytes");
  }

  Config config = defaults(schema);
  std::vector<std::size_t> set_at_line(schema.size(), 0);
  // The setting being read: continuation lines add to it until the next setting or the end.
  std::size_t pending = kNotFound;
  std::string pending_value;
  auto finish_pending = [&]() -> Status {
    if (pending == kNotFound)
      return {};
    const std::size_t line = set_at_line[pending];
    ParsedValue parsed = parse_value(schema[pending], pending_value);
    if (!parsed.error.empty())
      return error_at(line, parsed.error);
    config.values_[pending] =
        Value{std::move(parsed.text), parsed.number, parsed.size, std::move(parsed.list),
              std::string(file_name) + ":" + std::to_string(line)};
    pending = kNotFound;
    return {};
  };

  std::size_t line_number = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t eol = text.find('\n', pos);
    std::string_view line = text.substr(pos, eol == std::string_view::npos ? eol : eol - pos);
    pos = eol == std::string_view::npos ? text.size() : eol + 1;
    ++line_number;
    if (eol != std::string_view::npos && line.ends_with('\r'))
      line.remove_suffix(1);
    // Windows Notepad (before 2019) starts UTF-8 files with a byte order mark; it means nothing.
    const std::size_t skipped = line_number == 1 && line.starts_with(kByteOrderMark) ? 3 : 0;
    line.remove_prefix(skipped);
    if (auto bad = find_bad_byte(line, skipped))
      return error_at(line_number, *bad);

    const std::string_view content = trim(line);
    if (content.empty() || content.front() == '#')
      continue;
    if (is_blank(line.front())) {
      if (pending == kNotFound) {
        return error_at(line_number,
                        "continuation line with no setting before it (a setting starts in the "
                        "first column)");
      }
      if (!pending_value.empty())
        pending_value += ' ';
      pending_value += content;
      continue;
    }

    if (Status done = finish_pending(); !done)
      return done.error();
    const std::size_t equals = line.find('=');
    if (equals == std::string_view::npos) {
      return error_at(line_number, quoted(line) + " is not a setting (expected key = value)");
    }
    const std::string_view key = trim(line.substr(0, equals));
    if (key.empty())
      return error_at(line_number, "no key before '='");
    if (!is_valid_key(key)) {
      return error_at(line_number, quoted(key) + " is not a valid key (use a-z, 0-9 and _)");
    }
    const std::size_t index = index_in(schema, key);
    if (index == kNotFound)
      return error_at(line_number, "unknown key " + quoted(key));
    if (set_at_line[index] != 0) {
      return error_at(line_number,
                      quoted(key) + " already set at line " + std::to_string(set_at_line[index]));
    }
    set_at_line[index] = line_number;
    pending = index;
    pending_value = trim(line.substr(equals + 1));
  }
  if (Status done = finish_pending(); !done)
    return done.error();
  return config;
}

Result<Config> Config::load(const std::string& path, std::span<const ConfigKey> schema) {
  if (path.find('\0') != std::string::npos) {
    return Error::from_exit_code(EX_CONFIG, quoted(path) + ": file name contains a NUL byte");
  }
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. It has no
  // effect on reading a regular file, the only kind we go on to read.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd)
    return Error::from_errno(EX_CONFIG, path, errno);
  struct stat st = {};
  if (::fstat(fd.get(), &st) != 0)
    return Error::from_errno(EX_CONFIG, path, errno);
  if (!S_ISREG(st.st_mode))
    return Error::from_exit_code(EX_CONFIG, path + ": not a regular file");
  if (st.st_size < 0 || static_cast<unsigned long long>(st.st_size) > limits::kConfigFile) {
    return Error::from_exit_code(EX_CONFIG, path + ": file is larger than the limit of " +
                                                std::to_string(limits::kConfigFile) + " bytes");
  }
  // Sized from fstat, growing if the file grew since: a small file costs a small buffer. Read
  // at most one byte past the limit, so a file that grew past it is refused by parse().
  std::string text(static_cast<std::size_t>(st.st_size) + 1, '\0');
  std::size_t have = 0;
  for (;;) {
    if (have == text.size()) {
      if (text.size() > limits::kConfigFile) break;
      text.resize(std::min<std::size_t>(text.size() * 2, limits::kConfigFile + 1));
    }
    const ssize_t n = ::read(fd.get(), text.data() + have, text.size() - have);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return Error::from_errno(EX_CONFIG, path, errno);
    if (n == 0)
      break;
    have += static_cast<std::size_t>(n);
  }
  text.resize(have);
  return parse(text, path, schema);
}

Result<Config> Config::load_for_program(const std::string& explicit_path,
                                        const std::string& default_path,
                                        std::span<const ConfigKey> schema) {
  if (!explicit_path.empty()) return load(explicit_path, schema);
  struct stat st = {};
  if (::stat(default_path.c_str(), &st) != 0 && errno == ENOENT) return defaults(schema);
  return load(default_path, schema);
}

const Config::Value& Config::value_for(std::string_view key, const char* getter,
                                       std::initializer_list<ConfigType> types) const {
  const std::size_t index = index_in(schema_, key);
  if (index == kNotFound) {
    config_bug(std::string(getter) + "(\"" + std::string(key) + "\"): key is not in the schema");
  }
  const ConfigType type = schema_[index].type;
  if (std::find(types.begin(), types.end(), type) == types.end()) {
    config_bug(std::string(getter) + "(\"" + std::string(key) + "\"): key is of type " +
               type_name(type));
  }
  return values_[index];
}

const std::string& Config::get_string(std::string_view key) const {
  return value_for(key, "get_string", {ConfigType::kString, ConfigType::kPath, ConfigType::kChoice})
      .text;
}

long long Config::get_int(std::string_view key) const {
  return value_for(key, "get_int", {ConfigType::kInt}).number;
}

bool Config::get_bool(std::string_view key) const {
  return value_for(key, "get_bool", {ConfigType::kBool}).number != 0;
}

std::chrono::seconds Config::get_duration(std::string_view key) const {
  return std::chrono::seconds(value_for(key, "get_duration", {ConfigType::kDuration}).number);
}

unsigned long long Config::get_size(std::string_view key) const {
  return value_for(key, "get_size", {ConfigType::kSize}).size;
}

const std::vector<std::string>& Config::get_list(std::string_view key) const {
  return value_for(key, "get_list", {ConfigType::kList}).list;
}

Status Config::set(std::string_view key, std::string_view value, std::string_view origin) {
  const std::string where = std::string(origin) + ": ";
  const std::size_t index = index_in(schema_, key);
  if (index == kNotFound) {
    return Error::from_exit_code(EX_CONFIG, where + "unknown key " + quoted(key));
  }
  if (auto bad = find_bad_byte(value)) {
    return Error::from_exit_code(EX_CONFIG, where + std::string(key) + ": " + *bad);
  }
  const std::string_view text = trim(value);
  ParsedValue parsed = parse_value(schema_[index], text);
  if (!parsed.error.empty())
    return Error::from_exit_code(EX_CONFIG, where + parsed.error);
  values_[index] = Value{std::move(parsed.text), parsed.number, parsed.size, std::move(parsed.list),
                         std::string(origin)};
  return {};
}

std::string Config::dump() const {
  std::string out;
  for (std::size_t i = 0; i < schema_.size(); ++i) {
    if (!schema_[i].help.empty()) {
      out += "# ";
      out += schema_[i].help;
      out += '\n';
    }
    out += schema_[i].name;
    out += values_[i].text.empty() ? " =" : " = ";
    out += values_[i].text;
    out += '\n';
  }
  return out;
}

std::string Config::origin(std::string_view key) const {
  const std::size_t index = index_in(schema_, key);
  if (index == kNotFound)
    config_bug("origin(\"" + std::string(key) + "\"): key is not in the schema");
  return values_[index].origin;
}

}  // namespace mailwright
