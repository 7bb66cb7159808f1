// Calls parse_pop3_command() and the base64 codec on raw bytes and checks what they promise:
// views point into the line, message numbers are never 0, no accepted line holds a control
// character, and base64 decoding is strict (what it accepts re-encodes to the same text) while
// encoding always round-trips.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pop3d/pop3_command.h"

namespace {

using mailwright::pop3::Pop3Verb;

void check(bool ok) {
  if (!ok)
    std::abort();
}

bool inside(std::string_view part, std::string_view whole) {
  if (part.empty())
    return true;
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);

  auto cmd = mailwright::pop3::parse_pop3_command(line);
  const auto verb = mailwright::pop3::pop3_verb_of(line);
  if (cmd) {
    check(verb && *verb == cmd->verb);
    check(inside(cmd->text, line) && inside(cmd->text2, line));
    for (char c : line) {
      const auto u = static_cast<unsigned char>(c);
      check(u >= 0x20 && u != 0x7f);
    }
    if (cmd->message)
      check(*cmd->message != 0);
    switch (cmd->verb) {
      case Pop3Verb::kRetr:
      case Pop3Verb::kDele:
      case Pop3Verb::kTop:
        check(cmd->message.has_value());
        break;
      case Pop3Verb::kUser:
      case Pop3Verb::kPass:
        check(!cmd->text.empty());
        break;
      case Pop3Verb::kApop:
        check(!cmd->text.empty() && cmd->text2.size() == 32);
        break;
      default:
        break;
    }
    if (cmd->verb != Pop3Verb::kPass) {
      check(cmd->text.find(' ') == std::string_view::npos);
      check(cmd->text2.find(' ') == std::string_view::npos);
    }
    check(mailwright::pop3::pop3_verb_name(cmd->verb).size() >= 3);
  } else {
    check(!cmd.error().text().empty());
  }

  bool ok = false;
  const std::string decoded = mailwright::decode_base64(line, ok);
  if (ok) {
    check(line.size() % 4 == 0);
    check(decoded.size() <= line.size() / 4 * 3);
    check(mailwright::encode_base64(decoded) == line);
  } else {
    check(decoded.empty());
  }

  const std::string encoded = mailwright::encode_base64(line);
  check(encoded.size() == (line.size() + 2) / 3 * 4);
  bool ok2 = false;
  check(mailwright::decode_base64(encoded, ok2) == line);
  check(ok2);
  return 0;
}
