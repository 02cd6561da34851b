"""The space-to-batch emitters (convrewrite/emit/space_to_batch.py) and the
dilated phase arithmetic against their defining formulas, as plain numpy."""
from __future__ import annotations

import itertools
import numpy as np
import pytest
from onnx import TensorProto, helper
from convrewrite.core.builder import Builder
from convrewrite.core.equivalence import run_onnxruntime
from convrewrite.core.graph import GraphView
from convrewrite.emit.space_to_batch import (axes_to_space, batch_to_space, batch_to_space_cost, interleave,
                                             space_to_axes, space_to_batch, space_to_batch_cost, strided_slice)


# --- the shared builders against their formulas --------------------------------

def _run_builder(build, x: np.ndarray, opset: int = 17):
    xi = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x.shape[1:]])
    seed = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["i"], name="p")], "g",
                                               [xi], []), opset_imports=[helper.make_opsetid("", opset)])
    b = Builder(GraphView(seed), seed.graph.node[0], "test")
    out = build(b, "x")
    g = helper.make_graph(b.nodes, "g", [xi], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                          b.initializers)
    return run_onnxruntime(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), {"x": x})[0]


@pytest.mark.parametrize("blocks,sizes", [((3,), (4,)), ((2, 2), (3, 2)), ((1, 3), (2, 2)),
                                          ((2, 1, 3), (2, 3, 2)), ((2, 3, 2), (2, 1, 3)), ((3, 2, 2), (1, 2, 2))])
def test_space_to_batch_formula_and_inverse(blocks, sizes):
    """s2b[flat(b)*N + n, c, j...] = x[n, c, j*P + b ...]; batch_to_space inverts it."""
    x = np.random.default_rng(1).standard_normal((2, 3, *[m * p for m, p in zip(sizes, blocks)]))
    x = x.astype(np.float32)
    got = _run_builder(lambda b, v: space_to_batch(b, v, 3, blocks, sizes), x)
    for flat, phase in enumerate(itertools.product(*[range(p) for p in blocks])):
        index = (slice(None), slice(None)) + tuple(slice(q, None, p) for q, p in zip(phase, blocks))
        np.testing.assert_array_equal(got[flat * 2:(flat + 1) * 2], x[index])
    back = _run_builder(lambda b, v: batch_to_space(b, space_to_batch(b, v, 3, blocks, sizes), 3, blocks, sizes), x)
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("block", [2, 3])
def test_space_to_batch_batch_major_needs_no_transpose(block):
    """2-D equal blocks, N = 1: SpaceToDepth's [1, P*P*C, m, m] already holds
    the phases outermost, so one Reshape gives [P*P, C, m, m] (the same
    values as the general path), and one Reshape before DepthToSpace goes
    back; two nodes each way instead of four, costed so."""
    sizes = (3, 2)
    x = np.random.default_rng(4).standard_normal((1, 3, sizes[0] * block, sizes[1] * block)).astype(np.float32)
    blocks = (block, block)
    general = _run_builder(lambda b, v: space_to_batch(b, v, 3, blocks, sizes), x)
    nodes = []

    def unit(b, v):
        out = space_to_batch(b, v, 3, blocks, sizes, batch_major=True)
        nodes.extend(n.op_type for n in b.nodes)
        return out

    np.testing.assert_array_equal(_run_builder(unit, x), general)
    assert nodes == ["SpaceToDepth", "Reshape"]
    back = _run_builder(lambda b, v: batch_to_space(b, space_to_batch(b, v, 3, blocks, sizes, True), 3, blocks,
                                                    sizes, True), x)
    np.testing.assert_array_equal(back, x)
    assert space_to_batch_cost(3, blocks, sizes, 4, batch_major=True).nodes == 2
    assert batch_to_space_cost(3, blocks, sizes, 4).nodes == 4


@pytest.mark.parametrize("batch_major", [False, True])
def test_space_to_batch_without_depth_ops_is_reshape_transpose_and_exact(batch_major):
    """depth_ops=False (between Q/DQ below opset 11, where onnxruntime has no
    8-bit DepthToSpace): 2-D equal blocks take the general Reshape/Transpose/
    Reshape each way (phase-major whatever batch_major asks: the pair is its
    own inverse), the formula holds, and the cost counts those nodes."""
    blocks, sizes = (2, 2), (3, 2)
    x = np.random.default_rng(6).standard_normal((2, 3, 6, 4)).astype(np.float32)
    nodes = []

    def there_and_back(b, v):
        t = space_to_batch(b, v, 3, blocks, sizes, batch_major, depth_ops=False)
        nodes.extend(n.op_type for n in b.nodes)
        return batch_to_space(b, t, 3, blocks, sizes, batch_major, depth_ops=False)

    np.testing.assert_array_equal(_run_builder(there_and_back, x, opset=10), x)
    assert nodes == ["Reshape", "Transpose", "Reshape"]
    got = _run_builder(lambda b, v: space_to_batch(b, v, 3, blocks, sizes, batch_major, depth_ops=False), x, 10)
    for flat, phase in enumerate(itertools.product(range(2), range(2))):
        np.testing.assert_array_equal(got[flat * 2:(flat + 1) * 2], x[:, :, phase[0]::2, phase[1]::2])
    assert space_to_batch_cost(3, blocks, sizes, 4, batch_major, depth_ops=False).nodes == 3
    assert batch_to_space_cost(3, blocks, sizes, 4, batch_major, depth_ops=False).nodes == 3


@pytest.mark.parametrize("blocks,sizes", [((3,), (4,)), ((2,), (5,)), ((2, 3), (2, 2))])
def test_space_to_axes_formula_and_inverse(blocks, sizes):
    """space_to_axes(x)[n, c, j, b] = x[n, c, j*P + b] (per blocked axis): one Reshape; axes_to_space inverts it."""
    x = np.random.default_rng(5).standard_normal((2, 3, *[m * p for m, p in zip(sizes, blocks)])).astype(np.float32)
    got = _run_builder(lambda b, v: space_to_axes(b, v, 3, blocks, sizes), x)
    np.testing.assert_array_equal(got, x.reshape(2, 3, *[d for m, p in zip(sizes, blocks) for d in (m, p)]))
    back = _run_builder(lambda b, v: axes_to_space(b, space_to_axes(b, v, 3, blocks, sizes), 3, blocks, sizes), x)
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("blocks,sizes", [((3,), (4,)), ((2, 2), (3, 2)), ((2, 3), (2, 2)), ((1, 3), (2, 2)),
                                          ((2, 1, 3), (2, 3, 2))])
def test_interleave_formula(blocks, sizes):
    """interleave(parts)[n, c, j*P + b ...] = parts[b][n, c, j ...], from slices of x."""
    x = np.random.default_rng(2).standard_normal((2, 3, *[m * p for m, p in zip(sizes, blocks)]))
    x = x.astype(np.float32)

    def build(b, v):
        parts = {}
        for phase in itertools.product(*[range(p) for p in blocks]):
            ends = [q + (m - 1) * p + 1 for q, m, p in zip(phase, sizes, blocks)]
            parts[phase] = strided_slice(b, v, list(range(2, 2 + len(blocks))), list(phase), ends, list(blocks),
                                         "phase")
        return interleave(b, parts, 3, blocks, sizes)

    for opset in (9, 17):
        np.testing.assert_array_equal(_run_builder(build, x, opset), x)
