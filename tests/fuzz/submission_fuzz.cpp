// Fuzzes the two halves of local submission: prepare_submission (mta/submission.h) on what a
// user pipes to sendmail, and accept_dropped (mta/maildrop.h) on a maildrop file as a hostile
// user could write it. Checks what the headers promise: a prepared message is CRLF lines of at
// most 998 octets without NUL or bare CR, its header section parses and holds From, Date and
// Message-ID and no Bcc; whatever the pickup accepts, re-serialised, has only pending
// recipients, a sender that is the user's own unless trusted, and a body that is wire text.
// Refusals are permanent data errors. Touches no files.
#include <sysexits.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "libmail/rfc5322.h"
#include "mta/maildrop.h"
#include "mta/queue_file.h"
#include "mta/submission.h"

namespace {

using namespace mailwright;
using namespace mailwright::mta;

void require(bool condition) {
  if (!condition) std::abort();
}

void check_prepared(const PreparedMessage& m) {
  const std::string& t = m.text;
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < t.size(); ++i) {
    require(t[i] != '\0');
    if (t[i] == '\r') {
      require(i + 1 < t.size() && t[i + 1] == '\n');
      require(i - line_start <= 998);
      ++i;
      line_start = i + 1;
    } else {
      require(t[i] != '\n');
    }
  }
  require(line_start == t.size());
  const HeaderBlock block = parse_header_block(t);
  require(block.complete);
  require(find_header(block.fields, "From") != nullptr);
  require(find_header(block.fields, "Date") != nullptr);
  require(find_header(block.fields, "Message-ID") != nullptr);
  require(find_header(block.fields, "Bcc") == nullptr);
  require(find_header(block.fields, "Resent-Bcc") == nullptr);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const bool flags = size > 0 && (data[0] & 1) != 0;
  SubmitRequest request;
  request.dot_ends = !flags;
  request.extract_recipients = size > 0 && (data[0] & 2) != 0;
  request.from_address = "joe@host.example";
  request.full_name = "Joe \"J\" User";
  request.hostname = "host.example";
  request.message_id_local = "0LJ8K2M3N4P5Q6R7S8T9";
  request.now = 1700000000;
  auto prepared = prepare_submission(input, request);
  if (prepared) {
    check_prepared(*prepared);
  } else {
    require(!prepared.error().is_temporary());
    require(prepared.error().exit_code() == EX_DATAERR);
  }

  PickupPolicy policy;
  policy.hostname = "host.example";
  policy.max_message_size = 1 << 20;
  const DropOwner owner{1000, "joe", (size > 1 && (data[1] & 1) != 0)};
  auto picked = accept_dropped(input, owner, policy, "0LJ8K2M3N4P5Q6R7S8TA", 42);
  if (!picked) {
    require(!picked.error().is_temporary());
    return 0;
  }
  const Envelope& e = picked->envelope;
  require(!e.recipients.empty());
  require(e.arrival_time == 42);
  if (!owner.trusted) require(e.sender == "joe@host.example");
  for (const Recipient& r : e.recipients) {
    require(r.state == DeliveryState::kPending && r.attempts == 0 && !r.mailbox_only);
    require(!r.address.empty());
  }
  // What goes into the queue must parse back as the same envelope.
  Envelope with_id = e;
  with_id.queue_id = "0LJ8K2M3N4P5Q6R7S8TA";
  const std::string serialized = serialize_envelope(with_id);
  std::size_t offset = 0;
  auto again = parse_envelope(serialized, offset);
  require(again && *again == with_id && offset == serialized.size());
  return 0;
}
