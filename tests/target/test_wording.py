"""A Violation's sentence holds the names it quotes as fields
(convrewrite/target/wording.py): the message is rendered from them, and a
rename (lowering._reader_violations: a reader judged in a replacement's
model, said of the graph) substitutes fields, whatever words a rule quotes a
name with and whatever else in the sentence spells the same name.  Before,
the rename searched the rendered text for "input 'x'" and "'x' (", and
missed any other quoting."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite.core.graph import GraphView
from convrewrite.target import Violation, load_profile
from convrewrite.target import wording
from convrewrite.target.check import check_node

F = TensorProto.FLOAT


def _profile(tmp_path, rules: dict, **top):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"operators": rules, **top}))
    return load_profile(path)


def _reshape_into_concat():
    """x -> Reshape, named as the value it writes ("n", as the Builder names
    them) -> Concat 'cat' (n, y) along channels."""
    shape = numpy_helper.from_array(np.array([1, 4, 6, 6], np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["n"], name="n"),
             helper.make_node("Concat", ["n", "y"], ["z"], name="cat", axis=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, 144]),
                                       helper.make_tensor_value_info("y", F, [1, 2, 6, 6])],
                          [helper.make_tensor_value_info("z", F, [1, 6, 6, 6])], [shape])
    return GraphView(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def test_a_value_named_like_a_node_is_renamed_where_it_is_the_value(tmp_path):
    """no_reshaped_inputs quotes the input and the node that reshapes it:
    here both are 'n'; renaming the value 'n' leaves the node 'n'."""
    graph = _reshape_into_concat()
    profile = _profile(tmp_path, {"Concat": {"no_reshaped_inputs": True}})
    (v,) = check_node(graph.graph.node[1], graph, profile)
    assert v.message.startswith("Concat 'cat': input 'n' passes through a RESHAPE in onnx2tf's TFLite (at 'n'), ")
    assert v.values == ("n",)
    r = v.renamed({"n": "r"}, {"cat": "Concat_7"})
    assert r.message == v.message.replace("input 'n'", "input 'r'").replace("Concat 'cat'", "Concat 'Concat_7'")
    assert "(at 'n')" in r.message and r.values == ("r",) and r.node == "Concat_7"
    assert (r.op, r.rule) == (v.op, v.rule)


def _batch_two_conv():
    """x0 [1,4,6,6] -> Concat 'twice' along the batch axis -> x [2,4,6,6] -> 1x1 Conv 'conv' -> y."""
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Concat", ["x0", "x0"], ["x"], name="twice", axis=0),
             helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[1, 1])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x0", F, [1, 4, 6, 6])],
                          [helper.make_tensor_value_info("y", F, [2, 4, 6, 6])], [w])
    return GraphView(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("rules,top,words,name", [
    # quotings a search of the text for "input 'x'" or "'x' (" does not find
    ({}, {"max_rank": 3}, "Conv 'conv': produces rank-4 tensor 'y' [2,4,6,6]", "y"),
    ({}, {"batch_must_be_one": True}, "Concat 'twice': produces batch 2 (tensor 'x' [2,4,6,6])", "x"),
    ({"Conv": {"max_rank": 3}}, {}, "Conv 'conv': input 'x' has rank 4", "x"),
    ({"Conv": {"max_non_unit_dims": 3}}, {}, "Conv 'conv': input 'x' [2,4,6,6] has 4 dimensions > 1", "x"),
])
def test_every_quoting_of_a_value_is_a_field(tmp_path, rules, top, words, name):
    graph = _batch_two_conv()
    profile = _profile(tmp_path, rules, **top)
    found = [v for n in graph.graph.node for v in check_node(n, graph, profile) if v.message.startswith(words)]
    assert len(found) == 1, [v.message for n in graph.graph.node for v in check_node(n, graph, profile)]
    (v,) = found
    assert name in v.values
    r = v.renamed({name: "it"})
    assert r.message == v.message.replace(f"'{name}'", "'it'") and f"'{name}'" not in r.message


def test_the_message_is_rendered_from_its_parts():
    s = wording.parts("Concat ", wording.node("cat"), ": input ", (wording.value("it's"), " is"), "", " odd")
    assert s == ("Concat ", wording.Quoted("cat", wording.NODE), ": input ", wording.Quoted("it's"), " is odd")
    v = Violation("cat", "Concat", "operators.Concat.x", s)
    assert v.message == "Concat 'cat': input 'it's' is odd" and v.values == ("it's",)
    # said the same of the same node under the same rule: equal, however it is held
    assert v == Violation("cat", "Concat", "operators.Concat.x", v.message)
    assert hash(v) == hash(Violation("cat", "Concat", "operators.Concat.x", v.message))
    assert v.extended("; more").message == v.message + "; more"
    assert v.extended("; more").renamed({"it's": "x"}).message == "Concat 'cat': input 'x' is odd; more"
    with pytest.raises(TypeError):
        wording.parts("a", 3)
