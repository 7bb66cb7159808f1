// Fuzzes Config::parse() with raw bytes against a small schema that has every value type, with
// and without ranges. Whatever parses must dump() to text that parses again to the same values
// and dumps to the same text.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "libmail/config.h"

namespace {

using mailwright::Config;
using mailwright::ConfigKey;
using mailwright::ConfigType;

// The corpus in tests/fuzz/corpus/config uses these names.
constexpr ConfigKey kSchema[] = {
    {"name", ConfigType::kString, "mailwright", "a string"},
    {"password", ConfigType::kString, "", "a string that may hold #"},
    {"spool", ConfigType::kPath, "/var/spool/mw", "an absolute path"},
    {"home_box", ConfigType::kPath, "", "a path that may be ~/"},
    {"workers", ConfigType::kInt, "4", "an int with a range", {}, 1, 64},
    {"offset", ConfigType::kInt, "0", "an int without one"},
    {"tls", ConfigType::kBool, "no", "a bool"},
    {"timeout", ConfigType::kDuration, "5m", "a duration with a range", {}, 1, 86400},
    {"max_age", ConfigType::kDuration, "5d", "a duration without one"},
    {"size_limit", ConfigType::kSize, "10M", "a size with a range", {}, 1024, 1LL << 40},
    {"buffer", ConfigType::kSize, "64k", "a size without one"},
    {"networks", ConfigType::kList, "127.0.0.1, ::1", "a list"},
    {"format", ConfigType::kChoice, "mbox", "a choice", "mbox|maildir|mh"},
};

std::string values_of(const Config& c) {
  std::string out;
  for (const ConfigKey& key : kSchema) {
    out += key.name;
    out += '=';
    switch (key.type) {
      case ConfigType::kString:
      case ConfigType::kPath:
      case ConfigType::kChoice:
        out += c.get_string(key.name);
        break;
      case ConfigType::kInt:
        out += std::to_string(c.get_int(key.name));
        break;
      case ConfigType::kBool:
        out += c.get_bool(key.name) ? "1" : "0";
        break;
      case ConfigType::kDuration:
        out += std::to_string(c.get_duration(key.name).count());
        break;
      case ConfigType::kSize:
        out += std::to_string(c.get_size(key.name));
        break;
      case ConfigType::kList:
        for (const auto& item : c.get_list(key.name)) {
          out += item;
          out += '\x01';  // cannot occur in a value, so items cannot run together unseen
        }
        break;
    }
    out += '\n';
  }
  return out;
}

[[noreturn]] void fail(const char* what, const std::string& detail) {
  static_cast<void>(std::fprintf(stderr, "config_fuzz: %s\n%s\n", what, detail.c_str()));
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto first = Config::parse(text, "fuzz", kSchema);
  if (!first) {
    const std::string& message = first.error().text();
    if (message.rfind("fuzz:", 0) != 0)
      fail("error without FILE:LINE", message);
    return 0;
  }
  const std::string dumped = first->dump();
  auto second = Config::parse(dumped, "dump", kSchema);
  if (!second)
    fail("dump() does not parse", second.error().text() + "\n" + dumped);
  if (values_of(*second) != values_of(*first))
    fail("dump() changes values", dumped);
  if (second->dump() != dumped)
    fail("dump() is not stable", dumped);
  return 0;
}
