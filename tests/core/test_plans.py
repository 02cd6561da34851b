"""Plan once per structure (core/plans.py): matches of one structure share the
chooser's decision.  What is shared must be what the chooser would decide for
each match on its own: the run gives the same model and the same report
with and without the shared plans, and each match that takes a kept plan
gets the option and the notes lower() gives it."""
import glob
import json
import os
import sys
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite import optimize
from convrewrite.core import driver, plans
from convrewrite.core.graph import GraphView
from convrewrite.core.rewrite import Match
from passes import make_passes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from bench_pipeline import pipeline_model  # noqa: E402


def _convts(kernels, x_shape=(1, 4, 6, 6), seed=0) -> onnx.ModelProto:
    """Parallel ConvTransposes of x (stride 2), one per kernel size, summed."""
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    nodes, inits, outs = [], [], []
    for k, kernel in enumerate(kernels):
        w = numpy_helper.from_array(rng.standard_normal((x_shape[1], 3, kernel, kernel)).astype(np.float32), f"w{k}")
        inits.append(w)
        nodes.append(helper.make_node("ConvTranspose", ["x", f"w{k}"], [f"y{k}"], name=f"up{k}", strides=[2, 2],
                                      pads=[kernel // 2 - 1] * 4 if kernel >= 2 else [0] * 4))
        outs.append(f"y{k}")
    size = (x_shape[2] - 1) * 2 + 2   # every kernel's pads keep 2n
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [x_shape[0], 3 * len(kernels), size, size])
    graph = helper.make_graph(nodes + [helper.make_node("Concat", outs, ["y"], axis=1)], "g", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _keys(model, pass_name="convtranspose") -> list:
    """plans.key of every candidate of the pass, in graph order."""
    p = make_passes([pass_name], {})[0]
    graph = GraphView(model)
    run = tuple(q.name for q in make_passes(None, {}))
    return [plans.key(p, p.match(n, graph), graph, run) for n in graph.graph.node if p.candidate(n, graph)]


def _outcome(model, **kwargs) -> tuple:
    new, report = optimize(model, **kwargs)
    data = json.loads(report.to_json())
    data.pop("timings")
    return new.SerializeToString(), data


def _unplanned(monkeypatch) -> None:
    """Every match ranked on its own, as before the shared plans."""
    monkeypatch.setattr(driver, "structure_key", lambda *args: None)


class PlanMismatch(BaseException):
    """A kept plan that differs from lowering alone.  Not an Exception: the
    driver takes any Exception in a lowering for a bug in a form and rolls
    the rewrite back, which would leave the test to notice only that the
    run differs."""


def _checked(monkeypatch) -> list:
    """Every match that takes a kept plan is lowered on its own as well, and
    must get the same option and notes (else PlanMismatch ends the run);
    the list counts the kept plans taken."""
    taken, real = [], driver._Run._lowered

    def lowered(self, graph, p, match, c):
        hits = self.plans.hits
        got = real(self, graph, p, match, c)
        if self.plans.hits > hits and c.structure is not None:
            alone = driver.lower(p, match, graph, None, self.passes)
            kept = (got.option.label, got.option.why, got.notes, got.option.cost)
            own = (alone.option.label, alone.option.why, alone.notes, alone.option.cost)
            if kept != own:
                raise PlanMismatch(f"{graph.label(match.node)}: kept {kept}, alone {own}")
            taken.append(graph.label(match.node))
        return got

    monkeypatch.setattr(driver._Run, "_lowered", lowered)
    return taken


# --- the key -----------------------------------------------------------------------

def test_one_structure_one_key_whatever_the_names_and_weights():
    keys = _keys(_convts([4, 4, 4]))
    assert keys[0] is not None and keys[0] == keys[1] == keys[2]


def test_a_different_kernel_is_another_structure():
    keys = _keys(_convts([4, 2, 4]))
    assert keys[0] == keys[2] and keys[0] != keys[1]


def test_a_value_read_elsewhere_is_another_structure():
    """A graph output among a match's values: what the check and the splice
    keep differs, so the structure does too."""
    model = _convts([4, 4])
    model.graph.output.append(helper.make_tensor_value_info("y1", TensorProto.FLOAT, [1, 3, 12, 12]))
    keys = _keys(model)
    assert keys[0] != keys[1]


def test_a_quantized_model_is_not_planned():
    from qdq_models import convt_alone, quantize

    assert _keys(quantize(convt_alone())) == [None]


def test_a_pass_without_structure_is_not_planned():
    model = _convts([4])
    p = make_passes(["shuffle-spelling"], {})[0]
    graph = GraphView(model)
    assert not hasattr(p, "structure")
    assert plans.key(p, Match(graph.graph.node[0], None), graph, ()) is None


# --- the run -----------------------------------------------------------------------

def test_the_pipeline_model_is_planned_once_per_structure(monkeypatch):
    """The issue-12 benchmark's model: each block's three candidates have one
    structure each (the first chain's ConvTranspose reads the graph input: one
    more); every other match takes a kept plan, and the run is the same."""
    model = pipeline_model(60)
    taken = _checked(monkeypatch)
    planned = _outcome(model, verify=False)
    assert len(taken) == 60 - 4
    _unplanned(monkeypatch)
    assert _outcome(model, verify=False) == planned


def test_a_verified_run_is_the_same(monkeypatch):
    model = _convts([4, 4, 2, 4])
    taken = _checked(monkeypatch)
    planned = _outcome(model)
    assert taken == ["up1", "up3"]
    lowered = [r for r in planned[1]["rewrites"] if r["pass"] == "convtranspose"]
    assert [r["status"] for r in lowered] == ["rewritten"] * 4
    assert all(r["max_abs_error"] is not None for r in lowered)   # each checked on its own
    _unplanned(monkeypatch)
    assert _outcome(model) == planned


def _dilated(params: list) -> onnx.ModelProto:
    """Parallel Convs of x [1, 2, 6, 6], one per (kernel, dilation, pad), each a graph output."""
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])
    nodes, inits, outs = [], [], []
    for k, (kernel, d, pad) in enumerate(params):
        inits += [numpy_helper.from_array(rng.standard_normal((3, 2, kernel, kernel)).astype(np.float32), f"w{k}"),
                  numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), f"b{k}")]
        nodes.append(helper.make_node("Conv", ["x", f"w{k}", f"b{k}"], [f"y{k}"], name=f"c{k}",
                                      dilations=[d, d], pads=[pad] * 4))
        size = 6 + 2 * pad - (kernel - 1) * d
        outs.append(helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, [1, 3, size, size]))
    graph = helper.make_graph(nodes, "g", [x], outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_dilated_convs_and_their_bias_only_kind(monkeypatch):
    """Rate 2 (batch form) twice, and twice a Conv whose taps all read
    padding (kernel 2 at rate 10 with pads 4 on a 6x6 map: the bias-only form)."""
    model = _dilated([(3, 2, 2), (2, 10, 4), (3, 2, 2), (2, 10, 4)])
    taken = _checked(monkeypatch)
    planned = _outcome(model)
    assert taken == ["c2", "c3"]
    forms = [r["form"] for r in planned[1]["rewrites"] if r["pass"] == "dilated-conv"]
    assert forms[1] == forms[3] == "bias-only" and forms[0] == forms[2] != "bias-only"
    _unplanned(monkeypatch)
    assert _outcome(model) == planned


def test_no_plan_is_shared_with_a_target(monkeypatch):
    taken = _checked(monkeypatch)
    _outcome(_convts([4, 4]), verify=False, target="tflite")
    assert taken == []


def _sample_models(slow: bool) -> list:
    paths = sorted(glob.glob(os.path.join(ROOT, "models", "*.onnx")))
    fast = ("dcgan_generator", "deeplab_aspp", "fpn_nearest", "tcn_1d", "unet_decoder")
    return [p for p in paths if slow or os.path.basename(p)[:-5] in fast]


WEIGHTED = {"Conv": 1, "ConvTranspose": 1, "BatchNormalization": 1, "MatMul": 1, "Gemm": 1}


def _twice(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model's graph and a copy of it beside it, every name of the copy
    prefixed and its weights (the float inputs from 1 on of Convs,
    ConvTransposes, BatchNormalizations, MatMuls and Gemms) scaled by 1.5:
    every structure of the model comes twice, so each match of the copy
    takes the kept plan of the same match of the original -- which must be
    what lowering it alone gives.  (A sample model holds few repeated
    structures of its own: most of them would take no kept plan at all.)"""
    g = model.graph
    names = {v.name for v in (*g.input, *g.output, *g.value_info, *g.initializer)}
    names |= {x for n in g.node for x in (*n.input, *n.output) if x}
    twin = {x: f"twin/{x}" for x in names}
    weights = {n.input[k] for n in g.node if n.op_type in WEIGHTED for k in range(WEIGHTED[n.op_type], len(n.input))}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for n in g.node:
        c = out.graph.node.add()
        c.CopyFrom(n)
        c.name = f"twin/{n.name}" if n.name else ""
        c.input[:] = [twin.get(x, x) for x in n.input]
        c.output[:] = [twin[x] for x in n.output]
    for field in ("input", "output", "value_info"):
        for v in getattr(g, field):
            getattr(out.graph, field).add().CopyFrom(v)
            getattr(out.graph, field)[-1].name = twin[v.name]
    for t in g.initializer:
        a = numpy_helper.to_array(t)
        if t.name in weights and a.dtype.kind == "f":
            a = (a * 1.5).astype(a.dtype)
        out.graph.initializer.append(numpy_helper.from_array(a, twin[t.name]))
    return out


def test_a_twin_holds_every_structure_twice(monkeypatch):
    """_twice, which the sample-model tests read: each match of the copy
    takes the kept plan of the original's (one per lowering of a pass that
    plans: here unet_decoder's three ConvTransposes; shuffle-spelling has no
    structure())."""
    taken = _checked(monkeypatch)
    _, report = _outcome(_twice(onnx.load(os.path.join(ROOT, "models", "unet_decoder.onnx"))), verify=False)
    lowered = [r["node"] for r in report["rewrites"] if r["pass"] == "convtranspose" and r["status"] == "rewritten"]
    assert len(lowered) == 6
    assert taken == [label for label in lowered if label.startswith("twin/")], taken


@pytest.mark.parametrize("path", _sample_models(slow=False), ids=os.path.basename)
def test_sample_models_are_the_same(monkeypatch, path):
    model = _twice(onnx.load(path))
    taken = _checked(monkeypatch)
    planned = _outcome(model, verify=False)
    assert taken
    _unplanned(monkeypatch)
    assert _outcome(model, verify=False) == planned


@pytest.mark.slow
@pytest.mark.parametrize("path", _sample_models(slow=True), ids=os.path.basename)
@pytest.mark.parametrize("options", [{}, {"resize_mode": "matmul"}, {"dilated_mode": "taps"},
                                     {"convtranspose_form": "phase-convs"}], ids=str)
def test_sample_models_are_the_same_whatever_the_options(monkeypatch, path, options):
    model = _twice(onnx.load(path))
    _checked(monkeypatch)
    planned = _outcome(model, verify=False, options=options)
    _unplanned(monkeypatch)
    assert _outcome(model, verify=False, options=options) == planned


def test_a_name_outside_the_match_never_reads_as_a_position():
    """A params name that is not one of the match's values stays itself,
    tagged: a value named "v0" outside one match and the first value of
    another never give one key."""
    model = _convts([4])
    p = make_passes(["convtranspose"], {})[0]
    graph = GraphView(model)
    match = p.match(graph.graph.node[0], graph)
    outside = Match(match.node, replace(match.params, weight="v1"))   # "v1": no value of this match
    inside = Match(match.node, replace(match.params, weight=match.node.input[1]))   # the match's value v1
    run = tuple(q.name for q in make_passes(None, {}))
    assert plans.key(p, outside, graph, run) != plans.key(p, inside, graph, run)
