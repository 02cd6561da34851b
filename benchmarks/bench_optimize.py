#!/usr/bin/env python3
"""Benchmark of the tool itself (not a test): optimize time and peak memory,
scaling with the number of rewritable nodes, and the quality of the output
(onnxruntime CPU latency and MACs before/after).

    python benchmarks/bench_optimize.py [--models models/*.onnx] [--scale 10,100,1000,5000]
                                        [--repeats 5] [--skip-models] [--skip-scale] [--skip-memory]
                                        [--memory-channels 600] [--memory-baseline CHECKOUT]
                                        [--memory-external-gb 2.5]

Every time is a median over interleaved repeated runs.  Peak memory is the
child process's peak RSS, VmHWM (each optimize runs in a fresh subprocess);
the memory table runs `cli.py optimize` as a user does (load and save included).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from convrewrite import optimize  # noqa: E402
from convrewrite.core.equivalence import random_feeds, runtime_inputs  # noqa: E402
from convrewrite.core.cost import model_macs  # noqa: E402

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from convrewrite import optimize
t = time.perf_counter()
model, report = optimize(sys.argv[2], verify=sys.argv[3] == "1")
seconds = time.perf_counter() - t
# VmHWM: this process's peak resident set (ru_maxrss would carry the
# parent's high-water mark across fork + exec)
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak, "rewritten": report.rewritten}))
"""

ONNXSIM_CHILD = r"""
import sys, time, onnx, onnxsim
m = onnx.load(sys.argv[1]); t = time.perf_counter(); onnxsim.simplify(m); print(time.perf_counter() - t)
"""


def child_optimize(path: str, verify: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, ROOT, path, "1" if verify else "0"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def onnxsim_seconds(path: str):
    import importlib.util

    if importlib.util.find_spec("onnxsim") is None:  # imported only in the child
        return None
    out = subprocess.run([sys.executable, "-c", ONNXSIM_CHILD, path], capture_output=True, text=True)
    return float(out.stdout.strip()) if out.returncode == 0 else None


def ort_latency_pair(a: onnx.ModelProto, b: onnx.ModelProto, repeats: int, inner: int = 20):
    """Median per-run latency (ms) of a and b, measured interleaved."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sa = ort.InferenceSession(a.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    sb = ort.InferenceSession(b.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = random_feeds(runtime_inputs(a), seed=0, batch=1)
    for s in (sa, sb):
        s.run(None, feeds)
    ta, tb = [], []
    for _ in range(repeats):
        for s, acc in ((sa, ta), (sb, tb)):
            t = time.perf_counter()
            for _ in range(inner):
                s.run(None, feeds)
            acc.append((time.perf_counter() - t) / inner * 1000)
    return statistics.median(ta), statistics.median(tb)


def bench_models(paths, repeats):
    print("\n## Sample models: optimize time, peak memory, output quality")
    print("| model | size MB | rewritten | optimize s (verify) | optimize s (no verify) | peak MB | onnxsim s "
          "| ORT ms before | ORT ms after | MACs before | MACs after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        runs_v, runs_n = [], []
        for _ in range(repeats):  # interleaved
            runs_v.append(child_optimize(path, True))
            runs_n.append(child_optimize(path, False))
        sim = onnxsim_seconds(path)
        original = onnx.load(path)
        rewritten, _ = optimize(original)
        before, after = ort_latency_pair(original, rewritten, repeats)
        print(f"| {os.path.basename(path)} | {os.path.getsize(path) / 1e6:.2f} | {runs_v[0]['rewritten']} "
              f"| {statistics.median(r['seconds'] for r in runs_v):.2f} "
              f"| {statistics.median(r['seconds'] for r in runs_n):.2f} "
              f"| {max(r['peak_mb'] for r in runs_v):.0f} | {'-' if sim is None else f'{sim:.2f}'} "
              f"| {before:.3f} | {after:.3f} | {model_macs(original)} | {model_macs(rewritten)} |")


def synthetic(n_blocks: int) -> onnx.ModelProto:
    """A chain of n blocks, each ConvTranspose 2x2/s2 -> Conv 2x2/s2 (back to
    8x8), every third block with a dilated 3x3 Conv: n_blocks + n/3 candidates."""
    rng = np.random.default_rng(0)
    c = 4
    nodes, inits = [], []
    x = "x"
    for k in range(n_blocks):
        wt = numpy_helper.from_array(rng.standard_normal((c, c, 2, 2)).astype(np.float32) * 0.3, f"wt{k}")
        wc = numpy_helper.from_array(rng.standard_normal((c, c, 2, 2)).astype(np.float32) * 0.3, f"wc{k}")
        inits += [wt, wc]
        nodes.append(helper.make_node("ConvTranspose", [x, wt.name], [f"u{k}"], name=f"up{k}", strides=[2, 2]))
        nodes.append(helper.make_node("Conv", [f"u{k}", wc.name], [f"d{k}"], name=f"down{k}", strides=[2, 2]))
        x = f"d{k}"
        if k % 3 == 2:
            wd = numpy_helper.from_array(rng.standard_normal((c, c, 3, 3)).astype(np.float32) * 0.2, f"wd{k}")
            inits.append(wd)
            nodes.append(helper.make_node("Conv", [x, wd.name], [f"a{k}"], name=f"atrous{k}",
                                          dilations=[2, 2], pads=[2, 2, 2, 2]))
            x = f"a{k}"
    g = helper.make_graph(nodes, "synthetic", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 8, 8])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, c, 8, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def bench_scale(sizes, repeats):
    print("\n## Scale: synthetic chains (ConvTranspose + dilated Conv candidates)")
    print("| candidates | nodes | optimize s (verify) | optimize s (no verify) | peak MB |")
    print("|---|---|---|---|---|")
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            blocks = max(1, round(n * 3 / 4))  # blocks + blocks/3 candidates ~ n
            m = synthetic(blocks)
            path = os.path.join(tmp, f"s{n}.onnx")
            onnx.save(m, path)
            cands = blocks + blocks // 3
            rv, rn = [], []
            for _ in range(repeats if n <= 1000 else 1):
                rv.append(child_optimize(path, True))
                rn.append(child_optimize(path, False))
            tv = statistics.median(r["seconds"] for r in rv)
            points.append((cands, tv))
            print(f"| {cands} | {len(m.graph.node)} | {tv:.2f} | {statistics.median(r['seconds'] for r in rn):.2f} "
                  f"| {max(r['peak_mb'] for r in rv):.0f} |")
    if len(points) >= 2:
        xs, ys = np.log([p[0] for p in points]), np.log([p[1] for p in points])
        slope = np.polyfit(xs[1:], ys[1:], 1)[0] if len(points) > 2 else np.polyfit(xs, ys, 1)[0]
        print(f"\nlog-log slope of time vs candidates (above the smallest size): {slope:.2f} (1.0 = linear)")


def large_weights(channels: int = 512, blocks: int = 6) -> onnx.ModelProto:
    """A decoder of large weights on a small map: per block a ConvTranspose
    4x4/s2/p1 and a dilated 3x3 Conv at stride 2 (channels 512: 157 MB)."""
    rng = np.random.default_rng(0)
    c, nodes, inits, x = channels, [], [], "x"
    for k in range(blocks):
        wt = numpy_helper.from_array((rng.standard_normal((c, c, 4, 4)) * 0.02).astype(np.float32), f"wt{k}")
        wc = numpy_helper.from_array((rng.standard_normal((c, c, 3, 3)) * 0.02).astype(np.float32), f"wc{k}")
        inits += [wt, wc]
        nodes.append(helper.make_node("ConvTranspose", [x, wt.name], [f"u{k}"], name=f"up{k}", strides=[2, 2],
                                      pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Conv", [f"u{k}", wc.name], [f"d{k}"], name=f"atrous{k}", strides=[2, 2],
                                      dilations=[2, 2], pads=[2, 2, 2, 2]))
        x = f"d{k}"
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, c, 4, 4]) for n in ("x", x)]
    g = helper.make_graph(nodes, "large_weights", io[:1], io[1:], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


CLI_CHILD = r"""
import json, runpy, sys, time
root, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
sys.argv = [root + "/cli.py", "optimize"] + sys.argv[3:]
t = time.perf_counter()
try:
    runpy.run_path(root + "/cli.py", run_name="__main__")
    code = 0
except SystemExit as e:
    code = e.code
seconds = time.perf_counter() - t
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
import resource
use = resource.getrusage(resource.RUSAGE_SELF)
open(out, "w").write(json.dumps({"seconds": seconds, "peak_mb": peak, "exit": code, "cpu": use.ru_utime + use.ru_stime}))
"""


def child_cli(root: str, model: str, verify: bool, tmp: str) -> dict:
    """`cli.py optimize MODEL -o OUT` of the checkout `root` in a fresh
    process, as a user runs it (load, optimize, save): its peak RSS (VmHWM)."""
    out, result = os.path.join(tmp, "out.onnx"), os.path.join(tmp, "result.json")
    args = [model, "-o", out, "--quiet"] + ([] if verify else ["--no-verify"])
    subprocess.run([sys.executable, "-c", CLI_CHILD, root, result] + args, check=True)
    with open(result) as f:
        return json.load(f)


def bench_memory(repeats, channels=600, blocks=6, baseline=None, external_gb=None):
    """Peak RSS of the whole process (`cli.py optimize`, load and save
    included) against the file size, with and without verification; with
    `baseline` (another checkout) the same commands there, interleaved.
    `external_gb`: also a model of that many GB with external data (written
    to a temporary folder, one run each way)."""
    print(f"\n## Memory: a model of large weights (large_weights(channels={channels}, blocks={blocks}))")
    cols = ["verify", "no verify"]
    head = [f"peak MB ({c})" for c in cols] + [f"peak / size ({c})" for c in cols] + [f"s ({c})" for c in cols]
    print("| checkout | model MB | " + " | ".join(head) + " |")
    print("|---" * (2 + len(head)) + "|")
    checkouts = [("this", ROOT)] + ([("baseline", baseline)] if baseline else [])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "large.onnx")
        onnx.save(large_weights(channels, blocks), path)
        size = os.path.getsize(path) / 2**20
        runs = {(name, v): [] for name, _ in checkouts for v in (True, False)}
        for _ in range(repeats):  # interleaved
            for name, root in checkouts:
                for v in (True, False):
                    runs[name, v].append(child_cli(root, path, v, tmp))
        for name, _ in checkouts:
            peaks = [max(r["peak_mb"] for r in runs[name, v]) for v in (True, False)]
            secs = [statistics.median(r["seconds"] for r in runs[name, v]) for v in (True, False)]
            print(f"| {name} | {size:.0f} | " + " | ".join(f"{p:.0f}" for p in peaks) + " | "
                  + " | ".join(f"{p / size:.2f}" for p in peaks) + " | " + " | ".join(f"{t:.1f}" for t in secs) + " |")
        print(f"\nspread over the {repeats} runs (min-max): peak MB, wall s, CPU s (user + system, median)")
        for name, _ in checkouts:
            for v in (True, False):
                p, t = [r["peak_mb"] for r in runs[name, v]], [r["seconds"] for r in runs[name, v]]
                c = [r["cpu"] for r in runs[name, v]]
                print(f"  {name} {'verify' if v else 'no verify'}: {min(p):.0f}-{max(p):.0f} MB, "
                      f"{min(t):.1f}-{max(t):.1f} s, CPU {min(c):.1f}-{max(c):.1f} s ({statistics.median(c):.1f})")
    if external_gb:
        bench_external(external_gb, checkouts)


def bench_external(gb: float, checkouts=(("this", ROOT),)):
    """A model of `gb` GB of weights saved with external data, optimized
    verified and unverified (one run each, each checkout): peak RSS and time."""
    blocks = 12
    channels = int((gb * 1e9 / (blocks * 25 * 4)) ** 0.5)
    print(f"\n## Memory: {gb} GB with external data (large_weights(channels={channels}, blocks={blocks}))")
    print("| checkout | model GB | run | peak GB | peak / size | s | CPU s | exit |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        path = os.path.join(tmp, "huge.onnx")
        m = large_weights(channels, blocks)
        onnx.save_model(m, path, save_as_external_data=True, location="huge.data")
        del m
        size = (os.path.getsize(path) + os.path.getsize(os.path.join(tmp, "huge.data"))) / 1e9
        for name, root in checkouts:
            for v in (True, False):
                r = child_cli(root, path, v, tmp)
                print(f"| {name} | {size:.2f} | {'verify' if v else 'no verify'} | {r['peak_mb'] * 2**20 / 1e9:.2f} "
                      f"| {r['peak_mb'] * 2**20 / 1e9 / size:.2f} | {r['seconds']:.0f} | {r['cpu']:.0f} | {r['exit']} |",
                      flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=sorted(glob.glob(os.path.join(ROOT, "models", "*.onnx"))))
    ap.add_argument("--scale", default="10,100,1000,5000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-models", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-channels", type=int, default=600, help="large_weights channels (600: 216 MB)")
    ap.add_argument("--memory-baseline", help="another convrewrite checkout measured alongside (before/after)")
    ap.add_argument("--memory-external-gb", type=float, help="also a model of this many GB with external data")
    a = ap.parse_args()
    models = [m for m in a.models if not m.endswith(".opt.onnx")]
    if not a.skip_models:
        bench_models(models, a.repeats)
    if not a.skip_scale:
        bench_scale([int(s) for s in a.scale.split(",")], a.repeats)
    if not a.skip_memory:
        bench_memory(a.repeats, a.memory_channels, baseline=a.memory_baseline, external_gb=a.memory_external_gb)


if __name__ == "__main__":
    main()
