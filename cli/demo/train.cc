#include "demo/train.h"

#include <algorithm>
#include <cmath>
#include <span>

#include "xent/core.h"
#include "xent/loss.h"

namespace xent::demo {

const char* ModelName(Model m) {
  return m == Model::kMlp ? "MLP (1 hidden layer)" : "softmax regression";
}
const char* ObjectiveName(Objective o) {
  switch (o) {
    case Objective::kCrossEntropy: return "cross-entropy";
    case Objective::kMseOnSoftmax: return "MSE on softmax";
    case Objective::kCrossEntropySmoothed: return "CE + smoothing";
  }
  return "?";
}

namespace {

using Matrix = std::vector<float>;  // row-major

// y[n×m] = x[n×k] · w[k×m] + b[m]
void affine(const float* x, const float* w, const float* b, float* y, std::int64_t n,
            std::int64_t k, std::int64_t m) {
  for (std::int64_t i = 0; i < n; ++i) {
    float* yi = y + i * m;
    for (std::int64_t j = 0; j < m; ++j) yi[j] = b[j];
    for (std::int64_t p = 0; p < k; ++p) {
      const float xv = x[i * k + p];
      if (xv == 0.f) continue;
      const float* wp = w + p * m;
      for (std::int64_t j = 0; j < m; ++j) yi[j] += xv * wp[j];
    }
  }
}

// dw[k×m] += xᵀ[k×n] · g[n×m];  db[m] += Σ_n g
void affine_backward_params(const float* x, const float* g, float* dw, float* db,
                            std::int64_t n, std::int64_t k, std::int64_t m) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float* gi = g + i * m;
    for (std::int64_t j = 0; j < m; ++j) db[j] += gi[j];
    for (std::int64_t p = 0; p < k; ++p) {
      const float xv = x[i * k + p];
      if (xv == 0.f) continue;
      float* dwp = dw + p * m;
      for (std::int64_t j = 0; j < m; ++j) dwp[j] += xv * gi[j];
    }
  }
}

// dx[n×k] = g[n×m] · wᵀ
void affine_backward_input(const float* g, const float* w, float* dx, std::int64_t n,
                           std::int64_t k, std::int64_t m) {
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t p = 0; p < k; ++p) {
      float s = 0;
      for (std::int64_t j = 0; j < m; ++j) s += g[i * m + j] * w[p * m + j];
      dx[i * k + p] = s;
    }
}

struct Params {
  std::int64_t in = 0, hidden = 0, out = 0;  // hidden 0: softmax regression
  std::vector<float> w1, b1, w2, b2;         // regression uses w2/b2 only (in × out)

  std::vector<float*> tensors() { return {w1.data(), b1.data(), w2.data(), b2.data()}; }
};

Params init_params(std::int64_t in, std::int64_t hidden, std::int64_t out, SplitMix64& rng) {
  Params p;
  p.in = in, p.hidden = hidden, p.out = out;
  const std::int64_t last_in = hidden ? hidden : in;
  if (hidden) {
    p.w1.resize(static_cast<std::size_t>(in * hidden));
    p.b1.assign(static_cast<std::size_t>(hidden), 0.f);
    // He initialization for the ReLU layer.
    const double s = std::sqrt(2.0 / static_cast<double>(in));
    for (auto& v : p.w1) v = static_cast<float>(s * rng.normal());
  }
  p.w2.resize(static_cast<std::size_t>(last_in * out));
  p.b2.assign(static_cast<std::size_t>(out), 0.f);
  const double s = std::sqrt(1.0 / static_cast<double>(last_in));
  for (auto& v : p.w2) v = static_cast<float>(s * rng.normal());
  return p;
}

// Forward for n rows; keeps the hidden activations for the backward.
void forward(const Params& p, const float* x, std::int64_t n, Matrix& hidden, Matrix& logits) {
  logits.resize(static_cast<std::size_t>(n * p.out));
  if (!p.hidden) {
    affine(x, p.w2.data(), p.b2.data(), logits.data(), n, p.in, p.out);
    return;
  }
  hidden.resize(static_cast<std::size_t>(n * p.hidden));
  affine(x, p.w1.data(), p.b1.data(), hidden.data(), n, p.in, p.hidden);
  for (auto& h : hidden) h = std::max(h, 0.f);
  affine(hidden.data(), p.w2.data(), p.b2.data(), logits.data(), n, p.hidden, p.out);
}

// The loss of a minibatch and d(loss)/d(logits), written into `grad`.
double objective_and_grad(Objective o, double smoothing, const Matrix& logits,
                          const std::vector<std::int32_t>& y, std::int64_t n, std::int64_t c,
                          Matrix& grad) {
  grad.resize(logits.size());
  if (o != Objective::kMseOnSoftmax) {
    CrossEntropyOptions opt;
    opt.reduction = Reduction::kMean;
    if (o == Objective::kCrossEntropySmoothed) opt.label_smoothing = smoothing;
    CrossEntropyOutputs out;
    out.grad = {grad.data(), DType::kF32, n, c, c};
    return cross_entropy_loss({logits.data(), DType::kF32, n, c, c}, Targets::Index(y.data()),
                              opt, out)
        .loss;
  }
  // MSE between softmax(z) and the one-hot target, mean over the n·c entries
  // (torch's mse_loss(softmax(z), onehot)). Its gradient passes through the
  // softmax Jacobian: dz_j = q_j (g_j − Σ_i g_i q_i), g = 2 (q − y) / (n c).
  double loss = 0;
  std::vector<float> q(static_cast<std::size_t>(c));
  for (std::int64_t i = 0; i < n; ++i) {
    std::span<const float> row(logits.data() + i * c, static_cast<std::size_t>(c));
    softmax<float>(row, q);
    double gq = 0;
    std::vector<double> g(static_cast<std::size_t>(c));
    for (std::int64_t j = 0; j < c; ++j) {
      const double d = q[static_cast<std::size_t>(j)] - (j == y[static_cast<std::size_t>(i)] ? 1.0 : 0.0);
      loss += d * d;
      g[static_cast<std::size_t>(j)] = 2.0 * d / static_cast<double>(n * c);
      gq += g[static_cast<std::size_t>(j)] * q[static_cast<std::size_t>(j)];
    }
    for (std::int64_t j = 0; j < c; ++j)
      grad[static_cast<std::size_t>(i * c + j)] =
          static_cast<float>(q[static_cast<std::size_t>(j)] * (g[static_cast<std::size_t>(j)] - gq));
  }
  return loss / static_cast<double>(n * c);
}

struct Table {
  Matrix x;
  std::vector<std::int32_t> y;
  std::int64_t n = 0;
};

Table gather(const Dataset& d, const std::vector<std::int64_t>& rows,
             const std::vector<double>& mean, const std::vector<double>& inv_std) {
  Table t;
  t.n = static_cast<std::int64_t>(rows.size());
  t.x.resize(rows.size() * static_cast<std::size_t>(d.features));
  t.y.resize(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    for (std::int64_t f = 0; f < d.features; ++f) {
      const auto fi = static_cast<std::size_t>(f);
      t.x[i * static_cast<std::size_t>(d.features) + fi] =
          static_cast<float>((d.x[static_cast<std::size_t>(rows[i] * d.features + f)] - mean[fi]) * inv_std[fi]);
    }
    t.y[i] = d.y[static_cast<std::size_t>(rows[i])];
  }
  return t;
}

struct Scores {
  double accuracy = 0, nll = 0;
};

Scores score(const Params& p, const Table& t, Matrix& hidden, Matrix& logits) {
  forward(p, t.x.data(), t.n, hidden, logits);
  CrossEntropyOptions opt;
  opt.compute_accuracy = true;
  const auto r = cross_entropy_loss({logits.data(), DType::kF32, t.n, p.out, p.out},
                                    Targets::Index(t.y.data()), opt);
  return {static_cast<double>(r.correct) / static_cast<double>(t.n), r.loss};
}

}  // namespace

RunResult train(const Dataset& data, const Split& split, const TrainConfig& cfg,
                const std::function<void(std::int64_t, std::int64_t)>& on_step) {
  // Standardize with training statistics only.
  const auto nf = static_cast<std::size_t>(data.features);
  std::vector<double> mean(nf, 0.0), inv_std(nf, 1.0);
  for (auto r : split.train)
    for (std::size_t f = 0; f < nf; ++f) mean[f] += data.x[static_cast<std::size_t>(r) * nf + f];
  for (auto& m : mean) m /= static_cast<double>(split.train.size());
  std::vector<double> var(nf, 0.0);
  for (auto r : split.train)
    for (std::size_t f = 0; f < nf; ++f) {
      const double d = data.x[static_cast<std::size_t>(r) * nf + f] - mean[f];
      var[f] += d * d;
    }
  for (std::size_t f = 0; f < nf; ++f) {
    const double sd = std::sqrt(var[f] / static_cast<double>(split.train.size()));
    inv_std[f] = sd > 1e-12 ? 1.0 / sd : 0.0;  // a constant pixel carries nothing
  }
  const Table train_set = gather(data, split.train, mean, inv_std);
  const Table test_set = gather(data, split.test, mean, inv_std);

  SplitMix64 rng{cfg.seed};
  Params p = init_params(data.features, cfg.model == Model::kMlp ? cfg.hidden : 0, data.classes, rng);
  Params velocity = p;
  for (auto* t : {&velocity.w1, &velocity.b1, &velocity.w2, &velocity.b2}) std::fill(t->begin(), t->end(), 0.f);

  RunResult res;
  res.config = cfg;
  const std::int64_t steps_per_epoch = (train_set.n + cfg.batch - 1) / cfg.batch;
  res.total_steps = steps_per_epoch * cfg.epochs;

  Matrix hidden, logits, grad, dhidden, eval_hidden, eval_logits;
  Table batch;
  batch.x.resize(static_cast<std::size_t>(cfg.batch) * nf);
  batch.y.resize(static_cast<std::size_t>(cfg.batch));
  std::vector<std::int64_t> order(static_cast<std::size_t>(train_set.n));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int64_t>(i);

  auto evaluate = [&](std::int64_t step) {
    const auto tr = score(p, train_set, eval_hidden, eval_logits);
    const auto te = score(p, test_set, eval_hidden, eval_logits);
    res.evals.push_back({step, tr.accuracy, te.nll});
    return tr.accuracy;
  };
  evaluate(0);

  std::int64_t step = 0;
  Params g = velocity;  // gradient buffers, same shapes
  for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
    for (std::int64_t i = train_set.n - 1; i > 0; --i) {
      const auto j = static_cast<std::int64_t>(rng.next() % static_cast<std::uint64_t>(i + 1));
      std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
    }
    for (std::int64_t b0 = 0; b0 < train_set.n; b0 += cfg.batch) {
      const std::int64_t n = std::min<std::int64_t>(cfg.batch, train_set.n - b0);
      for (std::int64_t i = 0; i < n; ++i) {
        const auto src = static_cast<std::size_t>(order[static_cast<std::size_t>(b0 + i)]);
        std::copy_n(train_set.x.data() + src * nf, nf, batch.x.data() + static_cast<std::size_t>(i) * nf);
        batch.y[static_cast<std::size_t>(i)] = train_set.y[src];
      }
      batch.n = n;
      std::vector<std::int32_t> yb(batch.y.begin(), batch.y.begin() + n);
      forward(p, batch.x.data(), n, hidden, logits);
      res.train_objective.push_back(
          objective_and_grad(cfg.objective, cfg.smoothing, logits, yb, n, p.out, grad));

      for (auto* t : {&g.w1, &g.b1, &g.w2, &g.b2}) std::fill(t->begin(), t->end(), 0.f);
      if (p.hidden) {
        affine_backward_params(hidden.data(), grad.data(), g.w2.data(), g.b2.data(), n, p.hidden, p.out);
        dhidden.resize(static_cast<std::size_t>(n * p.hidden));
        affine_backward_input(grad.data(), p.w2.data(), dhidden.data(), n, p.hidden, p.out);
        for (std::size_t k = 0; k < dhidden.size(); ++k)
          if (hidden[k] <= 0.f) dhidden[k] = 0.f;
        affine_backward_params(batch.x.data(), dhidden.data(), g.w1.data(), g.b1.data(), n, p.in, p.hidden);
      } else {
        affine_backward_params(batch.x.data(), grad.data(), g.w2.data(), g.b2.data(), n, p.in, p.out);
      }
      // SGD with momentum: v = μ v − lr g; θ += v.
      auto params = p.tensors();
      auto vel = velocity.tensors();
      auto grads = g.tensors();
      const std::size_t sizes[4] = {p.w1.size(), p.b1.size(), p.w2.size(), p.b2.size()};
      for (int t = 0; t < 4; ++t)
        for (std::size_t k = 0; k < sizes[t]; ++k) {
          vel[t][k] = static_cast<float>(cfg.momentum * vel[t][k] - cfg.learning_rate * grads[t][k]);
          params[t][k] += vel[t][k];
        }
      ++step;
      if (res.steps_to_target < 0) {
        const auto tr = score(p, train_set, eval_hidden, eval_logits);
        if (tr.accuracy >= cfg.target_train_accuracy) res.steps_to_target = step;
      }
      if (on_step) on_step(step, res.total_steps);
    }
    evaluate(step);
  }

  // Final test metrics.
  forward(p, test_set.x.data(), test_set.n, eval_hidden, eval_logits);
  const auto c = static_cast<std::size_t>(p.out);
  std::vector<float> q(c);
  double brier = 0, conf = 0;
  std::int64_t correct = 0;
  for (std::int64_t i = 0; i < test_set.n; ++i) {
    softmax<float>(std::span<const float>(eval_logits.data() + static_cast<std::size_t>(i) * c, c), q);
    const auto pred = cli::argmax(q);
    const bool ok = pred == test_set.y[static_cast<std::size_t>(i)];
    const double confidence = q[static_cast<std::size_t>(pred)];
    res.calibration.add(confidence, ok);
    brier += cli::brier_row(q, test_set.y[static_cast<std::size_t>(i)]);
    conf += confidence;
    correct += ok;
  }
  const auto nt = static_cast<double>(test_set.n);
  res.test_accuracy = static_cast<double>(correct) / nt;
  res.brier = brier / nt;
  res.mean_confidence = conf / nt;
  res.ece = res.calibration.ece();
  res.test_nll_nats = score(p, test_set, eval_hidden, eval_logits).nll;
  return res;
}

}  // namespace xent::demo
