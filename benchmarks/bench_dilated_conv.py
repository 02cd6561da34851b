#!/usr/bin/env python3
"""Benchmark (not a test): onnxruntime CPU latency of dilated Convs before and
after the dilated-conv pass, for every form, on realistic shapes.

    python benchmarks/bench_dilated_conv.py [--repeats 15] [--threads 1] [--aspp-channels 2048]
                                            [--cases aspp6,aspp12,...]

Each case is one Conv; the original and the rewritten models run
interleaved, round-robin, `repeats` times after a warm-up, and the table
shows medians.  Rows: each mode with its own form forced (the automatic taps
form for tiny phase images off; the depth weight limit raised to 1 GB, above
which it falls back to batch), then "default" (the pass as shipped: batch
mode, taps form below 64 outputs per phase image).  "max init MB" is the
largest initializer (the tiled weight in the depth form).  MACs are the
report's count (macs_after / macs_before: the whole tensor, so the phases
folded into the batch are included), as a ratio to the dilated Conv.  A last table times chains: a dilated residual stage with each
Conv lowered alone versus kept in batch form across the stage.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from convrewrite import optimize  # noqa: E402
from convrewrite.core.equivalence import check_models  # noqa: E402
from passes.dilated_conv.rewrite import DilatedConvOptions, DilatedConvToSpaceToBatch  # noqa: E402

FORMS = ("batch", "depth", "slices", "taps", "im2col", "default")
DEPTH_LIMIT = 1 << 30  # protobuf cannot hold 2 GB; above this depth falls back to batch
TAPS_BELOW = 0         # measure each mode's own form (the default switches tiny phases to taps)


def cases(aspp_channels: int) -> dict:
    """name: (x shape, w shape, Conv attributes)."""
    c = aspp_channels
    aspp = {f"aspp{r}": ((1, c, 33, 33), (256, c, 3, 3), dict(dilations=[r, r], pads=[r] * 4))
            for r in (6, 12, 18)}
    return {
        **aspp,
        "aspp24_16x16": ((1, c, 16, 16), (256, c, 3, 3), dict(dilations=[24, 24], pads=[24] * 4)),
        "resnet_d2_65": ((1, 256, 65, 65), (256, 256, 3, 3), dict(dilations=[2, 2], pads=[2] * 4)),
        "resnet_d4_33": ((1, 512, 33, 33), (512, 512, 3, 3), dict(dilations=[4, 4], pads=[4] * 4)),
        "dw_d2_64": ((1, 384, 64, 64), (384, 1, 3, 3), dict(dilations=[2, 2], pads=[2] * 4, group=384)),
        "tcn1d_d8": ((1, 128, 8000), (128, 128, 3), dict(dilations=[8], pads=[16, 0])),
        "tcn1d_d64": ((1, 128, 8000), (128, 128, 3), dict(dilations=[64], pads=[128, 0])),
        "conv3d_d2": ((1, 32, 24, 48, 48), (32, 32, 3, 3, 3), dict(dilations=[2, 2, 2], pads=[2] * 6)),
    }


def conv_model(x_shape, w_shape, attrs) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    node = helper.make_node("Conv", ["x", "W", "B"], ["y"], name="conv", **attrs)
    g = helper.make_graph([node], "bench", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return onnx.shape_inference.infer_shapes(m)


def session(model: onnx.ModelProto, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def interleaved_medians(sessions: dict, feeds: dict, repeats: int) -> dict:
    times = {k: [] for k in sessions}
    for s in sessions.values():
        s.run(None, feeds)
    for _ in range(repeats):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, feeds)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def rewritten(model: onnx.ModelProto, form: str):
    p = (DilatedConvToSpaceToBatch() if form == "default" else DilatedConvToSpaceToBatch(
        DilatedConvOptions(form, depth_weight_limit=DEPTH_LIMIT, taps_below=TAPS_BELOW)))
    new, report = optimize(model, passes=[p], verify=False)
    used = next((r.form for r in report.rewrites if r.form), "not rewritten")
    done = [r for r in report.rewrites if r.macs_after is not None]
    ratio = sum(r.macs_after for r in done) / sum(r.macs_before for r in done)   # the report's MACs
    biggest = max((t.ByteSize() for t in new.graph.initializer), default=0)
    return new, used, biggest, ratio


def bench_case(name, spec, repeats, threads) -> list:
    model = conv_model(*spec)
    feeds = {"x": np.random.default_rng(1).standard_normal(spec[0]).astype(np.float32)}
    models, rows = {"original": model}, []
    for form in FORMS:
        new, used, biggest, ratio = rewritten(model, form)
        assert check_models(model, new, feeds), f"{name} {form}: not equivalent"
        models[form] = (new, used, biggest, ratio)
    sessions = {"original": session(model, threads)}
    sessions.update({f: session(models[f][0], threads) for f in FORMS})
    ms = interleaved_medians(sessions, feeds, repeats)
    for form in FORMS:
        new, used, biggest, ratio = models[form]
        rows.append((name, form, used, ms["original"], ms[form], ms[form] / ms["original"],
                     ratio, biggest / 2 ** 20, len(new.graph.node)))
    return rows


def stage_model(channels: int, size: int, rate: int, blocks: int) -> onnx.ModelProto:
    """A dilated residual stage (DeepLab / DRN): per block conv-BN-Relu-conv-BN-Add-Relu."""
    rng = np.random.default_rng(0)
    c, nodes, inits, x = channels, [], [], "x"

    def init(name, value):
        inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    for k in range(blocks):
        h = x
        for j in (1, 2):
            w = init(f"w{k}{j}", rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c))
            bn = [init(f"{n}{k}{j}", v) for n, v in (("s", rng.uniform(0.5, 1.5, c)), ("b", rng.standard_normal(c)),
                                                       ("m", rng.standard_normal(c) * 0.1),
                                                       ("v", rng.uniform(0.5, 1.5, c)))]
            nodes.append(helper.make_node("Conv", [h, w], [f"c{k}{j}"], dilations=[rate, rate], pads=[rate] * 4))
            nodes.append(helper.make_node("BatchNormalization", [f"c{k}{j}", *bn], [f"n{k}{j}"]))
            h = f"n{k}{j}"
            if j == 1:
                nodes.append(helper.make_node("Relu", [h], [f"r{k}"]))
                h = f"r{k}"
        nodes.append(helper.make_node("Add", [h, x], [f"a{k}"]))
        nodes.append(helper.make_node("Relu", [f"a{k}"], [f"y{k}"]))
        x = f"y{k}"
    g = helper.make_graph(nodes, "stage", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, size, size])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    return onnx.shape_inference.infer_shapes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def bench_chains(repeats: int, threads: int) -> None:
    """Chains on a 3-block stage: each Conv lowered alone versus kept in batch form."""
    print("\nchains: dilated residual stage, 3 blocks (6 dilated Convs), rate 2")
    print("{:<22} {:>9} {:>9} {:>9} {:>7} {:>7}".format("stage", "orig ms", "alone ms", "chain ms", "alone", "chain"))
    for c, n in ((128, 65), (256, 33), (64, 129)):
        model = stage_model(c, n, 2, 3)
        feeds = {"x": np.random.default_rng(1).standard_normal((1, c, n, n)).astype(np.float32)}
        alone = optimize(model, passes=[DilatedConvToSpaceToBatch(DilatedConvOptions(chains=False))], verify=False)[0]
        chain = optimize(model, passes=[DilatedConvToSpaceToBatch()], verify=False)[0]
        for m in (alone, chain):
            assert check_models(model, m, feeds), "stage rewrite not equivalent"
        ms = interleaved_medians({k: session(m, threads) for k, m in
                                  (("o", model), ("a", alone), ("c", chain))}, feeds, repeats)
        print("{:<22} {:>9.2f} {:>9.2f} {:>9.2f} {:>7.2f} {:>7.2f}".format(
            f"C={c} {n}x{n}", ms["o"], ms["a"], ms["c"], ms["a"] / ms["o"], ms["c"] / ms["o"]), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--aspp-channels", type=int, default=2048)
    ap.add_argument("--cases", default="", help="comma-separated subset of case names")
    ap.add_argument("--no-chains", action="store_true", help="skip the chain benchmark")
    args = ap.parse_args()
    table = cases(args.aspp_channels)
    names = [c for c in args.cases.split(",") if c] or list(table)
    print(f"onnxruntime CPU, {args.threads} thread(s), median of {args.repeats} interleaved runs\n")
    header = ("case", "mode", "form used", "orig ms", "new ms", "ratio", "MACs", "max init MB", "nodes")
    print("{:<14} {:<7} {:<10} {:>9} {:>9} {:>6} {:>6} {:>11} {:>5}".format(*header))
    for name in names:
        for row in bench_case(name, table[name], args.repeats, args.threads):
            print("{:<14} {:<7} {:<10} {:>9.2f} {:>9.2f} {:>6.2f} {:>6.2f} {:>11.1f} {:>5d}".format(*row),
                  flush=True)
    if not args.no_chains:
        bench_chains(args.repeats, args.threads)


if __name__ == "__main__":
    main()
