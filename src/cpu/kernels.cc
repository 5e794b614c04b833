// The one translation unit compiled for every SIMD target (Highway
// foreach_target): each target's copy of cross_entropy-inl.h, and the plain
// entry points of kernels.h that pick the best copy for this CPU at run time.
#include "cpu/kernels.h"

#include <atomic>

// Sanitized builds (XENT_SANITIZE) compile fewer targets: CMakeLists.txt
// sets HWY_DISABLED_TARGETS for this file.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/kernels.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "cpu/cross_entropy-inl.h"
#include "cpu/bce-inl.h"
#include "cpu/small_rows-inl.h"
#include "cpu/targets-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu::HWY_NAMESPACE {

void StatsF32(const float* z, size_t n, const CoefSpec& spec, ChunkStats* out) {
  ChunkStatsT<float>(z, n, spec, out);
}
void StatsF64(const double* z, size_t n, const CoefSpec& spec, ChunkStats* out) {
  ChunkStatsT<double>(z, n, spec, out);
}
void Stats2F32(const float* z0, const float* z1, size_t n, const CoefSpec& s0, const CoefSpec& s1, ChunkStats* o0,
               ChunkStats* o1) {
  ChunkStats2T<float>(z0, z1, n, s0, s1, o0, o1);
}
double MaxF32(const float* z, size_t n) { return ChunkMaxT<float>(z, n); }
double MaxF64(const double* z, size_t n) { return ChunkMaxT<double>(z, n); }
void GradF32(const float* z, size_t n, float* g, const GradSpec& spec) {
  ChunkGradT<float>(z, n, g, spec);
}
void GradF64(const double* z, size_t n, double* g, const GradSpec& spec) {
  ChunkGradT<double>(z, n, g, spec);
}
void BceRow(const float* x, const float* y, size_t n, const BceRowSpec& spec, BceRowStats* out) {
  BceRowImpl(x, y, n, spec, out);
}
void ExpRow(const float* x, float* y, size_t n) { ExpRowT<float>(x, y, n); }
void TileLog1pRow(const double* x, double* y, size_t n) { TileLog1pRowImpl(x, y, n); }
TargetScan ScanTargets64(const int64_t* t, size_t n, int64_t V, int64_t ignore) {
  return ScanTargetsT<int64_t>(t, n, V, ignore);
}
TargetScan ScanTargets32(const int32_t* t, size_t n, int64_t V, int64_t ignore) {
  return ScanTargetsT<int32_t>(t, n, V, ignore);
}
bool SmallRows(const SmallRowsSpec& sp, size_t r0, size_t r1, SmallRowsResult* out) {
  return SmallRowsImpl(sp, r0, r1, out);
}
const char* TargetName() { return hwy::TargetName(HWY_TARGET); }
bool RecomputingExpsPays() { return HWY_TARGET <= HWY_AVX3; }
bool PairingRowsPays() { return HWY_TARGET <= HWY_AVX3; }
size_t ShortRowFetchRows(bool with_grad) { return HWY_TARGET <= HWY_AVX3 ? (with_grad ? 2 : 3) : 1; }

}  // namespace xent::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent::cpu {

HWY_EXPORT(StatsF32);
HWY_EXPORT(StatsF64);
HWY_EXPORT(Stats2F32);
HWY_EXPORT(MaxF32);
HWY_EXPORT(MaxF64);
HWY_EXPORT(GradF32);
HWY_EXPORT(GradF64);
HWY_EXPORT(TargetName);
HWY_EXPORT(RecomputingExpsPays);
HWY_EXPORT(PairingRowsPays);
HWY_EXPORT(ShortRowFetchRows);
HWY_EXPORT(BceRow);
HWY_EXPORT(ExpRow);
HWY_EXPORT(TileLog1pRow);
HWY_EXPORT(ScanTargets64);
HWY_EXPORT(ScanTargets32);
HWY_EXPORT(SmallRows);

bool SmallRowsF32(const SmallRowsSpec& spec, std::size_t r0, std::size_t r1, SmallRowsResult* out) {
  return HWY_DYNAMIC_DISPATCH(SmallRows)(spec, r0, r1, out);
}

void ExpRowF32(const float* x, float* y, std::size_t n) { HWY_DYNAMIC_DISPATCH(ExpRow)(x, y, n); }
void TileLog1pF64(const double* x, double* y, std::size_t n) { HWY_DYNAMIC_DISPATCH(TileLog1pRow)(x, y, n); }
TargetScan ScanTargets(const std::int64_t* t, std::size_t n, std::int64_t V, std::int64_t ignore_index) {
  return HWY_DYNAMIC_DISPATCH(ScanTargets64)(t, n, V, ignore_index);
}
TargetScan ScanTargets(const std::int32_t* t, std::size_t n, std::int64_t V, std::int64_t ignore_index) {
  return HWY_DYNAMIC_DISPATCH(ScanTargets32)(t, n, V, ignore_index);
}

void BceRowF32(const float* x, const float* y, std::size_t n, const BceRowSpec& spec, BceRowStats* out) {
  HWY_DYNAMIC_DISPATCH(BceRow)(x, y, n, spec, out);
}

void ChunkStatsF32(const float* z, std::size_t n, const CoefSpec& spec, ChunkStats* out) {
  HWY_DYNAMIC_DISPATCH(StatsF32)(z, n, spec, out);
}
void ChunkStatsF64(const double* z, std::size_t n, const CoefSpec& spec, ChunkStats* out) {
  HWY_DYNAMIC_DISPATCH(StatsF64)(z, n, spec, out);
}
void ChunkStats2F32(const float* z0, const float* z1, std::size_t n, const CoefSpec& spec0, const CoefSpec& spec1,
                    ChunkStats* out0, ChunkStats* out1) {
  HWY_DYNAMIC_DISPATCH(Stats2F32)(z0, z1, n, spec0, spec1, out0, out1);
}
double ChunkMaxF32(const float* z, std::size_t n) { return HWY_DYNAMIC_DISPATCH(MaxF32)(z, n); }
double ChunkMaxF64(const double* z, std::size_t n) { return HWY_DYNAMIC_DISPATCH(MaxF64)(z, n); }
void ChunkGradF32(const float* z, std::size_t n, float* g, const GradSpec& spec) {
  HWY_DYNAMIC_DISPATCH(GradF32)(z, n, g, spec);
}
void ChunkGradF64(const double* z, std::size_t n, double* g, const GradSpec& spec) {
  HWY_DYNAMIC_DISPATCH(GradF64)(z, n, g, spec);
}
void StreamFence() { hwy::FlushStream(); }
const char* KernelTargetName() { return HWY_DYNAMIC_DISPATCH(TargetName)(); }
namespace {
std::atomic<int> recomputing_exps_for_test{-1};
std::atomic<int> pairing_rows_for_test{-1};
}  // namespace
bool RecomputingExpsPays() {
  const int mode = recomputing_exps_for_test.load(std::memory_order_relaxed);
  return mode >= 0 ? mode == 1 : HWY_DYNAMIC_DISPATCH(RecomputingExpsPays)();
}
std::size_t ShortRowFetchRows(bool with_grad) { return HWY_DYNAMIC_DISPATCH(ShortRowFetchRows)(with_grad); }
void SetRecomputingExpsForTest(int mode) { recomputing_exps_for_test.store(mode, std::memory_order_relaxed); }
bool PairingRowsPays() {
  const int mode = pairing_rows_for_test.load(std::memory_order_relaxed);
  return mode >= 0 ? mode == 1 : HWY_DYNAMIC_DISPATCH(PairingRowsPays)();
}
void SetPairingRowsForTest(int mode) { pairing_rows_for_test.store(mode, std::memory_order_relaxed); }

}  // namespace xent::cpu
#endif  // HWY_ONCE
