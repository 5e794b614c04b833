#!/usr/bin/env python3
"""`xent demo` as a user runs it: on the default digits set (quick mode, so
CTest stays fast), on another CSV, and on bad data. Checks that the reported
numbers are consistent with what they claim to measure (probabilities in
range, verdicts agree with the numbers printed), that the SVG is well-formed
and labelled, and that errors are one line with exit code 2.

Usage: test_demo.py PATH/TO/xent
"""
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

XENT = sys.argv[1]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(*args):
    p = subprocess.run([XENT, *args], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


tmp = tempfile.mkdtemp(prefix="xent_demo_")
DIGITS = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"

if os.path.exists(DIGITS):
    svg = f"{tmp}/r.svg"
    rc, out, err = run("demo", "--quick", "--json", "--report", svg)
    check(rc == 0, f"demo rc {rc}: {err}")
    j = json.loads(out)
    check(j["data"]["rows"] == 1797 and j["data"]["classes"] == 10 and j["data"]["features"] == 64, "digits shape")
    check(j["data"]["test_rows"] == round(0.2 * 1797), "held-out split size")
    runs = j["runs"]
    check([r["objective"] for r in runs] == ["cross-entropy", "MSE on softmax", "CE + smoothing"], "three objectives")
    for r in runs:
        for k in ("test_accuracy", "ece", "mean_confidence"):
            check(0 <= r[k] <= 1, f"{r['objective']} {k} in [0,1]")
        check(0 <= r["brier"] <= 2, "brier in [0,2]")
        check(r["test_nll_nats"] > 0, "nll > 0")
    # Softmax regression on digits is well above chance after 5 epochs.
    check(runs[0]["test_accuracy"] > 0.85, f"CE test accuracy {runs[0]['test_accuracy']}")
    # Verdicts must agree with the numbers.
    v = {x["claim"]: x for x in j["verdicts"]}
    ce, mse, ls = runs
    smooth = [x for x in j["verdicts"] if "calibration" in x["claim"]][0]
    check(smooth["holds"] == (ls["ece"] < ce["ece"]), "ECE verdict matches numbers")
    faster = [x for x in j["verdicts"] if "fewer steps" in x["claim"]][0]
    a, b = ce["steps_to_target"], mse["steps_to_target"]
    check(faster["holds"] == (a >= 0 and (b < 0 or a < b)), "speed verdict matches numbers")
    # The same seed gives the same numbers.
    rc2, out2, _ = run("demo", "--quick", "--json", "--report", svg)
    j2 = json.loads(out2)
    check([r["test_nll_nats"] for r in j2["runs"]] == [r["test_nll_nats"] for r in runs], "deterministic")
    # SVG: well-formed, titled, axes labelled, legend present.
    root = ET.parse(svg).getroot()
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    check(root.find("{http://www.w3.org/2000/svg}title") is not None, "svg title")
    for needle in ("step", "nats", "confidence", "accuracy", "cross-entropy", "MSE on softmax", "CE + smoothing"):
        check(needle in texts, f"svg mentions {needle!r}")
    # Text mode prints the table and a verdict line per claim.
    rc, out, err = run("demo", "--quick", "--report", svg)
    check(rc == 0 and "steps to 90%" in out and out.count("[yes]") + out.count("[no] ") == 4, "text table + verdicts")
else:
    print("skip default-data checks: python3-sklearn not installed")

# Another data set: a small CSV with a header and text labels.
with open(f"{tmp}/toy.csv", "w") as f:
    f.write("x1,x2,label\n")
    import random
    random.seed(1)
    for i in range(200):
        c = i % 2
        f.write(f"{random.gauss(2 * c, 1):.4f},{random.gauss(-c, 1):.4f},{'cat' if c else 'dog'}\n")
rc, out, err = run("demo", "--quick", "--json", "--data", f"{tmp}/toy.csv", "--report", f"{tmp}/toy.svg")
check(rc == 0, f"toy csv rc {rc}: {err}")
if rc == 0:
    j = json.loads(out)
    check(j["data"]["classes"] == 2 and j["data"]["features"] == 2 and j["data"]["rows"] == 200, "toy shape")

# Bad data: one line, exit 2, names the file.
with open(f"{tmp}/bad.csv", "w") as f:
    f.write("1,2,a\n3,x,b\n")
with open(f"{tmp}/ragged.csv", "w") as f:
    f.write("1,2,a\n3,b\n")
for path, needle in [(f"{tmp}/bad.csv", "bad.csv:2"), (f"{tmp}/ragged.csv", "ragged.csv:2"),
                     (f"{tmp}/nope.csv", "nope.csv")]:
    rc, out, err = run("demo", "--data", path, "--report", f"{tmp}/x.svg")
    check(rc == 2 and err.startswith("xent: error:") and err.count("\n") == 1 and needle in err,
          f"{path}: rc {rc} err {err!r}")

print(f"{'FAILED' if failures else 'ok'}: test_demo ({len(failures)} failures)")
sys.exit(1 if failures else 0)
