#include "table.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace xent::cli {

std::size_t display_width(const std::string& s) {
  // Count every byte that is not a UTF-8 continuation byte (10xxxxxx).
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string format_number(double v, int digits) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (std::isnan(v)) return "nan";
  if (v == 0) v = 0.0;  // −p·log 1 is −0.0; "-0.000000" would only puzzle
  const double a = std::fabs(v);
  if (v == 0 || (a >= 1e-4 && a < 1e7)) return fmt::format("{:.{}f}", v, digits);
  return fmt::format("{:.{}e}", v, std::max(1, digits - 2));
}

std::string Table::render(const std::string& indent) const {
  std::size_t ncols = 0;
  for (const auto& r : headers_) ncols = std::max(ncols, r.size());
  for (const auto& r : rows_) ncols = std::max(ncols, r.size());
  std::vector<std::size_t> width(ncols, 0);
  auto measure = [&](const std::vector<std::string>& r) {
    for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], display_width(r[c]));
  };
  for (const auto& r : headers_) measure(r);
  for (const auto& r : rows_) measure(r);

  std::size_t total = 0;
  for (std::size_t c = 0; c < ncols; ++c) total += width[c] + (c ? 2 : 0);

  std::string out;
  auto emit = [&](const std::vector<std::string>& r) {
    std::string line = indent;
    for (std::size_t c = 0; c < ncols; ++c) {
      const std::string cell = c < r.size() ? r[c] : std::string();
      if (c) line += "  ";
      const std::size_t pad = width[c] - display_width(cell);
      if (std::find(left_.begin(), left_.end(), c) != left_.end()) {
        line += cell;
        line.append(pad, ' ');
      } else {
        line.append(pad, ' ');
        line += cell;
      }
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  };
  for (const auto& r : headers_) emit(r);
  for (std::size_t i = 0; i < rows_.size(); ++i) {
    if (std::find(rules_.begin(), rules_.end(), i) != rules_.end()) {
      out += indent;
      for (std::size_t k = 0; k < total; ++k) out += "─";
      out += '\n';
    } else {
      emit(rows_[i]);
    }
  }
  return out;
}

}  // namespace xent::cli
