"""Sketches: what the HTML report draws of a rewrite.

A sketch is a small, plain description of a subgraph -- its nodes (op type,
the attributes that matter, a role) and its edges (the value's name and
shape) -- taken while the driver still has the graph, so the report can draw
the original node among its neighbours and the replacement that took its
place without keeping any model alive.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import onnx

from .folding import attributes

NEIGHBOURS = 4          # producers and consumers drawn around the original node, at most, each side
MAX_NODES = 60          # a larger replacement is drawn in part, and says so
SHOWN_ATTRIBUTES = ("kernel_shape", "strides", "dilations", "pads", "group", "blocksize", "mode", "perm", "axis",
                    "coordinate_transformation_mode", "output_padding", "auto_pad")


@dataclass
class SketchNode:
    id: str
    op: str
    detail: str = ""
    role: str = "new"       # match | neighbour | new | input | output


@dataclass
class Sketch:
    nodes: list = field(default_factory=list)
    edges: list = field(default_factory=list)   # (from id, to id, label)
    truncated: int = 0                            # nodes left out

    def to_dict(self) -> dict:
        return {"nodes": [vars(n) for n in self.nodes], "edges": [list(e) for e in self.edges],
                "truncated": self.truncated}


def node_detail(node: onnx.NodeProto) -> str:
    """The attributes that tell a reader what the node does, briefly."""
    a = attributes(node)
    parts = []
    for key in SHOWN_ATTRIBUTES:
        if key not in a:
            continue
        v = a[key]
        if isinstance(v, list):
            v = "x".join(map(str, v)) if key in ("kernel_shape", "strides", "dilations") else ",".join(map(str, v))
        short = {"kernel_shape": "k", "strides": "s", "dilations": "d", "coordinate_transformation_mode": "coord",
                 "output_padding": "op", "blocksize": "block"}.get(key, key)
        parts.append(f"{short}={v}")
    return " ".join(parts)


def _shape_text(shape) -> str:
    if shape is None:
        return ""
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def sketch(nodes: Sequence[onnx.NodeProto], shape: Callable[[str], Optional[tuple]], role: str,
           label: Callable[[onnx.NodeProto], str], neighbours: Sequence[onnx.NodeProto] = (),
           is_constant: Callable[[str], bool] = lambda name: False) -> Sketch:
    """The nodes (and neighbours, drawn dimmed) with the values between
    them; values read from outside become input nodes, values nothing inside
    reads become output nodes.  Constants (weights, shapes) are left out."""
    out = Sketch()
    mine = {id(n) for n in nodes}
    drawn = list(nodes[:MAX_NODES]) + [n for n in neighbours if id(n) not in mine]
    out.truncated = max(0, len(nodes) - MAX_NODES)
    ids = {id(n): label(n) for n in drawn}
    own = {id(n) for n in nodes}
    producer = {o: n for n in drawn for o in n.output if o}
    read = {i for n in drawn for i in n.input if i}
    for n in drawn:
        out.nodes.append(SketchNode(ids[id(n)], n.op_type, node_detail(n), role if id(n) in own else "neighbour"))
    for n in drawn:
        for name in n.input:
            if not name or is_constant(name):
                continue
            src = producer.get(name)
            if src is None and id(n) not in own:
                continue  # a neighbour's other inputs are not part of the picture
            if src is None:
                src_id = f"in:{name}"
                if src_id not in {s.id for s in out.nodes}:
                    out.nodes.append(SketchNode(src_id, name, "", "input"))
            else:
                src_id = ids[id(src)]
            out.edges.append((src_id, ids[id(n)], _shape_text(shape(name))))
    for n in drawn:
        for name in n.output:
            if name and name not in read and id(n) in own:
                out.nodes.append(SketchNode(f"out:{name}", name, "", "output"))
                out.edges.append((ids[id(n)], f"out:{name}", _shape_text(shape(name))))
    return out


def neighbours_of(nodes: Sequence[onnx.NodeProto], graph) -> list:
    """Producers of the nodes' non-constant inputs and consumers of their
    outputs, in the graph, a few each side."""
    seen = {id(n) for n in nodes}
    before, after = [], []
    for n in nodes:
        for name in n.input:
            p = graph.producer(name) if name and not graph.is_constant(name) else None
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                before.append(p)
        for name in n.output:
            for c in graph.consumers(name):
                if id(c) not in seen:
                    seen.add(id(c))
                    after.append(c)
    return before[:NEIGHBOURS] + after[:NEIGHBOURS]
