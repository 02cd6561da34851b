"""Checks every pass makes before matching (convrewrite.core.preconditions)."""
from __future__ import annotations

from onnx import TensorProto, helper

from convrewrite.core.graph import GraphView
from convrewrite.core.preconditions import shown_dims, unknown_spatial_size


def test_invented_dim_names_are_shown_as_question_marks():
    assert shown_dims([3, "H", "unk__12", "unk__x"]) == [3, "H", "?", "unk__x"]


def test_a_spatial_size_shape_inference_could_not_name_says_so():
    """x = Reshape(w, shape) with the shape a graph input: onnx names x's
    dims unk__N, which mean nothing to the user; the reason shows '?' and
    what to do."""
    nodes = [helper.make_node("Reshape", ["w", "shape"], ["x"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 2, 3, 4]),
                                       helper.make_tensor_value_info("shape", TensorProto.INT64, [4])],
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)])
    view = GraphView(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    skip = unknown_spatial_size(view, "x")
    assert skip is not None and "unk__" not in skip.reason, skip
    assert "spatial size ['?', '?'] is not static (?: a size shape inference could not work out" in skip.reason
    assert skip.reason.endswith("give the graph's inputs static shapes")
