"""Float8 QDQ models (opset 19's float8 types): what is rewritten stays on
the float8 grid, and checks count the difference in float8 ulps (a float8
grid is not evenly spaced: one ulp near 100 is 8 scale units)."""
from __future__ import annotations

import logging

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from qdq_models import quantized_float8

from convrewrite import optimize
from convrewrite.core import qdq
from convrewrite.core.report import REWRITTEN
from passes import make_passes

logging.getLogger().setLevel(logging.ERROR)   # the quantizer's pre-processing advice
E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)


def run(model):
    return optimize_with(model)


def test_float8_differences_are_counted_in_ulps():
    values = np.array([0.0, -0.0, 1.0, 1.125, 96.0, 104.0, -3.0, -3.25], np.float32).astype(E4M3)
    ordinals = qdq.float8_ordinals(values)
    assert ordinals[0] == ordinals[1]                                   # the two zeros coincide
    assert ordinals[3] - ordinals[2] == 1 and ordinals[5] - ordinals[4] == 1   # neighbours, however far apart
    assert ordinals[6] - ordinals[7] == 1
    grid = qdq.Float8Grid(1.0, E4M3)
    bits = values.view(np.uint8)                                      # as onnxruntime returns float8 outputs
    assert qdq.steps_between(bits, bits[[1, 0, 3, 2, 5, 4, 7, 6]], grid).max == 1
    scaled = values.astype(np.float32) * np.float32(0.5)               # dequantized floats on the grid
    assert qdq.steps_between(scaled, scaled, qdq.Float8Grid(0.5, E4M3)).max == 0
    assert qdq.steps_between(scaled[[4]], scaled[[5]], qdq.Float8Grid(0.5, E4M3)).max == 1


def test_graph_outputs_of_a_float8_model_are_compared_in_ulps():
    steps = qdq.output_steps(quantized_float8("resize_linear"))
    assert steps == {"y": qdq.Float8Grid(steps["y"].scale, E4M3)}, steps


@pytest.mark.parametrize("name, node, form", [("dilated", "aspp", "batch"), ("resize_nearest", "resize", "shuffle"),
                                              ("resize_linear", "resize", "deconv")])
def test_float8_models_are_rewritten_on_the_float8_grid(name, node, form):
    """Data movement and the exact interpolation kernels keep float8 values:
    equal except rounding ties (a bilinear sum on a float8 grid often lands
    exactly between two float8 numbers; float summation order decides)."""
    model = quantized_float8(name)
    new, report, records = run(model)
    r = records[node]
    assert (r.status, r.form) == (REWRITTEN, form), r.reason
    assert report.verification.equivalent
    for rec in report.rewrites:
        assert rec.status == REWRITTEN, (rec.node, rec.reason)
        for mode in ("spec", "fused"):
            s = rec.quantized_steps[mode]
            assert s["mean"] <= 0.05 and s["p99"] <= 1 and s["max"] <= 1, (rec.node, s)
    ops = {n.op_type for n in new.graph.node}
    assert not ops & {"Resize", "ConvTranspose"}, ops
    assert all(not any(a.name == "dilations" and set(a.ints) != {1} for a in n.attribute)
               for n in new.graph.node if n.op_type == "Conv")
    zero_points = {t.data_type for n in new.graph.node if n.op_type == "QuantizeLinear"
                   for t in new.graph.initializer if t.name == n.input[2]}
    assert zero_points == {onnx.TensorProto.FLOAT8E4M3FN}, zero_points


@pytest.mark.parametrize("form", ["single-conv", "phase-convs"])
def test_a_float8_convtranspose_becomes_a_float8_conv_with_its_float_bias(form):
    """The quantized ConvTranspose forms move the float8 weight values as
    they move int8 ones (missing taps: the zero point, 0); onnxruntime's
    quantizer keeps the bias float, and each phase Conv reads its channels
    of it."""
    model = quantized_float8("convt")
    new, report, records = optimize_with(model, convtranspose_form=form)
    r = records["up"]
    assert (r.status, r.form) == (REWRITTEN, form), r.reason
    assert report.verification.equivalent
    assert all(r.quantized_steps[m]["max"] == 0 for m in ("spec", "fused")), r.quantized_steps
    inits = {t.name: t for t in new.graph.initializer}
    producer = {o: n for n in new.graph.node for o in n.output}
    convs = [n for n in new.graph.node if n.op_type == "Conv"]
    assert convs and not any(n.op_type == "ConvTranspose" for n in new.graph.node)
    for conv in convs:
        assert inits[producer[conv.input[1]].input[0]].data_type == onnx.TensorProto.FLOAT8E4M3FN
        assert inits[conv.input[2]].data_type == onnx.TensorProto.FLOAT
    original = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    kept = np.concatenate([numpy_helper.to_array(inits[producer[c.input[1]].input[0]]).astype(np.float32).ravel()
                           for c in convs])
    weights = original["w_quantized"].astype(np.float32).ravel()
    assert set(kept[kept != 0].tolist()) <= set(weights.tolist())   # values moved, none made up


def optimize_with(model, **options):
    new, report = optimize(model, passes=make_passes(None, options))
    return new, report, {r.node: r for r in report.rewrites}
