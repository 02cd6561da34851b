"""A read-only view of a model's top-level graph, as the passes see it.

It answers the questions every pass asks -- what shape and dtype is this
value, is it a constant and what is its value (folding.py), who produces and
who consumes it -- from one shape-inferred, weightless copy of the model
(weights.py).  The model itself is never edited here; the driver does that.
"""
from __future__ import annotations

import itertools
from collections import Counter
from functools import cached_property
from typing import Optional, Sequence

import numpy as np
import onnx
from onnx import helper

from .errors import InputError
from .folding import ConstantFolding, attributes  # noqa: F401  (attributes: re-exported)
from .weights import stubbed, weightless_copy

Dim = "int | str | None"  # static size, symbolic name, or unknown
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def _dims(type_proto: onnx.TypeProto) -> Optional[tuple]:
    if not type_proto.HasField("tensor_type"):
        return None
    tt = type_proto.tensor_type
    if not tt.HasField("shape"):
        return None
    dims = []
    for d in tt.shape.dim[:]:   # a slice: see _indexes
        # a static size (0 only where set: an unset dim_value reads 0 too), a
        # symbolic name, or unknown (a negative size: an exporter's "dynamic")
        v = d.dim_value
        if v > 0:
            dims.append(v)
        elif v < 0:
            dims.append(None)
        else:
            dims.append(d.dim_param or (0 if d.HasField("dim_value") else None))
    return tuple(dims)



class GraphView(ConstantFolding):
    """Shapes, dtypes, constants and topology of `model.graph` (read-only)."""

    def __init__(self, model: onnx.ModelProto, inferred: Optional[onnx.ModelProto] = None,
                 shapes: Optional[onnx.ModelProto] = None, indexes: Optional[tuple] = None):
        """`inferred`: the types to read as they are (no inference at all);
        `shapes`: infer_shapes(model), worked out already (the load's check:
        model_io.check_and_infer), which the view then completes as it
        completes its own inference (_infer_with_folded_inputs); `indexes`:
        _indexes of the model's nodes, worked out already (the splice's:
        splice_in_place), the view's own from then on."""
        self.model = model
        self.graph = model.graph
        nodes = self.graph.node[:]   # slices of repeated fields: see _indexes
        self._producer, self._consumers = indexes if indexes is not None else _indexes(nodes)
        self._inferred = (inferred if inferred is not None else shapes if shapes is not None
                          else infer_shapes(model, (self._producer, self._consumers)))
        self._types: dict[str, onnx.TypeProto] = {}
        g = self._inferred.graph
        # A graph input may be listed as a graph output too, its declaration
        # there vaguer ('H' for a static 5); the value is what the input is
        # fed, so the input's declaration is read last and wins.
        for vi in g.value_info[:] + g.output[:] + g.input[:]:
            self._types[vi.name] = vi.type
        self.initializers = {t.name: t for t in self.graph.initializer[:]}
        self._graph_inputs = {i.name for i in self.graph.input}
        # Before IR version 4 every initializer had to be listed as a graph
        # input too; only from IR 4 on does a listed initializer mean "a
        # default the caller may override".
        self._overridable = (self._graph_inputs & set(self.initializers)
                             if model.ir_version >= 4 else set())
        self.graph_outputs = [o.name for o in self.graph.output]
        # (domain, version) in the model's order: opset() is asked thousands of
        # times, and a protobuf field costs more to walk than a tuple
        self._opset_imports = tuple((imp.domain, int(imp.version)) for imp in model.opset_import)
        self.op_types = op_types = [node.op_type for node in nodes]   # in graph order
        # Whether any node is a QuantizeLinear or DequantizeLinear (of any
        # domain): without one no node is in a quantized region (core/qdq.py
        # answers at once).  Worked out here, with the model as it is: the
        # driver may edit it in place once the view is frozen.
        self.has_qdq = not _QDQ_OPS.isdisjoint(op_types)
        self._const_cache: dict[tuple, Optional[np.ndarray]] = {}
        self._shapes: dict[str, Optional[tuple]] = {}
        self.node_names = [node.name for node in nodes]   # in graph order
        self.labels = _unique_labels(nodes, op_types, self.node_names)
        if inferred is None:
            self._infer_with_folded_inputs(nodes, op_types)

    def _infer_with_folded_inputs(self, nodes: list, op_types: list) -> None:
        """Shape inference again where it could not read a shape-deciding
        input that folds to a constant here: torch's TorchScript export
        writes a reflect or replicate padding's pads as a chain (Constant,
        ConstantOfShape, Concat, Reshape, Slice, Transpose, Cast) that
        onnx's data propagation does not follow, so the Pad's output -- and
        every shape after it -- stayed unknown in a model of static shapes,
        and the dilated Conv after it was left for a "not static" size the
        user cannot fix.  The folded values go in as initializers of a
        weightless copy, read by the node in place of the chain; only the
        inferred types are kept.  `nodes`, `op_types`: the graph's nodes and their op types."""
        for _ in range(3):     # a chain's own inputs may be shapes the previous round found
            folded = self._foldable_shape_inputs(nodes, op_types)
            if not folded:
                return
            source = weightless_copy(self.model)
            names = set(self.names_in_use)
            renamed = {}
            for name, value in folded.items():
                renamed[name] = _fresh(f"{name}/folded", names)
                source.graph.initializer.append(onnx.numpy_helper.from_array(value, renamed[name]))
            for node in source.graph.node:
                picks = _SHAPE_INPUTS.get(node.op_type, ()) if node.domain in ("", "ai.onnx") else ()
                for k in picks:
                    if k < len(node.input) and node.input[k] in renamed:
                        node.input[k] = renamed[node.input[k]]
            try:
                g = infer_shapes(source).graph
            except InputError:     # the folded values make inference fail: keep what it found before
                return
            before = dict(self._types)
            for vi in list(g.value_info) + list(g.output):
                if vi.name in before and _more_static(_dims(vi.type), _dims(before[vi.name])):
                    self._types[vi.name] = vi.type
                elif vi.name not in before and vi.name not in renamed.values():
                    self._types[vi.name] = vi.type
            self._shapes.clear()
            self._const_cache.clear()
            self.__dict__.pop("names_in_use", None)
            if self._types == before:
                return

    def _foldable_shape_inputs(self, nodes: list, op_types: list) -> dict:
        """{input: value} of the shape-deciding inputs (_SHAPE_INPUTS) that
        fold to constants, of nodes whose output shape is not all static --
        but for initializers and Constant nodes, which inference reads.  A
        node's output shapes are looked at only where it has such an input
        (most read initializers: no shape of theirs is worked out for this)."""
        folded = {}
        for node, op_type in zip(nodes, op_types):
            picks = _SHAPE_INPUTS.get(op_type, ())
            if not picks or node.domain not in ("", "ai.onnx"):   # the op type first: one protobuf read for most
                continue
            inputs = node.input
            asked = [inputs[k] for k in picks if k < len(inputs) and self._inference_cannot_read(inputs[k])]
            if not asked or all(_static(self.shape(o)) for o in node.output[:] if o):
                continue
            for name in asked:
                if name not in folded:
                    value = self.constant(name)
                    if value is not None:
                        folded[name] = np.asarray(value)
        return folded

    def _inference_cannot_read(self, name: str) -> bool:
        """Whether shape inference cannot read a shape-deciding input itself:
        it reads an initializer and a Constant node's value, and a graph
        input is what the caller feeds (no value to fold)."""
        if not name or self.is_initializer(name) or name in self._graph_inputs:
            return False
        producer = self.producer(name)
        return producer is None or producer.op_type != "Constant"   # (read even where a symbolic batch left the dim)

    # --- opsets -----------------------------------------------------------
    def opset(self, domain: str = "") -> int:
        for name, version in self._opset_imports:
            if name in (domain, "ai.onnx" if domain == "" else domain):
                return version
        return 0

    # --- topology ---------------------------------------------------------
    def producer(self, name: str) -> Optional[onnx.NodeProto]:
        return self._producer.get(name)

    def consumers(self, name: str) -> list:
        return self._consumers.get(name, [])

    def position(self, node: onnx.NodeProto) -> int:
        """The node's index in the graph's node list."""
        return self._positions[id(node)]

    @cached_property
    def _positions(self) -> dict:
        return {id(n): k for k, n in enumerate(self.graph.node[:])}

    def freeze(self) -> None:
        """Work out now what the view reads from the model lazily, so that
        it stays the view of the model as it is, should the driver then edit
        the model in place (bisection rebuilds replacements from it)."""
        self._positions
        self.names_in_use

    def label(self, node: onnx.NodeProto) -> str:
        """A unique, readable name: the node's own name, or Op_index."""
        return self.labels[id(node)]

    @cached_property
    def outer_references(self) -> frozenset:
        """Values of this graph that If/Loop/Scan bodies read (a superset:
        node_outer_references); `consumers` does not list those reads."""
        return frozenset(subgraph_outer_references(self.graph))

    @cached_property
    def names_in_use(self) -> frozenset:
        """Every value and node name (the values the nodes read and write
        are the producer and consumer indexes' keys)."""
        names = set(self._types) | set(self.initializers) | self._graph_inputs
        names.update(self._producer, self._consumers, self.node_names)
        names.update(self.outer_references)
        return frozenset(names)

    # --- types ------------------------------------------------------------
    def shape(self, name: str) -> Optional[tuple]:
        """Dims of a value: ints where static, dim_param strings, None unknown."""
        try:
            return self._shapes[name]
        except KeyError:
            pass
        self._shapes[name] = found = self._shape(name)
        return found

    def _shape(self, name: str) -> Optional[tuple]:
        if name in self.initializers:
            return tuple(self.initializers[name].dims)
        t = self._types.get(name)
        if t is None:
            c = self._constant_node_value(name)
            return None if c is None else tuple(c.shape)
        return _dims(t)

    def static_shape(self, name: str) -> Optional[tuple]:
        s = self.shape(name)
        if s is None or not all(isinstance(d, int) for d in s):
            return None
        return s

    def dtype(self, name: str) -> Optional[int]:
        """The TensorProto element type of a value (e.g. TensorProto.FLOAT)."""
        if name in self.initializers:
            return self.initializers[name].data_type
        t = self._types.get(name)
        if t is not None and t.HasField("tensor_type"):
            return int(t.tensor_type.elem_type) or None
        c = self.constant(name)
        return None if c is None else helper.np_dtype_to_tensor_dtype(c.dtype)

    def value_type(self, name: str) -> Optional[onnx.TypeProto]:
        return self._types.get(name)

    def value_info(self, name: str) -> onnx.ValueInfoProto:
        """A ValueInfo for `name` with its inferred type (or the shape and
        dtype known otherwise; float32 of unknown shape as a last resort)."""
        t = self._types.get(name)
        if t is not None:
            vi = onnx.ValueInfoProto(name=name)
            vi.type.CopyFrom(t)
            return vi
        shape = self.shape(name)
        return helper.make_tensor_value_info(name, self.dtype(name) or onnx.TensorProto.FLOAT,
                                             None if shape is None else list(shape))

    # --- constants --------------------------------------------------------
    def is_graph_input(self, name: str) -> bool:
        """A value the caller feeds (an overridable initializer included)."""
        return name in self._graph_inputs and (name not in self.initializers or name in self._overridable)

    def maker(self, node: onnx.NodeProto) -> str:
        """A node as a reason names it: op type, label, and a domain other than ONNX's."""
        domain = f" of domain '{node.domain}'" if node.domain not in ("", "ai.onnx") else ""
        return f"{node.op_type} '{self.label(node)}'{domain}"

    def is_sparse_initializer(self, name: str) -> bool:
        """A sparse_initializer: a constant, but not one the passes read (a
        reason must not call it computed at run time)."""
        return any(t.values.name == name for t in self.graph.sparse_initializer)


def _indexes(nodes: list) -> tuple[dict, dict]:
    """The node producing each value, and the nodes reading it (in graph order).

    A node's inputs and outputs are read as slices (lists) where a loop
    walks them: protobuf's (upb's) repeated fields have no __iter__, so a
    for loop over one indexes it until an IndexError, whose message is
    formatted each time -- some 2,000 instructions, more than reading the
    few names a node has (on the issue-12 model, 117,000 such loops were
    5% of a run without verification)."""
    producer: dict[str, onnx.NodeProto] = {}
    consumers: dict[str, list] = {}
    for node in nodes:
        for o in node.output[:]:
            if o:
                producer[o] = node
        for i in node.input[:]:
            if i:
                readers = consumers.get(i)
                if readers is None:
                    consumers[i] = [node]
                else:
                    readers.append(node)
    return producer, consumers


def _unique_labels(nodes: Sequence[onnx.NodeProto], op_types: Optional[Sequence[str]] = None,
                   names: Optional[Sequence[str]] = None) -> dict:
    """id(node) -> its name where no other node has it, else Op_index
    (suffixed with "_" until unique); `op_types`, `names`: the nodes' own, if known."""
    if names is None:
        names = [node.name for node in nodes]
    seen = Counter(names)
    if len(seen) == len(names) and "" not in seen:   # every node named, no name twice: its name
        return {id(node): name for node, name in zip(nodes, names)}
    if op_types is None:
        op_types = [node.op_type for node in nodes]
    labels, used = {}, set()
    for k, (node, name) in enumerate(zip(nodes, names)):
        label = name if name and seen[name] == 1 else f"{op_types[k]}_{k}"
        while label in used:
            label += "_"
        used.add(label)
        labels[id(node)] = label
    return labels


# The operators of the standard domain that take graph attributes (bodies).
# onnx.checker refuses an attribute a standard operator's schema does not
# declare, so any other node of the standard domain has none, and looking
# into its attributes (about a microsecond each through protobuf) can be
# skipped; a node of any other domain is looked into.
SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})
STANDARD_DOMAINS = ("", "ai.onnx")


def node_outer_references(node: onnx.NodeProto) -> set:
    """Every value name used inside a node's If/Loop/Scan bodies.

    A superset of the outer-scope names the bodies read (it also holds the
    bodies' own names), which is what keep-alive and ordering need."""
    names = set()
    if node.op_type not in SUBGRAPH_OPS and node.domain in STANDARD_DOMAINS:
        return names
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            bodies = [a.g]
        elif a.type == onnx.AttributeProto.GRAPHS:
            bodies = a.graphs
        else:
            continue   # most attributes: nothing to look into
        for sg in bodies:
            for n in sg.node:
                names.update(n.input)
                names.update(n.output)
                names |= node_outer_references(n)
            names.update(o.name for o in sg.output)
    return names


def subgraph_outer_references(graph: onnx.GraphProto) -> set:
    names = set()
    for node in graph.node[:]:
        if node.op_type in SUBGRAPH_OPS or node.domain not in STANDARD_DOMAINS:   # any other: none
            names |= node_outer_references(node)
    return names


def nested_nodes(model: onnx.ModelProto) -> list:
    """(scope, node) for every node not in the main graph: in the subgraphs
    of its nodes' graph attributes (If, Loop, Scan, ...), at any depth, and
    in the model-local functions.  `scope` is a path: the holding node's
    name (or op type and index) and the attribute, "up/then_branch", or
    "function local.Up"."""
    out, holds = [], (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)

    def visit(nodes, scope):
        for k, node in enumerate(nodes):
            if scope:
                out.append((scope, node))
            for a in node.attribute[:]:   # a slice: see _indexes
                if a.type not in holds:   # most attributes: one enum read (a model of thousands of nodes)
                    continue
                for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    holder = node.name or f"{node.op_type}_{k}"
                    visit(g.node, f"{scope + '/' if scope else ''}{holder}/{a.name}")

    visit(model.graph.node, "")
    for f in model.functions:
        visit(f.node, f"function {f.domain}.{f.name}")
    return out


# The inputs that decide a node's output shape (by index).
_SHAPE_INPUTS = {"Pad": (1, 3), "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4),
                 "Resize": (1, 2, 3), "Upsample": (1,), "ConstantOfShape": (0,), "Squeeze": (1,),
                 "Unsqueeze": (1,), "Range": (0, 1, 2)}


def _static(dims: Optional[tuple]) -> bool:
    return dims is not None and all(isinstance(d, int) for d in dims)


def _more_static(new: Optional[tuple], old: Optional[tuple]) -> bool:
    """Whether `new` knows more than `old` and contradicts none of its static dims."""
    if new is None:
        return False
    if old is None:
        return True
    if len(new) != len(old) or any(isinstance(o, int) and n != o for n, o in zip(new, old)):
        return False
    return sum(isinstance(d, int) for d in new) > sum(isinstance(d, int) for d in old)


def _fresh(name: str, taken: set) -> str:
    k, out = 0, name
    while out in taken:
        k += 1
        out = f"{name}_{k}"
    taken.add(out)
    return out


def infer_shapes(model: onnx.ModelProto, indexes: Optional[tuple] = None) -> onnx.ModelProto:
    """A shape-inferred copy (symbolic dims kept); the input is untouched.

    Inference runs on a copy whose weights keep their dims but not their
    data: the copy (and the inferred model a GraphView keeps) then costs
    nothing next to the weights, and a model above protobuf's 2 GB limit
    can be inferred at all.  `indexes`: _indexes of the model's nodes, if
    the caller has them (a GraphView does)."""
    try:
        return inference_over_declarations(model, strict=False, indexes=indexes)
    except (onnx.shape_inference.InferenceError, ValueError) as e:
        raise InputError(f"shape inference failed: {str(e).splitlines()[0]}") from None


def inference_over_declarations(model: onnx.ModelProto, strict: bool,
                                indexes: Optional[tuple] = None) -> onnx.ModelProto:
    """run_inference, where a node's output shape is what the node computes,
    not what a stale declaration (value_info, graph output) says.  onnx's
    lenient inference keeps a declared shape its node contradicts (a
    value_info [1, 32, 16, 16] after a Reshape to [1, 32, 8, 32]) and
    computes on from it; onnxruntime overrides the declaration and runs the
    node's shape.  A pass reading the stale shape builds for the wrong one:
    shuffle-spelling's Reshapes name H and W, and on the real tensor they
    reorder other elements (written so by --no-verify).  So inference runs
    with the node outputs' declared shapes taken out; a declaration then
    fills only what inference leaves open (a dim it cannot tell, a custom
    operator's output: what README's advice to declare a value_info relies
    on), in further inferences where it fills any (_with_fills).  `strict`
    goes to the first inference (run_inference; the load's check runs it so,
    and hands its result to the first view, which must read the same shapes
    as infer_shapes gives).  `indexes`: _indexes of the model's nodes, if
    known (else worked out only where a declaration fills)."""
    produced = indexes[0] if indexes is not None else {o for n in model.graph.node for o in n.output[:] if o}
    held = [vi for vi in model.graph.value_info[:] + model.graph.output[:]
            if vi.name in produced and vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape")]
    if not held:
        return run_inference(model, strict=strict)
    # The declarations are taken out of `model` itself for the first inference
    # and put back (inference works on its own serialized copy): copying the
    # model for it cost more than the inference on a 2,000-node graph.
    declared = {vi.name: _dims(vi.type) for vi in held}
    saved = [onnx.TypeProto() for _ in held]
    for vi, keep in zip(held, saved):
        keep.CopyFrom(vi.type)
        vi.type.tensor_type.ClearField("shape")
    try:
        first = run_inference(model, strict=strict)
    finally:
        for vi, keep in zip(held, saved):
            vi.type.CopyFrom(keep)
    return _with_fills(model, declared, first, indexes)


# Rounds of _with_fills that hold back a declaration downstream of another
# one that fills; after them the rest go in at once.  Each round is an
# inference of the whole model, and a chain of values inference cannot tell,
# each declared, would take one round per link.
FILL_ROUNDS = 4


def _with_fills(model: onnx.ModelProto, declared: dict, inferred: onnx.ModelProto,
                indexes: Optional[tuple] = None) -> onnx.ModelProto:
    """Inference again with the declarations that fill what `inferred` left
    open, round by round, until none does.  A declaration downstream of
    another one that fills waits for a later round where it gives a rank or
    a static dim: once inference has computed on from the upstream one, its
    node may compute them itself (a Transpose after a custom operator whose
    output is declared), and lenient inference would keep the downstream
    declaration however stale.  (A symbolic name never beats a static dim
    in inference; a node onnx has no schema for is never computed.)  Each
    round fills at least one name (the graph is acyclic), so they end.
    `indexes`: _indexes of the model's nodes, worked out here where none
    is given and a declaration fills (most runs: none does)."""
    fills: dict = {}
    for round_ in itertools.count():
        found = _inferred_dims(inferred.graph, declared)
        open_ = {}
        for name, dims in declared.items():
            merged = None if name in fills else _declared_fills(dims, found.get(name))
            if merged is not None:
                open_[name] = merged
        if not open_:
            return inferred
        if indexes is None:
            indexes = _indexes(list(model.graph.node))
        producer, consumers = indexes
        after = _downstream(open_, consumers) if round_ < FILL_ROUNDS else set()
        now = {name: dims for name, dims in open_.items()
               if name not in after or not _has_schema(producer[name]) or not _decides(dims, found.get(name))}
        if not now:
            return inferred
        fills.update(now)
        source = weightless_copy(model)
        for vi in (*source.graph.value_info, *source.graph.output):
            if vi.name in declared:
                if vi.name in fills:
                    _set_dims(vi.type.tensor_type, fills[vi.name])
                else:
                    vi.type.tensor_type.ClearField("shape")
        inferred = run_inference(source, strict=False)


def _inferred_dims(g: onnx.GraphProto, names) -> dict:
    """{name: dims} of the `names` among the inferred graph's value_info and
    outputs (an output's own where a name is both).  Mostly the declared
    names are the graph's outputs: then value_info (one entry per value of
    the graph) is not looked into."""
    found = {vi.name: _dims(vi.type) for vi in g.output if vi.name in names}
    if len(found) == len(names):
        return found
    return {vi.name: _dims(vi.type) for vi in (*g.value_info, *g.output) if vi.name in names}


def _decides(fill: tuple, inferred: Optional[tuple]) -> bool:
    """Whether a fill gives what a node's inference would otherwise decide:
    the rank, or a static dim."""
    return inferred is None or any(isinstance(f, int) and not isinstance(i, int) for f, i in zip(fill, inferred))


def _downstream(names, consumers: dict) -> set:
    """The values computed, at any depth, from `names` (not `names` themselves, unless from another)."""
    out, todo = set(), list(names)
    while todo:
        for node in consumers.get(todo.pop(), ()):
            for o in node.output:
                if o and o not in out:
                    out.add(o)
                    todo.append(o)
    return out


def _has_schema(node: onnx.NodeProto) -> bool:
    """Whether onnx's inference knows the operator (else it never computes its outputs)."""
    domain = "" if node.domain == "ai.onnx" else node.domain
    return onnx.defs.has(node.op_type, domain)


def _declared_fills(declared: tuple, inferred: Optional[tuple]) -> Optional[tuple]:
    """The dims a declaration and inference give together, where the
    declaration adds to what inference found (else None): inference's static
    dims win; the declaration gives the rank where inference has none, and a
    dim inference cannot tell."""
    if inferred is None:
        return declared
    if len(inferred) != len(declared):
        return None
    merged = tuple(i if isinstance(i, int) or d is None else d for d, i in zip(declared, inferred))
    return merged if merged != inferred else None


def _set_dims(tensor_type, dims: tuple) -> None:
    tensor_type.ClearField("shape")
    shape = tensor_type.shape
    shape.SetInParent()     # a scalar's empty shape is a shape
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        elif d is not None:
            dim.dim_param = d


def run_inference(model: onnx.ModelProto, strict: bool) -> onnx.ModelProto:
    """onnx's shape inference as infer_shapes runs it, onnx's errors raised
    as they are.  `strict`: every complaint of inference raises (all of them
    in one InferenceError); where there is none, the result is the same as
    without (onnx only collects the complaints it would otherwise drop), so
    the load's strict check (model_io) hands the first view its inference."""
    source = weightless_copy(model) if any(stubbed(t) for t in model.graph.initializer[:]) else model
    source = _negative_dims_unknown(source, copied=source is not model)
    return onnx.shape_inference.infer_shapes(source, check_type=False, strict_mode=strict, data_prop=True)


def _negative_dims_unknown(model: onnx.ModelProto, copied: bool) -> onnx.ModelProto:
    """`model` with every negative dim_value of a declared shape (graph
    inputs, outputs, value_info: some exporters write -1 for a dynamic
    dimension) made unknown, copied unless `copied`.  Shape inference would
    otherwise compute with the -1 as a size (a Pad of 2 makes it a static 1)."""
    def declared(m):
        return [*m.graph.input, *m.graph.output, *m.graph.value_info]

    if not any(d.dim_value < 0 for vi in declared(model) for d in vi.type.tensor_type.shape.dim):
        return model   # (an unset field reads 0, a non-tensor type an empty shape: no HasField needed)
    if not copied:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model = copy
    for vi in declared(model):
        for d in vi.type.tensor_type.shape.dim if vi.type.HasField("tensor_type") else ():
            if d.HasField("dim_value") and d.dim_value < 0:
                d.Clear()
    return model
