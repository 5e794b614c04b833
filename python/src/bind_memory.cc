// Memory advice for fresh gradient buffers.
//
// Why: writing a freshly allocated N×V gradient costs one page fault per
// 4 KiB page, and on this kind of machine that first touch costs more than
// the kernel itself (~600 ms for 0.5 GB under load, against ~130 ms with
// 2 MiB pages). NumPy already asks for transparent huge pages on large
// arrays; torch's CPU allocator does not, so xent.torch asks for them on
// the buffers it allocates before the kernel first writes them. Advice
// only: where THP is disabled it is a no-op, and the result never changes.
#include <pybind11/pybind11.h>
#include <sys/mman.h>

#include <cstdint>

#include "views.h"

namespace xent::py {
namespace {

constexpr std::uintptr_t kHugePage = std::uintptr_t(1) << 21;

// madvise(MADV_HUGEPAGE) on the 2 MiB-aligned pages inside [addr, addr+n).
// Returns whether advice was given (false: too small, or refused).
bool advise_hugepages(std::uintptr_t addr, std::uintptr_t nbytes) {
#ifdef MADV_HUGEPAGE
  const std::uintptr_t begin = (addr + kHugePage - 1) & ~(kHugePage - 1);
  const std::uintptr_t end = (addr + nbytes) & ~(kHugePage - 1);
  if (end <= begin) return false;
  return madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE) == 0;
#else
  (void)addr;
  (void)nbytes;
  return false;
#endif
}

}  // namespace

void bind_memory(pybind11::module_& m) {
  m.def("advise_hugepages", &advise_hugepages, pybind11::arg("addr"), pybind11::arg("nbytes"));
}

}  // namespace xent::py
