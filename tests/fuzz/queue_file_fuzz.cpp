// Fuzzes parse_envelope (mta/queue_file.h) on raw bytes and checks what the header promises:
// a successful parse re-serialised parses again to the same envelope at the same body offset
// within the serialized text, serialization is a fixed point, no parsed value holds CR, LF or NUL
// after escaping (the escaped envelope is printable ASCII), refusals are permanent data errors. The
// input is also applied as a state file to a fixed envelope. Touches no files.
#include <sysexits.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mta/queue_file.h"

namespace {

using mailwright::mta::Envelope;

void require(bool condition) {
  if (!condition)
    std::abort();
}

void check_refusal(const mailwright::Error& error) {
  require(!error.is_temporary());
  require(error.exit_code() == EX_DATAERR);
  require(error.status() == "5.3.0");
}

void check_serialized(std::string_view text) {
  for (char c : text) require(c == '\n' || (c >= 0x20 && c <= 0x7E));
  require(text.size() >= 4 && text.substr(text.size() - 4) == "END\n");
  require(text.find("\nEND\n") == text.size() - 5);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::size_t body = 0;
  auto parsed = mailwright::mta::parse_envelope(input, body);
  if (!parsed) {
    check_refusal(parsed.error());
  } else {
    require(body <= input.size());
    require(input.substr(body - 4, 4) == "END\n");
    std::string text = mailwright::mta::serialize_envelope(*parsed);
    check_serialized(text);
    std::size_t body2 = 0;
    auto again = mailwright::mta::parse_envelope(text + "tail", body2);
    require(again.ok());
    require(*again == *parsed);
    require(body2 == text.size());
    // Keys may come in any order and defaults may be spelled out, so the input need not be
    // what we write; what we write must be a fixed point.
    require(mailwright::mta::serialize_envelope(*again) == text);

    std::string state = mailwright::mta::serialize_state_file(*parsed);
    check_serialized(state);
    Envelope copy = *parsed;
    require(mailwright::mta::apply_state_file(state, copy).ok());
    require(copy == *parsed);
  }

  Envelope fixed;
  fixed.queue_id = "0LJ8K2M3N4P5Q6R7S8T9";
  fixed.recipients.resize(2);
  Envelope before = fixed;
  auto applied = mailwright::mta::apply_state_file(input, fixed);
  if (!applied) {
    check_refusal(applied.error());
    require(fixed == before);
  } else {
    Envelope reapplied = before;
    require(
        mailwright::mta::apply_state_file(mailwright::mta::serialize_state_file(fixed), reapplied)
            .ok());
    require(reapplied == fixed);
  }
  return 0;
}
