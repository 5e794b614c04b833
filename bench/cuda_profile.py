"""One fused cross-entropy call per (shape, dtype) on the GPU, for a profiler
(scripts/gpu_check.sh --profile runs it under Nsight Compute): 4096×32000
float32 and bfloat16, three calls each, the last one the profiled one
(ncu --launch-skip). Prints each call's time from CUDA events."""
import sys

import torch

import xent._xent as X
from xent.torch import _cuda

DT = {torch.float32: X.DType.f32, torch.bfloat16: X.DType.bf16}


def main():
    n, v = 4096, 32000
    for dtype in (torch.float32, torch.bfloat16):
        g = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn(n, v, device="cuda", generator=g).mul_(3).to(dtype)
        t = torch.randint(0, v, (n,), device="cuda", generator=g)
        grad = torch.empty_like(x)
        mod = _cuda.module("profile")
        outs = X.CrossEntropyOutputs()
        outs.grad = X.MutableMatrixView(grad.data_ptr(), DT[dtype], n, v, v)
        view = X.MatrixView(x.data_ptr(), DT[dtype], n, v, v)
        tgt = X.Targets.index_int64(t.data_ptr())
        for i in range(3):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            mod.cross_entropy_loss(view, tgt, X.CrossEntropyOptions(), outs, _cuda.stream(x.device))
            b.record()
            torch.cuda.synchronize()
            print(f"{n}x{v} {dtype}: call {i}: {a.elapsed_time(b):.3f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
