"""Constants the rewrites of one pass build alike are kept once
(splice.identical_constants): every replacement reads the first of them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite import optimize
from convrewrite.core.equivalence import check_models
from convrewrite.core.report import REWRITTEN, ROLLED_BACK
from convrewrite.core.splice import identical_constants, shared_bytes
from helpers import assert_rewrites
from test_driver import relu_chain
from toy_passes import MaxForm, ReluToClip, ReluToMax, relu_both_signs


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
    big = np.zeros(shared_bytes() // 4, np.float32)   # at the bound
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


class _IfForm(MaxForm):
    """Relu(x) -> If(true) then Max(x, 0) else Max(x, 0): the 0 is read
    from the outer scope, inside the bodies."""

    name = "if"

    def build(self, match, variant, graph, b):
        zero, cond = b.initializer(np.zeros((), np.float32), "zero"), b.initializer(np.array(True), "cond")
        x = match.node.input[0]

        def body(tag):
            out = b.name(f"{tag}_out")
            return helper.make_graph([helper.make_node("Max", [x, zero], [out])], tag, [],
                                     [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)])
        return {match.node.output[0]: b.op("If", [cond], "if", then_branch=body("then"), else_branch=body("else"))}


@dataclass(frozen=True)
class _ReluToIf(ReluToMax):
    name: ClassVar[str] = "relu-to-if"
    forms: ClassVar[tuple] = (_IfForm(),)


@pytest.mark.parametrize("verify", [True, False])
def test_a_constant_a_body_reads_is_kept_where_the_body_reads_it(verify):
    """Renaming reaches a node's inputs, not its bodies: a duplicate an If's
    body reads stays (its cond, read as an input, is still shared).  Dropped,
    the model was invalid (without verification) or every rewrite but the
    first rolled back (with it)."""
    model = relu_chain(names=("r1", "r2", "r3"))
    new, report = optimize(model, passes=[_ReluToIf()], verify=verify)
    assert [r.status for r in report.rewrites] == [REWRITTEN] * 3
    onnx.checker.check_model(new, full_check=True)
    assert check_models(model, new)
    assert sorted(t.name for t in new.graph.initializer) == sorted(
        ["r1/relu-to-if/cond"] + [f"r{k}/relu-to-if/zero" for k in (1, 2, 3)])


class _FixedNameForm(MaxForm):
    """Relu(x) -> Max(x, 0) naming its 0 "zero" in every rewrite (not
    through the builder: a pass's bug)."""

    name = "fixed-name"

    def build(self, match, variant, graph, b):
        b.initializers.append(_tensor("zero", 0.0))
        return {match.node.output[0]: b.op("Max", [match.node.input[0], "zero"], "max")}


@dataclass(frozen=True)
class _ReluFixedName(ReluToMax):
    name: ClassVar[str] = "relu-fixed-name"
    forms: ClassVar[tuple] = (_FixedNameForm(),)


def test_a_name_twice_is_not_its_own_duplicate():
    """Two rewrites naming a constant alike: identical_constants does not
    map the name to itself (the splice then dropped every copy, and the
    Max nodes read a value nothing defined)."""
    assert identical_constants([_tensor("zero", 0.0), _tensor("zero", 0.0)]) == {}
    new, _ = optimize(relu_chain(names=("r1", "r2", "r3")), passes=[_ReluFixedName()], verify=False)
    defined = {t.name for t in new.graph.initializer} | {i.name for i in new.graph.input} | {
        o for n in new.graph.node for o in n.output}
    assert {i for n in new.graph.node for i in n.input} <= defined


class _TwiceBigForm(MaxForm):
    """Relu(x) -> Max(x, c) + c with c a 0 of shared_bytes() (the size a Spill keeps on disk)."""

    name = "twice-big"

    def build(self, match, variant, graph, b):
        c = b.initializer(np.zeros(shared_bytes() // 4, np.float32), "c")
        return {match.node.output[0]: b.op("Add", [b.op("Max", [match.node.input[0], c], "max"), c], "add")}


@dataclass(frozen=True)
class _ReluTwiceBig(ReluToMax):
    name: ClassVar[str] = "relu-twice-big"
    forms: ClassVar[tuple] = (_TwiceBigForm(),)


def test_a_model_from_a_file_whose_new_weights_wait_on_disk_shares_as_one_in_memory(tmp_path, monkeypatch):
    """Without verification a large model's new weights of MOVE_BYTES and
    more wait on disk (weights.Spill) without their data: none of them is
    compared by value, on either route, so both give one model."""
    from convrewrite.core import driver

    monkeypatch.setattr(driver, "RELEASE_BYTES", 0)   # the toy model counts as large
    n = shared_bytes() // 4
    x, y = (helper.make_tensor_value_info(v, TensorProto.FLOAT, [1, n]) for v in "xy")
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"), helper.make_node("Neg", ["x"], ["b"], name="neg"),
             helper.make_node("Relu", ["b"], ["c"], name="r2"), helper.make_node("Add", ["a", "c"], ["y"], name="add")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "m.onnx")
    in_memory, _ = optimize(model, passes=[_ReluTwiceBig()], verify=False)
    from_file, report = optimize(str(tmp_path / "m.onnx"), passes=[_ReluTwiceBig()], verify=False)
    assert [r.status for r in report.rewrites] == [REWRITTEN] * 2
    assert from_file.SerializeToString() == in_memory.SerializeToString()
    assert len(from_file.graph.initializer) == 2
