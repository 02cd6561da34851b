"""Small passes for testing the driver itself (not shipped)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from convrewrite.core.builder import Builder
from convrewrite.core.rewrite import Match, Skip


@dataclass(frozen=True)
class ReluToMax:
    """Relu(x) -> Max(x, 0): correct."""

    name: ClassVar[str] = "relu-to-max"
    description: ClassVar[str] = "Relu(x) -> Max(x, 0)"

    @classmethod
    def from_options(cls, options):
        return cls()

    def candidate(self, node, graph):
        return node.op_type == "Relu"

    def match(self, node, graph):
        if graph.dtype(node.input[0]) is None:
            return Skip(f"Relu '{graph.label(node)}': input type unknown")
        if node.name.startswith("keep"):
            return Skip(f"Relu '{graph.label(node)}': name starts with keep")
        return Match(node, None)

    def build(self, match, graph):
        b = Builder(graph, match.node, self.name)
        from onnx import helper
        dtype = helper.tensor_dtype_to_np_dtype(graph.dtype(match.node.input[0]))
        zero = b.initializer(np.zeros((), dtype), "zero")
        y = b.op("Max", [match.node.input[0], zero], "max")
        return b.replacement({match.node.output[0]: y})


@dataclass(frozen=True)
class ReluToIdentity(ReluToMax):
    """Relu(x) -> x: wrong on negative inputs; must be caught."""

    name: ClassVar[str] = "relu-to-identity"

    def build(self, match, graph):
        b = Builder(graph, match.node, self.name)
        y = b.op("Identity", [match.node.input[0]], "identity")
        return b.replacement({match.node.output[0]: y})


@dataclass(frozen=True)
class ReluBroken(ReluToMax):
    """build raises: must be reported, not crash the run."""

    name: ClassVar[str] = "relu-broken"

    def build(self, match, graph):
        raise ZeroDivisionError("boom")


@dataclass(frozen=True)
class ReluWrongOnlyInContext(ReluToMax):
    """Relu(x) -> Abs(x) * 0 + Relu(x) would be fine; this one replaces Relu by
    Relu(x) + 1e-3 only where x is a graph input with > 4 elements... kept
    simple: it is exact on the local check's random inputs (which are all we
    can see locally) only because it uses a threshold: Relu(x - 10)."""

    name: ClassVar[str] = "relu-shift"

    def build(self, match, graph):
        b = Builder(graph, match.node, self.name)
        from onnx import helper
        dtype = helper.tensor_dtype_to_np_dtype(graph.dtype(match.node.input[0]))
        ten = b.initializer(np.array(10, dtype), "ten")
        t = b.op("Sub", [match.node.input[0], ten], "sub")
        t = b.op("Relu", [t], "relu")
        t = b.op("Add", [t, ten], "add")
        y = b.op("Max", [t, b.initializer(np.array(0, dtype), "zero")], "max")
        return b.replacement({match.node.output[0]: y})


@dataclass(frozen=True)
class ReluPairs(ReluToMax):
    """Matches Relu -> Relu as one two-node rewrite (a "chain").  With
    wrong_chain, the chain's replacement is wrong (Neg), so the driver must
    roll it back and re-match each node alone with `match_alone`."""

    name: ClassVar[str] = "relu-pairs"
    wrong_chain: bool = False

    def match(self, node, graph):
        nxt = graph.consumers(node.output[0])
        if len(nxt) == 1 and nxt[0].op_type == "Relu":
            return Match(node, "pair", nodes=(node, nxt[0]))
        return self.match_alone(node, graph)

    def match_alone(self, node, graph):
        return Match(node, "single")

    def build(self, match, graph):
        if match.params == "single":
            return super().build(match, graph)
        b = Builder(graph, match.node, self.name)
        if self.wrong_chain:
            y = b.op("Neg", [match.node.input[0]], "pair")
        else:  # Relu(Relu(x)) = Max(x, 0)
            zero = b.initializer(np.zeros((), np.float32), "zero")
            y = b.op("Max", [match.node.input[0], zero], "pair")
        return b.replacement({match.nodes[1].output[0]: y})


@dataclass(frozen=True)
class AddToSub(ReluToMax):
    """Add(x, w) -> Sub(x, -w) with -w folded offline; sign=-1 makes it wrong."""

    name: ClassVar[str] = "add-to-sub"
    sign: int = 1

    def candidate(self, node, graph):
        return node.op_type == "Add"

    def match(self, node, graph):
        return Match(node, None)

    def build(self, match, graph):
        b = Builder(graph, match.node, self.name)
        neg = b.initializer(-self.sign * graph.constant(match.node.input[1]), "neg_w")
        return b.replacement({match.node.output[0]: b.op("Sub", [match.node.input[0], neg], "sub")})
