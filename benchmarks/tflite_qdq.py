#!/usr/bin/env python3
"""The int8 path of the TFLite benchmark: QDQ models through onnx2tf into LiteRT (not a test).

For each quantized sample (models/*_qdq_*.onnx), the ORIGINAL and the
REWRITTEN model (convrewrite's defaults) are converted by onnx2tf with each
backend (flatbuffer_direct, onnx2tf 2.x's default; tf_converter, TensorFlow's
TFLiteConverter), twice:

- "as exported": the QDQ model as it is (onnx2tf's float32 .tflite; what
  onnx2tf makes of QuantizeLinear / DequantizeLinear is the question);
- "-oiqt": onnx2tf's full-integer quantization (its own calibration,
  convert_tflite.calibration_data).

Each .tflite is run in LiteRT (XNNPACK, as by default) on seeded random
inputs, and this script reports whether it converted, which convolutions
(CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV) compute in int8 and which in
float (the type of their input tensor), the flagged operators (as
convert_tflite.py flags them), and how far LiteRT's outputs are from
onnxruntime's on the ORIGINAL QDQ model, in quantization steps of the
model's output (the scale of the DequantizeLinear producing it): against
its spec semantics (graph optimizations off) and against its fused int8
execution (ORT_ENABLE_ALL), as convrewrite's own verification compares.

It needs TensorFlow and onnx2tf (benchmarks/requirements-tflite.txt):

    PYTHONPATH=. /tmp/tflite-venv/bin/python benchmarks/tflite_qdq.py [--models A.onnx ...]
        [--keep DIR] [--update-doc docs/tflite.md] [--target tflite]
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
from collections import Counter

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import convert_tflite as ct  # noqa: E402  (beside this file)

BACKENDS = ct.BACKENDS
CONVOLUTIONS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")
BEGIN, END = "<!-- tflite_qdq: begin -->", "<!-- tflite_qdq: end -->"


def conv_types(path: str) -> Counter:
    """'CONV_2D int8' / 'CONV_2D float32' ...: convolutions by the type of their input."""
    from ai_edge_litert import schema_py_generated as schema

    model, op_name = ct.read_flatbuffer(path)
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    found = Counter()
    for sg in model.subgraphs:
        for op in sg.operators:
            name = op_name(op)
            if name in CONVOLUTIONS:
                data = op.inputs[2] if name == "TRANSPOSE_CONV" else op.inputs[0]   # TRANSPOSE_CONV: (shape, w, x)
                found[f"{name} {types[sg.tensors[data].type]}"] += 1
    return found


def onnxruntime_outputs(model, feeds: dict, fused: bool) -> dict:
    """The QDQ model's outputs under its spec semantics or onnxruntime's fused int8 execution."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if fused
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    return dict(zip(names, session.run(names, feeds)))


def in_steps(want: dict, got: dict, steps: dict) -> str:
    """The worst output's difference in steps (mean / p99 / max), in the ONNX layout."""
    from convrewrite.core.qdq import steps_between, worst

    found = []
    for name, w in want.items():
        layouts = ct.onnx_layouts(np.asarray(got[name]), w.shape)
        found.append(min((steps_between(w, y, steps.get(name, 1.0)) for _, y in layouts), key=lambda s: s.mean))
    s = worst(found)
    return f"{s.mean:.3f} / {s.p99:.0f} / {s.max:.0f}"


def run_one(path: str, work: str, log=print, target=None) -> list:
    import onnx

    from convrewrite.core.qdq import output_steps

    name = os.path.splitext(os.path.basename(path))[0]
    work = os.path.join(work, name)
    os.makedirs(work, exist_ok=True)
    ct.write_calibration_file(work)
    original = onnx.load(path)
    feeds = ct.reference_outputs(original, batch=1)[0]
    reference = {"spec": onnxruntime_outputs(original, feeds, False), "fused": onnxruntime_outputs(original, feeds, True)}
    steps = output_steps(original)
    rewritten, summary = ct.rewrite(path, {}, work, "rewritten", target=target)
    rows = []
    for backend in BACKENDS:
        for label, onnx_path in (("original", path), (f"rewritten for {target}" if target else "rewritten", rewritten)):
            for int8 in (False, True):
                rows.append(_convert_and_run(name, label, onnx_path, backend, int8, work, feeds, reference, steps,
                                             summary, log))
    return rows


def _convert_and_run(name, label, onnx_path, backend, int8, work, feeds, reference, steps, summary, log) -> dict:
    """One conversion: its row of the table."""
    tflite, log_path, seconds = ct.convert(onnx_path, work, label, backend, int8=int8)
    row = {"model": name, "backend": backend, "graph": label, "conversion": "-oiqt" if int8 else "as exported",
           "rewrite": summary if label.startswith("rewritten") else "—", "converted": tflite is not None}
    if tflite is None:
        row["error"] = ct.failure_reason(log_path)
    else:
        ops, flagged, _ = ct.tflite_operators(tflite)
        row.update(convs=conv_types(tflite), flagged=Counter(flagged), quantize=ops["QUANTIZE"],
                   dequantize=ops["DEQUANTIZE"])
        try:
            got = ct.run_tflite(tflite, feeds, reference["spec"])
            row.update({kind: in_steps(want, got, steps) for kind, want in reference.items()})
        except Exception as e:   # LiteRT refused it: say so in the table
            row["error"] = f"LiteRT: {ct._message(e)}"
    log(f"  {name:24s} {backend:17s} {label:9s} {row['conversion']:11s} {seconds:5.1f} s  "
        f"{row.get('spec', row.get('error', ''))}")
    return row


def _counts(c: Counter) -> str:
    return ", ".join(f"{k}×{n}" if n > 1 else k for k, n in sorted(c.items())) or "none"


def table(rows: list) -> str:
    lines = ["| model | onnx2tf backend | graph | conversion | convolutions in the .tflite (by input type) | TRANSPOSE_CONV / RESIZE_* / "
             "dilated | QUANTIZE / DEQUANTIZE | LiteRT vs onnxruntime spec: steps mean / p99 / max | "
             "vs onnxruntime fused int8 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if not r["converted"]:
            lines.append(f"| `{r['model']}` | {r['backend']} | {r['graph']} | {r['conversion']} | not converted: "
                         f"{r['error']} | | | | |")
            continue
        cells = [r.get("spec", r.get("error", "")), r.get("fused", "")]
        lines.append(f"| `{r['model']}` | {r['backend']} | {r['graph']} | {r['conversion']} | {_counts(r['convs'])} | "
                     f"{_counts(r['flagged'])} | {r['quantize']} / {r['dequantize']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def update_doc(doc: str, text: str) -> None:
    with open(doc) as f:
        content = f.read()
    if BEGIN not in content or END not in content:
        raise SystemExit(f"{doc} has no {BEGIN} ... {END} section to replace")
    head, rest = content.split(BEGIN, 1)
    with open(doc, "w") as f:
        f.write(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", help="QDQ ONNX files (default: models/*_qdq_*.onnx)")
    ap.add_argument("--keep", help="work in this folder and keep it (models, .tflite files, onnx2tf logs)")
    ap.add_argument("--update-doc", help="replace the generated table in this markdown file")
    ap.add_argument("--target", help="rewrite for this target profile (e.g. tflite) instead of convrewrite's defaults")
    args = ap.parse_args(argv)
    models = args.models or sorted(glob.glob(os.path.join(ROOT, "models", "*_qdq_*.onnx")))
    work = args.keep or tempfile.mkdtemp(prefix="tflite_qdq_")
    os.makedirs(work, exist_ok=True)
    rows = []
    try:
        for path in models:
            rows += run_one(path, work, log=lambda s: print(s, file=sys.stderr), target=args.target)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = table(rows)
    print(text)
    if args.update_doc:
        update_doc(args.update_doc, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
