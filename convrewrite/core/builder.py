"""Builder: how a pass writes its replacement.

Every node and value it creates is named `<original node>/<pass>/<what>`, so
each node in an optimized model says where it came from; names never collide
with names already in the graph.

    b = Builder(graph, node, "convtranspose")
    w = b.initializer(kernel, "weight")
    y = b.op("Conv", [x, w], "conv", kernel_shape=[2, 2])
    return b.replacement({node.output[0]: y})
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import onnx
from onnx import helper

from .graph import GraphView
from .rewrite import Replacement
from .weights import from_array


class Builder:
    def __init__(self, graph: GraphView, node: onnx.NodeProto, pass_name: str):
        self.graph = graph
        self.prefix = f"{graph.label(node)}/{pass_name}"
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.notes: list[str] = []
        self._used: set[str] = set()
        self._next: dict[str, int] = {}   # base name -> the suffix its search goes on from

    def name(self, what: str) -> str:
        """A fresh name `<prefix>/<what>`, suffixed if it is taken: the first
        of base, base_1, base_2, ... that is free.  Names are only ever taken
        (the view's are fixed), so a search goes on where the last one for the
        same base stopped: the same name, without walking the taken ones again
        (quadratic in a build of many nodes of one kind)."""
        base = f"{self.prefix}/{what}"
        k = self._next.get(base, 0)
        name = base if k == 0 else f"{base}_{k}"
        while name in self._used or name in self.graph.names_in_use:
            k += 1
            name = f"{base}_{k}"
        self._next[base] = k + 1
        self._used.add(name)
        return name

    def initializer(self, array: np.ndarray, what: str) -> str:
        name = self.name(what)
        self.initializers.append(from_array(np.asarray(array), name))
        return name

    def ints(self, values: Sequence[int], what: str) -> str:
        """An int64 initializer (shapes, axes, starts, ends, ...)."""
        return self.initializer(np.asarray(list(values), dtype=np.int64), what)

    def op(self, op_type: str, inputs: Sequence[str], what: str, *, outputs: int = 1,
           domain: str = "", **attrs) -> "str | list[str]":
        """Append a node; returns its output name (a list when outputs > 1)."""
        node_name = self.name(what)   # taken: the one output's name
        outs = [node_name] if outputs == 1 else [f"{node_name}:{k}" for k in range(outputs)]
        if outputs != 1:
            self._used.update(outs)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(make_node(op_type, list(inputs), outs, node_name, domain, attrs))
        return outs[0] if outputs == 1 else outs

    def copy(self, node: onnx.NodeProto, inputs: Sequence[str], what: str, **attrs) -> str:
        """A node like `node` (its op, domain and attributes, `attrs` set over
        them) reading `inputs`; returns its one output.  For ops a pass moves
        to another place in the graph."""
        node_name = self.name(what)
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.name = node_name
        del new.input[:], new.output[:]
        new.input.extend(inputs)
        new.output.append(node_name)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        kept = [a for a in new.attribute[:] if a.name not in attrs]
        del new.attribute[:]
        new.attribute.extend(kept + [helper.make_attribute(k, v) for k, v in sorted(attrs.items())])
        self.nodes.append(new)
        return node_name

    def note(self, text: str) -> None:
        """A fact about what was built, for the report ("tiles=6")."""
        self.notes.append(text)

    def replacement(self, outputs: Mapping[str, str]) -> Replacement:
        return Replacement(tuple(self.nodes), tuple(self.initializers), dict(outputs), tuple(self.notes))


def make_node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str, domain: str,
              attrs: Mapping) -> onnx.NodeProto:
    """helper.make_node(op_type, inputs, outputs, name=name, domain=domain,
    **attrs), the same message: a copy of a kept node with the operator and
    attributes (a replacement builds tens of nodes from a few kinds; copying
    one is a fraction of setting its attributes again) and its own names."""
    if not attrs:   # nothing to copy: built in place
        node = onnx.NodeProto()
        node.op_type, node.domain = op_type, domain
    else:
        key = _template_key(op_type, domain, attrs)
        template = _TEMPLATES.get(key) if key is not None else None
        if template is None:
            template = _attributed_node(op_type, domain, attrs)
            if key is not None and len(_TEMPLATES) < MAX_TEMPLATES:
                _TEMPLATES[key] = template
        node = onnx.NodeProto()
        node.CopyFrom(template)
    node.input.extend(inputs)
    node.output.extend(outputs)
    if name:
        node.name = name
    return node


MAX_TEMPLATES = 4096   # kinds of node kept (a run makes tens)
_TEMPLATES: dict = {}  # _template_key -> a node with the operator, domain and attributes only


def _template_key(op_type: str, domain: str, attrs: Mapping) -> Optional[tuple]:
    """What a node's operator and attributes are, by value and type (1, True
    and 1.0 are equal keys otherwise); None where a value is not an int, a
    string or a list of ints (floats: 0.0 == -0.0), which is then built anew."""
    key = [op_type, domain]
    for k in sorted(attrs):
        value = attrs[k]
        kind = type(value)
        if kind is int or kind is str:
            key.append((k, kind, value))
        elif kind in (list, tuple) and value and all(type(v) is int for v in value):
            key.append((k, list, tuple(value)))
        else:
            return None
    return tuple(key)


def _attributed_node(op_type: str, domain: str, attrs: Mapping) -> onnx.NodeProto:
    """A node with the operator, domain and attributes as helper.make_node
    sets them: the values forms use most (an int, a float, a string, a list
    of ints) directly, any other through helper.make_attribute."""
    node = onnx.NodeProto()
    node.op_type = op_type
    node.domain = domain
    for key in sorted(attrs):
        value, kind = attrs[key], type(attrs[key])
        if kind is int:
            a = node.attribute.add()
            a.name, a.i, a.type = key, value, onnx.AttributeProto.INT
        elif kind is float:
            a = node.attribute.add()
            a.name, a.f, a.type = key, value, onnx.AttributeProto.FLOAT
        elif kind is str:
            a = node.attribute.add()
            a.name, a.s, a.type = key, value.encode("utf-8"), onnx.AttributeProto.STRING
        elif kind in (list, tuple) and value and all(type(v) is int for v in value):
            a = node.attribute.add()
            a.name, a.type = key, onnx.AttributeProto.INTS
            a.ints.extend(value)
        else:
            node.attribute.append(helper.make_attribute(key, value))
    return node
