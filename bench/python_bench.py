#!/usr/bin/env python3
"""CPU training-step benchmark: xent.torch vs torch.nn.functional, one run.

Run (after building with -DXENT_BUILD_PYTHON=ON):
    PYTHONPATH=<build>/python /usr/bin/python3 bench/python_bench.py [--threads 2] [--quick]

Rows:
  * loss alone: forward + backward of the loss on a leaf logits tensor
    (autograd allocates the gradient, in both libraries), and forward only
    (no_grad, as in evaluation);
  * a small model with the loss: one full SGD step (forward, loss, backward,
    update) of an LM head (tokens × hidden → vocabulary) and of an MLP
    classifier; xent also with inplace_backward=True, where the logits (a
    matmul output nothing else needs) are overwritten by their gradient.
Both libraries use the same thread count (torch.set_num_threads; xent.torch
follows it). torch and xent runs alternate; the table gives the best time of
each over --reps repetitions after a warm-up and the median of the paired
ratios torch time / xent time (> 1: xent is faster); the load average is
printed with it, since a shared machine disturbs both.
"""

import argparse
import os
import time

import torch
import torch.nn.functional as F

import xent
import xent.torch as xt


def compare(torch_fn, xent_fn, reps, warmup=1):
    """(best torch time, best xent time, median of the per-pair ratios).
    torch and xent alternate (ABAB...), so a change of machine load between
    repetitions hits both alike; on a shared machine the minimum is the least
    disturbed time and the paired ratio the least biased speedup."""
    for _ in range(warmup):
        torch_fn()
        xent_fn()
    t_torch, t_xent = [], []
    for _ in range(reps):
        for fn, times in ((torch_fn, t_torch), (xent_fn, t_xent)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    ratios = sorted(a / b for a, b in zip(t_torch, t_xent))
    return min(t_torch), min(t_xent), ratios[len(ratios) // 2]


def loss_alone(rows, vocab, dtype, reps, kind="hard"):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(rows, vocab, generator=g) * 3).to(dtype)
    if kind == "soft":
        target = torch.softmax(torch.randn(rows, vocab, generator=g), -1).to(dtype)
    else:
        target = torch.randint(0, vocab, (rows,), generator=g)
    kw = dict(label_smoothing=0.1) if kind == "smooth" else {}

    def step(loss_fn):
        def run():
            leaf = x.detach().requires_grad_()
            loss_fn(leaf, target, **kw).backward()
            return leaf.grad
        return run

    def forward(loss_fn):
        def run():
            with torch.no_grad():
                return loss_fn(x, target, **kw)
        return run

    return [(f"CE {kind} {rows}x{vocab} {str(dtype)[6:]} {what}",
             *compare(make(F.cross_entropy), make(xt.cross_entropy), reps))
            for what, make in (("fwd+bwd", step), ("fwd", forward))]


def bce_alone(rows, cols, reps):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, cols, generator=g)
    y = (torch.rand(rows, cols, generator=g) > 0.5).float()

    def step(loss_fn):
        def run():
            leaf = x.detach().requires_grad_()
            loss_fn(leaf, y).backward()
        return run

    return [(f"BCE-with-logits {rows}x{cols} float32 fwd+bwd",
             *compare(step(F.binary_cross_entropy_with_logits),
                      step(xt.binary_cross_entropy_with_logits), reps))]


def model_step(name, layers, batch, classes, reps):
    """One SGD step of `layers` (a list of nn.Module) with each loss."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, layers[0].in_features, generator=g)
    y = torch.randint(0, classes, (batch,), generator=g)
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step(loss_fn, **kw):
        def run():
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y, **kw).backward()
            opt.step()
        return run

    return [(f"{name} SGD step", *compare(step(F.cross_entropy), step(xt.cross_entropy), reps)),
            (f"{name} SGD step, inplace_backward",
             *compare(step(F.cross_entropy), step(xt.cross_entropy, inplace_backward=True),
                      reps))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smaller shapes (smoke test)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    s = 8 if args.quick else 1
    reps = args.reps

    rows = []
    rows += loss_alone(4096 // s, 32000, torch.float32, reps)
    rows += loss_alone(4096 // s, 32000, torch.float32, reps, kind="smooth")
    rows += loss_alone(1024 // s, 32000, torch.float32, reps, kind="soft")
    rows += loss_alone(4096 // s, 32000, torch.bfloat16, reps)
    rows += loss_alone(65536 // s, 1000, torch.float32, reps)
    rows += bce_alone(4096 // s, 1000, reps)
    rows += model_step(f"LM head {2048 // s}x256->32000",
                       [torch.nn.Linear(256, 32000)], 2048 // s, 32000, reps)
    rows += model_step(f"MLP {4096 // s}x784->256->10",
                       [torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)],
                       4096 // s, 10, reps)

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"xent {xent.__version__}, torch {torch.__version__}, {args.threads} threads "
          f"(torch.get_num_threads() = {torch.get_num_threads()}), best of {reps}, "
          f"load average {load}")
    print()
    print("| case | torch best (ms) | xent best (ms) | speedup, median of paired runs |")
    print("|---|---:|---:|---:|")
    for name, t_torch, t_xent, ratio in rows:
        print(f"| {name} | {t_torch * 1e3:.1f} | {t_xent * 1e3:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
