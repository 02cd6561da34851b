"""Constants shared by the rewrites of a pass (splice.identical_constants): a
differential sweep.  Random toy graphs (weights repeated by value under other
names, Relus of weights, IR 3's initializers listed as graph inputs) and toy
passes that build repeated constants: read twice by one node, passed through
as a rewrite's output (an Identity), read beside a weight of the model, int8
weights through DequantizeLinear, chains matched again alone, wrong on large
inputs (bisection), read inside an If's bodies.  The result passes onnx's full check, is equivalent to
the original, holds each initializer once and only where read, every
constant the rewrites of one pass built alike once; a caller's model
(apply_rewrites) and one loaded from a file (splice_in_place, Undo) give the
same model; the views after a splice are handed the indexes they would work out."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import toy_passes as toy
from convrewrite import optimize
from convrewrite.core import driver, weights
from convrewrite.core.equivalence import check_models
from convrewrite.core.graph import _indexes, node_outer_references
from convrewrite.core.report import REWRITTEN
from convrewrite.core.rewrite import Code, Match, Skip
from convrewrite.core.splice import shared_bytes
from test_driver_views import _same_nodes
from test_shared_constants import _ReluToIf


class _MaxTwiceForm(toy.MaxForm):
    """Relu(x) -> Max(x, 0, 0): one node reading its constant twice."""

    name = "max-twice"

    def build(self, match, variant, graph, b):
        zero = b.initializer(np.zeros((), np.float32), "zero")
        return {match.node.output[0]: b.op("Max", [match.node.input[0], zero, zero], "max")}


@dataclass(frozen=True)
class _ReluToMaxTwice(toy.ReluToMax):
    name: ClassVar[str] = "relu-to-max-twice"
    forms: ClassVar[tuple] = (_MaxTwiceForm(),)


class _FoldForm(toy.MaxForm):
    """Relu(w) of a weight -> the constant max(w, 0), the rewrite's output
    itself (the splice passes it through an Identity)."""

    name = "fold"

    def build(self, match, variant, graph, b):
        folded = b.initializer(np.maximum(graph.constant(match.node.input[0]), 0), "folded")
        return {match.node.output[0]: folded}


@dataclass(frozen=True)
class _FoldReluOfWeight(toy.ReluToMax):
    name: ClassVar[str] = "fold-relu-of-weight"
    forms: ClassVar[tuple] = (_FoldForm(),)

    def match(self, node, graph):
        if not graph.is_constant(node.input[0]):
            return Skip(f"Relu '{graph.label(node)}': reads no weight", Code.UNSUPPORTED_ATTRIBUTE)
        return Match(node, None)


def _weight(node, graph):
    """The Add's weight (its second input), if a constant of the model."""
    return node.input[1] if graph.is_constant(node.input[1]) else None


class _ViaZeroForm(toy.MaxForm):
    """Add(x, w) -> Sub(x, Sub(0, w)): a new constant beside the model's weight w."""

    name = "via-zero"

    def build(self, match, variant, graph, b):
        w = match.node.input[1]
        zero = b.initializer(np.zeros((), np.float32), "zero")
        return {match.node.output[0]: b.op("Sub", [match.node.input[0], b.op("Sub", [zero, w], "neg")], "sub")}


class _DequantizedForm(toy.MaxForm):
    """Add(x, w) of an integer w -> Add(x, DequantizeLinear(int8 w, 1, 0))."""

    name = "dequantized"

    def build(self, match, variant, graph, b):
        q = b.initializer(graph.constant(match.node.input[1]).astype(np.int8), "q")
        scale, zero_point = b.initializer(np.float32(1), "scale"), b.initializer(np.int8(0), "zero_point")
        w = b.op("DequantizeLinear", [q, scale, zero_point], "dequantize")
        return {match.node.output[0]: b.op("Add", [match.node.input[0], w], "add")}


@dataclass(frozen=True)
class _AddViaZero(toy.AddToSub):
    name: ClassVar[str] = "add-via-zero"
    forms: ClassVar[tuple] = (_ViaZeroForm(),)

    def match(self, node, graph):
        if _weight(node, graph) is None:
            return Skip(f"Add '{graph.label(node)}': no weight", Code.UNSUPPORTED_ATTRIBUTE)
        return Match(node, None)


@dataclass(frozen=True)
class _AddDequantized(_AddViaZero):
    name: ClassVar[str] = "add-dequantized"
    forms: ClassVar[tuple] = (_DequantizedForm(),)


CORRECT = [toy.ReluToMax, _ReluToMaxTwice, _FoldReluOfWeight, _AddViaZero, _AddDequantized, toy.AddToSub, _ReluToIf,
           lambda: toy.ReluPairs(wrong_chain=False)]
POOL = CORRECT + [toy.ReluToClip, toy.ReluToIdentity, lambda: toy.ReluPairs(wrong_chain=True)]
VALUES = [np.zeros((3, 4)), np.arange(12).reshape(3, 4) % 5 - 2, np.ones((1,)), np.full((1,), -2.0)]


def _graph(r: random.Random) -> onnx.ModelProto:
    """A chain with branches of Relu, Neg, Add and Mul over x [N, 3, 4]:
    weights of a few values (one value under several names, a name read
    several times), Relus of weights; IR 3 at times."""
    weights, values, nodes = {}, ["x"], []
    for k in range(r.randint(3, 10)):
        op, a = r.choice(["Relu", "Relu", "Relu", "Add", "Add", "Neg", "Mul", "ReluOfWeight"]), r.choice(values[-3:])
        if op in ("Add", "Mul", "ReluOfWeight"):
            w = r.choice([f"w{len(weights)}"] + list(weights)) if weights else "w0"
            weights.setdefault(w, r.choice(VALUES))
            if op == "ReluOfWeight":
                op, ins = "Relu", [w]
            else:
                ins = [a, w]
        else:
            ins = [a]
        nodes.append(helper.make_node(op, ins, [f"v{k}"], name=f"n{k}"))
        values.append(f"v{k}")
    # the Relus of weights joined in; an output or two (at times a folded weight itself)
    for k, n in enumerate(list(nodes)):
        if n.input[0] in weights:
            nodes.append(helper.make_node("Add", [values[-1], n.output[0]], [f"j{k}"], name=f"join{k}"))
            values.append(f"j{k}")
    outputs = dict.fromkeys([values[-1], r.choice(values[1:])] if r.random() < 0.4 else [values[-1]])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [r.choice([1, "N"]), 3, 4])
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), w) for w, v in weights.items()]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [], inits), opset_imports=[helper.make_opsetid("", 17)])
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    model.graph.output.extend(inferred[o] for o in outputs)   # each with its rank
    if r.random() < 0.25:   # before IR 4: every initializer a graph input too
        model.ir_version = 3
        model.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits)
    return model


def _case(seed: int, monkeypatch) -> tuple:
    """The model, passes and optimize's arguments: the user's large inputs
    (relu-to-clip fails the whole-model check: bisection), or no
    verification with the correct passes alone, the new weights (of a size
    drawn) waiting on disk until the splice (weights.Spill), or neither."""
    r = random.Random(seed)
    model, mode = _graph(r), r.random()
    pool = CORRECT if mode < 0.3 else POOL
    passes = [pool[k]() for k in r.sample(range(len(pool)), r.randint(1, 3))]
    batch = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value or 2
    if mode < 0.3:
        monkeypatch.setattr(driver, "RELEASE_BYTES", 0)
        monkeypatch.setattr(weights, "MOVE_BYTES", r.choice([16, 64, 1 << 16]))
        return model, passes, {"verify": False}
    if mode < 0.6:
        return model, passes, {"inputs": {"x": np.random.default_rng(seed).uniform(-100, 100, (batch, 3, 4))
                                          .astype(np.float32)}}
    return model, passes, {}


def _new_constants(model, original) -> list:
    own = {t.name for t in original.graph.initializer}
    return [t for t in model.graph.initializer if t.name not in own]


def _assert_sound(original, new, report, passes, inputs=None, verify=True) -> None:
    onnx.checker.check_model(new, full_check=True)
    g = new.graph
    names = [t.name for t in g.initializer]
    assert len(set(names)) == len(names), "an initializer twice"
    in_bodies = {x for n in g.node for x in node_outer_references(n)}
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output} | in_bodies
    assert set(names) <= read, f"initializers no node reads: {set(names) - read}"
    if new.ir_version < 4:
        listed = [i.name for i in g.input]
        assert sorted(listed) == sorted(["x"] + names), "IR 3: every initializer once among the graph inputs"
    else:
        assert [i.name for i in g.input] == ["x"]
    for feeds in ([inputs] if inputs is not None else []) + [None]:
        result = check_models(original, new, feeds)
        assert result, f"the optimized model differs from the original:\n{result}"
    if len(passes) == 1:   # one pass: every constant its rewrites built alike is held once (bodies' aside)
        seen = {}
        for t in _new_constants(new, original):
            if t.HasField("raw_data") and len(t.raw_data) < shared_bytes() and t.name not in in_bodies:
                key = (t.data_type, tuple(t.dims), t.raw_data)
                assert key not in seen, f"{t.name} repeats {seen[key]}"
                seen[key] = t.name
        nodes = {n.name for n in g.node}
        for rec in report.records(REWRITTEN):
            assert set(rec.new_nodes) <= nodes, rec


def _run(source, passes, kwargs):
    new, report = optimize(source, passes=passes, **kwargs)
    return new, report, [(r.node, r.status, r.code, r.notes) for r in report.rewrites]


def _differential(seed: int, tmp_path, monkeypatch) -> None:
    model, passes, kwargs = _case(seed, monkeypatch)
    given = model.SerializeToString()
    handed, real = [], driver.GraphView

    def checked(m, *args, indexes=None, **kwargs):
        if indexes is not None:
            producer, consumers = _indexes(list(m.graph.node))
            handed.append(_same_nodes(indexes[0], producer) and _same_nodes(indexes[1], consumers))
        return real(m, *args, indexes=indexes, **kwargs)

    monkeypatch.setattr(driver, "GraphView", checked)
    new, report, records = _run(model, passes, kwargs)   # the caller's model: apply_rewrites
    assert model.SerializeToString() == given
    _assert_sound(model, new, report, passes, **kwargs)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    in_place, _, records_in_place = _run(str(path), passes, kwargs)   # a file: splice_in_place (Undo, Spill)
    assert in_place.SerializeToString() == new.SerializeToString()
    assert records_in_place == records
    assert all(handed)


FAST_SEEDS = [*range(16), 26, 63]   # 26, 63: a duplicate read in an If's bodies, spilled weights


@pytest.mark.parametrize("seed", FAST_SEEDS)
def test_random_graphs_with_repeated_constants_give_sound_models(seed, tmp_path, monkeypatch):
    _differential(seed, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [k for k in range(300) if k not in FAST_SEEDS])
def test_random_graphs_with_repeated_constants_give_sound_models_sweep(seed, tmp_path, monkeypatch):
    _differential(seed, tmp_path, monkeypatch)
