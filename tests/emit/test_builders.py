"""Shared builders against their defining formulas, written as plain numpy."""
import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from convrewrite.core.builder import Builder
from convrewrite.core.equivalence import run_onnxruntime
from convrewrite.core.graph import GraphView
from convrewrite.geometry import conv_output_size, conv_pads, geometry_problem
from convrewrite.emit.pixel_shuffle import (GATHERED, pixel_shuffle, pixel_shuffle_cost, pixel_unshuffle,
                                           shuffle_rank)


def _run_builder(build, x: np.ndarray):
    """Build a graph around `build(b, 'x') -> out`, run it on x; returns the
    result, the op types built, and the highest rank of any tensor they make."""
    xi = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x.shape[1:]])
    placeholder = helper.make_node("Identity", ["x"], ["x_id"], name="p")
    m = helper.make_model(helper.make_graph([placeholder], "g", [xi], []),
                          opset_imports=[helper.make_opsetid("", 17)])
    b = Builder(GraphView(m), m.graph.node[0], "test")
    out = build(b, "x")
    g = helper.make_graph(b.nodes, "g", [xi], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                          b.initializers)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    ranks = [len(v.type.tensor_type.shape.dim) for v in [*inferred.graph.value_info, *inferred.graph.output]]
    return run_onnxruntime(m, {"x": x})[0], [n.op_type for n in b.nodes], max(ranks)


def _shuffle_formula(x, channels, blocks, layout):
    """y[n, c, i*b + p] = x[n, channel(c, p), i] per the module docstring."""
    n, sizes, B = x.shape[0], x.shape[2:], int(np.prod(blocks))
    y = np.zeros((n, channels, *[s * k for s, k in zip(sizes, blocks)]), x.dtype)
    for c in range(channels):
        for flat, p in enumerate(itertools.product(*[range(k) for k in blocks])):
            ch = c * B + flat if layout == "CRD" else flat * channels + c
            index = (slice(None), c) + tuple(slice(q, None, k) for q, k in zip(p, blocks))
            y[index] = x[:, ch]
    return y


CASES = [((2,), (5,)), ((3,), (4,)), ((2, 2), (3, 4)), ((3, 2), (2, 3)), ((1, 4), (3, 3)),
         ((2, 3, 2), (2, 2, 3)), ((2, 2, 2), (3, 1, 2)), ((1, 3, 2), (2, 3, 2)), ((3, 1, 1), (2, 2, 2))]



@pytest.mark.parametrize("layout", ["DCR", "CRD"])
@pytest.mark.parametrize("blocks,sizes", CASES)
def test_pixel_shuffle_matches_its_formula(blocks, sizes, layout):
    channels = 2
    x = np.random.default_rng(0).standard_normal((2, channels * int(np.prod(blocks)), *sizes)).astype(np.float32)
    got, ops, rank = _run_builder(lambda b, v: pixel_shuffle(b, v, channels, blocks, sizes, layout), x)
    np.testing.assert_array_equal(got, _shuffle_formula(x, channels, blocks, layout))
    uses_d2s = len(blocks) == 2 and blocks[0] == blocks[1]
    steps = 1 if uses_d2s or len(blocks) <= 2 else sum(k > 1 for k in blocks)  # one axis at a time above rank 6
    assert ops == (["DepthToSpace"] if uses_d2s else ["Reshape", "Transpose", "Reshape"] * steps)
    assert rank == shuffle_rank(blocks, layout, 17) <= 6


@pytest.mark.parametrize("layout", ["DCR", "CRD"])
@pytest.mark.parametrize("blocks,sizes", CASES + [((3, 3), (2, 5)), ((2, 2), (1, 1))])
def test_per_axis_spells_only_a_would_be_depth_to_space_and_matches_the_formula(blocks, sizes, layout):
    """`per_axis`: where the shuffle would be a DepthToSpace, one Reshape/Transpose/Reshape
    per axis (rank 5 DCR, 6 CRD), bit-identical to the formula, costed by the same
    arguments; any other shuffle is built as without it."""
    channels = 2
    x = np.random.default_rng(3).standard_normal((2, channels * int(np.prod(blocks)), *sizes)).astype(np.float32)
    got, ops, rank = _run_builder(lambda b, v: pixel_shuffle(b, v, channels, blocks, sizes, layout,
                                                             per_axis=True), x)
    np.testing.assert_array_equal(got, _shuffle_formula(x, channels, blocks, layout))
    _, plain_ops, plain_rank = _run_builder(lambda b, v: pixel_shuffle(b, v, channels, blocks, sizes, layout), x)
    assert rank == shuffle_rank(blocks, layout, 17, per_axis=True, sizes=sizes)
    cost = pixel_shuffle_cost(channels, blocks, sizes, 4, layout, 17, per_axis=True)
    if plain_ops == ["DepthToSpace"]:
        assert ops == ["Reshape", "Transpose", "Reshape"] * 2 and rank == (5 if layout == "DCR" else 6)
        assert (cost.nodes, cost.bytes) == (6, 6 * 2 * x[:1].nbytes)   # each node reads and writes it all
    else:
        assert (ops, rank) == (plain_ops, plain_rank)
        assert cost == pixel_shuffle_cost(channels, blocks, sizes, 4, layout, 17)


def test_per_axis_keeps_the_depth_to_space_where_a_size_is_symbolic():
    """The per-axis Reshapes name products of the spatial sizes: not where one is symbolic."""
    x = np.random.default_rng(4).standard_normal((1, 8, 3, 3)).astype(np.float32)
    _, ops, rank = _run_builder(lambda b, v: pixel_shuffle(b, v, 2, [2, 2], ["H", 3], "DCR", per_axis=True), x)
    assert ops == ["DepthToSpace"] and rank == 4 == shuffle_rank([2, 2], "DCR", 17, per_axis=True, sizes=["H", 3])


@pytest.mark.parametrize("blocks,sizes", CASES)
def test_crd_channels_gathered_into_a_dcr_shuffle_are_the_crd_shuffle(blocks, sizes):
    """GATHERED: one Gather puts CRD channels (c*B + p) in DCR order (p*C + c),
    then the DCR shuffle -- the CRD formula, costed exactly (batch 1)."""
    channels = 3
    x = np.random.default_rng(2).standard_normal((1, channels * int(np.prod(blocks)), *sizes)).astype(np.float32)
    got, ops, rank = _run_builder(lambda b, v: pixel_shuffle(b, v, channels, blocks, sizes, GATHERED), x)
    np.testing.assert_array_equal(got, _shuffle_formula(x, channels, blocks, "CRD"))
    _, dcr_ops, _ = _run_builder(lambda b, v: pixel_shuffle(b, v, channels, blocks, sizes, "DCR"), x)
    assert ops == ["Gather"] + dcr_ops and rank == shuffle_rank(blocks, GATHERED, 17) == shuffle_rank(blocks, "DCR", 17)
    cost = pixel_shuffle_cost(channels, blocks, sizes, 4, GATHERED, 17)
    dcr = pixel_shuffle_cost(channels, blocks, sizes, 4, "DCR", 17)
    assert (cost.nodes, cost.bytes) == (dcr.nodes + 1, dcr.bytes + 2 * x.nbytes)


@pytest.mark.parametrize("layout", ["DCR", "CRD"])
@pytest.mark.parametrize("blocks,sizes", CASES)
def test_pixel_unshuffle_inverts_pixel_shuffle(blocks, sizes, layout):
    channels = 3
    big = [s * k for s, k in zip(sizes, blocks)]
    y = np.random.default_rng(1).standard_normal((2, channels, *big)).astype(np.float32)
    got, _, rank = _run_builder(lambda b, v: pixel_unshuffle(b, v, channels, blocks, sizes, layout), y)
    np.testing.assert_array_equal(_shuffle_formula(got, channels, blocks, layout), y)
    assert rank <= 6


def test_conv_pads_follow_the_spec():
    # SAME_UPPER puts the odd unit at the end, SAME_LOWER at the beginning.
    assert conv_pads("SAME_UPPER", [7], [4], [1], [1], None) == [(1, 2)]
    assert conv_pads("SAME_LOWER", [7], [4], [1], [1], None) == [(2, 1)]
    assert conv_pads("SAME_UPPER", [8], [3], [2], [2], None) == [(1, 2)]  # total (4-1)*2+5-8 = 3
    assert conv_pads("VALID", [8], [3], [2], [2], [1, 1]) == [(0, 0)]
    assert conv_pads("NOTSET", [8, 8], [3, 3], [1, 1], [1, 1], [1, 2, 3, 4]) == [(1, 3), (2, 4)]
    for n, k, s, d in itertools.product(range(1, 12), range(1, 5), range(1, 4), range(1, 4)):
        (b, e), = conv_pads("SAME_UPPER", [n], [k], [s], [d], None)
        assert conv_output_size(n, k, s, d, b, e) == -(-n // s)


@pytest.mark.parametrize("attrs, weight, expect", [
    ({"strides": [2, 2], "dilations": [1, 3]}, (4, 2, 3, 3), None),
    ({"kernel_shape": [3, 3]}, (4, 2, 3, 3), None),
    ({"strides": [2]}, (4, 2, 3, 3), "attribute strides=[2] does not have 2 entries"),
    ({"dilations": [1, 0]}, (4, 2, 3, 3), "strides and dilations must be positive"),
    ({"kernel_shape": [3, 1]}, (4, 2, 3, 3), "kernel_shape [3, 1] does not match the weight's shape [4, 2, 3, 3]"),
    ({}, (4, 2, 3), "kernel_shape None does not match the weight's shape [4, 2, 3]"),
])
def test_geometry_problem_names_the_first_inconsistent_attribute(attrs, weight, expect):
    assert geometry_problem(attrs, 2, weight) == expect
