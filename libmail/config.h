// Config: the configuration file format shared by mta, mda and pop3d, and typed access to the
// values it sets. Each program declares a schema (a static table of ConfigKey: name, type,
// default, one line of help, range); Config::load() reads a file against it, and the program
// reads values with the getter for each key's type.
//
// FILE FORMAT (the man pages copy this section)
//
//   The file is UTF-8 text. A NUL byte, an invalid UTF-8 sequence (overlong forms and
//   surrogates included) or a control character other than tab (U+0000-U+001F, U+007F and
//   U+0080-U+009F) is an error that names the line and the byte column: a value must never
//   carry an escape sequence to a terminal or a line break into a log. Lines end with LF; CRLF
//   is accepted too (one CR just before the LF is dropped). A CR anywhere else is an error, so
//   a file with old Mac line ends is refused rather than read as one long line. The last line
//   needs no line end. A UTF-8 byte order mark at the start of the file is ignored (old Windows
//   editors write one). A file larger than limits::kConfigFile (1 MiB) is refused as a whole.
//
//   One setting per line, starting in the first column:
//
//       key = value
//
//   Keys are made of a-z, 0-9 and _. Every key must be one the program knows: an unknown key
//   is an error, so a misspelt setting is never silently ignored. Spaces and tabs around '='
//   and at both ends of the value are ignored; inside the value they are kept as written. There
//   is no quoting and no escaping: the value is everything after the first '=' up to the end of
//   the line.
//
//   A line whose first non-blank character is '#' is a comment. A '#' anywhere else is part of
//   the value, so passwords and paths may contain it: "password = se#cret" sets "se#cret".
//   There are therefore no trailing comments: "workers = 4  # four" is an error, and after a
//   string key the "# four" would be part of the value.
//
//   Blank lines are ignored. A non-blank line that begins with a space or tab continues the
//   value of the setting before it, joined with a single space, as in Postfix main.cf. Blank
//   lines and comment lines in between are skipped and do not end the setting, so a long list
//   may carry comments. A continuation line with no setting before it is an error. Note that
//   an indented "key = value" line is therefore part of the previous value, not a setting.
//
//   A key may be set only once in a file; a second setting is an error
//   ("FILE:LINE: 'key' already set at line N").
//
//   Value types:
//     string    any text, possibly empty.
//     path      empty, an absolute path ("/var/mail"), or "~/" followed by a path relative to
//               the home directory of the user the program acts for (the program expands "~/";
//               Config keeps it as written). "~user/" is not accepted.
//     int       a decimal integer with an optional '-': "10", "-3". No '+', no hex.
//     bool      yes/no, true/false, on/off, 1/0, in any case.
//     duration  whole seconds, or a whole number followed by one lowercase unit: s, m
//               (minutes), h, d, w (weeks); no space, no fraction: 90, 90s, 15m, 4h, 5d, 1w.
//     size      bytes, or a whole number followed by k, M, G or T (in either case; powers of
//               1024); no space, no fraction, no "B": 1024, 10k, 10K, 10M, 1G.
//     list      items separated by commas and/or blanks; empty items are dropped, so
//               "a, b c,,d" is a, b, c, d. An item cannot contain a comma or a blank.
//     choice    exactly one of the words the key allows (case matters), e.g. mbox or maildir.
//   Numbers must fit in 64 bits and, where a key has a range, lie inside it.
//
// ERRORS
//   Anything the file or a -o option can get wrong is a value: Error::from_exit_code(EX_CONFIG)
//   (temporary, 4.3.5, so mail waits in the queue while the administrator fixes the file). Only
//   the first error is reported. Its text starts with "FILE:LINE: " (for set(), with its origin)
//   and names the key and what is wrong:
//     mda.conf:12: lock_timeout: '5 minutes' is not a duration (use e.g. 90s, 15m, 4h, 5d)
//   Quoted values are cut to 64 bytes. A bad value in a setting continued over several lines is
//   reported at the line with the key.
//
//   Misusing the schema is a bug in the program, not in the file, and aborts with a message on
//   stderr (and in syslog for daemons): asking a getter for a key not in the schema or of
//   another type, or a schema whose defaults do not parse, that repeats a name, or whose help
//   is not one printable line.
//
// LIFETIME AND THREADS
//   A Config keeps a view of its schema: the schema array and the strings it points to must
//   outlive it (declare schemas as static constexpr arrays). Const members may be called from
//   several threads at once; set() may not run alongside anything else.
#pragma once

#include <chrono>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.h"

namespace mailwright {

enum class ConfigType { kString, kPath, kInt, kBool, kDuration, kSize, kList, kChoice };

struct ConfigKey {
  std::string_view name;
  ConfigType type;
  std::string_view default_value;  // in file syntax; "" allowed for strings, lists and paths
  std::string_view help;           // one line; dump() prints it as a comment above the key
  std::string_view choices = {};   // kChoice only: the allowed words, "mbox|maildir"
  // kInt, kDuration (seconds), kSize (bytes): the value must lie in [min, max] when max > min.
  long long min = 0;
  long long max = 0;
};

class Config {
 public:
  // Parses text against schema, starting from the defaults. file_name is used only in error
  // messages and origin(). Pure: no I/O.
  static Result<Config> parse(std::string_view text, std::string_view file_name,
                              std::span<const ConfigKey> schema);
  // Reads the file at path and parses it. Refuses anything but a regular file (a FIFO is
  // refused without waiting for a writer) and files over limits::kConfigFile. A missing file
  // is an error too; a program whose file is optional checks for it first.
  static Result<Config> load(const std::string& path, std::span<const ConfigKey> schema);
  // What a program reads at start: explicit_path when given (it must exist), else
  // default_path when that file exists, else the defaults.
  static Result<Config> load_for_program(const std::string& explicit_path,
                                         const std::string& default_path,
                                         std::span<const ConfigKey> schema);
  // Every key at its default. Aborts if a default does not parse (a bug in the schema).
  static Config defaults(std::span<const ConfigKey> schema);

  const std::string& get_string(std::string_view key) const;  // kString, kPath, kChoice
  long long get_int(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::chrono::seconds get_duration(std::string_view key) const;
  unsigned long long get_size(std::string_view key) const;
  const std::vector<std::string>& get_list(std::string_view key) const;

  // Overrides a value as if it were given in a file (for -o options and tests), validated the
  // same way; origin stands in for "FILE:LINE" in errors and in origin(). A key may be set any
  // number of times this way; the last one wins.
  Status set(std::string_view key, std::string_view value,
             std::string_view origin = "command line");

  // The effective configuration: for every key in schema order, "# help" (when there is help)
  // then "key = value" with the value in canonical form (bools as yes/no, durations and sizes
  // in the largest exact unit, lists joined with ", "). Parsing the output against the same
  // schema gives the same values.
  std::string dump() const;

  // Where the key's value came from: "FILE:LINE", "default", or the origin given to set().
  std::string origin(std::string_view key) const;

 private:
  struct Value {
    std::string text;      // canonical form: what dump() prints and get_string() returns
    long long number = 0;  // kInt, kBool (0 or 1), kDuration (seconds)
    unsigned long long size = 0;
    std::vector<std::string> list;
    std::string origin;
  };

  explicit Config(std::span<const ConfigKey> schema) : schema_(schema) {}
  // Aborts unless key is in the schema with one of the types.
  const Value& value_for(std::string_view key, const char* getter,
                         std::initializer_list<ConfigType> types) const;

  std::span<const ConfigKey> schema_;
  std::vector<Value> values_;  // values_[i] belongs to schema_[i]
};

}  // namespace mailwright
