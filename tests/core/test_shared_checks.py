"""Local checks of one structure share one session per side
(convrewrite/core/shared_checks.py): every rewrite is still checked on its
own inputs and weights, a wrong one is still caught, and the verdicts are
those of the merged sessions."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite import optimize
from convrewrite.core import shared_checks
from convrewrite.core.report import REWRITTEN, ROLLED_BACK
from convrewrite.core.shared_checks import structure_of
from toy_passes import AddToSubWrongOnBad


def add_chain(names, batch="N"):
    """x -> Add(., w_k) per name, each w_k its own random [3, 4] weight."""
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3, 4])
    nodes, inits, v = [], [], "x"
    for k, name in enumerate(names):
        inits.append(numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), f"w{k}"))
        out = "y" if k == len(names) - 1 else f"a{k}"
        nodes.append(helper.make_node("Add", [v, f"w{k}"], [out], name=name))
        v = out
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])


NAMES = ("a0", "a1", "bad2", "a3", "a4", "bad5")


def _verdicts(report):
    return [(r.node, r.status, r.max_abs_error) for r in report.rewrites]


def test_one_session_per_structure_and_a_wrong_rewrite_among_them_is_caught(monkeypatch):
    made = []
    real = shared_checks.onnxruntime_session
    monkeypatch.setattr(shared_checks, "onnxruntime_session", lambda m, **k: made.append(m) or real(m, **k))
    new, report = optimize(add_chain(NAMES), passes=[AddToSubWrongOnBad()])
    # all six checks ran in the one session of their structure (both sides); deferred to after the pass, a
    # failure has the run redone, checking before the splice (driver._deferred_checks): once more, the same way
    assert len(made) == 2 and made[0] == made[1]
    status = {r.node: r.status for r in report.rewrites}
    assert status == {n: ROLLED_BACK if n.startswith("bad") else REWRITTEN for n in NAMES}
    bad = next(r for r in report.rewrites if r.node == "bad2")
    assert "local check failed" in bad.reason and bad.max_abs_error > 0.1
    assert report.verification.equivalent
    assert [n.op_type for n in new.graph.node] == ["Sub", "Sub", "Add", "Sub", "Sub", "Add"]


def test_verdicts_are_those_of_the_merged_sessions(monkeypatch):
    _, shared = optimize(add_chain(NAMES), passes=[AddToSubWrongOnBad()])
    monkeypatch.setattr(shared_checks, "MIN_SHARED", 10 ** 9)   # no structure is shared: the merged path
    _, merged = optimize(add_chain(NAMES), passes=[AddToSubWrongOnBad()])
    assert _verdicts(shared) == _verdicts(merged)


def test_a_structure_onnxruntime_refuses_to_share_is_checked_alone(monkeypatch):
    def refuse(model, **options):
        raise RuntimeError("no")

    monkeypatch.setattr(shared_checks, "onnxruntime_session", refuse)
    _, report = optimize(add_chain(NAMES), passes=[AddToSubWrongOnBad()])
    assert {r.node: r.status for r in report.rewrites} == {
        n: ROLLED_BACK if n.startswith("bad") else REWRITTEN for n in NAMES}


def _check_model(name, weight, attrs=None, shape=(3, 4)):
    x = helper.make_tensor_value_info(f"{name}/x", TensorProto.FLOAT, [1, *shape])
    y = helper.make_tensor_value_info(f"{name}/y", TensorProto.FLOAT, [1, *shape])
    node = helper.make_node("Add", [f"{name}/x", f"{name}/w"], [f"{name}/y"], name=name, doc_string=name)
    if attrs:
        node = helper.make_node("Gemm", [f"{name}/x", f"{name}/w"], [f"{name}/y"], name=name, **attrs)
    w = numpy_helper.from_array(np.full(shape, weight, np.float32), f"{name}/w")
    return helper.make_model(helper.make_graph([node], name, [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)])


def test_a_structure_is_the_model_but_its_names_and_weight_values():
    same = structure_of(_check_model("p", 1.0))
    assert structure_of(_check_model("q/r", -3.0)) == same
    assert structure_of(_check_model("p", 1.0, shape=(4, 3))) != same
    assert structure_of(_check_model("p", 1.0, attrs={"alpha": 2.0})) != \
        structure_of(_check_model("p", 1.0, attrs={"alpha": 3.0}))


@pytest.mark.parametrize("weight", [np.float32(2.5), np.arange(6, dtype=np.int64).reshape(2, 3),
                                    np.array([True, False]), np.zeros((0, 2), np.float16)])
def test_weights_reach_the_shared_session_as_they_are(weight):
    from convrewrite.core.weights import to_array

    got = to_array(numpy_helper.from_array(np.asarray(weight), "w"))
    assert got.dtype == np.asarray(weight).dtype and got.shape == np.shape(weight) and np.array_equal(got, weight)


def _variants():
    """Check models that differ from _check_model("p", 1.0) in one thing each
    (names and weight values aside: the same structure)."""
    base = _check_model("p", 1.0)
    yield _check_model("q/r", -3.0)
    for edit in ("domain", "opset", "input doc", "output type", "value info", "swapped inputs", "ir"):
        m = onnx.ModelProto()
        m.CopyFrom(base)
        g = m.graph
        if edit == "domain":
            g.node[0].domain = "ai.onnx"
        elif edit == "opset":
            m.opset_import[0].version = 18
        elif edit == "input doc":
            g.input[0].doc_string = "x"
        elif edit == "output type":
            g.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE
        elif edit == "value info":
            g.value_info.extend([helper.make_tensor_value_info("p/y", TensorProto.FLOAT, [1, 3, 4])])
        elif edit == "swapped inputs":
            g.node[0].input[:] = list(reversed(g.node[0].input))
        else:
            m.ir_version -= 1
        yield m


def test_two_check_models_have_one_structure_exactly_when_they_share_a_session_model():
    """structure_of reads a model's structure without building its session
    model; equal structures must still mean the same session model (a check
    run in another structure's session would run the wrong graph)."""
    models = [_check_model("p", 1.0)] + list(_variants())
    for a in models:
        for b in models:
            same_key = structure_of(a) == structure_of(b)
            assert same_key == (shared_checks.shared_model(a) == shared_checks.shared_model(b))
    assert len({structure_of(m) for m in models}) == len(models) - 1   # each edit but the renaming tells
