// Fuzzes every public parser of libmail/address.h on raw bytes, with and without SMTPUTF8, and
// checks what the header promises: a successful parse re-serialised with to_string() parses
// again to the same thing, never gets longer, and respects the limits; refusals are permanent
// data errors with the right status. Touches no files.
#include <sysexits.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "libmail/address.h"
#include "libmail/limits.h"

namespace {

using mailwright::AddressOptions;
using mailwright::Mailbox;
using mailwright::Path;
using mailwright::PathParse;
using mailwright::Result;

void require(bool condition) {
  if (!condition) {
    std::abort();
  }
}

void check_refusal(const mailwright::Error& error, std::string_view status) {
  require(!error.is_temporary());
  require(error.exit_code() == EX_DATAERR);
  require(error.status() == status);
  require(!error.text().empty());
}

// Nothing an address may hold: controls, and 8-bit octets without SMTPUTF8.
void check_clean(std::string_view text, const AddressOptions& opts) {
  for (const char c : text) {
    const auto octet = static_cast<unsigned char>(c);
    require(octet >= 32 && octet != 127);
    require(opts.allow_utf8 || octet < 128);
  }
}

void check_mailbox(const Mailbox& mailbox, const AddressOptions& opts) {
  check_clean(mailbox.local_part, opts);
  check_clean(mailbox.domain, opts);
  require(mailbox.domain.size() <= mailwright::limits::kDomain);
  require(mailbox.domain_is_literal == (!mailbox.domain.empty() && mailbox.domain.front() == '['));
  if (mailbox.domain_is_literal) {
    require(mailbox.domain.back() == ']');
  } else if (!mailbox.domain.empty()) {
    require(mailwright::is_valid_domain(mailbox.domain, opts));
  }
  require(mailbox.local_part.size() <= mailwright::limits::kLocalPart);
  require(mailbox.local_part_was_quoted || mailwright::is_dot_string(mailbox.local_part, opts));
}

// The canonical form of a parsed path: shorter or equal, parses to the same mailbox, and is a
// fixed point of parse + to_string.
void check_path_round_trip(const Path& path, std::size_t length, bool forward,
                           const AddressOptions& opts) {
  const auto parse = forward ? mailwright::parse_forward_path : mailwright::parse_reverse_path;
  const std::string canonical = path.to_string();
  require(canonical.size() <= length);
  const Result<PathParse> again = parse(canonical, opts);
  require(again.ok());
  require(again->length == canonical.size());
  require(!again->path.had_source_route);
  require(again->path.is_null == path.is_null);
  require(again->path.is_postmaster == path.is_postmaster);
  require(again->path.mailbox.local_part == path.mailbox.local_part);
  require(again->path.mailbox.domain == path.mailbox.domain);
  require(again->path.mailbox.domain_is_literal == path.mailbox.domain_is_literal);
  require(again->path.to_string() == canonical);
}

void check_path(std::string_view text, bool forward, const AddressOptions& opts) {
  const auto parse = forward ? mailwright::parse_forward_path : mailwright::parse_reverse_path;
  const Result<PathParse> parsed = parse(text, opts);
  if (!parsed) {
    check_refusal(parsed.error(), forward ? "5.1.3" : "5.1.7");
    return;
  }
  const Path& path = parsed->path;
  const std::size_t length = parsed->length;
  require(length >= 2 && length <= text.size() && length <= mailwright::limits::kPath);
  require(text.front() == '<' && text[length - 1] == '>');
  check_clean(text.substr(0, length), opts);
  require(!(forward && path.is_null));
  require(!(!forward && path.is_postmaster));
  require(!(path.is_null && path.is_postmaster));
  if (path.is_null) {
    require(length == 2 && path.mailbox == Mailbox{} && !path.had_source_route);
  } else if (path.is_postmaster) {
    require(length == 12 && path.mailbox.domain.empty() && !path.had_source_route);
  } else {
    require(!path.mailbox.domain.empty());
    require(path.had_source_route == (text[1] == '@'));
    check_mailbox(path.mailbox, opts);
  }

  // What follows the '>' is never looked at.
  const Result<PathParse> prefix = parse(text.substr(0, length), opts);
  require(prefix.ok() && prefix->length == length && prefix->path == path);

  // SMTPUTF8 only ever adds: what parses without it parses the same with it.
  if (!opts.allow_utf8) {
    const Result<PathParse> utf8 = parse(text, AddressOptions{.allow_utf8 = true});
    require(utf8.ok() && utf8->length == length && utf8->path == path);
  }

  check_path_round_trip(path, length, forward, opts);

  // Without its brackets and route, an ordinary path is a valid bare mailbox, and vice versa.
  if (!path.is_null && !path.is_postmaster) {
    const Result<Mailbox> bare = mailwright::parse_mailbox(path.mailbox.to_string(), opts);
    require(bare.ok());
    require(bare->local_part == path.mailbox.local_part);
    require(bare->domain == path.mailbox.domain);
  }
}

void check_bare_mailbox(std::string_view text, const AddressOptions& opts) {
  const Result<Mailbox> parsed = mailwright::parse_mailbox(text, opts);
  if (!parsed) {
    check_refusal(parsed.error(), "5.1.3");
    return;
  }
  require(text.size() <= mailwright::limits::kPath - 2);
  check_clean(text, opts);
  require(!parsed->domain.empty());
  check_mailbox(*parsed, opts);

  const std::string canonical = parsed->to_string();
  require(canonical.size() <= text.size());
  const Result<Mailbox> again = mailwright::parse_mailbox(canonical, opts);
  require(again.ok());
  require(again->local_part == parsed->local_part && again->domain == parsed->domain);
  require(again->to_string() == canonical);

  // A bare mailbox always fits in a path.
  const std::string bracketed = "<" + std::string(text) + ">";
  for (const bool forward : {true, false}) {
    const auto parse = forward ? mailwright::parse_forward_path : mailwright::parse_reverse_path;
    const Result<PathParse> path = parse(bracketed, opts);
    require(path.ok() && path->length == bracketed.size());
    require(!path->path.is_null && !path->path.is_postmaster && !path->path.had_source_route);
    require(path->path.mailbox == *parsed);
  }
}

void check_helpers(std::string_view text, const AddressOptions& opts) {
  if (mailwright::is_valid_domain(text, opts)) {
    check_clean(text, opts);
    require(mailwright::is_valid_domain(text, AddressOptions{.allow_utf8 = true}));
    const std::string mailbox = "a@" + std::string(text);
    const Result<Mailbox> parsed = mailwright::parse_mailbox(mailbox, opts);
    require(parsed.ok() == (mailbox.size() <= mailwright::limits::kPath - 2));
    if (parsed) {
      require(parsed->domain == text && !parsed->domain_is_literal);
    }
  }
  if (mailwright::is_dot_string(text, opts)) {
    check_clean(text, opts);
    require(mailwright::is_dot_string(text, AddressOptions{.allow_utf8 = true}));
    const std::string mailbox = std::string(text) + "@a";
    const Result<Mailbox> parsed = mailwright::parse_mailbox(mailbox, opts);
    require(parsed.ok() == (text.size() <= mailwright::limits::kLocalPart));
    if (parsed) {
      require(parsed->local_part == text && !parsed->local_part_was_quoted);
    }
  }

  const std::string lowered = mailwright::lowercase_domain(text);
  require(lowered.size() == text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool upper = text[i] >= 'A' && text[i] <= 'Z';
    require(lowered[i] == (upper ? text[i] - 'A' + 'a' : text[i]));
  }
  require(mailwright::domain_equal(text, lowered));
  require(mailwright::domain_equal(lowered, text));
  require(mailwright::lowercase_domain(lowered) == lowered);
  require(mailwright::is_valid_domain(lowered, opts) == mailwright::is_valid_domain(text, opts));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const bool allow_utf8 : {false, true}) {
    const AddressOptions opts{.allow_utf8 = allow_utf8};
    check_path(text, /*forward=*/true, opts);
    check_path(text, /*forward=*/false, opts);
    check_bare_mailbox(text, opts);
    check_helpers(text, opts);
  }
  return 0;
}
