#include "libmail/rfc5322.h"

#include "libmail/ascii.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "libmail/limits.h"

namespace mailwright {
namespace {

// RFC 5322 2.1.1: lines SHOULD be at most 78 characters and MUST be at most 998, CRLF excluded.
constexpr std::size_t kFoldWidth = 78;
constexpr std::size_t kMaxLineWidth = 998;

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

// ftext, RFC 5322 3.6.8: printable US-ASCII except ':'.
bool is_ftext(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 33 && u <= 126 && c != ':';
}


HeaderBlock& stop_malformed(HeaderBlock& block, std::size_t at, std::size_t line_number,
                            std::string_view what) {
  block.malformed = true;
  block.body_offset = at;
  block.problem = "header line " + std::to_string(line_number) + ": ";
  block.problem += what;
  return block;
}

HeaderBlock& stop_incomplete(HeaderBlock& block, std::size_t size) {
  block.complete = false;
  block.body_offset = size;
  return block;
}

const std::string& too_long_text() {
  static const std::string text =
      "header field longer than " + std::to_string(limits::kHeaderField) + " octets";
  return text;
}

}  // namespace

HeaderBlock parse_header_block(std::string_view message) {
  HeaderBlock block;
  const std::size_t size = message.size();
  std::size_t pos = 0;
  std::size_t line_number = 1;

  if (message.starts_with("From ")) {
    const std::size_t search = std::min(size, limits::kHeaderField);
    const void* lf = std::memchr(message.data(), '\n', search);
    if (lf == nullptr) {
      if (size >= limits::kHeaderField) {
        return stop_malformed(block, 0, line_number, "mbox From_ line too long");
      }
      return stop_incomplete(block, size);
    }
    pos = static_cast<const char*>(lf) - message.data() + 1;
    ++line_number;
  }

  std::size_t field_start = 0;  // where the current field's name begins
  std::size_t value_start = 0;  // first octet after its colon
  while (pos < size) {
    const bool continuation = is_wsp(message[pos]);
    if (continuation && block.fields.empty()) {
      return stop_malformed(block, pos, line_number, "continuation line before any field");
    }
    // The limit covers a field with all its continuation lines; otherwise a million short
    // continuation lines would make one unbounded field.
    const std::size_t start = continuation ? field_start : pos;
    const std::size_t limit_end = start + limits::kHeaderField;
    const std::size_t search_end = std::min(size, limit_end);
    const void* lf = std::memchr(message.data() + pos, '\n', search_end - pos);
    std::size_t text_end = 0;
    std::size_t next = 0;
    const bool terminated = lf != nullptr;
    if (terminated) {
      const std::size_t at = static_cast<const char*>(lf) - message.data();
      text_end = (at > pos && message[at - 1] == '\r') ? at - 1 : at;
      next = at + 1;
    } else if (size >= limit_end) {
      if (continuation) {
        block.fields.pop_back();  // every field kept lies before body_offset
      }
      return stop_malformed(block, start, line_number, too_long_text());
    } else {
      // The input ends inside this line. A final CR is probably the first half of a CRLF; a
      // line of only that CR may be the blank line arriving, which the name scan below leaves
      // undecided.
      next = size;
      text_end = message[size - 1] == '\r' ? size - 1 : size;
    }

    if (terminated && text_end == pos) {
      block.complete = true;
      block.body_offset = next;
      return block;
    }
    if (continuation) {
      block.fields.back().raw_value = message.substr(value_start, text_end - value_start);
    } else {
      std::size_t i = pos;
      while (i < text_end && is_ftext(message[i])) {
        ++i;
      }
      const std::size_t name_end = i;
      while (i < text_end && is_wsp(message[i])) {
        ++i;
      }
      if (i == text_end && !terminated) {
        return stop_incomplete(block, size);  // the colon may be in the next read
      }
      if (i == text_end || message[i] != ':') {
        return stop_malformed(block, pos, line_number, "not a header field (no name and colon)");
      }
      if (name_end == pos) {
        return stop_malformed(block, pos, line_number, "empty field name");
      }
      if (block.fields.size() >= limits::kHeaderFields) {
        return stop_malformed(
            block, pos, line_number,
            "more than " + std::to_string(limits::kHeaderFields) + " header fields");
      }
      field_start = pos;
      value_start = i + 1;
      block.fields.push_back(HeaderField{message.substr(pos, name_end - pos),
                                         message.substr(value_start, text_end - value_start)});
    }
    pos = next;
    ++line_number;
  }
  return stop_incomplete(block, size);
}

std::string unfold_value(std::string_view raw_value) {
  std::string out;
  out.reserve(raw_value.size());
  const std::size_t n = raw_value.size();
  for (std::size_t i = 0; i < n; ++i) {
    char c = raw_value[i];
    if (c == '\r' && i + 2 < n && raw_value[i + 1] == '\n' && is_wsp(raw_value[i + 2])) {
      ++i;
      continue;
    }
    if (c == '\n' && i + 1 < n && is_wsp(raw_value[i + 1])) {
      continue;
    }
    // Whatever CR or LF is left must not survive into a value that may be copied into another
    // header or a log line.
    if (c == '\r' || c == '\n') {
      c = ' ';
    }
    out += c;
  }
  const std::size_t first = out.find_first_not_of(" \t");
  if (first == std::string::npos) {
    return std::string();
  }
  const std::size_t last = out.find_last_not_of(" \t");
  return out.substr(first, last - first + 1);
}

bool header_name_equal(std::string_view a, std::string_view b) { return ascii_iequal(a, b); }

const HeaderField* find_header(const std::vector<HeaderField>& fields, std::string_view name) {
  for (const HeaderField& field : fields) {
    if (header_name_equal(field.name, name)) {
      return &field;
    }
  }
  return nullptr;
}

std::vector<const HeaderField*> find_headers(const std::vector<HeaderField>& fields,
                                             std::string_view name) {
  std::vector<const HeaderField*> found;
  for (const HeaderField& field : fields) {
    if (header_name_equal(field.name, name)) {
      found.push_back(&field);
    }
  }
  return found;
}

bool is_valid_field_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), is_ftext);
}

std::string format_header(std::string_view name, std::string_view value, std::string_view eol) {
  std::string text;
  text.reserve(name.size() + value.size() + 2);
  text.append(name);
  text += ':';
  if (!value.empty()) {
    text += ' ';
    text.append(value);
  }
  // A CR or LF from a peer (a HELO name, a subject) must not start a header line of its own.
  const auto is_line_end = [](char c) { return c == '\r' || c == '\n'; };
  std::replace_if(text.begin(), text.end(), is_line_end, ' ');

  const std::size_t n = text.size();
  // Folding between the colon and the value would leave "Name:" alone on its line.
  const std::size_t min_break = name.size() + 2;
  // Folding at or after the last non-WSP octet would leave a line of WSP only, which RFC 5322
  // 3.2.2 forbids.
  const std::size_t last_non_wsp = text.find_last_not_of(" \t");  // ':' guarantees one
  std::string out;
  out.reserve(n + (n / kFoldWidth + 1) * (eol.size() + 1));
  std::size_t s = 0;     // start of the current line in text
  std::size_t lead = 0;  // 1 when the line starts with a space inserted by a hard break
  while (true) {
    const std::size_t soft_room = kFoldWidth - lead;
    const std::size_t hard_room = kMaxLineWidth - lead;
    if (n - s <= soft_room) {
      break;
    }
    // A fold point b puts text[b], a WSP, at the start of the next line; the line before it
    // must hold something besides WSP. Scans stay within one line's reach, so the work is
    // linear in the value.
    std::size_t first_non_wsp = s;
    const std::size_t reach = std::min(n, s + hard_room + 1);
    while (first_non_wsp < reach && is_wsp(text[first_non_wsp])) {
      ++first_non_wsp;
    }
    const std::size_t lo = std::max({first_non_wsp + 1, min_break, s + 1});
    const std::size_t hi = std::min(last_non_wsp, s + hard_room);
    std::size_t fold = std::string::npos;
    for (std::size_t b = std::min(hi, s + soft_room) + 1; b-- > lo;) {
      if (is_wsp(text[b])) {
        fold = b;
        break;
      }
    }
    for (std::size_t b = std::max(lo, s + soft_room + 1); fold == std::string::npos && b <= hi;
         ++b) {
      if (is_wsp(text[b])) {
        fold = b;
      }
    }
    if (fold != std::string::npos) {
      out.append(text, s, fold - s);
      out += eol;
      s = fold;
      lead = 0;
      continue;
    }
    if (n - s <= hard_room) {
      break;
    }
    // No WSP within 998 octets: the line must be broken anyway, at the cost of a space.
    out.append(text, s, hard_room);
    out += eol;
    out += ' ';
    s += hard_room;
    lead = 1;
  }
  out.append(text, s);
  out += eol;
  return out;
}

std::string format_rfc5322_date(std::time_t when) {
  // strftime's %a and %b follow the locale; RFC 5322 3.3 wants the English names.
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm tm{};
  long offset = 0;
  // A zone offset with seconds (local mean time before 1900) cannot be written as +hhmm, and a
  // truncated one would misstate the instant, so such times are written in UTC.
  if (localtime_r(&when, &tm) != nullptr && tm.tm_gmtoff % 60 == 0) {
    offset = tm.tm_gmtoff;
  } else if (gmtime_r(&when, &tm) == nullptr) {
    const std::time_t epoch = 0;
    gmtime_r(&epoch, &tm);
  }
  const char sign = offset < 0 ? '-' : '+';
  const long minutes = (offset < 0 ? -offset : offset) / 60;
  char buf[128];
  const int length =
      std::snprintf(buf, sizeof buf, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld",
                    kDays[tm.tm_wday % 7], tm.tm_mday, kMonths[tm.tm_mon % 12], tm.tm_year + 1900,
                    tm.tm_hour, tm.tm_min, tm.tm_sec, sign, minutes / 60, minutes % 60);
  if (length < 0) {
    return std::string();  // snprintf fails only on an encoding error; there is none here
  }
  return std::string(buf, std::min<std::size_t>(length, sizeof buf - 1));
}

void LfNormalizer::put(std::string_view s, std::string& out) {
  if (s.empty()) {
    return;
  }
  out.append(s);
  last_ = s.back();
  bytes_out_ += s.size();
}

void LfNormalizer::feed(std::string_view in, std::string& out) {
  if (in.empty()) {
    return;
  }
  if (held_cr_) {
    held_cr_ = false;
    if (in.front() == '\n') {
      put("\n", out);
      in.remove_prefix(1);
    } else {
      put("\r", out);
    }
  }
  while (!in.empty()) {
    const std::size_t cr = in.find('\r');
    if (cr == std::string_view::npos) {
      put(in, out);
      return;
    }
    put(in.substr(0, cr), out);
    if (cr + 1 == in.size()) {
      held_cr_ = true;  // its LF may start the next chunk
      return;
    }
    if (in[cr + 1] == '\n') {
      put("\n", out);
      in.remove_prefix(cr + 2);
    } else {
      put("\r", out);
      in.remove_prefix(cr + 1);
    }
  }
}

void LfNormalizer::finish(std::string& out) {
  if (held_cr_) {
    held_cr_ = false;
    put("\r", out);
  }
}

void CrlfEncoder::feed(std::string_view in, std::string& out) {
  if (in.empty()) {
    return;
  }
  if (held_cr_) {
    // A held CR becomes CRLF whatever follows; if an LF follows, it was that CR's own.
    held_cr_ = false;
    out += "\r\n";
    if (in.front() == '\n') {
      in.remove_prefix(1);
    }
  }
  out.reserve(out.size() + in.size() + in.size() / 16);
  while (!in.empty()) {
    // memchr for LF, then for CR only before it: find_first_of("\r\n") costs a call per
    // octet, and this runs over every octet a POP3 client fetches.
    const char* base = in.data();
    const auto* lf = static_cast<const char*>(std::memchr(base, '\n', in.size()));
    const std::size_t lf_at = lf ? static_cast<std::size_t>(lf - base) : in.size();
    const auto* cr = static_cast<const char*>(std::memchr(base, '\r', lf_at));
    const std::size_t at = cr ? static_cast<std::size_t>(cr - base)
                              : (lf ? lf_at : std::string_view::npos);
    if (at == std::string_view::npos) {
      out.append(in);
      return;
    }
    out.append(in.substr(0, at));
    if (in[at] == '\n') {
      out += "\r\n";
      in.remove_prefix(at + 1);
      continue;
    }
    if (at + 1 == in.size()) {
      held_cr_ = true;
      return;
    }
    out += "\r\n";
    in.remove_prefix(in[at + 1] == '\n' ? at + 2 : at + 1);
  }
}

void CrlfEncoder::finish(std::string& out) {
  if (held_cr_) {
    held_cr_ = false;
    out += "\r\n";
  }
}

}  // namespace mailwright
