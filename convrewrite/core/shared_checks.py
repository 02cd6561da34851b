"""Local checks of one structure share one onnxruntime session.

A model with a thousand candidates of a few kinds (the same kernel geometry,
the same form) gives a thousand check models of a few *structures*: the same
nodes, attributes, shapes and types; only the names and the weights differ.
Creating an onnxruntime session costs about the same per node whatever the
batching (on the issue-12 benchmark it was most of the local checks' time),
while running one costs a few microseconds per node.  So the checks of one
structure run in one session per side: the check model with canonical names
(`v0`, `v1`, ... in order of first use) and every initializer made a graph
input; each check feeds its own random inputs and its own weights.

What is checked does not change: each rewrite's original and replacement
still run on the same seeded inputs and are compared with the same
tolerance; only the weights reach onnxruntime as feeds instead of
initializers (the same values, through the same kernels; the whole-model
check then runs the model with them as initializers).  Not shared:

- quantized checks: onnxruntime's fused int8 execution, which they also run,
  fuses a QDQ group only around constant weights;
- check models with subgraphs, local functions or sparse initializers, and
  structures only one check has: these keep the merged path of
  `local_check` (many check models merged into one session);
- a check whose shared session onnxruntime cannot create or run (a kernel
  that wants a constant input): it runs alone, as before, where onnx's
  reference evaluator may stand in for the original.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import onnx

from .equivalence import onnxruntime_session
from .weights import to_array

MIN_SHARED = 2  # checks of one structure that make it worth a session of its own


@dataclass(frozen=True)
class Side:
    """One side of a check (its original or its replacement model) as an
    instance of a structure: the structure's key (_structure_key: the model
    without initializers and names, serialised, and where each name stood;
    and each initializer's type and dims), and which of the check model's
    values feed it, in order: its runtime inputs, then its initializers."""

    structure: tuple
    inputs: tuple[str, ...]
    weights: tuple[str, ...]

    def feeds(self, inputs: dict, weights: Sequence) -> dict:
        """The shared session's feeds: canonical names v0, v1, ... in the order above."""
        values = [inputs[name] for name in self.inputs] + list(weights)
        return {f"v{k}": v for k, v in enumerate(values)}


def side_of(model: onnx.ModelProto) -> Optional[Side]:
    """`model` as an instance of its structure; None when it cannot share one."""
    g = model.graph
    if model.functions or g.sparse_initializer or any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node[:] for a in n.attribute[:]):
        return None
    # [:] (here and below): a list of the repeated field at once; iterating the field
    # itself ends in an IndexError whose message is formatted, many times its cost
    initializers = g.initializer[:]
    inputs, weights = [i.name for i in g.input[:]], [t.name for t in initializers]
    if len(set(inputs + weights)) != len(inputs) + len(weights):   # an initializer overriding an input
        return None
    key = (*_structure_key(model, inputs + weights), tuple((t.data_type, tuple(t.dims[:])) for t in initializers))
    return Side(key, tuple(inputs), tuple(weights))


def _structure_key(model: onnx.ModelProto, fed: list[str]) -> tuple[bytes, tuple]:
    """What _canonical(model, fed) holds, cheaper to make (one per side of
    every check): the model without initializers and with every value name
    cleared (serialised), and where each name stood as its number in
    _canonical's order.  Equal keys mean equal canonical models: the names
    _canonical gives are these numbers.  `fed`: the graph inputs' names,
    then the initializers', all different (side_of)."""
    out = onnx.ModelProto()
    out.ir_version = model.ir_version
    out.opset_import.extend(model.opset_import[:])
    g = out.graph
    g.CopyFrom(model.graph)   # one copy of the graph in C: copying its fields one by one costs several times more
    for what in _GRAPH_DROPPED:
        g.ClearField(what)
    order = {name: k for k, name in enumerate(fed)}
    nodes, outputs, value_info = g.node[:], g.output[:], g.value_info[:]
    # per node its inputs then its outputs, then the graph outputs and value_info: as numbers (inline: once
    # per list of every side of every check, a function call costs as much as the numbering)
    where = [tuple([order.setdefault(name, len(order)) if name else -1 for name in names])
             for names in [n[:] for node in nodes for n in (node.input, node.output)]
             + [[vi.name for vi in outputs], [vi.name for vi in value_info]]]
    for node in nodes:
        for what in _NODE_VALUES:
            node.ClearField(what)
    for vi in g.input[:] + outputs + value_info:
        vi.ClearField("name")
    return out.SerializeToString(deterministic=True), tuple(where)


def shared_model(model: onnx.ModelProto) -> bytes:
    """The session model of `model`'s structure: canonical names, and each
    initializer a graph input of its type and dims (after the runtime inputs)."""
    g = model.graph
    inputs = [i.name for i in g.input]
    out = _canonical(model, inputs + [t.name for t in g.initializer])
    for k, t in enumerate(g.initializer):
        vi = out.graph.input.add()
        vi.name = f"v{len(inputs) + k}"
        tensor = vi.type.tensor_type
        tensor.elem_type = t.data_type
        tensor.shape.SetInParent()   # a scalar has a shape of no dims, not an unknown one
        for d in t.dims:
            tensor.shape.dim.add().dim_value = d
    return out.SerializeToString()


def _canonical(model: onnx.ModelProto, fed: list[str]) -> onnx.ModelProto:
    """`model` without initializers, its values renamed v0, v1, ...: `fed`
    (runtime inputs, then initializers) first, then in order of first use;
    node names and doc strings cleared (they do not change what it computes)."""
    names = {name: f"v{k}" for k, name in enumerate(fed)}

    def canonical(name: str) -> str:
        return names.setdefault(name, f"v{len(names)}") if name else ""

    g = model.graph
    out = onnx.ModelProto()
    out.ir_version = model.ir_version
    out.opset_import.extend(model.opset_import)
    shared = out.graph
    shared.name = "shared"
    shared.input.extend(g.input)
    shared.node.extend(g.node)
    shared.output.extend(g.output)
    shared.value_info.extend(g.value_info)
    for vi in shared.input:
        vi.name = canonical(vi.name)
    for node in shared.node:
        for what in _NODE_LABELS:
            node.ClearField(what)
        renamed = [canonical(name) for name in node.input]
        del node.input[:]
        node.input.extend(renamed)
        renamed = [canonical(name) for name in node.output]
        del node.output[:]
        node.output.extend(renamed)
    for vi in list(shared.output) + list(shared.value_info):
        vi.name = canonical(vi.name)
    return out


_NODE_LABELS = tuple(f for f in ("name", "doc_string", "metadata_props") if f in onnx.NodeProto.DESCRIPTOR.fields_by_name)
_NODE_VALUES = ("input", "output") + _NODE_LABELS   # what _structure_key clears of a node
_GRAPH_KEPT = ("input", "node", "output", "value_info")   # what _canonical keeps of the graph
_GRAPH_DROPPED = tuple(f.name for f in onnx.GraphProto.DESCRIPTOR.fields if f.name not in _GRAPH_KEPT)


@dataclass
class Structure:
    """Checks sharing one structure pair (original side, replacement side):
    `checks` their indices, `sides` their (original, replacement) Sides."""

    checks: list[int]
    sides: list[tuple[Side, Side]]

    def session_models(self, first) -> tuple[bytes, bytes]:
        """The session models of both sides, from `first`: the first check's LocalCheck."""
        return shared_model(first.original), shared_model(first.replacement)


def shared_structures(checks: Sequence) -> list[Structure]:
    """The checks that share their structure pair with at least
    MIN_SHARED - 1 other checks, a Structure per pair; quantized checks
    (`steps`) excluded."""
    by_pair: dict[tuple, Structure] = {}
    for k, c in enumerate(checks):
        if c.steps:
            continue
        pair = (side_of(c.original), side_of(c.replacement))
        if None in pair:
            continue
        s = by_pair.setdefault((pair[0].structure, pair[1].structure), Structure([], []))
        s.checks.append(k)
        s.sides.append(pair)
    return [s for s in by_pair.values() if len(s.checks) >= MIN_SHARED]


class SharedSession:
    """The session of one structure, and the runs of its instances."""

    def __init__(self, model: bytes):
        try:
            self.session = onnxruntime_session(model)
        except Exception:  # onnxruntime refuses it: each check runs alone
            self.session = None
        # named once: run(None) lists them again at every run
        self.outputs = None if self.session is None else [o.name for o in self.session.get_outputs()]

    def run(self, side: Side, model: onnx.ModelProto, weights: dict, inputs: dict) -> Optional[list]:
        """The outputs of `model`, a check model that is `side` (its stubs
        filled from `weights`, as LocalCheck.weights), on `inputs`; None
        when the shared session cannot run it."""
        if self.session is None:
            return None
        try:
            data = [to_array(weights[t.name]() if t.name in weights else t) for t in model.graph.initializer[:]]
            return self.session.run(self.outputs, side.feeds(inputs, data))
        except Exception:  # onnxruntime raises several unrelated types; the check runs alone instead
            return None
