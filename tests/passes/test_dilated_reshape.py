"""The dilated-conv pass's reshape form (1-D): the phases as a trailing axis
by one Reshape, one Conv with kernel (k, 1), the inverse Reshape.  Every
case checks the op counts and numeric equivalence (assert_rewrites), and the
Cost the chooser sees against the built replacement."""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import assume, strategies as st
from onnx import TensorProto

from builders import conv_model
from convrewrite import optimize
from convrewrite.geometry import conv_output_size, conv_pads
from helpers import assert_rewrites, op_counts
from passes.dilated_conv.forms import RESHAPE_MIN_CHANNELS
from test_dilated_conv import (NO_DILATION, assert_built_costs_exact, check_costs, dilated_convs, dilated_pass,
                               forms_of, max_rank, notes_of, profile, sweep)

CASES = {
    # name: (x shape, w shape, attrs, Pad nodes, Slice nodes)
    "aligned": ((1, 4, 12), (5, 4, 3), dict(dilations=[2], pads=[2, 2]), 0, 0),
    "tcn_block": ((1, 4, 16), (4, 4, 3), dict(dilations=[4], pads=[8, 8]), 0, 0),   # a TCN's pads, cropped later
    "causal": ((1, 4, 16), (4, 4, 3), dict(dilations=[4], pads=[8, 0]), 0, 0),
    # tap 0 reads only padding (x[i - 6], i < 5): the weight sliced to taps 1..2, the window begins at 3
    "dropped_tap": ((1, 3, 5), (2, 3, 3), dict(dilations=[3], pads=[6, 0]), 1, 1),
    "odd_length": ((1, 3, 11), (2, 3, 3), dict(dilations=[3], pads=[3, 3]), 1, 1),
    "asymmetric_pads": ((1, 3, 13), (2, 3, 2), dict(dilations=[4], pads=[3, 1]), 1, 1),
    "valid": ((1, 3, 20), (4, 3, 3), dict(dilations=[5], auto_pad="VALID"), 0, 0),
    "same_lower": ((1, 3, 10), (4, 3, 4), dict(dilations=[3], auto_pad="SAME_LOWER"), 1, 1),
    "kernel_7": ((1, 2, 40), (2, 2, 7), dict(dilations=[3], pads=[9, 9]), 1, 1),
    # the window subsampled by g = 2 (a strided Slice), then the crop
    "stride_divides_dilation": ((1, 2, 21), (3, 2, 3), dict(dilations=[4], strides=[2], pads=[4, 4]), 1, 2),
    "group2": ((1, 4, 12), (6, 2, 3), dict(dilations=[3], group=2, pads=[3, 3]), 0, 0),
    "depthwise": ((1, 4, 12), (4, 1, 3), dict(dilations=[2], group=4, pads=[2, 2]), 0, 0),
}


def reshape_pass(**kw):
    return dilated_pass("reshape", **kw)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("batch", [1, 3, "N"])
def test_every_attribute(case, batch):
    """Asked for, the reshape form rewrites each 1-D case: one Conv, two
    Reshapes, a Pad and a crop Slice exactly where the window is not x."""
    x_shape, w_shape, attrs, pads, slices = CASES[case]
    model = conv_model(x_shape, w_shape, batch=batch, **attrs)
    new, report = assert_rewrites(model, reshape_pass(), {"Conv": 1, "Reshape": 2, "Transpose": 0},
                                  expect_rewrites=1)
    assert forms_of(report) == ["reshape"] and "chosen: asked for" in notes_of(report)
    counts = op_counts(new)
    assert (counts.get("Pad", 0), counts.get("Slice", 0)) == (pads, slices), counts
    assert not dilated_convs(new) and max_rank(new) == 4


@pytest.mark.parametrize("case", sorted(CASES))
def test_cost_is_exact(case):
    """MACs, bytes moved, nodes and largest rank of the reshape form (and of
    every other form that applies) equal the built replacement's, float32
    and float16, opset 17 and 9 (Pad and Slice with attributes)."""
    x_shape, w_shape, attrs, _, _ = CASES[case]
    for opset, dtype in ((17, TensorProto.FLOAT), (17, TensorProto.FLOAT16), (11, TensorProto.FLOAT),
                         (10, TensorProto.FLOAT), (9, TensorProto.FLOAT)):
        model = conv_model(x_shape, w_shape, batch="N", opset=opset, dtype=dtype, **attrs)
        assert "reshape" in assert_built_costs_exact(model, reshape_pass())


def test_favoured_from_sixteen_channels_without_a_target(tmp_path):
    """Without a target the form goes first for a 1-D Conv of at least
    RESHAPE_MIN_CHANNELS input channels per group (measured the fastest in
    every such case); below that the rules stand; with a target its favour
    (an onnxruntime CPU measurement) does not hold and, opt-in, it comes
    after the other forms."""
    wide = conv_model((1, RESHAPE_MIN_CHANNELS, 64), (16, RESHAPE_MIN_CHANNELS, 3), dilations=[4], pads=[8, 8])
    new, report = assert_rewrites(wide, dilated_pass(), {"Conv": 1, "Reshape": 2, "Add": 0})
    assert forms_of(report) == ["reshape"]
    assert any(n.startswith(f"chosen: a 1-D Conv of {RESHAPE_MIN_CHANNELS} input channels per group")
               for n in notes_of(report))
    narrow = conv_model((1, 8, 64), (8, 8, 3), dilations=[4], pads=[8, 8])
    _, report = assert_rewrites(narrow, dilated_pass(), {"Reshape": 0})
    assert forms_of(report) == ["taps"]
    _, report = assert_rewrites(wide, dilated_pass(), {"Reshape": 0},
                                target=profile(tmp_path, "no-dilation", NO_DILATION))
    assert forms_of(report) != ["reshape"]


def test_2d_and_unaligned_are_passed_over():
    """A 2-D Conv (its Conv would be 4-D) and phases no Reshape reaches
    (stride and dilation coprime) take another form; the reason is reported."""
    model_2d = conv_model((1, 16, 9, 9), (4, 16, 3, 3), dilations=[2, 2], pads=[2, 2, 2, 2])
    _, report = assert_rewrites(model_2d, reshape_pass(), {"Conv": 1})
    assert forms_of(report) == ["batch"]
    assert any("reshape" in n and "for 1-D Convs" in n for n in notes_of(report)), notes_of(report)
    unaligned = conv_model((1, 2, 13), (3, 2, 3), dilations=[3], strides=[2], pads=[0, 1])
    _, report = assert_rewrites(unaligned, reshape_pass(), {"Reshape": 0})
    assert forms_of(report) != ["reshape"]
    assert any("reshape" in n and "no block split reaches" in n for n in notes_of(report)), notes_of(report)
    weight_input = conv_model((1, 16, 12), (4, 16, 3), dilations=[2], pads=[2, 2], weight_input=True)
    _, report = assert_rewrites(weight_input, reshape_pass(), {"Conv": 1})
    assert forms_of(report) == ["batch"]
    assert any("reshape" in n and "needs a constant weight" in n for n in notes_of(report)), notes_of(report)


def test_the_rules_alone_and_the_ethos_n78(tmp_path):
    """dilated_estimates=False: no reshape favour (the rules, as with a
    target).  arm-ethos-n78 runs 2-D Convs only: a 1-D dilated Conv with SAME
    pads fits there in the reshape form alone (before it, no form fit)."""
    wide = conv_model((1, 16, 64), (16, 16, 3), dilations=[3], pads=[3, 3])
    _, report = assert_rewrites(wide, dilated_pass(estimates=False), {"Reshape": 0})
    assert forms_of(report) == ["taps"]
    _, report = assert_rewrites(wide, dilated_pass(), {"Reshape": 2}, target="arm-ethos-n78")
    assert forms_of(report) == ["reshape"]


def test_no_chain_where_the_reshape_form_is_favoured():
    """Three residual 1-D Convs of 32 channels at one rate: each takes the
    reshape form (faster than a batch-form chain, docs/dilated_conv.md);
    with 8 channels, or the rules alone, they stay one chain."""
    for channels, estimates, chained in ((32, True, False), (8, True, True), (32, False, True)):
        model = residual_1d(channels)
        _, report = assert_rewrites(model, dilated_pass(estimates=estimates), {})
        forms = forms_of(report)
        assert (forms == ["batch"]) == chained, (channels, estimates, forms)
        if not chained:
            assert forms == ["reshape"] * 3


def residual_1d(channels: int):
    """x -> 3 x [dilated Conv (rate 2, SAME) -> Relu -> Add(input)] on [1, C, 256]."""
    import numpy as np
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(3)
    nodes, inits, v = [], [], "x"
    for k in range(3):
        w = numpy_helper.from_array((rng.standard_normal((channels, channels, 3)) * 0.2).astype(np.float32), f"w{k}")
        inits.append(w)
        nodes += [helper.make_node("Conv", [v, f"w{k}"], [f"c{k}"], name=f"c{k}", dilations=[2], pads=[2, 2],
                                   kernel_shape=[3]),
                  helper.make_node("Relu", [f"c{k}"], [f"r{k}"], name=f"r{k}"),
                  helper.make_node("Add", [f"r{k}", v], [f"a{k}"], name=f"a{k}")]
        v = f"a{k}"
    shape = [1, channels, 256]
    g = helper.make_graph(nodes, "residual_1d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info(v, TensorProto.FLOAT, shape)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_tcn_sample_takes_the_reshape_form():
    """models/tcn_1d.onnx: six dilated 1-D Convs of 16 channels, each one
    Conv between two Reshapes; equivalent to the original."""
    import onnx
    from pathlib import Path
    model = onnx.load(Path(__file__).parents[2] / "models" / "tcn_1d.onnx")
    new, report = assert_rewrites(model, dilated_pass(), {"Reshape": 12, "Transpose": 0}, expect_rewrites=6)
    assert Counter(forms_of(report)) == Counter(reshape=6)


@st.composite
def one_d_cases(draw):
    n = draw(st.integers(2, 40))
    k = draw(st.integers(2, 5))
    d = draw(st.integers(2, 6))
    s = draw(st.sampled_from([1, 1, 1, d, 2]))
    auto_pad = draw(st.sampled_from(["NOTSET"] * 4 + ["SAME_UPPER", "SAME_LOWER", "VALID"]))
    attrs = dict(dilations=[d], strides=[s], kernel_shape=[k])
    if auto_pad == "NOTSET":
        attrs["pads"] = [draw(st.integers(0, 2 * d)) for _ in range(2)]
    else:
        attrs["auto_pad"] = auto_pad
    (lo, hi), = conv_pads(auto_pad, [n], [k], [s], [d], attrs.get("pads"))
    assume(conv_output_size(n, k, s, d, lo, hi) >= 1)
    group, channels, out_channels = draw(st.sampled_from([(1, 2, 3), (2, 4, 2), (3, 3, 3), (1, 16, 4)]))
    batch = draw(st.sampled_from([1, 2, "N"]))
    dtype = draw(st.sampled_from([TensorProto.FLOAT] * 3 + [TensorProto.FLOAT16]))
    return conv_model((1, channels, n), (out_channels, channels // group, k), dtype=dtype, bias=draw(st.booleans()),
                      batch=batch, group=group, seed=draw(st.integers(0, 99)), **attrs), batch


@pytest.mark.slow
def test_property_sweep():
    """Random 1-D dilated Convs: rewritten (in the reshape form wherever it
    applies; another form where the Conv simplifies or the phases are
    unaligned), equivalent, costed exactly; a second run rewrites nothing."""
    p = reshape_pass()
    used = Counter()

    def check(case):
        model, batch = case
        new, report = assert_rewrites(model, p, {"ConvTranspose": 0})
        assert not dilated_convs(new)
        check_costs(model, report, p, new, batch)
        _, again = optimize(new, passes=[p], verify=False)
        assert again.rewritten == 0
        used[forms_of(report)[0]] += 1
        return True

    seen = sweep(one_d_cases(), check, 60)
    assert used["reshape"] >= 0.5 * seen["cases"], used
