"""convrewrite.core.followup: a replacement as it looks after a later pass."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from convrewrite.core.builder import Builder
from convrewrite.core.equivalence import run_model
from convrewrite.core.followup import after_pass, standalone_view
from convrewrite.core.graph import GraphView
from toy_passes import ReluToMax

F = TensorProto.FLOAT


def source_graph() -> GraphView:
    node = helper.make_node("Sigmoid", ["x"], ["y"], name="s")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F, ["N", 3])],
                          [helper.make_tensor_value_info("y", F, ["N", 3])])
    return GraphView(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def replacement(graph: GraphView):
    """y = Relu(x) + Relu(-x) (= |x|), one Relu named keep... (the toy pass skips it)."""
    b = Builder(graph, graph.graph.node[0], "toy")
    a = b.op("Relu", ["x"], "relu")
    neg = b.op("Neg", ["x"], "neg")
    kept = b.op("Relu", [neg], "relu_neg")
    b.nodes[-1].name = "keep_relu"
    y = b.op("Add", [a, kept], "add")
    return b.replacement({"y": y}, notes=["toy"])


def as_model(r, graph: GraphView):
    view = standalone_view(r, graph)
    model = view.model
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(r.outputs["y"], F, None))
    return model


def test_after_pass_substitutes_what_the_later_pass_rewrites():
    graph = source_graph()
    r = replacement(graph)
    after = after_pass(r, graph, ReluToMax())
    ops = [n.op_type for n in after.nodes]
    assert ops.count("Relu") == 1 and ops.count("Max") == 1 and "keep_relu" in [n.name for n in after.nodes]
    assert after.outputs == r.outputs and after.notes[0] == "toy"
    assert any("then rewritten by relu-to-max" in n for n in after.notes)
    # the composed nodes compute what the replacement computes
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    want, _ = run_model(as_model(r, graph), {"x": x})
    got, _ = run_model(as_model(after, graph), {"x": x})
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=0)
    np.testing.assert_allclose(got[0], np.abs(x), rtol=0, atol=0)


def test_standalone_view_types_the_inputs_from_the_graph():
    graph = source_graph()
    view = standalone_view(replacement(graph), graph)
    assert [i.name for i in view.graph.input] == ["x"]
    assert view.shape("x") == ("N", 3) and view.shape(view.graph.node[-1].output[0]) == ("N", 3)
