#!/usr/bin/python3
"""Drives the built `xent` binary as a user would and checks `xent explain`.

Every expected number is computed here, independently of libxent, straight
from the definitions with Python's math module (in double):
  H(p) = -sum p log p,  H(p,q) = -sum p log q,  KL = sum p log(p/q),
  softmax(z) = exp(z - max) / sum exp(z - max),  loss = sum p (lse - z),
  grad = softmax(z) - p,  perplexity = exp(loss),  bits = nats / ln 2.

Usage: test_explain.py PATH/TO/xent   (CTest passes $<TARGET_FILE:xent_cli>;
the environment variable XENT_VERSION, when set, is the expected version).
"""
import json
import math
import os
import random
import re
import shlex
import subprocess
import sys
import unittest

XENT = None  # set from argv in __main__
LN2 = math.log(2.0)
INF = float("inf")


def run(*args):
    proc = subprocess.run([XENT, *args], capture_output=True, text=True, timeout=30)
    return proc.returncode, proc.stdout, proc.stderr


def run_json(*args):
    rc, out, err = run(*args, "--json")
    assert rc == 0, f"xent {' '.join(args)} --json: rc={rc} stderr={err!r}"

    def no_constants(name):  # NaN / Infinity are not JSON; xent must not emit them
        raise AssertionError(f"non-standard JSON constant {name} in {out!r}")

    return json.loads(out, parse_constant=no_constants)


def num(v):
    """A JSON value: a number, or the strings "inf" / "-inf" (documented)."""
    if isinstance(v, str):
        assert v in ("inf", "-inf"), v
        return float(v)
    return float(v)


def fmt_list(xs):
    return ",".join(repr(float(x)) for x in xs)


# ----------------------------------------------------------- the definitions ---
def xlogy_neg(p, q):
    """-p log q with 0 log q = 0 and p > 0 = q giving +inf."""
    if p == 0:
        return 0.0
    if q == 0:
        return INF
    return -p * math.log(q)


def discrete_ref(p, q):
    rows = []
    for pi, qi in zip(p, q):
        kl = 0.0 if pi == 0 else (INF if qi == 0 else pi * (math.log(pi) - math.log(qi)))
        rows.append(dict(p=pi, q=qi, neg_p_log_p=xlogy_neg(pi, pi),
                         neg_p_log_q=xlogy_neg(pi, qi), p_log_p_over_q=kl))
    return dict(rows=rows,
                entropy=math.fsum(r["neg_p_log_p"] for r in rows),
                cross_entropy=math.fsum(r["neg_p_log_q"] for r in rows),
                kl=math.fsum(r["p_log_p_over_q"] for r in rows))


def softmax_ref(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = math.fsum(e)
    return [v / s for v in e], m + math.log(s)


def logits_ref(z, p):
    q, lse = softmax_ref(z)
    terms = [0.0 if pi == 0 else (INF if zi == -INF else pi * (lse - zi)) for pi, zi in zip(p, z)]
    loss = math.fsum(terms)
    h = math.fsum(xlogy_neg(pi, pi) for pi in p)
    return dict(probs=q, terms=terms, loss=loss, grad=[qi - pi for qi, pi in zip(q, p)],
                entropy=h, kl=loss - h,
                perplexity=math.exp(loss) if loss < 709 else INF)


def smooth_ref(p, eps, mode):
    """The two documented conventions, for a (one-hot or soft) target p."""
    k = len(p)
    if mode == "uniform":
        return [(1 - eps) * pi + eps / k for pi in p]
    if k == 1:
        return list(p)
    return [(1 - eps) * pi + eps * (1 - pi) / (k - 1) for pi in p]


def onehot(t, k):
    return [1.0 if i == t else 0.0 for i in range(k)]


class Case(unittest.TestCase):
    def close(self, got, want, rel=1e-13, abs_=1e-15, what=""):
        got = num(got)
        if math.isinf(want):
            self.assertEqual(got, want, what)
        else:
            self.assertLessEqual(abs(got - want), max(abs_, rel * abs(want)),
                                 f"{what}: got {got!r}, want {want!r}")


# ------------------------------------------------------------------ discrete ---
DISCRETE_CASES = [
    ([0.6, 0.3, 0.1], [0.5, 0.3, 0.2]),        # the example
    ([0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]),  # p = q: KL = 0, H = log 4
    ([0.5, 0.5, 0.0], [0.9, 0.0, 0.1]),        # p > 0 = q: +inf
    ([0.0, 1.0], [0.0, 1.0]),                  # 0 log 0 = 0 everywhere
    ([1.0], [1.0]),                            # K = 1
    ([0.999999, 1e-6], [1e-6, 0.999999]),      # far apart
]


def random_distribution(rng, k):
    w = [rng.random() ** 3 for _ in range(k)]
    s = math.fsum(w)
    return [x / s for x in w]


class DiscreteJson(Case):
    def cases(self):
        rng = random.Random(20261125)
        yield from DISCRETE_CASES
        for k in (2, 7, 40):
            yield random_distribution(rng, k), random_distribution(rng, k)

    def test_fields_match_definitions(self):
        for p, q in self.cases():
            with self.subTest(p=p, q=q):
                j = run_json("explain", "--p", fmt_list(p), "--q", fmt_list(q))
                ref = discrete_ref(p, q)
                self.assertEqual(j["case"], "discrete")
                self.assertEqual(j["unit"], "nats")
                self.assertEqual(j["k"], len(p))
                for key in ("entropy", "cross_entropy", "kl"):
                    self.close(j[key], ref[key], what=key)
                self.assertEqual(len(j["rows"]), len(p))
                for row, rr in zip(j["rows"], ref["rows"]):
                    for key in ("p", "q", "neg_p_log_p", "neg_p_log_q", "p_log_p_over_q"):
                        self.close(row[key], rr[key], what=key)
                # The identity the table illustrates.
                self.close(j["check"]["entropy_plus_kl"], num(j["cross_entropy"]), what="check")

    def test_known_values(self):
        j = run_json("explain", "--p", "0.25,0.25,0.25,0.25", "--q", "0.25,0.25,0.25,0.25")
        self.close(j["entropy"], math.log(4), what="H(uniform 4) = log 4")
        self.assertEqual(num(j["kl"]), 0.0)
        j = run_json("explain", "--p", "0.5,0.5,0", "--q", "0.9,0,0.1")
        self.assertEqual(j["cross_entropy"], "inf")
        self.assertEqual(j["kl"], "inf")
        self.assertEqual(j["rows"][2]["neg_p_log_q"], 0.0)  # p = 0: contributes nothing

    def test_bits_are_nats_over_ln2(self):
        for p, q in DISCRETE_CASES:
            with self.subTest(p=p, q=q):
                a = run_json("explain", "--p", fmt_list(p), "--q", fmt_list(q))
                b = run_json("explain", "--p", fmt_list(p), "--q", fmt_list(q), "--bits")
                self.assertEqual(b["unit"], "bits")
                for key in ("entropy", "cross_entropy", "kl"):
                    self.close(b[key], num(a[key]) / LN2, rel=1e-15, what=key)
                for ra, rb in zip(a["rows"], b["rows"]):
                    for key in ("neg_p_log_p", "neg_p_log_q", "p_log_p_over_q"):
                        self.close(rb[key], num(ra[key]) / LN2, rel=1e-15, what=key)
                    self.assertEqual(ra["p"], rb["p"])  # probabilities have no unit


# -------------------------------------------------------------------- logits ---
class LogitsJson(Case):
    def check(self, j, z, p, unit="nats"):
        ref = logits_ref(z, p)
        scale = LN2 if unit == "bits" else 1.0
        self.assertEqual(j["case"], "logits")
        self.assertEqual(j["unit"], unit)
        self.assertEqual(len(j["rows"]), len(z))
        for i, row in enumerate(j["rows"]):
            self.close(row["logit"], z[i], what="logit")
            self.close(row["prob"], ref["probs"][i], what="prob")
            self.close(j["probs"][i], ref["probs"][i], what="probs")
            self.close(row["target"], p[i], rel=1e-15, what="target")
            self.close(j["targets"][i], p[i], rel=1e-15, what="targets")
            self.close(row["loss_term"], ref["terms"][i] / scale, what="loss_term")
            self.close(row["grad"], ref["grad"][i] / scale, what="grad")
            self.close(j["grad"][i], ref["grad"][i] / scale, what="grad[]")
        self.close(j["loss"], ref["loss"] / scale, what="loss")
        self.close(j["cross_entropy"], ref["loss"] / scale, what="cross_entropy")
        self.close(j["entropy"], ref["entropy"] / scale, what="entropy")
        self.close(j["kl"], ref["kl"] / scale, rel=1e-12, abs_=1e-14, what="kl")
        self.close(j["perplexity"], ref["perplexity"], what="perplexity (same in both units)")

    def test_hard_target(self):
        for z, t in [([2, 1.2, 0.3], 0), ([2, 1.2, 0.3, -0.8, -2], 0), ([0.0], 0),
                     ([-3.5, 7.25, 0.125, 7.25], 2), ([30, -30], 1)]:
            for unit in ("nats", "bits"):
                with self.subTest(z=z, t=t, unit=unit):
                    extra = ["--bits"] if unit == "bits" else []
                    j = run_json("explain", "--logits", fmt_list(z), "--target", str(t), *extra)
                    self.assertEqual(j["target"], t)
                    self.assertNotIn("smoothing", j)
                    self.check(j, z, onehot(t, len(z)), unit)

    def test_anchor_value(self):
        # style.md's anchor: logits [2, 1.2, 0.3, -0.8, -2], target 0 -> 0.5372.
        j = run_json("explain", "--logits", "2,1.2,0.3,-0.8,-2", "--target", "0")
        self.assertAlmostEqual(num(j["loss"]), 0.5372, places=4)

    def test_soft_target_and_mask(self):
        for z, p in [([2, 1.2, 0.3], [0.7, 0.2, 0.1]), ([-INF, 1, 2], [0, 0.5, 0.5])]:
            with self.subTest(z=z, p=p):
                j = run_json("explain", "--logits", ",".join(str(v) for v in z), "--p", fmt_list(p))
                self.assertNotIn("target", j)
                self.check(j, z, p)
        j = run_json("explain", "--logits", "-inf,1,2", "--p", "0.5,0.25,0.25")
        self.assertEqual(j["loss"], "inf")  # target mass on a masked class
        self.assertEqual(j["logits"][0], "-inf")

    def test_extreme_logits_stay_exact(self):
        # softmax underflows to 0 at the target, yet the loss is finite: 2000.
        j = run_json("explain", "--logits", "1000,0,-1000", "--target", "2")
        self.close(j["loss"], 2000.0, what="loss")
        self.close(j["kl"], 2000.0, what="kl")
        self.assertEqual(j["perplexity"], "inf")  # e^2000 overflows a double

    def test_json_round_trips(self):
        # Text with 17 decimals is exact to 17 significant digits for values
        # in [0.1, 1): the JSON number must be the very same double.
        _, text, _ = run("explain", "--logits", "2,1.2,0.3", "--target", "0", "--digits", "17")
        j = run_json("explain", "--logits", "2,1.2,0.3", "--target", "0")
        m = re.search(r"loss = H\(p, softmax\(z\)\) =\s+(\S+)", text)
        self.assertIsNotNone(m, text)
        self.assertEqual(float(m.group(1)), j["loss"])
        self.assertGreater(len(repr(j["loss"])), 15)


class Smoothing(Case):
    def test_documented_targets(self):
        z = [2, 1.2, 0.3, -0.8]
        k = len(z)
        for eps in (0.0, 0.1, 0.5, 1.0):
            for mode in ("uniform", "off-target"):
                with self.subTest(eps=eps, mode=mode):
                    j = run_json("explain", "--logits", fmt_list(z), "--target", "1",
                                 "--smoothing", repr(eps), "--smoothing-mode", mode)
                    # The documented closed forms for a one-hot target.
                    if mode == "uniform":
                        want = [1 - eps + eps / k if i == 1 else eps / k for i in range(k)]
                    else:
                        want = [1 - eps if i == 1 else eps / (k - 1) for i in range(k)]
                    for got, w in zip(j["targets"], want):
                        self.close(got, w, rel=1e-15, what="target")
                    self.assertEqual(j["smoothing"], {"epsilon": eps, "mode": mode})
                    self.check_loss(j, z, want)

    def check_loss(self, j, z, p):
        ref = logits_ref(z, p)
        self.close(j["loss"], ref["loss"], what="loss")
        for g, w in zip(j["grad"], ref["grad"]):
            self.close(g, w, what="grad")

    def test_default_mode_is_uniform(self):
        j = run_json("explain", "--logits", "1,2,3", "--target", "0", "--smoothing", "0.3")
        self.assertEqual(j["smoothing"]["mode"], "uniform")
        self.close(j["targets"][1], 0.1, rel=1e-15)

    def test_soft_target_smoothing(self):
        z, p = [0.5, -1.0, 2.0], [0.6, 0.4, 0.0]
        for mode in ("uniform", "off-target"):
            with self.subTest(mode=mode):
                j = run_json("explain", "--logits", fmt_list(z), "--p", fmt_list(p),
                             "--smoothing", "0.2", "--smoothing-mode", mode)
                want = smooth_ref(p, 0.2, mode)
                for got, w in zip(j["targets"], want):
                    self.close(got, w, rel=1e-15, what="target")
                self.check_loss(j, z, want)

    def test_single_class_off_target(self):
        j = run_json("explain", "--logits", "0.7", "--target", "0", "--smoothing", "0.4",
                     "--smoothing-mode", "off-target")
        self.assertEqual(j["targets"], [1.0])  # no other class to spread epsilon over


# ----------------------------------------- issue 6: MSE, double softmax, verdicts ---
def mse_loss(z, p):
    q, _ = softmax_ref(z)
    return math.fsum((qi - pi) ** 2 for qi, pi in zip(q, p))


def double_softmax_loss(z, p):
    q, _ = softmax_ref(z)  # probabilities, then used as logits
    qq, lse = softmax_ref(q)
    return math.fsum(0.0 if pi == 0 else pi * (lse - qi) for pi, qi in zip(p, q))


def central_diff(f, z, h=1e-6):
    """Finite-difference gradient, independent of any analytic formula."""
    g = []
    for i in range(len(z)):
        a, b = list(z), list(z)
        a[i] += h
        b[i] -= h
        g.append((f(a) - f(b)) / (2 * h))
    return g


EXTRA_CASES = [  # (logits, --target or None, soft p or None, smoothing args)
    ([2, 1.2, 0.3], 0, None, []),
    ([6, 0, -1, -2], 1, None, []),
    ([0.5, -1.0, 2.0], None, [0.6, 0.4, 0.0], []),
    ([2, 1.2, 0.3, -0.8], 2, None, ["--smoothing", "0.2", "--smoothing-mode", "off-target"]),
]


def case_args(z, t, p, smooth):
    args = ["explain", "--logits", fmt_list(z)]
    args += ["--target", str(t)] if t is not None else ["--p", fmt_list(p)]
    return args + smooth


def effective_target(z, t, p, smooth):
    k = len(z)
    base = onehot(t, k) if t is not None else p
    if smooth:
        return smooth_ref(base, float(smooth[1]), smooth[3])
    return base


class Extras(Case):
    def test_compare_mse(self):
        for z, t, p, smooth in EXTRA_CASES:
            for unit in ([], ["--bits"]):
                with self.subTest(z=z, t=t, p=p, smooth=smooth, unit=unit):
                    j = run_json(*case_args(z, t, p, smooth), "--compare-mse", *unit)
                    target = effective_target(z, t, p, smooth)
                    self.close(j["mse"]["loss"], mse_loss(z, target), what="mse loss (unitless)")
                    fd = central_diff(lambda x: mse_loss(x, target), z)
                    for g, w in zip(j["mse"]["grad"], fd):
                        self.close(g, w, rel=1e-6, abs_=1e-8, what="mse grad vs finite diff")
                    self.close(j["mse"]["grad_norm"], math.hypot(*fd), rel=1e-6, abs_=1e-8)
                    scale = LN2 if unit else 1.0
                    ce = logits_ref(z, target)["grad"]
                    self.close(j["mse"]["ce_grad_norm"], math.hypot(*ce) / scale, what="ce norm")

    def test_mse_gradient_vanishes_when_confidently_wrong(self):
        j = run_json("explain", "--preset", "overconfident-wrong", "--compare-mse")
        self.assertGreater(j["mse"]["ce_grad_norm"], 1.0)
        self.assertLess(j["mse"]["grad_norm"], 0.02)

    def test_double_softmax(self):
        for z, t, p, smooth in EXTRA_CASES:
            for unit in ([], ["--bits"]):
                with self.subTest(z=z, t=t, p=p, smooth=smooth, unit=unit):
                    j = run_json(*case_args(z, t, p, smooth), "--double-softmax", *unit)
                    d = j["double_softmax"]
                    scale = LN2 if unit else 1.0
                    target = effective_target(z, t, p, smooth)
                    self.close(d["loss"], double_softmax_loss(z, target) / scale, what="bug loss")
                    fd = central_diff(lambda x: double_softmax_loss(x, target), z)
                    self.close(d["grad_norm"], math.hypot(*fd) / scale, rel=1e-6, abs_=1e-8,
                               what="bug grad norm vs finite differences")
                    ref = logits_ref(z, target)
                    self.close(d["correct_loss"], ref["loss"] / scale)
                    self.close(d["correct_grad_norm"], math.hypot(*ref["grad"]) / scale)
                    if t is not None and not smooth:
                        floor = math.log(1 + (len(z) - 1) / math.e) / scale
                        self.close(d["loss_floor"], floor, what="floor")
                        self.assertGreaterEqual(num(d["loss"]), floor)
                        # and the floor is the loss at the best possible probabilities
                        self.close(double_softmax_loss([1e3 * v for v in onehot(t, len(z))],
                                                       onehot(t, len(z))) / scale, floor)
                    else:
                        self.assertNotIn("loss_floor", d)

    def test_verdicts(self):
        want = {"matched-soft": "confident-right", "diffuse-one-hot": "uncertain",
                "overconfident-wrong": "confident-wrong", "soft-mismatch": "confident-wrong"}
        for preset, label in want.items():
            with self.subTest(preset=preset):
                j = run_json("explain", "--preset", preset)
                self.assertEqual(j["verdict"]["label"], label)
                self.assertEqual(j["preset"], preset)
        # The rule: top probability > 0.5; a 50/50 tie is not confident.
        v = run_json("explain", "--logits", "0,0", "--target", "0")["verdict"]
        self.assertEqual((v["label"], v["top_class"], v["top_prob"]), ("uncertain", 0, 0.5))
        v = run_json("explain", "--logits", "0,1", "--target", "0")["verdict"]
        self.assertEqual((v["label"], v["top_class"], v["target_class"]),
                         ("confident-wrong", 1, 0))
        self.close(v["target_prob"], softmax_ref([0, 1])[0][0])

    def test_matched_soft_is_matched(self):
        j = run_json("explain", "--preset", "matched-soft")
        for qi, pi in zip(j["probs"], j["p"]):
            self.close(qi, pi, rel=1e-15)
        self.close(j["loss"], num(j["entropy"]), rel=1e-15)
        self.assertLess(abs(num(j["kl"])), 1e-15)
        self.assertLess(max(abs(g) for g in j["grad"]), 1e-15)

    def test_presets_print_their_command(self):
        for preset in ("matched-soft", "diffuse-one-hot", "overconfident-wrong", "soft-mismatch"):
            with self.subTest(preset=preset):
                rc, out, err = run("explain", "--preset", preset)
                self.assertEqual((rc, err), (0, ""))
                lines = out.splitlines(keepends=True)
                self.assertTrue(lines[0].startswith(f"Preset {preset}: "))
                self.assertTrue(lines[1].startswith("$ xent explain "))
                _, again, _ = run(*shlex.split(lines[1][len("$ xent "):]))
                self.assertEqual("".join(lines[2:]), again)


# ---------------------------------------------------------------------- text ---
def table_rows(text):
    """Body rows of every table: lines whose first field is an index (or → i)."""
    rows = []
    for line in text.splitlines():
        f = line.split()
        if f and f[0] == "→":
            f = f[1:]
        if f and f[0].isdigit():
            rows.append([float(x) for x in f[1:]])
    return rows


class Text(Case):
    def test_discrete_table(self):
        for unit in ("nats", "bits"):
            with self.subTest(unit=unit):
                extra = ["--bits"] if unit == "bits" else []
                p, q = [0.6, 0.3, 0.1], [0.5, 0.3, 0.2]
                rc, out, err = run("explain", "--p", fmt_list(p), "--q", fmt_list(q), *extra)
                self.assertEqual((rc, err), (0, ""))
                self.assertIn(f"[{unit}]", out)
                ref = discrete_ref(p, q)
                scale = LN2 if unit == "bits" else 1.0
                rows = table_rows(out)
                self.assertEqual(len(rows), 3)
                for got, rr in zip(rows, ref["rows"]):
                    want = [rr["p"], rr["q"], rr["neg_p_log_p"] / scale,
                            rr["neg_p_log_q"] / scale, rr["p_log_p_over_q"] / scale]
                    for g, w in zip(got, want):
                        self.assertAlmostEqual(g, w, delta=5.1e-7)  # 6 decimals
                total = re.search(r"^\s*total\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
                for g, key in zip(total.groups(), ("entropy", "cross_entropy", "kl")):
                    self.assertAlmostEqual(float(g), ref[key] / scale, delta=5.1e-7)
                self.assertRegex(out, r"check: H\(p,q\) = H\(p\) \+ KL\(p‖q\)")

    def test_columns_are_aligned(self):
        rc, out, _ = run("explain", "--p", "0.6,0.3,0.1", "--q", "0.5,0.3,0.2")
        lines = out.splitlines()
        body = [l for l in lines if l.split() and l.split()[0].isdigit()]
        rules = [l for l in lines if "─" in l]
        header = next(l for l in lines if l.split() and l.split()[0] == "i")
        widths = {len(l) for l in body + rules + [header]}  # str len = code points
        self.assertEqual(len(widths), 1, "\n".join(body + rules + [header]))

    def test_logits_table(self):
        z, t = [2, 1.2, 0.3], 0
        rc, out, err = run("explain", "--logits", fmt_list(z), "--target", str(t))
        self.assertEqual((rc, err), (0, ""))
        ref = logits_ref(z, onehot(t, 3))
        rows = table_rows(out)
        self.assertEqual(len(rows), 3)
        for i, got in enumerate(rows):
            want = [z[i], ref["probs"][i], onehot(t, 3)[i], ref["terms"][i], ref["grad"][i]]
            for g, w in zip(got, want):
                self.assertAlmostEqual(g, w, delta=5.1e-7)
        m = re.search(r"loss = H\(p, softmax\(z\)\) =\s+(\S+)\s+nats", out)
        self.assertAlmostEqual(float(m.group(1)), ref["loss"], delta=5.1e-7)
        m = re.search(r"perplexity = e\^loss\s+=\s+(\S+)", out)
        self.assertAlmostEqual(float(m.group(1)), ref["perplexity"], delta=5.1e-7)

    def test_tiny_values_are_not_rounded_to_zero(self):
        rc, out, _ = run("explain", "--logits", "0,-30", "--target", "0")
        self.assertRegex(out, r"\d\.\d+e-1[34]")  # q_1 ~ 9.4e-14


# -------------------------------------------------- built-in example, --help ---
class Cli(Case):
    def test_builtin_examples(self):
        rc, out, err = run("explain")
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("$ xent explain --p 0.6,0.3,0.1 --q 0.5,0.3,0.2", out)
        self.assertIn("$ xent explain --logits 2,1.2,0.3 --target 0", out)
        for unit in ([], ["--bits"]):
            j = run_json("explain", *unit)
            self.assertEqual(j["examples"][0],
                             run_json("explain", "--p", "0.6,0.3,0.1", "--q", "0.5,0.3,0.2", *unit))
            self.assertEqual(j["examples"][1],
                             run_json("explain", "--logits", "2,1.2,0.3", "--target", "0", *unit))

    def test_version(self):
        rc, out, err = run("--version")
        self.assertEqual((rc, err), (0, ""))
        want = os.environ.get("XENT_VERSION")
        self.assertRegex(out, r"^xent \d+\.\d+\.\d+\n$")
        if want:
            self.assertEqual(out, f"xent {want}\n")

    def test_docs_examples_are_current(self):
        # Every "$ xent explain ..." block in docs/cli.md is the program's output.
        doc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "cli.md")
        with open(doc, encoding="utf-8") as f:
            blocks = re.findall(r"```\n\$ xent (explain[^\n]*)\n(.*?)```", f.read(), re.S)
        self.assertGreaterEqual(len(blocks), 3)
        for cmd, want in blocks:
            with self.subTest(cmd=cmd):
                rc, out, err = run(*shlex.split(cmd))
                self.assertEqual(out + err, want)

    def test_help(self):
        for args in (["--help"], ["explain", "--help"]):
            rc, out, err = run(*args)
            self.assertEqual(rc, 0)
            self.assertIn("Examples:", out)
            self.assertIn("Exit codes", out)


ERRORS = [
    # (arguments, a fragment the one-line message must contain)
    (["--p", "0.6,x,0.1", "--q", "0.5,0.3,0.2"], "'x' is not a number"),
    (["--p", "0.6,nan,0.1", "--q", "0.5,0.3,0.2"], "NaN"),
    (["--p", "0.6,0.3,0.1", "--q", "0.5,,0.5"], "empty"),
    (["--p", "0.6,-0.3,0.7", "--q", "0.5,0.3,0.2"], "p[1] = -0.3"),
    (["--p", "0.6,0.3,0.2", "--q", "0.5,0.3,0.2"], "sums to"),
    (["--p", "0.6,0.4", "--q", "0.5,0.3,0.2"], "entries"),
    (["--p", "1e999", "--q", "1"], "out of the range"),
    (["--logits", "2,1,0", "--target", "3"], "out of range"),
    (["--logits", "2,1,0", "--target", "-1"], "out of range"),
    (["--logits", "2,1,0", "--target", "1.5"], "not a class index"),
    (["--logits", "2,1,0", "--p", "0.5,0.5"], "entries"),
    (["--logits", "2,1,0", "--p", "0.5,0.5", "--smoothing", "0.1"], "entries"),
    (["--logits", "2,1,0", "--target", "0", "--smoothing", "1.5"], "epsilon"),
    (["--logits", "2,1,0", "--target", "0", "--smoothing", "0.1", "--smoothing-mode", "x"],
     "smoothing-mode"),
    (["--logits", "inf,1", "--target", "0"], "logits[0]"),
    (["--logits", "-inf,-inf", "--target", "0"], "-inf"),
    (["--logits", "2,1,0"], "needs a target"),
    (["--logits", "2,1", "--target", "0", "--q", "0.5,0.5"], "--q"),
    (["--p", "0.5,0.5"], "--q"),
    (["--target", "0"], "--logits"),
    (["--bogus"], "--bogus"),
    (["--preset", "nope"], "--preset"),
    (["--preset", "soft-mismatch", "--target", "0"], "--preset"),
    (["--p", "1", "--q", "1", "--compare-mse"], "--compare-mse"),
    (["--p", "1", "--q", "1", "--double-softmax"], "--double-softmax"),
]


class Errors(Case):
    def test_one_line_and_exit_2(self):
        for args, fragment in ERRORS:
            with self.subTest(args=args):
                rc, out, err = run("explain", *args)
                self.assertEqual(rc, 2, err)
                self.assertEqual(out, "")
                self.assertTrue(err.startswith("xent: error: "), err)
                self.assertTrue(err.endswith("\n") and err.count("\n") == 1, repr(err))
                self.assertIn(fragment, err)

    def test_unknown_subcommand(self):
        rc, out, err = run("frobnicate")
        self.assertEqual(rc, 2)
        self.assertEqual(err.count("\n"), 1)


if __name__ == "__main__":
    XENT = sys.argv.pop(1)
    unittest.main(verbosity=1)
