"""A multi-node match that reaches a node another rewrite of the pass took is
matched alone (driver._Run._plan), not skipped as an overlap: never a node
claimed twice, no recursion where the match alone spans several nodes too
(a quantized group's), and chains rolled back matched alone again beside it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import toy_passes as toy
from convrewrite import optimize
from convrewrite.core import driver
from convrewrite.core.equivalence import check_models
from convrewrite.core.report import REWRITTEN, ROLLED_BACK, SKIPPED
from convrewrite.core.rewrite import Match
from convrewrite.core.splice import apply_rewrites


def _two_relus_into_add() -> onnx.ModelProto:
    """y = Relu(x) + Relu(-x): each Relu's one reader is the Add."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4])
    nodes = [helper.make_node("Relu", ["x"], ["a0"], name="r0"),
             helper.make_node("Neg", ["x"], ["n1"], name="neg"),
             helper.make_node("Relu", ["n1"], ["a1"], name="r1")]
    nodes.append(helper.make_node("Add", ["a0", "a1"], ["y"], name="add"))
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])


class _IntoAddForm(toy.MaxForm):
    """Relu(x) + z -> Max(x, 0) + z for the two-node match; `wrong`: Max(x, 1) + z."""

    name = "into-add"

    def __init__(self, wrong: bool):
        self.wrong = wrong

    def applies(self, match, graph):
        return None if match.params == "pair" else "a single Relu"

    def build(self, match, variant, graph, b):
        relu, add = match.nodes
        other = [i for i in add.input if i != relu.output[0]][0]
        floor = b.initializer(np.array(1.0 if self.wrong else 0.0, np.float32), "floor")
        y = b.op("Max", [relu.input[0], floor], "max")
        return {add.output[0]: b.op("Add", [y, other], "add")}


@dataclass(frozen=True)
class _ReluIntoAdd(toy.ReluToMax):
    """A Relu with the Add reading it as one match (a chain); alone, the Relu
    by itself, or with `group`, the Relu and the Add again (as a quantized
    group's match alone spans its Q)."""

    name: ClassVar[str] = "relu-into-add"
    wrong_chain: bool = False
    group: bool = False

    @property
    def forms(self):
        return (_IntoAddForm(self.wrong_chain), toy.SingleForm())

    def match(self, node, graph):
        readers = graph.consumers(node.output[0])
        if len(readers) == 1 and readers[0].op_type == "Add":
            return Match(node, "pair", nodes=(node, readers[0]))
        return self.match_alone(node, graph)

    def match_alone(self, node, graph):
        readers = graph.consumers(node.output[0])
        if self.group and len(readers) == 1 and readers[0].op_type == "Add":
            return Match(node, "pair", nodes=(node, readers[0]))
        return Match(node, "single")


def _claims(monkeypatch) -> list:
    """The nodes (ids) of each candidate planned with a match, pass by pass."""
    planned, real = [], driver._Run._plan_all

    def spy(self, graph, p, only):
        out = real(self, graph, p, only)
        planned.append([id(n) for c in out if c.match is not None for n in c.match.nodes])
        return out

    monkeypatch.setattr(driver._Run, "_plan_all", spy)
    return planned


def _statuses(report) -> list:
    return [(r.node, r.status, r.code) for r in report.rewrites]


def test_a_chain_reaching_a_taken_node_is_matched_alone(monkeypatch):
    model = _two_relus_into_add()
    planned = _claims(monkeypatch)
    new, report = optimize(model, passes=[_ReluIntoAdd()])
    assert _statuses(report) == [("r0", REWRITTEN, ""), ("r1", REWRITTEN, "")]
    assert report.rewrites[0].replaced_nodes != report.rewrites[1].replaced_nodes
    assert "overlaps another rewrite of this pass; matched alone" in report.rewrites[1].notes[-1]
    assert all(len(ids) == len(set(ids)) for ids in planned)
    onnx.checker.check_model(new, full_check=True)
    assert not [n for n in new.graph.node if n.op_type == "Relu"]
    assert check_models(model, new)


def test_a_match_alone_that_spans_taken_nodes_too_is_an_overlap_not_a_recursion(monkeypatch):
    model = _two_relus_into_add()
    planned = _claims(monkeypatch)
    new, report = optimize(model, passes=[_ReluIntoAdd(group=True)])
    assert _statuses(report) == [("r0", REWRITTEN, ""), ("r1", SKIPPED, "overlap")]
    assert all(len(ids) == len(set(ids)) for ids in planned)
    onnx.checker.check_model(new, full_check=True)
    assert [n.name for n in new.graph.node if n.op_type == "Relu"] == ["r1"]
    assert check_models(model, new)


@pytest.mark.parametrize("group", [False, True])
def test_a_rolled_back_chain_is_matched_alone_beside_the_branch_matched_alone(monkeypatch, group):
    """The first chain is wrong (its local check fails): its Relu is matched
    again alone; the second branch, matched alone as it overlapped the chain,
    stays rewritten (with `group`, its match alone overlapped too: skipped,
    and the first one's match alone is the wrong chain again); no node is
    claimed twice in a splice."""
    model = _two_relus_into_add()
    spliced = []
    monkeypatch.setattr(driver, "apply_rewrites", lambda m, pairs, *a: spliced.append(
        [id(n) for match, _ in pairs for n in match.nodes]) or apply_rewrites(m, pairs, *a))
    new, report = optimize(model, passes=[_ReluIntoAdd(wrong_chain=True, group=group)])
    assert spliced and all(len(ids) == len(set(ids)) for ids in spliced)
    onnx.checker.check_model(new, full_check=True)
    assert check_models(model, new)
    if group:
        assert _statuses(report) == [("r1", SKIPPED, "overlap"), ("r0", ROLLED_BACK, "verification-failed")]
    else:
        assert _statuses(report) == [("r1", REWRITTEN, ""), ("r0", REWRITTEN, "")]
        assert "matched alone: its chain was rolled back" in report.rewrites[1].notes[-1]
