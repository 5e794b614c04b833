#!/usr/bin/env python3
"""`mpirun -np K xent eval` against the single-process `xent eval` (issue 9).

The data-parallel evaluation accumulates every rank's rows on rank 0 in row
order, so its output must be the single process's byte for byte, in text and
JSON, whatever K: uneven splits (N not a multiple of K), N < K (ranks with no
rows), ignore_index rows, label smoothing, probabilities, soft targets,
float16/32/64, CSV, chunked streaming. A few headline numbers are also checked
against NumPy (float64, from the definitions) so the comparison is not only
xent against xent. Then failures: a bad target or a bad probability row in
one rank's slice, a truncated file: every rank must exit non-zero with an
error (the failing rank naming its row, the others naming the failing rank)
within the timeout, never hang.

Usage: test_eval_mpi.py XENT MPIRUN [MPIRUN_ARGS...]   (CTest, Debian's python3)
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

XENT = sys.argv[1]
MPIRUN = sys.argv[2:]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(cmd, timeout=90):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return p


def single(args):
    return run([XENT, "eval", *args])


def mpi(k, args):
    return run([*MPIRUN, "-np", str(k), XENT, "eval", *args])


def same_as_single(name, args, ks=(2, 3, 4)):
    for fmt in ("text", "json"):
        ref = single([*args, "--format", fmt])
        check(ref is not None and ref.returncode == 0, f"{name}: single process {fmt} failed: {ref and ref.stderr}")
        if ref is None or ref.returncode != 0:
            continue
        for k in ks:
            p = mpi(k, [*args, "--format", fmt])
            if p is None:
                check(False, f"{name}: mpirun -np {k} {fmt} hung")
                continue
            check(p.returncode == 0, f"{name}: mpirun -np {k} {fmt} exit {p.returncode}: {p.stderr[-500:]}")
            check(p.stdout == ref.stdout, f"{name}: mpirun -np {k} {fmt} output differs from one process\n"
                  f"--- one process:\n{ref.stdout[:800]}\n--- {k} ranks:\n{p.stdout[:800]}")


def expect_failure(name, args, k, failing_rank, needle):
    p = mpi(k, args)
    if p is None:
        check(False, f"{name}: mpirun -np {k} hung (no error agreement?)")
        return
    check(p.returncode != 0, f"{name}: mpirun -np {k} exited 0")
    errs = [l for l in p.stderr.splitlines() if l.startswith("xent: error:")]
    # One line per rank: the failing rank's own message, the others naming it.
    check(len(errs) == k, f"{name}: {len(errs)} error lines for {k} ranks:\n{p.stderr}")
    own = [l for l in errs if l.startswith(f"xent: error: rank {failing_rank}: ")]
    check(len(own) == 1 and needle in own[0], f"{name}: no own message of rank {failing_rank} with '{needle}':\n{p.stderr}")
    others = [l for l in errs if f"rank {failing_rank} failed" in l]
    check(len(others) == k - 1, f"{name}: {len(others)} ranks name rank {failing_rank}, expected {k - 1}:\n{p.stderr}")


rng = np.random.default_rng(9)
with tempfile.TemporaryDirectory() as d:
    P = lambda name: os.path.join(d, name)

    # 1. float32 logits, int64 targets, every 7th row ignored; N prime so no K
    #    divides it; some rows confident, some flat, one exact tie.
    n, v = 1009, 53
    z = (rng.standard_normal((n, v)) * rng.uniform(0.2, 6, (n, 1))).astype(np.float32)
    z[5, :] = 0.0
    t = rng.integers(0, v, n).astype(np.int64)
    t[::7] = -100
    np.save(P("z.npy"), z)
    np.save(P("t.npy"), t)
    same_as_single("f32 logits + ignore_index", ["--logits", P("z.npy"), "--targets", P("t.npy")])
    same_as_single("label smoothing, off-target, 4 bins, top 25",
                   ["--logits", P("z.npy"), "--targets", P("t.npy"), "--label-smoothing", "0.1",
                    "--smoothing-mode", "off-target", "--bins", "4", "--top", "25"])
    same_as_single("chunked streaming", ["--logits", P("z.npy"), "--targets", P("t.npy"), "--chunk-rows", "10"])

    # Headline numbers against NumPy (the MPI output equals the single one, so
    # these check both).
    p = mpi(3, ["--logits", P("z.npy"), "--targets", P("t.npy"), "--json"])
    if p is not None and p.returncode == 0:
        j = json.loads(p.stdout)
        zz = z.astype(np.float64)
        keep = t != -100
        lse = np.log(np.exp(zz - zz.max(1, keepdims=True)).sum(1)) + zz.max(1)
        nll = (lse - zz[np.arange(n), np.where(keep, t, 0)])[keep]
        q = np.exp(zz - lse[:, None])[keep]
        acc = (q.argmax(1) == t[keep]).mean()
        check(j["rows_evaluated"] == keep.sum() and j["rows_ignored"] == (~keep).sum(), "row counts")
        check(math.isclose(j["loss_nats"], nll.mean(), rel_tol=1e-5), f"loss {j['loss_nats']} vs {nll.mean()}")
        check(math.isclose(j["loss_bits"], nll.mean() / math.log(2), rel_tol=1e-5), "bits")
        check(math.isclose(j["perplexity"], math.exp(nll.mean()), rel_tol=1e-5), "perplexity")
        check(math.isclose(j["accuracy"], acc, rel_tol=1e-12), f"accuracy {j['accuracy']} vs {acc}")
        conf = q.max(1)
        b = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)
        correct = q.argmax(1) == t[keep]
        ece = sum((b == k).sum() / len(conf) * abs(correct[b == k].mean() - conf[b == k].mean())
                  for k in range(15) if (b == k).any())
        check(math.isclose(j["ece"], ece, rel_tol=1e-5, abs_tol=1e-7), f"ece {j['ece']} vs {ece}")
    else:
        check(False, f"mpirun -np 3 json: {p and p.stderr}")

    # 2. N < K: ranks with no rows (N = 1, 2, 3 on 4 ranks).
    for rows in (1, 2, 3):
        np.save(P(f"zs{rows}.npy"), z[:rows].astype(np.float64))
        np.save(P(f"ts{rows}.npy"), t[1:rows + 1].astype(np.int32))
        same_as_single(f"N={rows} < K", ["--logits", P(f"zs{rows}.npy"), "--targets", P(f"ts{rows}.npy")], ks=(3, 4))

    # 3. Every target ignored on some ranks, all ignored overall.
    np.save(P("tall.npy"), np.full(n, -1, np.int64))
    same_as_single("every row ignored", ["--logits", P("z.npy"), "--targets", P("tall.npy"), "--ignore-index", "-1"])

    # 4. Probabilities (float64), soft targets, float16 logits, CSV.
    pr = np.exp(z.astype(np.float64) - z.max(1, keepdims=True))
    pr /= pr.sum(1, keepdims=True)
    np.save(P("p.npy"), pr)
    np.save(P("t0.npy"), np.where(t < 0, 0, t))
    same_as_single("probabilities", ["--probs", P("p.npy"), "--targets", P("t0.npy")])
    soft = rng.dirichlet(np.ones(v) * 0.3, n).astype(np.float32)
    np.save(P("soft.npy"), soft)
    same_as_single("soft targets", ["--logits", P("z.npy"), "--targets", P("soft.npy")])
    np.save(P("z16.npy"), z.astype(np.float16))
    same_as_single("float16 logits", ["--logits", P("z16.npy"), "--targets", P("t.npy")])
    np.savetxt(P("z.csv"), z[:50], delimiter=",")
    np.savetxt(P("t.csv"), t[:50].reshape(-1, 1), fmt="%d")
    same_as_single("csv", ["--logits", P("z.csv"), "--targets", P("t.csv")])

    # 5. Failures on one rank only; every rank must stop with an error.
    bad = t.copy()
    bad[n - 1] = v + 5  # in the last rank's slice
    np.save(P("tbad.npy"), bad)
    for k in (2, 3, 4):
        expect_failure("bad target", ["--logits", P("z.npy"), "--targets", P("tbad.npy")], k, k - 1,
                       f"target of row {n - 1} is {v + 5}, outside [0, {v})")
    badp = pr.copy()
    badp[n // 2, 0] += 0.5  # rank 1 of 2 or 3 (rows [N/2, ...)), found in the evaluation pass
    np.save(P("pbad.npy"), badp)
    expect_failure("probability row not summing to 1", ["--probs", P("pbad.npy"), "--targets", P("t0.npy")],
                   2, 1, f"row {n // 2} sums to")
    zb = z.copy()
    zb[n - 2, 3] = np.nan
    np.save(P("znan.npy"), zb)
    expect_failure("NaN logit", ["--logits", P("znan.npy"), "--targets", P("t0.npy")], 3, 2, "NaN")
    # A truncated file: every rank finds it (rank 0 reports its own message).
    raw = open(P("z.npy"), "rb").read()
    open(P("ztrunc.npy"), "wb").write(raw[: len(raw) - 1000])
    expect_failure("truncated file", ["--logits", P("ztrunc.npy"), "--targets", P("t.npy")], 3, 0, "truncated")
    # The single process gives the same first line (without the rank).
    ref = single(["--logits", P("ztrunc.npy"), "--targets", P("t.npy")])
    check(ref.returncode == 2 and "truncated" in ref.stderr, f"single truncated: {ref.stderr}")

print(f"{'FAILED' if failures else 'ok'}: test_eval_mpi ({len(failures)} failures)")
sys.exit(1 if failures else 0)
