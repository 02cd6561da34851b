"""align_corners bilinear Resize on Arm Ethos-U: four exact spellings through
onnx2tf int8 and Vela (not a test; docs/ethos_u.md, *align_corners*).

For each size (C channels, n -> m on both spatial axes) the model is
x [1, C, n, n] -> 1x1 Conv -> the Resize (linear, align_corners) -> y, and
the Resize is spelled four ways:

    resize     the Resize itself (onnx2tf: RESIZE_BILINEAR)
    matmul     convrewrite --resize-mode matmul: MatMul(x, M_W^T), MatMul(M_H, x)
    gemm       per axis Reshape to 2-D, Gemm with the constant matrix, Reshape
               back; a Transpose brings H last (built here, not a convrewrite form)
    pointwise  convrewrite --resize-mode pointwise: Transpose + 1x1 Conv per axis

Each is checked against the Resize on onnxruntime (float), converted with
onnx2tf -oiqt and compiled with Vela for ethos-u55-128 and ethos-u85-256
(benchmarks/ethos_u.py), and its int8 .tflite is run on LiteRT against
onnxruntime on the float Resize model (seeded input in [0, 1)).

    /work/venv-vela/bin/python benchmarks/ethos_u_align_corners.py --sizes 12,16,64 256,16,64 21,64,256
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.ethos_u import compile_onnx, tflite_operators  # noqa: E402
from convrewrite import optimize  # noqa: E402
from passes.resize.interpolation import interpolation_matrix, read_resize  # noqa: E402

ACCELERATORS = ("ethos-u55-128", "ethos-u85-256")
SPELLINGS = ("resize", "matmul", "gemm", "pointwise")


def resize_model(c: int, n: int, m: int) -> onnx.ModelProto:
    """x [1, c, n, n] -> 1x1 Conv -> Resize linear align_corners to m x m."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((c, c, 1, 1)) * 0.3).astype(np.float32), "w0"),
             numpy_helper.from_array(np.array([1, c, m, m], np.int64), "sizes")]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["t"], name="pre"),
             helper.make_node("Resize", ["t", "", "", "sizes"], ["y"], name="up", mode="linear",
                              coordinate_transformation_mode="align_corners")]
    graph = helper.make_graph(nodes, "align_corners",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, m, m])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def gemm_model(original: onnx.ModelProto, c: int, n: int, m: int) -> onnx.ModelProto:
    """The Resize as Reshape -> Gemm(constant M^T) -> Reshape along W, then
    Transpose (H last), the same along H, Transpose back."""
    from convrewrite.core.graph import GraphView

    graph = GraphView(original)
    spec = read_resize(original.graph.node[-1], graph)
    matrix, _ = interpolation_matrix(spec.interp, spec.axes[3])   # [m, n], the same for H
    ints = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    inits = list(original.graph.initializer[:1]) + [
        numpy_helper.from_array(np.ascontiguousarray(matrix.T).astype(np.float32), "mt"),
        ints("rows_w", [c * n, n]), ints("back_w", [1, c, n, m]),
        ints("rows_h", [c * m, n]), ints("back_h", [1, c, m, m])]
    nodes = [original.graph.node[0],
             helper.make_node("Reshape", ["t", "rows_w"], ["a1"]),
             helper.make_node("Gemm", ["a1", "mt"], ["a2"]),
             helper.make_node("Reshape", ["a2", "back_w"], ["a3"]),
             helper.make_node("Transpose", ["a3"], ["a4"], perm=[0, 1, 3, 2]),
             helper.make_node("Reshape", ["a4", "rows_h"], ["a5"]),
             helper.make_node("Gemm", ["a5", "mt"], ["a6"]),
             helper.make_node("Reshape", ["a6", "back_h"], ["a7"]),
             helper.make_node("Transpose", ["a7"], ["y"], perm=[0, 1, 3, 2])]
    g = helper.make_graph(nodes, "gemm", list(original.graph.input), list(original.graph.output), inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def spelled(spelling: str, original: onnx.ModelProto, c: int, n: int, m: int) -> onnx.ModelProto:
    if spelling == "resize":
        return original
    if spelling == "gemm":
        return gemm_model(original, c, n, m)
    model, report = optimize(original, passes=["resize"], options={"resize_mode": spelling})
    assert report.rewritten == 1 and report.verification.equivalent, report.rewrites
    return model


def float_difference(a: onnx.ModelProto, b: onnx.ModelProto, x: np.ndarray) -> float:
    import onnxruntime as ort

    def run(model):
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"x": x})[0]

    return float(np.abs(run(a) - run(b)).max())


def int8_agreement(tflite: str, original: onnx.ModelProto, x: np.ndarray) -> tuple[float, float]:
    """(max, mean) |LiteRT int8 - onnxruntime float| in steps of the output's quantization."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    want = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    # XNNPACK does not take the align_corners RESIZE_BILINEAR: the reference kernels for all
    it = Interpreter(model_path=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    feed = x if list(inp["shape"]) == list(x.shape) else x.transpose(0, 2, 3, 1)
    scale, zero = inp["quantization"]
    it.set_tensor(inp["index"], np.clip(np.round(feed / scale + zero), -128, 127).astype(inp["dtype"]))
    it.invoke()
    scale, zero = out["quantization"]
    got = (it.get_tensor(out["index"]).astype(np.float32) - zero) * scale
    got = got if got.shape == want.shape else got.transpose(0, 3, 1, 2)
    steps = np.abs(got - want) / scale
    return float(steps.max()), float(steps.mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["12,16,64"], help="C,n,m: channels, input and output side")
    ap.add_argument("--spellings", nargs="+", default=list(SPELLINGS), choices=SPELLINGS)
    ap.add_argument("--work", default=None, help="keep the conversions here (default: a temporary directory)")
    args = ap.parse_args(argv)
    work = args.work or tempfile.mkdtemp(prefix="align_corners_")
    os.makedirs(work, exist_ok=True)
    print("| C, n -> m | spelling | float max diff | TFLite operators | U55 NPU / CPU ops | U55 ms | "
          "U85 NPU / CPU ops | U85 ms | int8 max / mean steps |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        c, n, m = (int(v) for v in size.split(","))
        original = resize_model(c, n, m)
        x = np.random.default_rng(2).random((1, c, n, n), dtype=np.float32)
        for spelling in args.spellings:
            model = spelled(spelling, original, c, n, m)
            path = os.path.join(work, f"{spelling}_{c}_{n}_{m}.onnx")
            onnx.save(model, path)
            tflite, results, error = compile_onnx(path, ACCELERATORS, os.path.join(work, f"{spelling}_{c}_{n}_{m}"))
            cells = [f"{c}, {n} -> {m}", spelling, f"{float_difference(original, model, x):.1e}"]
            if tflite is None:
                print("| " + " | ".join(cells + [f"**failed**: {error[:120]}"] + [""] * 5) + " |")
                continue
            backend = "" if "flatbuffer_direct" in tflite else " (tf_converter)"
            cells.append(" ".join(tflite_operators(tflite)) + backend)
            for acc in ACCELERATORS:
                r = results[acc]
                cpu = ", ".join(f"{op}×{k}" for op, k in sorted(r.cpu_ops.items()))
                cells += [f"{r.npu} / {r.cpu}" + (f" ({cpu})" if cpu else ""), f"{r.ms:.3f}"] if r.ok else [r.error, ""]
            worst, mean = int8_agreement(tflite, original, x)
            cells.append(f"{worst:.2f} / {mean:.2f}")
            print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
