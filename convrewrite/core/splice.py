"""Graph surgery: put replacements in, take dead code out, keep order.

Only the driver calls this.  Everything a rewrite does not touch is kept as
it was: node names and order, value names, graph inputs and outputs,
value_info of surviving values, opsets, metadata.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from typing import Optional, Sequence

import onnx
from onnx import helper

from .graph import SUBGRAPH_OPS, STANDARD_DOMAINS, node_outer_references
from . import weights
from .weights import copy_without_initializers, data_bytes
from .rewrite import Match, Replacement


def node_indices(model: onnx.ModelProto) -> dict:
    return {id(n): k for k, n in enumerate(model.graph.node[:])}   # slices: see graph._indexes


def renamed_nodes(replacement: Replacement) -> list[onnx.NodeProto]:
    """The replacement's nodes with each mapped value renamed to the original
    output name, plus an Identity where the mapped value is not produced by
    the replacement itself (e.g. the output is simply the input).  A node
    that reads and writes no mapped value is the replacement's own object,
    not a copy (most of them: only the nodes at the replacement's outputs
    are renamed); callers read the nodes or copy them into a graph, never
    edit them."""
    nodes = []
    for n, rename in _to_rename(replacement):
        if rename is not None:
            copy = onnx.NodeProto()
            copy.CopyFrom(n)
            _rename(copy, rename)
            n = copy
        nodes.append(n)
    return nodes


def _to_rename(replacement: Replacement) -> list[tuple[onnx.NodeProto, Optional[dict]]]:
    """renamed_nodes(replacement) before their renaming: each node with the
    renaming a copy of it takes (None: the node as it is)."""
    rename, passed_through = _renaming(replacement)
    return ([(n, None if rename.keys().isdisjoint(n.input[:]) and rename.keys().isdisjoint(n.output[:]) else rename)
             for n in replacement.nodes]
            + [(helper.make_node("Identity", [new], [old], name=f"{old}/identity"), None)
               for old, new in passed_through])


def _rename(node: onnx.NodeProto, rename: dict) -> None:
    """Rename `node`'s inputs and outputs in place."""
    inputs = [rename.get(name, name) for name in node.input[:]]
    outputs = [rename.get(name, name) for name in node.output[:]]
    del node.input[:], node.output[:]
    node.input.extend(inputs)
    node.output.extend(outputs)


def renamed_io(replacement: Replacement) -> list[tuple[Sequence[str], Sequence[str]]]:
    """(inputs, outputs) of each of renamed_nodes(replacement), without
    building them (lists: slices, see graph._indexes)."""
    rename, passed_through = _renaming(replacement)
    io = []
    for n in replacement.nodes:
        inputs, outputs = n.input[:], n.output[:]
        if rename.keys().isdisjoint(inputs) and rename.keys().isdisjoint(outputs):
            io.append((inputs, outputs))
        else:
            io.append(([rename.get(i, i) for i in inputs], [rename.get(o, o) for o in outputs]))
    return io + [([new], [old]) for old, new in passed_through]


def _renaming(replacement: Replacement) -> tuple[dict, list]:
    """{new value: original output} for the mapped values the replacement
    produces, and the (original output, new value) pairs it does not produce
    (worked out once per replacement: the check and the splice both ask)."""
    found = replacement.__dict__.get("_renaming")
    if found is None:
        produced = {o for n in replacement.nodes for o in n.output[:]}
        rename = {new: old for old, new in replacement.outputs.items() if new in produced}
        found = rename, [(old, new) for old, new in replacement.outputs.items() if new not in produced]
        replacement.__dict__["_renaming"] = found
    return found


def apply_rewrites(model: onnx.ModelProto, rewrites: Sequence[tuple[Match, Replacement]],
                   index: Optional[dict] = None) -> onnx.ModelProto:
    """A new model with each match's nodes replaced; `model` is not modified.
    `index` maps id(node) of the matched nodes to their positions where they
    are not `model`'s own objects (a model given back by Undo)."""
    out = copy_without_initializers(model)
    dead, added, indexes = _splice_nodes(model, out, rewrites, index)
    # Initializers are copied last and only when alive: the weights of the
    # replaced nodes are never copied at all.
    out.graph.initializer.extend(t for t in model.graph.initializer[:] if t.name not in dead)
    out.graph.initializer.extend(t for t in added if t.name not in dead)
    if indexes is None:
        toposort(out.graph)
    return out


def splice_in_place(model: onnx.ModelProto, rewrites: list,
                    initializers: Optional[dict] = None) -> tuple[list[onnx.TensorProto], Optional[tuple]]:
    """apply_rewrites on `model` itself, for a model the driver owns: the
    initializers that stay are not copied, the dead ones are taken out and
    the new ones appended (each copied in: protobuf owns what a message
    holds).  `rewrites` is emptied as it goes, so that each replacement's
    weights can be freed once they are in the model.  Returns the
    initializers taken out (with an Undo taken before, they give the model
    as it was) and the producer and consumer indexes of the result
    (graph._indexes of its nodes, worked out in the splice's own walk), or
    None where the nodes had to be sorted.  `initializers`: the model's
    initializers by name, if known (a GraphView's of it): their names are
    not read again (a protobuf string field costs ~800 instructions a read)."""
    names = None if initializers is None else set(initializers)
    dead, _, indexes = _splice_nodes(model, model, rewrites, initializer_names=names)  # new weights not held here
    g = model.graph
    held = g.initializer[:]
    positions = _dead_positions(held, dead, initializers)
    removed = [held[k] for k in positions]
    for k in reversed(positions):   # by index: the survivors stay where they are
        del g.initializer[k]
    for k in range(len(rewrites)):
        for t in rewrites[k][1].initializers:
            if t.name not in dead:
                g.initializer.append(t)
        rewrites[k] = None
    del rewrites[:]
    if indexes is None:
        toposort(g)
    return removed, indexes


def _splice_nodes(model: onnx.ModelProto, out: onnx.ModelProto, rewrites, index=None,
                  initializer_names: Optional[set] = None) -> tuple[set, list, Optional[tuple]]:
    """Put the replacements' nodes into `out` (a copy of `model` without
    initializers, or `model` itself) and remove the dead code; the names of
    the initializers (the model's and the new ones) that died, the new ones,
    and the producer and consumer indexes of the nodes where they are known
    to be in order (None: toposort them).  `initializer_names`: the names
    of `model`'s initializers, if known."""
    index = node_indices(model) if index is None else index
    start, removed = {}, set()
    for match, replacement in rewrites:
        positions = [index[id(n)] for n in match.nodes]
        removed.update(positions)
        start[min(positions)] = replacement
    g = out.graph
    old = g.node[:]
    places, dead_inputs = {}, set()   # id(node) -> (position, rank there); removed nodes have none
    for k, node in enumerate(old):
        if k in removed:
            dead_inputs.update(i for i in node.input[:] if i)
        else:
            places[id(node)] = (k, 0)
    # each replacement where its first matched node was (removed: no other node is placed there),
    # renamed_nodes made by renaming the graph's copies (one copy of a renamed node, not two)
    at = [(k, rank, node, rename) for k in start for rank, (node, rename) in enumerate(_to_rename(start[k]))]
    g.node.extend(node for _, _, node, _ in at)
    copies = g.node[len(old):]   # held (as `old` is) until arranged: places are by id()
    added = [t for _, replacement in rewrites for t in replacement.initializers]
    shared, reads_shared = _shared_constants(added, start)
    for (k, rank, _, rename), node in zip(at, copies):
        if rename is not None:
            _rename(node, rename)
        if k in reads_shared:
            _rename(node, shared)   # (the names are the replacement's own: no output is among them)
        places[id(node)] = (k, rank)
    _arrange(g.node, places)
    added = [t for t in added if t.name not in shared]
    if out.ir_version < 4:  # before IR 4 every initializer is also a graph input
        g.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in added)
    if initializer_names is None:
        initializer_names = {t.name for t in model.graph.initializer[:]}
    names = initializer_names | {t.name for t in added}
    dead, indexes = _remove_dead(g, dead_inputs, names, listed_initializers_are_constant=out.ir_version < 4)
    return dead | shared.keys(), added, indexes


def _shared_constants(added: list, start: dict) -> tuple[dict, set]:
    """identical_constants(added), but for a duplicate an If/Loop/Scan body
    of its replacement reads (renaming reaches a node's inputs only), and
    the places in `start` of the replacements reading a shared one."""
    shared = identical_constants(added)
    reads = {k for k in start if shared and not shared.keys().isdisjoint(t.name for t in start[k].initializers)}
    in_bodies = {x for k in reads for n in start[k].nodes for x in node_outer_references(n)}
    return {d: f for d, f in shared.items() if d not in in_bodies}, reads


def shared_bytes() -> int:
    """New constants below this size are compared by value: those a
    weights.Spill keeps in memory (it keeps the data of none above, which a
    run without verification on a large model would then not share, where
    one on a model given in memory does: two models for one input)."""
    return weights.MOVE_BYTES


def identical_constants(tensors: list) -> dict:
    """{name: the name of the first of `tensors` with the same value} for the
    constants that repeat one before them (type, dims and data; those below
    shared_bytes() held in raw_data).  Rewrites of one structure build the
    same constants (a Reshape's shape, a Resize's interpolation matrix, a
    phase kernel of a fixed filter): the model keeps one of each, which
    every replacement reads, not a copy per rewrite (fewer bytes to save,
    load and hand to a runtime; a session prepares each initializer once).
    Held by a digest of the data, not the data (compared in full where two
    digests agree): a model's many new weights are not copied at once."""
    first, shared, bound = {}, {}, shared_bytes()
    for t in tensors:
        if (data_bytes(t) >= bound or t.data_location == onnx.TensorProto.EXTERNAL
                or not t.HasField("raw_data")):
            continue
        data = t.raw_data
        same = first.setdefault((t.data_type, tuple(t.dims), hashlib.blake2b(data).digest()), t)
        # (a name twice, a pass's bug, is not its own duplicate: the splice would drop every copy)
        if same is not t and same.name != t.name and same.raw_data == data:
            shared[t.name] = same.name
    return shared


def _dead_positions(held: list, dead: set, initializers: Optional[dict]) -> list:
    """The positions, in order, of the tensors among `held` (a graph's
    initializers) named in `dead`: where `initializers` maps each name to the
    very tensor object held there (one tensor per name), found through it
    by identity (ids: both hold the objects), else by reading every name."""
    if initializers is not None and len(initializers) == len(held):
        where = {id(t): k for k, t in enumerate(held)}
        found = [where.get(id(initializers[n])) for n in dead if n in initializers]
        if None not in found:
            return sorted(found)
    return [k for k, t in enumerate(held) if t.name in dead]


class Undo:
    """What gives back a model as it was before splice_in_place edited it:
    its skeleton (everything but the initializers: small) and the order of
    its initializers, taken before the splice; the initializers themselves
    are the survivors in the edited model and the ones the splice took out."""

    def __init__(self, model: onnx.ModelProto):
        self.skeleton = copy_without_initializers(model)
        self.order = [t.name for t in model.graph.initializer[:]]
        self.index = node_indices(model)  # the matched nodes' positions, for apply_rewrites on the copy

    def before(self, after: onnx.ModelProto, removed: list) -> onnx.ModelProto:
        """A new model: the one spliced, as it was (`after` is not modified)."""
        out = self.skeleton
        have = {t.name: t for t in after.graph.initializer[:]}
        have.update((t.name, t) for t in removed)
        out.graph.initializer.extend(have[n] for n in self.order)
        return out


def remove_dead(g: onnx.GraphProto, maybe_dead: set, initializers: set,
                listed_initializers_are_constant: bool = False) -> set:
    """Remove nodes that fed removed nodes and now feed nothing, following
    chains backwards (Constant -> Cast -> weight); returns the names among
    `initializers` (the graph's, which the caller adds) that died with them.
    Values used by graph outputs or by subgraphs stay.  Before IR 4 every
    initializer is also listed as a graph input; such a listing goes with it."""
    return _remove_dead(g, maybe_dead, initializers, listed_initializers_are_constant)[0]


def _remove_dead(g: onnx.GraphProto, maybe_dead: set, initializers: set,
                 listed_initializers_are_constant: bool) -> tuple[set, Optional[tuple]]:
    """remove_dead, and the producer and consumer indexes of the nodes left
    (graph._indexes) where they are known to be in order (toposort would
    keep them where they are), else None: they were before the dead ones
    went, which only takes out nodes no survivor reads (_uses)."""
    uses, producer, keep, in_order, readers = _uses(g)
    removable_inits = set(initializers)
    if not listed_initializers_are_constant:
        removable_inits -= {i.name for i in g.input}
    dead_nodes, dead_inits = {}, set()
    frontier = list(maybe_dead)
    while frontier:
        name = frontier.pop()
        if uses[name] > 0 or name in keep:
            continue
        node = producer.get(name)
        if node is None:
            if name in removable_inits:
                dead_inits.add(name)
            continue
        if id(node) in dead_nodes or any(uses[o] > 0 or o in keep for o in node.output[:]):
            continue
        dead_nodes[id(node)] = node
        for i in node.input[:]:
            if i:
                uses[i] -= 1
                frontier.append(i)
    if dead_nodes:
        _filter(g.node, lambda n: id(n) not in dead_nodes)
    if dead_inits:
        _filter(g.input, lambda i: i.name not in dead_inits)
    if len(g.value_info):
        live = {v for n in g.node for v in list(n.output) + list(n.input)}
        _filter(g.value_info, lambda vi: vi.name in live)
    return dead_inits, (_without(producer, readers, dead_nodes) if in_order else None)


def _without(producer: dict, readers: dict, dead: dict) -> tuple[dict, dict]:
    """The indexes of _uses with the `dead` nodes (id -> node) taken out: what
    graph._indexes gives for the nodes left (no value is produced twice here)."""
    for node in dead.values():
        for o in node.output[:]:
            if o:
                del producer[o]
        for i in set(node.input[:]):
            left = [r for r in readers.get(i, ()) if id(r) not in dead]
            if left:
                readers[i] = left
            else:
                readers.pop(i, None)
    return producer, readers


def _uses(g: onnx.GraphProto) -> tuple[Counter, dict, set, bool, dict]:
    """In one walk over the nodes: how many times each value is read, the
    node producing each value, the values that must stay (the graph's
    outputs, and what If/Loop/Scan bodies read: subgraph_outer_references),
    whether the nodes are in order as _producers judges it (False also
    where a value is produced twice, which _producers judges otherwise), and
    the nodes reading each value (graph._indexes' consumers)."""
    readers, producer, keep = {}, {}, {o.name for o in g.output}
    early: set = set()     # values read where no node before (or the reader) produced them
    twice = False
    for n in g.node[:]:   # slices: see graph._indexes
        for o in n.output[:]:
            if o:
                twice = twice or o in producer
                producer[o] = n
        for x in n.input[:]:
            if x not in producer:
                early.add(x)
            if x:
                found = readers.get(x)
                if found is None:
                    readers[x] = [n]
                else:
                    found.append(n)
        if n.op_type in SUBGRAPH_OPS or n.domain not in STANDARD_DOMAINS:
            refs = node_outer_references(n)
            keep |= refs
            early.update(x for x in refs if x not in producer)
    uses = Counter({x: len(found) for x, found in readers.items()})   # an omitted input ("") is no value
    return uses, producer, keep, not twice and early.isdisjoint(producer), readers


def _filter(container, keep) -> None:
    items = list(container)
    places = {id(x): (k,) for k, x in enumerate(items) if keep(x)}
    if len(places) != len(items):
        _arrange(container, places)


def _arrange(container, places: dict) -> None:
    """Put the messages of a repeated field in the order of `places`
    (id(message) -> a sortable place) and drop those without a place.  The
    messages are moved, not copied: a sort reorders them in the field, and
    only the dropped ones, sorted to the end, are deleted (emptying the
    field and extending it again copied every message).  The caller holds
    the messages' Python objects while they are arranged (ids are places);
    protobuf hands the sort the same objects, which is checked."""
    last = (float("inf"),)
    container.sort(key=lambda x: places.get(id(x), last))
    kept = len(places)
    if not all(id(x) in places for x in container[:kept]):
        raise RuntimeError("splice: protobuf's sort did not keep the node objects (see splice._arrange)")
    del container[kept:]


def toposort(g: onnx.GraphProto) -> None:
    """Stable topological order: a node moves only when an input it needs
    is produced later (depth-first, dependencies first)."""
    nodes = g.node[:]
    producer, in_order = _producers(nodes)
    if in_order:
        return   # the order below would be this one: nothing moves
    deps = [sorted({producer[x] for x in set(n.input) | node_outer_references(n) if x in producer})
            for n in nodes]
    placed, order = [False] * len(nodes), []
    for root in range(len(nodes)):
        if placed[root]:
            continue
        stack, visiting = [(root, iter(deps[root]))], {root}
        while stack:
            k, pending = stack[-1]
            for d in pending:
                if not placed[d] and d not in visiting:
                    visiting.add(d)
                    stack.append((d, iter(deps[d])))
                    break
            else:
                stack.pop()
                placed[k] = True
                order.append(k)
    if order != list(range(len(nodes))):
        del g.node[:]
        g.node.extend(nodes[k] for k in order)


def _producers(nodes: list) -> tuple[dict, bool]:
    """{value: index of the node producing it}, and whether the nodes are in
    order (see _in_order), in one walk: a value read before the node
    producing it (its own producer aside: its outputs are entered before its
    reads are looked at) is out of order.  A value produced twice (no valid
    model has one) is judged by _in_order, against its last producer."""
    producer: dict[str, int] = {}
    early: set = set()     # values read where no node before (or the reader) produced them
    twice = False
    for k, n in enumerate(nodes):
        for o in n.output:
            if o:
                twice = twice or o in producer
                producer[o] = k
        for x in n.input:
            if x not in producer:
                early.add(x)
        if n.op_type in SUBGRAPH_OPS or n.domain not in STANDARD_DOMAINS:
            early.update(x for x in node_outer_references(n) if x not in producer)
    if twice:
        return producer, _in_order(nodes, producer)
    return producer, early.isdisjoint(producer)


def _in_order(nodes: list, producer: dict) -> bool:
    """Whether no node reads a value produced after it (a node reading its
    own output aside, which toposort skips too): then toposort keeps every
    node where it is.  A splice puts each replacement where its first
    matched node was, so the order usually holds, and this check is much
    cheaper than the sort."""
    for k, n in enumerate(nodes):
        for x in n.input:
            if producer.get(x, -1) > k:
                return False
        for x in node_outer_references(n):
            if producer.get(x, -1) > k:
                return False
    return True
