"""dilated-conv, im2col form (passes/dilated_conv/im2col.py): the taps as
input channels of one Conv, float and quantized (QDQ)."""
from __future__ import annotations

import logging
import re
from math import prod
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto

from builders import conv_model
from convrewrite import optimize
from convrewrite.core.graph import GraphView, attributes
from convrewrite.core.report import REWRITTEN
from convrewrite.target import check_model, load_profile
from helpers import assert_rewrites
from passes import make_passes
from passes.dilated_conv.im2col import tap_major
from passes.dilated_conv.rewrite import DilatedConvToSpaceToBatch as DilatedConv
from test_dilated_conv import CASES, assert_built_costs_exact, dilated_convs, form_pass

pytest.importorskip("onnxruntime.quantization")
from qdq_models import DILATED_GEOMETRIES, assert_movement_on_grid, float_compute, fused_counts, quantized  # noqa: E402

logging.getLogger().setLevel(logging.ERROR)   # the quantizer's pre-processing advice
MODELS = Path(__file__).resolve().parents[2] / "models"
UNGROUPED = sorted(k for k, (_, w, a, _) in CASES.items() if a.get("group", 1) == 1)


def taps_of(w_shape, dilations) -> int:
    return prod(k for k, d in zip(w_shape[2:], dilations) if d > 1)


# --- float -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", UNGROUPED)
def test_every_ungrouped_case_becomes_one_undilated_conv_over_the_tap_channels(case):
    x_shape, w_shape, attrs, _ = CASES[case]
    model = conv_model(x_shape, w_shape, **attrs)
    new, report = assert_rewrites(model, form_pass("im2col"), {"Conv": 1, "Concat": 1})
    assert [r.form for r in report.records(REWRITTEN)] == ["im2col"] and not dilated_convs(new)
    conv = next(n for n in new.graph.node if n.op_type == "Conv")
    a = attributes(conv)
    t = taps_of(w_shape, attrs["dilations"])
    w = next(i for i in new.graph.initializer if i.name == conv.input[1])
    assert list(w.dims[:2]) == [w_shape[0], t * w_shape[1]]
    assert a["kernel_shape"] == [1 if d > 1 else k for k, d in zip(w_shape[2:], attrs["dilations"])]
    assert "pads" not in a and "dilations" not in a
    # step-1 Slices only: one per tap, plus a crop where the window cuts x
    slices = [n for n in new.graph.node if n.op_type == "Slice"]
    assert t <= len(slices) <= t + 1
    assert all(len(n.input) < 5 for n in slices)


@pytest.mark.parametrize("opset", [17, 9])
@pytest.mark.parametrize("case", sorted(CASES))
def test_im2col_cost_is_the_built_replacements(case, opset):
    """All four figures of every variant (channels, pixels), batch 1 and
    symbolic, float32 and float16, opset 9."""
    x_shape, w_shape, attrs, _ = CASES[case]
    for batch, bias_input, dtype in ((1, False, TensorProto.FLOAT), ("N", True, TensorProto.FLOAT16)):
        model = conv_model(x_shape, w_shape, batch=batch, opset=opset, bias_input=bias_input, dtype=dtype, **attrs)
        assert "im2col" in assert_built_costs_exact(model, form_pass("batch"))


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 3, 11, 10), (4, 3, 3, 3), dict(dilations=[2, 3], strides=[2, 1], pads=[1, 2, 3, 1])),
    ((1, 2, 13, 12), (3, 2, 3, 3), dict(dilations=[4, 2], strides=[2, 2], pads=[4, 4, 4, 4])),
    ((1, 2, 13), (3, 2, 3), dict(dilations=[3], strides=[2], pads=[0, 1])),
    ((1, 2, 7, 8, 9), (3, 2, 2, 3, 2), dict(dilations=[2, 3, 1], pads=[1, 0, 2, 1, 2, 0])),
])
def test_strided_and_3d_im2col(x_shape, w_shape, attrs):
    model = conv_model(x_shape, w_shape, **attrs)
    assert_rewrites(model, form_pass("im2col"), {"Conv": 1, "Concat": 1})
    assert "im2col" in assert_built_costs_exact(conv_model(x_shape, w_shape, batch="N", **attrs), form_pass("batch"))


@pytest.mark.parametrize("x_shape,w_shape,attrs,why", [
    ((1, 4, 12), (4, 1, 3), dict(dilations=[2], group=4), "pixels: 1-D, and DepthToSpace is 4-D"),
    ((1, 4, 12, 11), (4, 1, 2, 3), dict(dilations=[2, 2], group=4), r"pixels: kernel \[2, 3\], and DepthToSpace has one"),
    ((1, 2, 7, 8, 9), (4, 1, 2, 2, 2), dict(dilations=[2, 2, 2], group=2), "pixels: 3-D"),
])
def test_a_grouped_conv_without_a_square_2d_kernel_is_not_im2col_and_says_why(x_shape, w_shape, attrs, why):
    """Group > 1 leaves the channels variant out, and DepthToSpace (4-D, one
    blocksize) the pixels variant: both reasons are shown."""
    new, report = optimize(conv_model(x_shape, w_shape, **attrs), passes=[form_pass("im2col")])
    record, = report.records(REWRITTEN)
    assert record.form == "batch"
    note = next(n for n in record.notes if "preferred form im2col cannot express this node" in n)
    assert re.search("group " + str(attrs["group"]), note) and re.search(why, note), note


def test_a_float_model_keeps_its_default_forms():
    """im2col moves T copies of the input: opt-in for float models, so neither
    the default order nor a target that another form fits ever takes it."""
    model = conv_model((1, 3, 24, 24), (4, 3, 3, 3), dilations=[2, 2], pads=[2, 2, 2, 2])
    _, report = optimize(model, passes=[DilatedConv()])
    assert [r.form for r in report.records(REWRITTEN)] == ["batch"]
    aspp = onnx.load(MODELS / "deeplab_aspp.onnx")
    _, report = optimize(aspp, passes=make_passes(["dilated-conv"], {}), target="tflite")
    forms = {r.form for r in report.records(REWRITTEN)}
    assert forms and "im2col" not in forms, forms


@pytest.mark.parametrize("dilations", [[2, 2], [3, 3]])
def test_a_strided_float_dilated_conv_on_tflite_takes_im2col(dilations):
    """tflite allows Slice step 1 only: subsample, slices and taps need the
    stride in their Slices; im2col puts it in its Conv and fits (such a Conv
    was reported before)."""
    model = conv_model((1, 3, 13, 13), (4, 3, 3, 3), dilations=dilations, strides=[2, 2], pads=[2, 2, 2, 2])
    new, report = optimize(model, passes=[DilatedConv()], target="tflite")
    record, = report.records(REWRITTEN)
    assert record.form == "im2col" and "target tflite: form 'im2col' fits" in record.notes
    assert report.verification.equivalent and check_model(new, load_profile("tflite")) == []


# --- the integer rearrangement ---------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.lists(st.integers(1, 3), min_size=1, max_size=3),
       st.data(), st.integers(0, 10 ** 6))
def test_tap_major_moves_each_integer_to_its_tap_channel(channels, out_channels, kernel, data, seed):
    """W'[o, t*C + c, k'] = W[o, c, t, k'] for every index, a permutation of
    the int8 values; and dequantizing per output channel commutes with it
    exactly (the scales stay on axis 0)."""
    dil = sorted(data.draw(st.sets(st.integers(0, len(kernel) - 1), min_size=1)))
    rng = np.random.default_rng(seed)
    wq = rng.integers(-128, 128, (out_channels, channels, *kernel)).astype(np.int8)
    moved = tap_major(wq, dil)
    taps = [tuple(t) for t in np.ndindex(*[kernel[k] for k in dil])]
    assert moved.dtype == np.int8 and moved.shape == (out_channels, len(taps) * channels,
                                                     *[1 if k in dil else n for k, n in enumerate(kernel)])
    for ti, tap in enumerate(taps):
        for c in range(channels):
            index = [slice(None)] * len(kernel)
            for k, tk in zip(dil, tap):
                index[k] = tk
            np.testing.assert_array_equal(moved[:, ti * channels + c].reshape(out_channels, -1),
                                          wq[(slice(None), c, *index)].reshape(out_channels, -1))
    assert sorted(moved.ravel().tolist()) == sorted(wq.ravel().tolist())
    scale = rng.uniform(1e-3, 0.1, out_channels).astype(np.float32)
    zp = rng.integers(-3, 4, out_channels).astype(np.int8)

    def dequantize(q):
        shape = (-1,) + (1,) * (q.ndim - 1)
        return (q.astype(np.float32) - zp.reshape(shape)) * scale.reshape(shape)

    np.testing.assert_array_equal(dequantize(moved), tap_major(dequantize(wq), dil))


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([1, 2]), st.integers(1, 3), st.integers(2, 3), st.integers(2, 4), st.integers(1, 2),
       st.integers(0, 3), st.integers(0, 3), st.integers(0, 10 ** 6))
def test_im2col_accumulates_exactly_what_the_dilated_conv_does(rank, channels, kernel, dilation, stride, lo, hi, seed):
    """Integer-valued inputs and weights (sums far below 2^24, so float32 is
    exact): the im2col Conv's outputs equal the dilated Conv's bit for bit --
    one accumulation of the same integer products."""
    from convrewrite.core.equivalence import run_onnxruntime

    n = 9 + seed % 5
    rng = np.random.default_rng(seed)
    attrs = dict(dilations=[dilation] * rank, strides=[stride] * rank, pads=[lo] * rank + [hi] * rank)
    model = conv_model((1, channels, *[n] * rank), (3, channels, *[kernel] * rank), **attrs)
    for t in model.graph.initializer:
        a = onnx.numpy_helper.to_array(t)
        t.CopyFrom(onnx.numpy_helper.from_array(rng.integers(-128, 128, a.shape).astype(np.float32), t.name))
    new, report = optimize(model, passes=[form_pass("im2col")], verify=False)
    if not report.records(REWRITTEN):   # every tap but one read padding only: the plain form
        return
    x = {"x": rng.integers(0, 256, (1, channels, *[n] * rank)).astype(np.float32)}
    np.testing.assert_array_equal(run_onnxruntime(model, x)[0], run_onnxruntime(new, x)[0])


# --- quantized (QDQ) ------------------------------------------------------------------------

def run_qdq(model, target=None, **options):
    new, report = optimize(model, passes=make_passes(None, options), target=target)
    return new, report, {r.node: r for r in report.rewrites}


def int8_weight_of(model, conv) -> tuple:
    """(int8 integers, scale name, zero point name, axis) behind a Conv's weight DequantizeLinear."""
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    dq = producers[conv.input[1]]
    assert dq.op_type == "DequantizeLinear"
    return inits[dq.input[0]], dq.input[1], dq.input[2] if len(dq.input) > 2 else "", attributes(dq).get("axis")


def assert_quantized_im2col(model, new, report, record):
    """Equal in steps in both runs; after onnxruntime's fusion no float Conv
    more and no QLinearConv fewer; the Conv reads the original's int8
    integers in tap-major order with the original's scales, zero points and bias."""
    assert (record.status, record.form) == (REWRITTEN, "im2col"), record.reason
    assert record.quantized_steps["spec"]["p99"] <= 1 and record.quantized_steps["fused"]["mean"] <= 0.05
    assert report.verification.equivalent
    before, after = fused_counts(model), fused_counts(new)
    assert float_compute(after) <= float_compute(before), (dict(before), dict(after))
    assert after["QLinearConv"] >= before["QLinearConv"] >= 1, (dict(before), dict(after))
    assert after.get("Conv", 0) <= before.get("Conv", 0)
    old = next(n for n in model.graph.node if n.op_type == "Conv")
    conv = next(n for n in new.graph.node if n.op_type == "Conv")
    wq, scale, zp, axis = int8_weight_of(model, old)
    new_wq, new_scale, new_zp, new_axis = int8_weight_of(new, conv)
    dil = [k for k, d in enumerate(attributes(old)["dilations"]) if d > 1]
    assert new_wq.dtype == wq.dtype == np.int8
    np.testing.assert_array_equal(new_wq, tap_major(wq, dil))
    assert (new_scale, new_zp, new_axis) == (scale, zp, axis) and conv.input[2:] == old.input[2:]
    # every data-movement op reads a DequantizeLinear and feeds QuantizeLinears of the same grid
    assert_movement_on_grid(new, ("Pad", "Slice", "Concat"))


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("act", ["uint8", "int8"])
@pytest.mark.parametrize("name", ["dilated", "dilated_s2", *DILATED_GEOMETRIES])
def test_a_quantized_dilated_conv_in_im2col_form_is_the_same_int8_conv(name, act, per_channel):
    model = quantized(name, act, per_channel=per_channel)
    new, report, records = run_qdq(model, dilated_mode="im2col")
    assert_quantized_im2col(model, new, report, records["aspp"])


@pytest.mark.parametrize("act", ["uint8", "int8"])
def test_unaligned_phases_take_im2col_by_default_when_quantized(act):
    """Stride 2, dilation 3: no block split reaches the phases, so batch does
    not apply; the quantized im2col form does (before it, the node was left
    alone with `quantized`)."""
    model = quantized("dilated_unaligned", act)
    new, report, records = run_qdq(model)
    assert_quantized_im2col(model, new, report, records["aspp"])


def test_quantized_im2col_cost_is_the_built_replacements():
    """Every Pad, Slice, Concat and DepthToSpace with its Q -> DQ, the weight's
    DequantizeLinear (channels: always; pixels: only where taps were dropped), the Conv."""
    from convrewrite.core.cost import model_cost
    from convrewrite.core.forms import rank
    from convrewrite.core.lowering import build
    from convrewrite.core.standalone import replacement_model

    variants = {"dilated": ["", "pixels"], "dilated_asym": ["", "pixels"], "dilated_1d_s2": [""],
                "dilated_unaligned": ["", "pixels", "pixels, stride in the Conv"],
                "dilated_depthwise": ["pixels"], "dilated_grouped": ["pixels"],
                "dilated_depthwise_s2": ["pixels", "pixels, stride in the Conv"]}
    for name, labels in variants.items():
        g = GraphView(quantized(name, "int8"))
        p = make_passes(["dilated-conv"])[0]
        match = p.match(next(n for n in g.graph.node if n.op_type == "Conv"), g)
        options = [o for o in rank(p, match, g, None, with_variants=True, with_opt_in=True).options
                   if o.form.name == "im2col"]
        assert [o.variant.label for o in options] == labels and all(o.form.quantized_only for o in options), name
        for option in options:
            built = model_cost(replacement_model(build(p, match, option, g), g))
            assert option.cost == built, (name, option.label, option.cost, built)


@pytest.mark.parametrize("target", ["tflite", "arm-ethos-n78"])
def test_the_quantized_deeplab_sample_leaves_no_dilated_conv_on_tflite_and_the_n78(target):
    """The QDQ DeepLab ASPP: batch needs rank 5 and batch P*N, which neither
    target takes; all 7 dilated Convs take the quantized im2col form, every
    node fits, and after onnxruntime's fusion the model has as many
    QLinearConv as in batch form and no more float Conv than before."""
    model = onnx.load(MODELS / "deeplab_aspp_qdq_int8.onnx")
    assert len(dilated_convs(model)) == 7
    new, report, records = run_qdq(model, target=target)
    dilated = [r for r in report.rewrites if r.pass_name == "dilated-conv"]
    assert [r.form for r in dilated] == ["im2col"] * 7, [(r.form, r.reason) for r in dilated]
    assert report.verification.equivalent
    assert not dilated_convs(new)
    assert check_model(new, load_profile(target)) == []
    before, after = fused_counts(model), fused_counts(new)
    assert after["QLinearConv"] >= before["QLinearConv"] + 5 and float_compute(after) < float_compute(before)
