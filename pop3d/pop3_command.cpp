#include "pop3d/pop3_command.h"

#include <sysexits.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <system_error>

namespace mailwright::pop3 {
namespace {

struct VerbName {
  std::string_view name;
  Pop3Verb verb;
};

constexpr std::array<VerbName, 15> kVerbs{{
    {"USER", Pop3Verb::kUser},
    {"PASS", Pop3Verb::kPass},
    {"APOP", Pop3Verb::kApop},
    {"AUTH", Pop3Verb::kAuth},
    {"STAT", Pop3Verb::kStat},
    {"LIST", Pop3Verb::kList},
    {"RETR", Pop3Verb::kRetr},
    {"DELE", Pop3Verb::kDele},
    {"NOOP", Pop3Verb::kNoop},
    {"RSET", Pop3Verb::kRset},
    {"QUIT", Pop3Verb::kQuit},
    {"TOP", Pop3Verb::kTop},
    {"UIDL", Pop3Verb::kUidl},
    {"CAPA", Pop3Verb::kCapa},
    {"STLS", Pop3Verb::kStls},
}};

// RFC 1939 3: "keywords ... three or four characters long"; anything longer is unknown.
constexpr std::size_t kLongestVerb = 4;

Error syntax_error(std::string text) {
  return Error::permanent(EX_DATAERR, "5.5.2", std::move(text));
}
Error argument_error(std::string text) {
  return Error::permanent(EX_DATAERR, "5.5.4", std::move(text));
}

char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (upper(a[i]) != upper(b[i]))
      return false;
  }
  return true;
}

bool is_control(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

std::string_view first_word(std::string_view line) { return line.substr(0, line.find(' ')); }

std::optional<Pop3Verb> verb_named(std::string_view word) {
  if (word.size() > kLongestVerb)
    return std::nullopt;
  for (const VerbName& v : kVerbs) {
    if (equal_ignoring_case(word, v.name))
      return v.verb;
  }
  return std::nullopt;
}

// Plain decimal digits only: from_chars alone would stop at the first non-digit ("1x") and,
// for a signed type, take a minus sign; both must be errors here.
std::optional<std::uint32_t> parse_number(std::string_view token) {
  if (token.empty())
    return std::nullopt;
  for (char c : token) {
    if (c < '0' || c > '9')
      return std::nullopt;
  }
  std::uint32_t value = 0;
  const char* end = token.data() + token.size();
  const auto [ptr, ec] = std::from_chars(token.data(), end, value);
  if (ec != std::errc() || ptr != end)
    return std::nullopt;  // out_of_range: 4294967296 and up
  return value;
}

Result<std::uint32_t> message_number(std::string_view token) {
  std::optional<std::uint32_t> n = parse_number(token);
  if (!n || *n == 0)
    return argument_error("invalid message number");
  return *n;
}

constexpr std::size_t kMaxTokens = 3;

struct Tokens {
  std::array<std::string_view, kMaxTokens> token{};
  std::size_t count = 0;  // may exceed kMaxTokens; only the first kMaxTokens are kept
};

Tokens split_arguments(std::string_view rest) {
  Tokens t;
  std::size_t i = 0;
  while (i < rest.size()) {
    if (rest[i] == ' ') {
      ++i;
      continue;
    }
    const std::size_t end = std::min(rest.find(' ', i), rest.size());
    if (t.count < kMaxTokens)
      t.token[t.count] = rest.substr(i, end - i);
    ++t.count;
    i = end;
  }
  return t;
}

Status expect_arguments(const Tokens& t, std::size_t min, std::size_t max) {
  if (t.count < min)
    return syntax_error("missing argument");
  if (t.count > max)
    return syntax_error("too many arguments");
  return {};
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// RFC 1939 7: the APOP digest is 16 octets in hexadecimal.
bool is_apop_digest(std::string_view s) {
  if (s.size() != 32)
    return false;
  for (char c : s) {
    if (!is_hex(c))
      return false;
  }
  return true;
}


}  // namespace

std::optional<Pop3Verb> pop3_verb_of(std::string_view line) { return verb_named(first_word(line)); }

std::string_view pop3_verb_name(Pop3Verb verb) {
  for (const VerbName& v : kVerbs) {
    if (v.verb == verb)
      return v.name;
  }
  return "?";
}

Result<Pop3Command> parse_pop3_command(std::string_view line) {
  for (char c : line) {
    if (is_control(c))
      return syntax_error("invalid character in command");
  }
  const std::string_view word = first_word(line);
  const std::optional<Pop3Verb> verb = verb_named(word);
  if (!verb)
    return Error::permanent(EX_DATAERR, "5.5.1", "unknown command");

  Pop3Command cmd;
  cmd.verb = *verb;
  const std::string_view rest = line.substr(word.size());

  if (cmd.verb == Pop3Verb::kPass) {
    // The password is everything after "PASS ", spaces included (RFC 1939 7 allows spaces).
    if (rest.size() < 2)
      return syntax_error("missing argument");
    cmd.text = rest.substr(1);
    return cmd;
  }

  const Tokens t = split_arguments(rest);
  switch (cmd.verb) {
    case Pop3Verb::kUser:
      if (Status s = expect_arguments(t, 1, 1); !s)
        return s.error();
      cmd.text = t.token[0];
      break;
    case Pop3Verb::kApop:
      if (Status s = expect_arguments(t, 2, 2); !s)
        return s.error();
      if (!is_apop_digest(t.token[1]))
        return argument_error("invalid APOP digest");
      cmd.text = t.token[0];
      cmd.text2 = t.token[1];
      break;
    case Pop3Verb::kAuth:
      if (Status s = expect_arguments(t, 0, 2); !s)
        return s.error();
      cmd.text = t.token[0];
      cmd.text2 = t.token[1];
      break;
    case Pop3Verb::kList:
    case Pop3Verb::kUidl:
      if (Status s = expect_arguments(t, 0, 1); !s)
        return s.error();
      if (t.count == 1) {
        Result<std::uint32_t> n = message_number(t.token[0]);
        if (!n)
          return n.error();
        cmd.message = *n;
      }
      break;
    case Pop3Verb::kRetr:
    case Pop3Verb::kDele: {
      if (Status s = expect_arguments(t, 1, 1); !s)
        return s.error();
      Result<std::uint32_t> n = message_number(t.token[0]);
      if (!n)
        return n.error();
      cmd.message = *n;
      break;
    }
    case Pop3Verb::kTop: {
      if (Status s = expect_arguments(t, 2, 2); !s)
        return s.error();
      Result<std::uint32_t> n = message_number(t.token[0]);
      if (!n)
        return n.error();
      cmd.message = *n;
      std::optional<std::uint32_t> lines = parse_number(t.token[1]);
      if (!lines)
        return argument_error("invalid line count");
      cmd.lines = *lines;
      break;
    }
    case Pop3Verb::kStat:
    case Pop3Verb::kNoop:
    case Pop3Verb::kRset:
    case Pop3Verb::kQuit:
    case Pop3Verb::kCapa:
    case Pop3Verb::kStls:
      if (Status s = expect_arguments(t, 0, 0); !s)
        return s.error();
      break;
    case Pop3Verb::kPass:
      break;  // handled above
  }
  return cmd;
}

}  // namespace mailwright::pop3
