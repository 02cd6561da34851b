"""Quantized (QDQ) models: a rewrite never dequantizes them.

The models come from onnxruntime's quantize_static (QDQ format, per-channel
int8 weights, uint8 or int8 activations).  Every test counts what onnxruntime
runs after its own QDQ fusion: a rewrite must not add a float Conv (or any
float compute) where the original ran QLinearConv."""
from __future__ import annotations

import logging

import pytest

pytest.importorskip("onnxruntime.quantization")

from convrewrite import optimize
from convrewrite.core.report import REWRITTEN, SKIPPED
from convrewrite.core.rewrite import Code
from passes import make_passes
from qdq_models import float_compute, fused_counts, quantized

logging.getLogger().setLevel(logging.ERROR)   # the quantizer's pre-processing advice
ACTIVATIONS = ("uint8", "int8")


def run(model, **options):
    new, report = optimize(model, passes=make_passes(None, options))
    return new, report, {r.node: r for r in report.rewrites}


def assert_still_quantized(before, after):
    """After onnxruntime's fusion: no more float compute, no fewer QLinearConv."""
    a, b = fused_counts(before), fused_counts(after)
    assert float_compute(b) <= float_compute(a), (dict(a), dict(b))
    assert b.get("QLinearConv", 0) >= a.get("QLinearConv", 0), (dict(a), dict(b))
    return a, b


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_a_quantized_dilated_conv_is_left_quantized_with_the_code(act):
    model = quantized("dilated", act)
    new, report, records = run(model)
    r = records["aspp"]
    assert (r.status, r.code) == (SKIPPED, Code.QUANTIZED)
    assert "DequantizeLinear" in r.reason and "rather than dequantized" in r.reason
    assert_still_quantized(model, new)


@pytest.mark.parametrize("mode", ["batch", "depth", "slices", "taps"])
def test_no_dilated_form_dequantizes_even_when_asked_for(mode):
    model = quantized("dilated")
    _, report, records = run(model, dilated_mode=mode)
    assert records["aspp"].code == Code.QUANTIZED


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_a_linear_resize_between_qdq_is_left_quantized(act):
    model = quantized("resize_linear", act)
    new, report, records = run(model)
    r = records["resize"]
    assert (r.status, r.code) == (SKIPPED, Code.QUANTIZED)
    assert "linear" in r.reason
    assert_still_quantized(model, new)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_a_nearest_resize_between_qdq_becomes_quantized_data_movement(act):
    model = quantized("resize_nearest", act)
    new, report, records = run(model)
    r = records["resize"]
    assert (r.status, r.form) == (REWRITTEN, "shuffle"), r.reason
    assert report.verification.equivalent and report.verification.max_abs_error == 0.0
    before, after = assert_still_quantized(model, new)
    assert after.get("QLinearConv") == 2 and "Resize" not in after
    # every data-movement op of the shuffle sits between Q/DQ of the Resize's grid
    producer = {o: n for n in new.graph.node for o in n.output}
    for n in new.graph.node:
        if n.op_type in ("Tile", "DepthToSpace"):
            assert producer[n.input[0]].op_type == "DequantizeLinear"
            (q,) = [c for c in new.graph.node if n.output[0] in c.input]
            assert q.op_type == "QuantizeLinear" and q.input[1] == producer[n.input[0]].input[1]


def test_the_deconv_form_of_a_quantized_nearest_resize_is_refused():
    model = quantized("resize_nearest")
    _, _, records = run(model, resize_nearest="deconv")
    assert records["resize"].form == "shuffle"   # the preferred form would dequantize; shuffle keeps it


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_a_quantized_convtranspose_is_never_dequantized(act):
    model = quantized("decoder", act)
    new, report, records = run(model)
    r = records["up"]
    assert r.code == Code.QUANTIZED or r.status == REWRITTEN
    if r.status != REWRITTEN:
        assert "QDQ" in r.reason
    assert_still_quantized(model, new)
    assert report.verification.equivalent
