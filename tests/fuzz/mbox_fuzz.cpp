// Fuzzes the mbox reader and the mboxrd quoting: quoting then unquoting must give back the
// input (with a final newline), the scanner must agree with itself whatever the chunking, and
// every message it reports must lie inside the input.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "libmail/mbox.h"

using namespace mailwright;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);

  auto whole = scan_mbox(input);
  std::uint64_t prev_end = 0;
  for (const auto& m : whole) {
    if (m.from_line < prev_end || m.start < m.from_line || m.end < m.start || m.end > size) {
      std::abort();
    }
    prev_end = m.end;
  }
  std::size_t chunk = size > 0 ? (data[0] % 13) + 1 : 1;
  MboxScanner scanner;
  for (std::size_t pos = 0; pos < size; pos += chunk) scanner.feed(input.substr(pos, chunk));
  auto pieces = scanner.finish();
  if (pieces.size() != whole.size()) std::abort();
  for (std::size_t i = 0; i < whole.size(); ++i) {
    if (pieces[i].start != whole[i].start || pieces[i].end != whole[i].end) std::abort();
  }

  MboxrdQuoter quoter;
  std::string quoted;
  for (std::size_t pos = 0; pos < size; pos += chunk) quoter.feed(input.substr(pos, chunk), quoted);
  quoter.finish(quoted);
  std::string expected(input);
  if (!expected.empty() && expected.back() != '\n') expected.push_back('\n');
  if (mboxrd_unquote(quoted) != expected) std::abort();
  // A quoted message can never contain a line that starts a new message.
  if (quoted.rfind("From ", 0) == 0 || quoted.find("\nFrom ") != std::string::npos) std::abort();
  return 0;
}
