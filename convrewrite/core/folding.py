"""Constant folding: the value of a tensor when it is known before run time.

"Constant" means the same in every pass: an initializer (not overridable as
a graph input), a Constant node, or a chain of FOLDABLE_OPS whose inputs are
constants -- including Shape of a value whose inspected dims are static, and
entries of Shape that data movement (Gather, Slice, Concat, ...) picks out of
a partly symbolic shape.  GraphView mixes this in; it needs the view's
initializers, producers, shapes and opset.
"""
from __future__ import annotations

from functools import cached_property
from typing import Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .weights import data_bytes

# Ops a constant chain may go through.  Exporters write scales, sizes and
# weights through these (Shape -> Gather -> Concat, Cast, Identity, ...).
FOLDABLE_OPS = frozenset({
    "Identity", "Cast", "CastLike", "Gather", "Concat", "Unsqueeze", "Squeeze",
    "Slice", "Reshape", "Transpose", "Mul", "Div", "Add", "Sub", "Floor",
    "Ceil", "Round", "Neg", "Abs", "Sqrt", "ConstantOfShape", "Range", "Expand",
    "Flatten", "Max", "Min", "ReduceProd", "Flip", "Equal", "Where", "Not",
    "DequantizeLinear", "QuantizeLinear", "Tile", "Pow", "Reciprocal",
})
FOLD_MAX_ELEMENTS = 1 << 26
# Ops that only move entries around: a partly symbolic Shape may flow through
# them, and an entry is static exactly when it comes out the same for two
# different values of the symbolic dims (GraphView.partial_constant).
DATA_MOVEMENT_OPS = frozenset({"Identity", "Cast", "Gather", "Concat", "Unsqueeze", "Squeeze",
                               "Slice", "Reshape", "Flatten"})
# Two primes: a symbolic dim named s takes PROBES[probe] * (1 + index of s),
# so each named dim has its own values and a chain entry can be traced to
# the dim it copies (probe_value); large, so folded tensors never get
# materialised at those sizes.
PROBES = (1_000_003, 1_000_033)

# Initializers at least this large are converted to numpy on each request
# rather than cached: a cache would hold a second copy of every weight.
UNCACHED_BYTES = 1 << 20


_INTS, _INT = onnx.AttributeProto.INTS, onnx.AttributeProto.INT


def attributes(node: onnx.NodeProto) -> dict:
    """A node's attributes as plain Python values (strings decoded; bytes
    that are not UTF-8 become U+FFFD, so a damaged string is just unknown)."""
    out = {}
    for a in node.attribute[:]:   # a slice: see graph._indexes
        kind = a.type
        if kind == _INTS and not a.ref_attr_name:   # the common kinds first: helper.get_attribute_value's values
            out[a.name] = list(a.ints)
            continue
        if kind == _INT and not a.ref_attr_name:
            out[a.name] = a.i
            continue
        out[a.name] = _decoded(a)
    return out


def attribute(node: onnx.NodeProto, name: str, default=None):
    """attributes(node).get(name, default), decoding that attribute alone
    (a test of every candidate: a Conv's dilations)."""
    found = None
    for a in node.attribute[:]:   # a slice: see graph._indexes
        if a.name == name:
            found = a   # the last of a name, as in attributes()
    if found is None:
        return default
    if found.type == _INTS and not found.ref_attr_name:
        return list(found.ints)
    if found.type == _INT and not found.ref_attr_name:
        return found.i
    return _decoded(found)


def _decoded(a: onnx.AttributeProto):
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode("utf-8", errors="replace") for x in v]
    return v


class ConstantFolding:
    """The folding half of GraphView (see the module docstring)."""

    @cached_property
    def kept_reads(self) -> dict:
        """What passes read of their candidates through this view, kept for
        the other nodes of the same kind (preconditions.read_once): like the
        constants, a function of the model the view is of."""
        return {}

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

    def _probe_foldable(self, name: str) -> bool:
        """Whether a probe run may fold `name` where the exact run did not
        (partial_constant): only through a Shape or a FOLDABLE_OPS node of
        the standard domain.  Of any other value every run folds what the
        exact one does (_fold), so a computed value (a Conv's output) is not
        looked at three times."""
        node = self._producer.get(name)
        return (node is not None and node.domain in ("", "ai.onnx")
                and (node.op_type == "Shape" or node.op_type in FOLDABLE_OPS))

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
        if not self._probe_foldable(name):
            return None
        a, b = self._value(name, 0), self._value(name, 1)
        if a is None or b is None or a.shape != b.shape:
            return None
        return a, a == b

    def _value(self, name: str, probe: Optional[int]) -> Optional[np.ndarray]:
        key = (name, probe)
        try:
            return self._const_cache[key]   # never a weight of UNCACHED_BYTES: those are not kept
        except KeyError:
            pass
        if self.is_initializer(name) and data_bytes(self.initializers[name]) >= UNCACHED_BYTES:
            return numpy_helper.to_array(self.initializers[name])  # a weight: read again, not kept twice
        self._const_cache[key] = None  # cycle guard
        self._const_cache[key] = value = self._fold(name, probe)
        return value

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
            if probe is None or node.op_type not in FOLDABLE_OPS or not self._probe_free(node):
                return None
        names = node.input[:]
        inputs = [self._value(i, probe) if i else None for i in names]
        if any(v is None for i, v in zip(names, inputs) if i):
            return None
        return _evaluate(node, inputs, self.opset(), name)

    def _probe_free(self, node: onnx.NodeProto) -> bool:
        """Whether every input of `node` comes out the same in both probe
        runs: it then depends on static dims and constants alone, and so does
        any op on it, arithmetic included (torch's recompute_scale_factor
        export: floor(Shape(x)[2] * 0.5) beside a symbolic batch).  An op
        reading a probe value itself stays out: Min(N, 5) would give 5 for
        both (large) probes, though N = 1 gives 1."""
        for i in node.input[:]:
            if not i:
                continue
            a, b = self._value(i, 0), self._value(i, 1)
            if a is None or b is None or a.shape != b.shape or not np.array_equal(a, b):
                return False
        return True

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
        picked = list(dims[start:end])
        if all(isinstance(d, int) for d in picked):
            return np.array(picked, dtype=np.int64)
        if probe is None:
            return None
        return np.array([d if isinstance(d, int) else self.probe_value(probe, d) for d in picked], dtype=np.int64)

    def probe_value(self, probe: int, symbol) -> int:
        """The value a symbolic dim takes in probe run `probe`: one per named
        symbol; an unnamed dim (None) gets a value of its own each time."""
        symbols = self.__dict__.setdefault("_probe_symbols", {})
        key = symbol if isinstance(symbol, str) else object()
        index = symbols.setdefault(key, len(symbols))
        return PROBES[probe] * (1 + index)


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
    if node.op_type in ("DequantizeLinear", "QuantizeLinear"):
        # onnx's reference implements them from opset 19 only; 10-19 agree on every type before 19's
        # (QuantizeLinear: round half to even, saturate): a fake-quantized weight Q(w) folds to its integers
        opset = max(opset, 19)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    try:
        result = ReferenceEvaluator(m).run(None, {})
    except Exception:
        return None
    idx = [o for o in node.output[:] if o].index(name)
    out = np.asarray(result[idx])
    if out.size > FOLD_MAX_ELEMENTS:
        return None
    return out
