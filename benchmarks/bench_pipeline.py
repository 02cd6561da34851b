#!/usr/bin/env python3
"""Benchmark of `python cli.py optimize` as a pipeline step, side by side
with onnxsim on the same model (issue 12, item 1).  Not a test.

    python benchmarks/bench_pipeline.py [--sizes 100,1000,5000,10000] [--repeats 5]
                                        [--large-repeats 1] [--no-onnxsim] [--keep DIR]
                                        [--baseline CHECKOUT]

The model: `chains` parallel chains of 10 blocks read the same input and are
summed at the end; a block is ConvTranspose 2x2/s2 -> Conv 2x2/s2 -> dilated
3x3 Conv (rate 2) -> Resize x2 (nearest, or linear with --resize linear)
-> Conv 2x2/s2 -> Relu, so three candidates and six nodes per block (1,000
candidates: 334 blocks in 34 chains, 2,005 nodes).

Every figure is the wall time of a fresh process, as a user runs it
(imports, load, save included), and its CPU time (user + system, all its
threads: steadier than wall time on a shared machine): `cli.py optimize` verified, `cli.py
optimize --no-verify`, and onnxsim's own command line (`python -m onnxsim
IN OUT`).  The three are run interleaved, `--repeats` times for sizes up to
1,000 candidates and `--large-repeats` times above; the table shows
medians.  onnxsim is an optional benchmark dependency (`pip install
onnxsim`); it is imported only in its child process.  The slope is the
least-squares slope of log(time) against log(nodes) over the sizes given.
`--baseline` names another checkout of convrewrite (e.g. `git worktree add
/tmp/before <commit>`) whose optimize, verified and not, runs interleaved
with the others, for a before/after comparison in the same run (wall and CPU
medians).  `--floor` times `optimize`, verified and not, on the same model
with nothing to rewrite (same node count, weights and file size: start-up,
imports, load, checker, shape inference, the original's run, save): what any
run on a model of that size costs before the first rewrite.  The last column is the machine's 1-minute load average when the
size's runs ended: on a shared machine, compare the CPU columns.

Each checkout's modules are byte-compiled first (`compileall`), as `pip
install` leaves them and as onnxsim's are: where PYTHONDONTWRITEBYTECODE is
set, a source checkout would otherwise compile every module on every run.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from bench_optimize import onnxsim_seconds  # noqa: E402

BLOCKS_PER_CHAIN = 10
CHANNELS, SIZE = 4, 8


def pipeline_model(candidates: int, resize: str = "nearest", plain: bool = False) -> onnx.ModelProto:
    """Parallel chains of BLOCKS_PER_CHAIN blocks (the last one shorter),
    three candidates per block: ConvTranspose, dilated Conv, Resize.
    `plain`: the same nodes, weights and file size with nothing to rewrite
    (a stride-1 Conv for the ConvTranspose, an undilated Conv, a Relu for
    the Resize, every map kept at SIZE x SIZE): the floor of a run."""
    rng = np.random.default_rng(0)
    blocks = max(1, math.ceil(candidates / 3))
    chains = math.ceil(blocks / BLOCKS_PER_CHAIN)
    c = CHANNELS
    nodes, inits, ends = [], [], []
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    inits.append(scales)

    def weight(name, shape, scale):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    k = 0
    for chain in range(chains):
        x = "x"
        for _ in range(min(BLOCKS_PER_CHAIN, blocks - chain * BLOCKS_PER_CHAIN)):
            p = f"c{chain}b{k}"
            if plain:
                same = dict(pads=[0, 0, 1, 1])   # a 2x2 kernel that keeps the map's size
                nodes += [
                    helper.make_node("Conv", [x, weight(f"{p}/wt", (c, c, 2, 2), 0.4)], [f"{p}/up"],
                                     name=f"{p}/deconv", **same),
                    helper.make_node("Conv", [f"{p}/up", weight(f"{p}/wd", (c, c, 2, 2), 0.4)], [f"{p}/down"],
                                     name=f"{p}/down", **same),
                    helper.make_node("Conv", [f"{p}/down", weight(f"{p}/wa", (c, c, 3, 3), 0.2)],
                                     [f"{p}/atrous"], name=f"{p}/atrous", pads=[1, 1, 1, 1]),
                    helper.make_node("Relu", [f"{p}/atrous"], [f"{p}/resized"], name=f"{p}/resize"),
                    helper.make_node("Conv", [f"{p}/resized", weight(f"{p}/wr", (c, c, 2, 2), 0.4)], [f"{p}/pre"],
                                     name=f"{p}/down2", **same),
                    helper.make_node("Relu", [f"{p}/pre"], [f"{p}/out"], name=f"{p}/relu"),
                ]
                x = f"{p}/out"
                k += 1
                continue
            nodes += [
                helper.make_node("ConvTranspose", [x, weight(f"{p}/wt", (c, c, 2, 2), 0.4)], [f"{p}/up"],
                                 name=f"{p}/deconv", strides=[2, 2]),
                helper.make_node("Conv", [f"{p}/up", weight(f"{p}/wd", (c, c, 2, 2), 0.4)], [f"{p}/down"],
                                 name=f"{p}/down", strides=[2, 2]),
                helper.make_node("Conv", [f"{p}/down", weight(f"{p}/wa", (c, c, 3, 3), 0.2)], [f"{p}/atrous"],
                                 name=f"{p}/atrous", dilations=[2, 2], pads=[2, 2, 2, 2]),
                helper.make_node("Resize", [f"{p}/atrous", "", "scales"], [f"{p}/resized"], name=f"{p}/resize",
                                 mode=resize),
                helper.make_node("Conv", [f"{p}/resized", weight(f"{p}/wr", (c, c, 2, 2), 0.4)], [f"{p}/pre"],
                                 name=f"{p}/down2", strides=[2, 2]),
                helper.make_node("Relu", [f"{p}/pre"], [f"{p}/out"], name=f"{p}/relu"),
            ]
            x = f"{p}/out"
            k += 1
        ends.append(x)
    nodes.append(helper.make_node("Sum", ends, ["y"], name="sum"))
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, c, SIZE, SIZE]) for n in ("x", "y")]
    g = helper.make_graph(nodes, "pipeline", io[:1], io[1:], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def timed(cmd: list) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the child and its threads)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def optimize_cmd(path: str, out: str, verify: bool, report: str, root: str = ROOT) -> list:
    cmd = [sys.executable, os.path.join(root, "cli.py"), "optimize", path, "-o", out, "--force", "--report", report]
    return cmd + ([] if verify else ["--no-verify"])


def compiled(root: str) -> None:
    """Byte-compile a checkout's modules, as an installed package has them."""
    paths = [os.path.join(root, p) for p in ("convrewrite", "passes", "cli.py")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *paths], check=True, capture_output=True)


def bench(sizes, repeats, large_repeats, resize, use_onnxsim, keep, baseline=None, floor=False):
    have_onnxsim = use_onnxsim and importlib.util.find_spec("onnxsim") is not None
    for root in [ROOT] + ([baseline] if baseline else []):
        compiled(root)
    print(f"python {sys.version.split()[0]}, onnx {onnx.__version__}, {os.cpu_count()} cores; "
          f"wall time of a fresh process, median of interleaved runs; Resize mode {resize}")
    print("| candidates | nodes | rewritten | optimize s (verify) | optimize s (no verify) | onnxsim s (CLI) "
          "| onnxsim s (simplify only) | verify / onnxsim | no verify / onnxsim | runs "
          "| CPU s: verify / no verify / onnxsim | CPU ratios to onnxsim |"
          + (" baseline s (verify) | baseline s (no verify) | baseline CPU s: verify / no verify |"
             if baseline else "")
          + (" floor s (nothing to rewrite): verify / no verify | floor CPU s: verify / no verify |"
             if floor else "") + " load average |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if baseline else "")
          + ("---|---|" if floor else "") + "---|")
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        where = keep or tmp
        os.makedirs(where, exist_ok=True)
        for n in sizes:
            m = pipeline_model(n, resize)
            path = os.path.join(where, f"pipeline_{n}.onnx")
            onnx.save(m, path)
            plain = os.path.join(where, f"plain_{n}.onnx")
            if floor:
                onnx.save(pipeline_model(n, resize, plain=True), plain)
            out, report = os.path.join(where, "out.onnx"), os.path.join(where, "report.json")
            runs = repeats if n <= 1000 else large_repeats
            tv, tn, ts, bv, bn, fv, fn = [], [], [], [], [], [], []
            for _ in range(runs):  # interleaved, so load on the machine hits all three alike
                tv.append(timed(optimize_cmd(path, out, True, report)))
                with open(report) as f:
                    rep = json.load(f)
                tn.append(timed(optimize_cmd(path, out, False, report)))
                if have_onnxsim:
                    ts.append(timed([sys.executable, "-m", "onnxsim", path, os.path.join(where, "sim.onnx")]))
                if baseline:
                    bv.append(timed(optimize_cmd(path, out, True, os.path.join(where, "b.json"), baseline)))
                    bn.append(timed(optimize_cmd(path, out, False, os.path.join(where, "b.json"), baseline)))
                if floor:
                    fv.append(timed(optimize_cmd(plain, out, True, os.path.join(where, "f.json"))))
                    fn.append(timed(optimize_cmd(plain, out, False, os.path.join(where, "f.json"))))
            candidates = len(rep["rewrites"])
            rewritten = sum(r["status"] == "rewritten" for r in rep["rewrites"])
            v, nv = (statistics.median(t[0] for t in tv), statistics.median(t[0] for t in tn))
            cv, cn = (statistics.median(t[1] for t in tv), statistics.median(t[1] for t in tn))
            s = statistics.median(t[0] for t in ts) if ts else None
            cs = statistics.median(t[1] for t in ts) if ts else None
            inner = onnxsim_seconds(path) if have_onnxsim else None
            points.append((len(m.graph.node), v, nv, cv, cn))
            ratio = (lambda a: f"{a / s:.2f}") if s else (lambda a: "-")
            cpu_ratio = f"{cv / cs:.2f} / {cn / cs:.2f}" if cs else "-"
            print(f"| {candidates} | {len(m.graph.node)} | {rewritten} | {v:.2f} | {nv:.2f} "
                  f"| {'-' if s is None else f'{s:.2f}'} | {'-' if inner is None else f'{inner:.2f}'} "
                  f"| {ratio(v)} | {ratio(nv)} | {runs} "
                  f"| {cv:.2f} / {cn:.2f} / {'-' if cs is None else f'{cs:.2f}'} | {cpu_ratio} |"
                  + (f" {statistics.median(t[0] for t in bv):.2f} | {statistics.median(t[0] for t in bn):.2f} "
                     f"| {statistics.median(t[1] for t in bv):.2f} / {statistics.median(t[1] for t in bn):.2f} |"
                     if baseline else "")
                  + (f" {statistics.median(t[0] for t in fv):.2f} / {statistics.median(t[0] for t in fn):.2f} "
                     f"| {statistics.median(t[1] for t in fv):.2f} / {statistics.median(t[1] for t in fn):.2f} |"
                     if floor else "") + f" {os.getloadavg()[0]:.1f} |", flush=True)
    if len(points) >= 2:
        x = np.log([p[0] for p in points])
        for label, col in (("verify", 1), ("no verify", 2), ("verify, CPU", 3), ("no verify, CPU", 4)):
            slope = np.polyfit(x, np.log([p[col] for p in points]), 1)[0]
            per_node = np.polyfit([p[0] for p in points], [p[col] for p in points], 1)[0]
            print(f"{label}: log-log slope of time vs nodes {slope:.2f} (1.0 = linear); "
                  f"{per_node * 1000:.2f} ms per node (linear fit)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,5000,10000", help="candidates per model")
    ap.add_argument("--repeats", type=int, default=5, help="runs per size up to 1,000 candidates")
    ap.add_argument("--large-repeats", type=int, default=1, help="runs per size above 1,000 candidates")
    ap.add_argument("--resize", choices=["nearest", "linear"], default="nearest")
    ap.add_argument("--no-onnxsim", action="store_true")
    ap.add_argument("--keep", help="write the models here instead of a temporary directory")
    ap.add_argument("--baseline", help="another convrewrite checkout to time alongside (before/after)")
    ap.add_argument("--floor", action="store_true",
                    help="also time the same model with nothing to rewrite (pipeline_model's `plain`)")
    a = ap.parse_args()
    bench([int(s) for s in a.sizes.split(",")], a.repeats, a.large_repeats, a.resize, not a.no_onnxsim, a.keep, a.baseline, a.floor)


if __name__ == "__main__":
    main()
