"""Constants the rewrites of one pass build alike are kept once
(splice.identical_constants): every replacement reads the first of them."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite import optimize
from convrewrite.core.equivalence import check_models
from convrewrite.core.report import REWRITTEN, ROLLED_BACK
from convrewrite.core.splice import SHARED_BYTES, identical_constants
from helpers import assert_rewrites
from test_driver import relu_chain
from toy_passes import ReluToClip, ReluToMax, relu_both_signs


def _tensor(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def test_two_rewrites_of_one_structure_read_one_constant():
    new, report = assert_rewrites(relu_chain(names=("r1", "r2", "r3")), ReluToMax(), {"Max": 3, "Relu": 0})
    (zero,) = new.graph.initializer   # three rewrites, each building a 0
    assert [n.input[1] for n in new.graph.node if n.op_type == "Max"] == [zero.name] * 3
    assert zero.name.startswith("r1/")   # the first rewrite's, which the others read
    assert len(report.records(REWRITTEN)) == 3


def test_only_the_same_type_dims_and_data_are_shared():
    same = [_tensor("a", [1, 2]), _tensor("b", [1, 2]), _tensor("c", [1, 2])]
    assert identical_constants(same) == {"b": "a", "c": "a"}
    others = [_tensor("a", [1, 2]),
              _tensor("dims", [[1, 2]]),                                   # other dims, same bytes
              _tensor("type", np.array([1, 2], np.float32).view(np.int32), np.int32),   # same bytes, other type
              _tensor("data", [1, 3])]
    assert identical_constants(others) == {}


def test_typed_fields_external_data_and_large_tensors_are_not_compared():
    typed = helper.make_tensor("typed", TensorProto.FLOAT, [2], [1.0, 2.0])   # float_data, not raw_data
    external = _tensor("external", [1, 2])
    external.data_location = TensorProto.EXTERNAL
    big = np.zeros(SHARED_BYTES // 4 + 1, np.float32)   # one element above the bound
    tensors = [_tensor("a", [1, 2]), typed, external, _tensor("big", big), _tensor("big2", big)]
    assert identical_constants(tensors) == {}


def test_before_ir_4_only_the_kept_constant_is_listed_as_a_graph_input():
    model = relu_chain(names=("r1", "r2", "r3"))
    model.ir_version = 3
    new, _ = optimize(model, passes=[ReluToMax()])
    kept = [t.name for t in new.graph.initializer]
    assert len(kept) == 1 and [i.name for i in new.graph.input] == ["x"] + kept
    assert check_models(model, new)


@pytest.mark.parametrize("given", ["model", "path"])
def test_bisection_after_a_splice_that_shared_constants_gives_the_right_model(tmp_path, given):
    """relu-to-clip's Clip is wrong on x = 100 at r1 and exact at r3 (the
    whole-model check fails; the local checks pass): bisection rebuilds and
    splices subsets of rewrites whose constants were shared, and Undo puts
    back the model the shared splice edited."""
    model = relu_both_signs()
    source = model
    if given == "path":
        onnx.save(model, tmp_path / "m.onnx")
        source = str(tmp_path / "m.onnx")
    inputs = {"x": np.full((1, 3, 4), 100.0, np.float32)}
    new, report = optimize(source, passes=[ReluToClip()], inputs=inputs)
    assert [(r.node, r.status) for r in report.rewrites] == [("r1", ROLLED_BACK), ("r3", REWRITTEN)]
    assert report.verification.equivalent
    assert check_models(model, new, inputs)
    assert all(t.name.startswith("r3/") for t in new.graph.initializer)


def test_constants_whose_digests_agree_are_shared_only_if_their_data_does(monkeypatch):
    from convrewrite.core import splice

    class Colliding:
        def __init__(self, data):
            pass

        def digest(self):
            return b"same"

    monkeypatch.setattr(splice.hashlib, "blake2b", Colliding)
    assert identical_constants([_tensor("a", [1, 2]), _tensor("b", [1, 3]), _tensor("c", [1, 2])]) == {"c": "a"}
