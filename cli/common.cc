#include "common.h"

#include <charconv>
#include <cmath>
#include <system_error>

#include <fmt/format.h>

namespace xent::cli {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// `where` is "" for a single value and " entry 2" inside a list, so that the
// message points at the offending item.
double parse_one(std::string_view token, std::string_view option, const std::string& where) {
  const std::string_view original = token;
  token = trim(token);
  if (token.empty())
    throw UsageError(fmt::format("{}{}: empty value (expected a number)", option, where));
  // std::from_chars accepts '-' but not '+'; "+0.5" is a fair thing to type.
  if (token.front() == '+' && token.size() > 1 && token[1] != '-') token.remove_prefix(1);
  double v = 0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), v);
  if (ec == std::errc::result_out_of_range)
    throw UsageError(fmt::format("{}{}: '{}' is out of the range of a double", option, where,
                                 trim(original)));
  if (ec != std::errc() || end != token.data() + token.size())
    throw UsageError(fmt::format("{}{}: '{}' is not a number", option, where, trim(original)));
  if (std::isnan(v))
    throw UsageError(fmt::format("{}{}: NaN is not allowed (a number is required)", option, where));
  return v;
}

}  // namespace

std::vector<double> parse_number_list(std::string_view text, std::string_view option) {
  std::vector<double> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    const std::string_view token =
        text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    out.push_back(parse_one(token, option, fmt::format(" entry {}", out.size())));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

double parse_number(std::string_view text, std::string_view option) {
  return parse_one(text, option, "");
}

long long parse_index(std::string_view text, std::string_view option) {
  const std::string_view t = trim(text);
  long long v = 0;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc() || end != t.data() + t.size())
    throw UsageError(
        fmt::format("{}: '{}' is not a class index (an integer 0, 1, 2, ...)", option, t));
  return v;  // a negative index is reported with K by the command, which knows K
}

}  // namespace xent::cli
