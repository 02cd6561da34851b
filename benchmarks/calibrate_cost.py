#!/usr/bin/env python3
"""Calibrate the form chooser's cost model on onnxruntime CPU (a benchmark, not a test).

    python benchmarks/calibrate_cost.py [--repeats 15] [--threads 1] [--quick]
                                        [--write convrewrite/core/cost_model.json]
                                        [--raw measurements.json] [--from-raw measurements.json]

The chooser (convrewrite/core/forms.py, `rank`) places the forms that say so
(`Form.estimated`: a linear Resize's deconv and matmul) by an estimated run
time, linear in the figures every form works out before it is built
(core/forms.Cost; core/cost_model.py):

    ns = mac_ns * dense MACs + grouped_mac_ns * grouped MACs + byte_ns * bytes moved
         + streamed_byte_ns * bytes streamed (a Conv's im2col matrix) + node_ns * nodes

This script measures those coefficients and how well they choose.  For a
grid of single-node models (dilated Convs, ConvTransposes and Resizes of
realistic shapes) it rewrites each node with every form the pass can be asked
for, times the rewritten models on onnxruntime's CPU provider (the CPU time
of the calling thread, interleaved round-robin after a warm-up, medians) and
fits the coefficients by non-negative least squares on relative error (each
case weighted by 1 / its measured time, so a 50 us model counts as much as a
50 ms one).  The fit is on the figures as the chooser sees them: the pass's
own replacement (a Resize's deconv form is its ConvTranspose, before the
convtranspose pass lowers it).  Each row also keeps the final model's bytes
by kind (plain copies, permuting copies, Reshape, strided Slices) for the
study of other feature sets (`--study`).

It prints, per pass, the geometric-mean slowdown (and the worst) against the
fastest form of each case of: the model's picks among all forms, the
library's choice (the model only where a form says so), and the rules (the
pass's order, resize_mode=deconv).  With `--write` the coefficients and the
fit's quality go to a JSON file: convrewrite/core/cost_model.json is the one
the library reads (docs/cost_model.md).
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
from convrewrite.core.cost import batch_one, model_cost, moved_bytes, tensor_bytes  # noqa: E402
from convrewrite.core import lowering  # noqa: E402
from convrewrite.core.cost_model import COEFFICIENTS  # noqa: E402
from convrewrite.core.graph import GraphView  # noqa: E402

# the figures the chooser sees (a form's Cost), in the order of core/cost_model.COEFFICIENTS
FEATURES = ("view_dense_macs", "view_grouped_macs", "view_moved_bytes", "view_nodes", "view_streamed_bytes")
# other feature sets, of the final model (--study)
_BASE = ("dense_macs", "grouped_macs", "nodes")
_BY_OP = ("slice_bytes", "concat_bytes", "pad_bytes", "shuffled_bytes", "where_bytes", "expand_bytes")
STUDY = {
    "final model: dense, grouped MACs, bytes but Reshape's, nodes": (*_BASE, "copied_bytes"),
    "... plain and permuting bytes apart": (*_BASE, "plain_bytes", "shuffled_bytes"),
    "... and Slices, strided-Slice bytes": (*_BASE, "plain_bytes", "shuffled_bytes", "slices", "strided_bytes"),
    "... bytes per op type": (*_BASE, *_BY_OP),
    "... per op type, Conv activation bytes, Conv images": (*_BASE, *_BY_OP, "conv_io_bytes", "conv_images"),
    "the chooser figures without streamed bytes": FEATURES[:4],
    "final model: dense, grouped MACs, bytes but Reshape's, nodes, streamed bytes": (*_BASE, "copied_bytes",
                                                                                    "streamed_bytes"),
}


# --- the cases ----------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    model: onnx.ModelProto
    passes: tuple               # the pass that lowers it, and any that lower what it builds
    option: str                 # the option that selects a form
    choices: tuple
    rules: tuple = ()           # options that make the pass follow its rules alone (no cost model);
                                # None: no option does, the rules are the choice without any cost model
    fitted: bool = True         # its rows go into the fit (False: measured for a rule's study only)


def _model(node, x_shape, weights, y_shape, opset=17) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.1, n)
             for n, s in weights.items()]
    g = helper.make_graph([node], "case", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def dilated_cases(quick: bool):
    grid = [(c, o, hw, d, g, True) for c, o in ((32, 32), (64, 64), (128, 128), (256, 64))
            for hw in (17, 33, 65) for d in (2, 4, 12) for g in ("dense", "depthwise")
            if not (g == "depthwise" and c != o)]
    # tiny Convs (sample-model sizes), where the taps favour meets per-node overhead
    # (forms.OVERRULE); measured for that rule, kept out of the fit
    grid += [(c, c, hw, d, g, False) for c in (4, 8, 16) for hw in (8, 12, 16, 24, 33) for d in (2, 4, 8)
             for g in ("dense", "depthwise") if 2 * d < hw]
    for c, o, hw, d, g, fitted in grid[::3] if quick else grid:
        group = c if g == "depthwise" else 1
        if c * o // group * 9 * hw * hw > 400e6:
            continue
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], dilations=[d, d],
                                pads=[d] * 4, group=group)
        m = _model(node, [1, c, hw, hw], {"w": (o, c // group, 3, 3), "b": (o,)}, [1, o, hw, hw])
        yield Case(f"dilated c{c} o{o} {hw}x{hw} d{d} {g}", m, ("dilated-conv",), "dilated_mode",
                   ("batch", "depth", "slices", "taps"), (("dilated_estimates", False),), fitted)


def dilated_1d_cases(quick: bool):
    """1-D dilated Convs (TCNs, vocoders): where the reshape form's favour was
    measured (forms.RESHAPE_MIN_CHANNELS); kept out of the fit."""
    grid = [(c, n, d, k) for c in (4, 8, 16, 32, 64) for n in (64, 250, 1024, 4096) for d in (2, 3, 5, 8)
            for k in (3, 7) if (k - 1) * d < n // 2]
    for c, n, d, k in grid[::3] if quick else grid:
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[k], dilations=[d],
                                pads=[d * (k - 1) // 2] * 2)
        m = _model(node, [1, c, n], {"w": (c, c, k), "b": (c,)}, [1, c, n])
        yield Case(f"dilated1d c{c} L{n} d{d} k{k}", m, ("dilated-conv",), "dilated_mode",
                   ("batch", "depth", "reshape", "taps"), (("dilated_estimates", False),), False)


def convtranspose_cases(quick: bool):
    grid = [(c, o, hw, k, s, True) for c, o in ((32, 16), (64, 64), (256, 128))
            for hw in (8, 16, 32, 64) for k, s in ((2, 2), (3, 2), (4, 2), (8, 4))]
    # an image generator's last layer (few output channels: RGB), where the estimate
    # misjudges phase-convs (docs/cost_model.md, "ConvTranspose"); kept out of the fit
    grid += [(c, o, hw, k, s, False) for c, o in ((64, 3), (32, 4)) for hw in (32, 64, 128)
             for k, s in ((4, 2), (8, 4))]
    for c, o, hw, k, s, fitted in grid[::3] if quick else grid:
        if c * o * k * k * hw * hw > 400e6:
            continue
        p = (k - s) // 2
        out = (hw - 1) * s + k - 2 * p
        node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[k, k], strides=[s, s],
                                pads=[p] * 4)
        m = _model(node, [1, c, hw, hw], {"w": (c, o, k, k), "b": (o,)}, [1, o, out, out])
        yield Case(f"convtranspose c{c} o{o} {hw}x{hw} k{k} s{s}", m, ("convtranspose",), "convtranspose_form",
                   ("single-conv", "phase-convs"), None, fitted)


def resize_cases(quick: bool):
    grid = [(c, hw, f, mode) for c in (16, 64, 256) for hw in (16, 32, 64) for f in (2, 4)
            for mode in ("nearest", "linear")]
    # large factors, where the matmul form's MACs (n per output and axis) grow:
    # a segmentation head's x8 / x16 of its class scores (21: VOC's classes)
    grid += [(c, hw, f, mode) for c, hw, f in ((21, 32, 16), (21, 64, 8), (64, 16, 8), (16, 8, 16))
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
        yield Case(f"resize {mode} c{c} {hw}x{hw} x{f}", m, ("resize", "convtranspose"), option, choices,
                   (("resize_mode", "deconv"),))


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


def strided_slice_bytes(model: onnx.ModelProto) -> tuple[int, int]:
    """(bytes, count) of the Slices with a step other than 1 (a gather, not
    a contiguous copy)."""
    m = batch_one(model)
    graph = GraphView(m)
    consts = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in m.graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    strided = [n for n in m.graph.node if n.op_type == "Slice" and len(n.input) >= 5 and n.input[4]
               and np.any(np.abs(consts.get(n.input[4], np.array([2]))) != 1)]
    return (moved_bytes(strided, graph) or 0), len(strided)


def chosen_form(case: Case, options: dict, cost_model: bool = True) -> str:
    """The form the pass takes by itself with these options (and, with
    `cost_model` False, as the driver does with a target: no cost model)."""
    keep = lowering.cost_model_for
    if not cost_model:
        lowering.cost_model_for = lambda p, target: None
    try:
        _, report = convrewrite.optimize(case.model, passes=list(case.passes), options=options, verify=False)
    finally:
        lowering.cost_model_for = keep
    recs = report.records("rewritten", case.passes[0])
    return recs[0].form if len(recs) == 1 else ""


def by_kind(model: onnx.ModelProto) -> dict:
    """The final model's data-movement bytes by kind and by op type, its
    Slices, and what its convolutions read and write (for --study)."""
    m = batch_one(model)
    graph = GraphView(m)
    strided, strided_count = strided_slice_bytes(model)

    def of(*ops):
        return moved_bytes([n for n in m.graph.node if n.op_type in ops], graph) or 0

    return {"copied_bytes": copied_bytes(model) + copied_bytes(model, shuffles=True),
            "plain_bytes": copied_bytes(model), "shuffled_bytes": copied_bytes(model, shuffles=True),
            "reshape_bytes": of("Reshape"), "slice_bytes": of("Slice"), "concat_bytes": of("Concat"),
            "pad_bytes": of("Pad"), "where_bytes": of("Where"), "expand_bytes": of("Expand", "Tile"),
            "strided_bytes": strided, "strided_slices": strided_count,
            "slices": sum(n.op_type == "Slice" for n in m.graph.node), **conv_figures(m, graph)}


def conv_figures(m: onnx.ModelProto, graph: GraphView) -> dict:
    """Bytes of the activations the model's Conv / ConvTranspose / MatMul nodes
    read and write (onnxruntime reorders them into its blocked layout), and
    their images: batch x groups, the small GEMMs a batch of phases costs."""
    io, images = 0, 0
    for n in m.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose", "MatMul"):
            continue
        io += sum(tensor_bytes(graph, v) or 0 for v in [n.input[0], n.output[0]])
        shape = graph.shape(n.input[0]) or (1,)
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        images += (shape[0] if isinstance(shape[0], int) else 1) * group
    return {"conv_io_bytes": io, "conv_images": images}


def measure(case: Case, repeats: int, threads: int) -> list:
    """One row per form that the pass built for this case: its Cost as the
    chooser sees it (`view_*`: the pass alone; a Resize's deconv form is its
    ConvTranspose), the final model's figures, and the median time."""
    built = []
    chosen = chosen_form(case, {})
    rules = chosen_form(case, {}, cost_model=False) if case.rules is None else chosen_form(case, dict(case.rules))
    for choice in case.choices:
        options = {case.option: choice}
        model, report = convrewrite.optimize(case.model, passes=list(case.passes), options=options, verify=False)
        recs = report.records("rewritten", case.passes[0])
        if len(recs) != 1 or recs[0].form != choice or any(r.status != "rewritten" for r in report.rewrites):
            continue
        c = model_cost(model)    # the final model: a form's own nodes and what nested rewrites made of them
        view = c
        if len(case.passes) > 1:
            view = model_cost(convrewrite.optimize(case.model, passes=[case.passes[0]], options=options,
                                                   verify=False)[0])
        built.append(({"form": choice, "default": choice == chosen, "rule": choice == rules,
                       "dense_macs": c.macs - c.grouped_macs, "grouped_macs": c.grouped_macs,
                       "streamed_bytes": c.streamed_bytes,
                       "moved_bytes": c.moved_bytes, "nodes": c.nodes, **by_kind(model),
                       "view_dense_macs": view.macs - view.grouped_macs, "view_grouped_macs": view.grouped_macs,
                       "view_moved_bytes": view.moved_bytes, "view_nodes": view.nodes,
                       "view_streamed_bytes": view.streamed_bytes}, model))
    if not built:
        return []
    seconds = median_times([m for _, m in built], repeats, threads)
    return [dict(row, case=case.name, seconds=s, fitted=case.fitted) for (row, _), s in zip(built, seconds)]


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


def lacking(rows: list, features) -> list:
    """The features some row has no value for (rows an older --raw wrote,
    before the figure existed): a fit would read them as 0."""
    return sorted({f for r in rows for f in features if f not in r})


def fit(rows: list, features=FEATURES) -> list:
    """Nanoseconds per unit of each feature."""
    x = np.array([[float(r[f] or 0) for f in features] for r in rows])
    t = np.array([r["seconds"] * 1e9 for r in rows])
    w = 1.0 / t                                  # relative error: every case counts alike
    return [float(c) for c in nnls(x * w[:, None], t * w)]


def predict(coef: list, r: dict, features=FEATURES) -> float:
    return sum(c * (r[f] or 0) for c, f in zip(coef, features)) * 1e-9


def kind(case: str) -> str:
    """The decision a case belongs to: dilated, convtranspose, resize linear / nearest."""
    words = case.split()
    return " ".join(words[:2]) if words[0] == "resize" else words[0]


def slowdowns(coef: list, rows: list, features=FEATURES) -> dict:
    """Per kind of case with several forms: {"model": [...], "library": [...], "rules": [...]}, each
    pick's time over the fastest form's.  model: the cheapest by the estimate among all forms;
    library: the form the pass takes now; rules: the form the pass's rules alone take."""
    cases = {}
    for r in rows:
        cases.setdefault(r["case"], []).append(r)
    out = {}
    for name, case_rows in cases.items():
        if len(case_rows) < 2:
            continue
        fastest = min(r["seconds"] for r in case_rows)
        picks = {"model": min(case_rows, key=lambda r: predict(coef, r, features)),
                 "library": next((r for r in case_rows if r.get("default")), None),
                 "rules": next((r for r in case_rows if r.get("rule", r.get("default"))), None)}
        per = out.setdefault(kind(name), {k: [] for k in picks})
        for k, r in picks.items():
            if r is not None:
                per[k].append(r["seconds"] / fastest)
    return out


def _geomean(values: list) -> float:
    return math.exp(statistics.mean(math.log(s) for s in values)) if values else 1.0


def errors(coef: list, rows: list, features=FEATURES) -> list:
    return [abs(predict(coef, r, features) / r["seconds"] - 1) for r in rows]


def fit_summary(coef: list, rows: list) -> dict:
    per_kind = {k: {who: {"geomean_slowdown": round(_geomean(v), 3), "worst": round(max(v), 2), "cases": len(v)}
                    for who, v in picks.items() if v}
                for k, picks in slowdowns(coef, rows).items()}
    return {"median_relative_error": round(statistics.median(errors(coef, rows)), 3), "slowdown": per_kind}


def print_fit(coef: list, rows: list, features=FEATURES, title: str = "") -> None:
    errs = errors(coef, rows, features)
    print(f"\n{title or 'the chooser figures'}: " + ", ".join(f"{c:.4g} ns/{f}" for c, f in zip(coef, features)))
    print(f"  prediction error over {len(rows)} rewritten models: median {statistics.median(errs):.0%}, "
          f"90th percentile {np.percentile(errs, 90):.0%}")
    print("  slowdown against the fastest form, geometric mean (worst):")
    for k, picks in slowdowns(coef, rows, features).items():
        cells = ", ".join(f"{who} {_geomean(v):.3f} ({max(v):.2f})" for who, v in picks.items() if v)
        print(f"    {k} ({len(picks['model'])} cases): {cells}")


def cross_validated(rows: list, features) -> dict:
    """Per kind of case, leave one case out: fit the kind's own coefficients
    on its other cases, pick the cheapest form of the case left out; each
    pick's time over the fastest form's.  The fairest test of whether a
    model of these features, even one per pass, would choose better than
    the library."""
    by_kind, out = {}, {}
    for r in rows:
        by_kind.setdefault(kind(r["case"]), []).append(r)
    for k, kind_rows in by_kind.items():
        for case in sorted({r["case"] for r in kind_rows}):
            left_out = [r for r in kind_rows if r["case"] == case]
            if len(left_out) < 2:
                continue
            coef = fit([r for r in kind_rows if r["case"] != case], features)
            pick = min(left_out, key=lambda r: predict(coef, r, features))
            out.setdefault(k, []).append(pick["seconds"] / min(r["seconds"] for r in left_out))
    return out


def print_cross_validated(rows: list, features, title: str) -> None:
    cells = ", ".join(f"{k} {_geomean(v):.3f} ({max(v):.2f})" for k, v in cross_validated(rows, features).items())
    print(f"  {title}, one model per kind, leave one case out: {cells}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a third of the grid")
    ap.add_argument("--raw", help="write every measurement to this JSON file")
    ap.add_argument("--from-raw", help="fit measurements written earlier with --raw instead of measuring")
    ap.add_argument("--study", action="store_true", help="also fit the other feature sets (STUDY)")
    ap.add_argument("--write", help="write the coefficients and the fit's quality to this JSON file "
                                    "(convrewrite/core/cost_model.json: the library's)")
    args = ap.parse_args(argv)

    if args.from_raw:
        with open(args.from_raw) as f:
            rows = json.load(f)["rows"]
        missing = lacking(rows, FEATURES)
        if missing:
            print(f"{args.from_raw}: its rows have no {', '.join(missing)} (measured before the figure "
                  "existed): measure again, without --from-raw", file=sys.stderr)
            return 2
    else:
        rows = []
        cases = [*dilated_cases(args.quick), *dilated_1d_cases(args.quick), *convtranspose_cases(args.quick),
                 *resize_cases(args.quick)]
        for i, case in enumerate(cases, 1):
            got = measure(case, args.repeats, args.threads)
            rows += got
            cells = ", ".join(f"{r['form']} {r['seconds'] * 1e3:.3f} ms" for r in got)
            print(f"[{i}/{len(cases)}] {case.name}: {cells}", flush=True)
        if args.raw:
            with open(args.raw, "w") as f:
                json.dump({"onnxruntime": ort.__version__, "threads": args.threads, "rows": rows}, f, indent=1)
    fitted = [r for r in rows if r.get("fitted", True)]   # the tiny and 1-D grids are for their rules' study
    coef = fit(fitted)
    print_fit(coef, rows)
    if args.study:
        study = {title: features for title, features in STUDY.items() if not lacking(rows, features)}
        for title in [t for t in STUDY if t not in study]:
            print(f"\n{title}: not in these rows ({', '.join(lacking(rows, STUDY[title]))})")
        for title, features in study.items():
            print_fit(fit(fitted, features), rows, features, title)
        print("\nevery row, cross-validated (the library's picks are the `library` figures above):")
        for title, features in {"the chooser figures": FEATURES, **study}.items():
            print_cross_validated(rows, features, title)
    if args.write:
        doc = {"generated_by": "benchmarks/calibrate_cost.py", "runtime": f"onnxruntime {ort.__version__} CPU",
               "threads": args.threads, "machine": platform.machine(), "rewritten_models": len(fitted),
               **{k: float(f"{v:.4g}") for k, v in zip(COEFFICIENTS, coef)},
               "fit": fit_summary(coef, fitted)}
        with open(args.write, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
