#include "mta/queue_file.h"

#include <sysexits.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <set>

#include "mta/queue_id.h"

namespace mailwright::mta {

namespace {

constexpr char kHex[] = "0123456789ABCDEF";

bool is_literal(unsigned char c) { return c >= 0x20 && c <= 0x7E && c != '%'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;  // lower case is refused: one spelling per value
}

// One line of the envelope: where it starts, its key and its (still escaped) value.
struct Line {
  std::size_t number = 0;
  std::size_t offset = 0;
  std::string_view key;
  std::string_view value;
  bool has_value = false;
};

Error line_error(const Line& line, std::string_view reason) {
  return Error::permanent(EX_DATAERR, "5.3.0",
                          "queue file line " + std::to_string(line.number) + " (offset " +
                              std::to_string(line.offset) + "): " + std::string(reason));
}

// Splits text into lines. Stops after the END line; next is set to the offset after it.
class LineScanner {
 public:
  explicit LineScanner(std::string_view text) : text_(text) {}

  // Returns false at the end of text without a complete line (a truncated file).
  Result<bool> next(Line& line) {
    if (pos_ >= text_.size())
      return false;
    std::size_t limit = std::min(text_.size(), kMaxEnvelope);
    std::size_t lf = text_.find('\n', pos_);
    line.number = ++number_;
    line.offset = pos_;
    if (lf == std::string_view::npos || lf >= limit) {
      if (text_.size() >= kMaxEnvelope)
        return line_error(line, "envelope too long");
      return false;
    }
    std::string_view raw = text_.substr(pos_, lf - pos_);
    pos_ = lf + 1;
    std::size_t sp = raw.find(' ');
    line.key = raw.substr(0, sp);
    line.has_value = sp != std::string_view::npos;
    line.value = line.has_value ? raw.substr(sp + 1) : std::string_view();
    if (line.key.empty())
      return line_error(line, "empty key");
    for (char c : line.key) {
      if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
        return line_error(line, "bad character in key");
      }
    }
    for (char c : line.value) {
      if (!is_literal(static_cast<unsigned char>(c)) && c != '%') {
        return line_error(line, "control or 8-bit octet in value");
      }
    }
    return true;
  }
  std::size_t position() const { return pos_; }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
  std::size_t number_ = 0;
};

Result<std::string> value_of(const Line& line) {
  if (!line.has_value)
    return line_error(line, "missing value");
  auto v = unescape_value(line.value);
  if (!v)
    return line_error(line, v.error().text());
  return v;
}

template <typename T>
Result<T> number_of(const Line& line) {
  if (!line.has_value)
    return line_error(line, "missing value");
  std::string_view v = line.value;
  // Digits only: no sign, no leading zeros, so each number has one spelling.
  if (v.empty() || v[0] < '0' || v[0] > '9' || (v.size() > 1 && v[0] == '0')) {
    return line_error(line, "bad number");
  }
  T n{};
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || ptr != v.data() + v.size()) {
    return line_error(line, "bad number");
  }
  return n;
}

Status expect_exact(const Line& line, std::string_view key, std::string_view value) {
  if (line.key != key || !line.has_value || line.value != value) {
    return line_error(line, "bad or unsupported format version");
  }
  return {};
}

constexpr std::string_view kStateNames[] = {"pending", "delivered", "failed", "deferred"};

void append_line(std::string& out, std::string_view key, std::string_view raw_value) {
  out.append(key);
  out.push_back(' ');
  out.append(escape_value(raw_value));
  out.push_back('\n');
}

void append_state(std::string& out, const Recipient& r) {
  if (r.state != DeliveryState::kPending)
    append_line(out, "STATE", delivery_state_name(r.state));
  if (r.attempts != 0)
    append_line(out, "ATTEMPTS", std::to_string(r.attempts));
  if (r.next_attempt != 0)
    append_line(out, "NEXT", std::to_string(r.next_attempt));
  if (!r.last_error.empty())
    append_line(out, "ERROR", r.last_error);
  if (r.warned)
    append_line(out, "WARNED", "1");
}

std::string notify_text(unsigned notify) {
  if (notify & kNotifyNever)
    return "NEVER";
  std::string out;
  for (auto [flag, name] :
       {std::pair{kNotifySuccess, "SUCCESS"}, std::pair{kNotifyFailure, "FAILURE"},
        std::pair{kNotifyDelay, "DELAY"}}) {
    if (notify & flag) {
      if (!out.empty())
        out.push_back(',');
      out.append(name);
    }
  }
  return out;
}

// Canonical order only (SUCCESS,FAILURE,DELAY), so one set has one spelling.
std::optional<unsigned> parse_notify(std::string_view v) {
  if (v == "NEVER")
    return kNotifyNever;
  unsigned flags = 0;
  unsigned last = 0;
  while (!v.empty()) {
    std::size_t comma = v.find(',');
    std::string_view word = v.substr(0, comma);
    unsigned flag = 0;
    if (word == "SUCCESS") {
      flag = kNotifySuccess;
    } else if (word == "FAILURE") {
      flag = kNotifyFailure;
    } else if (word == "DELAY") {
      flag = kNotifyDelay;
    }
    if (flag == 0 || flag <= last)
      return std::nullopt;
    flags |= flag;
    last = flag;
    if (comma == std::string_view::npos)
      break;
    v.remove_prefix(comma + 1);
    if (v.empty())
      return std::nullopt;
  }
  if (flags == 0)
    return std::nullopt;
  return flags;
}

// Recipient state keys, shared by the envelope and the state file. Returns true if line.key was
// one of them; seen tracks duplicates within one recipient.
Result<bool> parse_state_key(const Line& line, Recipient& r, std::set<std::string_view>& seen) {
  if (line.key != "STATE" && line.key != "ATTEMPTS" && line.key != "NEXT" && line.key != "ERROR" &&
      line.key != "WARNED") {
    return false;
  }
  if (!seen.insert(line.key).second)
    return line_error(line, "duplicate recipient key");
  if (line.key == "STATE") {
    for (std::size_t i = 0; i < std::size(kStateNames); ++i) {
      if (line.has_value && line.value == kStateNames[i]) {
        r.state = static_cast<DeliveryState>(i);
        return true;
      }
    }
    return line_error(line, "bad delivery state");
  }
  if (line.key == "ATTEMPTS") {
    auto n = number_of<std::uint32_t>(line);
    if (!n)
      return n.error();
    r.attempts = *n;
  } else if (line.key == "NEXT") {
    auto n = number_of<std::int64_t>(line);
    if (!n)
      return n.error();
    r.next_attempt = *n;
  } else if (line.key == "WARNED") {
    if (!line.has_value || line.value != "1")
      return line_error(line, "bad WARNED value");
    r.warned = true;
  } else {
    auto v = value_of(line);
    if (!v)
      return v.error();
    r.last_error = std::move(*v);
  }
  return true;
}

Error truncated(const LineScanner& scanner) {
  return Error::permanent(
      EX_DATAERR, "5.3.0",
      "queue file offset " + std::to_string(scanner.position()) + ": truncated before END");
}

}  // namespace

std::string escape_value(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (char ch : raw) {
    auto c = static_cast<unsigned char>(ch);
    if (is_literal(c)) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

Result<std::string> unescape_value(std::string_view escaped) {
  std::string out;
  out.reserve(escaped.size());
  for (std::size_t i = 0; i < escaped.size(); ++i) {
    auto c = static_cast<unsigned char>(escaped[i]);
    if (c != '%') {
      if (!is_literal(c))
        return Error::permanent(EX_DATAERR, "5.3.0", "unescaped octet");
      out.push_back(escaped[i]);
      continue;
    }
    if (i + 2 >= escaped.size())
      return Error::permanent(EX_DATAERR, "5.3.0", "bad escape");
    int hi = hex_value(escaped[i + 1]);
    int lo = hex_value(escaped[i + 2]);
    if (hi < 0 || lo < 0)
      return Error::permanent(EX_DATAERR, "5.3.0", "bad escape");
    auto decoded = static_cast<unsigned char>(hi * 16 + lo);
    if (is_literal(decoded))
      return Error::permanent(EX_DATAERR, "5.3.0", "needless escape");
    out.push_back(static_cast<char>(decoded));
    i += 2;
  }
  return out;
}

std::string_view delivery_state_name(DeliveryState state) {
  return kStateNames[static_cast<std::size_t>(state)];
}

std::string serialize_envelope(const Envelope& e) {
  std::string out = "MWQUEUE " + std::to_string(kQueueFormatVersion) + "\n";
  append_line(out, "ID", e.queue_id);
  append_line(out, "TIME", std::to_string(e.arrival_time));
  append_line(out, "FROM", e.sender);
  switch (e.body) {
    case BodyType::kUnspecified:
      break;
    case BodyType::k7Bit:
      append_line(out, "BODY", "7BIT");
      break;
    case BodyType::k8BitMime:
      append_line(out, "BODY", "8BITMIME");
      break;
    case BodyType::kBinaryMime:
      append_line(out, "BODY", "BINARYMIME");
      break;
  }
  if (e.smtputf8)
    append_line(out, "SMTPUTF8", "1");
  if (e.ret == DsnRet::kFull)
    append_line(out, "RET", "FULL");
  if (e.ret == DsnRet::kHeaders)
    append_line(out, "RET", "HDRS");
  // Optional strings are written only when non-empty, so "absent" and "" are one state.
  auto optional = [&out](std::string_view key, const std::string& v) {
    if (!v.empty())
      append_line(out, key, v);
  };
  optional("ENVID", e.envid);
  optional("CLIENT", e.client_address);
  optional("HELO", e.helo);
  optional("AUTHUSER", e.auth_user);
  optional("TLSPROTO", e.tls_protocol);
  optional("TLSCIPHER", e.tls_cipher);
  optional("PROTO", e.protocol);
  for (const Recipient& r : e.recipients) {
    append_line(out, "RCPT", r.address);
    if (!r.orcpt.empty())
      append_line(out, "ORCPT", r.orcpt);
    if (r.notify != kNotifyNone)
      append_line(out, "NOTIFY", notify_text(r.notify));
    if (r.mailbox_only)
      append_line(out, "MAILBOX", "1");
    append_state(out, r);
  }
  out.append("END\n");
  return out;
}

Result<Envelope> parse_envelope(std::string_view head, std::size_t& body_offset) {
  LineScanner scanner(head);
  Envelope e;
  Line line;
  auto got = scanner.next(line);
  if (!got)
    return got.error();
  if (!*got)
    return truncated(scanner);
  if (auto s = expect_exact(line, "MWQUEUE", "1"); !s)
    return s.error();

  std::set<std::string_view> seen;       // envelope keys
  std::set<std::string_view> rcpt_seen;  // keys of the current recipient
  Recipient* current = nullptr;
  for (;;) {
    got = scanner.next(line);
    if (!got)
      return got.error();
    if (!*got)
      return truncated(scanner);
    const std::string_view key = line.key;
    if (key == "END") {
      if (line.has_value)
        return line_error(line, "END takes no value");
      break;
    }
    if (key == "RCPT") {
      auto v = value_of(line);
      if (!v)
        return v.error();
      if (v->empty())
        return line_error(line, "empty recipient");
      e.recipients.push_back(Recipient{});
      current = &e.recipients.back();
      current->address = std::move(*v);
      rcpt_seen.clear();
      continue;
    }
    if (key == "ORCPT" || key == "NOTIFY" || key == "MAILBOX" || key == "STATE" ||
        key == "ATTEMPTS" || key == "NEXT" ||
        key == "ERROR" || key == "WARNED") {
      if (current == nullptr)
        return line_error(line, "recipient key before RCPT");
      if (key == "ORCPT") {
        if (!rcpt_seen.insert(key).second)
          return line_error(line, "duplicate recipient key");
        auto v = value_of(line);
        if (!v)
          return v.error();
        if (v->empty())
          return line_error(line, "empty ORCPT");
        current->orcpt = std::move(*v);
      } else if (key == "NOTIFY") {
        if (!rcpt_seen.insert(key).second)
          return line_error(line, "duplicate recipient key");
        auto flags = line.has_value ? parse_notify(line.value) : std::nullopt;
        if (!flags)
          return line_error(line, "bad NOTIFY");
        current->notify = *flags;
      } else if (key == "MAILBOX") {
        if (!rcpt_seen.insert(key).second)
          return line_error(line, "duplicate recipient key");
        if (!line.has_value || line.value != "1")
          return line_error(line, "bad MAILBOX value");
        current->mailbox_only = true;
      } else {
        auto s = parse_state_key(line, *current, rcpt_seen);
        if (!s)
          return s.error();
      }
      continue;
    }
    if (!seen.insert(key).second) {
      if (key == "ID" || key == "TIME" || key == "FROM" || key == "BODY" || key == "SMTPUTF8" ||
          key == "RET" || key == "ENVID" || key == "CLIENT" || key == "HELO" || key == "AUTHUSER" ||
          key == "TLSPROTO" || key == "TLSCIPHER" || key == "PROTO") {
        return line_error(line, "duplicate key");
      }
      return line_error(line, "unknown key");
    }
    if (current != nullptr)
      return line_error(line, "envelope key after RCPT");
    if (key == "TIME") {
      auto n = number_of<std::int64_t>(line);
      if (!n)
        return n.error();
      e.arrival_time = *n;
      continue;
    }
    if (key == "BODY") {
      if (line.value == "7BIT") {
        e.body = BodyType::k7Bit;
      } else if (line.value == "8BITMIME") {
        e.body = BodyType::k8BitMime;
      } else if (line.value == "BINARYMIME") {
        e.body = BodyType::kBinaryMime;
      } else {
        return line_error(line, "bad BODY");
      }
      continue;
    }
    if (key == "SMTPUTF8") {
      if (!line.has_value || line.value != "1")
        return line_error(line, "bad SMTPUTF8");
      e.smtputf8 = true;
      continue;
    }
    if (key == "RET") {
      if (line.value == "FULL") {
        e.ret = DsnRet::kFull;
      } else if (line.value == "HDRS") {
        e.ret = DsnRet::kHeaders;
      } else {
        return line_error(line, "bad RET");
      }
      continue;
    }
    std::string* target = key == "ID"          ? &e.queue_id
                          : key == "FROM"      ? &e.sender
                          : key == "ENVID"     ? &e.envid
                          : key == "CLIENT"    ? &e.client_address
                          : key == "HELO"      ? &e.helo
                          : key == "AUTHUSER"  ? &e.auth_user
                          : key == "TLSPROTO"  ? &e.tls_protocol
                          : key == "TLSCIPHER" ? &e.tls_cipher
                          : key == "PROTO"     ? &e.protocol
                                               : nullptr;
    if (target == nullptr)
      return line_error(line, "unknown key");
    auto v = value_of(line);
    if (!v)
      return v.error();
    // Optional strings are never written empty (serialize_envelope), so an empty one is not
    // canonical; FROM is the one key whose empty value means something (<>).
    if (v->empty() && key != "FROM")
      return line_error(line, "empty value");
    if (key == "ID" && !is_valid_queue_id(*v))
      return line_error(line, "bad queue id");
    *target = std::move(*v);
  }
  for (std::string_view required : {"ID", "TIME", "FROM"}) {
    if (!seen.count(required))
      return line_error(line, "missing " + std::string(required));
  }
  if (e.recipients.empty())
    return line_error(line, "no recipients");
  body_offset = scanner.position();
  return e;
}

std::string serialize_state_file(const Envelope& e) {
  std::string out = "MWSTATE " + std::to_string(kQueueFormatVersion) + "\n";
  append_line(out, "ID", e.queue_id);
  for (std::size_t i = 0; i < e.recipients.size(); ++i) {
    append_line(out, "RCPT", std::to_string(i));
    append_state(out, e.recipients[i]);
  }
  out.append("END\n");
  return out;
}

Status apply_state_file(std::string_view text, Envelope& envelope) {
  LineScanner scanner(text);
  Line line;
  auto got = scanner.next(line);
  if (!got)
    return got.error();
  if (!*got)
    return truncated(scanner);
  if (auto s = expect_exact(line, "MWSTATE", "1"); !s)
    return s.error();
  got = scanner.next(line);
  if (!got)
    return got.error();
  if (!*got)
    return truncated(scanner);
  if (line.key != "ID")
    return line_error(line, "missing ID");
  auto id = value_of(line);
  if (!id)
    return id.error();
  if (*id != envelope.queue_id)
    return line_error(line, "queue id does not match");

  std::vector<Recipient> states;
  std::set<std::string_view> rcpt_seen;
  for (;;) {
    got = scanner.next(line);
    if (!got)
      return got.error();
    if (!*got)
      return truncated(scanner);
    if (line.key == "END") {
      if (line.has_value)
        return line_error(line, "END takes no value");
      if (scanner.position() != text.size())
        return line_error(line, "data after END");
      break;
    }
    if (line.key == "RCPT") {
      auto n = number_of<std::size_t>(line);
      if (!n)
        return n.error();
      if (*n != states.size() || *n >= envelope.recipients.size()) {
        return line_error(line, "recipient index out of order");
      }
      states.emplace_back();
      rcpt_seen.clear();
      continue;
    }
    if (states.empty())
      return line_error(line, "state key before RCPT");
    auto s = parse_state_key(line, states.back(), rcpt_seen);
    if (!s)
      return s.error();
    if (!*s)
      return line_error(line, "unknown key");
  }
  if (states.size() != envelope.recipients.size()) {
    return line_error(line, "recipient count does not match");
  }
  for (std::size_t i = 0; i < states.size(); ++i) {
    Recipient& r = envelope.recipients[i];
    r.state = states[i].state;
    r.attempts = states[i].attempts;
    r.next_attempt = states[i].next_attempt;
    r.last_error = std::move(states[i].last_error);
    r.warned = states[i].warned;
  }
  return {};
}

}  // namespace mailwright::mta
