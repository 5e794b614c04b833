// The few BLAS entry points libxent uses, declared here rather than through
// <cblas.h>: Debian ships several cblas.h variants (netlib, OpenBLAS pthread,
// OpenBLAS OpenMP) behind alternatives, and we link the OpenMP OpenBLAS by
// path (see CMakeLists.txt and shared/deps.md "Which OpenBLAS gets loaded").
// The prototypes are the standard CBLAS ones; blasint is int (LP64 build).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

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

// Below kSerialFlops, products of at least this many flops are split into
// one single-threaded product per thread of our own (see sgemm).
inline constexpr double kSplitFlops = 1e6;

// Whether idle OpenMP threads spin before they sleep (libgomp's default):
// only then is a parallel region per small product cheap. Under
// OMP_WAIT_POLICY=passive (or GOMP_SPINCOUNT=0) every region pays a wake-up
// of the other threads (measured at 512×256×1000: vocab-tiled 13.3 ms with
// one thread per product, 32.8 ms split, where the default policy gives 7.9).
inline bool threads_spin() {
  static const bool spin = [] {
    const char* p = std::getenv("OMP_WAIT_POLICY");
    const char* c = std::getenv("GOMP_SPINCOUNT");
    const bool passive = p && (std::strcmp(p, "passive") == 0 || std::strcmp(p, "PASSIVE") == 0);
    return !passive && !(c && std::strcmp(c, "0") == 0);
  }();
  return spin;
}

inline void sgemm_call(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                       float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                       float beta, float* c, std::int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda),
              b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

// Row-major C[m×n] = alpha·op(A)·op(B) + beta·C. Never call from inside an
// OpenMP parallel region of ours: OpenBLAS runs its own threads.
inline void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                  float alpha, const float* a, std::int64_t lda, const float* b,
                  std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  const int threads = omp_get_max_threads();
  const double work = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  if (threads > 1 && work >= kSplitFlops && work < kSerialFlops && !omp_in_parallel() &&
      std::max(m, n) >= 32 * threads && threads_spin()) {
    // Too small for OpenBLAS's own threads (see below), big enough to share:
    // C is cut into `threads` blocks of whole rows or columns (the longer
    // side), each a single-threaded product on one of our threads (the
    // OpenMP OpenBLAS takes its thread count from omp_get_max_threads() of
    // the calling thread, set to 1 here). Every element is still one dot
    // product over all of k. The token-chunked linear cross-entropy at
    // 512×256×1000 makes 192 such products of 4 Mflop each, which ran on one
    // core: 14.0 → 8.2 ms forward+backward (vocab-tiled 13.2 → 7.8 ms).
#pragma omp parallel num_threads(threads)
    {
      omp_set_num_threads(1);
      const std::int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      if (n >= m) {
        const std::int64_t j0 = n * t / nt, j1 = n * (t + 1) / nt;
        if (j1 > j0)
          sgemm_call(trans_a, trans_b, m, j1 - j0, k, alpha, a, lda, trans_b ? b + j0 * ldb : b + j0, ldb, beta,
                     c + j0, ldc);
      } else {
        const std::int64_t i0 = m * t / nt, i1 = m * (t + 1) / nt;
        if (i1 > i0)
          sgemm_call(trans_a, trans_b, i1 - i0, n, k, alpha, trans_a ? a + i0 : a + i0 * lda, lda, b, ldb, beta,
                     c + i0 * ldc, ldc);
      }
    }
    return;
  }
  // OpenBLAS's OpenMP build takes its thread count from omp_get_max_threads()
  // at each call. Small products run on one thread: their fork/join costs
  // more than it saves, and on a busy machine a descheduled worker turns
  // every join into a wait of a scheduler time slice (measured: 13 ms per
  // call at load 7 on 2 cores, docs/performance.md).
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const int saved = omp_get_max_threads();
  const bool serial = flops < kSerialFlops && saved > 1;
  if (serial) omp_set_num_threads(1);
  sgemm_call(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (serial) omp_set_num_threads(saved);
}

}  // namespace xent::blas
