"""Tests for the resize pass's pointwise form (passes/resize/pointwise.py):
each resized spatial axis as a 1x1 Conv with the axis moved into the channel
position, the form Arm Vela runs on the Ethos-U NPU for align_corners
Resizes (docs/ethos_u.md).

Every positive test goes through assert_rewrites (checker, op counts, whole
model against onnxruntime on the original, idempotence); the exact-cost
test of every form is in test_resize.py (test_form_costs_are_exact), and the
one here pins the figures of the DeepLabV3+ Resizes.
"""
from __future__ import annotations

import os
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from builders import resize_model
from conformance import node_cases
from convrewrite import optimize
from convrewrite.core.cost import model_cost
from convrewrite.core.equivalence import compare_outputs, run_model
from convrewrite.core.forms import rank
from convrewrite.core.graph import GraphView
from convrewrite.core.lowering import build
from convrewrite.core.report import REWRITTEN
from convrewrite.core.rewrite import Code, Match
from convrewrite.core.standalone import replacement_model
from helpers import assert_rewrites, assert_skips
from passes import make_passes
from passes.resize.interpolation import interpolation_matrix, read_resize
from passes.resize.rewrite import ResizeOptions, ResizeToConvTranspose

POINTWISE = ResizeToConvTranspose(ResizeOptions(mode="pointwise"))
MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "models")
ETHOS_U = ("arm-ethos-u55", "arm-ethos-u85")


def align_corners(shape, sizes, **attrs):
    return resize_model(shape, sizes=sizes, mode="linear", coordinate_transformation_mode="align_corners", **attrs)


def forms_of(report) -> list:
    return [r.form for r in report.records(REWRITTEN) if r.pass_name == "resize"]


def notes_of(report) -> list:
    return [n for r in report.records(REWRITTEN) if r.pass_name == "resize" for n in r.notes]


def passed_over(model) -> dict:
    """form -> why it cannot express the node."""
    graph = GraphView(model)
    match = POINTWISE.match(graph.graph.node[-1], graph)
    assert isinstance(match, Match), match
    return dict(rank(POINTWISE, match, graph, None, with_variants=True, with_opt_in=True).passed_over)


# --- the form, against onnxruntime ------------------------------------------------------------

@pytest.mark.parametrize("model,axes", [
    (lambda: align_corners([1, 3, 5, 6], [1, 3, 13, 9]), 2),                  # the case, non-integer scales
    (lambda: align_corners([1, 4, 4, 4], [1, 4, 16, 16]), 2),                 # x4, (out-1)/(in-1) = 5
    (lambda: align_corners([2, 3, 6, 7], [2, 3, 4, 5]), 2),                   # downsampling, batch 2
    (lambda: resize_model(["N", "C", 5, 6], [1, 1, 1.6, 2], mode="linear"), 2),   # symbolic batch and channels
    (lambda: align_corners([1, 2, 6], [1, 2, 11]), 1),                        # 1-D
    (lambda: align_corners([1, 2, 3, 4, 5], [1, 2, 5, 4, 9]), 2),             # 3-D, one axis kept
    (lambda: align_corners([1, 2, 7, 5], [1, 2, 7, 12]), 1),                  # only W resized
    (lambda: resize_model([1, 3, 5, 4], [1, 1, 2, 3], mode="linear"), 2),     # half_pixel, integer factors
    (lambda: resize_model([2, 3, 6, 7], sizes=[2, 3, 4, 3], mode="cubic", exclude_outside=1), 2),
    (lambda: resize_model([1, 2, 8, 9], [1, 1, .6, .5], opset=18, mode="linear", antialias=1), 2),
    (lambda: resize_model([1, 3, 5, 6], [1, 1, 2.5, 1.5], mode="nearest", nearest_mode="ceil"), 2),
    (lambda: resize_model([1, 2, 4, 4], sizes=[1, 2, 3, 5], roi=[0, 0, .1, -.2, 1, 1, .9, 1.3], mode="linear",
                          coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=0.0), 2),
    (lambda: align_corners([1, 3, 5, 6], [1, 3, 13, 9], dtype=TensorProto.FLOAT16), 2),
])
def test_pointwise_form_is_exact(model, axes):
    """One Transpose and one Conv per resized axis and a Transpose back,
    equal to the Resize on onnxruntime (assert_rewrites)."""
    _, report = assert_rewrites(model(), POINTWISE, {"Resize": 0, "Conv": axes, "Transpose": axes + 1,
                                                     "MatMul": 0, "ConvTranspose": 0})
    assert forms_of(report) == ["pointwise"], notes_of(report)


def test_the_conv_weights_are_the_interpolation_matrices():
    """W of each Conv is M [m, n] (the matmul form's matrix) as [m, n, 1, 1],
    and each Transpose moves the next axis into the channel position."""
    model = align_corners([1, 3, 5, 6], [1, 3, 13, 9])
    new, report = assert_rewrites(model, POINTWISE, {"Resize": 0, "Conv": 2, "Transpose": 3})
    spec = read_resize(model.graph.node[-1], GraphView(model))
    weights = {i.name: numpy_helper.to_array(i) for i in new.graph.initializer}
    convs = [n for n in new.graph.node if n.op_type == "Conv"]
    perms = [list(n.attribute[0].ints) for n in new.graph.node if n.op_type == "Transpose"]
    # the axis that grows least first (fewest MACs): W (6 -> 9), then H (5 -> 13)
    assert [c.name.split("/")[-1] for c in convs] == ["axis3_conv", "axis2_conv"]
    # each Transpose exchanges two axes: [N, C, H, W] -> [N, W, H, C]; [N, m_W, H, C] -> [N, H, m_W, C];
    # then back: [N, m_H, m_W, C] -> [N, C, m_H, m_W]
    assert perms == [[0, 3, 2, 1], [0, 2, 1, 3], [0, 3, 1, 2]]
    for conv, ax in zip(convs, [spec.axes[3], spec.axes[2]]):
        matrix, _ = interpolation_matrix(spec.interp, ax)
        assert weights[conv.input[1]].shape == (ax.n_out, ax.n_in, 1, 1)
        np.testing.assert_array_equal(weights[conv.input[1]][:, :, 0, 0], matrix.astype(np.float32))
    assert "axis 2: 1x1 Conv with the interpolation matrix [13, 5] (5 MACs per output, 2 of them non-zero " \
           "at most)" in notes_of(report)


@pytest.mark.parametrize("model,reason", [
    (lambda: resize_model([2, 3, 5], [1, 2, 1.5], mode="nearest"), r"resizes axis 1 \(batch or channel\)"),
    (lambda: resize_model([1, 2, "H", 4], [1, 1, 2, 2], mode="linear"),
     r"needs static sizes on the resized axes \(axis 2 is symbolic\)"),
    (lambda: resize_model([1, 2, 4, 4], sizes=[1, 2, 3, 5], roi=[0, 0, .1, -.2, 1, 1, .9, 1.3], mode="linear",
                          coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=7.0),
     r"extrapolation_value 7 outside the input, which no Conv weight gives"),
])
def test_where_the_pointwise_form_does_not_apply(model, reason):
    over = passed_over(model())
    assert re.search(reason, over.get("pointwise", "")), over


def test_asked_for_where_it_cannot_express_the_node_the_record_says_why():
    report = assert_skips(resize_model([2, 3, 5], [1, 2, 1.5], mode="nearest"), POINTWISE,
                          reason=r"pointwise: it resizes axis 1")
    assert [r.code for r in report.rewrites] == [Code.NO_FORM]


CASES = list(node_cases("resize", "upsample"))


@pytest.mark.parametrize("name,model,inputs,outputs", CASES, ids=[c[0] for c in CASES])
def test_conformance(name, model, inputs, outputs):
    """The ONNX backend cases: rewritten exactly (reference outputs), or
    left alone with a reason (a channel resize, an extrapolation value, the
    spec's ambiguous cases)."""
    new, report = optimize(model, passes=[POINTWISE], verify=True)
    if not report.records(REWRITTEN):
        assert all(len(r.reason) > 40 and r.code for r in report.rewrites), report.rewrites
        return
    assert forms_of(report) in (["pointwise"], ["identity"], ["broadcast"]), notes_of(report)
    assert report.verification.equivalent is True, report.verification
    got, _ = run_model(new, inputs)
    result = compare_outputs([o.name for o in new.graph.output], outputs, got)
    assert result, f"{name}: the rewrite does not reproduce the reference outputs:\n{result}"


def test_conformance_rewrites_most_cases():
    rewritten = [name for name, model, _, _ in CASES
                 if optimize(model, passes=[POINTWISE], verify=False)[1].records(REWRITTEN)]
    assert len(rewritten) >= 30, rewritten


# --- cost -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,sizes,macs", [
    # DeepLabV3+ (smp, resnet18, 256x256 input): the decoder's x4 and the head's x4.  Dense: n MACs
    # per output of each Conv, where bilinear has 2 non-zero taps per axis.
    ([1, 256, 16, 16], [1, 256, 64, 64], 256 * 16 * 64 * 16 + 256 * 64 * 64 * 16),
    ([1, 21, 64, 64], [1, 21, 256, 256], 21 * 64 * 256 * 64 + 21 * 256 * 256 * 64),
])
def test_cost_of_the_deeplab_resizes(shape, sizes, macs):
    """The Cost equals the built replacement's (MACs, bytes moved, nodes,
    rank, grouped MACs), and the MACs are the dense figure above."""
    model = align_corners(shape, sizes)
    p = make_passes(["resize"], {"resize_mode": "pointwise"})[0]
    graph = GraphView(model)
    match = p.match(graph.graph.node[-1], graph)
    option = next(o for o in rank(p, match, graph, None, with_variants=True, with_opt_in=True).options
                  if o.form.name == "pointwise")
    built = model_cost(replacement_model(build(p, match, option, graph), graph))
    c = option.cost
    assert (c.macs, c.moved_bytes, c.nodes, c.max_rank, c.grouped_macs, c.streamed_bytes) == \
           (built.macs, built.moved_bytes, built.nodes, built.max_rank, built.grouped_macs, built.streamed_bytes)
    assert c.macs == macs and c.nodes == 5 and c.grouped_macs == 0
    # three Transposes, each reading and writing its tensor (float32)
    out = sizes[1] * sizes[2] * sizes[3]
    middle = sizes[1] * sizes[2] * shape[3]
    assert c.moved_bytes == 4 * 2 * (shape[1] * shape[2] * shape[3] + middle + out)


# --- Ethos-U ----------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ETHOS_U)
def test_ethos_u_takes_the_pointwise_form_for_align_corners(profile):
    """Vela runs neither the align_corners Resize (scale 63/15) nor the
    matmul form's MatMul (BATCH_MATMUL with a constant operand): the driver
    passes over matmul and takes pointwise, and the model then fits."""
    model = align_corners([1, 8, 16, 16], [1, 8, 64, 64])
    new, report = optimize(model, target=profile)
    assert forms_of(report) == ["pointwise"], report.rewrites
    notes = notes_of(report)
    assert any(re.match(rf"target {profile}: form 'matmul' not used: (\d+ problems, the first: )?MatMul", n)
               for n in notes), notes
    assert f"target {profile}: form 'pointwise' fits" in notes, notes
    assert report.target["fits"] and report.verification.equivalent is True


@pytest.mark.parametrize("profile", ETHOS_U)
def test_ethos_u_sample_model_align_corners(profile):
    """seg_head_align_corners (16 -> 64 and 8 -> 64, align_corners): both
    Resizes lowered by the default passes, the model fits the target."""
    model = onnx.load(os.path.join(MODELS, "seg_head_align_corners.onnx"))
    new, report = optimize(model, target=profile)
    assert forms_of(report) == ["pointwise", "pointwise"], report.rewrites
    assert report.target["fits"], report.target["violations"]
    assert report.verification.equivalent is True
