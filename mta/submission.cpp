#include "mta/submission.h"

#include <sysexits.h>

#include <algorithm>

#include "libmail/address.h"
#include "libmail/address_list.h"
#include "libmail/ascii.h"
#include "libmail/log.h"
#include "libmail/rfc5322.h"

namespace mailwright::mta {
namespace {

// RFC 5321 4.5.3.1.6: 1000 octets with the CRLF.
constexpr std::size_t kMaxText = 998;

Error data_error(std::string why) {
  return Error::permanent(EX_DATAERR, "5.6.0", std::move(why));
}

// Input lines to CRLF lines, with the dot rule, From_ line, NUL/CR checks and long lines broken.
Result<std::string> to_wire_lines(std::string_view input, bool dot_ends, bool& eight_bit) {
  std::string out;
  out.reserve(input.size() + input.size() / 32 + 2);
  bool in_header = true;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < input.size()) {
    const std::size_t nl = input.find('\n', pos);
    const std::size_t end = nl == std::string_view::npos ? input.size() : nl;
    std::string_view line = input.substr(pos, end - pos);
    pos = nl == std::string_view::npos ? input.size() : nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (dot_ends && line == ".") break;
    if (line_no == 1 && line.substr(0, 5) == "From ") continue;
    for (const char c : line) {
      if (c == '\0') return data_error("line " + std::to_string(line_no) + " holds a NUL octet");
      if (c == '\r') {
        return data_error("line " + std::to_string(line_no) +
                          " holds a CR that does not end it");
      }
      if (static_cast<unsigned char>(c) >= 0x80) eight_bit = true;
    }
    if (line.empty()) in_header = false;
    // A long line becomes several; in the header the later pieces start with a space, so
    // they fold into the same field instead of becoming lines that are not fields.
    bool first = true;
    while (line.size() > kMaxText) {
      std::size_t take = first || !in_header ? kMaxText : kMaxText - 1;
      // Never split a UTF-8 sequence: back up over continuation octets.
      while (take > 1 && (static_cast<unsigned char>(line[take]) & 0xC0) == 0x80) --take;
      if (!first && in_header) out += ' ';
      out.append(line.substr(0, take));
      out += "\r\n";
      line.remove_prefix(take);
      first = false;
    }
    if (!first && in_header) out += ' ';
    out.append(line);
    out += "\r\n";
  }
  return out;
}

bool is_atext_phrase(std::string_view name) {
  static constexpr std::string_view kSpecials = "()<>[]:;@\\,.\"";
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F || kSpecials.find(c) != std::string_view::npos) return false;
  }
  return name.find("  ") == std::string_view::npos && name.front() != ' ' && name.back() != ' ';
}

}  // namespace

std::string format_from_value(std::string_view full_name, std::string_view address) {
  std::string name;
  for (const char c : full_name) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7F) name += c;
  }
  const std::size_t first = name.find_first_not_of(' ');
  if (first == std::string::npos) return std::string(address);
  name = name.substr(first, name.find_last_not_of(' ') - first + 1);
  if (is_atext_phrase(name)) return name + " <" + std::string(address) + ">";
  std::string quoted = "\"";
  for (const char c : name) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "\" <" + std::string(address) + ">";
}

Result<std::vector<std::string>> submission_addresses(std::string_view text,
                                                      std::string_view default_domain) {
  auto list = parse_address_list_mailboxes(text);
  if (!list) return list.error();
  std::vector<std::string> out;
  AddressOptions utf8;
  utf8.allow_utf8 = true;
  for (Mailbox& mailbox : *list) {
    if (mailbox.domain.empty()) mailbox.domain = std::string(default_domain);
    std::string address = mailbox.to_string();
    // The default domain comes from the configuration; make sure the whole is an address.
    if (!parse_mailbox(address, utf8)) {
      return Error::permanent(EX_DATAERR, "5.1.3", "not a mail address: " + printable(address, 64));
    }
    out.push_back(std::move(address));
  }
  return out;
}

Result<PreparedMessage> prepare_submission(std::string_view input, const SubmitRequest& request) {
  PreparedMessage result;
  auto wire = to_wire_lines(input, request.dot_ends, result.eight_bit);
  if (!wire) return wire.error();
  const std::string& text = *wire;

  const HeaderBlock block = parse_header_block(text);
  // Where the header section ends and the body starts. A header cut short by a line that is no
  // field keeps the fields before it; that line starts the body.
  std::size_t header_end = block.body_offset;
  std::size_t body_start = block.body_offset;
  if (block.complete && !block.malformed) {
    header_end = block.body_offset - 2;  // the empty line's CRLF
  } else if (!block.malformed) {
    header_end = body_start = text.size();  // the whole message is header
  }

  std::vector<const HeaderField*> recipients_from;
  // RFC 5322 3.6.6: Resent- fields mean the message is being resent, to their recipients.
  const bool resent = std::any_of(block.fields.begin(), block.fields.end(), [&](const HeaderField& f) {
    return f.name.size() > 7 && ascii_istarts_with(f.name, "Resent-") &&
           static_cast<std::size_t>(f.name.data() - text.data()) < header_end;
  });
  bool has_from = false;
  bool has_date = false;
  bool has_message_id = false;
  std::string header;
  header.reserve(header_end + 256);
  for (const HeaderField& field : block.fields) {
    const std::size_t start = static_cast<std::size_t>(field.name.data() - text.data());
    const std::size_t stop =
        static_cast<std::size_t>(field.raw_value.data() + field.raw_value.size() - text.data());
    if (start >= header_end) break;
    const bool bcc = header_name_equal(field.name, "Bcc") ||
                     header_name_equal(field.name, "Resent-Bcc");
    if (request.extract_recipients) {
      const char* names[] = {"To", "Cc", "Bcc"};
      const char* resent_names[] = {"Resent-To", "Resent-Cc", "Resent-Bcc"};
      for (int i = 0; i < 3; ++i) {
        if (header_name_equal(field.name, resent ? resent_names[i] : names[i])) {
          recipients_from.push_back(&field);
        }
      }
    }
    if (header_name_equal(field.name, "From")) has_from = true;
    if (header_name_equal(field.name, "Date")) has_date = true;
    if (header_name_equal(field.name, "Message-ID")) has_message_id = true;
    if (bcc) continue;
    header.append(text, start, stop - start);
    header += "\r\n";
  }
  for (const HeaderField* field : recipients_from) {
    const std::string value = unfold_value(field->raw_value);
    // "To: undisclosed-recipients:;" and empty fields name nobody, which is fine.
    auto list = submission_addresses(value, request.hostname);
    if (!list) {
      return data_error("-t: the " + std::string(field->name) + ": field is not an address " +
                        "list: " + list.error().text());
    }
    for (std::string& a : *list) result.header_recipients.push_back(std::move(a));
  }
  if (!has_from) {
    header += format_header("From", format_from_value(request.full_name, request.from_address));
  }
  if (!has_date) header += format_header("Date", format_rfc5322_date(request.now));
  if (!has_message_id) {
    header += format_header("Message-ID",
                            "<" + request.message_id_local + "@" + request.hostname + ">");
  }
  std::string& out = result.text;
  out = std::move(header);
  out.reserve(out.size() + 2 + text.size() - std::min(body_start, text.size()));
  out += "\r\n";  // also where a line that was no field cut the header short
  if (body_start < text.size()) out.append(text, body_start, std::string::npos);
  if (request.max_size != 0 && out.size() > request.max_size) {
    return data_error("the message is larger than max_message_size (" +
                      std::to_string(request.max_size) + " octets)");
  }
  return result;
}

}  // namespace mailwright::mta
