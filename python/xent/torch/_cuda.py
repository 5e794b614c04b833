"""Device dispatch of xent.torch: CPU tensors go to xent._xent (unchanged),
CUDA tensors to xent._xent_cuda (the CUDA backend, include/xent/cuda.h),
through raw device pointers (tensor.data_ptr()) and the current stream
(torch.cuda.current_stream().cuda_stream), so kernels are ordered with the
caller's torch work. _xent_cuda needs no torch headers; it is built when the
build found nvcc and Python (cuda/CMakeLists.txt).

What differs on the GPU (docs/cuda.md): float64 logits are refused
(TypeError; use float32), the double-softmax guard is skipped (it would read
device memory from the host), the gradient has the logits' dtype, and
kl_div stays CPU-only.
"""

from __future__ import annotations

import torch

_module = None


def module(name):
    """xent._xent_cuda, or a clear error when this build has none."""
    global _module
    if _module is None:
        try:
            from .. import _xent_cuda
        except ImportError as e:
            raise RuntimeError(
                f"{name}: got CUDA tensors, but this xent was built without its CUDA "
                f"backend (xent._xent_cuda could not be imported: {e}). Rebuild with nvcc "
                "available (-DXENT_BUILD_CUDA=ON) and -DXENT_BUILD_PYTHON=ON, or move the "
                "tensors to the CPU.") from None
        _module = _xent_cuda
    return _module


def on_cuda(name, **tensors):
    """False for CPU tensors, True for CUDA tensors (all on one device, and the
    backend importable). Other devices: NotImplementedError (as before CUDA
    support); a CPU/CUDA mix or two GPUs: ValueError."""
    devices = {arg: t.device for arg, t in tensors.items() if t is not None}
    kinds = {d.type for d in devices.values()}
    if kinds <= {"cpu"}:
        return False
    where = ", ".join(f"{arg} on {d}" for arg, d in devices.items())
    if not kinds <= {"cpu", "cuda"}:
        raise NotImplementedError(
            f"{name}: xent.torch supports CPU and CUDA tensors (got {where}); move them "
            "with .cpu() or .cuda(), or use torch's own loss")
    if kinds != {"cuda"} or len(set(devices.values())) > 1:
        raise ValueError(f"{name}: all tensors must be on the CPU or all on one CUDA device "
                         f"(got {where})")
    module(name)
    return True


def stream(device):
    """The current stream of `device`, as the integer handle the kernels take."""
    return torch.cuda.current_stream(device).cuda_stream


def call(device, fname, *args):
    """_xent_cuda.<fname>(*args, stream) on `device` (made current for the call)."""
    with torch.cuda.device(device):
        return getattr(module(fname), fname)(*args, stream(device))
