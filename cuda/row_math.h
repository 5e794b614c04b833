// The per-element and per-row math of the CUDA kernels, as XENT_HD inline
// functions: compiled into the kernels by nvcc and into a host test by g++,
// which checks them against the long-double reference (src/reference/) with
// no GPU (tests/cuda_math_test.cc). The kernels add only the memory access
// and the block reductions around these.
//
// Notation (xent/loss.h): z raw logit, z'' = (cap ? cap·tanh(z/cap) : z)/T
// the transformed logit, dd = dz''/dz, M the row max of z'', S = Σ exp(z''−M)
// (float64), lse = M + log S, q = exp(z''−M)/S. S − 1 is kept apart (the
// terms equal to 1, i.e. z'' = M, are counted, not added), so that 1 − q of a
// confident row's dominant class never comes from 1 + tiny − 1. c_j = w_j·(a·t_j + b) is the
// coefficient of class j in the loss (t the one-hot or the soft target,
// (a, b) the smoothing coefficients).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define XENT_HD __host__ __device__ __forceinline__
#else
#define XENT_HD inline
#endif

namespace xent::cuda_math {

constexpr float kInfF = __builtin_huge_valf();
constexpr double kInfD = __builtin_huge_val();

// Per-call constants shared by every row.
struct CallParams {
  std::int64_t V = 0;
  float softcap = 0.f;      // 0: off
  float inv_temp = 1.f;     // 1 / T
  double a = 1.0, b = 0.0;  // t' = a·t + b
  double w_total = 0.0;     // Σ_j w_j (V without weights)
  double gamma = 0.0;       // focal γ
  double z_loss = 0.0;
  bool transform = false;   // softcap > 0 or T ≠ 1
};

// (a, b) of the smoothed target t' = a·t + b for both conventions of
// xent/smoothing.h: uniform (1 − ε)t + ε/V, off-target (1 − ε)t + ε(1 − t)/(V − 1).
XENT_HD void smoothing_coefs(double eps, std::int64_t V, bool off_target, double* a, double* b) {
  if (!off_target) {
    *a = 1.0 - eps;
    *b = eps / static_cast<double>(V);
  } else {
    *b = V > 1 ? eps / static_cast<double>(V - 1) : 0.0;
    *a = V > 1 ? 1.0 - eps - *b : 1.0;
  }
}

// z'' and dz''/dz. tanh through expm1 would be no better in float32; the
// derivative 1 − th² is exact enough because th is bounded away from ±1
// except where the gradient is ~0 anyway.
XENT_HD float transform_logit(float x, const CallParams& p, float* dd) {
  float v = x, d = 1.f;
  if (p.softcap > 0.f) {
    const float th = tanhf(x / p.softcap);
    v = p.softcap * th;
    d = 1.f - th * th;
  }
  *dd = d * p.inv_temp;
  return v * p.inv_temp;
}

// The online (max, Σexp, Σc, Σc·(max − z)) of a set of transformed logits.
// Σexp is held as ones + rest: `ones` counts the terms exp(z − m) = 1 (z = m,
// exact), `rest` adds the others. A confident row's S = 1 + 1e-20 would be 1
// in float64, and 1 − q of its dominant class (the target's gradient) would
// come out 0; (ones − 1) + rest is that sum of the other terms as accumulated
// (the CPU's ChunkStats::ones and RowState::s_m1 do the same).
// Every term of rest and cdot is ≥ 0 relative to the running max, so the
// float64 sums keep their relative accuracy at any V (tested at 262144).
struct RowStats {
  float m = -kInfF;
  double ones = 0.0;  // how many z equal m (each adds exactly 1 to Σexp)
  double rest = 0.0;  // Σ exp(z − m) over z < m
  double csum = 0.0;  // Σ c
  double cdot = 0.0;  // Σ c·(m − z); +inf when a class with c > 0 has z = -inf

  XENT_HD double sum() const { return ones + rest; }  // Σ exp(z − m)
  XENT_HD void raise(float nm) {
    // The old maximum's terms become ordinary ones, rescaled by exp(m − nm);
    // nothing to rescale when nothing was accumulated (m may be -inf). A NaN
    // in rest stays NaN.
    const double s = ones + rest;
    if (s > 0.0) rest = s * exp(static_cast<double>(m) - static_cast<double>(nm));
    ones = 0.0;
    if (csum != 0.0) cdot += csum * (static_cast<double>(nm) - static_cast<double>(m));
    m = nm;
  }
  XENT_HD void add(float z) {
    if (z > m) raise(z);
    if (z == m) {
      if (z != -kInfF) ones += 1.0;
    } else if (z != -kInfF) {
      rest += static_cast<double>(expf(z - m));  // NaN z lands here: rest NaN
    }
  }
  XENT_HD void add_coef(float z, double c) {  // after add(z): m ≥ z
    if (c > 0.0) {
      csum += c;
      // A weighted class at -inf makes the loss +inf (m may be -inf too:
      // −inf − −inf would be NaN).
      cdot += z == -kInfF ? kInfD : c * (static_cast<double>(m) - static_cast<double>(z));
    }
  }
  XENT_HD void merge(const RowStats& o) {
    if (o.m > m) raise(o.m);
    RowStats t = o;
    if (m > t.m) t.raise(m);
    ones += t.ones;
    rest += t.rest;
    csum += t.csum;
    cdot += t.cdot;
  }
};

// First index of the maximum raw logit (torch.argmax), mergeable.
struct ArgMax {
  float v = -kInfF;
  std::int64_t i = -1;
  XENT_HD void add(float x, std::int64_t j) {
    if (i < 0 || x > v || (x == v && j < i)) { v = x; i = j; }
  }
  XENT_HD void merge(const ArgMax& o) {
    if (o.i >= 0) add(o.v, o.i);
  }
};

// Per-class softmax terms: q, 1 − q without cancellation, and
// −log q = (M − z) + log S. q ≥ ½ only at the row maximum (e = 1, and every
// other term is ≤ 1), where 1 − q = (S − e)/S and S − e = (S − 1) + (1 − e)
// is taken from the separately summed S − 1 (1 − e is exact for e ∈ [½, 1],
// and 0 at the maximum): never 1 + tiny − 1. A float32 1 − q would be 0 for
// q > 1 − 2^-25, a float64 S − e for S − 1 < 2^-53.
// inv_s = 1/S: a multiply per element instead of a float64 division.
struct Terms {
  float q, omq;
  double nlogq;
};
XENT_HD Terms softmax_terms(float z, float M, double inv_s, double s_m1, double log_s) {
  Terms t;
  const float e = z == -kInfF ? 0.f : expf(z - M);
  t.q = e * static_cast<float>(inv_s);
  t.omq = t.q >= 0.5f
              ? static_cast<float>(fmax(0.0, s_m1 + (1.0 - static_cast<double>(e))) * inv_s)
              : 1.f - t.q;
  t.nlogq = (static_cast<double>(M) - static_cast<double>(z)) + log_s;
  return t;
}

// Focal factors of one class (γ > 0): f = (1 − q)^γ, and H with
// q·d/dq[−(1 − q)^γ log q] = −H, H = f·(1 + γ·q·(−log q)/(1 − q)); the
// product q·(−log q) is taken as its limit 0 at q = 0 (a -inf logit).
struct Focal {
  double f, H;
};
XENT_HD Focal focal_factors(const Terms& t, double gamma) {
  Focal r{1.0, 1.0};
  if (gamma == 0.0) return r;
  const double omq = t.omq;
  r.f = pow(omq, gamma);
  const double ratio = omq > 0.0 ? t.nlogq / omq : 1.0;
  r.H = r.f * (1.0 + gamma * (t.q > 0.f ? static_cast<double>(t.q) * ratio : 0.0));
  return r;
}

// Everything the gradient sweep needs about a row once its statistics (and,
// with focal γ, its Σ c·H) are known.
struct RowFinal {
  float M = 0.f;
  double S_m1 = 0.0;  // S − 1: the sum of the terms other than the maximum's 1
  double inv_S = 1.0, log_s = 0.0, lse = 0.0;
  double ce = 0.0, zl = 0.0;  // the row's CE term and z-loss term
  double CH = 0.0;            // Σ_c c_c·H_c (γ = 0: Σ c)
  double sce = 0.0;           // gradient multiplier of the CE part (scale·upstream)
  double zterm = 0.0;         // sz·2·z_loss·lse: multiplies q in the gradient
};

// Row status codes, shared with the host (the error word's low bits).
enum RowErr : int { kRowOk = 0, kRowNonFinite = 1, kRowAllNegInf = 2, kRowSoftBad = 3,
                    kRowSoftSum = 4, kRowTarget = 5, kRowBceNaN = 6, kRowBceTarget = 7 };

// lse and the error state from the merged statistics. nonfinite: a NaN or
// +inf raw logit was seen.
XENT_HD int finalize_stats(const RowStats& st, bool nonfinite, RowFinal* r) {
  const double S = st.sum();
  if (nonfinite || st.m == kInfF || S != S) {
    r->lse = __builtin_nan("");
    return kRowNonFinite;
  }
  if (!(S > 0.0)) {
    r->lse = -kInfD;
    return kRowAllNegInf;
  }
  // S > 0: the maximum itself is counted, ones ≥ 1.
  r->M = st.m;
  r->S_m1 = (st.ones - 1.0) + st.rest;
  r->inv_S = 1.0 / S;
  r->log_s = log1p(r->S_m1);  // log S, accurate when S − 1 is tiny
  r->lse = static_cast<double>(st.m) + r->log_s;
  return kRowOk;
}

// The CE term from the coefficient sums (γ = 0): Σ c·(−log q) = Σc·log S + Σ c·(M − z).
XENT_HD void finalize_coef_loss(const RowStats& st, RowFinal* r) {
  r->ce = st.csum * r->log_s + st.cdot;
  r->CH = st.csum;
}

// The CE term of a hard target t alone (no smoothing): c_t·f_t·(−log q_t),
// and CH = c_t·H_t. zt: the transformed target logit.
XENT_HD void finalize_hard_loss(float zt, double ct, double gamma, RowFinal* r) {
  const Terms t = softmax_terms(zt, r->M, r->inv_S, r->S_m1, r->log_s);
  const Focal f = focal_factors(t, gamma);
  r->ce = ct * f.f * t.nlogq;
  r->CH = ct * f.H;
}

// One class's contribution to the focal pass (γ > 0 with several c_j > 0):
// adds c·f·(−log q) to *loss and c·H to *ch.
XENT_HD void focal_accumulate(float z, double c, double gamma, const RowFinal& r, double* loss,
                              double* ch) {
  if (c == 0.0) return;
  const Terms t = softmax_terms(z, r.M, r.inv_S, r.S_m1, r.log_s);
  const Focal f = focal_factors(t, gamma);
  *loss += c * f.f * t.nlogq;
  *ch += c * f.H;
}

// The scale of the gradient and the z-loss term: sce = scale_ce·upstream,
// zterm = scale_z·upstream·2·c_z·lse, and the row's z-loss c_z·lse².
XENT_HD void finalize_scales(const CallParams& p, double scale_ce, double scale_z,
                             double upstream, RowFinal* r) {
  r->zl = p.z_loss * r->lse * r->lse;
  r->sce = scale_ce * upstream;
  r->zterm = scale_z * upstream * 2.0 * p.z_loss * r->lse;
}

// d(loss)/dz_j for a class with coefficient c (the target's included):
//   (sce·(q·(CH − c·H) − c·H·(1 − q)) + zterm·q)·dd
// which is sce·(q·Σc − c) + zterm·q for γ = 0, written so that the dominant
// class does not cancel (1 − q is taken from S − e).
XENT_HD float grad_entry(float z, float dd, double c, double gamma, const RowFinal& r) {
  const Terms t = softmax_terms(z, r.M, r.inv_S, r.S_m1, r.log_s);
  double cH = c;
  if (gamma != 0.0 && c != 0.0) cH = c * focal_factors(t, gamma).H;
  const double q = t.q;
  const double g = r.sce * (q * (r.CH - cH) - cH * static_cast<double>(t.omq)) + r.zterm * q;
  return static_cast<float>(g * static_cast<double>(dd));
}

// ------------------------------------------------------------------- BCE
// l = w·[lw·log1p(e^{−|x|}) + (x ≥ 0 ? (1 − y)·x : −pw·y·x)], lw = 1 + (pw − 1)·y,
// dl/dx = w·(lw·σ(x) − pw·y) = w·num/(1 + e), e = e^{−|x|},
//   num = x ≥ 0 ? (1 − y) − pw·y·e : (1 − y)·e − pw·y
// (no 1 − σ(x) cancellation; ±inf give the limits). num's two terms still
// cancel where the gradient crosses 0 (lw·σ(x) ≈ pw·y): there the rounding
// of the terms, above all expf's 1–2 ulps, is magnified by
// (|1 − y|·e' + pw·y·e'')/|num| (e', e'' the factors above) — 50× and more
// on ordinary data, i.e. float32 gradients off by 1e-6 relative and worse.
// So e and num are float64: the products of float32 operands are exact or
// rounded at 2^-53, and the gradient keeps float32 accuracy after its one
// final rounding (by the caller, after the reduction's scale). The loss
// has no cancellation (every term ≥ 0) and stays float32.
struct BceElem {
  float loss;
  double grad;  // not yet scaled by the reduction
};
XENT_HD BceElem bce_elem(float x, float y, float w, float pw) {
  if (w == 0.f) return BceElem{0.f, 0.0};  // a zero weight ignores even an infinite term
  const double e = exp(-fabs(static_cast<double>(x)));  // e^{−|x|} ∈ [0, 1]
  const float lw = 1.f + (pw - 1.f) * y;
  const float sp = log1pf(static_cast<float>(e));  // log(1 + e^{−|x|}) ∈ [0, log 2]
  float lin;
  if (x >= 0.f)
    lin = (1.f - y) == 0.f ? 0.f : (1.f - y) * x;  // 0·inf is 0 here
  else
    lin = (pw * y) == 0.f ? 0.f : -pw * y * x;
  const double yd = y, pwy = static_cast<double>(pw) * yd;  // pw·y exact in float64
  const double num = x >= 0.f ? (1.0 - yd) - pwy * e : (1.0 - yd) * e - pwy;
  BceElem r;
  r.loss = w * (lw * sp + lin);
  r.grad = static_cast<double>(w) * num / (1.0 + e);
  return r;
}

}  // namespace xent::cuda_math
