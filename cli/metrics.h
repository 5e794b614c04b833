// Classification metrics that accumulate row by row (so `xent eval` can
// stream a file larger than memory and `xent demo` can reuse them):
// reliability bins / expected calibration error, Brier score, accuracy.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace xent::cli {

// Expected calibration error over equal-width confidence bins (Guo et al.
// 2017): ECE = Σ_b (n_b / N)·|accuracy_b − mean confidence_b|, where the
// confidence of a row is its largest probability. Bin b holds confidences in
// (b/B, (b+1)/B], bin 0 also holds 0.
class Calibration {
 public:
  explicit Calibration(int bins = 15);
  void add(double confidence, bool correct);
  int bins() const { return static_cast<int>(count_.size()); }
  std::int64_t count(int b) const { return count_[static_cast<std::size_t>(b)]; }
  double mean_confidence(int b) const;  // NaN for an empty bin
  double accuracy(int b) const;         // NaN for an empty bin
  double ece() const;
  std::int64_t total() const { return total_; }
  void merge(const Calibration& other);

 private:
  std::vector<std::int64_t> count_, correct_;
  std::vector<double> conf_sum_;
  std::int64_t total_ = 0;
};

// Multi-class Brier score of one row: Σ_c (q_c − onehot_c)².
double brier_row(std::span<const float> probs, std::int32_t target);

// argmax with the lowest index winning ties (the rule every metric uses).
std::int64_t argmax(std::span<const float> row);

}  // namespace xent::cli
