// cli/common.h — what every xent subcommand shares: the usage error, exit
// codes, and strict parsing of numbers given on the command line.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace xent::cli {

// Exit codes, documented in `xent --help` and docs/cli.md.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;  // an unexpected failure (a bug, out of memory)
inline constexpr int kExitUsage = 2;    // bad option or bad value: the user can fix it

// A bad command line (unknown combination of options, a value that is not a
// number). main() prints it as one line `xent: error: ...` and exits 2, like
// xent::Error thrown by the library for invalid values.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "0.6,0.3,0.1" → {0.6, 0.3, 0.1}. Every entry must be a whole number in
// decimal or scientific notation ("inf"/"-inf" are accepted: -inf is a legal
// logit mask, +inf is left for the library to reject with its own message).
// An empty entry, trailing text, NaN or a value outside the range of double is
// a UsageError naming `option`, the entry's index and its text.
std::vector<double> parse_number_list(std::string_view text, std::string_view option);

// One real number with the same rules.
double parse_number(std::string_view text, std::string_view option);

// A class index: a non-negative integer written without sign, dot or exponent.
long long parse_index(std::string_view text, std::string_view option);

}  // namespace xent::cli
