// Drives DataReader and BdatReader over raw bytes and checks the DATA invariants that stop SMTP
// smuggling: the reader ends at most once, only right after a real CRLF "." CRLF (or a ".\r\n"
// at the very start), and gives the same content, end point and verdict however the input is
// split (the split points come from the first input bytes). Accepted content never holds a
// bare CR or bare LF, and the octet count matches the content. BdatReader must take exactly the
// announced octets.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "mta/smtp_data.h"

namespace {

using mailwright::smtp::BareLineEndPolicy;
using mailwright::smtp::DataOptions;
using mailwright::smtp::DataReader;

void check(bool ok) {
  if (!ok)
    std::abort();
}

struct Run {
  bool done = false;
  std::size_t consumed = 0;
  std::string content;
  int reply = 0;
  std::uint64_t octets = 0;
};

Run run(std::string_view input, const DataOptions& options, const std::vector<std::size_t>& cuts) {
  DataReader reader(options);
  Run r;
  std::size_t pos = 0;
  std::size_t k = 0;
  while (pos < input.size()) {
    std::size_t n = k < cuts.size() ? cuts[k++] : input.size();
    n = std::min(std::max<std::size_t>(n, 1), input.size() - pos);
    const auto feed = reader.feed(input.substr(pos, n), r.content);
    check(feed.consumed <= n);
    pos += feed.consumed;
    if (feed.done) {
      check(!r.done || feed.consumed == 0);
      r.done = true;
    } else {
      check(feed.consumed == n);
    }
    if (r.done)
      break;
  }
  r.consumed = pos;
  if (r.done) {
    const auto again = reader.feed("\r\n.\r\n", r.content);
    check(again.done && again.consumed == 0);
    if (reader.outcome().reject)
      r.reply = reader.outcome().reject->reply_code;
    r.octets = reader.outcome().octets;
  }
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3)
    return 0;
  DataOptions options;
  options.bare_line_ends =
      (data[0] & 1) ? BareLineEndPolicy::kNormalize : BareLineEndPolicy::kReject;
  options.max_line_length = (data[0] & 2) ? 16 : 1000;
  options.max_message_size = (data[0] & 4) ? 64 : 0;
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < 3; ++i) cuts.push_back(data[i] % 17 + 1);
  const std::string_view input(reinterpret_cast<const char*>(data) + 3, size - 3);

  const Run whole = run(input, options, {});
  const Run split = run(input, options, cuts);
  const Run bytes = run(input, options, std::vector<std::size_t>(input.size(), 1));
  for (const Run* r : {&split, &bytes}) {
    check(r->done == whole.done && r->consumed == whole.consumed && r->reply == whole.reply &&
          r->content == whole.content && r->octets == whole.octets);
  }
  if (whole.done) {
    // Ends only right after CRLF "." CRLF, or at a ".\r\n" that opens the content, and that is
    // the first place in the input where a real end marker can be.
    const std::string_view seen = input.substr(0, whole.consumed);
    check(seen.size() >= 3 && seen.substr(seen.size() - 3) == ".\r\n");
    check(seen.size() == 3 || (seen.size() >= 5 && seen.substr(seen.size() - 5, 2) == "\r\n"));
    if (whole.reply == 0) {
      check(whole.octets == whole.content.size());
      for (std::size_t i = 0; i < whole.content.size(); ++i) {
        if (whole.content[i] == '\r')
          check(i + 1 < whole.content.size() && whole.content[i + 1] == '\n');
        if (whole.content[i] == '\n')
          check(i > 0 && whole.content[i - 1] == '\r');
      }
    }
  } else {
    check(whole.consumed == input.size());
  }

  // BDAT: exactly n octets, in any pieces.
  if (input.empty())
    return 0;
  mailwright::smtp::BdatReader bdat(options);
  const std::size_t chunk = std::min<std::size_t>(input.size(), data[1]);
  bdat.begin_chunk(chunk, true);
  std::string out;
  std::size_t taken = 0;
  while (taken < input.size()) {
    const std::size_t n = std::min<std::size_t>(cuts[0], input.size() - taken);
    const auto feed = bdat.feed(input.substr(taken, n), out);
    taken += feed.consumed;
    if (feed.done)
      break;
    check(feed.consumed == n);
  }
  check(taken == chunk);
  check(bdat.message_done() == (taken == chunk));
  check(bdat.outcome().reject.has_value() || out.size() == bdat.outcome().octets);
  return 0;
}
