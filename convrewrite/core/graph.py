"""A read-only view of a model's top-level graph, as the passes see it.

It answers the questions every pass asks -- what shape and dtype is this
value, is it a constant and what is its value, who produces and who consumes
it -- from one shape-inferred copy of the model.  The model itself is never
edited here; the driver does that.
"""
from __future__ import annotations

from functools import cached_property
from typing import Iterable, Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import InputError

Dim = "int | str | None"  # static size, symbolic name, or unknown

# Ops a constant chain may go through.  Exporters write scales, sizes and
# weights through these (Shape -> Gather -> Concat, Cast, Identity, ...).
FOLDABLE_OPS = frozenset({
    "Identity", "Cast", "CastLike", "Gather", "Concat", "Unsqueeze", "Squeeze",
    "Slice", "Reshape", "Transpose", "Mul", "Div", "Add", "Sub", "Floor",
    "Ceil", "Round", "Neg", "Abs", "Sqrt", "ConstantOfShape", "Range", "Expand",
    "Flatten", "Max", "Min", "ReduceProd", "Flip", "Equal", "Where", "Not",
    "DequantizeLinear", "Tile", "Pow", "Reciprocal",
})
FOLD_MAX_ELEMENTS = 1 << 26
# Ops that only move entries around: a partly symbolic Shape may flow through
# them, and an entry is static exactly when it comes out the same for two
# different values of the symbolic dims (GraphView.partial_constant).
DATA_MOVEMENT_OPS = frozenset({"Identity", "Cast", "Gather", "Concat", "Unsqueeze", "Squeeze",
                               "Slice", "Reshape", "Flatten"})
PROBES = (1_000_003, 1_000_033)  # never materialise absurdly large folded tensors


def attributes(node: onnx.NodeProto) -> dict:
    """A node's attributes as plain Python values (strings decoded; bytes
    that are not UTF-8 become U+FFFD, so a damaged string is just unknown)."""
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", errors="replace")
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode("utf-8", errors="replace") for x in v]
        out[a.name] = v
    return out


def _dims(type_proto: onnx.TypeProto) -> Optional[tuple]:
    if not type_proto.HasField("tensor_type"):
        return None
    tt = type_proto.tensor_type
    if not tt.HasField("shape"):
        return None
    dims = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


# Initializers at least this large are converted to numpy on each request
# rather than cached: a cache would hold a second copy of every weight.
UNCACHED_BYTES = 1 << 20


class GraphView:
    """Shapes, dtypes, constants and topology of `model.graph` (read-only)."""

    def __init__(self, model: onnx.ModelProto, inferred: Optional[onnx.ModelProto] = None):
        self.model = model
        self.graph = model.graph
        self._inferred = inferred if inferred is not None else infer_shapes(model)
        self._types: dict[str, onnx.TypeProto] = {}
        g = self._inferred.graph
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            self._types[vi.name] = vi.type
        self.initializers = {t.name: t for t in self.graph.initializer}
        self._graph_inputs = {i.name for i in self.graph.input}
        # Before IR version 4 every initializer had to be listed as a graph
        # input too; only from IR 4 on does a listed initializer mean "a
        # default the caller may override".
        self._overridable = (self._graph_inputs & set(self.initializers)
                             if model.ir_version >= 4 else set())
        self.graph_outputs = [o.name for o in self.graph.output]
        self._producer: dict[str, onnx.NodeProto] = {}
        self._consumers: dict[str, list] = {}
        for node in self.graph.node:
            for o in node.output:
                if o:
                    self._producer[o] = node
            for i in node.input:
                if i:
                    self._consumers.setdefault(i, []).append(node)
        self._const_cache: dict[tuple, Optional[np.ndarray]] = {}
        self.labels = _unique_labels(self.graph.node)

    # --- opsets -----------------------------------------------------------
    def opset(self, domain: str = "") -> int:
        for imp in self.model.opset_import:
            if imp.domain in (domain, "ai.onnx" if domain == "" else domain):
                return int(imp.version)
        return 0

    # --- topology ---------------------------------------------------------
    def producer(self, name: str) -> Optional[onnx.NodeProto]:
        return self._producer.get(name)

    def consumers(self, name: str) -> list:
        return self._consumers.get(name, [])

    def label(self, node: onnx.NodeProto) -> str:
        """A unique, readable name: the node's own name, or Op_index."""
        return self.labels[id(node)]

    @cached_property
    def names_in_use(self) -> frozenset:
        names = set(self._types) | set(self.initializers) | self._graph_inputs
        for node in self.graph.node:
            names.update(node.output)
            names.update(node.input)
            names.add(node.name)
        names.update(subgraph_outer_references(self.graph))
        return frozenset(names)

    # --- types ------------------------------------------------------------
    def shape(self, name: str) -> Optional[tuple]:
        """Dims of a value: ints where static, dim_param strings, None unknown."""
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

    def constant(self, name: str) -> Optional[np.ndarray]:
        """The value of `name` if it is known before run time, else None.

        Constant means: an initializer that is not also a graph input (from
        IR version 4 on those can be overridden at run time), the output of a
        Constant node, or the output of a small chain of FOLDABLE_OPS whose
        inputs are constants -- including Shape of a value whose inspected
        dims are static, and entries of Shape that data movement (Gather,
        Slice, Concat, ...) picks out of a partly symbolic shape.
        """
        if not name:
            return None
        value = self._value(name, None)
        if value is None:
            known = self.partial_constant(name)
            if known is not None and known[1].all():
                value = known[0]
        return value

    def is_constant(self, name: str) -> bool:
        """constant(name) is not None, without decoding an initializer."""
        return self.is_initializer(name) or self.constant(name) is not None

    def partial_constant(self, name: str) -> Optional[tuple]:
        """(values, known): `name` computed from a partly symbolic shape.

        The chain is evaluated twice, every symbolic dim replaced by one of
        two different probe values, through data-movement ops only; an entry
        equal in both runs is a static dim (or a constant), a differing one
        depends on a symbolic dim.  E.g. Concat(Shape(x)[:2], [64, 64]) with
        a symbolic batch -> ([?, 3, 64, 64], [False, True, True, True])."""
        exact = self._value(name, None)
        if exact is not None:
            return exact, np.ones(exact.shape, bool)
        a, b = self._value(name, 0), self._value(name, 1)
        if a is None or b is None or a.shape != b.shape:
            return None
        return a, a == b

    def _value(self, name: str, probe: Optional[int]) -> Optional[np.ndarray]:
        if self.is_initializer(name) and data_bytes(self.initializers[name]) >= UNCACHED_BYTES:
            return numpy_helper.to_array(self.initializers[name])  # a weight: read again, not kept twice
        key = (name, probe)
        if key not in self._const_cache:
            self._const_cache[key] = None  # cycle guard
            self._const_cache[key] = self._fold(name, probe)
        return self._const_cache[key]

    def is_initializer(self, name: str) -> bool:
        return name in self.initializers and name not in self._overridable

    def _constant_node_value(self, name: str) -> Optional[np.ndarray]:
        node = self._producer.get(name)
        if node is None or node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            return None
        a = node.attribute[0]
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        v = helper.get_attribute_value(a)
        if a.name in ("value_float", "value_int"):
            return np.array(v, dtype=np.float32 if a.name == "value_float" else np.int64)
        if a.name in ("value_floats", "value_ints"):
            return np.array(v, dtype=np.float32 if a.name == "value_floats" else np.int64)
        return None

    def _fold(self, name: str, probe: Optional[int]) -> Optional[np.ndarray]:
        if name in self.initializers:
            if name in self._overridable:
                return None
            return numpy_helper.to_array(self.initializers[name])
        node = self._producer.get(name)
        if node is None or node.domain not in ("", "ai.onnx"):
            return None
        if node.op_type == "Constant":
            return self._constant_node_value(name)
        if node.op_type == "Shape":
            return self._fold_shape(node, probe)
        allowed = FOLDABLE_OPS if probe is None else DATA_MOVEMENT_OPS
        if node.op_type not in allowed or probe is not None and not _exact_cast(node):
            return None
        inputs = [self._value(i, probe) if i else None for i in node.input]
        if any(v is None for i, v in zip(node.input, inputs) if i):
            return None
        return _evaluate(node, inputs, self.opset(), name)

    def _fold_shape(self, node: onnx.NodeProto, probe: Optional[int]) -> Optional[np.ndarray]:
        """Shape(x)[start:end]; with a probe, symbolic dims take PROBES[probe]."""
        dims = self.shape(node.input[0])
        if dims is None:
            return None
        a = attributes(node)
        r = len(dims)
        start, end = a.get("start", 0), a.get("end", r)
        start = max(0, min(r, start + r if start < 0 else start))
        end = max(0, min(r, end + r if end < 0 else end))
        picked = [d if isinstance(d, int) else None for d in dims[start:end]]
        if None in picked:
            if probe is None:
                return None
            picked = [PROBES[probe] if d is None else d for d in picked]
        return np.array(picked, dtype=np.int64)


def _exact_cast(node: onnx.NodeProto) -> bool:
    """A Cast that keeps every probe value exact (not float16, not bool)."""
    exact = (onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)
    return node.op_type != "Cast" or attributes(node).get("to") in exact


def _evaluate(node, inputs, opset, name) -> Optional[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    if sum(int(np.prod(v.shape)) for v in inputs if v is not None) > FOLD_MAX_ELEMENTS:
        return None
    inits, renamed = [], []
    for k, (i, v) in enumerate(zip(node.input, inputs)):
        if not i:
            renamed.append("")
            continue
        n = f"in{k}"
        inits.append(numpy_helper.from_array(v, n))
        renamed.append(n)
    outs = [f"out{k}" if o else "" for k, o in enumerate(node.output)]
    n = helper.make_node(node.op_type, renamed, outs, domain=node.domain)
    n.attribute.extend(node.attribute)
    g = helper.make_graph([n], "fold", [], [helper.make_value_info(o, onnx.TypeProto()) for o in outs if o], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    try:
        result = ReferenceEvaluator(m).run(None, {})
    except Exception:
        return None
    idx = [o for o in node.output if o].index(name)
    out = np.asarray(result[idx])
    if out.size > FOLD_MAX_ELEMENTS:
        return None
    return out


def _unique_labels(nodes: Iterable[onnx.NodeProto]) -> dict:
    seen: dict[str, int] = {}
    for node in nodes:
        if node.name:
            seen[node.name] = seen.get(node.name, 0) + 1
    labels, used = {}, set()
    for k, node in enumerate(nodes):
        label = node.name if node.name and seen[node.name] == 1 else f"{node.op_type}_{k}"
        while label in used:
            label += "_"
        used.add(label)
        labels[id(node)] = label
    return labels


def node_outer_references(node: onnx.NodeProto) -> set:
    """Every value name used inside a node's If/Loop/Scan bodies.

    A superset of the outer-scope names the bodies read (it also holds the
    bodies' own names), which is what keep-alive and ordering need."""
    names = set()
    for a in node.attribute:
        for sg in ([a.g] if a.type == onnx.AttributeProto.GRAPH else []) + list(a.graphs):
            for n in sg.node:
                names.update(n.input)
                names.update(n.output)
                names |= node_outer_references(n)
            names.update(o.name for o in sg.output)
    return names


def subgraph_outer_references(graph: onnx.GraphProto) -> set:
    names = set()
    for node in graph.node:
        names |= node_outer_references(node)
    return names


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A shape-inferred copy (symbolic dims kept); the input is untouched.

    Inference runs on a copy whose weights keep their dims but not their
    data: the copy (and the inferred model a GraphView keeps) then costs
    nothing next to the weights, and a model above protobuf's 2 GB limit
    can be inferred at all."""
    source = weightless_copy(model) if any(stubbed(t) for t in model.graph.initializer) else model
    try:
        return onnx.shape_inference.infer_shapes(source, check_type=False, strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, ValueError) as e:
        raise InputError(f"shape inference failed: {str(e).splitlines()[0]}") from None


WEIGHT_STUB_LOCATION = "weights-not-loaded"  # the external data file a stub names; never read

# Integer initializers are kept up to this size: shape inference reads their
# values (Reshape shapes, Slice starts, ...); it never reads float weights.
SHAPE_DATA_BYTES = 1 << 20
_SHAPE_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32}


def weightless_copy(model: onnx.ModelProto, min_bytes: int = 1024) -> onnx.ModelProto:
    """The model with each weight (see `stubbed`) replaced by a stub of the
    same dims and type (see weight_stub); everything else is copied as it is."""
    out = copy_without_initializers(model)
    for t in model.graph.initializer:
        if stubbed(t, min_bytes):
            out.graph.initializer.append(weight_stub(t.name, t.data_type, t.dims))
        else:
            out.graph.initializer.append(t)
    return out


def stubbed(t: onnx.TensorProto, min_bytes: int = 1024) -> bool:
    """Whether weightless_copy stubs this initializer: a float (or other
    non-index) tensor of >= min_bytes, an integer one of >= SHAPE_DATA_BYTES,
    or one whose data is external (not loaded, or not readable from here)."""
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return True
    return data_bytes(t) >= (SHAPE_DATA_BYTES if t.data_type in _SHAPE_TYPES else min_bytes)


def copy_without_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose graph has every field but its initializers.

    Fields are copied one by one, which skips fields this onnx does not
    know (written by a newer one); where there are such fields the whole
    model is copied, unknown fields and all, and the initializers dropped
    from the copy."""
    out = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            _copy_field(out, field.name, value)
    out.graph.SetInParent()
    for field, value in model.graph.ListFields():
        if field.name != "initializer":
            _copy_field(out.graph, field.name, value)
    if _has_unknown_fields(model) or _has_unknown_fields(model.graph):
        out.CopyFrom(model)
        del out.graph.initializer[:]
    return out


def _has_unknown_fields(message) -> bool:
    try:
        from google.protobuf import unknown_fields  # protobuf >= 4.22
        return len(unknown_fields.UnknownFieldSet(message)) > 0
    except ImportError:
        return len(message.UnknownFields()) > 0


def _copy_field(message, name: str, value) -> None:
    if hasattr(value, "CopyFrom"):      # a message
        getattr(message, name).CopyFrom(value)
    elif hasattr(value, "extend"):      # a repeated field
        getattr(message, name).extend(value)
    else:                               # a scalar
        setattr(message, name, value)


def weight_stub(name: str, data_type: int, dims, location: str = WEIGHT_STUB_LOCATION,
                **where: int) -> onnx.TensorProto:
    """A tensor with a weight's name, type and dims whose data is external:
    by default in a file that is never read (enough for shape inference),
    else at `location` (with `offset` and `length` given in `where`)."""
    stub = onnx.TensorProto(name=name, data_type=data_type)
    stub.dims.extend(dims)
    stub.data_location = onnx.TensorProto.EXTERNAL
    stub.external_data.add(key="location", value=location)
    for key, value in where.items():
        stub.external_data.add(key=key, value=str(value))
    return stub


def data_bytes(t: onnx.TensorProto) -> int:
    """The size of a tensor's data from its dims and type (ByteSize would
    serialise the whole tensor to tell)."""
    try:
        itemsize = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except KeyError:  # an undefined type
        return t.ByteSize()
    if t.data_type == onnx.TensorProto.STRING:
        return t.ByteSize()
    return int(np.prod(t.dims, dtype=np.int64)) * itemsize
