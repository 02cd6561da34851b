#!/usr/bin/env python3
"""Quantized (QDQ int8) versions of three sample models, as deployments make them.

    python models/quantize.py        # needs onnx and onnxruntime only (no torch)

models/export.py runs it after exporting the float samples.  Each float
sample is quantized with onnxruntime's quantize_static in QDQ format:
per-channel int8 weights, and uint8 (asymmetric) or int8 (symmetric)
activations, calibrated on seeded random batches (the samples' weights are
random too, so real images would calibrate no better).  The same onnxruntime
version gives the same files.
"""
from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))

# (float sample, activation type): a ConvTranspose decoder, a dilated ASPP
# with a bilinear Resize, and an FPN with nearest upsampling.
QUANTIZED = (("unet_decoder", "uint8"), ("deeplab_aspp", "int8"), ("fpn_nearest", "uint8"))
CALIBRATION_BATCHES = 8


def quantized_path(name: str, activations: str) -> str:
    return os.path.join(HERE, f"{name}_qdq_{activations}.onnx")


def _batches(model: onnx.ModelProto, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    shapes = {i.name: [d.dim_value or 1 for d in i.type.tensor_type.shape.dim] for i in model.graph.input
              if i.name not in {t.name for t in model.graph.initializer}}
    return [{name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
            for _ in range(CALIBRATION_BATCHES)]


def quantize(name: str, activations: str, seed: int = 0) -> str:
    """Write the QDQ version of models/<name>.onnx; returns its path."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    src = os.path.join(HERE, f"{name}.onnx")
    batches = iter(_batches(onnx.load(src), seed))

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    dst = quantized_path(name, activations)
    with tempfile.TemporaryDirectory() as tmp:   # the quantizer writes its own temporary files beside
        out = os.path.join(tmp, "q.onnx")
        quantize_static(src, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8,
                        extra_options={"ActivationSymmetric": activations == "int8"})
        model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, dst)
    return dst


def main() -> int:
    for name, activations in QUANTIZED:
        path = quantize(name, activations)
        print(f"{os.path.basename(path):36s} {os.path.getsize(path) / 1024:7.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
