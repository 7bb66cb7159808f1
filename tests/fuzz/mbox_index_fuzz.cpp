// Fuzzes the mbox index parser, which reads a file anyone able to write the spool directory
// could have written (Dovecot CVE-2019-7524 was an index file overflowing a buffer). The
// parser must never crash, and whatever it accepts must serialize back to the same octets.
//
// A checksum that random input cannot match would keep the fuzzer out of the record checks,
// so an input whose first octet is odd is sealed first: the rest, followed by its SHA-256.
#include <openssl/evp.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pop3d/mbox_index.h"

using namespace mailwright::pop3;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  if (size > 0 && (data[0] & 1) != 0) {
    input.erase(0, 1);
    unsigned char sum[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(input.data(), input.size(), sum, &len, EVP_sha256(), nullptr) != 1) {
      std::abort();
    }
    input.append(reinterpret_cast<const char*>(sum), len);
  }
  MboxIndexParse parsed = parse_mbox_index(input);
  if (!parsed.ok) {
    if (parsed.problem.empty())
      std::abort();
    return 0;
  }
  if (serialize_mbox_index(parsed.index) != input)
    std::abort();
  std::uint64_t prev_end = 0;
  for (std::size_t i = 0; i < parsed.index.messages.size(); ++i) {
    const IndexedMessage& m = parsed.index.messages[i];
    if (m.start < m.from_line + 5 || m.end < m.start || m.end > parsed.index.covered)
      std::abort();
    if (i > 0 && m.from_line <= prev_end)
      std::abort();
    prev_end = m.end;
  }
  return 0;
}
