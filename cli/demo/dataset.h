// A labelled table of numbers read from CSV (plain or gzip-compressed), as
// `xent demo` trains on: the digits set Debian's python3-sklearn ships, or any
// CSV with a label column.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace xent::demo {

// Thrown for an unreadable or malformed file; the message names the file and,
// where there is one, the line.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Dataset {
  std::int64_t rows = 0;
  std::int64_t features = 0;
  std::int64_t classes = 0;
  std::vector<float> x;                 // rows × features, row-major
  std::vector<std::int32_t> y;          // class index in [0, classes)
  std::vector<std::string> class_names; // the label text of each class
};

// Where Debian's python3-sklearn puts the 8×8 digits (1797 images, 10 classes).
inline constexpr const char* kDigitsPath =
    "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";

// Reads a CSV: numeric features and one label column (`label_column`, or the
// last column when it is -1). A first line that does not parse as numbers is a
// header. Labels are any text; classes are numbered in sorted label order
// (numerically when every label is a number).
Dataset load_csv(const std::string& path, int label_column = -1);

// A reproducible split: shuffles row indices with the seed (our own
// Fisher-Yates on splitmix64, so the split is the same on every platform)
// and holds out `test_fraction` of them.
struct Split {
  std::vector<std::int64_t> train, test;
};
Split split_rows(std::int64_t rows, double test_fraction, std::uint64_t seed);

// splitmix64: the generator behind every random choice of the demo.
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double normal();  // Box-Muller
};

}  // namespace xent::demo
