"""GPU benchmark of the CUDA backend (issue 10): prints one Markdown table.

  * the device and the device-to-device copy bandwidth, measured in the same
    run (bytes read + written per second, torch's Tensor.copy_ of 1 GiB);
  * fused cross-entropy forward + backward on 4096×32000, 8192×50257 and
    2048×128256 in float32 and bfloat16: xent (the raw kernel call, and
    through xent.torch autograd) against F.cross_entropy and a
    torch.compile'd cross-entropy, each with its fraction of the copy
    bandwidth (xent moves N·V elements in and N·V out; the others are
    charged the same bytes, so the fraction compares times);
  * linear + cross-entropy at N×D×V = 8192×2048×128256 in bfloat16, forward +
    backward: time and peak extra memory (torch.cuda.max_memory_allocated
    above what the inputs hold) for xent against torch.compile'd
    linear + cross-entropy.
With --variants, the raw call is also timed under the kernel's benchmark
knobs (environment variables read per call, cuda/cross_entropy.cu: the row
kernel ce_rows, one cluster per row, no L2 prefetch, 512 threads, 80 or 64
registers); --torch-profile FILE appends a torch.profiler table of
xent.torch's forward + backward at 4096×32000 to FILE.
Times: CUDA events, median of 20 runs (--quick: 5) after warm-up.
Run: PYTHONPATH=<build>/python python3 bench/cuda_bench.py [--quick] [--variants]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch
import torch.nn.functional as F

import xent._xent as X
import xent.torch as xt
from xent.torch import _cuda


def timed(fn, iters, warmup=3):
    """Median milliseconds of fn() over iters runs (CUDA events)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def copy_bandwidth(iters):
    n = 1 << 28  # 1 GiB of float32
    src = torch.empty(n, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    ms = timed(lambda: dst.copy_(src), iters)
    return 2 * n * 4 / (ms * 1e-3)  # bytes read + written per second


DT = {torch.float32: X.DType.f32, torch.bfloat16: X.DType.bf16}


def ce_rows(n, v, dtype, copy_bps, iters, compiled, variants, profile_to=None):
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(n, v, device="cuda", dtype=torch.float32, generator=g).mul_(3).to(dtype)
    t = torch.randint(0, v, (n,), device="cuda", generator=g)
    grad = torch.empty_like(x)
    stream = _cuda.stream(x.device)
    mod = _cuda.module("bench")
    opts = X.CrossEntropyOptions()
    outs = X.CrossEntropyOutputs()
    outs.grad = X.MutableMatrixView(grad.data_ptr(), DT[dtype], n, v, v)
    view = X.MatrixView(x.data_ptr(), DT[dtype], n, v, v)
    tgt = X.Targets.index_int64(t.data_ptr())

    def raw():  # one fused call: read logits once, write the gradient once
        mod.cross_entropy_loss(view, tgt, opts, outs, stream)

    def raw_with(env):  # the raw call under benchmark knobs (cuda/cross_entropy.cu)
        def fn():
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                raw()
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        return fn

    xr = x.detach().requires_grad_()

    def ours():
        xr.grad = None
        xt.cross_entropy(xr, t).backward()

    def torch_ce():
        xr.grad = None
        F.cross_entropy(xr, t).backward()

    def compiled_ce():
        xr.grad = None
        compiled(xr, t).backward()

    nbytes = 2 * n * v * x.element_size()
    rows = []
    contenders = [("xent kernel", raw)]
    if variants:
        contenders += [("xent kernel: ce_rows (the row kernel)", raw_with({"XENT_CUDA_CE": "rows"})),
                       ("xent kernel: a cluster per row", raw_with({"XENT_CUDA_CE_GRID": "rows"})),
                       ("xent kernel: persistent, no prefetch", raw_with({"XENT_CUDA_CE_PREFETCH": "0"})),
                       ("xent kernel: 512 threads", raw_with({"XENT_CUDA_CE_THREADS": "512"})),
                       ("xent kernel: 80 registers (256 threads; else ce_rows)",
                        raw_with({"XENT_CUDA_CE_REGS": "80"})),
                       ("xent kernel: 64 registers", raw_with({"XENT_CUDA_CE_REGS": "64"}))]
    contenders += [("xent.torch", ours), ("F.cross_entropy", torch_ce), ("torch.compile CE", compiled_ce)]
    for name, fn in contenders:
        try:
            ms = timed(fn, iters)
            rows.append((name, ms, nbytes / (ms * 1e-3) / copy_bps))
        except Exception as e:  # report, do not hide, a failing contender
            rows.append((name, float("nan"), float("nan")))
            print(f"{name} {n}x{v} {dtype}: {type(e).__name__}: {e}", file=sys.stderr)
    if profile_to:  # where xent.torch's time goes beyond the kernel's
        from torch.profiler import ProfilerActivity, profile
        ours()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                ours()
            torch.cuda.synchronize()
        with open(profile_to, "a") as f:
            print(f"== xent.torch fwd+bwd {n}x{v} {dtype}, 3 calls", file=f)
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15), file=f)
    del x, grad, xr
    torch.cuda.empty_cache()
    return rows


def linear_ce(n, d, v, iters):
    g = torch.Generator(device="cuda").manual_seed(1)
    h = (torch.randn(n, d, device="cuda", generator=g) * 0.5).to(torch.bfloat16).requires_grad_()
    w = (torch.randn(v, d, device="cuda", generator=g) * 0.02).to(torch.bfloat16).requires_grad_()
    t = torch.randint(0, v, (n,), device="cuda", generator=g)

    def unfused(h, w, t):
        return F.cross_entropy((h @ w.T).float(), t)

    comp = torch.compile(unfused)

    def run(fn):
        h.grad = w.grad = None
        fn().backward()

    out = []
    # The raw kernel with its float32 gradients preallocated: the peak above
    # that is the kernel's own workspace (logits tile + O(N)), the figure
    # Cut Cross-Entropy reports.
    gh = torch.empty(n, d, device="cuda")
    gw = torch.empty(v, d, device="cuda")
    mod = _cuda.module("bench")
    o = X.LinearCrossEntropyOptions()
    lo = X.LinearCrossEntropyOutputs()
    lo.grad_hidden = X.MutableMatrixView(gh.data_ptr(), X.DType.f32, n, d, d)
    lo.grad_weight = X.MutableMatrixView(gw.data_ptr(), X.DType.f32, v, d, d)
    hv = X.MatrixView(h.data_ptr(), X.DType.bf16, n, d, d)
    wv = X.MatrixView(w.data_ptr(), X.DType.bf16, v, d, d)
    tv = X.Targets.index_int64(t.data_ptr())
    stream = _cuda.stream(h.device)
    raw = lambda: mod.linear_cross_entropy(hv, wv, 0, tv, o, lo, stream)  # noqa: E731
    raw()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    mod.workspace_peak_bytes(True)
    res = raw()
    torch.cuda.synchronize()
    # torch's allocator does not see xent's stream-ordered workspace: add it.
    extra = torch.cuda.max_memory_allocated() - base + mod.workspace_peak_bytes(False)
    ms = timed(raw, iters, warmup=1)
    out.append((f"xent kernel (tile {res.chunk_rows}×{res.tile_cols}, fp32 grads preallocated)",
                ms, extra / 2 ** 20))
    del gh, gw
    torch.cuda.empty_cache()
    for name, fn in (("xent.torch.linear_cross_entropy", lambda: xt.linear_cross_entropy(h, w, t)),
                     ("xent linear CE, filter 2^-12",
                      lambda: xt.linear_cross_entropy(h, w, t, grad_filter=2.0 ** -12)),
                     ("torch.compile linear+CE", lambda: comp(h, w, t))):
        try:
            run(fn)  # warm-up (and compilation)
            torch.cuda.synchronize()
            h.grad = w.grad = None
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            mod.workspace_peak_bytes(True)
            run(fn)
            torch.cuda.synchronize()
            # Peak above the inputs, less the gradients every method returns
            # (hidden and weight in their dtypes), plus xent's own workspace
            # (0 for torch's method).
            extra = (torch.cuda.max_memory_allocated() - base - (h.numel() + w.numel()) * 2
                     + mod.workspace_peak_bytes(False))
            ms = timed(lambda: run(fn), iters, warmup=1)
            out.append((name, ms, extra / 2 ** 20))
        except Exception as e:
            out.append((name, float("nan"), float("nan")))
            print(f"{name}: {type(e).__name__}: {e}", file=sys.stderr)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--variants", action="store_true",
                    help="also time the raw kernel under its benchmark knobs (ce_rows, block size, registers)")
    ap.add_argument("--torch-profile", metavar="FILE",
                    help="append a torch.profiler table of xent.torch fwd+bwd at 4096x32000 to FILE")
    args = ap.parse_args()
    iters = 5 if args.quick else 20
    if not torch.cuda.is_available():
        sys.exit("cuda_bench.py: no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    name = torch.cuda.get_device_name()
    copy_bps = copy_bandwidth(iters)
    print(f"Device: **{name}**; torch {torch.__version__} (CUDA {torch.version.cuda}); "
          f"device-to-device copy {copy_bps / 1e12:.2f} TB/s (read + write), median of {iters}.\n")
    compiled = torch.compile(F.cross_entropy)
    print("| shape N×V | dtype | method | fwd+bwd ms | fraction of copy bandwidth |")
    print("|---|---|---|---:|---:|")
    for n, v in ((4096, 32000), (8192, 50257), (2048, 128256)):
        for dtype in (torch.float32, torch.bfloat16):
            prof = args.torch_profile if (n, v) == (4096, 32000) else None
            for method, ms, frac in ce_rows(n, v, dtype, copy_bps, iters, compiled, args.variants, prof):
                print(f"| {n}×{v} | {str(dtype)[6:]} | {method} | {ms:.3f} | {frac:.0%} |")
            sys.stdout.flush()
    print("\n| linear CE 8192×2048×128256 bf16 | fwd+bwd ms | peak extra MiB |")
    # xent.torch rows include its float32 gradient buffers (then cast to
    # bf16); the kernel row shows the workspace alone.
    print("|---|---:|---:|")
    for method, ms, mib in linear_ce(8192, 2048, 128256, max(3, iters // 4)):
        print(f"| {method} | {ms:.1f} | {mib:.0f} |")


if __name__ == "__main__":
    main()
