// Communicator::agree — the collective error agreement of xent/communicator.h.
#include <string>

#include "xent/communicator.h"

namespace xent {

void Communicator::agree(bool ok, ErrorCode code, const std::string& message,
                         const char* fn) {
  // One max-allreduce of a single double encodes "the lowest failing rank and
  // its error code": (size − rank)·16 + code is largest for the lowest rank.
  // 0 means no failure. Exact in a double for any realistic rank count.
  const int n = size(), me = rank();
  double flag = ok ? 0.0 : double(n - me) * 16.0 + double(static_cast<int>(code));
  allreduce_max(&flag, 1);
  if (flag == 0.0) return;
  const long long packed = static_cast<long long>(flag);
  const int failed_rank = n - static_cast<int>(packed / 16);
  const auto failed_code = static_cast<ErrorCode>(packed % 16);
  if (!ok && failed_rank == me)
    throw Error(code, "rank " + std::to_string(me) + ": " + message);
  throw Error(failed_code, std::string(fn) + ": rank " + std::to_string(failed_rank) +
                               " failed (" + ErrorCodeName(failed_code) +
                               "; its own message says why); rank " + std::to_string(me) +
                               " stops too");
}

}  // namespace xent
