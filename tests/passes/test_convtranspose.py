"""convtranspose: ConvTranspose -> stride-1 Conv(s) + pixel shuffle.

Every positive test goes through assert_rewrites (checker, op counts, numeric
equivalence against onnxruntime on the original, idempotence).  The
sub-pixel arithmetic is also checked on its own against a plain numpy
scatter, and its MAC counts against the bound the issue sets.
"""
from __future__ import annotations

import itertools
from dataclasses import replace
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from conformance import node_cases, pytorch_converted_cases
from convrewrite import optimize
from convrewrite.core.equivalence import check_models, compare_outputs, random_feeds, run_onnxruntime, runtime_inputs
from convrewrite.core.cost import batch_one, model_cost, subgraph_cost
from convrewrite.core.forms import Option, rank
from convrewrite.core.graph import GraphView, attributes
from convrewrite.core.lowering import build
from convrewrite.core.report import REWRITTEN
from convrewrite.core.rewrite import Match
from convrewrite.core.standalone import replacement_model
from passes.convtranspose.geometry import (SpecAmbiguous, SpecConflict, TooLarge, conv_transpose_macs, output_geometry)
from convrewrite.target import Profile, builtin_names, load_profile, needs_lowering
from builders import convt_model
from helpers import assert_cost_exact, assert_rewrites, assert_skips, forms, op_counts
from passes.convtranspose.rewrite import ConvTransposeOptions, ConvTransposeToConv

PASS = ConvTransposeToConv()
NO_CT = {"ConvTranspose": 0}


def notes(report) -> list[str]:
    return [n for r in report.rewrites for n in r.notes]


def initializer(model, suffix) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith(suffix))


# --- conformance -------------------------------------------------------------

NODE_CASES = list(node_cases("convtranspose"))
TORCH_CASES = list(pytorch_converted_cases("test_ConvTranspose2d", "test_ConvTranspose2d_no_bias"))


@pytest.mark.parametrize("name,model,inputs,expected", NODE_CASES + TORCH_CASES,
                         ids=[c[0] for c in NODE_CASES + TORCH_CASES])
def test_conformance_cases_are_rewritten_and_match_the_reference_outputs(name, model, inputs, expected):
    new, report = assert_rewrites(model, PASS, NO_CT, inputs=inputs)
    got = run_onnxruntime(new, inputs)
    result = compare_outputs([o.name for o in new.graph.output], expected, got)
    assert result, f"{name}: rewritten model differs from the conformance data\n{result}"


def test_all_conformance_cases_are_collected():
    assert len(NODE_CASES) >= 11 and len(TORCH_CASES) == 2


# --- the forms ---------------------------------------------------------------

def test_2x2_stride_2_is_the_textbook_1x1_conv_and_depth_to_space():
    model = convt_model((1, 8, 6, 6), 4, (2, 2), strides=[2, 2])
    new, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "Conv": 1, "DepthToSpace": 1})
    assert len(new.graph.node) == 2
    assert initializer(new, "conv_weight").shape == (4 * 4, 8, 1, 1)
    assert "single-conv" in forms(report)
    assert report.rewrites[0].macs_after == report.rewrites[0].macs_before


def test_dcgan_4x4_stride_2_pad_1_uses_one_exact_conv_per_phase_and_no_crop():
    model = convt_model((1, 6, 16, 16), 3, (4, 4), strides=[2, 2], pads=[1, 1, 1, 1])
    new, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "Conv": 4, "Concat": 1, "DepthToSpace": 1,
                                                "Slice": 0, "Pad": 0})
    assert "phase-convs" in forms(report)
    assert report.rewrites[0].macs_after == report.rewrites[0].macs_before


def test_within_the_mac_bound_the_simplest_form_goes_first_and_no_estimate_decides():
    """A 4x4/s2 ConvTranspose on a 32x32 map: both dense forms are within the
    MAC bound and the simplest, single-conv, is taken, with or without a
    target.  The cost model would pick phase-convs here (estimated 3%
    faster), but on Convs of few output channels (pix2pix's 64->3 layer)
    phase-convs runs 2.3x slower than it estimates: docs/cost_model.md,
    "ConvTranspose: why its rule stays"."""
    model = convt_model((1, 32, 32, 32), 16, (4, 4), strides=[2, 2], pads=[1, 1, 1, 1])
    _, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "Conv": 1, "DepthToSpace": 1})
    assert forms(report) == ["single-conv"]
    assert "chosen: the simplest form within 1.1x the original's MACs" in notes(report)
    assert not any("estimated" in n for n in notes(report))


@pytest.mark.parametrize("attrs", [dict(pads=[-1, 0, 0, 0]), dict(output_padding=[-1, 0])])
def test_negative_pads_or_output_padding_are_an_invalid_node(attrs):
    """The spec's pads and output_padding are >= 0: onnxruntime refuses the
    node, and onnx's reference evaluator (the fallback oracle) would crop, so
    a negative entry is left alone as invalid, not 'verified' against it."""
    model = convt_model((1, 4, 8, 8), 3, (3, 3), strides=[2, 2], **attrs)
    assert_skips(model, PASS, code="invalid-node", reason=r"has a negative entry; the operator's \w+ are >= 0")


@pytest.mark.parametrize("target", [None, *builtin_names()])
@pytest.mark.parametrize("attrs", [dict(strides=[2, 2], output_padding=[2, 1]),
                                   dict(strides=[2, 2], output_padding=[1, 2], dilations=[3, 3]),
                                   dict(strides=[2, 2], output_padding=[2, 2], output_shape=[11, 11])])
def test_output_padding_not_below_the_stride_is_an_invalid_node_whatever_the_target(attrs, target):
    """output_padding picks which of a stride's positions past the last input
    end the output: one of the stride or more (below the dilation, or with
    output_shape) onnxruntime refuses.  It was matched and rewritten unchecked
    without verification (rolled back with it), and a target that runs
    ConvTranspose said it ran it (ti-tidl)."""
    model = convt_model((1, 4, 5, 5), 3, (3, 3), **attrs)
    assert_skips(model, PASS, code="invalid-node", target=target,
                 reason=r"output_padding \[\d, \d\] is not below the strides \[2, 2\], as the spec requires")


@pytest.mark.parametrize("target", [None, *builtin_names()])
def test_pads_beyond_the_output_are_an_invalid_node_not_an_empty_output(target):
    """A negative output size is no tensor's shape: invalid, before any
    target's verdict; a zero one stays empty-output."""
    model = convt_model((1, 4, 5, 5), 3, (3, 3), strides=[2, 2], pads=[9, 9, 9, 9])
    assert_skips(model, PASS, code="invalid-node", target=target,
                 reason=r"the pads are larger than the output, which would be of size \[-7, -7\]")
    assert_skips(convt_model((1, 4, 5, 5), 3, (3, 3), strides=[2, 2], pads=[6, 6, 5, 5]), PASS,
                 code="empty-output", reason=r"the output would be empty \(\[0, 0\]\)")


def test_k3_s2_p1_op1_packs_nine_taps_into_four_phase_kernels_without_zeros():
    model = convt_model((1, 4, 16, 16), 4, (3, 3), strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])
    new, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "Conv": 4, "Slice": 0})
    shapes = sorted(tuple(numpy_helper.to_array(t).shape[2:]) for t in new.graph.initializer
                    if t.name.endswith("conv_weight"))
    assert shapes == [(1, 1), (1, 2), (2, 1), (2, 2)]
    rec = report.rewrites[0]
    assert rec.macs_after == rec.macs_before == conv_transpose_macs(4, 4, 1, (16, 16), (3, 3))
    # the ConvTranspose's column buffer (4 outputs x 9 taps x 256 inputs) against the four phase
    # Convs' im2col matrices (4 inputs x 9 taps in all x 256 positions), float32
    assert (rec.streamed_bytes_before, rec.streamed_bytes_after) == (4 * 9 * 256 * 4, 4 * 9 * 256 * 4)


def test_stride_1_is_one_conv_with_the_flipped_transposed_kernel_and_complementary_pads():
    model = convt_model((2, 3, 7, 7), 5, (3, 2), pads=[1, 1, 1, 0])  # output 7x7: no border to split
    new, _ = assert_rewrites(model, PASS, {"ConvTranspose": 0, "Conv": 1})
    assert [n.op_type for n in new.graph.node] == ["Conv"]
    conv = new.graph.node[0]
    w = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "W"))
    np.testing.assert_array_equal(initializer(new, "conv_weight"), w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    pads = next(a.ints for a in conv.attribute if a.name == "pads")
    assert list(pads) == [2 - 1, 1 - 1, 2 - 1, 1 - 0]  # e - 1 - pads, per side


def test_a_1x1_input_becomes_a_1x1_conv_and_depth_to_space_whatever_the_stride():
    # DCGAN's first layer: z [N, C, 1, 1] -> 4x4 with stride 1
    model = convt_model((1, 8, 1, 1), 4, (4, 4))
    new, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "Conv": 1, "DepthToSpace": 1})
    assert initializer(new, "conv_weight").shape == (4 * 16, 8, 1, 1)
    assert report.rewrites[0].macs_after == report.rewrites[0].macs_before


def test_output_not_a_multiple_of_the_stride_is_cropped_by_one_slice():
    model = convt_model((1, 2, 9, 9), 2, (3, 3), strides=[2, 2], pads=[1, 1, 1, 1])  # out = 17
    assert_rewrites(model, PASS, {"ConvTranspose": 0, "Slice": 1})


def test_padding_beyond_the_kernel_becomes_an_input_slice():
    model = convt_model((1, 2, 8, 8), 2, (2, 2), strides=[2, 2], pads=[1, 1, 1, 1])
    new, _ = assert_rewrites(model, ConvTransposeToConv(ConvTransposeOptions("phase-convs")), NO_CT)
    assert any(n.op_type == "Slice" and n.input[0] == "x" for n in new.graph.node)


@pytest.mark.parametrize("x_shape,kernel,strides,transposes", [
    ((1, 3, 10), (4,), [2], 1),                      # 1-D
    ((1, 3, 6, 7), (3, 2), [3, 2], 1),               # unequal strides
    ((1, 2, 4, 5, 3), (3, 2, 2), [2, 2, 1], 2),      # 3-D: one axis at a time, rank <= 6
    ((1, 2, 3, 4, 3), (2, 2, 2), [2, 2, 2], 3),
])
def test_other_ranks_and_unequal_strides_use_the_reshape_transpose_pixel_shuffle(x_shape, kernel, strides,
                                                                               transposes):
    model = convt_model(x_shape, 2, kernel, strides=strides)
    new, _ = assert_rewrites(model, PASS, {"ConvTranspose": 0, "DepthToSpace": 0, "Transpose": transposes})
    inferred = onnx.shape_inference.infer_shapes(new)
    assert max(len(v.type.tensor_type.shape.dim) for v in inferred.graph.value_info) <= 6


@pytest.mark.parametrize("form", ["single-conv", "phase-convs"])
def test_a_preferred_form_is_honoured_and_exact(form):
    model = convt_model((1, 4, 8, 8), 2, (4, 4), strides=[2, 2], pads=[1, 1, 1, 1])
    _, report = assert_rewrites(model, ConvTransposeToConv(ConvTransposeOptions(form)), NO_CT)
    assert form in forms(report)
    with pytest.raises(ValueError, match="convtranspose_form"):
        ConvTransposeOptions("fastest")


# --- attributes ----------------------------------------------------------------

@pytest.mark.parametrize("attrs", [
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 3]),
    dict(auto_pad="SAME_LOWER", strides=[2, 2], output_padding=[1, 1]),
    dict(auto_pad="VALID", strides=[3, 2]),
    dict(output_shape=[10, 8], strides=[3, 2]),                               # beyond full: zeros at the end
    dict(output_shape=[7, 6], strides=[2, 2], pads=[3, 3, 3, 3]),             # pads ignored
    dict(output_shape=[7, 6], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(pads=[0, 2, 3, 1], strides=[2, 3], output_padding=[1, 2]),
])
def test_padding_attributes_follow_the_spec(attrs):
    model = convt_model((1, 2, 4, 4), 2, (3, 3), **attrs)
    assert_rewrites(model, PASS, NO_CT)


@pytest.mark.parametrize("group,cin,cout_g", [(2, 4, 3), (3, 3, 1), (4, 4, 2)])
@pytest.mark.parametrize("kernel,strides,pads", [((2, 2), [2, 2], [0] * 4), ((4, 3), [2, 2], [1] * 4)])
def test_groups_and_depthwise(group, cin, cout_g, kernel, strides, pads):
    model = convt_model((2, cin, 5, 6), cout_g, kernel, group=group, strides=strides, pads=pads)
    assert_rewrites(model, PASS, NO_CT)


@pytest.mark.parametrize("dilations,strides", [([2, 2], [1, 1]), ([2, 3], [2, 2]), ([3, 1], [2, 3])])
def test_dilations(dilations, strides):
    model = convt_model((1, 2, 5, 5), 3, (3, 2), dilations=dilations, strides=strides, pads=[1, 0, 0, 1])
    assert_rewrites(model, PASS, NO_CT)


def test_phases_no_tap_reaches_are_the_bias():
    # stride 3 > kernel 1: two of every three outputs are bias only
    model = convt_model((1, 3, 5, 5), 2, (1, 1), strides=[3, 3])
    new, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "Conv": 1, "ConstantOfShape": 1})
    assert report.rewrites[0].macs_after == report.rewrites[0].macs_before


def test_an_output_that_is_all_padding_is_the_bias():
    model = convt_model((1, 2, 1, 3), 2, (2, 2), strides=[4, 1], dilations=[2, 1],
                        output_shape=[1, 4], auto_pad="SAME_UPPER")
    _, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "Conv": 0})
    assert "bias-only" in forms(report)


@pytest.mark.parametrize("bias", [True, False])
def test_float16_keeps_its_dtype(bias):
    model = convt_model((1, 4, 6, 6), 2, (3, 3), dtype=np.float16, bias=bias, strides=[2, 2], pads=[1, 1, 1, 1])
    new, _ = assert_rewrites(model, PASS, NO_CT)
    floats = {t.data_type for t in new.graph.initializer if t.data_type != TensorProto.INT64}
    assert floats == {TensorProto.FLOAT16}


@pytest.mark.parametrize("kernel,strides", [((2, 2), [2, 2]), ((3, 3), [2, 2]), ((1, 1), [2, 2])])
def test_symbolic_batch(kernel, strides):
    model = convt_model(("N", 3, 5, 4), 2, kernel, strides=strides, pads=[0, 1, 1, 0] if kernel[0] > 2 else None)
    assert_rewrites(model, PASS, NO_CT)  # checked at batch 1 and 3


def test_weight_from_a_constant_node():
    assert_rewrites(convt_model((1, 2, 4, 4), 2, (3, 3), weight="constant", strides=[2, 2]), PASS, NO_CT)


def test_runtime_bias_goes_to_the_phase_convs():
    model = convt_model((1, 2, 6, 6), 2, (2, 2), bias=False, strides=[3, 3])
    model.graph.node[0].input.append("B")
    model.graph.input.append(helper.make_tensor_value_info("B", TensorProto.FLOAT, [2]))
    _, report = assert_rewrites(model, PASS, NO_CT)
    assert "phase-convs" in forms(report)


def test_a_shared_weight_initializer_is_never_modified():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("ConvTranspose", ["x", "W"], ["a"], name="up1", strides=[2, 2]),
             helper.make_node("ConvTranspose", ["x", "W"], ["b"], name="up2", pads=[1, 1, 1, 1]),
             helper.make_node("ReduceSum", ["W"], ["c"], name="uses_w", keepdims=0)]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in
            (("a", [None] * 4), ("b", [None] * 4), ("c", []))]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])], outs,
                          [numpy_helper.from_array(w, "W")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    before = model.SerializeToString()
    new, report = assert_rewrites(model, PASS, NO_CT, expect_rewrites=2)
    assert model.SerializeToString() == before
    kept = [numpy_helper.to_array(t) for t in new.graph.initializer if t.name == "W"]
    assert len(kept) == 1 and np.array_equal(kept[0], w)


@pytest.mark.parametrize("opset", [5, 7, 10, 11])
def test_old_opsets_get_their_own_slice_and_pad(opset):
    # strides 3 on a 3x3 kernel, pads 1: input Slice, output Slice and Pad all appear
    model = convt_model((1, 2, 5, 5), 2, (3, 2), strides=[3, 2], pads=[2, 1, 0, 1], opset=opset)
    new, _ = assert_rewrites(model, ConvTransposeToConv(ConvTransposeOptions("phase-convs")), NO_CT)
    assert {"Slice", "Pad"} <= set(op_counts(new))


@pytest.mark.parametrize("opset", [7, 8])
@pytest.mark.parametrize("batch", [1, "N"])
def test_old_opsets_make_zeros_without_constant_of_shape(opset, batch):
    # k < s: phases no tap reaches are zeros + bias; before opset 9 the zeros are an
    # initializer (static batch), Expand (opset 8) or Tile (7) -- still no wasted MACs.
    model = convt_model((batch, 2, 5, 5), 2, (1, 1), strides=[2, 2], opset=opset)
    new, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "ConstantOfShape": 0})
    rec = report.rewrites[0]
    assert rec.macs_after <= 1.1 * rec.macs_before, notes(report)
    if batch == "N":
        assert op_counts(new).get("Expand" if opset == 8 else "Tile", 0) >= 1


def test_opset_6_falls_back_to_one_conv():
    # onnxruntime has no Add before opset 7, so zeros + bias cannot be built:
    # the single shared-window Conv computes the empty phases from zero taps.
    model = convt_model((1, 2, 5, 5), 2, (1, 1), strides=[2, 2], opset=6)
    _, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "ConstantOfShape": 0})
    assert "single-conv" in forms(report)


# --- nested lowering: the MAC bound weighed on the final graphs ------------------

NESTED = ["convtranspose", "dilated-conv"]


def dilated_full(rank: int, n: int) -> onnx.ModelProto:
    """The reproducer: stride 1, dilation 3, kernel 4, no padding (a full
    convolution: out = n + 9) on a small map, 8 -> 8 channels."""
    return convt_model((1, 8, *[n] * rank), 8, (4,) * rank, dilations=[3] * rank)


@pytest.mark.parametrize("rank,n,most", [(2, 4, 10), (2, 6, 10), (3, 4, 30)])
def test_a_small_dilated_map_is_not_tiled_into_taps(rank, n, most):
    """Border-split meets the 1.1x MAC bound with dilated tiles (43 in 2-D,
    298 in 3-D), and the dilated-conv pass lowered each of them into its
    taps: 200 and 2,425 nodes for one ConvTranspose, 14x and 30x slower on
    onnxruntime CPU.  Weighed on the final graphs the dense form wins."""
    new, report = assert_rewrites(dilated_full(rank, n), NESTED, {"ConvTranspose": 0})
    assert len(new.graph.node) <= most, op_counts(new)
    (rec,) = [r for r in report.rewrites if r.op == "ConvTranspose"]
    assert rec.form == "single-conv"
    assert re.search(r"chosen: the final graph estimated faster: border-split is within 1\.1x the original's MACs, "
                     r"but its Convs keep dilation 3(x3)*, which the run's passes lower again: \d+ nodes in the end, "
                     r"estimated .* us on onnxruntime .* CPU, slower than single-conv's .* us \(\d+ nodes\)",
                     " ".join(rec.notes)), rec.notes


def test_the_form_weighed_is_the_form_chosen():
    """Stride 2: phase-convs and single-conv are both over the bound, which
    orders them by MACs.  Border-split was weighed against single-conv (the
    form first without the bound) and outweighed, but the bound's order put
    phase-convs first -- never weighed, its phase Convs lowered again into
    30 nodes, estimated 4x slower than single-conv's 2 -- under the note "no
    form is within 1.1x the original's MACs", which border-split is."""
    model = convt_model((1, 8, 4, 4), 8, (4, 4), strides=[2, 2], dilations=[3, 3])
    new, report = assert_rewrites(model, NESTED, {"ConvTranspose": 0})
    (rec,) = [r for r in report.rewrites if r.op == "ConvTranspose"]
    assert rec.form == "single-conv", (rec.form, rec.notes)
    assert len(new.graph.node) <= 3, op_counts(new)
    assert re.search(r"chosen: the final graph estimated faster: border-split is within 1\.1x the original's MACs, "
                     r"but its Convs keep dilation 3x3, .* slower than single-conv's", " ".join(rec.notes)), rec.notes
    assert not any("no form is within" in n for n in rec.notes), rec.notes


def test_the_bound_stands_where_nothing_is_lowered_again():
    """The convtranspose pass alone (no dilated-conv in the run), or asked for
    border-split: the MAC bound's choice, as before."""
    model = dilated_full(2, 4)
    _, report = assert_rewrites(model, PASS, NO_CT)
    assert forms(report) == ["border-split"] and report.rewrites[0].macs_after <= 1.1 * report.rewrites[0].macs_before
    _, report = optimize(model, passes=NESTED, options={"convtranspose_form": "border-split"}, verify=False)
    assert report.rewrites[0].form == "border-split" and "chosen: asked for" in report.rewrites[0].notes


def test_a_large_dilated_map_keeps_its_form():
    """Where the dense form is within the bound the weighing decides nothing."""
    model = convt_model((1, 8, 64, 64), 8, (3, 3), dilations=[2, 2], pads=[2, 2, 2, 2])
    _, report = optimize(model, passes=NESTED, verify=False)
    assert report.rewrites[0].form == "single-conv"
    assert "chosen: the simplest form within 1.1x the original's MACs" in report.rewrites[0].notes


def test_with_a_target_the_final_graphs_are_weighed_too():
    """tflite lacks ConvTranspose and dilated Convs: the node is still lowered,
    by the form whose final graph (settled for tflite) is estimated faster;
    border-split's tiles became 236 nodes there."""
    new, report = assert_rewrites(dilated_full(2, 4), NESTED, {"ConvTranspose": 0}, target="tflite")
    assert len(new.graph.node) <= 40, op_counts(new)
    assert report.target["fits"]
    (rec,) = [r for r in report.rewrites if r.op == "ConvTranspose"]
    assert rec.form == "single-conv"
    assert re.search(r"single-conv tried first: border-split is within 1\.1x the original's MACs, but its Convs keep "
                     r"dilation 3x3, which the run's passes lower again: \d+ nodes in the end", " ".join(rec.notes))


# --- skips -------------------------------------------------------------------

def test_skip_weight_graph_input():
    assert_skips(convt_model((1, 2, 4, 4), 2, (2, 2), weight="input", strides=[2, 2]), PASS,
                 reason=r"^ConvTranspose 'up': weight 'W' is a graph input; make it an initializer")


def test_skip_weight_computed_at_run_time():
    model = convt_model((1, 2, 4, 4), 2, (2, 2), strides=[2, 2])
    model.graph.initializer[0].name = "W0"
    model.graph.node.insert(0, helper.make_node("Relu", ["W0"], ["W"], name="relu"))
    assert_skips(model, PASS, reason="weight 'W' is computed at run time")


@pytest.mark.parametrize("which", ["W", "B"])
def test_skip_a_sparse_initializer_names_it(which):
    # it was "weight 'W' is computed at run time" (and for the bias "computed at run
    # time by an operator whose output type or shape is unknown"): it is a constant
    model = convt_model((1, 2, 4, 4), 2, (2, 2), strides=[2, 2])
    k = [t.name for t in model.graph.initializer].index(which)
    dense = numpy_helper.to_array(model.graph.initializer[k])
    del model.graph.initializer[k]
    flat = dense.ravel()
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(
        numpy_helper.from_array(flat, which), numpy_helper.from_array(np.arange(flat.size, dtype=np.int64), "i"),
        list(dense.shape)))
    what = "weight" if which == "W" else "bias"
    assert_skips(model, PASS, code="runtime-weight",
                 reason=f"^ConvTranspose 'up': {what} '{which}' is a sparse_initializer; make it a dense initializer")


def _bias_of_another_domain(declared: bool):
    """The bias computed by a com.microsoft Gelu (onnxruntime runs it; onnx's
    shape inference does not know its output), declared in a value_info or not."""
    model = convt_model((1, 2, 4, 4), 2, (2, 2), strides=[2, 2])
    model.graph.initializer[1].name = "B0"
    model.graph.node.insert(0, helper.make_node("Gelu", ["B0"], ["B"], name="gelu", domain="com.microsoft"))
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    if declared:
        model.graph.value_info.append(helper.make_tensor_value_info("B", onnx.TensorProto.FLOAT, [2]))
    return model


def test_skip_bias_of_unknown_type_computed_at_run_time():
    # it was an internal error (KeyError: None, the bias's element type in the form's cost)
    assert_skips(_bias_of_another_domain(False), PASS, code="runtime-weight",
                 reason=r"^ConvTranspose 'up': bias 'B' is computed at run time by an operator whose output type "
                        r"or shape is unknown; make it an initializer \(or declare its type and shape in a value_info\)")
    assert_rewrites(_bias_of_another_domain(True), PASS, {"ConvTranspose": 0})   # the advice holds


@pytest.mark.parametrize("attrs, reason", [
    ({"strides": [2, 2], "output_padding": [1]}, r"attribute output_padding=\[1\] does not have 2 entries"),
    ({"strides": [2, 2], "kernel_shape": [3, 2]},
     r"kernel_shape \[3, 2\] does not match the weight's shape \[2, 2, 3, 3\]")])
def test_skip_attributes_that_do_not_describe_the_weight(attrs, reason):
    assert_skips(convt_model((1, 2, 8, 8), 2, (3, 3), **attrs), PASS, reason=rf"^ConvTranspose 'up': {reason}$")


def test_skip_double_which_onnxruntime_cannot_verify():
    assert_skips(convt_model((1, 2, 4, 4), 2, (2, 2), dtype=np.float64, strides=[2, 2]), PASS,
                 reason="element type DOUBLE is not lowered")


def test_skip_symbolic_spatial_size():
    assert_skips(convt_model((1, 2, "H", 4), 2, (2, 2), strides=[2, 2]), PASS, reason="spatial size .* not static")


def test_skip_same_padding_where_spec_and_onnxruntime_disagree():
    # kernel 2 < stride 3: the spec pads the output to n*s, onnxruntime stops at (n-1)*s + k
    model = convt_model((1, 2, 4, 4), 2, (2, 2), strides=[3, 3], auto_pad="SAME_UPPER")
    assert_skips(model, PASS, reason="spec pads the output to 12, onnxruntime returns 11", code="spec-ambiguous")


def test_skip_a_valid_node_too_large_to_plan_as_too_large():
    # a valid node (onnxruntime runs it: a 3x3 output) was coded invalid-node,
    # "the node breaks its operator's specification"
    model = convt_model((1, 2, 2, 2), 2, (2, 2), strides=[1000, 1000], pads=[0, 0, 998, 998])
    assert_skips(model, PASS, reason=r"strides \[1000, 1000\] make 1000000 output phases", code="too-large")


def test_skip_pads_together_with_auto_pad():
    model = convt_model((1, 2, 4, 4), 2, (3, 3), strides=[2, 2], pads=[1, 1, 1, 1], auto_pad="SAME_UPPER")
    assert_skips(model, PASS, reason="both pads .* and auto_pad=SAME_UPPER are set")


# --- property sweep ----------------------------------------------------------

@st.composite
def conv_transposes(draw):
    rank = draw(st.sampled_from([1, 2, 2, 3]))
    small = 4 if rank == 3 else 7
    sizes = [draw(st.integers(1, small)) for _ in range(rank)]
    kernel = [draw(st.integers(1, 5)) for _ in range(rank)]
    strides = [draw(st.integers(1, 8 if rank < 3 else 3)) for _ in range(rank)]
    dilations = [draw(st.sampled_from([1, 1, 2, 3])) for _ in range(rank)]
    attrs = dict(strides=strides, dilations=dilations)
    if draw(st.booleans()):
        attrs["output_padding"] = [draw(st.integers(0, s - 1)) for s in strides]
    mode = draw(st.sampled_from(["pads", "pads", "SAME_UPPER", "SAME_LOWER", "VALID", "output_shape"]))
    if mode == "pads":
        attrs["pads"] = [draw(st.integers(0, 3)) for _ in range(2 * rank)]
    elif mode == "output_shape":
        attrs["output_shape"] = [draw(st.integers(1, (n - 1) * s + (k - 1) * d + 3))
                                 for n, s, k, d in zip(sizes, strides, kernel, dilations)]
    else:
        attrs["auto_pad"] = mode
    group = draw(st.sampled_from([1, 1, 2, 3]))
    cin = group * draw(st.integers(1, 2))
    batch = draw(st.sampled_from([1, 2, "N"]))
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float16]))
    model = convt_model((batch, cin, *sizes), draw(st.integers(1, 2)), kernel, dtype=dtype,
                        bias=draw(st.booleans()), group=group, seed=draw(st.integers(0, 99)), **attrs)
    return model, sizes, kernel, attrs


@pytest.mark.slow
def test_property_random_attributes_rewrite_exactly():
    """Random attributes: every case is rewritten exactly (assert_rewrites also
    checks idempotence) or skipped with the spec's reason; most are rewritten."""
    rewritten = []

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
    @given(conv_transposes())
    def sweep(case):
        model, sizes, kernel, attrs = case
        a = dict(attrs)
        try:
            geometry = output_geometry(sizes, kernel, a.pop("strides"), a.pop("dilations"),
                                       a.pop("auto_pad", "NOTSET"), a.pop("pads", None),
                                       a.pop("output_padding", None), a.pop("output_shape", None))
        except SpecConflict as conflict:
            code = ("spec-ambiguous" if isinstance(conflict, SpecAmbiguous) else
                    "too-large" if isinstance(conflict, TooLarge) else "invalid-node")
            assert_skips(model, PASS, reason=re.escape(str(conflict)), code=code)
            rewritten.append(False)
            return
        if min(g.out for g in geometry) < 0:
            assert_skips(model, PASS, reason="the pads are larger than the output", code="invalid-node")
            rewritten.append(False)
            return
        if min(g.out for g in geometry) == 0:
            assert_skips(model, PASS, reason="output would be empty", code="empty-output")
            rewritten.append(False)
            return
        assert_rewrites(model, PASS, NO_CT)
        rewritten.append(True)

    sweep()
    # About 72% of this strategy's cases are valid (measured over 600); hypothesis does not draw them
    # independently (40 in a row ranged from 32% to 98%), so the sweep is derandomized and only
    # requires that half are rewritten: a pass that skipped everything fails.
    assert sum(rewritten) >= 0.5 * len(rewritten), f"{sum(rewritten)} of {len(rewritten)} rewritten"


def grid():
    """Every k <= 8, s <= 8, p < k, op < s (the same on every axis)."""
    for k, s, p, op in itertools.product(range(1, 9), range(1, 9), range(8), range(8)):
        if p < k and op < s:
            yield k, s, p, op


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.slow
def test_macs_stay_within_1_1x_of_the_conv_transpose_on_the_whole_grid(rank):
    """The driver's MAC figures, every kernel/stride/pad/output_padding at
    input 16: the simplest form within 1.1x, border-split where no other is.
    The border-split rewrites are also verified numerically (the others are
    exercised by the tests above and the property sweep)."""
    worst, used = 0.0, set()
    for k, s, p, op in grid():
        model = convt_model((1, 1, *[16] * rank), 1, (k,) * rank, strides=[s] * rank, pads=[p] * 2 * rank,
                            output_padding=[op] * rank)
        _, report = optimize(model, passes=[PASS], verify=False)
        (rec,) = report.rewrites
        assert rec.status == REWRITTEN, rec.reason
        assert rec.macs_before == conv_transpose_macs(1, 1, 1, [16] * rank, [k] * rank)
        assert rec.macs_after <= 1.1 * rec.macs_before, (k, s, p, op, rec.macs_after / rec.macs_before, rec.notes)
        worst = max(worst, rec.macs_after / rec.macs_before)
        used.add(rec.form)
        if rec.form == "border-split":
            _, checked = optimize(model, passes=[PASS])
            assert checked.rewrites[0].status == REWRITTEN and checked.verification.equivalent, checked.rewrites[0]
    assert used == {"single-conv", "phase-convs", "border-split"}
    assert worst > 1.09  # the bound is used, not just met by the exact form everywhere


@pytest.mark.parametrize("k,s,p,op", [(3, 2, 0, 1), (4, 2, 0, 0), (7, 1, 0, 0), (8, 8, 0, 7)])
def test_driver_reports_the_same_macs_for_border_split(k, s, p, op):
    model = convt_model((1, 2, 16, 16), 3, (k, k), strides=[s, s], pads=[p] * 4, output_padding=[op] * 2)
    _, report = assert_rewrites(model, PASS, NO_CT)
    rec = report.rewrites[0]
    assert rec.form == "border-split"
    assert rec.macs_before == conv_transpose_macs(2, 3, 1, [16, 16], [k, k])
    assert rec.macs_after <= 1.1 * rec.macs_before
    assert "phase-convs macs=" in " ".join(rec.notes)  # the form passed over, with its MACs


def test_border_split_of_a_full_stride_1_convolution():
    """7x7/s1/p0 at 16x16: one dense Conv (pads 6) would cost 1.89x.  Only the
    interior, read with at most one row or column of padding, keeps all 49
    taps; the border strips keep the taps that reach x."""
    model = convt_model((1, 4, 16, 16), 4, (7, 7))
    new, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "DepthToSpace": 0})
    rec = report.rewrites[0]
    assert rec.form == "border-split" and rec.macs_after <= 1.1 * rec.macs_before
    convs = [n for n in new.graph.node if n.op_type == "Conv"]
    assert 1 < len(convs) <= 40 and op_counts(new)["Concat"] >= 2
    full = [n for n in convs if attributes(n)["kernel_shape"] == [7, 7]]
    assert len(full) == 1 and max(attributes(full[0])["pads"]) <= 1


@pytest.mark.parametrize("x_shape,kernel,attrs", [
    ((1, 3, 16), (8,), dict(strides=[3])),                                  # 1-D
    ((1, 2, 6, 6, 6), (3, 3, 3), dict()),                                   # 3-D
    ((2, 4, 16, 16), (5, 3), dict(group=4, strides=[2, 1])),                # depthwise, unequal strides
    (("N", 2, 16, 16), (5, 5), dict(dilations=[2, 1], strides=[2, 2])),     # dilation, symbolic batch
    ((1, 2, 16, 16), (3, 3), dict(strides=[2, 2], output_shape=[34, 33])),  # bias-only strips at the end
    ((1, 2, 3, 3), (3, 3), dict(dilations=[4, 4])),                         # gaps no tap reaches
])
def test_border_split_handles_every_attribute(x_shape, kernel, attrs):
    _, report = assert_rewrites(convt_model(x_shape, 2, kernel, **attrs), PASS, NO_CT)
    rec = report.rewrites[0]
    assert rec.form == "border-split" and rec.macs_after <= 1.1 * rec.macs_before


@pytest.mark.parametrize("dtype,opset", [(np.float16, 17), (np.float32, 7)])
def test_border_split_in_float16_and_old_opsets(dtype, opset):
    model = convt_model((1, 2, 16, 16), 2, (6, 6), dtype=dtype, opset=opset, strides=[2, 2])
    _, report = assert_rewrites(model, PASS, NO_CT)
    assert "border-split" in forms(report)


def test_border_split_with_a_runtime_bias():
    model = convt_model((1, 2, 16, 16), 2, (5, 5), bias=False)
    model.graph.node[0].input.append("B")
    model.graph.input.append(helper.make_tensor_value_info("B", TensorProto.FLOAT, [2]))
    _, report = assert_rewrites(model, PASS, NO_CT)
    assert "border-split" in forms(report)


# --- target profiles ---------------------------------------------------------

MODELS = Path(__file__).resolve().parents[2] / "models"


def profile(tmp_path, name: str, spec: dict) -> Profile:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, **spec}))
    return load_profile(path)


def highest_rank(model) -> int:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    values = list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
    assert all(v.type.tensor_type.HasField("shape") for v in values)
    return max(len(v.type.tensor_type.shape.dim) for v in values)


def depth_to_space_modes(model) -> list[str]:
    return [attributes(n).get("mode", "DCR") for n in model.graph.node if n.op_type == "DepthToSpace"]


def test_a_node_the_target_runs_is_left_alone_with_the_reason(tmp_path):
    npu = profile(tmp_path, "npu-2x2", {"operators": {"ConvTranspose": {"kernel_shapes": [[2, 2]], "strides": [2]}}})
    runs = convt_model((1, 4, 8, 8), 2, (2, 2), strides=[2, 2])
    assert_skips(runs, PASS, target=npu,
                 reason=r"^ConvTranspose 'up': target 'npu-2x2' runs it as it is \(no rule of the profile is broken\)")
    new, report = optimize(runs, passes=["convtranspose"], target=npu)
    assert op_counts(new) == op_counts(runs) and report.target["fits"]
    cannot = convt_model((1, 4, 8, 8), 2, (4, 4), strides=[2, 2], pads=[1, 1, 1, 1])
    _, report = assert_rewrites(cannot, PASS, target=npu, expect_ops=NO_CT)
    assert "target npu-2x2: form 'phase-convs, DCR DepthToSpace' fits" in notes(report)
    assert "target npu-2x2 cannot run the ConvTranspose: ConvTranspose 'up': kernel 4x4 not in allowed kernel " \
           "shapes [2x2]" in notes(report)


def test_the_form_option_is_typed():
    p = ConvTransposeToConv(ConvTransposeOptions.from_dict({"convtranspose_form": "phase-convs"}))
    assert p.options.form == "phase-convs" and p.preferred() == ("phase-convs",)
    assert ConvTransposeToConv().preferred() == ()


def test_dcr_only_target_gets_the_single_conv_kernel_in_dcr_order(tmp_path):
    dcr = profile(tmp_path, "dcr-only", {"unsupported_operators": ["ConvTranspose"],
                                         "operators": {"DepthToSpace": {"modes": ["DCR"]}}})
    model = convt_model((1, 4, 8, 8), 2, (2, 2), strides=[2, 2])
    assert depth_to_space_modes(optimize(model, passes=["convtranspose"])[0]) == ["CRD"]  # the default
    new, report = assert_rewrites(model, PASS, target=dcr, expect_ops={"Conv": 1, "DepthToSpace": 1})
    assert depth_to_space_modes(new) == ["DCR"]
    assert [(r.form, r.variant) for r in report.rewrites] == [("single-conv", "DCR DepthToSpace")]
    assert any("form 'single-conv, CRD DepthToSpace' not used: DepthToSpace" in n for n in notes(report))


def test_dcr_only_rank_4_target_with_groups_uses_phase_convs(tmp_path):
    # a grouped Conv cannot emit DCR order (it would mix groups), and CRD by
    # Reshape/Transpose needs rank 6: one Conv per phase, concatenated DCR
    dcr4 = profile(tmp_path, "dcr-rank4", {"unsupported_operators": ["ConvTranspose"], "max_rank": 4,
                                           "operators": {"DepthToSpace": {"modes": ["DCR"]}}})
    model = convt_model((1, 4, 8, 8), 2, (2, 2), group=2, strides=[2, 2])
    new, report = assert_rewrites(model, PASS, target=dcr4, expect_ops={"DepthToSpace": 1})
    assert depth_to_space_modes(new) == ["DCR"] and "phase-convs" in forms(report)
    assert highest_rank(new) <= 4


@pytest.mark.parametrize("x_shape,kernel,attrs", [
    ((1, 4, 8, 8), (2, 2), dict(strides=[2, 2], opset=10)),   # no CRD DepthToSpace before opset 11
    ((1, 4, 8, 8), (3, 3), dict(strides=[2, 2], opset=9)),
    ((1, 3, 10), (4,), dict(strides=[2])),                      # 1-D shuffles stay at rank 4
    ((1, 2, 16, 16), (4, 4), dict(strides=[2, 2])),              # border-split
])
def test_rank_4_target_gets_no_tensor_above_rank_4(tmp_path, x_shape, kernel, attrs):
    rank4 = profile(tmp_path, "rank4", {"unsupported_operators": ["ConvTranspose"], "max_rank": 4})
    model = convt_model(x_shape, 2, kernel, **attrs)
    new, report = assert_rewrites(model, PASS, target=rank4, expect_ops=NO_CT)
    assert highest_rank(new) <= 4
    assert any(n.startswith("target rank4: form") and n.endswith("fits") for n in notes(report))


def test_rank_4_target_without_a_default_6d_shuffle_would_have_seen_one(tmp_path):
    model = convt_model((1, 4, 8, 8), 2, (2, 2), strides=[2, 2], opset=10)
    assert highest_rank(optimize(model, passes=["convtranspose"])[0]) == 6


def test_rank_4_target_skips_unequal_strides_with_the_reason(tmp_path):
    rank4 = profile(tmp_path, "rank4", {"unsupported_operators": ["ConvTranspose"], "max_rank": 4})
    model = convt_model((1, 2, 6, 6), 2, (3, 2), strides=[3, 2])
    assert_skips(model, PASS, target=rank4,
                 reason=r"^ConvTranspose 'up': no lowering form can be built for target 'rank4': "
                        r"it needs rank-6 tensors, above the target's max_rank 4 \(tried 'single-conv, CRD", code="no-form")


def test_dcgan_on_ethos_n78_gets_pad_nodes_for_its_same_or_valid_only_convs():
    """n78 convolutions take SAME or VALID padding only, so the 4x4/s2/p1
    layers' phase convs read explicitly padded inputs.  The first layer
    (4x4 kernel from a 1x1 input) stays: its closest form would leave a
    DepthToSpace of block 4 (n78 has block 2 only) to the host, one host
    node for the one it replaces (never worse)."""
    model = onnx.load(MODELS / "dcgan_generator.onnx")
    new, report = optimize(model, passes=["convtranspose"], target="arm-ethos-n78")
    assert report.verification.equivalent is True and op_counts(new)["ConvTranspose"] == 1
    for rec in report.rewrites[1:4]:
        assert "target arm-ethos-n78: form 'phase-convs, DCR DepthToSpace, Pad nodes' fits" in rec.notes
    first = report.rewrites[0]
    assert first.node == "/main/main.0/ConvTranspose" and first.code == "no-form"
    assert re.search(r"no lowering form runs on target 'arm-ethos-n78', so the node is left as it is; closest first: "
                     r"'[^']+' would leave 1 node\(s\) the target does not run \(DepthToSpace .*blocksize 4 not in "
                     r"allowed block sizes \[2\]\), not fewer than the 1 it replaces", first.reason), first.reason
    bad = {(v["node"], v["rule"]) for v in report.target["violations"]}
    assert bad == {("/main/main.0/ConvTranspose", "operators.ConvTranspose.kernel_sizes")}


@pytest.mark.slow
@pytest.mark.parametrize("target", builtin_names())
@pytest.mark.parametrize("name", ["unet_decoder", "dcgan_generator", "maskrcnn_mask_head"])
def test_sample_models_under_every_builtin_profile(name, target):
    model = onnx.load(MODELS / f"{name}.onnx")
    new, report = optimize(model, passes=["convtranspose"], target=target)
    onnx.checker.check_model(new, full_check=True)
    assert report.verification.equivalent is True, report.verification
    assert report.target["profile"] == target and report.target["origin"] == "built-in"
    for batch in (1, 3):  # maskrcnn's batch is symbolic
        feeds = random_feeds(runtime_inputs(model), seed=5, batch=batch)
        result = check_models(model, new, feeds)
        assert result, f"{name} under {target} differs from the original:\n{result}"
    graph, profile_ = GraphView(model), load_profile(target)
    for rec, node in zip(report.rewrites, [n for n in model.graph.node if n.op_type == "ConvTranspose"]):
        if needs_lowering(node, graph, profile_) is None:
            assert rec.status != REWRITTEN and "runs it as it is" in rec.reason
        elif name == "dcgan_generator" and target == "arm-ethos-n78" and rec.node == "/main/main.0/ConvTranspose":
            assert rec.code == "no-form" and "so the node is left as it is" in rec.reason, rec.reason
        else:
            assert rec.status == REWRITTEN, rec.reason
            assert any(n.startswith(f"target {target}: ") for n in rec.notes)
    kept = sum(1 for r in report.rewrites if r.status != REWRITTEN)
    assert op_counts(new)["ConvTranspose"] == kept
    # the forms chosen fit; only DCGAN's first layer (1x1 -> 4x4) cannot fit the Ethos-N78: its
    # forms need a block-4 pixel shuffle (DepthToSpace block 2 only), one host node for one, so it
    # stays (never worse); the U55 (Vela 5.2) runs that stride-1 ConvTranspose as it is
    unfit = {v["node"] for v in report.target["violations"]}
    if name == "dcgan_generator" and target == "arm-ethos-n78":
        assert unfit == {"/main/main.0/ConvTranspose"}
    elif name == "maskrcnn_mask_head" and load_profile(target).static_shapes:
        # its symbolic batch: onnx2tf keeps the shape arithmetic on the host (Vela: CPU)
        assert {(v["node"], v["rule"]) for v in report.target["violations"]} == {("rois", "static_shapes")}
    else:
        assert report.target["fits"], report.target["violations"]
    _, again = optimize(new, passes=["convtranspose"], target=target)
    assert not again.records(REWRITTEN)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_transposes(), st.sampled_from(builtin_names()))
def test_property_every_builtin_target_keeps_the_model_exact(case, target):
    model = case[0]
    new, report = optimize(model, passes=["convtranspose"], target=target)
    (rec,) = report.rewrites
    assert rec.status in (REWRITTEN, "skipped"), rec.reason
    assert rec.status == REWRITTEN or rec.reason.startswith("ConvTranspose 'up': ")
    assert report.verification.equivalent in (True, None), report.verification
    if rec.status == REWRITTEN:
        assert report.verification.equivalent is True
        assert any(n.startswith(f"target {target}: ") for n in rec.notes)


# --- costs known before building -------------------------------------------------

def run_time_cost(model: onnx.ModelProto):
    """subgraph_cost with every shape taken from a run at batch 1: before
    opset 11, shape inference cannot follow the zeros of a symbolic batch
    (ConstantOfShape / Expand of Concat(Slice(Shape(x)), ...)), so model_cost
    leaves the bytes moved unknown there, though they are not."""
    m = batch_one(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    names = [o for n in m.graph.node for o in n.output]
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_value_info(o, onnx.TypeProto()) for o in names)
    values = run_onnxruntime(probe, random_feeds(runtime_inputs(m), batch=1))
    inferred = onnx.ModelProto()
    inferred.CopyFrom(m)
    found = {o: helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
             for o, v in zip(names, values)}
    inferred.graph.value_info.extend(found.values())
    for vi in inferred.graph.output:
        vi.CopyFrom(found[vi.name])
    return subgraph_cost(m.graph.node, GraphView(m, inferred=inferred))


def assert_costs_exact(model: onnx.ModelProto, p=None, node: int = -1) -> int:
    """Every form and variant that applies to the ConvTranspose model.graph.node[node]:
    the Cost the chooser sees before building equals the built replacement's
    (model_cost at batch 1; MACs and bytes per batch item) on all four
    figures.  Returns the options checked."""
    p = p or ConvTransposeToConv(ConvTransposeOptions(form="border-split"))
    graph = GraphView(model)
    match = p.match(model.graph.node[node], graph)
    assert isinstance(match, Match), match
    batch = graph.shape(model.graph.node[node].input[0])[0]
    per_item = batch if isinstance(batch, int) else 1
    options = rank(p, match, graph, None, with_variants=True, with_opt_in=True).options
    for option in options:
        replacement = replacement_model(build(p, match, option, graph), graph)
        built = model_cost(replacement)
        if built.moved_bytes is None and not isinstance(batch, int) and graph.opset() < 11:
            built = run_time_cost(replacement)
        assert_cost_exact(option, built, per_item)
    return len(options)


def with_runtime_bias(model: onnx.ModelProto) -> onnx.ModelProto:
    """The ConvTranspose's bias fed as a graph input (no bias before)."""
    node = model.graph.node[-1]
    cout = model.graph.initializer[0].dims[1] * attributes(node).get("group", 1)
    node.input.append("B_run_time")
    model.graph.input.append(helper.make_tensor_value_info("B_run_time", model.graph.input[0].type.tensor_type.elem_type,
                                                           [cout]))
    return model


COST_CASES = [
    # x shape, Cout per group, kernel, attributes
    ((1, 8, 6, 6), 4, (2, 2), dict(strides=[2, 2])),                                       # 1x1 + DepthToSpace
    ((1, 3, 5, 5), 2, (4, 4), dict(strides=[2, 2], pads=[1, 1, 1, 1])),                     # DCGAN
    ((2, 3, 5, 5), 2, (3, 3), dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])),
    ((1, 3, 5, 6), 2, (3, 5), dict(strides=[3, 2], pads=[0, 2, 1, 1])),                     # unequal strides
    ((1, 4, 5, 6), 2, (3, 3), dict(strides=[2, 2], group=2)),
    ((1, 4, 5, 6), 1, (3, 3), dict(strides=[2, 1], group=4, dilations=[2, 1])),             # depthwise, dilated
    ((1, 3, 16), 2, (8,), dict(strides=[3])),                                                # 1-D
    ((1, 2, 6, 6, 6), 2, (3, 3, 3), dict()),                                                 # 3-D, stride 1
    ((1, 2, 4, 5, 3), 2, (3, 2, 3), dict(strides=[2, 2, 2], pads=[1, 0, 1, 0, 1, 0])),      # 3-D shuffle per axis
    (("N", 2, 16, 16), 2, (5, 5), dict(dilations=[2, 1], strides=[2, 2])),                   # border-split
    ((1, 2, 16, 16), 2, (3, 3), dict(strides=[2, 2], output_shape=[34, 33])),               # bias-only strips
    ((1, 2, 3, 3), 2, (3, 3), dict(dilations=[4, 4])),                                       # gaps no tap reaches
    ((1, 2, 16, 16), 3, (7, 7), dict()),                                                     # border-split, s1
    ((1, 2, 1, 1), 3, (4, 4), dict()),                                                       # one input pixel
    ((1, 2, 4, 4), 3, (3, 3), dict(strides=[2, 2], pads=[3, 3, 3, 3])),                     # negative pads: Slice
    (("N", 2, 4, 4), 3, (3, 3), dict(strides=[4, 4])),                                       # phases without taps
    ((1, 2, 5, 5), 3, (3, 3), dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    ((1, 2, 5, 5), 3, (3, 3), dict(strides=[2, 2], pads=[5, 5, 5, 5])),                     # bias only
]


@pytest.mark.parametrize("bias", ["constant", "none", "run time"])
@pytest.mark.parametrize("case", range(len(COST_CASES)))
def test_form_costs_are_exact(case, bias):
    x_shape, cout, kernel, attrs = COST_CASES[case]
    model = convt_model(x_shape, cout, kernel, bias=bias == "constant", **attrs)
    assert assert_costs_exact(with_runtime_bias(model) if bias == "run time" else model)


@pytest.mark.parametrize("case", [0, 1, 4, 6, 8, 10, 12, 15, 17])
def test_bias_after_the_shuffle_variants_compute_the_convtranspose(case):
    """Every form's "bias after the shuffle" variant (Convs without bias, the
    shuffle and crop, one Add of B; phases no tap reaches are zeros before
    it) and, where the form crops, its "bias before the crop" variant (the
    Add between the shuffle and the crop Slice) equal the ConvTranspose;
    offered only with a constant bias."""
    x_shape, cout, kernel, attrs = COST_CASES[case]
    model = convt_model(x_shape, cout, kernel, bias=True, **attrs)
    p = ConvTransposeToConv(ConvTransposeOptions(form="border-split"))
    graph = GraphView(model)
    match = p.match(model.graph.node[-1], graph)
    options = [o for o in rank(p, match, graph, None, with_variants=True, with_opt_in=True).options
               if getattr(o.variant, "bias_after", False)]
    assert options, "no bias-after variant"
    for option in options:
        replacement = build(p, match, option, graph)
        ops = [n.op_type for n in replacement.nodes]
        crops = ops[-1] == "Slice" and replacement.nodes[-1].name.endswith("/crop")
        if option.variant.before_crop:
            assert option.label.endswith("bias before the crop") and crops and ops[-2] == "Add", option.label
            assert replacement.nodes[-1].input[0] == replacement.nodes[-2].output[0], option.label
        else:
            assert option.label.endswith("bias after the shuffle") and ops[-1] == "Add", option.label
        assert not any(len(n.input) > 2 for n in replacement.nodes if n.op_type == "Conv"), option.label
        feeds = random_feeds(runtime_inputs(model))
        got = run_onnxruntime(replacement_model(replacement, graph), feeds)
        assert compare_outputs(["y"], run_onnxruntime(model, feeds), got), option.label
    for bias in ("none", "run time"):
        plain = convt_model(x_shape, cout, kernel, bias=False, **attrs)
        plain = with_runtime_bias(plain) if bias == "run time" else plain
        m = p.match(plain.graph.node[-1], GraphView(plain))
        labels = [o.label for o in rank(p, m, GraphView(plain), None, with_variants=True, with_opt_in=True).options]
        assert not any("bias after" in label for label in labels), labels


def test_bias_before_the_crop_is_offered_where_the_form_crops():
    """One "bias before the crop" variant per structure variant, exactly where
    what the form builds ends with a crop: a DCGAN ConvTranspose (pads 1)
    crops single-conv's shared window, not its phase Convs; a pad-free
    stride-2 kernel-2 one crops neither."""
    p = ConvTransposeToConv()
    for kernel, attrs, cropping in [((4, 4), dict(strides=[2, 2], pads=[1, 1, 1, 1]), {"single-conv"}),
                                    ((2, 2), dict(strides=[2, 2]), set())]:
        model = convt_model((1, 3, 5, 5), 2, kernel, bias=True, **attrs)
        graph = GraphView(model)
        match = p.match(model.graph.node[-1], graph)
        for form in [f for f in p.forms if f.name in ("single-conv", "phase-convs") and not f.quantized_only]:
            variants = form.variants(match, graph)
            plain = [v for v in variants if not v.bias_after]
            before = [v for v in variants if v.before_crop]
            built = build(p, match, Option(form, plain[0], ""), graph)
            assert any(n.name.endswith("/crop") for n in built.nodes) == (form.name in cropping), form.name
            assert all(v.bias_after for v in before)
            assert [replace(v, bias_after=False, before_crop=False, label="") for v in before] == \
                ([replace(v, label="") for v in plain] if form.name in cropping else []), (form.name, kernel)


def test_a_1d_stride8_convtranspose_takes_the_bias_before_the_crop_on_the_ethos_u55():
    """melgan's and HiFi-GAN's upsampler (1-D, kernel 16, stride 8, pads 4)
    on the U55, which runs no stride-8 TRANSPOSE_CONV: every plain variant
    crops a Reshape's output or concatenates 1-D Convs (no_reshaped_inputs:
    onnx2tf's int8 quantizer forces the Slice's scale onto the RESHAPE, which
    Vela refuses), and so does "bias after the shuffle" (its Add follows the
    crop).  "bias before the crop" leaves the Slice reading the bias Add,
    which requantizes: it fits.  The tflite profile (no such rule) keeps
    "bias after the shuffle"; without a bias there is no Add to move, and the
    node stays."""
    model = convt_model((1, 16, 12), 8, (16,), bias=True, strides=[8], pads=[4, 4])
    u55 = load_profile("arm-ethos-u55")
    new, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "Conv": 1, "Reshape": 2, "Transpose": 1,
                                                "Add": 1, "Slice": 1, "Concat": 0}, target=u55)
    record = report.records(REWRITTEN)[0]
    assert (record.form, record.variant) == ("single-conv", "CRD Reshape/Transpose, bias before the crop")
    nodes = {n.output[0]: n for n in new.graph.node}
    crop = next(n for n in new.graph.node if n.op_type == "Slice")
    assert nodes[crop.input[0]].op_type == "Add"
    assert nodes[nodes[crop.input[0]].input[1]].op_type == "Reshape"
    _, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "Add": 1}, target=load_profile("tflite"))
    assert report.records(REWRITTEN)[0].variant.endswith("bias after the shuffle")
    assert_skips(convt_model((1, 16, 12), 8, (16,), bias=False, strides=[8], pads=[4, 4]), PASS,
                 r"no lowering form runs on target 'arm-ethos-u55'.*Slice .*passes through a RESHAPE",
                 code="no-form", target=u55)


def test_the_tflite_profile_adds_the_bias_after_the_shuffle():
    """bias_after_shuffle (the tflite profile): onnx2tf's int8 quantizer gives
    a DEPTH_TO_SPACE before a CONCATENATION the Concat's scale while its input
    keeps the Conv's (docs/tflite.md, reproducer 5); the lowering ends with the
    bias Add, which requantizes.  Without the key the bias stays in the Conv."""
    model = convt_model((1, 8, 6, 6), 4, (2, 2), bias=True, strides=[2, 2])
    new, report = assert_rewrites(model, PASS, {"Conv": 1, "DepthToSpace": 1, "Add": 1},
                                  target=load_profile("tflite"))
    assert report.records(REWRITTEN)[0].variant == "DCR DepthToSpace, bias after the shuffle"
    new, report = assert_rewrites(model, PASS, {"Conv": 1, "DepthToSpace": 1, "Add": 0},
                                  target=load_profile("no-deconv"))
    assert "bias after" not in report.records(REWRITTEN)[0].variant



@pytest.mark.parametrize("x_shape,kernel,attrs,shuffles", [
    # torch's ConvTranspose2d(3, stride=2, padding=1, output_padding=1) on a one-row map
    ((1, 4, 1, 4), (3, 3), dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]), 1),
    # a stride-1 ConvTranspose2d(5) on a 1x6 map (from the dynamo exporter, dilated, in the hunt)
    ((1, 4, 1, 6), (5, 5), dict(strides=[1, 1]), 0),
])
def test_a_one_row_map_keeps_square_blocks_for_a_rank_4_target(x_shape, kernel, attrs, shuffles):
    """A single input row used to take a stride of its kernel extent (3 and 5
    above) while the other axis kept the node's: unequal blocks, no
    DepthToSpace, and every Reshape/Transpose shuffle needs rank-6 tensors,
    so tflite left the node ('no-form') where a 2-row map rewrites.  Equal
    strides now stay equal: DepthToSpace, or no shuffle at stride 1."""
    model = convt_model(x_shape, 3, kernel, **attrs)
    assert_rewrites(model, "convtranspose", {"ConvTranspose": 0, "DepthToSpace": shuffles, "Transpose": 0},
                    target=load_profile("tflite"))


@pytest.mark.parametrize("opset,dtype", [(7, np.float32), (8, np.float16), (9, np.float32), (10, np.float16)])
@pytest.mark.parametrize("case", [3, 9, 15])
def test_form_costs_are_exact_in_old_opsets(case, opset, dtype):
    """Pads and Slices as attributes, DepthToSpace without mode, zeros as an
    initializer, Expand or Tile (opsets 7, 8), ConstantOfShape from 9."""
    x_shape, cout, kernel, attrs = COST_CASES[case]
    for bias in ("constant", "none", "run time"):
        model = convt_model(x_shape, cout, kernel, dtype=dtype, opset=opset, bias=bias == "constant", **attrs)
        assert_costs_exact(with_runtime_bias(model) if bias == "run time" else model)


@pytest.mark.slow
def test_form_costs_are_exact_over_a_grid():
    """Kernel, stride, pads, output_padding, dilation, group, rank, batch."""
    checked = 0
    grid = itertools.product([1, 2, 3, 4], [1, 2, 3], [0, 1, 2], [0, 1], [1, 2], [1, 2])
    for k, s, pad, adj, d, g in grid:
        if adj >= max(s, d):
            continue
        for x_shape in ((1, 2, 5), ("N", 2, 5, 4), (1, 2, 3, 4, 3)):
            r = len(x_shape) - 2
            kernel = tuple(k + (i % 2) for i in range(r))
            attrs = dict(strides=[s] * r, pads=[pad] * 2 * r, output_padding=[adj] * r, dilations=[d] * r, group=g)
            try:
                model = convt_model(x_shape, 2, kernel, **attrs)
            except Exception:
                continue
            if not isinstance(ConvTransposeToConv().match(model.graph.node[-1], GraphView(model)), Match):
                continue
            checked += assert_costs_exact(model)
    assert checked > 500


def test_a_symbolic_channel_dim_is_rewritten_and_checked():
    """As for dilated Convs: the checks feed the ConvTranspose its weight's input channels, not 16."""
    model = convt_model((1, 3, 6, 6), 4, (4, 4), strides=[2, 2], pads=[1, 1, 1, 1])
    channel = model.graph.input[0].type.tensor_type.shape.dim[1]
    channel.ClearField("dim_value")
    channel.dim_param = "C"
    _, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "Conv": 1}, expect_rewrites=1)
    assert report.rewrites[0].max_abs_error is not None


def _input_of_another_domain(model: onnx.ModelProto, shape=None) -> onnx.ModelProto:
    """The node's input made by a com.microsoft Gelu, whose output onnx's
    shape inference does not know; with `shape`, declared in a value_info."""
    node = model.graph.node[-1]
    model.graph.node.insert(0, helper.make_node("Gelu", [node.input[0]], ["g"], name="gelu", domain="com.microsoft"))
    node.input[0] = "g"
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    if shape is not None:
        model.graph.value_info.append(helper.make_tensor_value_info("g", onnx.TensorProto.FLOAT, shape))
    return model


def test_an_input_of_unknown_rank_names_where_inference_lost_it():
    # the reason was "run shape inference or give the input a shape": the run had run it, and the
    # graph input had a shape; the fix is a declaration of the value the Gelu makes
    assert_skips(_input_of_another_domain(convt_model((1, 2, 4, 4), 2, (2, 2), strides=[2, 2])), PASS,
                 code="dynamic-shape",
                 reason=r"^ConvTranspose 'up': the input's rank is unknown: onnx's shape inference could not follow "
                        r"Gelu 'gelu' of domain 'com.microsoft', which makes it; declare 'g' in a value_info")
    assert_rewrites(_input_of_another_domain(convt_model((1, 2, 4, 4), 2, (2, 2), strides=[2, 2]), [1, 2, 4, 4]),
                    PASS, {"ConvTranspose": 0})   # the advice holds
