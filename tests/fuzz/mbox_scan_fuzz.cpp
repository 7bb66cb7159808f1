// Fuzzes the pop3d mbox scanner (MboxIndexBuilder) against the two things it must agree with:
// libmail's MboxScanner on where messages are, and WireEncoder on how many octets RETR sends
// for each (before dot-stuffing), whatever the chunking. The encoder's output must be valid
// POP3: CRLF lines only, no line that is a lone ".".
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "libmail/mbox.h"
#include "pop3d/mbox_index.h"
#include "pop3d/message_wire.h"

using namespace mailwright;
using namespace mailwright::pop3;

namespace {

// Checks the wire form and returns its length without the stuffed dots.
std::size_t unstuffed_size(std::string_view wire) {
  std::size_t size = 0;
  std::size_t pos = 0;
  while (pos < wire.size()) {
    const std::size_t nl = wire.find('\n', pos);
    if (nl == std::string_view::npos || nl == pos || wire[nl - 1] != '\r')
      std::abort();
    const std::string_view line = wire.substr(pos, nl - 1 - pos);  // without CRLF
    if (line.find_first_of("\r\n") != std::string_view::npos)
      std::abort();
    if (line == ".")
      std::abort();
    size += line.size() + 2 - (!line.empty() && line[0] == '.' ? 1 : 0);
    if (!line.empty() && line[0] == '.' && (line.size() < 2 || line[1] != '.'))
      std::abort();
    pos = nl + 1;
  }
  return size;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t chunk = size > 0 ? (data[0] % 13) + 1 : 1;

  bool garbage = false;
  const auto expected = scan_mbox(input, &garbage);
  MboxIndexBuilder builder;
  for (std::size_t pos = 0; pos < size; pos += chunk) builder.feed(input.substr(pos, chunk));
  const auto found = builder.finish();
  if (found.size() != expected.size() || builder.garbage_before_first() != garbage)
    std::abort();

  MboxIndexBuilder whole;
  whole.feed(input);
  const auto found_whole = whole.finish();
  for (std::size_t i = 0; i < found.size(); ++i) {
    const IndexedMessage& m = found[i];
    if (m.from_line != expected[i].from_line || m.start != expected[i].start ||
        m.end != expected[i].end) {
      std::abort();
    }
    if (m.wire_size != found_whole[i].wire_size || m.digest != found_whole[i].digest) {
      std::abort();
    }
    const std::string_view stored = input.substr(m.start, m.end - m.start);
    WireEncoder encoder({true, std::nullopt});
    std::string wire;
    for (std::size_t pos = 0; pos < stored.size(); pos += chunk) {
      encoder.feed(stored.substr(pos, chunk), wire);
    }
    encoder.finish(wire);
    if (unstuffed_size(wire) != m.wire_size)
      std::abort();
  }
  return 0;
}
