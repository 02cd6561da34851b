#!/usr/bin/env python3
"""Calibrate the form chooser's cost model on onnxruntime CPU (a benchmark, not a test).

    python benchmarks/calibrate_cost.py [--repeats 15] [--threads 1] [--quick]
                                        [--write coefficients.json]
                                        [--raw measurements.json] [--from-raw measurements.json]

Can the form chooser (convrewrite/core/forms.py) rank a node's lowering forms
by an estimated run time, linear in the figures every form works out before
it is built (core/forms.Cost)?

    time = mac_ns * dense MACs + grouped_mac_ns * grouped MACs + byte_ns * bytes copied + node_ns * nodes

(bytes copied: moved by data-movement nodes other than Reshape.)  This script
measures what those coefficients are and how well they choose.  For a grid of single-node
models (dilated Convs, ConvTransposes and Resizes of realistic shapes) it
rewrites each node with every form the pass can be asked for, times the
rewritten models on onnxruntime's CPU provider (interleaved round-robin after
a warm-up, medians), reads each rewrite's Cost from the report, and fits the
coefficients by non-negative least squares on relative error (each case
weighted by 1 / its measured time, so a 50 us model counts as much as a 50 ms
one).  It prints the fit and how often the cheapest form by the model is the
measured fastest (or within 10% of it), against the passes' own default forms:
the figure that matters for choosing.

With `--write` the coefficients and the fit's quality go to a JSON file.
docs/cost_model.md gives the results and why the chooser does not use them yet.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import convrewrite  # noqa: E402
from convrewrite.core.cost import batch_one, model_cost, moved_bytes  # noqa: E402
from convrewrite.core.graph import GraphView  # noqa: E402

FEATURES = ("dense_macs", "grouped_macs", "copied_bytes", "nodes")
COEFFICIENTS = ("mac_ns", "grouped_mac_ns", "byte_ns", "node_ns")


# --- the cases ----------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    model: onnx.ModelProto
    passes: tuple               # the pass that lowers it, and any that lower what it builds
    option: str                 # the option that selects a form
    choices: tuple


def _model(node, x_shape, weights, y_shape, opset=17) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.1, n)
             for n, s in weights.items()]
    g = helper.make_graph([node], "case", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def dilated_cases(quick: bool):
    grid = [(c, o, hw, d, g) for c, o in ((32, 32), (64, 64), (128, 128), (256, 64))
            for hw in (17, 33, 65) for d in (2, 4, 12) for g in ("dense", "depthwise")
            if not (g == "depthwise" and c != o)]
    for c, o, hw, d, g in grid[::3] if quick else grid:
        group = c if g == "depthwise" else 1
        if c * o // group * 9 * hw * hw > 400e6:
            continue
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], dilations=[d, d],
                                pads=[d] * 4, group=group)
        m = _model(node, [1, c, hw, hw], {"w": (o, c // group, 3, 3), "b": (o,)}, [1, o, hw, hw])
        yield Case(f"dilated c{c} o{o} {hw}x{hw} d{d} {g}", m, ("dilated-conv",), "dilated_mode",
                   ("batch", "depth", "slices", "taps"))


def convtranspose_cases(quick: bool):
    grid = [(c, o, hw, k, s) for c, o in ((32, 16), (64, 64), (256, 128))
            for hw in (8, 16, 32, 64) for k, s in ((2, 2), (3, 2), (4, 2), (8, 4))]
    for c, o, hw, k, s in grid[::3] if quick else grid:
        if c * o * k * k * hw * hw > 400e6:
            continue
        p = (k - s) // 2
        out = (hw - 1) * s + k - 2 * p
        node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[k, k], strides=[s, s],
                                pads=[p] * 4)
        m = _model(node, [1, c, hw, hw], {"w": (c, o, k, k), "b": (o,)}, [1, o, out, out])
        yield Case(f"convtranspose c{c} o{o} {hw}x{hw} k{k} s{s}", m, ("convtranspose",), "convtranspose_form",
                   ("single-conv", "phase-convs"))


def resize_cases(quick: bool):
    grid = [(c, hw, f, mode) for c in (16, 64, 256) for hw in (16, 32, 64) for f in (2, 4)
            for mode in ("nearest", "linear")]
    for c, hw, f, mode in grid[::3] if quick else grid:
        if c * hw * hw * f * f > 8e6:
            continue
        scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, f, f])
        node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode)
        m = _model(node, [1, c, hw, hw], {}, [1, c, hw * f, hw * f])
        m.graph.initializer.append(scales)
        option, choices = (("resize_nearest", ("shuffle", "deconv")) if mode == "nearest"
                           else ("resize_mode", ("deconv", "matmul")))
        yield Case(f"resize {mode} c{c} {hw}x{hw} x{f}", m, ("resize", "convtranspose"), option, choices)


# --- measuring ----------------------------------------------------------------

def _session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), o, providers=["CPUExecutionProvider"])


def median_times(models: list, repeats: int, threads: int) -> list:
    """Median seconds per run of each model: interleaved round-robin after a
    warm-up.  The CPU time of the calling thread, not the wall clock: with one
    intra-op thread onnxruntime computes in the caller's thread, so time the
    process spends descheduled on a shared machine does not count."""
    sessions = [_session(m, threads) for m in models]
    shape = [d.dim_value for d in models[0].graph.input[0].type.tensor_type.shape.dim]
    feed = {"x": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}
    for s in sessions:
        for _ in range(2):
            s.run(None, feed)
    times = [[] for _ in sessions]
    for _ in range(repeats):
        for s, t in zip(sessions, times):
            start = time.thread_time()
            s.run(None, feed)
            t.append(time.thread_time() - start)
    return [statistics.median(t) for t in times]


SHUFFLES = ("Transpose", "DepthToSpace", "SpaceToDepth")


def copied_bytes(model: onnx.ModelProto, shuffles: bool = False) -> int:
    """Bytes moved by data-movement nodes other than Reshape: onnxruntime's
    Reshape reuses its input's buffer, so it moves nothing there (the forms'
    Cost counts it, as an accelerator may pay for it).  `shuffles`: only
    the permuting ones (Transpose, DepthToSpace, SpaceToDepth), else the others."""
    m = batch_one(model)
    graph = GraphView(m)
    return moved_bytes([n for n in m.graph.node if n.op_type != "Reshape" and (n.op_type in SHUFFLES) == shuffles],
                       graph)


def default_form(case: Case) -> str:
    """The form the pass takes by itself (no option)."""
    _, report = convrewrite.optimize(case.model, passes=list(case.passes), verify=False)
    recs = report.records("rewritten", case.passes[0])
    return recs[0].form if len(recs) == 1 else ""


def measure(case: Case, repeats: int, threads: int) -> list:
    """One row per form that the pass built for this case: its Cost and median time."""
    built = []
    default = default_form(case)
    for choice in case.choices:
        model, report = convrewrite.optimize(case.model, passes=list(case.passes),
                                             options={case.option: choice}, verify=False)
        recs = report.records("rewritten", case.passes[0])
        if len(recs) != 1 or recs[0].form != choice or any(r.status != "rewritten" for r in report.rewrites):
            continue
        c = model_cost(model)    # the final model: a form's own nodes and what nested rewrites made of them
        built.append(({"form": choice, "default": choice == default, "dense_macs": c.macs - c.grouped_macs,
                       "grouped_macs": c.grouped_macs, "moved_bytes": c.moved_bytes,
                       "copied_bytes": copied_bytes(model) + copied_bytes(model, shuffles=True),
                       "plain_bytes": copied_bytes(model), "shuffled_bytes": copied_bytes(model, shuffles=True),
                       "nodes": c.nodes}, model))
    if not built:
        return []
    seconds = median_times([m for _, m in built], repeats, threads)
    return [dict(row, case=case.name, seconds=s) for (row, _), s in zip(built, seconds)]


# --- fitting ------------------------------------------------------------------

def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares for a handful of columns: the best of every
    subset of columns solved unconstrained whose solution is non-negative
    (exact for few columns, where 2**k subsets are cheap)."""
    best, best_err = np.zeros(a.shape[1]), float(np.sum(b ** 2))
    for k in range(1, a.shape[1] + 1):
        for cols in itertools.combinations(range(a.shape[1]), k):
            x, *_ = np.linalg.lstsq(a[:, cols], b, rcond=None)
            if np.all(x >= 0):
                err = float(np.sum((a[:, cols] @ x - b) ** 2))
                if err < best_err:
                    best, best_err = np.zeros(a.shape[1]), err
                    best[list(cols)] = x
    return best


def fit(rows: list) -> dict:
    """Coefficients in nanoseconds per dense MAC, per grouped MAC, per byte moved, per node."""
    x = np.array([[float(r[f] or 0) for f in FEATURES] for r in rows])
    t = np.array([r["seconds"] * 1e9 for r in rows])
    w = 1.0 / t                                  # relative error: every case counts alike
    coef = nnls(x * w[:, None], t * w)
    return dict(zip(COEFFICIENTS, coef))


def predict(coef: dict, r: dict) -> float:
    return sum(coef[k] * (r[f] or 0) for k, f in zip(COEFFICIENTS, FEATURES)) * 1e-9


def choice_quality(coef: dict, rows: list) -> tuple:
    """(cases with a choice, model's pick is the fastest, within 10% of the fastest, its geometric-mean
    slowdown against the fastest, the pass's own default form's)."""
    by_case = {}
    for r in rows:
        by_case.setdefault(r["case"], []).append(r)
    n = exact = near = 0
    slowdowns, default_slowdowns = [], []
    for case_rows in by_case.values():
        if len(case_rows) < 2:
            continue
        n += 1
        fastest = min(case_rows, key=lambda r: r["seconds"])
        picked = min(case_rows, key=lambda r: predict(coef, r))
        exact += picked is fastest
        near += picked["seconds"] <= 1.1 * fastest["seconds"]
        slowdowns.append(picked["seconds"] / fastest["seconds"])
        default_slowdowns += [r["seconds"] / fastest["seconds"] for r in case_rows if r.get("default")]
    return n, exact, near, _geomean(slowdowns), _geomean(default_slowdowns)


def _geomean(values: list) -> float:
    return math.exp(statistics.mean(math.log(s) for s in values)) if values else 1.0


def fit_summary(coef: dict, rows: list) -> dict:
    errors = [abs(predict(coef, r) / r["seconds"] - 1) for r in rows]
    n, exact, near, mean, default = choice_quality(coef, rows)
    return {"median_relative_error": round(statistics.median(errors), 3), "cases_with_a_choice": n,
            "picks_the_fastest": exact, "picks_within_10_percent": near, "mean_slowdown": round(mean, 3),
            "default_forms_mean_slowdown": round(default, 3)}


def print_fit(coef: dict, rows: list) -> None:
    errors = [abs(predict(coef, r) / r["seconds"] - 1) for r in rows]
    n, exact, near, mean, default = choice_quality(coef, rows)
    print(f"\ncoefficients: {coef['mac_ns']:.4g} ns/dense MAC, {coef['grouped_mac_ns']:.4g} ns/grouped MAC, "
          f"{coef['byte_ns']:.4g} ns/byte moved, {coef['node_ns']:.4g} ns/node")
    print(f"prediction error over {len(rows)} rewritten models: median {statistics.median(errors):.0%}, "
          f"90th percentile {np.percentile(errors, 90):.0%}")
    print(f"choosing: in {n} cases with several forms the cheapest by the model is the fastest in {exact}, "
          f"within 10% of it in {near}; geometric-mean slowdown against the fastest {mean:.3f}x "
          f"(the passes' default forms: {default:.3f}x)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a third of the grid")
    ap.add_argument("--raw", help="write every measurement to this JSON file")
    ap.add_argument("--from-raw", help="fit measurements written earlier with --raw instead of measuring")
    ap.add_argument("--write", help="write the coefficients and the fit's quality to this JSON file")
    args = ap.parse_args(argv)

    if args.from_raw:
        with open(args.from_raw) as f:
            rows = json.load(f)["rows"]
    else:
        rows = []
        cases = [*dilated_cases(args.quick), *convtranspose_cases(args.quick), *resize_cases(args.quick)]
        for i, case in enumerate(cases, 1):
            got = measure(case, args.repeats, args.threads)
            rows += got
            cells = ", ".join(f"{r['form']} {r['seconds'] * 1e3:.3f} ms" for r in got)
            print(f"[{i}/{len(cases)}] {case.name}: {cells}", flush=True)
        if args.raw:
            with open(args.raw, "w") as f:
                json.dump({"rows": rows}, f, indent=1)
    coef = fit(rows)
    print_fit(coef, rows)
    if args.write:
        doc = {"generated_by": "benchmarks/calibrate_cost.py", "runtime": f"onnxruntime {ort.__version__} CPU",
               "threads": args.threads, "machine": platform.machine(), "cases": len(rows),
               "fit": fit_summary(coef, rows),
               **{k: float(f"{v:.4g}") for k, v in coef.items()}}
        with open(args.write, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
