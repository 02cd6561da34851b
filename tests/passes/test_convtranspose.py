"""convtranspose: ConvTranspose -> stride-1 Conv(s) + pixel shuffle.

Every positive test goes through assert_rewrites (checker, op counts, numeric
equivalence against onnxruntime on the original, idempotence).  The
sub-pixel arithmetic is also checked on its own against a plain numpy
scatter, and its MAC counts against the bound the issue sets.
"""
from __future__ import annotations

import itertools
import re
from math import prod

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from conformance import node_cases, pytorch_converted_cases
from convrewrite import optimize
from convrewrite.equivalence import compare_outputs, run_onnxruntime
from convrewrite.report import REWRITTEN
from convrewrite.subpixel import (SpecConflict, conv_transpose_macs, output_geometry, output_size,
                                  phase_kernel, plan_macs, shared_plan, split_plan)
from helpers import assert_rewrites, assert_skips, op_counts
from passes.convtranspose_to_conv import ConvTransposeToConv

PASS = ConvTransposeToConv()
NO_CT = {"ConvTranspose": 0}


def convt_model(x_shape, cout_per_group, kernel, dtype=np.float32, bias=True, group=1, opset=17,
                weight="initializer", seed=0, **attrs) -> onnx.ModelProto:
    """One ConvTranspose; weight "initializer", "input" (a graph input) or "constant" (a Constant node)."""
    rng = np.random.default_rng(seed)
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    w = rng.standard_normal((x_shape[1], cout_per_group, *kernel)).astype(dtype)
    inputs, inits, nodes = [helper.make_tensor_value_info("x", et, list(x_shape))], [], []
    if weight == "input":
        inputs.append(helper.make_tensor_value_info("W", et, list(w.shape)))
    elif weight == "constant":
        nodes.append(helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(w)))
    else:
        inits.append(numpy_helper.from_array(w, "W"))
    names = ["x", "W"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(cout_per_group * group).astype(dtype), "B"))
        names.append("B")
    nodes.append(helper.make_node("ConvTranspose", names, ["y"], name="up", group=group, **attrs))
    out = helper.make_tensor_value_info("y", et, [None] * len(x_shape))
    return helper.make_model(helper.make_graph(nodes, "g", inputs, [out], inits),
                             opset_imports=[helper.make_opsetid("", opset)])


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
    assert "form=single-conv" in notes(report)
    assert report.rewrites[0].macs_after == report.rewrites[0].macs_before


def test_dcgan_4x4_stride_2_pad_1_uses_one_exact_conv_per_phase_and_no_crop():
    model = convt_model((1, 6, 16, 16), 3, (4, 4), strides=[2, 2], pads=[1, 1, 1, 1])
    new, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "Conv": 4, "Concat": 1, "DepthToSpace": 1,
                                                "Slice": 0, "Pad": 0})
    assert "form=phase-convs" in notes(report)
    assert report.rewrites[0].macs_after == report.rewrites[0].macs_before


def test_k3_s2_p1_op1_packs_nine_taps_into_four_phase_kernels_without_zeros():
    model = convt_model((1, 4, 16, 16), 4, (3, 3), strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])
    new, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "Conv": 4, "Slice": 0})
    shapes = sorted(tuple(numpy_helper.to_array(t).shape[2:]) for t in new.graph.initializer
                    if t.name.endswith("conv_weight"))
    assert shapes == [(1, 1), (1, 2), (2, 1), (2, 2)]
    rec = report.rewrites[0]
    assert rec.macs_after == rec.macs_before == conv_transpose_macs(4, 4, 1, (16, 16), (3, 3))


def test_stride_1_is_one_conv_with_the_flipped_transposed_kernel_and_complementary_pads():
    model = convt_model((2, 3, 7, 7), 5, (3, 2), pads=[0, 1, 1, 0])
    new, _ = assert_rewrites(model, PASS, {"ConvTranspose": 0, "Conv": 1})
    assert [n.op_type for n in new.graph.node] == ["Conv"]
    conv = new.graph.node[0]
    w = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "W"))
    np.testing.assert_array_equal(initializer(new, "conv_weight"), w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    pads = next(a.ints for a in conv.attribute if a.name == "pads")
    assert list(pads) == [2 - 0, 1 - 1, 2 - 1, 1 - 0]  # e - 1 - pads, per side


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
    new, _ = assert_rewrites(model, PASS, NO_CT)
    assert any(n.op_type == "Slice" and n.input[0] == "x" for n in new.graph.node)


@pytest.mark.parametrize("x_shape,kernel,strides", [
    ((1, 3, 10), (4,), [2]),                      # 1-D
    ((1, 2, 4, 5, 3), (3, 2, 2), [2, 2, 1]),      # 3-D
    ((1, 3, 6, 7), (3, 2), [3, 2]),               # unequal strides
])
def test_other_ranks_and_unequal_strides_use_the_reshape_transpose_pixel_shuffle(x_shape, kernel, strides):
    model = convt_model(x_shape, 2, kernel, strides=strides)
    assert_rewrites(model, PASS, {"ConvTranspose": 0, "DepthToSpace": 0, "Transpose": 1})


@pytest.mark.parametrize("form", ["single-conv", "phase-convs"])
def test_a_preferred_form_is_honoured_and_exact(form):
    model = convt_model((1, 4, 8, 8), 2, (4, 4), strides=[2, 2], pads=[1, 1, 1, 1])
    _, report = assert_rewrites(model, ConvTransposeToConv(form), NO_CT)
    assert f"form={form}" in notes(report)
    with pytest.raises(ValueError, match="convtranspose_form"):
        ConvTransposeToConv("fastest")


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
    assert "form=bias-only" in notes(report)


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
    assert "form=phase-convs" in notes(report)


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
    new, _ = assert_rewrites(model, PASS, NO_CT)
    assert {"Slice", "Pad"} <= set(op_counts(new))


def test_old_opset_without_constant_of_shape_falls_back_to_one_conv():
    model = convt_model((1, 2, 5, 5), 2, (1, 1), strides=[2, 2], opset=7)
    _, report = assert_rewrites(model, PASS, {"ConvTranspose": 0, "ConstantOfShape": 0})
    assert "form=single-conv" in notes(report)


# --- skips -------------------------------------------------------------------

def test_skip_weight_graph_input():
    assert_skips(convt_model((1, 2, 4, 4), 2, (2, 2), weight="input", strides=[2, 2]), PASS,
                 reason=r"^ConvTranspose 'up': weight 'W' is a graph input; make it an initializer")


def test_skip_weight_computed_at_run_time():
    model = convt_model((1, 2, 4, 4), 2, (2, 2), strides=[2, 2])
    model.graph.initializer[0].name = "W0"
    model.graph.node.insert(0, helper.make_node("Relu", ["W0"], ["W"], name="relu"))
    assert_skips(model, PASS, reason="weight 'W' is computed at run time")


def test_skip_double_which_onnxruntime_cannot_verify():
    assert_skips(convt_model((1, 2, 4, 4), 2, (2, 2), dtype=np.float64, strides=[2, 2]), PASS,
                 reason="element type DOUBLE is not lowered")


def test_skip_symbolic_spatial_size():
    assert_skips(convt_model((1, 2, "H", 4), 2, (2, 2), strides=[2, 2]), PASS, reason="spatial size .* not static")


def test_skip_same_padding_where_spec_and_onnxruntime_disagree():
    # kernel 2 < stride 3: the spec pads the output to n*s, onnxruntime stops at (n-1)*s + k
    model = convt_model((1, 2, 4, 4), 2, (2, 2), strides=[3, 3], auto_pad="SAME_UPPER")
    assert_skips(model, PASS, reason="spec pads the output to 12, onnxruntime returns 11")


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


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_transposes())
def test_property_random_attributes_rewrite_exactly(case):
    model, sizes, kernel, attrs = case
    a = dict(attrs)
    try:
        geometry = output_geometry(sizes, kernel, a.pop("strides"), a.pop("dilations"), a.pop("auto_pad", "NOTSET"),
                                   a.pop("pads", None), a.pop("output_padding", None), a.pop("output_shape", None))
    except SpecConflict as conflict:
        assert_skips(model, PASS, reason=re.escape(str(conflict)))
        return
    if min(g.out for g in geometry) <= 0:
        assert_skips(model, PASS, reason="output would be empty")
        return
    assert_rewrites(model, PASS, NO_CT)


# --- the arithmetic on its own -----------------------------------------------

def scatter_1d(x, w, g):
    """ConvTranspose by its definition: z[i*s + j*d] += x[i] * w[j], y[t] = z[t + head]."""
    z = np.zeros(g.full + g.out + abs(g.head) + 1)
    for i, j in itertools.product(range(g.n), range(g.k)):
        z[i * g.s + j * g.d] += x[i] * w[j]
    return np.array([z[t + g.head] if t + g.head >= 0 else 0.0 for t in range(g.out)])


def run_plan_1d(x, w, plan):
    """Each phase conv in plain numpy (negative pads slice the input), interleaved, cropped."""
    grid = np.zeros(plan.blocks * plan.stride)
    for r, conv in enumerate(plan.phases):
        if conv is None:
            continue
        kern = phase_kernel(w[None, None], [conv])[0, 0]
        xs = np.pad(x, (max(conv.begin, 0), max(conv.end, 0)))[max(-conv.begin, 0): len(x) + max(conv.begin, 0)
                                                                + max(conv.end, 0) - max(-conv.end, 0)]
        span = (conv.size - 1) * conv.dilation + 1
        y = [sum(xs[q + u * conv.dilation] * kern[u] for u in range(conv.size)) for q in range(len(xs) - span + 1)]
        assert len(y) == conv.count <= plan.blocks
        grid[r::plan.stride][:conv.count] = y
    return grid[plan.shift: plan.shift + plan.out]


def test_phase_plans_reproduce_the_definition_in_1d():
    rng = np.random.default_rng(0)
    for n, k, s, d, pb, pe in itertools.product([1, 2, 5], [1, 2, 3, 5], [1, 2, 3, 5], [1, 2, 3], [0, 1, 4], [0, 2]):
        for op in range(s):
            (g,) = output_geometry([n], [k], [s], [d], "NOTSET", [pb, pe], [op])
            if g.out <= 0:
                continue
            x, w = rng.standard_normal(n), rng.standard_normal(k)
            want = scatter_1d(x, w, g)
            for plan in (split_plan(g), shared_plan(g)):
                if all(c is None for c in plan.phases):
                    assert not want.any()
                    continue
                np.testing.assert_allclose(run_plan_1d(x, w, plan), want, atol=1e-12,
                                           err_msg=f"{plan.form} n={n} k={k} s={s} d={d} pads={pb},{pe} op={op}")


def test_output_size_per_spec():
    assert output_size([3, 3], [3, 3], [3, 2], [1, 1], pads=[1, 2, 1, 2]) == [7, 3]
    assert output_size([3, 3], [3, 3], [3, 2], [1, 1], output_padding=[1, 1]) == [10, 8]
    assert output_size([5], [3], [2], [1], auto_pad="SAME_LOWER") == [10]
    assert output_size([5], [3], [2], [1], auto_pad="VALID") == [11]
    assert output_size([5], [3], [2], [2], output_shape=[8]) == [8]
    (g,) = output_geometry([5], [3], [2], [1], "NOTSET", None, None, [8])      # total 3: more at the start
    assert g.head == 2
    (g,) = output_geometry([5], [3], [2], [1], "SAME_UPPER", None, None, [8])  # ... unless SAME_UPPER
    assert g.head == 1


def macs_grid():
    n = 16
    for k, s in itertools.product(range(1, 9), range(1, 9)):
        for p, op in itertools.product(range(k), range(s)):
            geometry = output_geometry([n, n], [k, k], [s, s], [1, 1], "NOTSET", [p] * 4, [op] * 2)
            if geometry[0].out > 0:
                yield k, s, p, op, geometry


def test_macs_never_exceed_the_conv_transpose_where_the_output_stays_within_n_times_s():
    """Phase convs carry no zero taps.  The only overhead left is the part of
    the output beyond n*s (uncropped borders, where any dense Conv reads zero
    padding: each output block costs at most k taps per axis).  Where the
    output fits in n*s the cost is at most the ConvTranspose's (the issue
    asks for <= 1.1x)."""
    within = 0
    for k, s, p, op, geometry in macs_grid():
        before = conv_transpose_macs(1, 1, 1, [16, 16], [k, k])
        after = min(plan_macs([split_plan(g) for g in geometry], 1, 1, 1),
                    plan_macs([shared_plan(g) for g in geometry], 1, 1, 1))
        assert after <= prod(-(-g.out // s) * k for g in geometry), (k, s, p, op)
        if geometry[0].out <= 16 * s:
            within += 1
            assert after <= before, (k, s, p, op, after / before)
    assert within > 500


@pytest.mark.parametrize("k,s,p,op", [(2, 2, 0, 0), (3, 2, 1, 1), (4, 2, 1, 0), (5, 2, 2, 1), (3, 3, 0, 0),
                                      (5, 3, 1, 0), (7, 4, 2, 1), (8, 8, 0, 0), (1, 4, 0, 0), (6, 4, 1, 0)])
def test_driver_reports_the_same_macs_and_within_1_1x(k, s, p, op):
    model = convt_model((1, 2, 16, 16), 3, (k, k), strides=[s, s], pads=[p] * 4, output_padding=[op] * 2)
    _, report = assert_rewrites(model, PASS, NO_CT)
    rec = report.rewrites[0]
    assert rec.macs_before == conv_transpose_macs(2, 3, 1, [16, 16], [k, k])
    assert rec.macs_after <= 1.1 * rec.macs_before
    assert f"macs={rec.macs_after}" in " ".join(rec.notes)
