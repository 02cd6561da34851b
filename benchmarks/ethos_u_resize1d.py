"""1-D Resize ([N, C, L]) on Arm Ethos-U through onnx2tf and Vela (not a test;
docs/ethos_u.md, *1-D Resize*; tests/target/test_vela_resize1d.py records the table).

A single Resize node, x [1, C, L] -> y [1, C, L * factor], float32, for nearest
(asymmetric, floor: the form of the 1-D models of models/) and linear
(half_pixel, asymmetric) at factors 2, 4 and 8: converted with onnx2tf -oiqt
(benchmarks/ethos_u.py's compile_onnx: flatbuffer_direct, tf_converter where
that fails), compiled with Vela for ethos-u55-128 and ethos-u85-256, and the
float32 and full-integer int8 .tflite run on LiteRT's reference kernels
(benchmarks/ethos_u_nearest.py's litert_output) against onnxruntime.

The input of channel c is a seeded permutation of LEVELS distinct values in
[0, 1), 1/LEVELS apart (4 int8 steps of the [0, 1) calibration range), so
neighbouring samples differ by much more than an int8 step:
- nearest: each output value names the input sample it was taken from, in
  float and in int8 alike, and the check compares those source samples;
- linear: a coordinate off by a quarter sample moves the value by several
  steps, so the int8 result must be within LINEAR_STEPS output quantization
  steps of onnxruntime's, the float32 one within FLOAT_ATOL.

    /work/venv-vela/bin/python benchmarks/ethos_u_resize1d.py [--json OUT.jsonl] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import onnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.ethos_u_nearest import ACCELERATORS, compiled, litert_output, onnxruntime_output  # noqa: E402

CHANNELS = 4
LENGTH = 16
LEVELS = 64   # distinct values per channel, 1/LEVELS apart
SEED = 0
LINEAR_STEPS = 2   # int8 linear: within this many output quantization steps of onnxruntime
FLOAT_ATOL = 1e-5
FACTORS = (2, 4, 8)   # the 2-D profiles' U55 factors


def grid() -> list:
    """(mode, coordinate_transformation_mode, nearest_mode, factor) of every case."""
    forms = (("nearest", "asymmetric", "floor"), ("linear", "half_pixel", "floor"),
             ("linear", "asymmetric", "floor"))
    return [(mode, ctm, nm, f) for mode, ctm, nm in forms for f in FACTORS]


def case_name(mode: str, ctm: str, nm: str, factor: int) -> str:
    return f"{mode}_{ctm}_{nm}_x{factor}" if mode == "nearest" else f"{mode}_{ctm}_x{factor}"


def resize_1d(mode: str, ctm: str, nm: str, factor: int, c: int = CHANNELS, length: int = LENGTH) -> onnx.ModelProto:
    """x [1, c, length] -> Resize (sizes [1, c, length * factor]) -> y: the graph's only node."""
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode=mode,
                            coordinate_transformation_mode=ctm, nearest_mode=nm)
    sizes = numpy_helper.from_array(np.array([1, c, length * factor], np.int64), "sizes")
    g = helper.make_graph([node], "resize1d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, length])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, length * factor])], [sizes])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def labelled_input() -> np.ndarray:
    """[1, C, L]: channel c holds L of the LEVELS values (k + 0.5)/LEVELS, in a seeded
    random order, all distinct within the channel."""
    rng = np.random.default_rng(SEED)
    x = np.stack([(rng.permutation(LEVELS)[:LENGTH] + 0.5) / LEVELS for _ in range(CHANNELS)])
    return x[None].astype(np.float32)


def source_samples(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The input index each output value was taken from, per channel: the nearest of the
    channel's values (they are distinct and 1/LEVELS apart, 4 int8 steps)."""
    return np.abs(y[0][..., None] - x[0][:, None, :]).argmin(-1)


def output_step(tflite: str) -> float:
    """The int8 .tflite's output quantization step (scale)."""
    from ai_edge_litert.interpreter import Interpreter

    return float(Interpreter(model_path=tflite).get_output_details()[0]["quantization"][0])


def compare(mode: str, want: np.ndarray, got: np.ndarray, x: np.ndarray, tol: float) -> dict:
    """Whether `got` is onnxruntime's `want`: the same source sample everywhere (nearest),
    or within tol everywhere (linear); and how far off."""
    if mode == "nearest":
        off = source_samples(got, x) != source_samples(want, x)
        return {"exact": bool(not off.any()), "wrong_fraction": float(off.mean())}
    err = float(np.abs(got - want).max())
    return {"exact": err <= tol, "max_error": err}


def measure(mode: str, ctm: str, nm: str, factor: int, work: str) -> dict:
    name = case_name(mode, ctm, nm, factor)
    model = resize_1d(mode, ctm, nm, factor)
    row = {"case": name, "mode": mode, "ctm": ctm, "nearest_mode": nm, "factor": factor,
           "in": LENGTH, "out": LENGTH * factor}
    tflite = compiled(model, name, work, row)
    if tflite is None:
        return row
    x = labelled_input()
    want = onnxruntime_output(model, x)
    step = output_step(tflite)
    row["int8_step"] = step
    float_tflite = tflite.replace("_full_integer_quant.tflite", "_float32.tflite")
    for kind, file, tol in (("float", float_tflite, FLOAT_ATOL), ("int8", tflite, LINEAR_STEPS * step)):
        for key, value in compare(mode, want, litert_output(file, x), x, tol).items():
            row[f"{kind}_{key}"] = value
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="append each case's row to this file (JSON lines)")
    ap.add_argument("--work", default=None, help="keep the conversions here (default: a temporary directory)")
    args = ap.parse_args(argv)
    work = args.work or tempfile.mkdtemp(prefix="resize1d_")
    os.makedirs(work, exist_ok=True)
    print("| mode | coordinate mode | L -> out | TFLite operators | float | int8 | U55 | U85 |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, ctm, nm, factor in grid():
        row = measure(mode, ctm, nm, factor, work)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")
        head = f"| {mode} {nm if mode == 'nearest' else ''} | {ctm} | {LENGTH} -> {LENGTH * factor} |"
        if "error" in row:
            print(f"{head} **failed**: {row['error'][:120]} | | | | |", flush=True)
            continue
        place = lambda a: f"NPU {row[a]['npu_ops']}" if row[a]["npu"] else f"CPU {row[a]['cpu_ops'] or row[a]['error']}"  # noqa: E731
        off = lambda k: (f"{row[f'{k}_wrong_fraction']:.0%} off" if mode == "nearest"  # noqa: E731
                         else f"max {row[f'{k}_max_error']:.4f}")
        print(f"{head} {' '.join(row['operators'])} ({row['backend']}) | {row['float_exact']} ({off('float')}) | "
              f"{row['int8_exact']} ({off('int8')}, step {row['int8_step']:.4f}) | "
              f"{place(ACCELERATORS[0])} | {place(ACCELERATORS[1])} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
