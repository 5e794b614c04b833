// Per-target SIMD code of binary_cross_entropy_with_logits (float32 rows):
//   l = w·[lw·log1p(e^{−|x|}) + (x ≥ 0 ? (1 − y)·x : −pw·y·x)],  lw = 1 + (pw − 1)·y
//   g = s·w·[x ≥ 0 ? (1 − y) − pw·y·e : (1 − y)·e − pw·y] / (1 + e),  e = e^{−|x|}
// (PyTorch's formula rearranged so that no two large terms cancel).
#if defined(XENT_CPU_BCE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_CPU_BCE_INL_H_
#undef XENT_CPU_BCE_INL_H_
#else
#define XENT_CPU_BCE_INL_H_
#endif

#include <cmath>
#include <limits>

#include "cpu/kernels.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <class D>
HWY_INLINE void BceVec(D d, hn::Vec<D> x, hn::Vec<D> y, hn::Vec<D> w, hn::Vec<D> pw,
                       hn::Vec<D> gs, hn::Vec<D>& loss, hn::Vec<D>& grad) {
  const auto one = hn::Set(d, 1.0f);
  const auto e = hn::Exp(d, hn::Neg(hn::Abs(x)));
  const auto omy = hn::Sub(one, y);
  const auto pwy = hn::Mul(pw, y);
  const auto lw = hn::Add(omy, pwy);  // 1 + (pw − 1)·y
  const auto pos = hn::Ge(x, hn::Zero(d));
  const auto lin = hn::IfThenElse(pos, hn::Mul(omy, x), hn::Neg(hn::Mul(pwy, x)));
  loss = hn::Mul(w, hn::MulAdd(lw, hn::Log1p(d, e), lin));
  const auto num = hn::IfThenElse(pos, hn::NegMulAdd(pwy, e, omy), hn::NegMulAdd(pwy, one, hn::Mul(omy, e)));
  grad = hn::Mul(hn::Mul(gs, w), hn::Div(num, hn::Add(one, e)));
}

void BceRowImpl(const float* HWY_RESTRICT x, const float* HWY_RESTRICT y, size_t n,
                const BceRowSpec& spec, BceRowStats* out) {
  const hn::ScalableTag<float> d;
  const size_t L = hn::Lanes(d);
  const auto gs = hn::Set(d, static_cast<float>(spec.grad_scale));
  Wide<decltype(d)> acc(d);
  auto xsum = hn::Zero(d);
  auto ybad = hn::FirstN(d, 0);
  float* HWY_RESTRICT g = spec.grad;
  float* HWY_RESTRICT l = spec.elem_loss;
  auto step = [&](size_t i, hn::Vec<decltype(d)> xv, hn::Vec<decltype(d)> yv, hn::Vec<decltype(d)> wv,
                  hn::Vec<decltype(d)> pv, hn::Mask<decltype(d)> valid, float* gout, float* lout) {
    xsum = hn::Add(xsum, xv);
    ybad = hn::Or(ybad, hn::AndNot(hn::And(hn::Ge(yv, hn::Zero(d)), hn::Le(yv, hn::Set(d, 1.0f))), valid));
    hn::Vec<decltype(d)> lv, gv;
    BceVec(d, xv, yv, wv, pv, gs, lv, gv);
    acc.Add(d, hn::IfThenElseZero(valid, lv));
    (void)i;
    if (gout) hn::StoreU(gv, d, gout);
    if (lout) hn::StoreU(lv, d, lout);
  };
  const auto all = hn::FirstN(d, L);
  const auto ones = hn::Set(d, 1.0f);
  size_t i = 0;
  for (; i + L <= n; i += L) {
    const auto wv = spec.weight ? hn::LoadU(d, spec.weight + i) : ones;
    const auto pv = spec.pos_weight ? hn::LoadU(d, spec.pos_weight + i) : ones;
    step(i, hn::LoadU(d, x + i), hn::LoadU(d, y + i), wv, pv, all, g ? g + i : nullptr, l ? l + i : nullptr);
  }
  if (i < n) {
    const size_t k = n - i;
    HWY_ALIGN float xb[HWY_MAX_BYTES / 4] = {}, yb[HWY_MAX_BYTES / 4] = {}, wb[HWY_MAX_BYTES / 4] = {},
                    pb[HWY_MAX_BYTES / 4] = {}, gb[HWY_MAX_BYTES / 4], lb[HWY_MAX_BYTES / 4];
    for (size_t j = 0; j < k; ++j) {
      xb[j] = x[i + j];
      yb[j] = y[i + j];
      wb[j] = spec.weight ? spec.weight[i + j] : 1.0f;
      pb[j] = spec.pos_weight ? spec.pos_weight[i + j] : 1.0f;
    }
    step(i, hn::Load(d, xb), hn::Load(d, yb), hn::Load(d, wb), hn::Load(d, pb), hn::FirstN(d, k),
         g ? gb : nullptr, l ? lb : nullptr);
    for (size_t j = 0; j < k; ++j) {
      if (g) g[i + j] = gb[j];
      if (l) l[i + j] = lb[j];
    }
  }
  HWY_ALIGN float xs[HWY_MAX_BYTES / 4];
  hn::Store(xsum, d, xs);
  bool flag = !hn::AllFalse(d, ybad);
  for (size_t j = 0; j < L; ++j) flag |= !std::isfinite(xs[j]);
  out->loss = acc.Total();
  out->flagged = flag || !std::isfinite(out->loss);
}

}  // namespace xent::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
