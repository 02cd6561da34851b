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
from convrewrite.emit.space_to_batch import batch_to_space, interleave, space_to_batch, strided_slice


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
