"""Nearest Resize on Arm Ethos-U: every ONNX coordinate mode and rounding through
onnx2tf and Vela (not a test; docs/ethos_u.md, *Nearest Resize: which ONNX modes
onnx2tf computes*).

For each coordinate_transformation_mode x nearest_mode at equal factors 2, 4, 8
(align_corners at (OFM-1)/(IFM-1) = 2, 4, 8, and at 8 -> 16), the model of
tests/target/test_vela.py's `resize` case (x [1, 8, h, h] -> 1x1 Conv ->
Resize nearest) with the identity as the 1x1 Conv's weights, so that the
Resize's input is the graph's input: converted with onnx2tf -oiqt
(benchmarks/ethos_u.py: flatbuffer_direct, tf_converter where that fails),
compiled with Vela for ethos-u55-128 and ethos-u85-256, and both the float32
and the full-integer int8 .tflite run on LiteRT's reference kernels against
onnxruntime on the ONNX model.

The input makes every value of a channel distinct and 1/64 apart (4 int8 steps
of the [0, 1) calibration range), so each output value names the input pixel it
was taken from, in float and in int8 alike: the check compares those source
pixels, not values with a tolerance. A row of the table gives, per axis, the
input index each output index took where LiteRT and onnxruntime differ.

    /work/venv-vela/bin/python benchmarks/ethos_u_nearest.py [--json OUT.jsonl] [--other-ratios] [--only asymmetric,floor,8,16 ...]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Optional

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.ethos_u import compile_onnx, tflite_operators  # noqa: E402

ACCELERATORS = ("ethos-u55-128", "ethos-u85-256")
COORDINATE_MODES = ("asymmetric", "half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "half_pixel_symmetric")
NEAREST_MODES = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")
FACTORS = (2, 4, 8)
CHANNELS = 4   # not an input side: the layout of the .tflite (NHWC) is read from its input's shape
LEVELS = 64   # distinct values per channel, 1/64 apart


def grid() -> list:
    """(coordinate mode, nearest mode, input side, output side) of every case:
    equal factors 2/4/8 on 8x8, align_corners by (out-1)/(in-1) on 5x5 and at 8 -> 16."""
    cases = [(ctm, nm, 8, 8 * f) for ctm in COORDINATE_MODES for nm in NEAREST_MODES for f in FACTORS]
    cases += [("align_corners", nm, 5, 4 * f + 1) for nm in NEAREST_MODES for f in FACTORS]
    cases += [("align_corners", nm, 8, 16) for nm in NEAREST_MODES]
    return cases


# The combinations exact at x2/x4/x8 (measured with grid()): onnx2tf writes every nearest Resize as
# RESIZE_NEAREST_NEIGHBOR with half_pixel_centers for the half-pixel modes, whatever its nearest_mode.
EXACT_AT_POWERS_OF_TWO = (("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"),
                          ("half_pixel", "round_prefer_ceil"), ("pytorch_half_pixel", "round_prefer_floor"),
                          ("pytorch_half_pixel", "round_prefer_ceil"), ("tf_half_pixel_for_nn", "floor"))


def other_ratios() -> list:
    """The ratios only the U85 takes (`max_factor`), for the combinations exact at x2/x4/x8:
    x3, x1.5, x0.5 on 8x8, x17 on 2x2."""
    return [(ctm, nm, n, m) for ctm, nm in EXACT_AT_POWERS_OF_TWO for n, m in ((8, 24), (8, 12), (8, 4), (2, 34))]


def case_name(ctm: str, nm: str, n: int, m: int) -> str:
    return f"{ctm}_{nm}_{n}_{m}"


def value_model(ctm: str, nm: str, n: int, m: int) -> onnx.ModelProto:
    """test_vela.py's Resize case (opset 19 for half_pixel_symmetric) with the 1x1 Conv the identity."""
    from onnx import helper

    from tests.target.test_vela import _ints, after_conv

    node = helper.make_node("Resize", ["t", "", "", "sizes"], ["y"], mode="nearest",
                            coordinate_transformation_mode=ctm, nearest_mode=nm)
    opset = 19 if ctm == "half_pixel_symmetric" else 17
    model = after_conv([node], [_ints("sizes", [1, CHANNELS, m, m])], c=CHANNELS, h=n, w=n, opset=opset)
    eye = np.eye(CHANNELS, dtype=np.float32).reshape(CHANNELS, CHANNELS, 1, 1)
    for k, init in enumerate(model.graph.initializer):
        if init.name == "w0":
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(eye, "w0"))
    return model


def labelled_input(n: int) -> np.ndarray:
    """[1, C, n, n]: channel c holds the values (k + 7c mod LEVELS + 0.5) / LEVELS, k the
    pixel's index in raster order, all distinct for n*n <= LEVELS."""
    k = np.arange(n * n).reshape(n, n)
    x = np.stack([((k + 7 * c) % LEVELS + 0.5) / LEVELS for c in range(CHANNELS)])
    return x[None].astype(np.float32)


def source_pixels(y: np.ndarray, n: int) -> np.ndarray:
    """The input pixel (raster index) each output value was taken from, per channel:
    the nearest of the channel's labels."""
    k = np.arange(n * n)
    out = np.empty(y.shape, np.int64)
    for c in range(y.shape[1]):
        labels = ((k + 7 * c) % LEVELS + 0.5) / LEVELS
        out[0, c] = k[np.abs(y[0, c][..., None] - labels).argmin(-1)]
    return out


def onnxruntime_output(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def litert_output(tflite: str, x: np.ndarray) -> np.ndarray:
    """LiteRT's reference kernels (no XNNPACK) on x, NCHW (or NCW) in and out; an int8 model's
    input quantized and its output dequantized with their own parameters."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    # onnx2tf's layout, channels last (NHWC, or NWC for a 1-D map); the output's is the input's
    nhwc = list(inp["shape"]) != list(x.shape)
    last = (0,) + tuple(range(2, x.ndim)) + (1,)
    feed = x.transpose(last) if nhwc else x
    if inp["dtype"] != np.float32:
        scale, zero = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        feed = np.clip(np.round(feed / scale + zero), info.min, info.max).astype(inp["dtype"])
    it.set_tensor(inp["index"], feed)
    it.invoke()
    got = it.get_tensor(out["index"])
    if got.dtype != np.float32:
        scale, zero = out["quantization"]
        got = (got.astype(np.float32) - zero) * scale
    return got.transpose(np.argsort(last)) if nhwc else got


def axis_maps(src: np.ndarray, n: int) -> tuple:
    """The input row each output row took (along the first column) and the input column
    each output column took (along the first row), of channel 0."""
    return [int(v) for v in src[0, 0, :, 0] // n], [int(v) for v in src[0, 0, 0, :] % n]


def resize_options(tflite: str) -> list:
    """(align_corners, half_pixel_centers) of each RESIZE_NEAREST_NEIGHBOR of the .tflite."""
    from ai_edge_litert import schema_py_generated as schema

    with open(tflite, "rb") as f:
        model = schema.ModelT.InitFromPackedBuf(f.read(), 0)
    code = schema.BuiltinOperator.RESIZE_NEAREST_NEIGHBOR
    out = []
    for sg in model.subgraphs:
        for op in sg.operators:
            c = model.operatorCodes[op.opcodeIndex]
            if max(c.builtinCode, c.deprecatedBuiltinCode) == code:
                out.append((bool(op.builtinOptions.alignCorners), bool(op.builtinOptions.halfPixelCenters)))
    return out


def compiled(model: onnx.ModelProto, name: str, work: str, row: dict) -> Optional[str]:
    """`model` saved in `work`, converted to int8 TFLite and compiled by Vela for
    ACCELERATORS: `row` gets the backend, the TFLite operators and each
    accelerator's placement, or the conversion's error; the int8 TFLite's path (None: no
    conversion)."""
    path = os.path.join(work, f"{name}.onnx")
    onnx.save(model, path)
    tflite, results, error = compile_onnx(path, ACCELERATORS, os.path.join(work, name))
    if tflite is None:
        row["error"] = error
        return None
    row["backend"] = "flatbuffer_direct" if "flatbuffer_direct" in tflite else "tf_converter"
    row["operators"] = tflite_operators(tflite)
    for acc in ACCELERATORS:
        r = results[acc]
        row[acc] = {"npu": r.ok and r.cpu == 0, "npu_ops": r.npu, "cpu_ops": dict(r.cpu_ops), "error": r.error,
                    "reasons": r.cpu_reasons}
    return tflite


def measure(ctm: str, nm: str, n: int, m: int, work: str) -> dict:
    name = case_name(ctm, nm, n, m)
    model = value_model(ctm, nm, n, m)
    row = {"case": name, "ctm": ctm, "nearest_mode": nm, "in": n, "out": m}
    tflite = compiled(model, name, work, row)
    if tflite is None:
        return row
    row["resize_options"] = resize_options(tflite)
    x = labelled_input(n)
    want = source_pixels(onnxruntime_output(model, x), n)
    row["onnxruntime_rows"], row["onnxruntime_cols"] = axis_maps(want, n)
    float_tflite = tflite.replace("_full_integer_quant.tflite", "_float32.tflite")
    for kind, file in (("float", float_tflite), ("int8", tflite)):
        got = source_pixels(litert_output(file, x), n)
        row[f"{kind}_exact"] = bool((got == want).all())
        row[f"{kind}_wrong_fraction"] = float((got != want).mean())
        row[f"{kind}_rows"], row[f"{kind}_cols"] = axis_maps(got, n)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="append each case's row to this file (JSON lines)")
    ap.add_argument("--only", nargs="+", default=None, help="cases as ctm,nearest_mode,in,out (sides)")
    ap.add_argument("--other-ratios", action="store_true", help="x3, x1.5, x0.5, x17 instead of the grid (U85)")
    ap.add_argument("--work", default=None, help="keep the conversions here (default: a temporary directory)")
    args = ap.parse_args(argv)
    work = args.work or tempfile.mkdtemp(prefix="nearest_")
    os.makedirs(work, exist_ok=True)
    cases = other_ratios() if args.other_ratios else grid()
    if args.only:
        cases = [c for c in grid() + other_ratios() if ",".join(map(str, c)) in args.only]
    print("| mode | nearest_mode | in -> out | TFLite operators | float exact | int8 exact | U55 | U85 |")
    print("|---|---|---|---|---|---|---|---|")
    for ctm, nm, n, m in cases:
        row = measure(ctm, nm, n, m, work)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")
        if "error" in row:
            print(f"| {ctm} | {nm} | {n} -> {m} | **failed**: {row['error'][:120]} | | | | |", flush=True)
            continue
        place = lambda a: "NPU" if row[a]["npu"] else f"CPU {row[a]['cpu_ops'] or row[a]['error']}"  # noqa: E731
        print(f"| {ctm} | {nm} | {n} -> {m} | {' '.join(row['operators'])} {row['resize_options']} | "
              f"{row['float_exact']} | {row['int8_exact']} | {place(ACCELERATORS[0])} | {place(ACCELERATORS[1])} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
