// Fuzzes parse_address_list and parse_address_list_mailboxes on raw bytes and checks what
// address_list.h promises: every address is clean and valid as an SMTP forward path (a local name
// once given a domain), the addresses joined again with commas, folds, comments or inside a group
// read back as the same list, CFWS in front and a final line end change nothing, and refusals are
// permanent data errors whose text is short and printable. Touches no files.
#include <sysexits.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/address.h"
#include "libmail/address_list.h"
#include "libmail/limits.h"

namespace {

using mailwright::Mailbox;
using mailwright::Result;

void require(bool condition) {
  if (!condition) {
    std::abort();
  }
}

void check_refusal(const mailwright::Error& error) {
  require(!error.is_temporary());
  require(error.exit_code() == EX_DATAERR);
  require(error.status() == "5.1.3");
  require(!error.text().empty() && error.text().size() <= 200);
  for (const char c : error.text()) {
    require(c >= 0x20 && c < 0x7F);
  }
}

bool same_addresses(const std::vector<Mailbox>& a, const std::vector<Mailbox>& b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].local_part != b[i].local_part || a[i].domain != b[i].domain ||
        a[i].domain_is_literal != b[i].domain_is_literal) {
      return false;
    }
  }
  return true;
}

void check_address(const Mailbox& mailbox, const std::string& address) {
  require(address == mailbox.to_string());
  require(!address.empty());
  for (const char c : address) {
    const auto octet = static_cast<unsigned char>(c);
    require(octet >= 0x20 && octet != 0x7F);
  }
  const std::string path = "<" + address + (mailbox.domain.empty() ? "@example.org" : "") + ">";
  const Result<mailwright::PathParse> parsed =
      mailwright::parse_forward_path(path, mailwright::AddressOptions{.allow_utf8 = true});
  require(parsed.ok());
  require(parsed->length == path.size());
  require(!parsed->path.is_null && !parsed->path.is_postmaster);
  require(parsed->path.mailbox.local_part == mailbox.local_part);
  if (!mailbox.domain.empty()) {
    require(parsed->path.mailbox.domain == mailbox.domain);
    require(parsed->path.mailbox.domain_is_literal == mailbox.domain_is_literal);
  }
}

// The addresses joined with separator, each wrapped in before and after.
std::string join(const std::vector<std::string>& addresses, std::string_view separator,
                 std::string_view before = "", std::string_view after = "") {
  std::string joined;
  for (const std::string& address : addresses) {
    if (!joined.empty()) {
      joined += separator;
    }
    joined += before;
    joined += address;
    joined += after;
  }
  return joined;
}

void check_reads_back(std::string_view value, const std::vector<Mailbox>& expected) {
  const Result<std::vector<Mailbox>> again = mailwright::parse_address_list_mailboxes(value);
  require(again.ok());
  require(same_addresses(*again, expected));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view value(reinterpret_cast<const char*>(data), size);
  const Result<std::vector<Mailbox>> mailboxes = mailwright::parse_address_list_mailboxes(value);
  const Result<std::vector<std::string>> addresses = mailwright::parse_address_list(value);
  require(mailboxes.ok() == addresses.ok());
  if (!mailboxes) {
    check_refusal(mailboxes.error());
    require(addresses.error().text() == mailboxes.error().text());
  } else {
    require(mailboxes->size() == addresses->size());
    for (std::size_t i = 0; i < mailboxes->size(); ++i) {
      check_address((*mailboxes)[i], (*addresses)[i]);
    }
    // The output is itself an address list naming the same mailboxes, however it is laid out.
    check_reads_back(join(*addresses, ", "), *mailboxes);
    check_reads_back(join(*addresses, ",\r\n\t"), *mailboxes);
    check_reads_back(join(*addresses, ",,", "(c) ", " (c)"), *mailboxes);
    check_reads_back(join(*addresses, ", ", "Name <", ">"), *mailboxes);
    check_reads_back("group: " + join(*addresses, ", ") + ";", *mailboxes);
  }

  // CFWS in front and a final line end change nothing.
  if (size + 4 <= mailwright::limits::kHeaderField) {
    const Result<std::vector<Mailbox>> commented =
        mailwright::parse_address_list_mailboxes("(c) " + std::string(value));
    require(commented.ok() == mailboxes.ok());
    if (mailboxes) {
      require(same_addresses(*commented, *mailboxes));
    }
  }
  if (size + 2 <= mailwright::limits::kHeaderField && !value.ends_with('\n')) {
    const Result<std::vector<Mailbox>> terminated =
        mailwright::parse_address_list_mailboxes(std::string(value) + "\r\n");
    require(terminated.ok() == mailboxes.ok());
    if (mailboxes) {
      require(same_addresses(*terminated, *mailboxes));
    } else {
      require(terminated.error().text() == mailboxes.error().text());
    }
  }
  return 0;
}
