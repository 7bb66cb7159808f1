// parse_header_block, unfold_value, format_header and the line-end converters on raw bytes.
// The first byte picks chunk split points for the converters; the whole input is the message.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "libmail/limits.h"
#include "libmail/rfc5322.h"

namespace {

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

bool inside(std::string_view view, std::string_view whole) {
  return view.data() >= whole.data() && view.data() + view.size() <= whole.data() + whole.size();
}

bool has_cr_or_lf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

void check_header(std::string_view message) {
  const mailwright::HeaderBlock block = mailwright::parse_header_block(message);
  check(block.body_offset <= message.size());
  check(block.fields.size() <= mailwright::limits::kHeaderFields);
  check(!(block.complete && block.malformed));
  check(block.malformed == !block.problem.empty());
  if (block.complete) {
    check(block.body_offset > 0 && message[block.body_offset - 1] == '\n');
  } else if (!block.malformed) {
    check(block.body_offset == message.size());
  }
  for (const mailwright::HeaderField& field : block.fields) {
    check(inside(field.name, message));
    check(inside(field.raw_value, message));
    // Fields are header, before the body or the offending line.
    check(static_cast<std::size_t>(field.raw_value.data() - message.data()) <= block.body_offset);
    check(static_cast<std::size_t>(field.name.data() - message.data()) < block.body_offset);
    check(mailwright::is_valid_field_name(field.name));
    check(field.raw_value.size() < mailwright::limits::kHeaderField);
    check(field.raw_value.empty() || field.raw_value.back() != '\n');
    const std::string value = mailwright::unfold_value(field.raw_value);
    check(!has_cr_or_lf(value));
    check(value.empty() || (!is_wsp(value.front()) && !is_wsp(value.back())));
  }
}

void check_format(std::string_view name, std::string_view value) {
  const std::string out = mailwright::format_header(name, value, "\n");
  check(!out.empty() && out.back() == '\n');
  std::size_t start = 0;
  std::size_t lines = 0;
  while (start < out.size()) {
    const std::size_t end = out.find('\n', start);
    check(end != std::string::npos);
    check(end - start <= 998);
    check(out.find('\r', start) == std::string::npos || out.find('\r', start) > end);
    if (lines > 0) {
      check(end > start && is_wsp(out[start]));
    }
    start = end + 1;
    ++lines;
  }
  if (!mailwright::is_valid_field_name(name)) {
    return;
  }
  const std::string message = out + "\n";  // the views point into it
  const mailwright::HeaderBlock block = mailwright::parse_header_block(message);
  check(block.complete && block.fields.size() == 1);
  check(block.fields[0].name == name);
  // Without a hard break, folding only inserts line ends that unfolding removes.
  if (name.size() + value.size() + 2 <= 998) {
    std::string expected(value);
    for (char& c : expected) {
      if (c == '\r' || c == '\n') {
        c = ' ';
      }
    }
    const std::size_t first = expected.find_first_not_of(" \t");
    expected = first == std::string::npos
                   ? std::string()
                   : expected.substr(first, expected.find_last_not_of(" \t") - first + 1);
    check(mailwright::unfold_value(block.fields[0].raw_value) == expected);
  }
}

template <typename Converter>
std::string convert(std::string_view in, std::size_t split1, std::size_t split2) {
  std::string out;
  Converter converter;
  converter.feed(in.substr(0, split1), out);
  converter.feed(in.substr(split1, split2 - split1), out);
  converter.feed(in.substr(split2), out);
  converter.finish(out);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_header(input);

  const std::size_t split1 = size == 0 ? 0 : data[0] % (size + 1);
  const std::size_t split2 = size < 2 ? size : split1 + data[1] % (size - split1 + 1);

  const std::string lf_whole = convert<mailwright::LfNormalizer>(input, size, size);
  check(convert<mailwright::LfNormalizer>(input, split1, split2) == lf_whole);
  check(lf_whole.size() <= size);
  mailwright::LfNormalizer normalizer;
  std::string ignored;
  normalizer.feed(input, ignored);
  normalizer.finish(ignored);
  check(normalizer.bytes_out() == lf_whole.size());
  check(normalizer.ends_with_newline() == (!lf_whole.empty() && lf_whole.back() == '\n'));

  const std::string crlf_whole = convert<mailwright::CrlfEncoder>(input, size, size);
  check(convert<mailwright::CrlfEncoder>(input, split1, split2) == crlf_whole);
  for (std::size_t i = 0; i < crlf_whole.size(); ++i) {
    if (crlf_whole[i] == '\r') {
      check(i + 1 < crlf_whole.size() && crlf_whole[i + 1] == '\n');
    } else if (crlf_whole[i] == '\n') {
      check(i > 0 && crlf_whole[i - 1] == '\r');
    }
  }
  // Wire form back to storage form loses nothing that was LF text.
  check(convert<mailwright::LfNormalizer>(crlf_whole, size, size).find('\r') == std::string::npos);

  // A name from the first octets up to a ':' (or 20 octets), the rest as the value.
  const std::size_t colon = input.find(':');
  const std::size_t name_len = std::min<std::size_t>(colon == std::string_view::npos ? 20 : colon,
                                                     std::min<std::size_t>(size, 20));
  check_format(input.substr(0, name_len), input.substr(name_len));
  return 0;
}
