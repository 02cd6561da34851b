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
    (unknown_type, AddToSubFullyPriced(), [ROLLED_BACK], r"malformed replacement: shape or type of 'a' is unknown"),
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
