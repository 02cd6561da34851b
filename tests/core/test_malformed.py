"""A malformed replacement is refused before the splice, with or without
verification: without it the driver runs only the structural part of the
check (local_check.check_well_formed), which must catch what building the
check models catches."""
import re

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite import optimize
from convrewrite.core.report import REWRITTEN, ROLLED_BACK
from convrewrite.core import driver
from toy_passes import AddToSubFullyPriced, ReluMissingOutput, ReluStrayRead


def relu_chain():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"),
             helper.make_node("Neg", ["a"], ["b"], name="neg"),
             helper.make_node("Relu", ["b"], ["y"], name="r2")]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])


def unknown_type():
    """Add(custom op's output, w): the custom op's output has no known type."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    w = numpy_helper.from_array(np.ones((2, 3), np.float32), "w")
    nodes = [helper.make_node("Foo", ["x"], ["a"], name="foo", domain="custom"),
             helper.make_node("Add", ["a", "w"], ["y"], name="add")]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]),
                             opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)])


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("model, pass_, statuses, reason", [
    (relu_chain, ReluMissingOutput(), [ROLLED_BACK, ROLLED_BACK], r"malformed replacement: replacement does not provide \['(a|y)'\]"),
    (relu_chain, ReluStrayRead(), [REWRITTEN, ROLLED_BACK], r"malformed replacement: replacement reads \['x'\], which the original nodes do not"),
    (unknown_type, AddToSubFullyPriced(), [ROLLED_BACK],   # a fact of the model, not a malformed replacement
     r"^shape or type of 'a' is unknown \(computed by Foo 'foo' of domain 'custom', whose output shape inference "
     r"does not know\), so the rewrite cannot be checked; declare its type and shape in a value_info$"),
])
def test_a_malformed_replacement_is_rolled_back_with_or_without_verification(verify, model, pass_, statuses, reason,
                                                                             monkeypatch):
    if not verify:   # the structural check alone must catch it
        def no_check_models(*args):
            raise AssertionError("a run without verification built check models")
        monkeypatch.setattr(driver, "build_check", no_check_models)
    original = model()
    new, report = optimize(original, passes=[pass_], verify=verify)
    assert [r.status for r in report.rewrites] == statuses
    for r in report.rewrites:
        if r.status == ROLLED_BACK:
            assert r.code == "uncheckable"
            assert re.search(reason, r.reason), r.reason
    if REWRITTEN not in statuses:
        assert new.SerializeToString() == original.SerializeToString()


def relu_pair_read_by_a_subgraph():
    """Relu -> Relu, and an If whose branches read the first Relu's output
    `a`: GraphView.consumers does not list a subgraph's read, the check must."""
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3])
    branch = lambda o: helper.make_graph([helper.make_node("Identity", ["a"], [o])], o, [], [vi(o)])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"),
             helper.make_node("Relu", ["a"], ["y"], name="r2"),
             helper.make_node("If", ["c"], ["w"], name="if", then_branch=branch("t"), else_branch=branch("e"))]
    graph = helper.make_graph(nodes, "g", [vi("x"), helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [vi("y"), vi("w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("verify", [True, False])
def test_a_match_whose_inner_value_a_subgraph_reads_must_provide_it(verify):
    """The pair's replacement gives only y; `a`, read by the If's bodies,
    would vanish: refused (uncheckable), then each Relu is rewritten alone."""
    from toy_passes import ReluPairs
    import onnx
    new, report = optimize(relu_pair_read_by_a_subgraph(), passes=[ReluPairs()], verify=verify)
    onnx.checker.check_model(new, full_check=True)
    assert sorted(r.node for r in report.records(REWRITTEN)) == ["r1", "r2"]
    assert [n.op_type for n in new.graph.node].count("Relu") == 0
    assert any("replacement does not provide ['a']" in note for r in report.rewrites for note in r.notes), \
        [(r.node, r.notes) for r in report.rewrites]
