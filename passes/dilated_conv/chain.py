"""Keeping a tensor in space-to-batch (phase) form across a chain of ops.

A dilated Conv lowered in batch form ends with batch_to_space, and the next
dilated Conv of the same rate starts with space_to_batch.  Between two such
Convs every op that acts on each spatial position alone (Relu, BatchNorm, a
1x1 Conv, Add of two such tensors or of a per-channel constant) commutes with
space_to_batch, so the pair can be skipped:

    f(batch_to_space(v)) = batch_to_space(f(v))      (f spatially pointwise)

Phase form of a value y of spatial size n, phases P, q = ceil(n / P) per phase:

    v[flat(b)*N + i, c, j...] = y[i, c, j_k*P_k + b_k ...]   where j_k*P_k + b_k < n_k

The other entries (j_k*P_k + b_k >= n_k, present when P does not divide n)
hold whatever the ops computed there.  The next Conv must see zeros in its
padding region, so its input is masked there first (Where with a constant
mask), then padded per phase: with offset o = c*P (the Conv's begin padding),
its window phase image is v shifted by c, i.e. padded by (c, m - q - c) per axis: the
Conv's own pads (a Slice first where an amount is negative).

A region grows from one dilated Conv along the graph: a node joins when it is
spatially pointwise (or a compatible dilated Conv) and each input is a region
value, a per-channel constant, or an outside tensor of the same spatial size
that does not depend on the region (converted by Pad + space_to_batch).  It
is then pruned to the nodes that lead to a later dilated Conv, and takes
back the elementwise ops after them that cost no extra exit (_with_tail);
values used outside leave through batch_to_space + Slice.  Where the first
Conv's phase images are its input x in phase form, x is a region value
too: a residual block's 1x1 shortcut on x joins (Region.shared).

Squeeze-and-excitation blocks keep the region going.  Where every phase
image holds only real positions (P divides n), the mean over space is the
mean over the phase images' means:

    GlobalAveragePool(y)[i] = mean_b GlobalAveragePool(v)[flat(b)*N + i]

so a GlobalAveragePool (or ReduceMean over every spatial axis) of a region
value joins as a "pool": GlobalAveragePool in phase form, Reshape [P, N, C,
1...], ReduceMean over the phases.  Its [N, C, 1...] result leaves the
region as it is; the excitation computed from it outside (1x1 Convs,
activations) comes back as a "side" input of a pointwise op -- any
per-sample, per-channel value that depends on the region only through
pools -- and is repeated per phase (Tile [P, 1, ...]) to broadcast over the
phase batch.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from functools import reduce
from itertools import product
from typing import Callable, Optional, Sequence

import numpy as np
import onnx

from convrewrite.core.builder import Builder
from convrewrite.core.folding import attribute
from convrewrite.core.graph import GraphView, attributes
from convrewrite.core.pointwise import (POINTWISE_BINARY, POINTWISE_UNARY, batchnorm_not_inference,
                                        broadcasts_per_channel, is_pointwise_conv)
from convrewrite.emit.opset_ops import pad_axes, slice_axes
from convrewrite.emit.space_to_batch import batch_to_space, crop_to, space_to_batch


@dataclass(frozen=True)
class Grid:
    """The phase layout shared by a region: batch dim, sizes n, phases P."""

    batch: object             # the batch dimension every region value has
    sizes: tuple[int, ...]
    blocks: tuple[int, ...]

    @property
    def unit_batch(self) -> bool:
        """A batch of 1: the phase-major order of the phase batch is also
        batch-major (space_to_batch without a block Transpose)."""
        return self.batch == 1

    @property
    def per_phase(self) -> tuple[int, ...]:
        return tuple(-(-n // p) for n, p in zip(self.sizes, self.blocks))

    @property
    def exact(self) -> bool:
        """Every phase entry is a real position: no garbage to mask."""
        return all(n % p == 0 for n, p in zip(self.sizes, self.blocks))


@dataclass(frozen=True)
class Region:
    nodes: tuple              # graph order; nodes[0] is the starting dilated Conv
    convs: tuple              # (position in nodes, the pass's parameters) per later dilated Conv
    exits: tuple[str, ...]    # region values used outside it (pool outputs among them)
    pools: tuple = ()         # positions in nodes of the pools (spatial means, not in phase form)
    shared: str = ""          # the first Conv's input when other nodes read its phase form too


@dataclass(frozen=True)
class Chain:
    """The params of a multi-node Match: several dilated Convs (and the
    pointwise ops between them) kept in batch form.  `start` is the first
    Conv's params (forms.Dilated), `grid` the phase layout, `region` the nodes."""

    start: object
    grid: Grid
    region: Region


# --- growing --------------------------------------------------------------------

def grow(graph: GraphView, start: onnx.NodeProto, grid: Grid,
         admit_conv: Callable[[onnx.NodeProto], Optional[object]], share_input: bool = False,
         admit_key: object = None) -> Optional[Region]:
    """The largest useful region from `start`, or None when it holds no
    second dilated Conv.  admit_conv(node) returns a dilated Conv's
    parameters when it fits `grid`, else None.

    `share_input`: the first Conv's phase input is the phase form of its
    input x (to_phase(x): no crop, no front pad), so x counts as a region
    value too and the ops that read x (a residual block's 1x1 shortcut)
    may join, reading that phase form instead of converting their outputs.
    Such a region is taken when some op reading x joins and it keeps every
    dilated Conv of the region grown without it (outside inputs must then
    be independent of x as well, a stricter test).

    `admit_key`: all that admit_conv's verdicts depend on beside the node
    and `grid` (the pass and its options), hashable.  With it, the region
    grown from a shared x is worked out once per view (InputRegion); None:
    for this start alone."""
    plain = _grow(graph, start, grid, admit_conv, "")
    if not share_input or plain is None:
        return plain
    shared, joined = _shared(graph, start, grid, admit_conv, admit_key)
    return shared if joined and len(shared.convs) >= len(plain.convs) else plain


def _shared(graph: GraphView, start, grid: Grid, admit_conv, admit_key) -> tuple[Optional[Region], bool]:
    """The region grown from `start` with its input x a region value, and
    whether a node of it other than the start reads x."""
    x = start.input[0]
    whole = None if admit_key is None else input_region(graph, x, grid, admit_conv, admit_key)
    if whole is not None and id(start) in whole.conv_at:
        return whole.from_start(start), whole.readers > 1   # the start is one of them
    region = _grow(graph, start, grid, admit_conv, x)
    return region, region is not None and any(x in n.input[:] for n in region.nodes[1:])


class InputRegion:
    """The region grown from a value x alone (no start): its nodes in graph
    order, every dilated Conv among them a later one.  Where it holds a
    start s that reads x as a dilated Conv, the region grown from s with x
    shared has the same nodes, s first: a node before s in graph order
    cannot read s's output (nor can a side value's producers), so it is
    admitted or not alike, and at s both regions hold s and its output.
    Pruning keeps the same nodes too: it keeps s, whose inputs x and
    weights are no region node's output (the Conv was admitted); so the
    tail and the exits are the same.  Every start among many parallel
    branches that read x takes its region from this one, not growing it
    again over every branch; the positions that move are worked out once
    (slices per start)."""

    __slots__ = ("region", "place", "conv_at", "exit_at", "readers", "later_convs", "later_pools")

    def __init__(self, region: Region, x: str):
        self.region = region
        self.place = {id(n): k for k, n in enumerate(region.nodes)}                        # node id -> position
        self.conv_at = {id(region.nodes[j]): i for i, (j, _) in enumerate(region.convs)}   # id -> index in convs
        self.exit_at = {e: i for i, e in enumerate(region.exits)}
        self.readers = sum(1 for n in region.nodes if x in n.input[:])   # the nodes that read x
        # positions one later, as for the nodes before the start once it moves to the front
        self.later_convs = tuple((j + 1, c) for j, c in region.convs)
        self.later_pools = tuple(j + 1 for j in region.pools)

    def from_start(self, start: onnx.NodeProto) -> Optional[Region]:
        """The region grown from `start` (one of its dilated Convs) with x shared."""
        r, k, c = self.region, self.place[id(start)], self.conv_at[id(start)]
        if len(r.nodes) == 1:
            return None
        e = self.exit_at.get(start.output[0])
        exits = r.exits if e is None else (r.exits[e],) + r.exits[:e] + r.exits[e + 1:]
        p = bisect_left(r.pools, k)   # the pools before the start
        return Region((start,) + r.nodes[:k] + r.nodes[k + 1:], self.later_convs[:c] + r.convs[c + 1:], exits,
                      self.later_pools[:p] + r.pools[p:], r.shared)


def input_region(graph: GraphView, x: str, grid: Grid, admit_conv, admit_key) -> InputRegion:
    """The region grown from x alone, worked out once per view for
    (admit_key, x, grid) and kept with the view's other reads (as
    preconditions.read_once keeps them): where a target runs no chain,
    every start reading x is matched, and each would grow it again
    (starts x branches)."""
    known, key = graph.kept_reads, (input_region, admit_key, x, grid)
    found = known.get(key)
    if found is None:
        found = known[key] = InputRegion(_grow(graph, None, grid, admit_conv, x), x)
    return found


def _grow(graph: GraphView, start: Optional[onnx.NodeProto], grid: Grid, admit_conv,
          shared: str) -> Optional[Region]:
    """The region grown from `start` (with `shared`, x, a region value as
    well); `start` None: from x alone (InputRegion), its nodes however few."""
    members, convs, needs, values, pools = _admitted(graph, start, grid, admit_conv, shared)
    kept = _prune(members, convs, needs, start)
    if start is not None and len(kept) == 1:
        return None
    members = _with_tail(graph, members, kept, needs, values, shared)
    ids, outputs = {id(n) for n in members}, set(graph.graph_outputs)
    exits = tuple(n.output[0] for n in members if _read_outside(graph, n.output[0], ids, outputs))
    return Region(tuple(members), tuple((k, convs[id(n)]) for k, n in enumerate(members) if id(n) in convs),
                  exits, tuple(k for k, n in enumerate(members) if id(n) in pools), shared)


def _admitted(graph: GraphView, start, grid: Grid, admit_conv, shared: str) -> tuple:
    """The nodes the rules admit, in graph order from the start (if any):
    (members, later dilated Conv id -> params, member id -> ids of the pools
    its sides need, the region values, the ids of the pools)."""
    after = _value_descendants(graph, shared) if shared else _descendants(graph, start)
    members = [] if start is None else [start]
    values = {n.output[0] for n in members} | ({shared} if shared else set())
    convs, pooled, needs = {}, {}, {}   # pooled: pool output -> pool node id
    for node in _in_graph_order(graph, after):
        if node is start:
            continue
        if _pool(graph, node, grid, values):
            members.append(node)
            pooled[node.output[0]] = id(node)
            continue
        inputs = node.input[:]   # a slice: see core/graph._indexes
        if not any(i in values for i in inputs):
            continue
        sides = {i: _side_pools(graph, i, grid, pooled, values, after) for i in inputs
                 if i and i not in values and _computed(graph, i)}
        kind = _admit(graph, node, grid, values, after, admit_conv, {i for i, s in sides.items() if s})
        if kind is None:
            continue
        if kind is not True:
            convs[id(node)] = kind
        needs[id(node)] = set().union(*[s for s in sides.values() if s])
        members.append(node)
        values.add(node.output[0])
    return members, convs, needs, values, set(pooled.values())


def may_grow(graph: GraphView, start: onnx.NodeProto) -> bool:
    """Whether grow can find a region at `start` at all: a second dilated
    Conv must be reached from start's output through the ops _admit may
    take (pointwise ops and 1x1 Convs of the standard domain; a pool's
    output is not a region value, so no path runs through one).  A
    necessary condition, cheap: no Conv's forms are ranked to learn it."""
    seen, todo = set(), [start.output[0]]
    while todo:
        for node in graph.consumers(todo.pop()):
            if id(node) in seen or node.domain not in ("", "ai.onnx"):
                continue
            seen.add(id(node))
            if node.op_type == "Conv" and any(d > 1 for d in attribute(node, "dilations", [])):
                return True
            if (node.op_type in POINTWISE_UNARY or node.op_type in POINTWISE_BINARY
                    or node.op_type == "Conv" and _pointwise_conv(graph, node)):
                todo.extend(o for o in node.output[:] if o)
    return False


def data_inputs(node: onnx.NodeProto) -> list[str]:
    """The inputs laid out like the tensor (the others are parameters)."""
    if node.op_type in ("Conv", "BatchNormalization", "Clip"):
        return [node.input[0]]
    return [i for i in node.input[:] if i]


def _admit(graph, node, grid, values, after, admit_conv, sides=frozenset()):
    """True for a pointwise node, the conv parameters for a dilated Conv, else
    None.  `sides`: inputs that are side values (see _side_pools), which only
    pointwise binary ops take."""
    if node.domain not in ("", "ai.onnx") or len(node.output) != 1 or not node.output[0]:
        return None
    if not _same_grid_shape(graph, node.output[0], grid):
        return None
    if sides and node.op_type not in POINTWISE_BINARY:
        return None
    # data a set (a Sum of many branches: a lookup per input); inputs a slice: see core/graph._indexes
    data, inputs = set(data_inputs(node)), node.input[:]
    for i in inputs:
        if not i or i in values:
            continue
        if i in data and not (i in sides or _fits(graph, i, grid, after)):
            return None
        if i not in data and not _independent(graph, i, after):
            return None
    if any(i in values for i in inputs if i not in data):
        return None
    if node.op_type == "Conv":
        if any(d > 1 for d in attribute(node, "dilations", [])):
            return admit_conv(node) if node.input[0] in values else None
        return True if _pointwise_conv(graph, node) else None
    if node.op_type == "BatchNormalization" and batchnorm_not_inference(node, graph):
        return None     # batch statistics: the phase batch (and its garbage) would change them
    if node.op_type in POINTWISE_UNARY:
        return True if node.input[0] in values else None
    return True if node.op_type in POINTWISE_BINARY else None


def _pool(graph, node, grid: Grid, values) -> bool:
    """A spatial mean of a region value that the phase form computes
    exactly: GlobalAveragePool, or ReduceMean over every spatial axis with
    keepdims, on a grid whose phase images hold only real positions."""
    if node.op_type not in ("GlobalAveragePool", "ReduceMean") or node.domain not in ("", "ai.onnx"):
        return False
    if not node.input or node.input[0] not in values or not grid.exact or len(node.output) != 1:
        return False
    if node.op_type == "GlobalAveragePool":
        return True
    a = attributes(node)
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        c = graph.constant(node.input[1])
        axes = None if c is None else [int(v) for v in np.ravel(c)]
    rank = len(grid.sizes) + 2
    return bool(a.get("keepdims", 1)) and axes is not None and sorted(v % rank for v in axes) == list(range(2, rank))


def _side_pools(graph, name: str, grid: Grid, pooled: dict, values, after) -> Optional[set]:
    """The pools a side value depends on, or None when `name` is not one: a
    per-sample, per-channel value ([N, C, 1...]) that depends on the region
    only through pools."""
    s = graph.shape(name)
    if s is None or len(s) != len(grid.sizes) + 2 or s[0] != grid.batch or any(d != 1 for d in s[2:]):
        return None
    found, seen, todo = set(), set(), [name]
    while todo:
        v = todo.pop()
        if v in pooled:
            found.add(pooled[v])
            continue
        if v in values:
            return None
        p = graph.producer(v)
        if p is None or id(p) not in after or id(p) in seen:
            continue
        seen.add(id(p))
        todo += [i for i in p.input[:] if i]
    return found or None


def _pointwise_conv(graph, node) -> bool:
    """An undilated 1x1 Conv with stride 1 and no padding."""
    ws = graph.shape(node.input[1])
    return ws is not None and is_pointwise_conv(ws[2:], attributes(node))


def _independent(graph: GraphView, name: str, after: set) -> bool:
    producer = graph.producer(name)
    return producer is None or id(producer) not in after


def _fits(graph: GraphView, name: str, grid: Grid, after: set) -> bool:
    """A constant that broadcasts per channel, or an outside tensor of the
    region's shape that does not depend on the region."""
    if not _computed(graph, name):
        return broadcasts_per_channel(graph.constant(name).shape, len(grid.sizes) + 2)
    return _independent(graph, name, after) and _same_grid_shape(graph, name, grid)


def _computed(graph: GraphView, name: str) -> bool:
    """Whether `name` is computed at run time (graph.constant None), kept
    per view: a Sum of many branches has each of its inputs looked at by
    every start whose region reaches it (constant() reads the producer's
    domain, a protobuf string, each time)."""
    known, key = graph.kept_reads, (_computed, name)
    found = known.get(key)
    if found is None:
        found = known[key] = graph.constant(name) is None
    return found


def _same_grid_shape(graph: GraphView, name: str, grid: Grid) -> bool:
    s = graph.shape(name)
    return (s is not None and len(s) == len(grid.sizes) + 2 and s[0] == grid.batch and s[0] is not None
            and isinstance(s[1], int) and tuple(s[2:]) == grid.sizes)


def _value_descendants(graph: GraphView, value: str) -> dict:
    """The nodes that depend on `value` (id -> node)."""
    seen = {}
    for c in graph.consumers(value):
        seen[id(c)] = c
        seen.update(_descendants(graph, c))
    return seen


def _descendants(graph: GraphView, start) -> dict:
    """The nodes that depend on `start`'s outputs (id -> node)."""
    seen, todo = {}, [start]
    while todo:
        node = todo.pop()
        for o in node.output[:]:
            for c in graph.consumers(o):
                if id(c) not in seen:
                    seen[id(c)] = c
                    todo.append(c)
    return seen


def _in_graph_order(graph: GraphView, nodes: dict) -> list:
    """`nodes` (id -> node) in the graph's order: a region grows over the
    start's descendants alone, not over every node of the graph for each
    start (quadratic where many dilated Convs may start a chain)."""
    return sorted(nodes.values(), key=graph.position)


def _prune(members: list, convs: dict, needs: dict, start: Optional[onnx.NodeProto]) -> list:
    """Keep the start (if any) and the nodes from which a later dilated
    Conv is reached, and the pools whose outputs kept nodes take back as
    sides.  `read` holds the inputs of the kept nodes but the start's:
    whether a kept node reads a node's output is one lookup, not a walk over
    the members (quadratic where a value fans out to many branches)."""
    by_id = {id(n): n for n in members}
    keep, read = set(), set()

    def take(ids) -> None:
        for i in ids:
            if i not in keep:
                keep.add(i)
                read.update(by_id[i].input[:])

    take(id(n) for n in members if id(n) in convs)
    for node in reversed(members):
        if node is start:
            continue
        if id(node) not in keep and node.output[0] in read:
            take((id(node),))
        if id(node) in keep:
            take(needs.get(id(node), ()))
    return [n for n in members if n is start or id(n) in keep]


_ELEMENTWISE = POINTWISE_UNARY | POINTWISE_BINARY


def _with_tail(graph: GraphView, admitted: list, kept: list, needs: dict, values: set, shared: str) -> list:
    """The pruned region with the pointwise ops after it that leave no more
    exits than before: each exit costs a batch_to_space and a crop, so an
    Add of two exits (a residual sum after the last dilated Conv) is cheaper
    inside, and so is an activation of an exit (fused into the Conv there).
    A tail op joins, in graph order, when it is an elementwise op (no Conv,
    no pool) whose every data input is a region value or a constant."""
    region, exits = list(kept), _Exits(graph, kept)
    inside = {n.output[0] for n in kept} | ({shared} if shared else set())
    for node in admitted:
        if id(node) in exits.ids or node.op_type == "Conv" or needs.get(id(node)):
            continue
        if node.output[0] not in values or node.op_type not in _ELEMENTWISE:
            continue
        data = [i for i in data_inputs(node) if _computed(graph, i)]
        if not data or any(i not in inside for i in data):
            continue
        if exits.no_more_with(node):
            exits.join(node)
            region.append(node)
            inside.add(node.output[0])
    order = {id(n): k for k, n in enumerate(admitted)}
    return sorted(region, key=lambda n: order[id(n)])


class _Exits:
    """A region's exits (values read outside it) as nodes join it: the ids
    of each member output's readers outside the region.  Whether a node's
    joining adds exits is then read from the values it reads and writes,
    not counted again over the whole region before and after (quadratic in
    the region's size).  Each value has one writer (SSA: loading checks it)."""

    def __init__(self, graph: GraphView, members: list):
        self.graph, self.outputs = graph, set(graph.graph_outputs)
        self.ids = {id(n) for n in members}
        self.readers: dict[str, set] = {}   # member output -> ids of its readers outside the region
        for n in members:
            self._track(n.output[0])

    def _track(self, value: str) -> None:
        self.readers[value] = {id(c) for c in self.graph.consumers(value) if id(c) not in self.ids}

    def no_more_with(self, node) -> bool:
        """Whether the region with `node` has no more exits than without:
        the exit its output opens (when read outside) against those it
        closes, the member outputs whose one outside reader it is."""
        opens = _read_outside(self.graph, node.output[0], self.ids, self.outputs)   # (never by node: a DAG)
        closes = sum(1 for v in set(node.input[:]) if v in self.readers and v not in self.outputs
                     and len(self.readers[v]) == 1 and id(node) in self.readers[v])
        return int(opens) <= closes

    def join(self, node) -> None:
        self.ids.add(id(node))
        for v in node.input[:]:
            if v in self.readers:
                self.readers[v].discard(id(node))
        self._track(node.output[0])


def _read_outside(graph: GraphView, value: str, ids: set, outputs: set) -> bool:
    """A graph output, or read by a node whose id is not in `ids`."""
    return value in outputs or any(id(c) not in ids for c in graph.consumers(value))


# --- building -------------------------------------------------------------------

def to_phase(b: Builder, x: str, channels: int, grid: Grid) -> str:
    """An outside value of size n in phase form: Pad the end to q*P, space_to_batch."""
    q = grid.per_phase
    ends = [qq * p - n for qq, p, n in zip(q, grid.blocks, grid.sizes)]
    if any(ends):
        x = pad_axes(b, x, len(q) + 2, range(2, len(q) + 2), [(0, e) for e in ends], "to_phase_pad")
    return space_to_batch(b, x, channels, grid.blocks, q, grid.unit_batch)


def phase_mean(b: Builder, v: str, channels: int, grid: Grid) -> str:
    """The spatial mean of a value in phase form, [N, C, 1...] (exact grids:
    every phase image holds q real positions, so the mean of the phase
    images' means is the mean): GlobalAveragePool, Reshape [P, N, C, 1...],
    ReduceMean over the phases.  With a batch of 1 the pooled [P, C, 1...]
    is reduced over axis 0 keeping it: no Reshape, no rank above x's."""
    ones = [1] * len(grid.sizes)
    t = b.op("GlobalAveragePool", [v], "pool")
    unit = grid.unit_batch
    if not unit:
        t = b.op("Reshape", [t, b.ints([int(np.prod(grid.blocks)), -1, channels, *ones], "pool_split_shape")],
                 "pool_split")
    if b.graph.opset() >= 18:
        return b.op("ReduceMean", [t, b.ints([0], "pool_axes")], "pool_mean", keepdims=int(unit))
    return b.op("ReduceMean", [t], "pool_mean", axes=[0], keepdims=int(unit))


def is_side(graph: GraphView, name: str, grid: Grid) -> bool:
    """An input of a region node that is not of the region's spatial size:
    a side value (grow admitted it as one)."""
    return tuple(graph.shape(name)[2:]) != grid.sizes


def side_to_phase(b: Builder, s: str, grid: Grid) -> str:
    """A per-sample, per-channel value [N, C, 1...] repeated per phase, so
    that it broadcasts over the phase batch [P*N, C, q...] (phase-major)."""
    return b.op("Tile", [s, b.ints([int(np.prod(grid.blocks))] + [1] * (len(grid.sizes) + 1), "side_repeats")],
                "side")


def from_phase(b: Builder, v: str, channels: int, grid: Grid) -> str:
    q = grid.per_phase
    y = batch_to_space(b, v, channels, grid.blocks, q, grid.unit_batch)
    return crop_to(b, y, [qq * p for qq, p in zip(q, grid.blocks)], grid.sizes)


def phase_mask(grid: Grid) -> np.ndarray:
    """mask[flat(b), 0, j...] = (j_k*P_k + b_k < n_k for every axis k)."""
    q = grid.per_phase
    rows = []
    for phase in product(*[range(p) for p in grid.blocks]):
        axes = [np.arange(qq) * p + bb < n for qq, p, bb, n in zip(q, grid.blocks, phase, grid.sizes)]
        r = len(axes)
        grids = [a.reshape([-1 if j == k else 1 for j in range(r)]) for k, a in enumerate(axes)]
        rows.append(reduce(np.logical_and, grids))
    return np.stack(rows)[:, None]


def zero_garbage(b: Builder, v: str, channels: int, grid: Grid, dtype: np.dtype) -> str:
    """v with the entries past each phase's real size set to 0 (exact, even
    for Inf/NaN there): Where(mask, v, 0).  With a static batch N the mask is
    [P*N, 1, q...] (each phase's rows repeated N times, phase-major like v);
    with a symbolic one v is split to [P, -1, q...] around the Where."""
    if grid.exact:
        return v
    q = list(grid.per_phase)
    blocks = int(np.prod(grid.blocks))
    mask = phase_mask(grid)
    static = static_batch(grid)
    if static:
        t, mask = v, np.repeat(mask, static, axis=0)
    else:
        t = b.op("Reshape", [v, b.ints([blocks, -1, *q], "mask_split_shape")], "mask_split")
    if b.graph.opset() >= 9:
        zero = b.initializer(np.zeros((), dtype), "zero")
        t = b.op("Where", [b.initializer(mask, "mask"), t, zero], "zero_garbage")
    else:
        t = b.op("Mul", [t, b.initializer(mask.astype(dtype), "mask")], "zero_garbage")
    if static:
        return t
    return b.op("Reshape", [t, b.ints([-1, channels, *q], "mask_merge_shape")], "mask_merge")


def static_batch(grid: Grid) -> Optional[int]:
    """The batch size when it is a number, else None."""
    return grid.batch if isinstance(grid.batch, int) and grid.batch > 0 else None


def window_shift(grid: Grid, offsets: Sequence[int], kernel: Sequence[int]) -> tuple[list, list]:
    """(front, back) per axis: a stride-1 Conv's window on the phase images
    is them shifted by c = o/P and extended to m = q + k - 1: front c, back
    m - q - c (negative amounts crop)."""
    front = [o // p for o, p in zip(offsets, grid.blocks)]
    return front, [k - 1 - c for k, c in zip(kernel, front)]


def phase_window(b: Builder, v: str, grid: Grid, offsets: Sequence[int], kernel: Sequence[int]) -> tuple[str, list]:
    """The phase images cropped where the window crops them, and the Conv
    pads that extend them (the Conv's own zero padding: no Pad node)."""
    q, r = grid.per_phase, len(grid.sizes)
    front, back = window_shift(grid, offsets, kernel)
    crops = [k for k in range(r) if front[k] < 0 or back[k] < 0]
    if crops:
        v = slice_axes(b, v, [k + 2 for k in crops], [max(0, -front[k]) for k in crops],
                       [q[k] - max(0, -back[k]) for k in crops], "phase_crop")
    return v, [max(0, f) for f in front] + [max(0, e) for e in back]


def copy_node(b: Builder, node: onnx.NodeProto, inputs: Sequence[str]) -> str:
    """The node on new inputs, attributes unchanged."""
    out = b.op(node.op_type, list(inputs), f"{node.op_type.lower()}_{node.name or 'node'}".replace("/", "_"))
    b.nodes[-1].attribute.extend(node.attribute)
    return out
