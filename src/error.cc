#include <charconv>
#include <string>

#include "validate.h"
#include "xent/error.h"

namespace xent {

const char* ErrorCodeName(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kEmpty: return "empty";
    case ErrorCode::kShapeMismatch: return "shape_mismatch";
    case ErrorCode::kNonFinite: return "non_finite";
    case ErrorCode::kNotDistribution: return "not_distribution";
    case ErrorCode::kTargetOutOfRange: return "target_out_of_range";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kUndefined: return "undefined";
  }
  return "unknown";
}

namespace detail {

void fail(ErrorCode code, const std::string& message) { throw Error(code, message); }

std::string fmt_num(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

void fail_nonfinite(const char* fn, const char* what, std::size_t index, double value) {
  fail(ErrorCode::kNonFinite, std::string(fn) + ": " + what + "[" +
                                  std::to_string(index) + "] is " + fmt_num(value) +
                                  (std::isnan(value) ? "" : " (+inf is not a valid logit; -inf masks are)"));
}

}  // namespace detail
}  // namespace xent
