"""The planning arithmetic is bounded by tensor sizes, never by attribute
magnitudes: crafted pads, strides, dilations, scales and sizes answer at
once (a result, or a reason to leave the node alone), never hang."""
import re
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from convrewrite.core.graph import GraphView
from convrewrite.geometry import MAX_AXIS, conv_output_size, geometry_problem
from passes.convtranspose import geometry as ct
from passes.dilated_conv.phases import AxisPhases, live_taps
from passes.resize.interpolation import (AxisResize, Interpolation, Unsupported, interpolation_matrix, phase_taps,
                                         read_resize, Unreadable)

BIG = (1 << 31) - 1


class quickly:
    """Asserts the block takes less than `seconds`: a hang detector, not a
    timing.  The work these blocks would do if it grew with the attribute
    values (2**31 outputs, 10**9 phases) takes hours in Python, so a limit of
    seconds tells bounded from unbounded with a wide margin on a loaded CI
    machine, where 0.1 s could fail a correct answer."""

    def __init__(self, seconds: float = 5.0):
        self.seconds = seconds

    def __enter__(self):
        self.t = time.perf_counter()

    def __exit__(self, *exc):
        took = time.perf_counter() - self.t
        assert took < self.seconds, f"took {took:.2f} s"


# --- dilated Conv: live taps ---------------------------------------------------

def live_taps_reference(a: AxisPhases):
    """The definition: tap t is live if some output i reads x inside [0, n)."""
    live = [t for t in range(a.kernel)
            if any(0 <= i * a.stride + t * a.dilation - a.offset < a.size for i in range(a.out))]
    return (live[0], live[-1]) if live else None


def axis(n, k, d, s, begin, end) -> AxisPhases:
    return AxisPhases(n, k, d, s, begin, conv_output_size(n, k, s, d, begin, end))


def test_live_taps_with_pads_of_two_to_the_31_answers_at_once():
    a = axis(8, 3, 2, 1, BIG, BIG)
    assert a.out > 4 * 10 ** 9
    with quickly():
        assert live_taps(a) == (0, 2)
    with quickly():  # every tap reads only padding for the first 2**31 outputs; the middle ones read x
        assert live_taps(axis(8, 5, BIG // 8, 3, BIG, 0)) is not None


@settings(max_examples=400, deadline=None)
@given(n=st.integers(0, 12), k=st.integers(1, 6), d=st.integers(1, 5), s=st.integers(1, 5),
       offset=st.integers(-15, 20), out=st.integers(-2, 15))
def test_live_taps_match_the_definition(n, k, d, s, offset, out):
    a = AxisPhases(n, k, d, s, offset, out)
    assert live_taps(a) == live_taps_reference(a)


# --- ConvTranspose: output geometry and phase plans ----------------------------

def test_output_geometry_refuses_a_million_phases_at_once():
    with quickly():
        with pytest.raises(ct.TooLarge, match=r"strides \[7, 1048576\] make 7340032 output phases"):
            ct.output_geometry([4, 4], [3, 3], [7, 1048576], [1, 1])
    assert issubclass(ct.TooLarge, ct.SpecConflict)  # the pass skips on it, with the reason


@pytest.mark.parametrize("kwargs, message", [
    ({"dilations": [BIG, BIG]}, "more than 2147483648 elements"),
    ({"pads": [-BIG, -BIG, 0, 0]}, "more than 2147483648 elements"),
    ({"output_shape": [1 << 10, 1 << 10], "strides": [1 << 8, 1 << 8]}, "output phases"),
    ({"strides": [1, 1 << 30]}, "more than 2147483648 elements"),
    ({"strides": [1, 1 << 20], "pads": [0, 1 << 20, 0, 1 << 20]}, r"make 1048576 output phases"),
])
def test_output_geometry_refuses_absurd_outputs(kwargs, message):
    args = {"strides": [1, 1], "dilations": [1, 1], **kwargs}
    with quickly():
        with pytest.raises(ct.TooLarge, match=message):
            ct.output_geometry([4, 4], [3, 3], args.pop("strides"), args.pop("dilations"), **args)


def test_one_input_axis_with_a_huge_stride_is_refused():
    # with n == 1 the plan uses max(stride, extent) phases; a stride of 2**30 is no plan
    with pytest.raises(ct.TooLarge, match="output phases"):
        ct.output_geometry([1], [3], [1 << 30], [1])


@pytest.mark.parametrize("kwargs", [{"pads": [1, 1, 1, 1, 1]}, {"pads": [1]}, {"output_padding": [1]}])
def test_output_geometry_refuses_wrong_lengths(kwargs):
    with pytest.raises(ct.SpecConflict, match="one entry per spatial axis"):
        ct.output_geometry([4, 4], [3, 3], [2, 2], [1, 1], **kwargs)


def phase_offsets_reference(g: ct.AxisGeometry, shift: int):
    phases = []
    for r in range(g.s):
        base = r - shift + g.head
        phases.append([((base - j * g.d) // g.s, j) for j in range(g.k) if (base - j * g.d) % g.s == 0])
    return phases


def shared_plan_reference(g: ct.AxisGeometry) -> ct.AxisPlan:
    """Every shift tried, the cheapest kept (the first on a tie)."""
    g = ct._one_input(g)
    plans = [p for p in (ct._shared_at(g, shift) for shift in range(g.s)) if p is not None]
    if not plans:
        return ct.AxisPlan("shared", g.s, 0, -(-g.out // g.s), g.out, (None,) * g.s)
    return min(plans, key=ct.AxisPlan.macs_factor)


geometries = st.builds(
    lambda n, k, s, d, pb, pe, op: ct.output_geometry([n], [k], [s], [d], "NOTSET", [pb, pe], [op % s])[0],
    st.integers(1, 9), st.integers(1, 6), st.integers(1, 7), st.integers(1, 4),
    st.integers(0, 8), st.integers(0, 8), st.integers(0, 6))


@settings(max_examples=300, deadline=None)
@given(g=geometries, shift=st.integers(0, 6))
def test_phase_offsets_match_the_definition(g, shift):
    assert ct.phase_offsets(g, shift % g.s) == phase_offsets_reference(g, shift % g.s)


@settings(max_examples=300, deadline=None)
@given(g=geometries)
def test_shared_plan_tries_only_the_shifts_that_matter(g):
    if g.out > 0:
        assert ct.shared_plan(g) == shared_plan_reference(g)


def test_plans_at_the_phase_budget_are_quick():
    strides = [64, 64]  # 4096 phases, the most planned
    d = BIG // 8  # axis 0: taps 2**28 apart, the output cropped to 300 samples among them
    full = 4 * 64 + 6 * d + 1
    with quickly():
        geometry = ct.output_geometry([5, 3], [7, 3], strides, [d, 3], "NOTSET", [3 * d, 0, full - 3 * d - 300, 0])
        plans = [ct.split_plan(g) for g in geometry] + [ct.shared_plan(g) for g in geometry]
        ct.border_tiles(geometry, 1 << 40)
    assert [g.out for g in geometry] == [300, 2 * 64 + 7] and [p.stride for p in plans] == strides * 2


# --- attributes the spec forbids ---------------------------------------------

@pytest.mark.parametrize("attrs, expect", [
    ({"pads": [1, 1, 1, 1, 1]}, "attribute pads=[1, 1, 1, 1, 1] does not have 4 entries"),
    ({"pads": [BIG, BIG, 0, 0]}, None),
    ({"pads": [1 << 40, 0, 0, 0]}, f"goes beyond {MAX_AXIS} elements"),
    ({"strides": [1, 1 << 40]}, f"goes beyond {MAX_AXIS} elements"),
    ({"dilations": [1, 1 << 30]}, "the dilated kernel spans [3, 2147483649] elements"),
    ({"output_padding": [0, 1 << 33]}, f"goes beyond {MAX_AXIS} elements"),
    ({"output_padding": [0, -(1 << 33)]}, "attribute output_padding=[0, -8589934592] has a negative entry"),
    ({"pads": [-1, 0, 0, 0]}, "attribute pads=[-1, 0, 0, 0] has a negative entry; the operator's pads are >= 0"),
])
def test_geometry_problem_bounds_lengths_and_magnitudes(attrs, expect):
    problem = geometry_problem(attrs, 2, (4, 2, 3, 3))
    assert problem == expect if expect is None else expect in problem


# --- Resize ------------------------------------------------------------------

def test_a_billion_phases_or_rows_are_refused_at_once():
    with quickly():
        with pytest.raises(Unsupported, match="more phases than"):
            phase_taps(Interpolation("linear", "half_pixel"), 10 ** 9)
    from fractions import Fraction
    with quickly():
        with pytest.raises(Unsupported, match="interpolation matrix of axis 2 would be"):
            interpolation_matrix(Interpolation("linear", "half_pixel"), AxisResize(2, 8, 8 * 10 ** 9, Fraction(10 ** 9)))


def resize(scales=None, sizes=None, roi=None, mode="linear", ctm="half_pixel"):
    inits = [numpy_helper.from_array(np.array(roi if roi is not None else [], np.float32), "roi")]
    names = ["x", "roi"]
    if scales is not None:
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        names.append("scales")
    else:
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        names += ["", "sizes"]
    node = helper.make_node("Resize", names, ["y"], mode=mode, coordinate_transformation_mode=ctm)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("kwargs, reason", [
    ({"scales": [1, 1, 1e9, 1]}, r"the output would be \[.*8e\+09.*\], more than 2147483648 elements"),
    ({"scales": [1, 1, 3e38, 3e38]}, "more than 2147483648 elements"),
    ({"scales": [1, 1, float("inf"), 2]}, "is not a positive, finite number"),
    ({"scales": [1, 1, float("nan"), 2]}, "is not a positive, finite number"),
    ({"sizes": [1, 2, 1 << 40, 8]}, "more than 2147483648 elements"),
    ({"sizes": [1, 2, 1 << 16, 1 << 16]}, "more than 2147483648 elements"),
    ({"scales": [1, 1, 2, 2], "roi": [0, 0, 0, 0, 1, 1, float("inf"), 1], "ctm": "tf_crop_and_resize"},
     "is not finite"),
])
def test_read_resize_gives_a_reason_for_absurd_scales_and_sizes(kwargs, reason):
    model = resize(**kwargs)
    with quickly():
        graph = GraphView(model)
        spec = read_resize(model.graph.node[0], graph)
    assert isinstance(spec, Unreadable), spec
    assert re.search(reason, spec.reason), spec
    assert spec.code == ("too-large" if "elements" in reason else "invalid-node")
