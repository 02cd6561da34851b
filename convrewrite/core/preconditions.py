"""What every pass checks before matching a node, said once.

Each check returns a Skip whose reason does not name the node (the pass
prefixes it), or None when the node passes.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable, Optional

import onnx

from .graph import GraphView
from .rewrite import Code, Skip

# onnxruntime's CPU Conv and ConvTranspose run these element types only, so a
# rewrite building them could not be verified in any other.
VERIFIABLE_TYPES = (onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT)
# Every lowering emits Reshape with its shape as an input, which opset 5 introduced.
MIN_OPSET = 5


def old_opset(graph: GraphView, minimum: int = MIN_OPSET) -> Optional[Skip]:
    if graph.opset() < minimum:
        return Skip(f"model opset {graph.opset()} is older than {minimum}; upgrade the model's opset", Code.OLD_OPSET)
    return None


# Why the Conv-building passes take VERIFIABLE_TYPES only (onnxruntime 1.32 CPU: no Conv or
# ConvTranspose of float64, bfloat16 or an integer type; each caller says what is true of its own).
NO_CONV = "onnxruntime has no Conv of other types to verify the rewrite against"


def unverifiable_type(graph: GraphView, name: str, why: str = NO_CONV,
                      types: tuple = VERIFIABLE_TYPES) -> Optional[Skip]:
    """The value's element type must be among `types`; else a Skip saying
    which are lowered and `why` (the caller's own reason: which kernels
    onnxruntime lacks for the original or the rewrite, or what the pass is
    built for)."""
    dtype = graph.dtype(name)
    if dtype in types:
        return None
    type_name = onnx.TensorProto.DataType.Name(dtype) if dtype else "unknown"
    names = [onnx.helper.tensor_dtype_to_np_dtype(t).name for t in types]
    allowed = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    verb = "are" if len(names) > 1 else "is"
    return Skip(f"element type {type_name} is not lowered: only {allowed} {verb}, because {why}", Code.UNSUPPORTED_TYPE)


def unknown_rank(graph: GraphView, name: str) -> str:
    """Why a value's rank is unknown, and what to do: the run has already
    run onnx's shape inference, so the fix is a declaration where it lost the
    shape (a graph input without one, or the node that makes the value)."""
    if graph.is_graph_input(name):
        return f"the input's rank is unknown: graph input '{name}' declares no shape; give it one"
    made = graph.producer(name)
    if made is None:
        return f"the input's rank is unknown: '{name}' has no shape; declare it in a value_info"
    return (f"the input's rank is unknown: onnx's shape inference could not follow {graph.maker(made)}, which "
            f"makes it; declare '{name}' in a value_info (or give the graph's inputs shapes)")


def unknown_spatial_size(graph: GraphView, name: str, why: str = "") -> Optional[Skip]:
    """The input's rank must be known and its spatial axes (2..) static."""
    xs = graph.shape(name)
    if xs is None:
        return Skip(unknown_rank(graph, name), Code.DYNAMIC_SHAPE)
    if len(xs) < 3:
        return Skip(f"the input is of rank {len(xs)}: it has no spatial axis", Code.INVALID_NODE)
    if not all(isinstance(d, int) for d in xs[2:]):
        shown = shown_dims(xs[2:])
        if "?" in shown:     # a size shape inference named unk__N: derived from a symbolic dim, or lost
            return Skip(f"the input's spatial size {shown} is not static{why} (?: a size shape inference could not "
                        "work out, from a symbolic dimension of the graph's inputs or lost on the way); give the "
                        "graph's inputs static shapes", Code.DYNAMIC_SHAPE)
        return Skip(f"the input's spatial size {shown} is not static{why}; fix the input's spatial "
                    "dimensions", Code.DYNAMIC_SHAPE)
    return None


# onnx's shape inference names a dimension it could not work out unk__0, unk__1, ...
_INVENTED = re.compile(r"unk__\d+$")


def shown_dims(dims) -> list:
    """Dims as a reason shows them: numbers, the model's own symbolic names,
    and '?' for a size shape inference invented a name for (unk__N), which
    means nothing to the user."""
    return ["?" if isinstance(d, str) and _INVENTED.match(d) else d for d in dims]


def first_problem(*checks: Optional[Skip]) -> Optional[Skip]:
    return next((c for c in checks if c is not None), None)


# A node's tensors are checked with random inputs: none may exceed this many
# elements (the same bound as the random inputs themselves).
MAX_TENSOR_ELEMENTS = 1 << 28


def oversized_tensor(node: onnx.NodeProto, graph: GraphView) -> Optional[Skip]:
    """A node whose input or output (static dims) is too large to rewrite and check."""
    for name in node.input[:] + node.output[:]:   # slices: see graph._indexes
        dims = graph.shape(name) if name else None
        if not dims:
            continue
        size = _static_elements(dims)
        if size > MAX_TENSOR_ELEMENTS:
            return Skip(f"tensor '{name}' of shape {list(dims)} has {size:.4g} elements, more than the "
                        f"{MAX_TENSOR_ELEMENTS} a rewrite is built and checked for", Code.TOO_LARGE)
    return None


@lru_cache(maxsize=1024)   # a model's values have a few shapes
def _static_elements(dims: tuple) -> int:
    """The product of the static dims (symbolic and unknown ones count 1)."""
    size = 1
    for d in dims:
        size *= d if isinstance(d, int) and d > 0 else 1
    return size


def read_once(graph: GraphView, read: Callable, key: Optional[tuple], node: onnx.NodeProto):
    """read(node, graph), worked out once per view for the nodes of the same
    `key`: the key holds all that `read` reads of the node through the view
    (attributes, the types of its values, the names of those whose values
    it reads or whose names its reasons show).  A model's candidates are
    mostly of a few kinds (issue 12: 334 Resizes of one).  key None: read
    this node on its own.  What is read is shared: it must not be changed."""
    if key is None:
        return read(node, graph)
    known = graph.kept_reads
    found = known.get((read, key), known)
    if found is known:
        found = known[(read, key)] = read(node, graph)
    return found


def attribute_key(node: onnx.NodeProto) -> tuple:
    """A node's operator and attributes, as a read_once key reads them."""
    return node.op_type, tuple(a.SerializeToString() for a in node.attribute[:])   # a slice: see graph._indexes
