// Shared helpers of the xent tests: the accuracy bars, comparison against the
// long-double reference (with a per-function record of the worst error seen,
// printed at the end of every test binary), seeded random rows, and a checker
// for xent::Error codes and messages.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "reference/reference.h"
#include "xent/core.h"
#include "xent/error.h"

namespace xent_test {

using LD = long double;
using RefRow = xent::reference::Row;
constexpr LD kLn2L = 0.693147180559945309417232121458176568L;

// ------------------------------------------------------------ accuracy bars --
// A result passes when |got − ref| ≤ max(rel·|ref|, abs).
//   float32: 5e-7 relative or 1e-7 absolute (issue 3, "4 ulp-equivalent").
//   float64: 1e-13 relative or 1e-15 absolute. Every float64 path accumulates
//            in double with compensated sums, so a handful of roundings of
//            ~1.1e-16 each is what remains; 1e-13 leaves room for the
//            exp(z − m) of a rounded (z − m) with |z − m| up to ~700, whose
//            relative error is |z − m|·1.1e-16 ≈ 8e-14.
struct Tol {
  double rel;
  double abs;
};

template <class T>
constexpr Tol bar() {
  if constexpr (std::is_same_v<T, float>)
    return {5e-7, 1e-7};
  else
    return {1e-13, 1e-15};
}

// Relative only (down to T's subnormal spacing): for results that must keep
// their digits however small they are (a probability of 1e-40, a KL of 1e-18).
template <class T>
constexpr Tol strict_rel() {
  return {bar<T>().rel, static_cast<double>(std::numeric_limits<T>::denorm_min())};
}

template <class T>
const char* type_name() {
  return std::is_same_v<T, float> ? "float32" : "float64";
}

// ------------------------------------------------------ worst-error record --
struct Stat {
  double max_rel = 0;    // worst |d|/|ref| where the relative bar applies
  double max_abs = 0;    // worst |d| where the absolute bar applies
  double max_ratio = 0;  // worst |d| / bound (≤ 1 means within the bar)
  long count = 0;        // values compared
};

inline std::map<std::string, Stat>& stats() {
  static std::map<std::string, Stat> table;
  return table;
}

inline void record(Stat& s, LD diff, LD ref, Tol tol) {
  ++s.count;
  const LD rel_bound = tol.rel * std::fabs(ref);
  const LD bound = std::max<LD>(rel_bound, tol.abs);
  if (rel_bound >= tol.abs && ref != 0)
    s.max_rel = std::max<double>(s.max_rel, static_cast<double>(diff / std::fabs(ref)));
  else
    s.max_abs = std::max<double>(s.max_abs, static_cast<double>(diff));
  if (bound > 0) s.max_ratio = std::max<double>(s.max_ratio, static_cast<double>(diff / bound));
}

// Prints the table once the binary's tests have run (one line per function
// and type, greppable by "[accuracy]").
class AccuracyReport : public ::testing::Environment {
 public:
  void TearDown() override {
    if (stats().empty()) return;
    std::printf("[accuracy] %-44s %-8s %9s %10s %10s %10s\n", "function", "type",
                "values", "max_rel", "max_abs", "err/bar");
    for (const auto& [key, s] : stats())
      std::printf("[accuracy] %-53s %9ld %10.3g %10.3g %10.3g\n", key.c_str(), s.count,
                  s.max_rel, s.max_abs, s.max_ratio);
  }
};

inline ::testing::Environment* const kAccuracyReport =
    ::testing::AddGlobalTestEnvironment(new AccuracyReport);

inline std::string key_of(const std::string& fn, const char* type) {
  std::string k = fn;
  k.resize(std::max<std::size_t>(k.size(), 44), ' ');
  return k + " " + type;
}

inline std::string fmt(LD v) {
  std::ostringstream os;
  os.precision(21);
  os << v;
  return os.str();
}

// got (a T result of libxent) against ref (the long-double reference).
// A reference that rounds to ±inf in T (overflow) or is ±inf must be matched
// exactly; NaN is never a valid result.
template <class T>
::testing::AssertionResult near_ref_into(Stat& stat, const std::string& fn, T got, LD ref,
                                         Tol tol) {
  if (std::isnan(ref)) return ::testing::AssertionFailure() << fn << ": reference is NaN";
  if (std::isnan(got))
    return ::testing::AssertionFailure() << fn << ": got NaN, reference " << fmt(ref);
  const T ref_t = static_cast<T>(ref);
  if (std::isinf(ref_t) || std::isinf(got)) {
    if (got == ref_t) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << fn << " (" << type_name<T>() << "): got " << fmt(got) << ", reference "
           << fmt(ref) << " (" << fmt(ref_t) << " in " << type_name<T>() << ")";
  }
  const LD diff = std::fabs(static_cast<LD>(got) - ref);
  record(stat, diff, ref, tol);
  const LD bound = std::max<LD>(tol.rel * std::fabs(ref), tol.abs);
  if (diff <= bound) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << fn << " (" << type_name<T>() << "): got " << fmt(got) << ", reference "
         << fmt(ref) << ", |diff| " << fmt(diff) << " > bound " << fmt(bound)
         << " (rel " << fmt(diff / std::fabs(ref)) << ")";
}

template <class T>
::testing::AssertionResult near_ref(const std::string& fn, T got, LD ref,
                                    Tol tol = bar<T>()) {
  return near_ref_into<T>(stats()[key_of(fn, type_name<T>())], fn, got, ref, tol);
}

// Element-wise; reports the first element out of the bar.
template <class T>
::testing::AssertionResult near_ref(const std::string& fn, std::span<const T> got,
                                    const RefRow& ref, Tol tol = bar<T>()) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << fn << ": size " << got.size() << " vs reference "
                                         << ref.size();
  Stat& stat = stats()[key_of(fn, type_name<T>())];
  for (std::size_t i = 0; i < got.size(); ++i) {
    auto r = near_ref_into<T>(stat, fn, got[i], ref[i], tol);
    if (!r) return r << " at index " << i << " of K = " << got.size();
  }
  return ::testing::AssertionSuccess();
}

template <class T>
::testing::AssertionResult near_ref(const std::string& fn, const std::vector<T>& got,
                                    const RefRow& ref, Tol tol = bar<T>()) {
  return near_ref<T>(fn, std::span<const T>(got), ref, tol);
}

// ------------------------------------------------------------ random rows --
template <class T>
RefRow to_ref(const std::vector<T>& v) {
  return RefRow(v.begin(), v.end());
}

// The KL that libxent defines: Σ [p log(p/q) − p + q] (≥ 0, = 0 iff p = q;
// see core.cc), from the reference's literal Σ p log(p/q). They differ by
// Σp − Σq: zero for exact distributions, a rounding residual (≤ ~1e-7 in
// float32) for the rounded ones the tests build.
inline LD kl_expected(const RefRow& p, const RefRow& q) {
  const LD literal = xent::reference::kl_divergence(p, q);
  if (std::isinf(literal)) return literal;
  LD mass_diff = 0;
  for (std::size_t i = 0; i < p.size(); ++i) mass_diff += p[i] - q[i];
  return literal - mass_diff;
}

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : gen_(seed) {}
  double normal() { return std::normal_distribution<double>(0.0, 1.0)(gen_); }
  double uniform(double a = 0, double b = 1) {
    return std::uniform_real_distribution<double>(a, b)(gen_);
  }
  std::size_t index(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(gen_);
  }
  bool chance(double p) { return uniform() < p; }
  std::mt19937_64& engine() { return gen_; }

 private:
  std::mt19937_64 gen_;
};

inline constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Logits ~ scale·N(0, 1) + offset, each masked to -inf with probability
// mask_prob (never all of them).
template <class T>
std::vector<T> random_logits(Rng& rng, std::size_t k, double scale, double offset = 0,
                             double mask_prob = 0) {
  std::vector<T> z(k);
  for (auto& v : z)
    v = rng.chance(mask_prob) ? static_cast<T>(kNegInf)
                              : static_cast<T>(offset + scale * rng.normal());
  if (std::all_of(z.begin(), z.end(), [](T v) { return std::isinf(v); }))
    z[rng.index(k)] = static_cast<T>(offset);
  return z;
}

// Rounds long-double weights (≥ 0, not all 0) to a distribution in T whose
// sum is 1 within one rounding: the rounding residual goes to the largest
// entry, so every such vector is valid input for libxent.
template <class T>
std::vector<T> normalize(const std::vector<LD>& w) {
  LD s = 0;
  for (LD v : w) s += v;
  std::vector<T> p(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) p[i] = static_cast<T>(w[i] / s);
  LD t = 0;
  for (T v : p) t += v;
  const auto big = static_cast<std::size_t>(std::max_element(p.begin(), p.end()) - p.begin());
  p[big] = static_cast<T>(p[big] + (1 - t));
  return p;
}

// A random distribution: log-normal weights of spread `peak` (0: near
// uniform, 5+: a few classes hold nearly all the mass), each entry zero with
// probability zero_prob (never all).
template <class T>
std::vector<T> random_distribution(Rng& rng, std::size_t k, double peak = 1,
                                   double zero_prob = 0) {
  std::vector<LD> w(k);
  bool any = false;
  for (auto& v : w) {
    v = rng.chance(zero_prob) ? 0 : std::exp(static_cast<LD>(peak * rng.normal()));
    any = any || v > 0;
  }
  if (!any) w[rng.index(k)] = 1;
  return normalize<T>(w);
}

template <class T>
std::vector<T> one_hot(std::size_t k, std::size_t t) {
  std::vector<T> p(k, T(0));
  p[t] = T(1);
  return p;
}

// ----------------------------------------------------------------- errors --
// Runs f, which must throw xent::Error with `code` and a message containing
// every string in `parts` (function name, argument, index, value).
template <class F>
::testing::AssertionResult throws_error(F&& f, xent::ErrorCode code,
                                        std::vector<std::string> parts = {}) {
  try {
    f();
  } catch (const xent::Error& e) {
    const std::string msg = e.what();
    if (e.code() != code)
      return ::testing::AssertionFailure()
             << "code " << xent::ErrorCodeName(e.code()) << ", expected "
             << xent::ErrorCodeName(code) << " (message: " << msg << ")";
    for (const auto& part : parts)
      if (msg.find(part) == std::string::npos)
        return ::testing::AssertionFailure()
               << "message \"" << msg << "\" does not contain \"" << part << "\"";
    return ::testing::AssertionSuccess() << msg;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-xent exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw " << xent::ErrorCodeName(code);
}

// Both row types, for TYPED_TEST.
using RowTypes = ::testing::Types<float, double>;

}  // namespace xent_test
