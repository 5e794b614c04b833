#!/usr/bin/python3
"""Fused linear + cross-entropy against the compute floor and PyTorch.

Runs build-*/bench/linear_cross_entropy_bench once per shape (one process per
shape, so that peak RSS is per shape) and PyTorch's unfused
F.cross_entropy(hidden @ weight.T, target) forward + backward in its own
process, then prints the markdown table of docs/performance.md.

  /usr/bin/python3 bench/compare_linear.py --bench build-lce/bench/linear_cross_entropy_bench \
      [--shapes 512x256x1000,4096x4096x32000] [--algos chunked,tiled] [--torch-max-gib 10]
      [--json out.json]

Use /usr/bin/python3 (Debian's, with torch); 2 threads everywhere
(OMP_NUM_THREADS=2, torch.set_num_threads(2)). One run per shape: the large
shapes take seconds per product on 2 cores. PyTorch is skipped, and the table
says so, where its N×V logits + log-softmax + gradient would not fit in
--torch-max-gib (the machine is shared) or would exceed --torch-max-s.
"""
import argparse
import json
import os
import subprocess
import sys

SHAPES = "512x256x1000,4096x4096x32000,16384x1024x50257,8192x2048x128256"

TORCH_SNIPPET = r"""
import json, resource, sys, time
import torch
import torch.nn.functional as F
torch.set_num_threads(2)
N, D, V = map(int, sys.argv[1:4])
g = torch.Generator().manual_seed(0)
s = (3.0 * 2.0 / D ** 0.5) ** 0.5
h = ((torch.rand(N, D, generator=g) * 2 - 1) * s).requires_grad_()
w = ((torch.rand(V, D, generator=g) * 2 - 1) * s).requires_grad_()
t = torch.randint(0, V, (N,), generator=g)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
with torch.no_grad():
    F.cross_entropy(h @ w.T, t)
t1 = time.perf_counter()
c1 = time.process_time()
loss = F.cross_entropy(h @ w.T, t)
loss.backward()
t2 = time.perf_counter()
c2 = time.process_time()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"fwd_s": t1 - t0, "fwdbwd_s": t2 - t1, "fwdbwd_cpu": c2 - c1, "extra_mib": (peak - base) / 1024.0,
                  "loss": loss.item(), "torch": torch.__version__}))
"""


def omp_env(policy):
    """2 threads; the OpenMP wait policy as given ("default": libgomp's own,
    spin then sleep, which is what a user's process gets; "passive": sleep at
    once, so that CPU time counts work only, useful on a busy machine, but
    every parallel region then pays a wake-up, which small shapes feel)."""
    env = dict(os.environ, OMP_NUM_THREADS="2")
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    return env


def run_bench(bench, shape, algos, extra, policy):
    n, d, v = shape
    cmd = [bench, str(n), str(d), str(v), "--algos", algos] + extra
    env = omp_env(policy)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    sys.stderr.write(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_torch(shape, max_gib, max_s, floor_s, policy):
    n, d, v = shape
    # logits, log-softmax output and the logits' gradient (PyTorch 1.13 keeps
    # all three alive in backward), plus the inputs and their gradients.
    need_gib = (3 * n * v + 2 * (n * d + v * d)) * 4 / 2**30
    if need_gib > max_gib:
        return {"skipped": f"needs ~{need_gib:.0f} GiB (> {max_gib:g} GiB allowed on the shared 24 GiB machine)"}
    # PyTorch does at least the three products: skip if that alone is too long.
    if floor_s is not None and 1.5 * floor_s > max_s:
        return {"skipped": f"would take > {max_s:g} s (3 products alone ≈ {floor_s:.0f} s)"}
    env = omp_env(policy)
    try:
        out = subprocess.run(["/usr/bin/python3", "-c", TORCH_SNIPPET, str(n), str(d), str(v)],
                             env=env, capture_output=True, text=True, timeout=max_s * 2)
    except subprocess.TimeoutExpired:
        return {"skipped": f"timed out after {max_s * 2:g} s"}
    if out.returncode != 0:
        return {"skipped": "failed: " + out.stderr.strip().splitlines()[-1][:120]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt_s(x):
    return f"{x:.2f}" if x >= 0.1 else f"{x * 1000:.1f} ms"


def fmt_mem(mib):
    """KiB below 1 MiB (the small shape's bound is 40 KiB), else MiB."""
    return f"{mib * 1024:.0f} KiB" if mib < 1 else f"{mib:.2f} MiB"


def table(rows, algos):
    """Ratios: wall time and, in brackets, CPU seconds (all threads; under
    --wait-policy passive CPU time counts work, not waiting; under the default
    policy it includes the spinning of idle threads)."""
    lines = []
    head = ("| shape N×D×V | 2·N·V floats | floor: 3 products, wall (CPU) | H·Wᵀ wall (CPU) |"
            + "".join(f" {a}: fwd+bwd wall, × floor (CPU ×) | {a}: fwd, × H·Wᵀ (CPU ×) |"
                      f" {a}: extra memory, fwd+bwd (× less); fwd |" for a in algos)
            + " PyTorch fwd+bwd wall (CPU) | PyTorch extra memory |")
    lines.append(head)
    lines.append("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        b, t = r["bench"], r["torch"]
        fl = b.get("floor", {})
        shape = f"{b['N']}×{b['D']}×{b['V']}"
        full_n = b.get("budget_rows") or b["N"]
        if full_n != b["N"]:
            shape = f"{full_n}×{b['D']}×{b['V']}: first {b['N']} rows, full-size blocks"
        full_mib = 2.0 * full_n * b["V"] * 4 / 2**20
        cells = [shape, f"{full_mib:.0f} MiB",
                 f"{fmt_s(fl['total_s'])} ({fmt_s(fl['total_cpu'])})" if fl else "–",
                 f"{fmt_s(fl['hwt_s'])} ({fmt_s(fl['hwt_cpu'])})" if fl else "–"]
        for a in algos:
            x = b.get(a)
            if not x:
                cells += ["–", "–", "–"]
                continue
            if fl:
                cells.append(f"{fmt_s(x['fwdbwd_s'])}, {x['fwdbwd_s'] / fl['total_s']:.2f}× "
                             f"({x['fwdbwd_cpu'] / fl['total_cpu']:.2f}×)")
                cells.append(f"{fmt_s(x['fwd_s'])}, {x['fwd_s'] / fl['hwt_s']:.2f}× "
                             f"({x['fwd_cpu'] / fl['hwt_cpu']:.2f}×)")
            else:
                cells += [fmt_s(x["fwdbwd_s"]), fmt_s(x["fwd_s"])]
            cells.append(f"{fmt_mem(x['extra_mib'])} ({full_mib / max(x['extra_mib'], 1e-9):.0f}×); "
                         f"{fmt_mem(x.get('fwd_extra_mib', 0))}")
        if "skipped" in t:
            cells += ["not run: " + t["skipped"], "–"]
        else:
            cpu = f" ({fmt_s(t['fwdbwd_cpu'])})" if "fwdbwd_cpu" in t else ""
            cells += [fmt_s(t["fwdbwd_s"]) + cpu, f"{t['extra_mib']:.0f} MiB"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench")
    ap.add_argument("--shapes", default=SHAPES)
    ap.add_argument("--algos", default="chunked,tiled")
    ap.add_argument("--torch-max-gib", type=float, default=10.0)
    ap.add_argument("--torch-max-s", type=float, default=120.0)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--extra", default="", help="extra bench arguments, e.g. '--chunk-rows 128'")
    ap.add_argument("--wait-policy", default="default", choices=["default", "passive", "active"],
                    help="OMP_WAIT_POLICY for xent and PyTorch alike (default: libgomp's own)")
    ap.add_argument("--table-from", nargs="*", help="only print the table of earlier --json files")
    args = ap.parse_args()
    algos = args.algos.split(",")
    if args.table_from:
        rows = [r for f in args.table_from for r in json.load(open(f))]
        print(table(rows, algos))
        return
    rows = []
    for s in args.shapes.split(","):
        # NxDxV or NxDxV:algo+algo (a subset of the algorithms for this shape)
        s, _, only = s.partition(":")
        shape = tuple(int(x) for x in s.split("x"))
        b = run_bench(args.bench, shape, only.replace("+", ",") if only else args.algos,
                      args.extra.split(), args.wait_policy)
        floor_s = b.get("floor", {}).get("total_s")
        t = {"skipped": "--no-torch"} if args.no_torch else run_torch(
            shape, args.torch_max_gib, args.torch_max_s, floor_s, args.wait_policy)
        rows.append({"bench": b, "torch": t})
        sys.stderr.write(json.dumps(rows[-1]) + "\n")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
    print(table(rows, algos))


if __name__ == "__main__":
    main()
