#!/usr/bin/python3
"""`xent serve` under bad, huge and concurrent requests.

Starts the built binary on a free port of 127.0.0.1 (`--port 0`; the port is
read from its first line of output), speaks HTTP to it with the standard
library only, and stops it with SIGTERM at the end (also when a test fails).

Checked: every bad request (malformed JSON, wrong types, unknown fields,
out-of-range values, K above the cap, oversized or unsized bodies, deep
nesting, invalid UTF-8, bad uploads) gets a 4xx with a JSON {"error": ...}
that says what is wrong; the server never dies; its peak memory stays bounded
after all of it and under concurrent load; valid answers equal the closed
forms (Python's math) and `xent explain --json` / `xent eval --format json`
run as separate processes; the page and its assets are served with a
Content-Security-Policy and reference nothing outside the server.

Usage: test_server.py PATH/TO/xent
"""
import http.client
import json
import math
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

XENT = None
SERVER = None
PORT = None
SERVER_LOG = None
# Set by CTest in a -DXENT_SANITIZE=ON build: ASan's shadow memory and
# quarantine make resident memory meaningless and every request ~10x slower,
# so the load tests shrink and the memory bounds are not asserted; the
# sanitizer report itself (the server's stderr) is checked instead.
SANITIZED = os.environ.get("XENT_SERVE_SANITIZED", "").upper() in ("1", "ON", "TRUE", "YES")


def start_server(stderr=subprocess.PIPE):
    proc = subprocess.Popen([XENT, "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=stderr, text=True)
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"xent serve did not start: {line!r}")
    return proc, int(m.group(1))


def request(method, path, body=None, headers=None, timeout=None):
    if timeout is None:
        timeout = 300 if SANITIZED else 30
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        data = res.read()
        return res.status, dict(res.getheaders()), data
    finally:
        conn.close()


def post(path, body, **kw):
    status, headers, data = request("POST", path, body, {"Content-Type": "application/json"}, **kw)
    return status, json.loads(data)


def cli_json(*args):
    out = subprocess.run([XENT, *args], capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)


def rss_kib(kind="VmHWM"):
    with open(f"/proc/{SERVER.pid}/status") as f:
        for line in f:
            if line.startswith(kind + ":"):
                return int(line.split()[1])
    return 0


def npy_bytes(descr, shape, payload):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else ""))
    pad = 64 - (10 + len(header) + 1) % 64
    header += " " * (pad % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def multipart(fields):
    boundary = "----xent%d" % random.getrandbits(40)
    parts = []
    for name, (filename, content) in fields.items():
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        parts.append(f"--{boundary}\r\nContent-Disposition: {disp}\r\n"
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


class Values(unittest.TestCase):
    """Valid requests: the numbers of the library, through HTTP."""

    def test_discrete_against_closed_form_and_cli(self):
        p, q = [0.6, 0.3, 0.1], [0.5, 0.3, 0.2]
        status, j = post("/api/explain", {"p": p, "q": q})
        self.assertEqual(status, 200)
        h = -sum(a * math.log(a) for a in p)
        ce = -sum(a * math.log(b) for a, b in zip(p, q))
        self.assertAlmostEqual(j["entropy"], h, delta=1e-15)
        self.assertAlmostEqual(j["cross_entropy"], ce, delta=1e-15)
        self.assertAlmostEqual(j["kl"], ce - h, delta=1e-15)
        self.assertEqual(j, cli_json("explain", "--p", "0.6,0.3,0.1", "--q", "0.5,0.3,0.2", "--json"))

    def test_logits_bits_smoothing_mse_double_softmax_equal_cli(self):
        body = {"logits": [2, 1.2, 0.3, "-inf"], "target": 0, "smoothing": 0.1,
                "smoothing_mode": "off-target", "unit": "bits", "compare_mse": True,
                "double_softmax": True}
        status, j = post("/api/explain", body)
        self.assertEqual(status, 200, j)
        self.assertEqual(j, cli_json("explain", "--logits=2,1.2,0.3,-inf", "--target", "0",
                                     "--smoothing", "0.1", "--smoothing-mode", "off-target",
                                     "--bits", "--compare-mse", "--double-softmax", "--json"))
        # Off-target smoothing puts ε/(K−1) on the masked class: +inf, as the math says.
        self.assertEqual(j["loss"], "inf")
        # Closed form of a smoothed loss, in bits.
        status, j = post("/api/explain", {"logits": [2, 1.2, 0.3], "target": 0, "smoothing": 0.1,
                                          "smoothing_mode": "off-target", "unit": "bits"})
        z = [2, 1.2, 0.3]
        lse = math.log(sum(math.exp(v) for v in z))
        t = [0.9, 0.05, 0.05]
        loss = sum(ti * (lse - zi) for ti, zi in zip(t, z)) / math.log(2)
        self.assertAlmostEqual(j["loss"], loss, delta=1e-14)

    def test_presets_and_compact(self):
        status, headers, data = request("GET", "/api/presets")
        self.assertEqual(status, 200)
        names = [p["name"] for p in json.loads(data)["presets"]]
        self.assertEqual(names, ["matched-soft", "diffuse-one-hot", "overconfident-wrong", "soft-mismatch"])
        for name in names:
            status, j = post("/api/explain", {"preset": name})
            self.assertEqual(status, 200)
            self.assertEqual(j, cli_json("explain", "--preset", name, "--json"))
        status, full = post("/api/explain", {"logits": [1, 2, 3], "target": 2})
        status, compact = post("/api/explain", {"logits": [1, 2, 3], "target": 2, "compact": True})
        self.assertEqual(compact["loss_terms"], [r["loss_term"] for r in full["rows"]])
        self.assertNotIn("rows", compact)

    def test_compact_text_equals_cli(self):
        # The compact answer is written by its own serializer (api.cc,
        # compact_text): every number must be the CLI's double, every field
        # the CLI's field, for hard, soft, smoothed, masked and extra cases.
        rng = random.Random(7)
        z = [round(rng.uniform(-6, 6), 3) for _ in range(300)]
        soft = [rng.random() for _ in z]
        soft = [v / sum(soft) for v in soft]
        zs = ",".join(map(repr, z))
        cases = [
            ({"target": 17}, ["--target", "17"]),
            ({"target": 3, "unit": "bits"}, ["--target", "3", "--bits"]),
            ({"p": soft}, ["--p", ",".join(map(repr, soft))]),
            ({"target": 5, "smoothing": 0.1, "smoothing_mode": "off-target", "compare_mse": True,
              "double_softmax": True},
             ["--target", "5", "--smoothing", "0.1", "--smoothing-mode", "off-target",
              "--compare-mse", "--double-softmax"]),
        ]
        for extra, args in cases:
            status, compact = post("/api/explain", {"logits": z, "compact": True, **extra})
            self.assertEqual(status, 200, compact)
            want = cli_json("explain", "--logits", zs, *args, "--json")
            want["loss_terms"] = [w["loss_term"] for w in want.pop("rows")]
            self.assertEqual(compact, want, extra)
        # A masked class: -inf logit, zero probability, "-inf" in the text.
        status, compact = post("/api/explain", {"logits": [1, "-inf", 0.5], "target": 0, "compact": True})
        want = cli_json("explain", "--logits", "1,-inf,0.5", "--target", "0", "--json")
        want["loss_terms"] = [w["loss_term"] for w in want.pop("rows")]
        self.assertEqual(compact, want)
        self.assertEqual(compact["logits"][1], "-inf")
        # The same through a batch.
        status, j = post("/api/batch", {"requests": [{"logits": z, "target": 17, "compact": True},
                                                     {"p": [0.5, 0.5], "q": [0.9, 0.1]}]})
        self.assertEqual(status, 200, j)
        self.assertEqual(j["results"][1], cli_json("explain", "--p", "0.5,0.5", "--q", "0.9,0.1", "--json"))
        self.assertEqual(j["results"][0]["loss"], cli_json("explain", "--logits", zs, "--target", "17", "--json")["loss"])

    def test_curve_closed_forms(self):
        status, j = post("/api/curve", {"p": 0.2, "samples": 11, "unit": "bits"})
        self.assertEqual(status, 200)
        a = j["at"]
        self.assertAlmostEqual(a["neg_log_p"], -math.log2(0.2), delta=1e-15)
        self.assertAlmostEqual(a["neg_log_1mp"], -math.log2(0.8), delta=1e-15)
        self.assertAlmostEqual(a["slope_y1"], -1 / 0.2 / math.log(2), delta=1e-13)
        self.assertLess(a["slope_fd_rel_error"], 1e-6)
        self.assertAlmostEqual(a["logit_grad_y1"], (0.2 - 1) / math.log(2), delta=1e-15)
        self.assertEqual(len(j["points"]), 11)
        for p, y1, y0 in j["points"]:
            self.assertAlmostEqual(y1, -math.log2(p), delta=1e-14)
            self.assertAlmostEqual(y0, -math.log2(1 - p), delta=1e-14)

    def test_k_at_the_cap_is_accepted(self):
        k = 100000
        status, j = post("/api/explain", {"logits": [0.0] * k, "target": 7, "compact": True})
        self.assertEqual(status, 200)
        self.assertAlmostEqual(j["loss"], math.log(k), delta=1e-12)


class BadRequests(unittest.TestCase):
    def bad(self, body, status, pattern, path="/api/explain"):
        got, headers, data = request("POST", path, body, {"Content-Type": "application/json"})
        self.assertEqual(got, status, data[:300])
        self.assertTrue(headers.get("Content-Type", "").startswith("application/json"))
        err = json.loads(data)["error"]
        self.assertRegex(err, pattern)
        return err

    def test_malformed_json(self):
        self.bad("{bad", 400, r"bad JSON.*line 1, column 2")
        self.bad("", 400, r"bad JSON")
        self.bad("[1, 2]", 400, r"must be a JSON object")
        self.bad('{"p": [0.5, 0.5], "q": [0.5, 0.5]} trailing', 400, r"bad JSON")
        self.bad("[" * 5000 + "]" * 5000, 400, r"nested deeper")

    def test_wrong_fields_and_types(self):
        self.bad({"logit": [1, 2], "target": 0}, 400, r"unknown field 'logit'")
        self.bad({"logits": "1,2", "target": 0}, 400, r"logits: expected an array")
        self.bad({"logits": [1, "x"], "target": 0}, 400, r"logits\[1\]: expected a number")
        self.bad({"logits": [1, 2], "target": 0.5}, 400, r"target: expected a class index")
        self.bad({"logits": [1, 2], "target": -1}, 400, r"target: expected a class index")
        self.bad({"logits": [1, 2], "target": 0, "unit": "bytes"}, 400, r"unit")
        self.bad({"logits": [1, 2]}, 400, r"needs a target")
        self.bad({"logits": [], "target": 0}, 400, r"empty")
        self.bad({"p": [1]}, 400, r"give p and q")
        self.bad({"preset": "nope"}, 400, r"unknown preset 'nope'")
        self.bad({"logits": [1, 2], "target": 0, "compare_mse": "yes"}, 400, r"compare_mse")
        # Invalid UTF-8 in a field name: still a clean JSON error (replacement characters).
        err = self.bad(b'{"\xff\xfe": 1}', 400, r"bad JSON|unknown field")
        self.assertIsInstance(err, str)

    def test_out_of_range_values_name_the_problem(self):
        self.bad({"logits": [1, 2], "target": 5}, 400, r"class 5 is out of range")
        self.bad({"logits": [1, 2], "target": 0, "smoothing": 1.5}, 400, r"1\.5")
        self.bad({"p": [0.5, 0.6], "q": [0.5, 0.5]}, 400, r"sum|distribution")
        self.bad({"p": [0.5, 0.5], "q": [0.5, 0.5, 0.0]}, 400, r"length|shape|size|3")
        self.bad({"logits": [1, "inf"], "target": 0}, 400, r"inf")
        self.bad({"logits": ["-inf", "-inf"], "target": 0}, 400, r"-inf|undefined|all")
        self.bad({"p": 0}, 400, r"p: outside|outside \(0, 1\)", path="/api/curve")
        self.bad({"p": 1.0}, 400, r"outside \(0, 1\)", path="/api/curve")
        self.bad({"p": 0.5, "samples": 10 ** 6}, 400, r"samples", path="/api/curve")

    def test_huge_k_is_refused(self):
        self.bad({"logits": [0] * 100001, "target": 0}, 400, r"100001 entries.*at most 100000")
        self.bad({"requests": [{"logits": [0], "target": 0}] * 513}, 400, r"513 requests", path="/api/batch")
        self.bad({"requests": [{"logits": [0] * 60000, "target": 0}] * 2}, 400, r"120000 classes",
                 path="/api/batch")
        # Under the byte limit, over the count of JSON values.
        self.bad("[" + ",".join(["0"] * 1_100_000) + "]", 413, r"more than 300000 JSON values")

    def test_body_limits(self):
        # Announced as 9 MiB: refused from the headers, before any body is sent.
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        conn.putrequest("POST", "/api/explain")
        conn.putheader("Content-Length", str(9 << 20))
        conn.endheaders()
        res = conn.getresponse()
        self.assertEqual(res.status, 413)
        self.assertRegex(json.loads(res.read())["error"], r"at most 8 MiB")
        conn.close()
        # No Content-Length (chunked): refused too.
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        conn.request("POST", "/api/explain", body=iter([b'{"p": [1], "q": [1]}']),
                     headers={"Transfer-Encoding": "chunked"})
        res = conn.getresponse()
        self.assertEqual(res.status, 411)
        self.assertIn("error", json.loads(res.read()))
        conn.close()

    def test_other_host_names_are_refused(self):
        # DNS rebinding: a page of another site resolving its name to 127.0.0.1.
        status, _, data = request("GET", "/api/version", headers={"Host": f"evil.example:{PORT}"})
        self.assertEqual(status, 403)
        self.assertRegex(json.loads(data)["error"], "localhost only")
        status, _, _ = request("GET", "/api/version", headers={"Host": f"localhost:{PORT}"})
        self.assertEqual(status, 200)

    def test_unknown_routes_and_methods(self):
        status, headers, data = request("GET", "/no/such/file")
        self.assertEqual(status, 404)
        self.assertRegex(json.loads(data)["error"], "not found")
        status, headers, data = request("DELETE", "/api/explain")
        self.assertGreaterEqual(status, 400)
        self.assertLess(status, 500)


class Upload(unittest.TestCase):
    def test_eval_equals_cli(self):
        rnd = random.Random(7)
        n, v = 64, 5
        logits = [rnd.gauss(0, 2) for _ in range(n * v)]
        targets = [rnd.randrange(v) for _ in range(n)]
        lb = npy_bytes("<f4", [n, v], struct.pack(f"<{n * v}f", *logits))
        tb = npy_bytes("<i8", [n], struct.pack(f"<{n}q", *targets))
        body, headers = multipart({"logits": ("val.npy", lb), "targets": ("labels.npy", tb),
                                   "bins": (None, b"7")})
        status, _, data = request("POST", "/api/eval", body, headers)
        self.assertEqual(status, 200, data[:300])
        j = json.loads(data)
        with tempfile.TemporaryDirectory() as d:
            for name, content in (("val.npy", lb), ("labels.npy", tb)):
                with open(os.path.join(d, name), "wb") as f:
                    f.write(content)
            ref = cli_json("eval", "--logits", os.path.join(d, "val.npy"), "--targets",
                           os.path.join(d, "labels.npy"), "--bins", "7", "--format", "json")
        self.assertEqual(j["inputs"]["logits"], "val.npy")
        for key in ("loss_nats", "accuracy", "ece", "brier", "reliability", "highest_loss_rows", "per_class"):
            self.assertEqual(j[key], ref[key], key)

    def test_bad_uploads(self):
        lb = npy_bytes("<f4", [2, 2], struct.pack("<4f", 1, 2, 3, 4))
        cases = [
            ({"logits": ("a.npy", lb)}, 400, r"targets"),
            ({"logits": ("a.npy", lb), "targets": ("t.npy", b"not an npy file")}, 400, r"^t\.npy: .*magic|^t\.npy"),
            ({"logits": ("a.npy", lb), "targets": ("t.npy", npy_bytes("<i8", [3], struct.pack("<3q", 0, 1, 0)))},
             400, r"rows|3|2"),
            ({"logits": ("a.npy", lb), "targets": ("t.npy", npy_bytes("<i8", [2], struct.pack("<2q", 0, 9)))},
             400, r"9"),
            ({"logits": ("a.npy", lb), "targets": ("t.npy", lb), "bins": (None, b"0")}, 400, r"bins"),
            ({"weights": ("w.npy", lb)}, 400, r"unknown field 'weights'"),
        ]
        for fields, status, pattern in cases:
            body, headers = multipart(fields)
            got, _, data = request("POST", "/api/eval", body, headers)
            self.assertEqual(got, status, (fields.keys(), data[:200]))
            err = json.loads(data)["error"]
            self.assertRegex(err, pattern)
            self.assertNotIn("xent-serve-", err)  # the upload's name, not the temporary path
        got, _, data = request("POST", "/api/eval", b"{}", {"Content-Type": "application/json"})
        self.assertEqual(got, 400)


class Load(unittest.TestCase):
    def test_many_clients_at_the_class_cap(self):
        # Eight clients at K = 100000 at once: the work budget admits two at a time.
        body = {"logits": [0.0] * 100000, "target": 1}
        results = []

        def one():
            results.append(post("/api/explain", body, timeout=120)[0])

        threads = [threading.Thread(target=one) for _ in range(3 if SANITIZED else 8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        self.assertEqual(results, [200] * len(threads))
        if SANITIZED:
            return
        peak = rss_kib()
        print(f"\nserver peak RSS after 8 concurrent K = 100000 requests: {peak / 1024:.0f} MiB",
              file=sys.stderr)
        self.assertLess(peak, 512 * 1024)

    def test_concurrent_requests_and_bounded_memory(self):
        rnd = random.Random(3)
        z = [rnd.uniform(-5, 5) for _ in range(1000)]
        _, reference = post("/api/explain", {"logits": z, "target": 3})
        errors = []

        def worker(i):
            try:
                for j in range(5 if SANITIZED else 25):
                    kind = (i + j) % 4
                    if kind == 0:
                        s, r = post("/api/explain", {"logits": z, "target": 3})
                        if s != 200 or r != reference:
                            errors.append(f"valid request {i}/{j}: {s}")
                    elif kind == 1:
                        s, r = post("/api/explain", {"logits": z, "target": 5000})
                        if s != 400:
                            errors.append(f"bad target {i}/{j}: {s}")
                    elif kind == 2:
                        s, _, _ = request("POST", "/api/explain", "{" * 50,
                                          {"Content-Type": "application/json"})
                        if s != 400:
                            errors.append(f"bad JSON {i}/{j}: {s}")
                    else:
                        s, r = post("/api/batch", {"requests": [{"logits": z, "target": 1}] * 20})
                        if s != 200 or len(r["results"]) != 20:
                            errors.append(f"batch {i}/{j}: {s}")
            except Exception as e:  # a dropped connection is a failure too
                errors.append(f"worker {i}: {e!r}")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        self.assertEqual(errors, [])
        self.assertIsNone(SERVER.poll(), "the server died")
        if SANITIZED:
            return
        # Peak resident memory after everything above (huge-K, 8 MiB bodies,
        # million-value arrays, concurrency): bounded, well under 1 GiB.
        peak = rss_kib()
        print(f"\nserver peak RSS: {peak / 1024:.0f} MiB", file=sys.stderr)
        self.assertLess(peak, 512 * 1024)


class Page(unittest.TestCase):
    def test_page_and_assets_are_local(self):
        status, headers, html = request("GET", "/")
        self.assertEqual(status, 200)
        self.assertIn("default-src 'self'", headers["Content-Security-Policy"])
        html = html.decode()
        self.assertIn("Cross-entropy explorer", html)
        refs = re.findall(r'(?:src|href)="([^"]+)"', html)
        self.assertTrue(refs)
        for ref in refs:
            if ref.startswith("#"):
                continue
            self.assertTrue(ref.startswith("/"), ref)
            s, h, data = request("GET", ref)
            self.assertEqual(s, 200, ref)
            if ref.endswith(".js"):
                self.assertIn("javascript", h["Content-Type"])
                for imp in re.findall(r"from '([^']+)'", data.decode()):
                    self.assertTrue(imp.startswith("./"), imp)
                    self.assertEqual(request("GET", "/" + imp[2:])[0], 200, imp)
            self.assertNotRegex(data.decode(errors="replace"), r"https?://(?!www\.w3\.org)")


class Lifecycle(unittest.TestCase):
    def test_port_in_use_is_a_clear_error(self):
        proc = subprocess.run([XENT, "serve", "--port", str(PORT)], capture_output=True, text=True,
                              timeout=20)
        self.assertEqual(proc.returncode, 2)
        self.assertRegex(proc.stderr, r"xent: error: cannot listen on 127\.0\.0\.1:%d" % PORT)

    def test_sigterm_stops_a_server(self):
        proc, port = start_server()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/api/version")
            self.assertEqual(c.getresponse().status, 200)
            c.close()
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=10), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()


if __name__ == "__main__":
    XENT = sys.argv.pop(1)
    SERVER_LOG = tempfile.TemporaryFile(mode="w+")
    SERVER, PORT = start_server(stderr=SERVER_LOG)
    try:
        ok = unittest.main(exit=False, verbosity=2).result.wasSuccessful()
        print(f"server peak RSS at the end: {rss_kib() / 1024:.0f} MiB", file=sys.stderr)
        ok = ok and SERVER.poll() is None  # alive after everything
    finally:
        SERVER.send_signal(signal.SIGTERM)
        try:
            SERVER.wait(timeout=10)
        except subprocess.TimeoutExpired:
            SERVER.kill()
            SERVER.wait()
        SERVER.stdout.close()
    SERVER_LOG.seek(0)
    log = SERVER_LOG.read()
    if re.search(r"Sanitizer|runtime error|terminate called", log):
        print("the server's stderr reports an error:\n" + log, file=sys.stderr)
        ok = False
    sys.exit(0 if ok else 1)
