"""Float16 QDQ models (opset 19 and later: DequantizeLinear outputs float16 from 19): DequantizeLinear outputs its scale's type, so a new
DequantizeLinear that feeds the model's Conv or ConvTranspose needs a
float16 scale (and a float bias beside it float16 too); a float32 one makes
a model onnxruntime refuses (its Conv's T bound to float16 and float)."""
from __future__ import annotations

import logging
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

pytest.importorskip("onnxruntime.quantization")

from convrewrite import optimize
from convrewrite.core.equivalence import run_model
from convrewrite.core.report import REWRITTEN
from convrewrite.core.rewrite import Code
from passes import make_passes
from qdq_models import as_float16, quantized

logging.getLogger().setLevel(logging.ERROR)   # the quantizer's pre-processing advice


def _scales_are_float16(model):
    """Every DequantizeLinear's scale is float16 (its output the model's type)."""
    inits = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear":
            assert inits[n.input[1]].data_type == TensorProto.FLOAT16, n.name


@pytest.mark.parametrize("name, node, forms", [("convt", "up", {"single-conv"}),
                                               ("resize_linear", "resize", {"deconv", "single-conv"}),
                                               ("resize_linear_x8", "resize", {"deconv", "single-conv"})])
@pytest.mark.parametrize("verify", [True, False])
def test_float16_qdq_nodes_are_rewritten_with_float16_scales(name, node, forms, verify):
    model = as_float16(quantized(name, opset=21))
    new, report = optimize(model, passes=make_passes(None, {}), verify=verify)
    assert {r.form for r in report.rewrites} == forms, [(r.node, r.status, r.reason) for r in report.rewrites]
    assert all(r.status == REWRITTEN for r in report.rewrites), [(r.node, r.reason) for r in report.rewrites]
    onnx.checker.check_model(new, full_check=True)
    _scales_are_float16(new)
    x = np.random.default_rng(0).standard_normal([d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim])
    feeds = {"x": x.astype(np.float16)}
    got = run_model(new, feeds)[0][0]   # onnxruntime runs the written model
    assert got.dtype == np.float16
    if verify:
        assert report.verification.equivalent is True, report.verification
        assert report.verification.quantized_steps["spec"]["p99"] <= 1


def test_a_float16_float_bias_stays_float16():
    """A ConvTranspose whose bias is a float constant (kept float by some
    exporters): each new Conv reads its channels of it, in float16."""
    model = as_float16(quantized("convt", opset=21))
    producers = {o: n for n in model.graph.node for o in n.output}
    up = next(n for n in model.graph.node if n.op_type == "ConvTranspose")
    b_dq = producers[up.input[2]]
    inits = {t.name: t for t in model.graph.initializer}
    bias = (numpy_helper.to_array(inits[b_dq.input[0]]) * numpy_helper.to_array(inits[b_dq.input[1]]))
    model.graph.initializer.append(numpy_helper.from_array(bias.astype(np.float16), "b_float"))
    up.input[2] = "b_float"
    model.graph.node.remove(b_dq)
    new, report = optimize(model, passes=make_passes(None, {}))
    r = next(r for r in report.rewrites if r.node == "up")
    assert (r.status, r.form) == (REWRITTEN, "single-conv"), r.reason
    assert report.verification.equivalent is True, report.verification
    conv = next(n for n in new.graph.node if n.op_type == "Conv")
    assert {t.name: t for t in new.graph.initializer}[conv.input[2]].data_type == TensorProto.FLOAT16


def test_a_float16_dilated_conv_left_on_tflite_says_why_each_form_was_refused():
    """With float16 scales the im2col form does not apply (its Concat would be
    a QLinearConcat, float32 scales only), and batch needs a batch of 4: the
    no-form reason names both, closest first (it used to name only the
    closest, batch, and never said why im2col was not used), and the float
    forms in one clause."""
    model = as_float16(quantized("dilated", "uint8", opset=19))
    _, report = optimize(model, target="tflite", verify=False)
    (r,) = [r for r in report.rewrites if r.node == "aspp"]
    assert (r.status, r.code) == ("skipped", Code.NO_FORM), r.reason
    assert r.reason.startswith("Conv 'aspp': no lowering form runs on target 'tflite', so the node is left as it "
                               "is; closest first: 'batch' would leave 1 node(s) the target does not run"), r.reason
    assert "the target requires batch 1), not fewer than the 1 it replaces;" in r.reason
    assert re.search(r"; im2col: not applicable: its Concat between QuantizeLinear/DequantizeLinear of float16 "
                     r"scales: onnxruntime fuses it into a QLinearConcat, which takes float32 scales only", r.reason)
    assert "; bias-only, depth, slices, reshape, taps: not applicable: it computes in float" in r.reason
    assert r.reason.index("'batch'") < r.reason.index("im2col:") < r.reason.index("depth, slices")


@pytest.mark.parametrize("name, target, form", [("dilated", "tflite", "im2col"),
                                                ("resize_linear_x8", "arm-ethos-u55", "deconv")])
def test_no_concat_between_float16_qdq(name, target, form):
    """onnxruntime fuses DQ -> Concat -> Q into a QLinearConcat, float32 scales
    only: the forms that concatenate between Q/DQ (dilated im2col, the Resize's
    int8 weights in parts) are not built on float16 scales, so no rewrite is
    rolled back and --no-verify writes no model onnxruntime refuses; with
    float32 scales the same node takes that form."""
    import onnxruntime as ort

    from convrewrite.core.qdq import fused_concat_problem

    float32 = quantized(name, opset=21)
    written, report = optimize(float32, target=target, verify=False)
    assert report.rewrites and report.rewrites[0].form == form
    assert "Concat" in {n.op_type for n in written.graph.node}
    model = as_float16(quantized(name, opset=21))
    new, report = optimize(model, target=target, verify=False)
    assert not any(r.status == REWRITTEN and r.form == form for r in report.records()), report.records()
    assert "Concat" not in {n.op_type for n in new.graph.node}
    ort.InferenceSession(new.SerializeToString(), providers=["CPUExecutionProvider"])   # it loads
    _, verified = optimize(model, target=target)
    assert not [r for r in verified.records() if r.status == "rolled_back"], verified.records()

    class Graph:   # the scale's type alone decides
        def __init__(self, dtype):
            self.dtype = lambda name: dtype
    assert fused_concat_problem(Graph(TensorProto.FLOAT), ("s", "z")) is None
    assert "float32 scales only" in fused_concat_problem(Graph(TensorProto.FLOAT16), ("s", "z"))
