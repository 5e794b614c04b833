#include "metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace xent::cli {

Calibration::Calibration(int bins)
    : count_(static_cast<std::size_t>(std::max(bins, 1)), 0),
      correct_(count_.size(), 0), conf_sum_(count_.size(), 0.0) {}

void Calibration::add(double confidence, bool correct) {
  const int n = bins();
  int b = static_cast<int>(std::ceil(confidence * n)) - 1;
  b = std::clamp(b, 0, n - 1);
  const auto i = static_cast<std::size_t>(b);
  ++count_[i];
  correct_[i] += correct ? 1 : 0;
  conf_sum_[i] += confidence;
  ++total_;
}

double Calibration::mean_confidence(int b) const {
  const auto i = static_cast<std::size_t>(b);
  return count_[i] ? conf_sum_[i] / static_cast<double>(count_[i])
                   : std::numeric_limits<double>::quiet_NaN();
}

double Calibration::accuracy(int b) const {
  const auto i = static_cast<std::size_t>(b);
  return count_[i] ? static_cast<double>(correct_[i]) / static_cast<double>(count_[i])
                   : std::numeric_limits<double>::quiet_NaN();
}

double Calibration::ece() const {
  if (total_ == 0) return 0.0;
  double e = 0;
  for (int b = 0; b < bins(); ++b) {
    const auto i = static_cast<std::size_t>(b);
    if (!count_[i]) continue;
    e += static_cast<double>(count_[i]) / static_cast<double>(total_) *
         std::fabs(accuracy(b) - mean_confidence(b));
  }
  return e;
}

void Calibration::merge(const Calibration& other) {
  for (std::size_t i = 0; i < count_.size() && i < other.count_.size(); ++i) {
    count_[i] += other.count_[i];
    correct_[i] += other.correct_[i];
    conf_sum_[i] += other.conf_sum_[i];
  }
  total_ += other.total_;
}

double brier_row(std::span<const float> probs, std::int32_t target) {
  double s = 0;
  for (std::size_t c = 0; c < probs.size(); ++c) {
    const double d = probs[c] - (static_cast<std::int64_t>(c) == target ? 1.0 : 0.0);
    s += d * d;
  }
  return s;
}

std::int64_t argmax(std::span<const float> row) {
  std::int64_t best = 0;
  for (std::size_t c = 1; c < row.size(); ++c)
    if (row[c] > row[static_cast<std::size_t>(best)]) best = static_cast<std::int64_t>(c);
  return best;
}

}  // namespace xent::cli
