"""The pass contract: match is pure, build returns new nodes, the driver alone edits.

A pass is a small object with four members:

    name          short id used on the command line ("convtranspose")
    description   one line for `cli.py passes`
    candidate(node, graph) -> bool
                  cheap filter: is this a node the pass is about at all?
                  (a ConvTranspose; a Conv whose dilations are > 1).  Nodes that
                  are not candidates never appear in the report.
    match(node, graph) -> Match | Skip
                  pure: decides whether the candidate can be rewritten; a Skip
                  carries a reason a user can act on, a Match carries a frozen
                  dataclass of everything build needs.
    build(match, graph) -> Replacement
                  new nodes, new initializers and the output mapping
                  {original output name: new value name}.

The driver verifies the replacement numerically, splices it in or rolls it
back, and records the outcome.  A pass never touches the model itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Union

import onnx


@dataclass(frozen=True, eq=False)
class Match:
    """A candidate the pass can rewrite.

    `params` is a frozen dataclass the pass defines; `nodes` lists every node
    the replacement removes (the matched node first).  `notes` are short
    facts for the report ("form=batch", "dropped taps that only read padding").
    """

    node: onnx.NodeProto
    params: Any
    nodes: tuple = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.nodes:
            object.__setattr__(self, "nodes", (self.node,))


@dataclass(frozen=True)
class Skip:
    """A candidate left alone, and why ("weight is a runtime input")."""

    reason: str


@dataclass(frozen=True, eq=False)
class Replacement:
    """What build returns: the driver splices these in place of match.nodes.

    `outputs` maps every output name of the removed nodes that is still used
    to the new value that replaces it; the driver renames the new value to the
    original name, so consumers and graph outputs are unchanged.
    """

    nodes: tuple[onnx.NodeProto, ...]
    initializers: tuple[onnx.TensorProto, ...]
    outputs: Mapping[str, str]
    notes: tuple[str, ...] = ()


MatchResult = Union[Match, Skip]


class Pass(Protocol):
    name: str
    description: str

    def candidate(self, node: onnx.NodeProto, graph: "GraphView") -> bool: ...

    def match(self, node: onnx.NodeProto, graph: "GraphView") -> MatchResult: ...

    def build(self, match: Match, graph: "GraphView") -> Replacement: ...


from .graph import GraphView  # noqa: E402  (type name used above)
