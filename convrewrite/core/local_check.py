"""Per-rewrite verification: the original nodes and their replacement as two
standalone models, run on the same seeded random inputs.

Many rewrites are checked with one onnxruntime session per side: the
standalone models of a batch are merged into one graph (names prefixed per
rewrite), so a model with a thousand candidates does not create two thousand
sessions.  A symbolic batch dimension is kept symbolic in the standalone
models and exercised with batch 1 and batch 2.

The standalone models hold their large weights as stubs (dims, no data);
the data is filled in only for the batch being run, so checking a model
never holds a second copy of all its weights.  They are assembled from
their parts (copies of the graph's nodes, the replacement's own) only when
asked for: most checks run in the session of their structure
(shared_checks.py), which reads their parts alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import onnx
from onnx import helper

from .equivalence import (Comparison, FeedTooLarge, RunError, feed_shapes, pinned_dims,
                          random_feeds, random_values, run_model)
from . import qdq, qdq_check
from .graph import GraphView
from .shared_checks import (ModelParts, StructureSessions, Values, instances, parts_of, shared_structures,
                            values_of)
from .weights import data_bytes, from_array, to_array, weight_stub
from .standalone import assemble, external_inputs, external_reads, model_head
from .rewrite import Match, Replacement
from .splice import renamed_io, renamed_nodes

BATCH_LIMIT_NODES = 400          # rewrites merged into one session, at most this many nodes
BATCH_LIMIT_BYTES = 64 << 20     # ... and this many bytes of weights (merging copies them)
STUB_BYTES = 1 << 16             # weights this large are filled in only while their check runs


class CheckError(Exception):
    """The rewrite cannot even be checked (a malformed replacement)."""


class UnknownValue(CheckError):
    """A value the check model must be fed has no known type or shape: a
    fact of the model (an operator onnx's shape inference does not know),
    not of the replacement."""


class LocalCheck:
    """A rewrite's check: its original nodes and their replacement as two
    standalone models (`original`, `replacement`) with the same inputs and
    outputs, large weights as stubs (see `weights`).  The models are
    assembled when first asked for: a check that runs in its structure's
    shared session reads only its `instance` and its weights' data."""

    __slots__ = ("parts", "_models", "symbolic", "weights", "weight_bytes", "steps", "outputs", "instance")

    def __init__(self, parts: Optional[tuple], symbolic: bool, weights: dict, weight_bytes: int, steps: dict,
                 outputs: list, instance: Optional[tuple], models: Optional[tuple] = None):
        self.parts = parts                 # (original, replacement) _Parts; None: `models` as given
        self._models = models
        self.symbolic = symbolic           # some input dim is symbolic: run batch 1 and 2
        self.weights: dict[str, Callable[[], onnx.TensorProto]] = weights   # stub -> its data
        self.weight_bytes = weight_bytes
        self.steps = steps                 # quantized outputs, compared in steps (core/qdq.py)
        self.outputs = outputs             # the names of both models' outputs
        # shared_checks.instances of the two models: (key, (original Side, replacement Side)); None where
        # they cannot share a session, or (quantized: `steps`) do not
        self.instance = instance

    @classmethod
    def of_models(cls, original: onnx.ModelProto, replacement: onnx.ModelProto, symbolic: bool, weights: dict,
                  weight_bytes: int, steps: dict) -> "LocalCheck":
        parts = None if steps else [parts_of(m) for m in (original, replacement)]
        instance = None if parts is None or None in parts else instances(parts)
        return cls(None, symbolic, weights, weight_bytes, steps, [o.name for o in original.graph.output[:]],
                   instance, (original, replacement))

    @property
    def original(self) -> onnx.ModelProto:
        return self._assembled()[0]

    @property
    def replacement(self) -> onnx.ModelProto:
        return self._assembled()[1]

    def _assembled(self) -> tuple:
        if self._models is None:
            self._models = (self.parts[0].model(), self.parts[1].model())
        return self._models

    def materialized(self) -> tuple[onnx.ModelProto, onnx.ModelProto]:
        """(original, replacement) with every stub filled in."""
        return _filled(self.original, self.weights), _filled(self.replacement, self.weights)

    def weight_values(self, k: int) -> list:
        """The data of model `k`'s initializers (0: original, 1: replacement), in order, stubs filled in."""
        if self.parts is not None:
            return [_data(source) for source in self.parts[k].data]
        weights = self.weights
        return [to_array(weights[t.name]() if t.name in weights else t) for t in self._models[k].graph.initializer[:]]


@dataclass(slots=True)   # one pair per check, held until the checks run: no dict each
class _Parts:
    """One check model before it is assembled (standalone.assemble's
    arguments; the graph's nodes among them are copies: the passes after
    the check's edit the graph).  Where `renamed` is set, its last nodes are
    the replacement's own: the model holds renamed_nodes(renamed) in their
    place (the same nodes, but for the names of the values they read and
    write)."""

    head: onnx.ModelProto
    nodes: list
    initializers: list
    data: list        # each initializer's data for a shared session (_data)
    inputs: list
    outputs: list
    name: str
    renamed: Optional[Replacement] = None

    def model(self) -> onnx.ModelProto:
        nodes = self.nodes
        if self.renamed is not None:
            nodes = nodes[:len(nodes) - len(self.renamed.nodes)] + renamed_nodes(self.renamed)
        return assemble(self.head, nodes, self.initializers, self.inputs, self.outputs, self.name)

    def structure(self, head: bytes, io: list, values: Values) -> ModelParts:
        """What shared_checks.instances reads of this model: `head` its
        head_key, `io` each of its nodes' (inputs, outputs), `values`: its
        inputs' and outputs' (values_of)."""
        return ModelParts(head, self.nodes, io, values, self.initializers)


def _data(source) -> np.ndarray:
    """An initializer's data from its source in _Parts.data: an array as it
    is, a TensorProto decoded, or what a function (a stub's) gives, so."""
    if callable(source):
        source = source()
    return source if type(source) is np.ndarray else to_array(source)


# The types of the graph's constants that a shared session is fed as they are: for these,
# to_array(from_array(value)), what the check model holds, is the same array (type, shape, bytes).
_AS_IS = frozenset(np.dtype(t) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                         np.uint32, np.uint64, np.float16, np.float32, np.float64))


def _filled(model: onnx.ModelProto, weights) -> onnx.ModelProto:
    stubs = [k for k, t in enumerate(model.graph.initializer) if t.name in weights]
    if not stubs:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for k in stubs:
        out.graph.initializer[k].CopyFrom(weights[out.graph.initializer[k].name]())
    return out


def _known(graph: GraphView, name: str) -> None:
    """UnknownValue unless `name`'s shape and type are known (a check model declares them)."""
    if graph.value_type(name) is None and (graph.shape(name) is None or graph.dtype(name) is None):
        producer = graph.producer(name)
        by = (f" (computed by {graph.maker(producer)}, whose output shape inference does not know)"
              if producer is not None else "")
        raise UnknownValue(f"shape or type of '{name}' is unknown{by}, so the rewrite cannot be checked; "
                           "declare its type and shape in a value_info")


SHAPE_CHAIN_NODES = 32  # a shape computation copied into the original's check model, at most this long


def _shape_chains(graph: GraphView, nodes, reads: list, constant: set) -> list:
    """The nodes that compute, from shapes alone, what `nodes` read and is
    neither constant nor fed to them (a dynamic-batch export's Resize sizes
    Concat(Shape(x)[0:2], [H, W])): the check model computes those values
    from its own inputs instead of feeding them random numbers.  `reads`:
    external_inputs(nodes); `constant`: those of them that are constant."""
    pending = [i for i in reads if i not in constant and graph.partial_constant(i) is not None]
    if not pending:
        return []
    inside = {o for n in nodes for o in n.output[:]}   # [:]: see standalone.external_reads
    chain, seen = [], set()
    while pending and len(chain) <= SHAPE_CHAIN_NODES:
        name = pending.pop()
        producer = graph.producer(name)
        if name in inside or producer is None or id(producer) in seen or graph.is_constant(name):
            continue
        if producer.op_type != "Shape" and graph.partial_constant(name) is None:
            continue
        seen.add(id(producer))
        chain.append(producer)
        if producer.op_type != "Shape":
            pending += [i for i in producer.input if i]
    if len(chain) > SHAPE_CHAIN_NODES:
        return []
    return sorted(chain, key=lambda n: graph.position(n))


@dataclass
class _Sides:
    """What both check models are made of: the nodes of each side, the values
    each reads from the graph, their constant values (None: fed at run
    time), the runtime inputs and the outputs."""

    outputs: list
    original_nodes: list
    dequantize: list           # the replacement's side reads these DequantizeLinear paths too
    orig_in: list
    repl_in: list
    constant: frozenset        # the values of orig_in and repl_in that are constant in the graph
    runtime: list


def _sides(graph: GraphView, match: Match, replacement: Replacement, new_io: Optional[list] = None) -> _Sides:
    """The parts of both check models; CheckError when the replacement is
    malformed: it does not provide an output of the match that is read, it
    reads a value the original nodes do not, or a value crossing the
    boundary has an unknown shape or type.  `new_io`: renamed_io(
    replacement) where the caller has it.
    Structure only: no constant is decoded (build_check reads the values)."""
    outputs = list(replacement.outputs)
    inside = {id(n) for n in match.nodes}
    # an output is needed unless only the match's own nodes read it (a graph
    # output, or a value an If/Loop/Scan body reads, is always needed)
    needed = {o for n in match.nodes for o in n.output[:]
              if o and (o in graph.graph_outputs or o in graph.outer_references
                        or any(id(c) not in inside for c in graph.consumers(o)))}
    missing = needed - set(outputs)
    if missing:
        raise CheckError(f"replacement does not provide {sorted(missing)}")
    # the nodes the check model will hold (names only)
    new_io = renamed_io(replacement) if new_io is None else new_io
    new_reads = external_reads(new_io)
    dequantize = qdq_check.dequantized_reads(graph, new_reads)   # int8 weights stay int8
    own = {t.name for t in replacement.initializers}
    # quantized nodes keep reading their weights through DequantizeLinear (qdq_check.weight_nodes)
    reads = external_inputs(match.nodes)
    read_constants = {i for i in reads if graph.is_constant(i)}   # each value asked once (here or below)
    before = _shape_chains(graph, match.nodes, reads, read_constants) + qdq_check.weight_nodes(graph, match.nodes)
    original_nodes = before + list(match.nodes)
    orig_in = external_inputs(original_nodes) if before else reads
    repl_reads = external_reads([(n.input, n.output) for n in dequantize] + new_io) if dequantize else new_reads
    repl_in = [i for i in repl_reads if i not in own]
    read = set(reads)
    constant = frozenset(i for i in set(orig_in) | set(repl_in)
                         if (i in read_constants if i in read else graph.is_constant(i)))
    runtime = [i for i in orig_in if i not in constant]
    stray = [i for i in repl_in if i not in constant and i not in runtime]
    if stray:
        raise CheckError(f"replacement reads {stray}, which the original nodes do not")
    for name in runtime + outputs:
        _known(graph, name)
    return _Sides(outputs, original_nodes, dequantize, orig_in, repl_in, constant, runtime)


def check_well_formed(graph: GraphView, match: Match, replacement: Replacement) -> None:
    """What build_check refuses (CheckError), without building the check
    models: all a run without verification needs before the splice."""
    _sides(graph, match, replacement)


def build_check(graph: GraphView, match: Match, replacement: Replacement) -> LocalCheck:
    """Both sides as standalone models, with the same inputs and outputs
    (CheckError for a malformed replacement, see _sides); assembled when
    first asked for, unless the check of a quantized group changes them."""
    new_io = renamed_io(replacement)
    s = _sides(graph, match, replacement, new_io)
    outputs, runtime = s.outputs, s.runtime
    constants = {i: graph.constant(i) if i in s.constant else None for i in set(s.orig_in) | set(s.repl_in)}
    value_infos = {name: graph.value_info(name) for name in runtime + outputs}   # one each, for both models
    weights: dict = {}
    tensors: dict = {}   # a constant both sides read: one TensorProto (assemble copies it into each), its data

    def from_graph(name: str) -> tuple:
        if name not in tensors:
            tensors[name] = _from_graph(graph, name, constants[name], weights)
        return tensors[name]

    def own(t: onnx.TensorProto) -> tuple:
        if data_bytes(t) < STUB_BYTES:
            return t, t
        weights[t.name] = lambda: t
        return weight_stub(t.name, t.data_type, t.dims), t

    def inits(names):
        return [from_graph(i) for i in names if constants[i] is not None]

    inputs = [value_infos[i] for i in runtime]
    outs = [value_infos[o] for o in outputs]
    head = model_head(graph)
    original, original_io = _graph_parts(head, s.original_nodes, inits(s.orig_in), inputs, outs, "original")
    repl, repl_io = _graph_parts(head, s.dequantize, inits(s.repl_in) + [own(t) for t in replacement.initializers],
                                 inputs, outs, "replacement")
    _add_replacement(repl, replacement, new_io)
    symbolic = any(not isinstance(d, int) for i in runtime for d in (graph.shape(i) or ()))
    size = 0
    if weights:   # stubs: the bytes filled in while the check runs
        size = sum(constants[i].nbytes for i in weights if constants.get(i) is not None)
        size += sum(data_bytes(t) for t in replacement.initializers if t.name in weights)
    # quantized_outputs reads each output's type: only where a QuantizeLinear could make one
    quantizes = any(n.op_type == qdq.QUANTIZE for n in match.nodes)
    steps = qdq.quantized_outputs(match.nodes, outputs, graph) if quantizes else {}
    # inputs from DequantizeLinear: random values put on its grid (no DequantizeLinear in the graph: none)
    grid = qdq.grid_inputs(graph, runtime) if graph.has_qdq else {}
    if not grid and not qdq_check.quantizers_after(graph, outputs, steps) and not qdq_check.unfetchable_outputs(outs):
        instance = None if steps else _instance(head, original, original_io, repl, repl_io + new_io)
        return LocalCheck((original, repl), symbolic, weights, size, steps, outputs, instance)
    original, repl = qdq.on_grid(original.model(), grid), qdq.on_grid(repl.model(), grid)
    original, repl, steps = qdq_check.with_quantizers(graph, original, repl, outputs, steps)  # QDQ: the integers too
    original, repl, steps = qdq_check.fetchable_outputs(original, repl, steps)   # int4 outputs as int8
    return LocalCheck.of_models(original, repl, symbolic, weights, size, steps)


def _instance(head: onnx.ModelProto, original: _Parts, original_io: list, repl: _Parts, repl_io: list) -> tuple:
    """shared_checks.instances of a check's two models, from their parts
    (one head, the same inputs and outputs: read once)."""
    key = head.SerializeToString(deterministic=True)   # its head_key: a head holds no more
    values = values_of(original.inputs, original.outputs, ())
    return instances([original.structure(key, original_io, values), repl.structure(key, repl_io, values)])


def _graph_parts(head, nodes: list, initializers: list, inputs: list, outputs: list, name: str) -> tuple:
    """The _Parts of a model of the graph's `nodes` (copied now: the splice
    and the passes after it edit the graph), and each node's (inputs,
    outputs); `initializers`: (TensorProto, its data) pairs."""
    copies = []
    for n in nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        copies.append(copy)
    parts = _Parts(head, copies, [t for t, _ in initializers], [data for _, data in initializers], inputs, outputs,
                   name)
    return parts, [(n.input[:], n.output[:]) for n in copies]


def _add_replacement(parts: _Parts, replacement: Replacement, new_io: list) -> None:
    """The replacement's nodes after `parts`' own, as renamed_nodes renames
    them (new_io: renamed_io): its own nodes, renamed when assembled, unless
    it adds Identity nodes for values it passes through."""
    if len(new_io) == len(replacement.nodes):
        parts.nodes += replacement.nodes
        parts.renamed = replacement
    else:
        parts.nodes += renamed_nodes(replacement)


def _from_graph(graph: GraphView, name: str, value, weights: dict) -> tuple:
    """The check models' initializer of the graph's constant `name` (whose
    value is `value`): the data itself, or a stub filled from the graph
    while its check runs (recorded in `weights`); and its _Parts.data."""
    as_is = type(value) is np.ndarray and value.dtype in _AS_IS
    if value.nbytes < STUB_BYTES:
        t = from_array(value, name)
        return t, value if as_is else t
    weights[name] = lambda: from_array(graph.constant(name), name)
    return (weight_stub(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape),
            (lambda: graph.constant(name)) if as_is else weights[name])


def _prefixed(model: onnx.ModelProto, prefix: str) -> onnx.ModelProto:
    """`model` with every value and node name prefixed (onnx.compose.add_prefix
    does the same, several times slower; it is kept for subgraphs)."""
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for n in model.graph.node for a in n.attribute):
        return onnx.compose.add_prefix(model, prefix)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    for n in g.node:
        if n.name:
            n.name = prefix + n.name
        for k, name in enumerate(n.input):
            if name:
                n.input[k] = prefix + name
        for k, name in enumerate(n.output):
            if name:
                n.output[k] = prefix + name
    for container in (g.input, g.output, g.value_info, g.initializer):
        for v in container:
            v.name = prefix + v.name
    return out


def _merge(models: Sequence[onnx.ModelProto]) -> onnx.ModelProto:
    """One model holding every standalone model, names prefixed `c<k>/`."""
    parts = [_prefixed(m, f"c{k}/") for k, m in enumerate(models)]
    g = helper.make_graph(
        [n for p in parts for n in p.graph.node], "checks",
        [i for p in parts for i in p.graph.input], [o for p in parts for o in p.graph.output],
        [t for p in parts for t in p.graph.initializer])
    return helper.make_model(g, opset_imports=list(models[0].opset_import), ir_version=models[0].ir_version)


def _run_group(models, feeds, oracle: bool):
    """Outputs per model: merged in one session, else one by one.

    Returns a list with, per model, its outputs or a RunError message."""
    if len(models) == 1:
        return _run_each(models, feeds, oracle)
    merged = _merge(models)
    merged_feeds = {f"c{k}/{n}": v for k, f in enumerate(feeds) for n, v in f.items()}
    try:
        outs, _ = run_model(merged, merged_feeds, allow_reference=False)
        sizes = [len(m.graph.output) for m in models]
        result, at = [], 0
        for s in sizes:
            result.append(outs[at:at + s])
            at += s
        return result
    except RunError:
        return _run_each(models, feeds, oracle)


class ReferenceRun(list):
    """Outputs of the original that onnx's reference evaluator computed
    (onnxruntime has no kernel for it): a failed check says so, since the
    reference's arithmetic is then the measure (it computes cubic Resize
    weights in float32, for one)."""


def _run_each(models, feeds, oracle: bool) -> list:
    result = []
    for m, f in zip(models, feeds):
        try:
            outs, engine = run_model(m, f, allow_reference=oracle)
            result.append(ReferenceRun(outs) if engine == "reference" else outs)
        except RunError as e:
            result.append(str(e))
    return result


def verify_checks(checks: Sequence[LocalCheck], seed: int = 0, rtol=None, atol=None,
                  progress: Optional[Callable[[int, int], None]] = None) -> list:
    """A Comparison (truthy when equivalent) or an error string per check.
    Checks of one structure run in a session of that structure
    (shared_checks.py); the others merged into few sessions.
    `progress(done, total)` is called before each batch of checks and at the end."""
    results: list = [Comparison() for _ in checks]
    shared = shared_structures(checks)
    alone = sorted(set(range(len(checks))) - {k for s in shared for k in s.checks})
    work = [(batch, group) for batch in (1, 2)
            for group in _groups([k for k in alone if batch == 1 or checks[k].symbolic], checks)]
    total = sum(len(group) for _, group in work) + sum(1 + checks[k].symbolic for s in shared for k in s.checks)
    done = 0
    for structure in shared:
        sessions = StructureSessions(checks[structure.checks[0]])
        for batch in (1, 2):
            shapes = _shared_feed_shapes(checks[structure.checks[0]], batch)
            for k, sides in zip(structure.checks, structure.sides):
                if batch == 2 and not checks[k].symbolic:
                    continue
                if progress is not None:
                    progress(done, total)
                done += 1
                _run_shared(results, k, checks[k], sides, sessions, seed, batch, rtol, atol, shapes)
        del sessions
    for batch, group in work:
        if progress is not None:
            progress(done, total)
        done += len(group)
        models = [checks[k].materialized() for k in group]
        try:
            feeds = [_feeds(checks[k], seed + k, batch) for k in group]
        except FeedTooLarge as e:  # a symbolic dim made concrete made it too large: these cannot be checked
            for k in group:
                results[k] = f"the check's random inputs would be too large ({e})"
            continue
        want = _run_group([m[0] for m in models], feeds, oracle=True)
        got = _run_group([m[1] for m in models], feeds, oracle=False)
        fused = qdq_check.fused_comparisons(group, checks, models, feeds)   # quantized checks only
        del models
        for k, w, g in zip(group, want, got):
            _judge(results, k, checks[k], w, g, rtol, atol, fused.get(k, Comparison()))
    if progress is not None:
        progress(total, total)
    return results


def _feeds(check: "LocalCheck", seed: int, batch: int) -> dict:
    graph = check.original.graph
    return random_feeds(graph.input, seed, batch, pinned=pinned_dims(graph))


def _shared_feed_shapes(check: LocalCheck, batch: int) -> Optional[list]:
    """feed_shapes of `check`'s inputs, the same for every check of its
    structure (the same input types, the same nodes and weight dims that pin
    a channel dim, only other names); None where it raises: then each check's
    own _feeds raises it again, as it would without this."""
    graph = check.original.graph
    try:
        return feed_shapes(graph.input, batch, pinned=pinned_dims(graph))
    except Exception:
        return None


def _run_shared(results: list, k: int, check: LocalCheck, sides, sessions, seed: int, batch: int, rtol, atol,
                shapes: Optional[list] = None) -> None:
    """Check `k` in the sessions of its structure; a side they cannot run
    runs alone.  `shapes`: _shared_feed_shapes of its structure."""
    try:   # what _feeds makes (the inputs of the check's side are its own names for the same shapes)
        feeds = (_feeds(check, seed + k, batch) if shapes is None
                 else dict(zip(sides[0].inputs, random_values(shapes, seed + k))))
    except FeedTooLarge as e:
        results[k] = f"the check's random inputs would be too large ({e})"
        return
    inputs = list(feeds.values()) if sides[0].inputs == sides[1].inputs == tuple(feeds) else None
    outputs = sessions.run([(inputs or [feeds[name] for name in side.inputs]) + check.weight_values(j)
                            for j, side in enumerate(sides)])
    for j in (0, 1):   # the original may fall back on onnx's reference evaluator (the oracle)
        if outputs[j] is None:
            model = check.original if j == 0 else check.replacement   # assembled only here
            outputs[j] = _run_each([_filled(model, check.weights)], [feeds], oracle=j == 0)[0]
    _judge(results, k, check, outputs[0], outputs[1], rtol, atol, Comparison())


REFERENCE_RAN = "the original was run by onnx's reference evaluator: onnxruntime has no kernel for it"


def _judge(results: list, k: int, check: LocalCheck, want, got, rtol, atol, fused: Comparison) -> None:
    """Merge one run's verdict into results[k]: outputs compared, or the error that stopped a side."""
    if isinstance(results[k], str):
        return
    if isinstance(want, str):
        results[k] = f"the original node(s) could not be run: {want}"
    elif isinstance(got, str):
        results[k] = f"onnxruntime cannot run the replacement: {got}"
    else:
        compared = qdq.compare_outputs(check.outputs, want, got, rtol, atol, check.steps)
        if isinstance(want, ReferenceRun):
            for o in compared.outputs:
                if not o:
                    o.message = "; ".join(filter(None, [o.message, REFERENCE_RAN]))
        results[k] = results[k].merge(compared) if results[k].outputs else compared
        if fused.outputs:   # only quantized checks run fused
            results[k] = results[k].merge(fused)


def _groups(idx: Sequence[int], checks: Sequence[LocalCheck]):
    group, nodes, size = [], 0, 0
    for k in idx:
        c = checks[k]
        n = len(c.original.graph.node) + len(c.replacement.graph.node)
        b = c.original.ByteSize() + c.replacement.ByteSize() + c.weight_bytes
        if group and (nodes + n > BATCH_LIMIT_NODES or size + b > BATCH_LIMIT_BYTES):
            yield group
            group, nodes, size = [], 0, 0
        group.append(k)
        nodes, size = nodes + n, size + b
    if group:
        yield group
