#!/usr/bin/env python3
"""`xent eval` driven as a user would: generated .npy/.csv files, expected
values computed here independently in float64 with NumPy from the
definitions, corrupted files that must give one-line errors and exit 2.

Usage: test_eval.py PATH/TO/xent     (run by CTest with Debian's python3)
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

XENT = sys.argv[1]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(*args):
    p = subprocess.run([XENT, *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def expected(logits, targets, ignore=-100, bins=15, probs=None, soft=None):
    z = logits.astype(np.float64) if logits is not None else None
    if probs is None:
        m = z.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))
        q = np.exp(z - lse)
    else:
        q = probs.astype(np.float64)
    keep = np.ones(len(q), bool) if soft is not None else targets != ignore
    q = q[keep]
    if soft is not None:
        p = soft.astype(np.float64)[keep]
        with np.errstate(divide="ignore"):
            nll = -(np.where(p > 0, p * np.log(q), 0)).sum(axis=1)
        label = p.argmax(axis=1)
        onehot = p
    else:
        label = targets[keep].astype(np.int64)
        with np.errstate(divide="ignore"):
            nll = -np.log(q[np.arange(len(q)), label])
        onehot = np.zeros_like(q)
        onehot[np.arange(len(q)), label] = 1
    pred = q.argmax(axis=1)
    conf = q.max(axis=1)
    correct = pred == label
    above = (q > q[np.arange(len(q)), label][:, None]).sum(axis=1)
    b = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    ece = 0.0
    for k in range(bins):
        sel = b == k
        if sel.any():
            ece += sel.sum() / len(q) * abs(correct[sel].mean() - conf[sel].mean())
    return dict(loss=nll.mean(), acc=correct.mean(), top5=(above < 5).mean(), ece=ece,
                brier=((q - onehot) ** 2).sum(axis=1).mean(), n=int(keep.sum()), nll=nll, label=label,
                correct=correct)


def close(a, b, rel=2e-6, abs_=1e-9):
    return abs(a - b) <= max(abs_, rel * abs(b))


tmp = tempfile.mkdtemp(prefix="xent_eval_")
rng = np.random.default_rng(7)

# 1. float32 logits, int64 targets, some ignored rows.
N, V = 300, 23
z = (rng.standard_normal((N, V)) * 3).astype(np.float32)
t = rng.integers(0, V, N).astype(np.int64)
t[::17] = -100
np.save(f"{tmp}/z.npy", z)
np.save(f"{tmp}/t.npy", t)
rc, out, err = run("eval", "--logits", f"{tmp}/z.npy", "--targets", f"{tmp}/t.npy", "--format", "json", "--top", "5")
check(rc == 0, f"eval json rc={rc} err={err}")
j = json.loads(out)
e = expected(z, t)
check(j["rows_evaluated"] == e["n"], "rows_evaluated")
check(j["rows_ignored"] == N - e["n"], "rows_ignored")
check(close(j["loss_nats"], e["loss"]), f"loss {j['loss_nats']} vs {e['loss']}")
check(close(j["loss_bits"], e["loss"] / math.log(2)), "loss_bits")
check(close(j["perplexity"], math.exp(e["loss"])), "perplexity")
check(close(j["accuracy"], e["acc"], abs_=1e-12), "accuracy")
check(close(j["top5_accuracy"], e["top5"], abs_=1e-12), "top5")
check(close(j["ece"], e["ece"], rel=1e-5, abs_=1e-7), f"ece {j['ece']} vs {e['ece']}")
check(close(j["brier"], e["brier"], rel=1e-5), "brier")
worst = np.argsort(-e["nll"], kind="stable")[:5]
rows = [r["row"] for r in j["highest_loss_rows"]]
kept_rows = np.nonzero(t != -100)[0]
check(rows == [int(kept_rows[w]) for w in worst], f"highest-loss rows {rows}")
pc = {c["class"]: c for c in j["per_class"]}
for c in range(V):
    sel = e["label"] == c
    if sel.any():
        check(close(pc[c]["nll_nats"], e["nll"][sel].mean()), f"per-class nll {c}")
        check(close(pc[c]["accuracy"], e["correct"][sel].mean(), abs_=1e-12), f"per-class acc {c}")
nlls = [c["nll_nats"] for c in j["per_class"]]
check(nlls == sorted(nlls, reverse=True), "per-class sorted worst first")
check(sum(b["count"] for b in j["reliability"]) == e["n"], "reliability counts")

# Text output has the headline numbers; streaming in tiny chunks changes nothing.
rc, out, _ = run("eval", "--logits", f"{tmp}/z.npy", "--targets", f"{tmp}/t.npy")
check(rc == 0 and "perplexity" in out and "reliability" in out and "highest-loss rows" in out, "text report")
rc, out2, _ = run("eval", "--logits", f"{tmp}/z.npy", "--targets", f"{tmp}/t.npy", "--json", "--chunk-rows", "7", "--top", "5")
check(rc == 0 and close(json.loads(out2)["loss_nats"], j["loss_nats"], rel=1e-12), "chunked = whole")

# 2. float16 and float64 logits, int32 targets.
for dt in (np.float16, np.float64):
    zz = z.astype(dt)
    np.save(f"{tmp}/z_{dt.__name__}.npy", zz)
    np.save(f"{tmp}/t32.npy", np.where(t < 0, 0, t).astype(np.int32))
    rc, out, err = run("eval", "--logits", f"{tmp}/z_{dt.__name__}.npy", "--targets", f"{tmp}/t32.npy", "--json")
    check(rc == 0, f"{dt.__name__} rc {err}")
    if rc == 0:
        ee = expected(zz.astype(np.float64), np.where(t < 0, 0, t))
        check(close(json.loads(out)["loss_nats"], ee["loss"], rel=1e-5), f"{dt.__name__} loss")

# 3. probabilities and CSV input.
q = np.exp(z.astype(np.float64) - z.max(1, keepdims=True))
q /= q.sum(1, keepdims=True)
tt = np.where(t < 0, 1, t)
np.savetxt(f"{tmp}/q.csv", q, delimiter=",")
np.savetxt(f"{tmp}/t.csv", tt, fmt="%d")
rc, out, err = run("eval", "--probs", f"{tmp}/q.csv", "--targets", f"{tmp}/t.csv", "--json")
check(rc == 0, f"csv probs rc {err}")
if rc == 0:
    ee = expected(None, tt, probs=q)
    jj = json.loads(out)
    check(close(jj["loss_nats"], ee["loss"], rel=1e-9), "probs loss")
    check(close(jj["ece"], ee["ece"], rel=1e-9, abs_=1e-12), "probs ece")

# 4. soft targets.
p = rng.dirichlet(np.ones(V), N).astype(np.float32)
np.save(f"{tmp}/p.npy", p)
rc, out, err = run("eval", "--logits", f"{tmp}/z.npy", "--targets", f"{tmp}/p.npy", "--json")
check(rc == 0, f"soft rc {err}")
if rc == 0:
    ee = expected(z, None, soft=p)
    check(close(json.loads(out)["loss_nats"], ee["loss"], rel=1e-5), "soft loss")

# 5. label smoothing: smoothed loss reported beside the NLL.
rc, out, err = run("eval", "--logits", f"{tmp}/z.npy", "--targets", f"{tmp}/t.npy", "--json", "--label-smoothing", "0.1")
check(rc == 0, f"smoothing rc {err}")
if rc == 0:
    jj = json.loads(out)
    keep = t != -100
    zk = z[keep].astype(np.float64)
    lse = np.log(np.exp(zk - zk.max(1, keepdims=True)).sum(1)) + zk.max(1)
    logq = zk - lse[:, None]
    sm = -(0.9 * logq[np.arange(len(zk)), t[keep]] + 0.1 / V * logq.sum(1))
    check(close(jj["smoothed_loss_nats"], sm.mean(), rel=1e-5), "smoothed loss (uniform)")
    check(close(jj["loss_nats"], e["loss"]), "nll unchanged by smoothing")

# 6. Bad files: one line on stderr naming the file, exit 2, never a crash.
good = open(f"{tmp}/z.npy", "rb").read()
bad_cases = {
    "truncated.npy": good[: len(good) - 100],
    "badmagic.npy": b"\x93NUMPX" + good[6:],
    "garbage.npy": os.urandom(200),
    "empty.npy": b"",
}
for name, data in bad_cases.items():
    open(f"{tmp}/{name}", "wb").write(data)
    rc, out, err = run("eval", "--logits", f"{tmp}/{name}", "--targets", f"{tmp}/t.npy")
    check(rc == 2, f"{name}: rc {rc}")
    check(err.count("\n") == 1 and err.startswith("xent: error:") and name in err, f"{name}: message {err!r}")
np.save(f"{tmp}/be.npy", z.astype(">f4"))
np.save(f"{tmp}/short_t.npy", t[:-1])
np.save(f"{tmp}/float_t.npy", t.astype(np.float32))
np.save(f"{tmp}/oob_t.npy", np.where(t < 0, V, t))
np.save(f"{tmp}/nan_z.npy", np.where(np.arange(N)[:, None] == 5, np.nan, z).astype(np.float32))
for args, needle in [
    (["--logits", f"{tmp}/be.npy", "--targets", f"{tmp}/t.npy"], "big-endian"),
    (["--logits", f"{tmp}/z.npy", "--targets", f"{tmp}/short_t.npy"], "short_t.npy"),
    (["--logits", f"{tmp}/z.npy", "--targets", f"{tmp}/float_t.npy"], "float_t.npy"),
    (["--logits", f"{tmp}/z.npy", "--targets", f"{tmp}/oob_t.npy"], "row 0"),
    (["--logits", f"{tmp}/nan_z.npy", "--targets", f"{tmp}/t.npy"], "nan"),
    (["--logits", f"{tmp}/missing.npy", "--targets", f"{tmp}/t.npy"], "missing.npy"),
    (["--logits", f"{tmp}/z.npy"], "targets"),
]:
    rc, out, err = run("eval", *args)
    check(rc == 2, f"{args}: rc {rc} {err}")
    check(err.count("\n") == 1 and needle.lower() in err.lower(), f"{args}: message {err!r}")

print(f"{'FAILED' if failures else 'ok'}: test_eval ({len(failures)} failures)")
sys.exit(1 if failures else 0)
