// xent/error.h — the one exception type libxent throws on bad input.
//
// Policy: every public function validates its arguments and throws xent::Error
// (derived from std::invalid_argument) whose message names the argument, the
// position (row / index) and the offending value. The library never aborts,
// prints or exits on user input. NaN results are never produced silently from
// valid input; invalid input (NaN logits, +inf logits, negative or
// non-normalized distributions, out-of-range targets, shape mismatches, empty
// rows) is an Error.
#pragma once

#include <stdexcept>
#include <string>

namespace xent {

enum class ErrorCode {
  kEmpty,             // K = 0 classes, or another empty input that has no meaning
  kShapeMismatch,     // two arguments disagree in length / shape
  kNonFinite,         // NaN where a number is required, or +inf in logits
  kNotDistribution,   // negative entry, entry > 1, or sum not 1 within tolerance
  kTargetOutOfRange,  // class index outside [0, K)
  kInvalidArgument,   // any other bad parameter (sigma <= 0, epsilon outside [0,1], ...)
  kUndefined,         // the quantity does not exist for this input (all logits -inf)
};

const char* ErrorCodeName(ErrorCode code) noexcept;

class Error : public std::invalid_argument {
 public:
  Error(ErrorCode code, const std::string& message)
      : std::invalid_argument(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace xent
