"""The driver's analysis of the model (GraphView: shape inference, indexes,
labels) once per model state: a pass none of whose operators is in the model
gets none, and a pass that leaves the model as it was hands its view to the
next.  Each shortcut gives the same model and the same report as analysing
afresh for every pass."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite import optimize
from convrewrite.core import driver
from toy_passes import AddToSub, ReluToMax


def _model(with_add: bool = True, relu_names=("r1", "r3")):
    """y1 = Relu(x) (+ w), y2 = Relu(-x)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4])
    ys = [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, 3, 4]) for y in ("y1", "y2")]
    w = numpy_helper.from_array(np.full((1, 3, 4), 0.5, np.float32), "w")
    nodes = [helper.make_node("Relu", ["x"], ["a" if with_add else "y1"], name=relu_names[0]),
             helper.make_node("Neg", ["x"], ["c"], name="neg"),
             helper.make_node("Relu", ["c"], ["y2"], name=relu_names[1])]
    if with_add:
        nodes.insert(1, helper.make_node("Add", ["a", "w"], ["y1"], name="add"))
    return helper.make_model(helper.make_graph(nodes, "g", [x], ys, [w] if with_add else []),
                             opset_imports=[helper.make_opsetid("", 17)])


def _views_built(monkeypatch) -> list:
    """The models a GraphView is built of, from now on."""
    built = []
    real = driver.GraphView

    def counted(model, *args, **kwargs):
        built.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(driver, "GraphView", counted)
    return built


def _slow_path(monkeypatch) -> None:
    """Every pass analyses the model afresh, as before the shortcuts."""
    monkeypatch.setattr(driver, "_has_ops", lambda ops, op_types: True)
    monkeypatch.setattr(driver._Run, "_view_of", lambda self, model: driver.GraphView(model))


def _outcome(model, passes, **kwargs) -> tuple:
    new, report = optimize(model, passes=passes, **kwargs)
    data = json.loads(report.to_json())
    data.pop("timings")
    return new.SerializeToString(), data


def _add_only():
    """y1 = x + w: no Relu."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4])
    y = helper.make_tensor_value_info("y1", TensorProto.FLOAT, [1, 3, 4])
    w = numpy_helper.from_array(np.full((1, 3, 4), 0.5, np.float32), "w")
    return helper.make_model(helper.make_graph([helper.make_node("Add", ["x", "w"], ["y1"], name="add")], "g",
                                               [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)])


CASES = {   # the model, the passes, how many views the run builds
    "no Add: the add pass is not analysed": (lambda: _model(with_add=False), [ReluToMax(), AddToSub()], 1),
    "no Relu: the relu pass is not analysed": (_add_only, [ReluToMax(), AddToSub()], 1),
    "relu rewrites nothing: its view goes to the add pass": (
        lambda: _model(relu_names=("keep1", "keep3")), [ReluToMax(), AddToSub()], 1),
    "both rewrite: a view each": (_model, [ReluToMax(), AddToSub()], 2),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("verify", [True, False])
def test_one_analysis_per_model_state_and_the_same_result(case, verify, monkeypatch):
    make, passes, views = CASES[case]
    fast_built = _views_built(monkeypatch)
    fast = _outcome(make(), passes, verify=verify)
    assert len(fast_built) == views
    monkeypatch.undo()
    _slow_path(monkeypatch)
    slow_built = _views_built(monkeypatch)
    slow = _outcome(make(), passes, verify=verify)
    assert len(slow_built) == len(passes)
    assert fast == slow


def test_a_view_is_not_handed_on_after_the_model_changed(monkeypatch):
    """The relu pass edits the model in place (the same object): the add pass
    must see the edited model, not the relu pass's view of the old one."""
    built = _views_built(monkeypatch)
    new, report = optimize(_model(), passes=[ReluToMax(), AddToSub()])
    assert len(built) == 2
    assert {r.status for r in report.rewrites} == {"rewritten"}
    assert [n.op_type for n in new.graph.node].count("Sub") == 1


def test_a_dry_run_analyses_each_model_state_once(monkeypatch):
    """A dry run splices its plan as the run does (so it can report what a
    later pass does to the nodes an earlier one built): a view per model
    state, as the run without verification builds."""
    built = _views_built(monkeypatch)
    _, report = optimize(_model(), passes=[ReluToMax(), AddToSub()], dry_run=True)
    assert len(built) == 2 and len(report.rewrites) == 3
    monkeypatch.undo()
    _, real = optimize(_model(), passes=[ReluToMax(), AddToSub()], verify=False)
    assert [(r.node, r.status) for r in report.rewrites] == [(r.node, "planned") for r in real.rewrites]




def _views_given_shapes(monkeypatch) -> list:
    """For each GraphView the driver builds from now on, whether it was
    handed a shape inference (the load's) instead of running its own."""
    given = []
    real = driver.GraphView

    def recorded(model, *args, **kwargs):
        given.append(kwargs.get("shapes") is not None)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(driver, "GraphView", recorded)
    return given


def _stale_shape(model):
    """`model` declaring y1 of a shape it does not have: onnxruntime overrides
    it (and so does the view's inference: graph.inference_over_declarations)."""
    model.graph.output[0].type.tensor_type.shape.dim[2].dim_value = 5
    return model


def _complaint(model):
    """`model` with a Mul whose operands do not broadcast: onnx's strict
    inference complains (the checker does not)."""
    model.graph.initializer.append(numpy_helper.from_array(np.ones((1, 5, 4), np.float32), "five"))
    model.graph.node.append(helper.make_node("Mul", ["x", "five"], ["z"], name="mul"))
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 4]))
    return model


@pytest.mark.parametrize("case", ["plain", "stale", "complaint"])
@pytest.mark.parametrize("from_file", [False, True])
def test_the_first_view_takes_the_loads_inference(case, from_file, tmp_path, monkeypatch):
    """The load's check of declared types runs the model's shape inference
    strictly; where it has no complaint, the first pass's view takes it (one
    inference fewer per run), else it infers as it did.  A stale declared
    shape is no complaint: the inference is the view's own, declarations
    giving way to what the nodes compute.  The same model and report as
    inferring afresh in every view."""
    model = {"plain": _model, "stale": lambda: _stale_shape(_model()),
             "complaint": lambda: _complaint(_model())}[case]()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    source = str(path) if from_file else model
    given = _views_given_shapes(monkeypatch)
    fast = _outcome(source, [ReluToMax(), AddToSub()], verify=False)
    assert given == [case != "complaint", False]   # the second view: of the model the first pass changed
    monkeypatch.undo()
    _slow_path(monkeypatch)
    slow = _outcome(source, [ReluToMax(), AddToSub()], verify=False)
    assert fast == slow


def _same_nodes(a: dict, b: dict) -> bool:
    """Two indexes with the same keys and the very same node objects (in order)."""
    def ids(v):
        return [id(n) for n in v] if isinstance(v, list) else id(v)
    return set(a) == set(b) and all(ids(a[k]) == ids(b[k]) for k in a)


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("name", ["all_three.onnx", "deeplab_aspp.onnx", "seg_head_bilinear.onnx", "pipeline"])
def test_the_splice_hands_the_next_view_the_indexes_it_would_work_out(name, verify, tmp_path, monkeypatch):
    """A splice in place works out the producer and consumer indexes of the
    model it leaves (its walk for dead code); the next view takes them
    instead of walking the nodes again.  They are the view's own indexes,
    node for node, and the run's model and report are those of views that
    work theirs out."""
    from pathlib import Path
    import sys
    from convrewrite.core.graph import _indexes
    from passes import make_passes

    if name == "pipeline":
        sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
        from bench_pipeline import pipeline_model
        path = tmp_path / "m.onnx"
        onnx.save(pipeline_model(20), path)
    else:
        path = Path(__file__).parents[2] / "models" / name
    handed = []
    real = driver.GraphView

    def checked(model, *args, indexes=None, **kwargs):
        if indexes is not None:
            producer, consumers = _indexes(list(model.graph.node))
            handed.append(_same_nodes(indexes[0], producer) and _same_nodes(indexes[1], consumers))
        return real(model, *args, indexes=indexes, **kwargs)

    monkeypatch.setattr(driver, "GraphView", checked)
    fast = _outcome(str(path), make_passes(None), verify=verify)
    assert handed and all(handed)
    monkeypatch.undo()
    monkeypatch.setattr(driver, "GraphView", lambda model, *args, indexes=None, **kwargs: real(model, *args, **kwargs))
    assert _outcome(str(path), make_passes(None), verify=verify) == fast
