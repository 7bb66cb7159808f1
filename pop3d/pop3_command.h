// POP3 command lines (RFC 1939, RFC 2449, RFC 2595 STLS, RFC 5034 AUTH) and the strict base64
// that SASL needs.
//
// parse_pop3_command() is a pure function: one command line without its line end in, a verb
// and checked arguments out. The string_views in Pop3Command point into the line given, so
// they live as long as it does. Errors come back as an Error whose text is the reply text
// after "-ERR " ("unknown command", "invalid message number", ...); nothing is logged.
//
// What is refused, and why:
//  - any control character (NUL, CR, TAB, ...) or DEL anywhere in the line: a NUL cuts a name
//    short in C code further down, a CR smuggles a second line into a log or a reply;
//  - message numbers that are not plain decimal 1..4294967295: "LIST 4294967297" must not be
//    read as LIST 1 (popa3d), nor "RETR 0", "RETR -1", "RETR +1", "RETR 1x";
//  - the wrong number of arguments for the verb.
// Tokens may be separated by more than one space and trailing spaces are ignored (RFC 1939
// wants exactly one SP, but lenience costs nothing here), except that PASS takes everything
// after the single space following it verbatim: passwords may contain and end in spaces.
// Verbs are case-insensitive. The line length limit is the caller's (SessionPolicy::max_line).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "libmail/base64.h"
#include "libmail/result.h"

namespace mailwright::pop3 {

enum class Pop3Verb {
  kUser,
  kPass,
  kApop,
  kAuth,
  kStat,
  kList,
  kRetr,
  kDele,
  kNoop,
  kRset,
  kQuit,
  kTop,
  kUidl,
  kCapa,
  kStls,
};

struct Pop3Command {
  Pop3Verb verb = Pop3Verb::kNoop;
  // USER and APOP: the name. PASS: the password, verbatim. AUTH: the mechanism (as sent; the
  // caller compares case-insensitively), empty for a bare AUTH.
  std::string_view text;
  // APOP: the digest (32 hex digits). AUTH: the initial response, "=" for an empty one, or
  // empty when none was given.
  std::string_view text2;
  // LIST and UIDL: the optional message number. RETR, DELE, TOP: always set, at least 1.
  std::optional<std::uint32_t> message;
  // TOP: the number of body lines (0 is allowed).
  std::uint32_t lines = 0;
};

Result<Pop3Command> parse_pop3_command(std::string_view line);

// The verb named by the first word of line, if it is one we know, whatever the arguments; lets
// the caller answer "not valid in this state" before complaining about arguments.
std::optional<Pop3Verb> pop3_verb_of(std::string_view line);

// "USER", "PASS", ...: the canonical upper-case name.
std::string_view pop3_verb_name(Pop3Verb verb);


}  // namespace mailwright::pop3
