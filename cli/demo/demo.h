// `xent demo`: train two classifiers three ways on a real data set and report,
// measured, what cross-entropy tutorials claim.
#pragma once

#include <cstdint>
#include <string>

namespace xent::demo {

struct DemoOptions {
  std::string data;            // empty: the digits set from python3-sklearn
  int label_column = -1;       // -1: the last column
  std::string report = "xent-demo.svg";
  std::uint64_t seed = 42;
  int epochs = 30;
  double smoothing = 0.1;
  double test_fraction = 0.2;
  bool json = false;
  bool quick = false;          // fewer epochs, softmax regression only (tests)
};

// Prints the tables and verdicts (or JSON) on stdout, progress on stderr.
// Throws DataError for a bad data file, xent::Error for bad values.
int run_demo(const DemoOptions& options);

}  // namespace xent::demo
