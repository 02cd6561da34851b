"""What a subgraph costs (convrewrite.core.cost): the bytes GEMM-based nodes
stream, measured on built graphs.  (Every form's own figures are checked
against these measures in the pass tests: test_*_costs_are_exact.)"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite.core.cost import node_macs, streamed_bytes, subgraph_cost
from convrewrite.core.graph import GraphView


def _graph(node, x_shape, weight_shape, dtype=TensorProto.FLOAT, weight_is_input=False) -> GraphView:
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    inputs = [helper.make_tensor_value_info("x", dtype, x_shape)]
    inits = []
    if weight_is_input:
        inputs.append(helper.make_tensor_value_info("w", dtype, weight_shape))
    else:
        inits.append(numpy_helper.from_array(np.ones(weight_shape, np_dtype), "w"))
    g = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", dtype, None)], inits)
    return GraphView(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("cout", [3, 4, 12, 64])
def test_a_conv_streams_its_im2col_matrix_whatever_its_output_channels(cout):
    """Input channels x kernel taps x output positions x 4 bytes: the same
    for 3 output channels as for 64, so per MAC a narrow Conv streams more."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = _graph(node, [1, 8, 10, 10], [cout, 8, 3, 3])
    assert node_macs(node, graph) == cout * 100 * 8 * 9
    assert streamed_bytes([node], graph) == 8 * 9 * 100 * 4


def test_a_grouped_conv_streams_every_group_s_matrix():
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=4)
    graph = _graph(node, [2, 8, 6, 6], [8, 2, 3, 3])
    assert streamed_bytes([node], graph) == 2 * 8 * 9 * 16 * 4          # batch 2: both images
    assert streamed_bytes([node], graph, per_item=True) == 8 * 9 * 16 * 4


def test_a_conv_transpose_streams_its_column_buffer():
    """Output channels x kernel taps x input positions: what col2im scatters."""
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])
    graph = _graph(node, [1, 4, 5, 5], [4, 2, 3, 3])
    assert streamed_bytes([node], graph) == 2 * 9 * 25 * 4


def test_the_item_size_is_the_input_s():
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    graph = _graph(node, [1, 8, 10, 10], [4, 8, 3, 3], dtype=TensorProto.FLOAT16)
    assert streamed_bytes([node], graph) == 8 * 9 * 64 * 2


def test_a_matmul_streams_its_right_operand_unless_it_is_a_constant():
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    constant = _graph(node, [1, 3, 5, 7], [7, 6])
    assert node_macs(node, constant) == 3 * 5 * 6 * 7
    assert streamed_bytes([node], constant) == 0              # packed once, when the session starts
    run_time = _graph(node, [1, 3, 5, 7], [7, 6], weight_is_input=True)
    assert streamed_bytes([node], run_time) == 3 * 7 * 6 * 4  # each of the 3 products packs it


def test_data_movement_streams_nothing_and_unknown_shapes_give_none():
    pad = helper.make_node("Pad", ["x", "w"], ["y"])
    graph = _graph(pad, [1, 2, 3, 3], [8])
    assert streamed_bytes([pad], graph) == 0
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    symbolic = _graph(node, [1, 8, "H", "W"], [4, 8, 3, 3])
    assert streamed_bytes([node], symbolic) is None
    assert subgraph_cost([node], symbolic).streamed_bytes is None


def test_subgraph_cost_carries_the_figure():
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    graph = _graph(node, [1, 8, 10, 10], [4, 8, 3, 3])
    cost = subgraph_cost([node], graph)
    assert cost.streamed_bytes == 8 * 9 * 64 * 4 and cost.macs == 4 * 64 * 8 * 9


def test_a_grouped_conv_transpose_streams_every_group_s_column_buffer():
    """Output channels x kernel taps x input positions, whatever the groups:
    each group's GEMM spreads its MACs over its own input channels."""
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], group=2)
    graph = _graph(node, [1, 4, 5, 5], [4, 3, 3, 3])           # 4 input channels, 2 per group; 6 outputs
    assert node_macs(node, graph) == 4 * 25 * 3 * 9
    assert streamed_bytes([node], graph) == 6 * 9 * 25 * 4


def test_a_gemm_streams_its_right_operand_like_a_matmul():
    """Gemm is a GEMM too: a run-time B is packed on every run (K x N
    elements), a constant one once; transA turns A around first."""
    for weight_is_input, streamed in ((False, 0), (True, 7 * 6 * 4)):
        node = helper.make_node("Gemm", ["x", "w"], ["y"])
        assert streamed_bytes([node], _graph(node, [5, 7], [7, 6], weight_is_input=weight_is_input)) == streamed
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transA=1, transB=1)
    graph = _graph(node, [7, 5], [6, 7], weight_is_input=True)
    assert node_macs(node, graph) == 5 * 6 * 7
    assert streamed_bytes([node], graph) == 7 * 6 * 4


@pytest.mark.parametrize("a,b,streamed", [
    ([7], [3, 7, 6], 3 * 7 * 6),      # a vector times a batch of matrices: each of them once
    ([2, 5, 7], [7], 2 * 7),          # matrices times a vector: the vector once per product
    ([7], [7], 7),                    # a dot product
])
def test_a_matmul_of_vectors_streams_its_right_operand_per_product(a, b, streamed):
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    assert streamed_bytes([node], _graph(node, a, b, weight_is_input=True)) == streamed * 4


def test_a_malformed_matmul_of_a_scalar_leaves_the_figures_unknown_rather_than_raise():
    """MatMul takes no scalar; a damaged model may still hold one, and its
    cost is then unknown (None) like any unknown shape, not an IndexError
    that would cost the whole model its other figures (model_cost)."""
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = _graph(node, [], [7, 6], weight_is_input=True)
    assert streamed_bytes([node], graph) is None
    cost = subgraph_cost([node], graph)
    assert cost.macs is None and cost.streamed_bytes is None and cost.moved_bytes == 0


def test_a_constant_matrix_times_a_batch_streams_the_batch_per_item_too():
    """L [4, 3] @ X [2, 5, 3, 6] (the resize matmul form, a phase product):
    X streams once; per batch item its item.  L has no batch axis, so its
    4 rows stay the rows with `per_item` (shuffle_motion's Cost)."""
    node = helper.make_node("MatMul", ["w", "x"], ["y"])
    graph = _graph(node, [2, 5, 3, 6], [4, 3])
    assert streamed_bytes([node], graph) == 2 * 5 * 3 * 6 * 4
    assert streamed_bytes([node], graph, per_item=True) == 5 * 3 * 6 * 4
