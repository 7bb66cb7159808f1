// Fuzzes the launcher's request and result formats (mta/privileged_ops.h) on raw bytes: what
// decode_request accepts must be a request whose every field holds the promised shape, and
// must encode back to exactly the packet (one spelling per request); the same for results.
// Touches no files and starts nothing.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "libmail/accounts.h"
#include "mta/privileged_ops.h"

namespace {

using namespace mailwright;
using namespace mailwright::mta;

[[noreturn]] void fail(const char* what, std::string_view detail) {
  static_cast<void>(std::fprintf(stderr, "privileged_ops_fuzz: %s\n%.*s\n", what,
                                 static_cast<int>(detail.size()), detail.data()));
  std::abort();
}

bool has_control(std::string_view s, bool allow_tab) {
  for (unsigned char c : s) {
    if (c == 0x7F || (c < 0x20 && !(allow_tab && c == '\t'))) return true;
  }
  return false;
}

void check_request(std::string_view packet) {
  auto r = decode_request(packet);
  if (!r) {
    if (r.error().is_temporary()) fail("a refusal must be permanent", packet);
    return;
  }
  if (encode_request(*r) != packet) fail("not the one spelling", packet);
  if (r->type == OpRequest::Type::kReadForward) {
    if (!is_valid_user_name(r->user)) fail("read request for an invalid user", packet);
    return;
  }
  if (r->origin == TargetOrigin::kAlias ? !r->user.empty() : !is_valid_user_name(r->user)) {
    fail("user does not fit the origin", packet);
  }
  const bool program = r->type == OpRequest::Type::kRunProgram;
  if (r->target.empty() || r->target.size() > kMaxTarget || has_control(r->target, program)) {
    fail("bad target accepted", packet);
  }
  if (!program && (r->target.front() != '/' || r->target.find("/../") != std::string::npos ||
                   r->target.find("//") != std::string::npos || r->target.back() == '/')) {
    fail("bad path accepted", packet);
  }
  if (r->sender.size() > kMaxEnvelopeAddress || has_control(r->sender, false) ||
      r->recipient.empty() || r->recipient.size() > kMaxEnvelopeAddress ||
      has_control(r->recipient, false)) {
    fail("bad address accepted", packet);
  }
  if (r->offset > kMaxMessage || r->length > kMaxMessage) fail("bad number accepted", packet);
}

void check_result(std::string_view packet) {
  auto r = decode_result(packet);
  if (!r) return;
  if (encode_result(*r) != packet) fail("result not the one spelling", packet);
  const char klass = r->kind == OpResult::Kind::kDelivered ? '2'
                     : r->kind == OpResult::Kind::kDeferred ? '4'
                     : r->kind == OpResult::Kind::kFailed   ? '5'
                                                            : 0;
  if (klass != 0 && (r->status.empty() || r->status[0] != klass)) fail("status class", packet);
  if (klass == 0 && !r->status.empty()) fail("status where none belongs", packet);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_request(input);
  check_result(input);
  return 0;
}
