"""GraphView.names_in_use: every name a new node or value must not take (the
graph's values and node names, and the values its subgraphs use)."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from convrewrite.core.graph import GraphView


def test_names_in_use_holds_every_value_and_node_name():
    then = helper.make_graph([helper.make_node("Identity", ["outer"], ["then_out"], name="inner")], "then", [],
                             [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [1])])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Add", ["r", "W"], ["outer"]),                       # no node name
        helper.make_node("Dropout", ["outer"], ["d", ""], name="drop"),       # an optional output left out
        helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then, else_branch=then),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
                                           helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              [numpy_helper.from_array(np.ones(1, np.float32), "W"),
                               numpy_helper.from_array(np.ones(1, np.float32), "unused")])
    view = GraphView(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    expected = {"x", "cond", "y", "W", "unused", "r", "outer", "d", "relu", "drop", "if", "then_out"}
    assert expected <= view.names_in_use
    assert view.names_in_use - expected <= {""}   # an unnamed node's name: never one a Builder makes
