#include "npy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>

namespace xent::cli {

const char* NpyTypeName(NpyType t) {
  switch (t) {
    case NpyType::kF16: return "float16";
    case NpyType::kF32: return "float32";
    case NpyType::kF64: return "float64";
    case NpyType::kI32: return "int32";
    case NpyType::kI64: return "int64";
  }
  return "?";
}

std::size_t NpyTypeSize(NpyType t) {
  switch (t) {
    case NpyType::kF16: return 2;
    case NpyType::kF32: case NpyType::kI32: return 4;
    case NpyType::kF64: case NpyType::kI64: return 8;
  }
  return 0;
}

DType to_dtype(NpyType t) {
  switch (t) {
    case NpyType::kF16: return DType::kF16;
    case NpyType::kF64: return DType::kF64;
    default: return DType::kF32;
  }
}

namespace {

[[noreturn]] void bad(const std::string& name, const std::string& what) {
  throw NpyError(name + ": " + what);
}

// The header is a Python dict literal, e.g.
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }
// We parse exactly the three keys numpy writes, in any order.
struct DictParser {
  const std::string& s;
  const std::string& name;
  std::size_t i = 0;

  void ws() { while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) ++i; }
  bool eat(char c) {
    ws();
    if (i < s.size() && s[i] == c) { ++i; return true; }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) bad(name, std::string("malformed header: expected '") + c + "' at offset " + std::to_string(i));
  }
  std::string str() {
    ws();
    if (i >= s.size() || (s[i] != '\'' && s[i] != '"')) bad(name, "malformed header: expected a string");
    const char q = s[i++];
    const std::size_t e = s.find(q, i);
    if (e == std::string::npos) bad(name, "malformed header: unterminated string");
    std::string out = s.substr(i, e - i);
    i = e + 1;
    return out;
  }
  std::int64_t integer() {
    ws();
    std::int64_t v = 0;
    const std::size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (v > (std::numeric_limits<std::int64_t>::max() - 9) / 10) bad(name, "shape entry too large");
      v = v * 10 + (s[i++] - '0');
    }
    if (i == start) bad(name, "malformed header: expected a non-negative integer in 'shape'");
    if (i < s.size() && s[i] == 'L') ++i;  // Python 2 long suffix
    return v;
  }
};

}  // namespace

NpyHeader parse_npy_header(const unsigned char* b, std::size_t size, std::size_t file_size,
                           const std::string& name) {
  static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(b, magic, 6) != 0) bad(name, "not a .npy file (bad magic)");
  const int major = b[6];
  std::size_t header_len, prefix;
  if (major == 1) {
    header_len = b[8] | (std::size_t(b[9]) << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) bad(name, "truncated header");
    header_len = b[8] | (std::size_t(b[9]) << 8) | (std::size_t(b[10]) << 16) | (std::size_t(b[11]) << 24);
    prefix = 12;
  } else {
    bad(name, "unsupported .npy format version " + std::to_string(major));
  }
  if (prefix + header_len > size) bad(name, "truncated header (" + std::to_string(header_len) + " bytes announced)");
  const std::string h(reinterpret_cast<const char*>(b + prefix), header_len);

  DictParser p{h, name};
  std::string descr;
  bool have_descr = false, have_order = false, have_shape = false, fortran = false;
  std::vector<std::int64_t> shape;
  p.expect('{');
  while (!p.eat('}')) {
    const std::string key = p.str();
    p.expect(':');
    if (key == "descr") {
      descr = p.str();
      have_descr = true;
    } else if (key == "fortran_order") {
      p.ws();
      if (h.compare(p.i, 4, "True") == 0) { fortran = true; p.i += 4; }
      else if (h.compare(p.i, 5, "False") == 0) { fortran = false; p.i += 5; }
      else bad(name, "malformed header: fortran_order must be True or False");
      have_order = true;
    } else if (key == "shape") {
      p.expect('(');
      while (!p.eat(')')) {
        shape.push_back(p.integer());
        if (!p.eat(',')) { p.expect(')'); break; }
      }
      have_shape = true;
    } else {
      bad(name, "malformed header: unexpected key '" + key + "'");
    }
    if (!p.eat(',')) { p.expect('}'); break; }
  }
  if (!have_descr || !have_order || !have_shape)
    bad(name, "malformed header: needs 'descr', 'fortran_order' and 'shape'");

  NpyHeader out;
  if (descr == "<f2") out.type = NpyType::kF16;
  else if (descr == "<f4") out.type = NpyType::kF32;
  else if (descr == "<f8") out.type = NpyType::kF64;
  else if (descr == "<i4") out.type = NpyType::kI32;
  else if (descr == "<i8") out.type = NpyType::kI64;
  else if (!descr.empty() && descr[0] == '>')
    bad(name, "big-endian data ('" + descr + "') is not supported; save it little-endian (arr.astype('<" + descr.substr(1) + "'))");
  else
    bad(name, "unsupported dtype '" + descr + "' (expected float16/32/64 or int32/int64)");
  if (shape.empty() || shape.size() > 2)
    bad(name, "expected a 1-D or 2-D array, got " + std::to_string(shape.size()) + " dimensions");
  if (fortran && shape.size() == 2 && shape[0] > 1 && shape[1] > 1)
    bad(name, "Fortran-order arrays are not supported; save with np.ascontiguousarray");
  out.shape = shape;
  out.data_offset = prefix + header_len;

  // Check the data fits in the file, without overflow.
  std::size_t count = 1;
  for (auto d : shape) {
    if (d != 0 && count > std::numeric_limits<std::size_t>::max() / static_cast<std::size_t>(d))
      bad(name, "shape too large");
    count *= static_cast<std::size_t>(d);
  }
  const std::size_t elem = NpyTypeSize(out.type);
  if (count > (std::numeric_limits<std::size_t>::max() - out.data_offset) / elem) bad(name, "shape too large");
  const std::size_t need = count * elem;
  if (out.data_offset + need > file_size) {
    std::string dims;
    for (std::size_t k = 0; k < shape.size(); ++k) dims += (k ? "x" : "") + std::to_string(shape[k]);
    bad(name, "truncated: header says " + dims + " " + NpyTypeName(out.type) + " = " +
                  std::to_string(need) + " bytes of data, the file has " +
                  std::to_string(file_size - std::min(file_size, out.data_offset)));
  }
  return out;
}

NpyFile::NpyFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) bad(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    bad(path, "not a regular file");
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ == 0) {
    ::close(fd);
    bad(path, "empty file");
  }
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) bad(path, std::string("cannot map: ") + std::strerror(errno));
  base_ = static_cast<const unsigned char*>(m);
  ::madvise(m, size_, MADV_SEQUENTIAL);
  try {
    header_ = parse_npy_header(base_, size_, size_, path);
  } catch (...) {
    ::munmap(const_cast<unsigned char*>(base_), size_);
    throw;
  }
  first_ = base_ + header_.data_offset;
}

NpyFile::NpyFile(const std::string& path, std::int64_t row_begin, std::int64_t row_end)
    : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) bad(path, std::string("cannot open: ") + std::strerror(errno));
  // The fd is closed on every path out of here.
  struct Closer { int fd; ~Closer() { ::close(fd); } } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) bad(path, "not a regular file");
  const auto file_size = static_cast<std::size_t>(st.st_size);
  if (file_size == 0) bad(path, "empty file");
  // The header: the 12-byte prefix tells its length; read exactly that much
  // (or the whole file if shorter, so the parser reports the truncation).
  auto read_prefix = [&](std::size_t want) {
    std::vector<unsigned char> buf(std::min(want, file_size));
    std::size_t got = 0;
    while (got < buf.size()) {
      const ssize_t k = ::pread(fd, buf.data() + got, buf.size() - got, static_cast<off_t>(got));
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) bad(path, std::string("cannot read: ") + std::strerror(k < 0 ? errno : EIO));
      got += static_cast<std::size_t>(k);
    }
    return buf;
  };
  std::vector<unsigned char> head = read_prefix(12);
  std::size_t announced = 12;
  if (head.size() >= 10) {
    const int major = head[6];
    const std::size_t len8 = head[8] | (std::size_t(head[9]) << 8);
    announced = major == 1 ? 10 + len8
              : head.size() >= 12 ? 12 + (len8 | (std::size_t(head[10]) << 16) | (std::size_t(head[11]) << 24))
                                  : 12;
  }
  if (announced > head.size()) head = read_prefix(announced);
  header_ = parse_npy_header(head.data(), head.size(), file_size, path);

  const std::int64_t rows = header_.shape[0];
  row_begin = std::clamp<std::int64_t>(row_begin, 0, rows);
  row_end = std::clamp<std::int64_t>(row_end, row_begin, rows);
  first_row_ = row_begin;
  const std::size_t begin = header_.data_offset + static_cast<std::size_t>(row_begin) * row_bytes();
  const std::size_t end = header_.data_offset + static_cast<std::size_t>(row_end) * row_bytes();
  if (end == begin) return;  // no rows here: nothing mapped
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t start = begin / page * page;
  size_ = end - start;
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(start));
  if (m == MAP_FAILED) {
    size_ = 0;
    bad(path, std::string("cannot map: ") + std::strerror(errno));
  }
  base_ = static_cast<const unsigned char*>(m);
  ::madvise(m, size_, MADV_SEQUENTIAL);
  first_ = base_ + (begin - start);
}

NpyFile::~NpyFile() {
  if (base_) ::munmap(const_cast<unsigned char*>(base_), size_);
}

void NpyFile::release_before(std::int64_t row) const {
  if (!base_ || row <= first_row_) return;
  const std::size_t bytes = static_cast<std::size_t>(first_ - base_) +
                            static_cast<std::size_t>(row - first_row_) * row_bytes();
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t len = bytes / page * page;
  if (len) ::madvise(const_cast<unsigned char*>(base_), len, MADV_DONTNEED);
}

void write_npy(const std::string& path, NpyType type, const std::vector<std::int64_t>& shape,
               const void* data) {
  const char* descr = type == NpyType::kF16 ? "<f2" : type == NpyType::kF32 ? "<f4"
                    : type == NpyType::kF64 ? "<f8" : type == NpyType::kI32 ? "<i4" : "<i8";
  std::string dims;
  std::size_t count = 1;
  for (auto d : shape) {
    dims += std::to_string(d) + ",";
    count *= static_cast<std::size_t>(d);
  }
  if (shape.size() > 1) dims.pop_back();
  std::string h = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Pad so the data starts on a 64-byte boundary, header ends with '\n'.
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) throw NpyError(path + ": cannot write");
  const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                 static_cast<unsigned char>(h.size() & 0xff),
                                 static_cast<unsigned char>(h.size() >> 8)};
  f.write(reinterpret_cast<const char*>(pre), 10);
  f.write(h.data(), static_cast<std::streamsize>(h.size()));
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(count * NpyTypeSize(type)));
  if (!f) throw NpyError(path + ": write failed");
}

}  // namespace xent::cli
