"""Small passes for testing the driver itself (not shipped).

Each has one form (or two, for the pair pass) built on the same contract as
the real passes: match is pure, forms build.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from onnx import TensorProto, helper

from convrewrite.core.forms import Cost, Form
from convrewrite.core.rewrite import Code, Match, PassOptions, Skip


def _dtype(graph, name):
    return helper.tensor_dtype_to_np_dtype(graph.dtype(name))


class MaxForm(Form):
    """Relu(x) -> Max(x, 0): correct."""

    name = "max"

    def cost(self, match, variant, graph):
        return Cost(macs=0, max_rank=len(graph.shape(match.node.input[0]) or ()))

    def build(self, match, variant, graph, b):
        zero = b.initializer(np.zeros((), _dtype(graph, match.node.input[0])), "zero")
        return {match.node.output[0]: b.op("Max", [match.node.input[0], zero], "max")}


class IdentityForm(MaxForm):
    """Relu(x) -> x: wrong on negative inputs; must be caught."""

    name = "identity"

    def build(self, match, variant, graph, b):
        return {match.node.output[0]: b.op("Identity", [match.node.input[0]], "identity")}


class BrokenForm(MaxForm):
    """build raises: must be reported, not crash the run."""

    name = "broken"

    def build(self, match, variant, graph, b):
        raise ZeroDivisionError("boom")


class ShiftForm(MaxForm):
    """Relu(x - 10) + 10 then Max(., 0): exact only where x > 10 or x <= 0...
    wrong for 0 < x < 10, which random normal inputs hit."""

    name = "shift"

    def build(self, match, variant, graph, b):
        dtype = _dtype(graph, match.node.input[0])
        ten = b.initializer(np.array(10, dtype), "ten")
        t = b.op("Sub", [match.node.input[0], ten], "sub")
        t = b.op("Relu", [t], "relu")
        t = b.op("Add", [t, ten], "add")
        return {match.node.output[0]: b.op("Max", [t, b.initializer(np.array(0, dtype), "zero")], "max")}


@dataclass(frozen=True)
class ReluToMax:
    options: PassOptions = PassOptions()

    name: ClassVar[str] = "relu-to-max"
    description: ClassVar[str] = "Relu(x) -> Max(x, 0)"
    op_types: ClassVar[tuple] = ("Relu",)
    mac_bound: ClassVar = None
    Options: ClassVar[type] = PassOptions
    forms: ClassVar[tuple] = (MaxForm(),)

    def preferred(self):
        return ()

    def candidate(self, node, graph):
        return node.op_type == "Relu"

    def match(self, node, graph):
        if graph.dtype(node.input[0]) is None:
            return Skip(f"Relu '{graph.label(node)}': input type unknown", Code.UNSUPPORTED_TYPE)
        if node.name.startswith("keep"):
            return Skip(f"Relu '{graph.label(node)}': name starts with keep", Code.UNSUPPORTED_ATTRIBUTE)
        return Match(node, None)


@dataclass(frozen=True)
class ReluToIdentity(ReluToMax):
    name: ClassVar[str] = "relu-to-identity"
    forms: ClassVar[tuple] = (IdentityForm(),)


@dataclass(frozen=True)
class ReluBroken(ReluToMax):
    name: ClassVar[str] = "relu-broken"
    forms: ClassVar[tuple] = (BrokenForm(),)


@dataclass(frozen=True)
class ReluWrongOnlyInContext(ReluToMax):
    name: ClassVar[str] = "relu-shift"
    forms: ClassVar[tuple] = (ShiftForm(),)


class PairForm(MaxForm):
    """Relu(Relu(x)) = Max(x, 0) for a two-node match; `wrong` emits Neg."""

    name = "pair"

    def __init__(self, wrong: bool):
        self.wrong = wrong

    def applies(self, match, graph):
        return None if match.params == "pair" else "single Relu"

    def build(self, match, variant, graph, b):
        if self.wrong:
            y = b.op("Neg", [match.node.input[0]], "pair")
        else:
            y = b.op("Max", [match.node.input[0], b.initializer(np.zeros((), np.float32), "zero")], "pair")
        return {match.nodes[1].output[0]: y}


class SingleForm(MaxForm):
    name = "single"

    def applies(self, match, graph):
        return None if match.params == "single" else "a pair"


@dataclass(frozen=True)
class ReluPairs(ReluToMax):
    """Matches Relu -> Relu as one two-node rewrite (a "chain").  With
    wrong_chain, the chain's replacement is wrong (Neg), so the driver must
    roll it back and re-match each node alone with `match_alone`."""

    name: ClassVar[str] = "relu-pairs"
    wrong_chain: bool = False

    @property
    def forms(self):
        return (PairForm(self.wrong_chain), SingleForm())

    def match(self, node, graph):
        nxt = graph.consumers(node.output[0])
        if len(nxt) == 1 and nxt[0].op_type == "Relu":
            return Match(node, "pair", nodes=(node, nxt[0]))
        return self.match_alone(node, graph)

    def match_alone(self, node, graph):
        return Match(node, "single")


class SubForm(MaxForm):
    name = "sub"

    def __init__(self, sign: int):
        self.sign = sign

    def build(self, match, variant, graph, b):
        neg = b.initializer(-self.sign * graph.constant(match.node.input[1]), "neg_w")
        return {match.node.output[0]: b.op("Sub", [match.node.input[0], neg], "sub")}


@dataclass(frozen=True)
class AddToSub(ReluToMax):
    """Add(x, w) -> Sub(x, -w) with -w folded offline; sign=-1 makes it wrong."""

    name: ClassVar[str] = "add-to-sub"
    op_types: ClassVar[tuple] = ("Add",)
    sign: int = 1

    @property
    def forms(self):
        return (SubForm(self.sign),)

    def candidate(self, node, graph):
        return node.op_type == "Add"

    def match(self, node, graph):
        return Match(node, None)


class SubWrongOnBadForm(SubForm):
    """As SubForm, but wrong (Sub(x, w)) on nodes named bad*: the same nodes
    and shapes as the correct ones, other weights."""

    def build(self, match, variant, graph, b):
        sign = -1 if match.node.name.startswith("bad") else 1
        neg = b.initializer(-sign * graph.constant(match.node.input[1]), "neg_w")
        return {match.node.output[0]: b.op("Sub", [match.node.input[0], neg], "sub")}


@dataclass(frozen=True)
class AddToSubWrongOnBad(AddToSub):
    name: ClassVar[str] = "add-to-sub-wrong-on-bad"

    @property
    def forms(self):
        return (SubWrongOnBadForm(1),)


class _FullyPriced(MaxForm):
    """Every figure of its Cost known before building (as the real forms'
    are), so a run without verification builds no check models for it."""

    def cost(self, match, variant, graph):
        return Cost(macs=0, moved_bytes=0, nodes=1, max_rank=2)


class MissingOutputForm(_FullyPriced):
    """Malformed: the Max it builds is not mapped to the Relu's output."""

    name = "missing-output"

    def build(self, match, variant, graph, b):
        b.op("Max", [match.node.input[0], b.initializer(np.zeros((), np.float32), "zero")], "max")
        return {}


class StrayReadForm(_FullyPriced):
    """Max(input, x * 0): correct, but it reads the graph input x, which a
    Relu of another value does not (malformed there)."""

    name = "stray-read"

    def build(self, match, variant, graph, b):
        zero = b.op("Mul", ["x", b.initializer(np.zeros((), np.float32), "zero")], "zero")
        return {match.node.output[0]: b.op("Max", [match.node.input[0], zero], "max")}


class FullyPricedSubForm(_FullyPriced, SubForm):
    pass


@dataclass(frozen=True)
class AddToSubFullyPriced(AddToSub):
    name: ClassVar[str] = "add-to-sub-fully-priced"

    @property
    def forms(self):
        return (FullyPricedSubForm(self.sign),)


@dataclass(frozen=True)
class ReluMissingOutput(ReluToMax):
    name: ClassVar[str] = "relu-missing-output"
    forms: ClassVar[tuple] = (MissingOutputForm(),)


@dataclass(frozen=True)
class ReluStrayRead(ReluToMax):
    name: ClassVar[str] = "relu-stray-read"
    forms: ClassVar[tuple] = (StrayReadForm(),)


class ClipForm(MaxForm):
    """Relu(x) -> Clip(x, 0, hi): passes the local check on standard-normal
    inputs, wrong on the user's inputs above hi (the whole-model check must
    catch it)."""

    name = "clip"
    hi = 50.0

    def build(self, match, variant, graph, b):
        lo = b.initializer(np.array(0, np.float32), "lo")
        hi = b.initializer(np.array(self.hi, np.float32), "hi")
        return {match.node.output[0]: b.op("Clip", [match.node.input[0], lo, hi], "clip")}


@dataclass(frozen=True)
class ReluToClip(ReluToMax):
    name: ClassVar[str] = "relu-to-clip"
    forms: ClassVar[tuple] = (ClipForm(),)


class DoubleZeroForm(MaxForm):
    """Relu(x) -> Max(x, 0) with a float64 0: well formed, but onnxruntime
    refuses to load it (Max's two inputs of different types)."""

    name = "double-zero"

    def build(self, match, variant, graph, b):
        zero = b.initializer(np.zeros((), np.float64), "zero")
        return {match.node.output[0]: b.op("Max", [match.node.input[0], zero], "max")}


@dataclass(frozen=True)
class ReluUnloadable(ReluToMax):
    name: ClassVar[str] = "relu-unloadable"
    forms: ClassVar[tuple] = (DoubleZeroForm(),)


def relu_both_signs(scale: float = 0.0):
    """y = Relu(x) + Relu(-x) (times a weight `scale` when given): on
    x = 100, r1 sees 100 (Clip is wrong there) and r3 sees -100 (exact)."""
    from onnx import numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"),
             helper.make_node("Neg", ["x"], ["c"], name="neg"),
             helper.make_node("Relu", ["c"], ["d"], name="r3"),
             helper.make_node("Add", ["a", "d"], ["e" if scale else "y"], name="add")]
    inits = []
    if scale:
        inits.append(numpy_helper.from_array(np.full((1, 3, 4), scale, np.float32), "w"))
        nodes.append(helper.make_node("Mul", ["e", "w"], ["y"], name="mul"))
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])


class JoinedMaxForm(MaxForm):
    """Relu(x) -> Max(x, 0) cut in two along the last axis and joined again
    (Slice, Slice, Concat along it): correct, and its output a spatial join
    (the tflite profile's no_channel_join_of_spatial_joins reads that at a
    channel Concat that reads it)."""

    name = "joined"

    def build(self, match, variant, graph, b):
        x = match.node.input[0]
        y = b.op("Max", [x, b.initializer(np.zeros((), _dtype(graph, x)), "zero")], "max")
        rank, half = len(graph.shape(x)), graph.shape(x)[-1] // 2
        axis = b.initializer(np.array([rank - 1], np.int64), "axis")
        cut = [b.initializer(np.array([v], np.int64), f"at{v}") for v in (0, half, 2 ** 62)]
        halves = [b.op("Slice", [y, cut[k], cut[k + 1], axis], f"half{k}") for k in (0, 1)]
        return {match.node.output[0]: b.op("Concat", halves, "join", axis=rank - 1)}


@dataclass(frozen=True)
class ReluJoinedFirst(ReluToMax):
    """Relu -> the joined form first, then max."""

    name: ClassVar[str] = "relu-joined"
    forms: ClassVar[tuple] = (JoinedMaxForm(), MaxForm())
