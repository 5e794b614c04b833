// The few BLAS entry points libxent uses, declared here rather than through
// <cblas.h>: Debian ships several cblas.h variants (netlib, OpenBLAS pthread,
// OpenBLAS OpenMP) behind alternatives, and we link the OpenMP OpenBLAS by
// path (see CMakeLists.txt and shared/deps.md "Which OpenBLAS gets loaded").
// The prototypes are the standard CBLAS ones; blasint is int (LP64 build).
#pragma once

#include <omp.h>

#include <cstdint>

extern "C" {
enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE transa,
                 enum CBLAS_TRANSPOSE transb, int m, int n, int k, float alpha,
                 const float* a, int lda, const float* b, int ldb, float beta, float* c,
                 int ldc);
}

namespace xent::blas {

// Below this many flops a product runs on one thread (~0.3 ms of work).
inline constexpr double kSerialFlops = 32e6;

// Row-major C[m×n] = alpha·op(A)·op(B) + beta·C. Never call from inside an
// OpenMP parallel region of ours: OpenBLAS runs its own threads.
inline void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                  float alpha, const float* a, std::int64_t lda, const float* b,
                  std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  // OpenBLAS's OpenMP build takes its thread count from omp_get_max_threads()
  // at each call. Small products run on one thread: their fork/join costs
  // more than it saves, and on a busy machine a descheduled worker turns
  // every join into a wait of a scheduler time slice (measured: 13 ms per
  // call at load 7 on 2 cores, docs/performance.md).
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const int saved = omp_get_max_threads();
  const bool serial = flops < kSerialFlops && saved > 1;
  if (serial) omp_set_num_threads(1);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
              beta, c, static_cast<int>(ldc));
  if (serial) omp_set_num_threads(saved);
}

}  // namespace xent::blas
