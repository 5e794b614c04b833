// A reader for NumPy .npy files (format versions 1, 2 and 3), memory-mapped
// so a file larger than RAM can be streamed. Little-endian float16/32/64 and
// int32/int64 arrays of one or two dimensions, C order.
//
// Every problem is an NpyError whose message names the file and the problem
// (bad magic, unsupported dtype, Fortran order, header syntax, a shape that
// does not fit the file: "truncated: header says 3×5 float32 = 60 bytes of
// data, the file has 40").
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "xent/loss.h"

namespace xent::cli {

class NpyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class NpyType { kF16, kF32, kF64, kI32, kI64 };
const char* NpyTypeName(NpyType t);
std::size_t NpyTypeSize(NpyType t);

struct NpyHeader {
  NpyType type = NpyType::kF32;
  std::vector<std::int64_t> shape;  // 1 or 2 dims (0-d is rejected)
  std::size_t data_offset = 0;      // bytes from the start of the file
};

// Parses the header from the first bytes of a file (`size` bytes available,
// `file_size` the whole file). Throws NpyError naming `name`.
NpyHeader parse_npy_header(const unsigned char* bytes, std::size_t size,
                           std::size_t file_size, const std::string& name);

// A read-only memory map of a whole .npy file.
class NpyFile {
 public:
  explicit NpyFile(const std::string& path);
  // Maps only the bytes of rows [row_begin, row_end) (clamped to the array),
  // for a process that evaluates one slice of the rows (`mpirun xent eval`):
  // the header is read with pread, so no rank touches another rank's pages.
  // An empty range maps nothing. Errors as above.
  NpyFile(const std::string& path, std::int64_t row_begin, std::int64_t row_end);
  ~NpyFile();
  NpyFile(const NpyFile&) = delete;
  NpyFile& operator=(const NpyFile&) = delete;

  const std::string& path() const { return path_; }
  const NpyHeader& header() const { return header_; }
  std::int64_t rows() const { return header_.shape[0]; }
  std::int64_t cols() const { return header_.shape.size() > 1 ? header_.shape[1] : 1; }
  // The data of row 0 (whole-file maps only).
  const unsigned char* data() const { return base_ + header_.data_offset; }
  // The data of row r, for r in the mapped rows.
  const unsigned char* row_data(std::int64_t r) const {
    return first_ + static_cast<std::size_t>(r - first_row_) * row_bytes();
  }
  std::size_t row_bytes() const { return static_cast<std::size_t>(cols()) * NpyTypeSize(header_.type); }
  // Tells the kernel we are done with rows [first mapped row, row) so their pages can go.
  void release_before(std::int64_t row) const;

 private:
  std::string path_;
  const unsigned char* base_ = nullptr;  // the mapping (page-aligned)
  std::size_t size_ = 0;                 // its length
  const unsigned char* first_ = nullptr; // the data of row first_row_
  std::int64_t first_row_ = 0;
  NpyHeader header_;
};

// Writes a C-order array (used by tests and `xent` examples).
void write_npy(const std::string& path, NpyType type, const std::vector<std::int64_t>& shape,
               const void* data);

// The libxent dtype of a float npy type (kF16/kF32/kF64).
DType to_dtype(NpyType t);

}  // namespace xent::cli
