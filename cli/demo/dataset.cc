#include "demo/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <numbers>

namespace xent::demo {
namespace {

// gzread reads plain files too (transparently), so one path serves both.
std::string read_file(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw DataError(path + ": cannot open file");
  std::string data;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) data.append(buf, static_cast<std::size_t>(n));
  int err = 0;
  const char* msg = gzerror(f, &err);
  const bool failed = n < 0 || (err != Z_OK && err != Z_STREAM_END);
  const std::string what = failed ? std::string(msg) : "";
  gzclose(f);
  if (failed) throw DataError(path + ": read error (" + what + ")");
  return data;
}

std::vector<std::string> split_fields(const std::string& line) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = line.find(',', start);
    std::string field = line.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    // trim spaces and quotes
    const auto b = field.find_first_not_of(" \t\"");
    const auto e = field.find_last_not_of(" \t\"\r");
    out.push_back(b == std::string::npos ? "" : field.substr(b, e - b + 1));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

bool parse_double(const std::string& s, double& v) {
  if (s.empty()) return false;
  const char* b = s.data();
  const char* e = b + s.size();
  if (*b == '+') ++b;
  auto [ptr, ec] = std::from_chars(b, e, v);
  return ec == std::errc() && ptr == e;
}

}  // namespace

double SplitMix64::normal() {
  const double u1 = 1.0 - uniform();  // (0, 1]
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

Dataset load_csv(const std::string& path, int label_column) {
  const std::string text = read_file(path);
  std::vector<std::vector<double>> feats;
  std::vector<std::string> labels;
  std::size_t ncols = 0;
  std::size_t pos = 0, line_no = 0;
  bool first = true;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const auto fields = split_fields(line);
    if (ncols == 0) {
      ncols = fields.size();
      if (ncols < 2)
        throw DataError(path + ":" + std::to_string(line_no) +
                        ": need at least one feature column and a label column");
    }
    if (fields.size() != ncols)
      throw DataError(path + ":" + std::to_string(line_no) + ": " +
                      std::to_string(fields.size()) + " fields, expected " +
                      std::to_string(ncols));
    const std::size_t lab = label_column < 0 ? ncols - 1 : static_cast<std::size_t>(label_column);
    if (lab >= ncols)
      throw DataError(path + ": label column " + std::to_string(label_column) +
                      " does not exist (the file has " + std::to_string(ncols) + " columns)");
    std::vector<double> row;
    row.reserve(ncols - 1);
    bool numeric = true;
    std::size_t bad = 0;
    for (std::size_t c = 0; c < ncols; ++c) {
      if (c == lab) continue;
      double v;
      if (!parse_double(fields[c], v) || !std::isfinite(v)) {
        numeric = false;
        bad = c;
        break;
      }
      row.push_back(v);
    }
    if (!numeric) {
      if (first) {  // a header line
        first = false;
        continue;
      }
      throw DataError(path + ":" + std::to_string(line_no) + ": column " +
                      std::to_string(bad + 1) + " is '" + fields[bad] +
                      "', not a finite number");
    }
    first = false;
    if (fields[lab].empty())
      throw DataError(path + ":" + std::to_string(line_no) + ": empty label");
    feats.push_back(std::move(row));
    labels.push_back(fields[lab]);
  }
  if (feats.empty()) throw DataError(path + ": no data rows");

  // Classes in sorted label order, numerically when every label is a number.
  std::map<std::string, int> index;
  std::vector<std::string> names(labels);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  bool all_numeric = true;
  for (const auto& n : names) {
    double v;
    all_numeric = all_numeric && parse_double(n, v);
  }
  if (all_numeric)
    std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
      double x, y;
      parse_double(a, x);
      parse_double(b, y);
      return x < y;
    });
  for (std::size_t i = 0; i < names.size(); ++i) index[names[i]] = static_cast<int>(i);
  if (names.size() < 2)
    throw DataError(path + ": only one class ('" + names[0] + "'); a classifier needs two or more");

  Dataset d;
  d.rows = static_cast<std::int64_t>(feats.size());
  d.features = static_cast<std::int64_t>(ncols - 1);
  d.classes = static_cast<std::int64_t>(names.size());
  d.class_names = names;
  d.x.reserve(feats.size() * (ncols - 1));
  for (const auto& r : feats)
    for (double v : r) d.x.push_back(static_cast<float>(v));
  for (const auto& l : labels) d.y.push_back(index[l]);
  return d;
}

Split split_rows(std::int64_t rows, double test_fraction, std::uint64_t seed) {
  std::vector<std::int64_t> idx(static_cast<std::size_t>(rows));
  for (std::int64_t i = 0; i < rows; ++i) idx[static_cast<std::size_t>(i)] = i;
  SplitMix64 rng{seed};
  for (std::int64_t i = rows - 1; i > 0; --i) {
    const auto j = static_cast<std::int64_t>(rng.next() % static_cast<std::uint64_t>(i + 1));
    std::swap(idx[static_cast<std::size_t>(i)], idx[static_cast<std::size_t>(j)]);
  }
  const auto n_test = static_cast<std::int64_t>(std::llround(test_fraction * static_cast<double>(rows)));
  Split s;
  s.test.assign(idx.begin(), idx.begin() + n_test);
  s.train.assign(idx.begin() + n_test, idx.end());
  return s;
}

}  // namespace xent::demo
