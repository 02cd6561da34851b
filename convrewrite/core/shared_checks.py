"""Local checks of one structure share one onnxruntime session.

A model with a thousand candidates of a few kinds (the same kernel geometry,
the same form) gives a thousand check models of a few *structures*: the same
nodes, attributes, shapes and types; only the names and the weights differ.
Creating an onnxruntime session costs about the same per node whatever the
batching (on the issue-12 benchmark it was most of the local checks' time),
while running one costs a few microseconds per node.  So the checks of one
structure run in one session: each side's check model with canonical names
(`v0`, `v1`, ... in order of first use) and every initializer made a graph
input, both sides side by side (one run checks both); each check feeds its
own random inputs and its own weights.

A check's structure is read from its parts (`instances`: the nodes and
values without their names, where each name stands, the initializers'
types and dims), without assembling its models: of a thousand checks, only
the first of each structure's (for its session) and those that run alone
are assembled.

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
from typing import NamedTuple, Optional, Sequence

import onnx

from .equivalence import onnxruntime_session

MIN_SHARED = 2  # checks of one structure that make it worth a session of its own


class Side(NamedTuple):
    """One model of a check (its original or its replacement) as an
    instance of its structure: which of its values feed the structure's
    session, in order: its runtime inputs, then its initializers."""

    inputs: tuple[str, ...]
    weights: tuple[str, ...]


class Values(NamedTuple):
    """What a model's structure reads of its graph inputs, outputs and
    value_info (values_of): the inputs' names; the outputs' names, None,
    the value_info's names; and each of the three without their names,
    serialised."""

    inputs: list
    named: list
    key: tuple


def values_of(inputs: Sequence[onnx.ValueInfoProto], outputs: Sequence[onnx.ValueInfoProto],
              value_info: Sequence[onnx.ValueInfoProto]) -> Values:
    """The Values of a model of these inputs, outputs and value_info."""
    return Values([vi.name for vi in inputs], [vi.name for vi in outputs] + [None] + [vi.name for vi in value_info],
                  (_values_key(inputs), _values_key(outputs), _values_key(value_info)))


class ModelParts(NamedTuple):
    """What a model's structure is read from: its head_key; its nodes (the
    names of their values are not read: `io` gives them) and each node's
    (inputs, outputs); its graph inputs, outputs and value_info (Values)
    and its initializers (TensorProtos)."""

    head: bytes
    nodes: Sequence[onnx.NodeProto]
    io: Sequence[tuple]
    values: Values
    initializers: Sequence[onnx.TensorProto]


def parts_of(model: onnx.ModelProto) -> Optional[ModelParts]:
    """The ModelParts of `model`; None where it cannot share a session (local functions, sparse initializers)."""
    g = model.graph
    if model.functions or g.sparse_initializer:
        return None
    # [:] (here and below): a list of the repeated field at once; iterating the field
    # itself ends in an IndexError whose message is formatted, many times its cost
    nodes = g.node[:]
    return ModelParts(head_key(model), nodes, [(n.input[:], n.output[:]) for n in nodes],
                      values_of(g.input[:], g.output[:], g.value_info[:]), g.initializer[:])


def structure_of(model: onnx.ModelProto) -> Optional[tuple]:
    """The key of `model`'s structure (instances); None when it cannot share one."""
    parts = parts_of(model)
    found = None if parts is None else instances([parts])
    return None if found is None else found[0]


def head_key(model: onnx.ModelProto) -> bytes:
    """What a session model keeps of `model` but its graph: its IR version and opsets (_canonical), serialised."""
    head = onnx.ModelProto()
    head.ir_version = model.ir_version
    head.opset_import.extend(model.opset_import[:])
    return head.SerializeToString(deterministic=True)


def instances(models: Sequence[ModelParts]) -> Optional[tuple[tuple, tuple]]:
    """(key, Sides): `models` (the models of a check) taken together as an
    instance of a structure, and each as a Side; None where one cannot
    share a session (a graph attribute, an initializer named as an input).

    The key holds what _canonical's models hold but their value names: the
    nodes without their names, labels and doc strings, the heads, the graph
    inputs, outputs and value_info without their names; and where each name
    stands, as the number of its first use in _canonical's order; and each
    initializer's type and dims.  Equal keys mean equal session models: the
    names _canonical gives are those numbers."""
    nodes = _nodes_key([m.nodes for m in models])
    if _has_subgraph(nodes, models):
        return None
    key, sides = [nodes], []
    for m in models:
        fed, weights = m.values.inputs, [t.name for t in m.initializers]
        where = _where(fed + weights, m.io, m.values.named)
        if where is None:   # an initializer overriding an input
            return None
        key += (len(m.nodes), m.head, m.values.key, where,
                tuple([(t.data_type, tuple(t.dims[:])) for t in m.initializers]))
        sides.append(Side(tuple(fed), tuple(weights)))
    return tuple(key), tuple(sides)


def _where(fed: list, io: Sequence[tuple], named: list) -> Optional[tuple]:
    """Where each name stands, as the number of its first use in
    _canonical's order: `fed` (the graph inputs, then the initializers),
    then per node (`io`) its inputs and its outputs, then `named` (the
    graph outputs, None, the value_info); "" (no value) and None (the end
    of a list) first, apart from every name.  None where a name is fed
    twice."""
    names = ["", None, *fed]
    for ins, outs in io:
        names += ins
        names.append(None)
        names += outs
        names.append(None)
    names += named
    first: dict = {}
    where = tuple([first.setdefault(name, len(first)) for name in names])
    if fed and where[len(fed) + 1] != len(fed) + 1:   # numbered in order: fed[-1] is len(fed) + 1 when none repeats
        return None
    return where


_SUBGRAPHS = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
_HAS_SUBGRAPH: dict = {}   # _nodes_key -> whether one of those nodes has a graph attribute
MAX_KEPT = 4096            # kinds of nodes _HAS_SUBGRAPH keeps (a run has tens)


def _has_subgraph(key: bytes, models: Sequence[ModelParts]) -> bool:
    """Whether a node of `models` has a graph attribute; `key`: their
    _nodes_key, which holds every attribute: equal keys, the same answer."""
    has = _HAS_SUBGRAPH.get(key)
    if has is None:
        has = any(a.type in _SUBGRAPHS for m in models for n in m.nodes for a in n.attribute[:])
        if len(_HAS_SUBGRAPH) < MAX_KEPT:
            _HAS_SUBGRAPH[key] = has
    return has


def _nodes_key(lists: Sequence[Sequence[onnx.NodeProto]]) -> bytes:
    """The nodes of `lists` without the names of their values, their own
    names, labels and doc strings (_canonical clears those), serialised."""
    g = onnx.GraphProto()
    for nodes in lists:
        g.node.extend(nodes)   # copies, in C: copying field by field costs several times more
    for node in g.node[:]:
        for what in _NODE_VALUES:
            node.ClearField(what)
    return g.SerializeToString(deterministic=True)


def _values_key(values: Sequence[onnx.ValueInfoProto]) -> tuple:
    """`values` without their names, serialised (one by one: a graph of them costs more for the few a check has)."""
    out = []
    for vi in values:
        copy = onnx.ValueInfoProto()
        copy.CopyFrom(vi)
        copy.ClearField("name")
        out.append(copy.SerializeToString(deterministic=True))
    return tuple(out)


def shared_model(model: onnx.ModelProto) -> bytes:
    """The session model of `model`'s structure: canonical names, and each
    initializer a graph input of its type and dims (after the runtime inputs)."""
    return _session_model(model, "v").SerializeToString()


def paired_model(original: onnx.ModelProto, replacement: onnx.ModelProto) -> Optional[bytes]:
    """One session model of both sides: shared_model's of each, side by
    side, their values named a0, a1, ... and b0, b1, ... (the inputs: the
    original's, then the replacement's; the outputs likewise).  Each side
    is computed as in its own session, by the same kernels on the same
    values; one run checks both.  None where the two models' IR versions or
    opsets differ (the two models of one check have the graph's)."""
    if head_key(original) != head_key(replacement):
        return None
    out = _session_model(original, "a")
    other = _session_model(replacement, "b").graph
    for what in ("input", "node", "output", "value_info"):
        getattr(out.graph, what).extend(getattr(other, what)[:])
    return out.SerializeToString()


def _session_model(model: onnx.ModelProto, prefix: str) -> onnx.ModelProto:
    """shared_model's model, its values named with `prefix`."""
    g = model.graph
    inputs = [i.name for i in g.input]
    out = _canonical(model, inputs + [t.name for t in g.initializer], prefix)
    for k, t in enumerate(g.initializer):
        vi = out.graph.input.add()
        vi.name = f"{prefix}{len(inputs) + k}"
        tensor = vi.type.tensor_type
        tensor.elem_type = t.data_type
        tensor.shape.SetInParent()   # a scalar has a shape of no dims, not an unknown one
        for d in t.dims:
            tensor.shape.dim.add().dim_value = d
    return out


def _canonical(model: onnx.ModelProto, fed: list[str], prefix: str = "v") -> onnx.ModelProto:
    """`model` without initializers, its values renamed v0, v1, ... (with
    another `prefix` than v, if given): `fed` (runtime inputs, then
    initializers) first, then in order of first use; node names and doc
    strings cleared (they do not change what it computes)."""
    names = {name: f"{prefix}{k}" for k, name in enumerate(fed)}

    def canonical(name: str) -> str:
        return names.setdefault(name, f"{prefix}{len(names)}") if name else ""

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
_NODE_VALUES = ("input", "output") + _NODE_LABELS   # what _nodes_key clears of a node


@dataclass
class Structure:
    """Checks sharing one structure pair (original side, replacement side):
    `checks` their indices, `sides` their (original, replacement) Sides."""

    checks: list[int]
    sides: list[tuple[Side, Side]]


def shared_structures(checks: Sequence) -> list[Structure]:
    """The checks that share their structure pair with at least
    MIN_SHARED - 1 other checks, a Structure per pair; quantized checks
    (`steps`) excluded."""
    by_pair: dict[tuple, Structure] = {}
    for k, c in enumerate(checks):
        if c.steps:
            continue
        found = c.instance
        if found is None:
            continue
        s = by_pair.setdefault(found[0], Structure([], []))
        s.checks.append(k)
        s.sides.append(found[1])
    return [s for s in by_pair.values() if len(s.checks) >= MIN_SHARED]


class SharedSession:
    """A session of a structure, and the runs of its instances."""

    def __init__(self, model: Optional[bytes], names: list[str]):
        # one thread: a structure's model is a rewrite or two, too small for its work to split well,
        # and a whole-model run may be going on the other core (measured: the deferred local checks
        # of the 1,002-candidate model 169 -> 128 ms; the same results, every sample model's report)
        try:
            self.session = None if model is None else onnxruntime_session(model, threads=1)
        except Exception:  # onnxruntime refuses it: each check runs alone
            self.session = None
        # named once: run(None) lists them again at every run
        self.outputs = None if self.session is None else [o.name for o in self.session.get_outputs()]
        self.names = names   # the feeds', in the order run takes their values

    def run(self, values: list) -> Optional[list]:
        """The session's outputs on `values` (fed to `names`); None when it cannot run them."""
        if self.session is None:
            return None
        try:
            return self.session.run(self.outputs, dict(zip(self.names, values)))
        except Exception:  # onnxruntime raises several unrelated types; the check runs alone instead
            return None


class StructureSessions:
    """The sessions that run the checks of one Structure: both sides in one
    (paired_model: one run a check) where onnxruntime creates and runs it;
    else one session per side (shared_model), made when first needed.
    `first`: the LocalCheck of the structure's first check."""

    def __init__(self, first):
        self.models = (first.original, first.replacement)
        counts = [len(m.graph.input) + len(m.graph.initializer) for m in self.models]
        self.split = len(self.models[0].graph.output)
        names = [f"a{k}" for k in range(counts[0])] + [f"b{k}" for k in range(counts[1])]
        self.both = SharedSession(paired_model(*self.models), names)
        self.sides: Optional[list] = None

    def run(self, values: Sequence[list]) -> list:
        """Per side, its outputs on its `values` (a Side's runtime inputs,
        then its initializers' data), or None where no session runs it."""
        out = self.both.run(values[0] + values[1])
        if out is not None:
            return [out[:self.split], out[self.split:]]
        if self.sides is None:
            self.sides = [SharedSession(shared_model(m), [f"v{k}" for k in range(n)])
                          for m, n in zip(self.models, map(len, values))]
        return [session.run(v) for session, v in zip(self.sides, values)]
