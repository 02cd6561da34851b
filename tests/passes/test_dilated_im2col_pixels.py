"""dilated-conv, im2col form, pixels variants (passes/dilated_conv/im2col.py):
the tap-major Concat through DepthToSpace(k, DCR) under the original Conv
(kernel k, stride k or k*s, its group, the weight untouched) -- grouped and
depthwise dilated Convs, float and quantized (QDQ)."""
from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx.reference import ReferenceEvaluator

from builders import conv_model
from convrewrite import optimize
from convrewrite.core.equivalence import run_onnxruntime
from convrewrite.core.graph import attributes
from convrewrite.core.report import REWRITTEN
from convrewrite.target import check_model, load_profile
from helpers import assert_rewrites
from test_dilated_conv import CASES, dilated_convs, form_pass, profile
from test_dilated_im2col import int8_weight_of, run_qdq

pytest.importorskip("onnxruntime.quantization")
from qdq_models import (DILATED_GROUPED_GEOMETRIES, assert_movement_on_grid, float_compute, fused_counts,  # noqa: E402
                        quantized)

logging.getLogger().setLevel(logging.ERROR)   # the quantizer's pre-processing advice
GROUPED = sorted(k for k, (_, w, a, _) in CASES.items() if a.get("group", 1) > 1)
STRIDED = {  # name: (x shape, w shape, attrs)
    "depthwise_s2": ((1, 4, 15, 14), (4, 1, 3, 3), dict(dilations=[2, 3], strides=[2, 2], group=4,
                                                         pads=[2, 3, 1, 0])),
    "depthwise_s21": ((1, 4, 15, 14), (8, 1, 3, 3), dict(dilations=[2, 3], strides=[2, 1], group=4, pads=[2] * 4)),
    "grouped_s3": ((1, 6, 16, 17), (6, 2, 2, 2), dict(dilations=[3, 2], strides=[3, 2], group=3, pads=[1] * 4)),
}
# A profile on which only the pixels variants fit: no rank 5 (batch), no
# SpaceToDepth (depth), Slice step 1 (slices, strided pixels), kernels 2 and 3
# only (taps' and channels' kernel-1 Convs).
PIXELS_ONLY = dict(max_rank=4, operators={"Conv": {"dilations": [1], "kernel_sizes": [2, 3]},
                                          "Slice": {"steps": [1]}, "SpaceToDepth": {"supported": False}})


def conv_of(model):
    return next(n for n in model.graph.node if n.op_type == "Conv")


# --- the identity, against the spec's DepthToSpace ---------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(2, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2),
       st.integers(1, 2), st.integers(0, 10 ** 6))
def test_depth_to_space_of_the_tap_major_concat_holds_each_window_as_a_block(c, k, dh, dw, sh, sw, seed):
    """onnx's reference DepthToSpace (DCR) of X[(a*k + b)*C + c, i, j] =
    x_pad[c, i*s_h + a*d_h, j*s_w + b*d_w] is Z[c, i*k + a, j*k + b] = the
    same x_pad value: the k x k block of output (i, j) is its window."""
    rng = np.random.default_rng(seed)
    out_h, out_w = 2 + seed % 3, 1 + seed % 4
    x_pad = rng.standard_normal((1, c, (out_h - 1) * sh + (k - 1) * dh + 1, (out_w - 1) * sw + (k - 1) * dw + 1))
    x_pad = x_pad.astype(np.float32)
    columns = [x_pad[:, :, a * dh::sh][:, :, :out_h, b * dw::sw][:, :, :, :out_w] for a in range(k) for b in range(k)]
    node = onnx.helper.make_node("DepthToSpace", ["X"], ["Z"], blocksize=k, mode="DCR")
    z, = ReferenceEvaluator(node).run(None, {"X": np.concatenate(columns, axis=1)})
    for a in range(k):
        for b in range(k):
            np.testing.assert_array_equal(z[:, :, a::k, b::k], x_pad[:, :, a * dh::sh][:, :, :out_h, b * dw::sw]
                                          [:, :, :, :out_w])


# --- float -------------------------------------------------------------------------------

def assert_pixels_conv(model, new, variant):
    """The new Conv: the original weight and bias values, group, kernel k,
    stride k (or k*s), no dilation, no pads; one DepthToSpace(k, DCR)."""
    old, conv = conv_of(model), conv_of(new)
    a, b = attributes(old), attributes(conv)
    k = list(next(i for i in model.graph.initializer if i.name == old.input[1]).dims[2:])
    strides = a.get("strides", [1, 1])
    assert conv.input[1:] == old.input[1:] and b.get("group", 1) == a.get("group", 1)
    assert b["kernel_shape"] == k and "pads" not in b and "dilations" not in b
    assert b["strides"] == [n * (s if variant == "pixels, stride in the Conv" else 1) for n, s in zip(k, strides)]
    d2s, = [n for n in new.graph.node if n.op_type == "DepthToSpace"]
    assert attributes(d2s) == {"blocksize": k[0], "mode": "DCR"}


@pytest.mark.parametrize("case", GROUPED + sorted(STRIDED))
def test_a_grouped_dilated_conv_becomes_depth_to_space_and_the_original_conv(case):
    x_shape, w_shape, attrs = CASES[case][:3] if case in CASES else STRIDED[case]
    model = conv_model(x_shape, w_shape, **attrs)
    new, report = assert_rewrites(model, form_pass("im2col"), {"Conv": 1, "Concat": 1, "DepthToSpace": 1})
    record, = report.records(REWRITTEN)
    assert (record.form, record.variant) == ("im2col", "pixels") and not dilated_convs(new)
    assert_pixels_conv(model, new, "pixels")
    taps = w_shape[2] * w_shape[3]
    slices = [n for n in new.graph.node if n.op_type == "Slice"]
    assert taps <= len(slices) <= taps + 1


@pytest.mark.parametrize("case", ["2d_equal", "2d_per_axis", "2d_one_axis", "valid", *GROUPED, *sorted(STRIDED)])
def test_on_a_target_with_unit_step_slices_the_stride_goes_into_the_conv(case, tmp_path):
    """Dense and grouped alike: where nothing else fits, the pixels variant,
    and with a stride, its Slices step 1 and the Conv's stride k*s."""
    x_shape, w_shape, attrs = CASES[case][:3] if case in CASES else STRIDED[case]
    model = conv_model(x_shape, w_shape, **attrs)
    target = profile(tmp_path, "pixels-only", **PIXELS_ONLY)
    new, report = assert_rewrites(model, form_pass(None), {"Conv": 1, "DepthToSpace": 1}, target=target)
    record, = report.records(REWRITTEN)
    strided = any(s > 1 for s in attrs.get("strides", []))
    variant = "pixels, stride in the Conv" if strided else "pixels"
    assert (record.form, record.variant) == ("im2col", variant), record.notes
    assert_pixels_conv(model, new, variant)
    assert all(len(n.input) < 5 for n in new.graph.node if n.op_type == "Slice")
    assert check_model(new, target) == []


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([(1, 3), (2, 2), (3, 1), (2, 1)]), st.integers(2, 3), st.integers(2, 4), st.integers(1, 3),
       st.integers(1, 2), st.integers(0, 3), st.integers(0, 3), st.booleans(), st.integers(0, 10 ** 6))
def test_pixels_accumulate_exactly_what_the_dilated_conv_does(tmp_path_factory, groups, kernel, dh, dw, stride, lo,
                                                              hi, on_target, seed):
    """Integer-valued inputs and weights (sums far below 2^24, so float32 is
    exact): the pixels variants' outputs equal the dilated Conv's bit for
    bit -- one accumulation of the same integer products, any group (group
    1 on a target where only pixels fit)."""
    group, per_group = groups
    n = 9 + seed % 5
    rng = np.random.default_rng(seed)
    attrs = dict(dilations=[dh, dw], strides=[stride] * 2, pads=[lo] * 2 + [hi] * 2, group=group)
    model = conv_model((1, group * per_group, n, n), (2 * group, per_group, kernel, kernel), **attrs)
    for t in model.graph.initializer:
        a = onnx.numpy_helper.to_array(t)
        t.CopyFrom(onnx.numpy_helper.from_array(rng.integers(-128, 128, a.shape).astype(np.float32), t.name))
    on_target = on_target or group == 1   # without a target a group-1 Conv takes the channels variant
    target = profile(tmp_path_factory.mktemp("p"), "pixels-only", **PIXELS_ONLY) if on_target else None
    new, report = optimize(model, passes=[form_pass("im2col")], verify=False, target=target)
    records = report.records(REWRITTEN)
    if not records or records[0].form != "im2col":   # taps dropped: plain, or kernels no longer equal
        return
    assert records[0].variant.startswith("pixels")
    x = {"x": rng.integers(0, 256, (1, group * per_group, n, n)).astype(np.float32)}
    np.testing.assert_array_equal(run_onnxruntime(model, x)[0], run_onnxruntime(new, x)[0])


def test_a_strided_depthwise_float_conv_on_tflite_takes_pixels_with_the_stride_in_the_conv():
    """tflite: Slice step 1, no grouped Conv but depthwise; before, such a
    Conv was reported (im2col's channels need group 1)."""
    model = conv_model((1, 4, 13, 13), (4, 1, 3, 3), dilations=[2, 2], strides=[2, 2], pads=[2] * 4, group=4)
    new, report = optimize(model, passes=[form_pass(None)], target="tflite")
    record, = report.records(REWRITTEN)
    assert (record.form, record.variant) == ("im2col", "pixels, stride in the Conv"), record.notes
    assert report.verification.equivalent and check_model(new, load_profile("tflite")) == []
    assert_pixels_conv(model, new, "pixels, stride in the Conv")


# --- quantized (QDQ) ------------------------------------------------------------------------

def assert_quantized_pixels(model, new, report, record):
    """Equal in steps in both runs; after onnxruntime's fusion no float Conv
    more and no QLinearConv fewer; the Conv reads the original's weight and
    bias DequantizeLinear outputs (or, taps dropped, the original integers
    sliced behind a DequantizeLinear of the same scales); every data-movement
    op between Q/DQ of x's grid."""
    assert (record.status, record.form) == (REWRITTEN, "im2col"), record.reason
    assert record.variant.startswith("pixels")
    assert record.quantized_steps["spec"]["p99"] <= 1 and record.quantized_steps["fused"]["mean"] <= 0.05
    assert report.verification.equivalent and not dilated_convs(new)
    before, after = fused_counts(model), fused_counts(new)
    assert float_compute(after) <= float_compute(before), (dict(before), dict(after))
    assert after["QLinearConv"] >= before["QLinearConv"] >= 1, (dict(before), dict(after))
    assert after.get("Conv", 0) <= before.get("Conv", 0)
    old, conv = conv_of(model), conv_of(new)
    assert conv.input[2:] == old.input[2:] and attributes(conv)["group"] == attributes(old)["group"]
    if conv.input[1] != old.input[1]:   # taps dropped: the integers sliced, the scales kept
        wq, scale, zp, axis = int8_weight_of(model, old)
        new_wq, new_scale, new_zp, new_axis = int8_weight_of(new, conv)
        kept = new_wq.shape[2:]
        assert new_wq.dtype == np.int8 and (new_scale, new_zp, new_axis) == (scale, zp, axis)
        assert any(np.array_equal(new_wq, wq[:, :, i:i + kept[0], j:j + kept[1]])
                   for i in range(wq.shape[2] - kept[0] + 1) for j in range(wq.shape[3] - kept[1] + 1))
    assert_movement_on_grid(new, ("Pad", "Slice", "Concat", "DepthToSpace"))


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("act", ["uint8", "int8"])
@pytest.mark.parametrize("name", sorted(DILATED_GROUPED_GEOMETRIES))
def test_a_quantized_grouped_dilated_conv_in_pixels_form_is_the_same_int8_conv(name, act, per_channel):
    model = quantized(name, act, per_channel=per_channel)
    new, report, records = run_qdq(model, dilated_mode="im2col")
    assert_quantized_pixels(model, new, report, records["aspp"])
    if name != "dilated_depthwise_dropped":
        assert conv_of(new).input[1] == conv_of(model).input[1]   # the very weight DequantizeLinear


@pytest.mark.parametrize("act", ["uint8", "int8"])
def test_an_unaligned_quantized_depthwise_conv_takes_pixels_by_default(act):
    """Stride 2, dilation 3: batch does not apply; before, the node was left
    alone with `quantized` (im2col's channels need group 1)."""
    model = quantized("dilated_depthwise_s2", act)
    new, report, records = run_qdq(model)
    assert_quantized_pixels(model, new, report, records["aspp"])


@pytest.mark.parametrize("act", ["uint8", "int8"])
@pytest.mark.parametrize("name,variant", [("dilated_depthwise", "pixels"), ("dilated_depthwise_k2", "pixels"),
                                          ("dilated_depthwise_s2", "pixels, stride in the Conv")])
def test_a_quantized_depthwise_dilated_conv_on_tflite_leaves_no_dilated_conv(name, variant, act):
    model = quantized(name, act)
    new, report, records = run_qdq(model, target="tflite")
    assert_quantized_pixels(model, new, report, records["aspp"])
    assert records["aspp"].variant == variant
    assert check_model(new, load_profile("tflite")) == []


def test_on_the_n78_only_a_2x2_depthwise_kernel_fits():
    """The Ethos-N78 takes DepthToSpace block 2 and Conv stride 2 at most: a
    2x2 dilated depthwise Conv is rewritten and fits (strided: the stride in
    its Slices, the Conv's stride k = 2); a 3x3 one is left alone, and the
    report says why (the closest form, batch, needs a batch of P*N: pixels'
    DepthToSpace of block 3 breaks as many rules)."""
    for name in ("dilated_depthwise_k2", "dilated_depthwise_k2_s2"):
        model = quantized(name, "int8")
        new, report, records = run_qdq(model, target="arm-ethos-n78")
        assert_quantized_pixels(model, new, report, records["aspp"])
        assert records["aspp"].variant == "pixels" and attributes(conv_of(new))["strides"] == [2, 2]
        assert check_model(new, load_profile("arm-ethos-n78")) == []
    new, report, records = run_qdq(quantized("dilated_depthwise", "int8"), target="arm-ethos-n78")
    assert records["aspp"].status != REWRITTEN and len(dilated_convs(new)) == 1
    assert "no lowering form runs on target 'arm-ethos-n78'" in records["aspp"].reason
    assert "the target requires batch 1" in records["aspp"].reason
