#include "libmail/base64.h"

#include <array>
#include <cstdint>

namespace mailwright {
namespace {

constexpr std::string_view kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<signed char, 256> make_base64_table() {
  std::array<signed char, 256> table{};
  for (auto& v : table) v = -1;
  for (std::size_t i = 0; i < kBase64Alphabet.size(); ++i) {
    table[static_cast<unsigned char>(kBase64Alphabet[i])] = static_cast<signed char>(i);
  }
  return table;
}

constexpr std::array<signed char, 256> kBase64Table = make_base64_table();

int base64_value(char c) { return kBase64Table[static_cast<unsigned char>(c)]; }

}  // namespace

std::string decode_base64(std::string_view text, bool& ok) {
  ok = false;
  std::string out;
  if (text.size() % 4 != 0)
    return out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const char c2 = text[i + 2];
    const char c3 = text[i + 3];
    // '=' only in the last group, as its last one or two characters ("=AAA", "AA=A" and
    // "AAA=BBBB" are errors: RFC 5034 4).
    const std::size_t pad = (last && c3 == '=') ? (c2 == '=' ? 2 : 1) : 0;
    const int v0 = base64_value(text[i]);
    const int v1 = base64_value(text[i + 1]);
    const int v2 = pad >= 2 ? 0 : base64_value(c2);
    const int v3 = pad >= 1 ? 0 : base64_value(c3);
    if (v0 < 0 || v1 < 0 || v2 < 0 || v3 < 0) {
      out.clear();
      return out;
    }
    const auto bits = (static_cast<std::uint32_t>(v0) << 18) |
                      (static_cast<std::uint32_t>(v1) << 12) |
                      (static_cast<std::uint32_t>(v2) << 6) | static_cast<std::uint32_t>(v3);
    // Non-zero pad bits: a second spelling of the same octets (RFC 4648 3.5); refusing it keeps
    // decoding one-to-one.
    if ((pad == 2 && (bits & 0xffff) != 0) || (pad == 1 && (bits & 0xff) != 0)) {
      out.clear();
      return out;
    }
    out.push_back(static_cast<char>((bits >> 16) & 0xff));
    if (pad < 2)
      out.push_back(static_cast<char>((bits >> 8) & 0xff));
    if (pad < 1)
      out.push_back(static_cast<char>(bits & 0xff));
  }
  ok = true;
  return out;
}

std::string encode_base64(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  auto octet = [&](std::size_t k) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(data[k]));
  };
  for (; i + 3 <= data.size(); i += 3) {
    const std::uint32_t bits = (octet(i) << 16) | (octet(i + 1) << 8) | octet(i + 2);
    out.push_back(kBase64Alphabet[(bits >> 18) & 63]);
    out.push_back(kBase64Alphabet[(bits >> 12) & 63]);
    out.push_back(kBase64Alphabet[(bits >> 6) & 63]);
    out.push_back(kBase64Alphabet[bits & 63]);
  }
  const std::size_t left = data.size() - i;
  if (left > 0) {
    std::uint32_t bits = octet(i) << 16;
    if (left == 2)
      bits |= octet(i + 1) << 8;
    out.push_back(kBase64Alphabet[(bits >> 18) & 63]);
    out.push_back(kBase64Alphabet[(bits >> 12) & 63]);
    out.push_back(left == 2 ? kBase64Alphabet[(bits >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::optional<SaslPlain> parse_sasl_plain(std::string_view message) {
  const auto first = message.find('\0');
  if (first == std::string_view::npos) return std::nullopt;
  const auto second = message.find('\0', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  if (message.find('\0', second + 1) != std::string_view::npos) return std::nullopt;
  SaslPlain out{std::string(message.substr(0, first)),
                std::string(message.substr(first + 1, second - first - 1)),
                std::string(message.substr(second + 1))};
  if (out.authcid.empty()) return std::nullopt;
  for (std::string_view name : {std::string_view(out.authzid), std::string_view(out.authcid)}) {
    for (unsigned char c : name) {
      if (c < 0x20 || c == 0x7f) return std::nullopt;
    }
  }
  return out;
}

}  // namespace mailwright
