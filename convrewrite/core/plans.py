"""Plan once per structure: the chooser's decision, kept for every match of the same structure.

A model with a thousand candidates has a few *structures*: matches whose
nodes have the same operators and attributes, whose values have the same
types, shapes and constancy, and whose params are the same numbers -- only
the names and the weights' values differ.  Without a target, which form the
chooser takes and why (lowering.lower: the ranking of every form, the MAC
bound weighed on the final graphs, the cost model's estimates, the advice)
is a function of that structure alone, so it is worked out once per
structure and each further match of it only builds its own replacement
(with its own weights and names) from the kept option.  So are the original
nodes' figures for the report (cost.subgraph_cost).

What a structure is (`key`), for a pass that has a `structure(match,
name_of)` method -- its params with every name written by position
(`name_of`), or None for a match it does not plan (a quantized one): the
pass says so, and that its forms' choice reads nothing but this key:

- per matched node: operator, domain, attributes;
- per value the matched nodes read or write, in order of first use: element
  type, shape, whether it is constant, an initializer, a graph input or
  output, read by an If/Loop/Scan body or by a node outside the match, and
  the value itself where it is a small integer constant (pads, axes,
  shapes).  Other constants' values (weights, biases, a Resize's scales) are
  not part of it: a pass reads what its choice depends on in `match`, into
  the params (a Resize's scales are its spec), and its forms read weights
  only to build;
- the pass's `structure`: its params, each name written as the position of
  that name among the values above (`v3`) or the matched nodes (`n1`), a
  NodeProto as its position in the match.  A name that is not one of them
  stays as it is (tagged, so that it never equals a position), and a field
  the pass forgets to write keeps its name:
  such a match then shares its plan with no other (the safe way to be
  wrong);
- the pass, its options, the run's passes and the model's opsets.

Not planned (each match ranked on its own, as before): with a target (its
judgement reads the existing nodes around a replacement), in a model with
QuantizeLinear/DequantizeLinear (the quantized forms read the neighbouring
quantizers' scales), for a pass without `structure`, and where it gives
None.  A Skip is never kept: its reason names the node.  tests/core/
test_plans.py runs models both ways and lowers every match that took a kept
plan on its own as well: the same option, notes, model and report.
"""
from __future__ import annotations

from math import prod
from typing import Optional

import onnx

SMALL_CONSTANT = 64   # integer constants of at most this many elements are part of the key by value
_INDEX_TYPES = frozenset({onnx.TensorProto.INT64, onnx.TensorProto.INT32})


def key(p, match, graph, run_passes: tuple) -> Optional[tuple]:
    """The structure of `match` (see the module docstring), or None where
    it is planned on its own."""
    if not hasattr(p, "structure") or graph.has_qdq:
        return None
    names: dict[str, str] = {"": ""}
    values = []
    inside = {id(n) for n in match.nodes}
    nodes = []
    for k, node in enumerate(match.nodes):
        if node.name:
            names.setdefault(node.name, f"n{k}")
        refs = []
        for produced, group in ((False, node.input[:]), (True, node.output[:])):   # slices: see graph._indexes
            for name in group:
                if name and (name not in names or names[name][0] != "v"):
                    names[name] = f"v{len(values)}"
                    values.append(_facts(name, graph, inside, produced))
                refs.append(names[name])
            refs.append("|")
        nodes.append((node.op_type, node.domain, tuple(a.SerializeToString() for a in node.attribute[:]), tuple(refs)))
    # a name that is not the match's stays itself, tagged: never equal to a position ("v3")
    params = p.structure(match, lambda name: names.get(name, ("name", name)))
    if params is None:
        return None
    opsets = tuple((i.domain, i.version) for i in graph.model.opset_import[:])
    return Structure((p.name, p.options, run_passes, opsets, tuple(nodes), tuple(values), params))


class Structure(tuple):
    """A structure key: the tuple, hashed once (a key is looked up more than
    once, and its hash walks every field of the params and the options)."""

    def __hash__(self) -> int:
        found = self.__dict__.get("hash")
        if found is None:
            found = self.__dict__["hash"] = tuple.__hash__(self)
        return found


def _facts(name: str, graph, inside: set, produced: bool) -> tuple:
    """What a form may read of a value through the view; of a value a
    matched node writes (first), its type and where else it goes."""
    shape, dtype = graph.shape(name), graph.dtype(name)
    outside = not inside.issuperset(map(id, graph.consumers(name)))
    where = (name in graph.graph_outputs, name in graph.outer_references, outside)
    if produced:
        return (dtype, shape) + where
    constant = graph.is_constant(name)
    small = None
    if (constant and dtype in _INDEX_TYPES and shape is not None and all(isinstance(d, int) for d in shape)
            and prod(shape) <= SMALL_CONSTANT):
        value = graph.constant(name)
        small = None if value is None else (value.dtype.str, value.shape, value.tobytes())
    return (dtype, shape, constant, name in graph.initializers, graph.is_graph_input(name), small) + where


class Plans:
    """The kept decisions of one run: structure key -> what was decided."""

    def __init__(self):
        self.kept: dict = {}     # what -> {structure key: decision}
        self.hits = 0
        self._keys: dict = {}    # structure key -> the first equal key seen

    def one(self, k: Optional[tuple]) -> Optional[tuple]:
        """The key equal to `k` that the run met first (`k` itself, if none):
        looked up by it, a kept decision is found by identity, without
        comparing the keys' fields again."""
        return None if k is None else self._keys.setdefault(k, k)

    def get(self, k: Optional[tuple], what: str):
        if k is None:
            return None
        found = self.kept.get(what, {}).get(k)
        if found is not None:
            self.hits += 1
        return found

    def put(self, k: Optional[tuple], what: str, value) -> None:
        if k is not None:
            self.kept.setdefault(what, {})[k] = value
