// What became of one recipient in one delivery attempt, whoever made it (mda over LMTP, the
// SMTP client, routing itself).
#pragma once

#include <string>

namespace mailwright::mta {

struct DeliveryOutcome {
  enum class Kind { kDelivered, kDeferred, kFailed };
  Kind kind = Kind::kDeferred;
  std::string status;       // RFC 3463, e.g. "5.1.1"
  std::string diagnostic;   // "smtp; 550 5.1.1 User unknown", "x-local; ..." (RFC 3464 2.3.6)
  std::string remote_host;  // the MTA that answered, for DSN Remote-MTA; "" when local
  bool expanded = false;    // an alias turned into a new message (DSN action "expanded")

  static DeliveryOutcome delivered(std::string diagnostic = {}, std::string host = {}) {
    return {Kind::kDelivered, "2.0.0", std::move(diagnostic), std::move(host)};
  }
  static DeliveryOutcome deferred(std::string status, std::string diagnostic,
                                  std::string host = {}) {
    return {Kind::kDeferred, std::move(status), std::move(diagnostic), std::move(host)};
  }
  static DeliveryOutcome failed(std::string status, std::string diagnostic,
                                std::string host = {}) {
    return {Kind::kFailed, std::move(status), std::move(diagnostic), std::move(host)};
  }
};

}  // namespace mailwright::mta
