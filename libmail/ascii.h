// ASCII-only case folding for protocol words, domain names and header field names: these
// compare case-insensitively by their RFCs, and only in ASCII (a locale must never change
// what "MAIL" or "Subject" matches).
#pragma once

#include <string>
#include <string_view>

namespace mailwright {

constexpr char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

constexpr bool ascii_iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

constexpr bool ascii_istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && ascii_iequal(s.substr(0, prefix.size()), prefix);
}

inline void ascii_lower_in_place(std::string& s) {
  for (char& c : s) c = ascii_lower(c);
}

// No octet above 0x7F: the text needs neither 8BITMIME nor SMTPUTF8.
constexpr bool is_ascii(std::string_view s) {
  for (const char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

}  // namespace mailwright
