// The smallest useful program on libxent: one row, then a batch with the
// fused loss and its gradient written in place over the logits.
#include <cstdint>
#include <cstdio>
#include <vector>

#include <xent/core.h>
#include <xent/loss.h>
#include <xent/version.h>

int main() {
  const std::vector<float> row = {2.f, 1.2f, 0.3f, -0.8f, -2.f};
  const float loss_nats = xent::cross_entropy_from_logits<float>(0, row);
  const float loss_bits = xent::cross_entropy_from_logits<float>(0, row, xent::Unit::kBits);
  std::printf("xent %s: one row: %.6f nats = %.6f bits\n", XENT_VERSION_STRING, loss_nats, loss_bits);

  // A batch of 3 rows × 5 classes, label smoothing 0.1, gradient in place.
  std::vector<float> logits = {2, 1.2f, 0.3f, -0.8f, -2, 0, 0, 0, 0, 0, -1, 3, 0.5f, 0.5f, 2};
  const std::vector<std::int64_t> labels = {0, 4, 1};
  xent::CrossEntropyOptions opt;
  opt.label_smoothing = 0.1;
  xent::CrossEntropyOutputs out;
  out.grad = {logits.data(), xent::DType::kF32, 3, 5, 5};
  const auto r = xent::cross_entropy_loss({logits.data(), xent::DType::kF32, 3, 5, 5},
                                          xent::Targets::Index(labels.data()), opt, out);
  double grad_row_sum = 0;
  for (int c = 0; c < 5; ++c) grad_row_sum += logits[static_cast<std::size_t>(c)];
  std::printf("batch: mean loss %.6f nats over %lld rows; gradient row 0 sums to %.1e\n", r.loss,
              static_cast<long long>(r.count), grad_row_sum);
  return 0;
}
