// libFuzzer target for the .npy header parser (cli/npy.cc): any bytes must give
// either a header whose data fits in the buffer, or an NpyError — never a
// crash, a hang or an out-of-bounds read (built with ASan+UBSan).
//
// Built two ways (tests/CMakeLists.txt): with clang's -fsanitize=fuzzer when
// XENT_FUZZ=ON, and always as `npy_fuzz_replay`, a plain main() that replays
// the committed corpus (tests/fuzz/corpus/npy) under CTest.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "npy.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto h = xent::cli::parse_npy_header(data, size, size, "fuzz.npy");
    std::size_t count = 1;
    for (auto d : h.shape) count *= static_cast<std::size_t>(d);
    const std::size_t bytes = count * xent::cli::NpyTypeSize(h.type);
    if (h.data_offset > size || bytes > size - h.data_offset) std::abort();  // must have been rejected
    // Touch the first and last byte of the data, as a reader would.
    volatile std::uint8_t sink = 0;
    if (bytes) sink = data[h.data_offset] ^ data[h.data_offset + bytes - 1];
    (void)sink;
  } catch (const xent::cli::NpyError&) {
  }
  return 0;
}
