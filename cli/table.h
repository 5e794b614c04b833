// cli/table.h — a plain text table with right-aligned columns.
//
// Widths are measured in code points, not bytes, so headers written with
// "−", "·" or "‖" line up with ASCII digits.
#pragma once

#include <string>
#include <vector>

namespace xent::cli {

class Table {
 public:
  // Header lines (a name line, then a unit line, ...) and body rows. Rows may
  // be shorter than the widest; missing cells are blank.
  void add_header(std::vector<std::string> cells) { headers_.push_back(std::move(cells)); }
  void add_row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  void add_rule() { rows_.push_back({}); rules_.push_back(rows_.size() - 1); }
  // Text columns (labels) read better left-aligned; numbers stay right-aligned.
  void align_left(std::size_t column) { left_.push_back(column); }

  // Each line starts with `indent`, columns are separated by two spaces, and
  // trailing blanks are trimmed.
  std::string render(const std::string& indent = "  ") const;

 private:
  std::vector<std::vector<std::string>> headers_, rows_;
  std::vector<std::size_t> rules_;  // indices in rows_ that are separator lines
  std::vector<std::size_t> left_;   // left-aligned columns
};

// Display width of a UTF-8 string: the number of code points.
std::size_t display_width(const std::string& s);

// A number for the table: fixed with `digits` decimals for magnitudes that
// read well that way, scientific for very small or large nonzero values (so
// 1e-9 never shows as 0.000000), "inf"/"-inf" for infinities.
std::string format_number(double v, int digits);

}  // namespace xent::cli
