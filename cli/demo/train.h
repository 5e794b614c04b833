// The classifiers `xent demo` trains, written in plain C++ on libxent's fused
// loss: softmax regression and a one-hidden-layer MLP, trained by minibatch
// SGD with momentum under three objectives.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "demo/dataset.h"
#include "metrics.h"

namespace xent::demo {

enum class Model { kSoftmaxRegression, kMlp };
enum class Objective {
  kCrossEntropy,          // xent::cross_entropy_loss, mean
  kMseOnSoftmax,          // mean over N·C of (softmax(z) − onehot)²
  kCrossEntropySmoothed,  // cross-entropy with label smoothing (uniform)
};
const char* ModelName(Model m);
const char* ObjectiveName(Objective o);

struct TrainConfig {
  Model model = Model::kSoftmaxRegression;
  Objective objective = Objective::kCrossEntropy;
  double smoothing = 0.1;
  int hidden = 64;
  int epochs = 30;
  int batch = 32;
  double learning_rate = 0.05;
  double momentum = 0.9;
  std::uint64_t seed = 42;
  double target_train_accuracy = 0.9;
};

struct EvalPoint {
  std::int64_t step;
  double train_accuracy;
  double test_nll_nats;  // cross-entropy of the test set, whatever the objective
};

struct RunResult {
  TrainConfig config;
  std::int64_t steps_to_target = -1;  // first step with train accuracy ≥ target; -1: never
  std::int64_t total_steps = 0;
  double test_accuracy = 0, test_nll_nats = 0, ece = 0, brier = 0, mean_confidence = 0;
  cli::Calibration calibration{15};
  std::vector<double> train_objective;  // per step, on the minibatch
  std::vector<EvalPoint> evals;         // at each epoch end (and step 0)
};

// Features are standardized with the training rows' mean and deviation
// (computed here, never from the test rows). `on_step(done, total)` reports
// progress.
RunResult train(const Dataset& data, const Split& split, const TrainConfig& config,
                const std::function<void(std::int64_t, std::int64_t)>& on_step = {});

}  // namespace xent::demo
