"""What a subgraph costs, from its shapes: MACs, bytes moved, nodes, rank.

MACs of the nodes that compute:

Counts cover the whole tensor, batch axis included: a rewrite that folds
phases into the batch (space-to-batch) must not look cheaper than it is.
The driver counts on standalone models whose symbolic batch is set to 1.

    Conv           N * Cout * prod(out spatial) * (Cin / group) * prod(kernel)
    ConvTranspose  N * Cin  * prod(in spatial)  * (Cout / group) * prod(kernel)
                   (every input pixel is scattered through the whole kernel)
    MatMul / Gemm  prod(output) * K
    Resize         prod(output) * taps, taps per output = 1 for nearest (a
                   copy: counted as 0), 2 per resized axis for linear, 4 for
                   cubic -- the interpolation's own multiply-adds

Zero taps inside a kernel count like any other tap: that is wasted work the
MAC figure must show.  `grouped_macs` is the part of them in convolutions with
fewer than GROUPED_BELOW input channels per group (depthwise and the like):
they run memory-bound, several times slower per MAC than dense ones, so the
cost model studied in docs/cost_model.md prices them apart.

Bytes streamed: a GEMM-based kernel reads one matrix besides the weights
once per block of output rows, so its time has a part that does not shrink
with the output channels: a Conv's im2col matrix (MACs / output channels per
group), a ConvTranspose's column buffer (MACs / input channels per group), a
MatMul's or Gemm's right operand (MACs / rows of the left one; none when it
is a constant, which onnxruntime packs once), times the item size.
On onnxruntime CPU a Conv of 3 or 4 output channels takes 4-6x the time per
MAC of one of 64 (docs/cost_model.md, "Streamed bytes"): the MAC figure
alone cannot tell four phase Convs of 3 channels from one Conv of 12.

Bytes moved: every data-movement node (DATA_MOVEMENT_OPS) reads its data
input and writes its output, so it costs their sizes in bytes -- what an
accelerator pays in memory traffic, and often on the host CPU.
"""
from __future__ import annotations

from math import prod
from typing import Callable, Optional

import onnx

from .forms import Cost
from .graph import GraphView, attributes

Shape = Optional[tuple]


def _static(s: Shape) -> bool:
    return s is not None and all(isinstance(d, int) for d in s)


def conv_macs(x: Shape, w: Shape, y: Shape, group: int) -> Optional[int]:
    if not (_static(w) and _static(y)):
        return None
    cout, cin_per_group = w[0], w[1]
    return y[0] * cout * prod(y[2:]) * cin_per_group * prod(w[2:])


def conv_transpose_macs(x: Shape, w: Shape, y: Shape, group: int) -> Optional[int]:
    if not (_static(x) and _static(w)):
        return None
    cin, cout_per_group = w[0], w[1]
    return x[0] * cin * prod(x[2:]) * cout_per_group * prod(w[2:])


def matmul_macs(a: Shape, b: Shape, y: Shape) -> Optional[int]:
    if not (a and isinstance(a[-1], int) and _static(y)):
        return None
    return prod(y) * a[-1]


def resize_macs(x: Shape, y: Shape, mode: str) -> Optional[int]:
    if not (_static(x) and _static(y)) or len(x) != len(y):
        return None
    if mode == "nearest":
        return 0
    resized = sum(1 for a, b in zip(x, y) if a != b)
    taps = {"linear": 2, "bilinear": 2, "cubic": 4}.get(mode, 2) ** resized
    return prod(y) * taps


def node_macs(node: onnx.NodeProto, graph: GraphView, per_item: bool = False) -> Optional[int]:
    """MACs of one node (per batch item with `per_item`), or None when it
    does not compute (data movement) or its shapes are unknown."""
    shapes = [graph.shape(i) if i else None for i in node.input[:]]
    y = graph.shape(node.output[0]) if node.output else None
    if per_item:
        shapes = [(1, *s[1:]) if s else s for s in shapes[:1]] + shapes[1:]
        y = (1, *y[1:]) if y else y
    if node.op_type in ("Conv", "ConvTranspose") and len(shapes) >= 2:
        group = int(attributes(node).get("group", 1))
        fn: Callable = conv_macs if node.op_type == "Conv" else conv_transpose_macs
        return fn(shapes[0], shapes[1], y, group)
    if node.op_type in ("Resize", "Upsample"):
        return resize_macs(shapes[0], y, str(attributes(node).get("mode", "nearest")))
    if node.op_type in ("MatMul", "Gemm") and len(shapes) >= 2:
        a = shapes[0]
        if node.op_type == "Gemm" and a is not None and attributes(node).get("transA", 0):
            a = tuple(reversed(a))
        return matmul_macs(a, shapes[1], y)
    return None


def gemm_rows(node: onnx.NodeProto, graph: GraphView) -> Optional[int]:
    """The rows a node's MACs are spread over per streamed column (see the
    module docstring), or None for a node that streams nothing or whose
    shapes are unknown.  For a MatMul or Gemm: the rows of its left operand
    as it is (turned around by a Gemm's transA), also when the MACs are
    counted per batch item -- a 2-D left operand, a constant matrix
    broadcast over a batch, has no batch axis to divide."""
    if len(node.input) < 2:
        return None
    if node.op_type in ("Conv", "ConvTranspose"):
        w = graph.shape(node.input[1])
        group = int(attributes(node).get("group", 1))
        return w[0] // group if w and isinstance(w[0], int) and w[0] >= group > 0 else None
    if node.op_type in ("MatMul", "Gemm"):
        a = graph.shape(node.input[0])
        if not a:           # unknown, or a scalar (no valid MatMul)
            return None
        if node.op_type == "Gemm" and attributes(node).get("transA", 0):
            a = tuple(reversed(a))
        rows = 1 if len(a) == 1 else a[-2]
        return rows if isinstance(rows, int) else None
    return None


GEMM_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def streamed_bytes(nodes, graph: GraphView, per_item: bool = False, macs: Optional[dict] = None) -> Optional[int]:
    """Bytes the GEMM-based nodes among `nodes` stream (module docstring);
    `macs`: their node_macs where known (see _known_macs)."""
    total = 0
    for node in nodes:
        if node.op_type not in GEMM_OPS:
            continue
        if node.op_type in ("MatMul", "Gemm") and graph.is_constant(node.input[1]):
            continue            # a constant right operand is packed once, when the session starts
        m, rows = _macs(node, graph, per_item, macs), gemm_rows(node, graph)
        size = graph.dtype(node.input[0])
        if m is None or not rows or not size:
            return None
        total += m * onnx.helper.tensor_dtype_to_np_dtype(size).itemsize // rows
    return total


COMPUTING_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Resize", "Upsample")
GROUPED_BELOW = 8    # input channels per group under which a convolution counts as grouped


def grouped(in_channels_per_group: int) -> bool:
    return in_channels_per_group < GROUPED_BELOW


def node_is_grouped(node: onnx.NodeProto, graph: GraphView) -> bool:
    """A Conv / ConvTranspose with few input channels per group."""
    if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 2:
        return False
    w = graph.shape(node.input[1])
    if not w or not isinstance(w[0], int) or not isinstance(w[1], int):
        return False
    group = int(attributes(node).get("group", 1))
    return grouped(w[1] if node.op_type == "Conv" else w[0] // group)


def grouped_macs(nodes, graph: GraphView, per_item: bool = False, macs: Optional[dict] = None) -> Optional[int]:
    """MACs of the grouped convolutions among `nodes` (see node_is_grouped)."""
    total = 0
    for node in nodes:
        if node_is_grouped(node, graph):
            m = _macs(node, graph, per_item, macs)
            if m is None:
                return None
            total += m
    return total


def total_macs(nodes, graph: GraphView, per_item: bool = False, macs: Optional[dict] = None) -> Optional[int]:
    """Sum over the computing nodes; None if any computing node is unknown."""
    total = 0
    for node in nodes:
        if node.op_type in COMPUTING_OPS:
            m = _macs(node, graph, per_item, macs)
            if m is None:
                return None
            total += m
    return total


DATA_MOVEMENT_OPS = frozenset({"Pad", "Slice", "Concat", "Reshape", "Transpose", "DepthToSpace", "SpaceToDepth",
                               "Where", "Expand", "Tile", "Gather", "Split"})


def tensor_bytes(graph: GraphView, name: str, per_item: bool = False) -> Optional[int]:
    """Bytes of a value of static shape (a symbolic batch counts as 1 with `per_item`)."""
    shape, dtype = graph.shape(name), graph.dtype(name)
    if shape is None or not dtype:
        return None
    if per_item and shape and not isinstance(shape[0], int):
        shape = (1, *shape[1:])
    if not all(isinstance(d, int) for d in shape):
        return None
    return prod(shape) * onnx.helper.tensor_dtype_to_np_dtype(dtype).itemsize


def moved_bytes(nodes, graph: GraphView, per_item: bool = False) -> Optional[int]:
    """Bytes read (non-constant inputs) and written by the data-movement nodes."""
    total = 0
    for node in nodes:
        if node.op_type not in DATA_MOVEMENT_OPS:
            continue
        for name in [i for i in node.input[:] if i and not graph.is_constant(i)] + [o for o in node.output[:] if o]:
            size = tensor_bytes(graph, name, per_item)
            if size is None:
                return None
            total += size
    return total


def max_rank(nodes, graph: GraphView) -> Optional[int]:
    ranks = [len(s) for n in nodes for o in n.output[:] if o for s in [graph.shape(o)] if s is not None]
    return max(ranks, default=None)


def subgraph_cost(nodes, graph: GraphView, per_item: bool = False) -> Cost:
    """The cost of `nodes` as they are in `graph` (per batch item with `per_item`)."""
    macs = _known_macs(nodes, graph, per_item)
    return Cost(total_macs(nodes, graph, per_item, macs), moved_bytes(nodes, graph, per_item), len(nodes),
                max_rank(nodes, graph), grouped_macs(nodes, graph, per_item, macs),
                streamed_bytes(nodes, graph, per_item, macs))


def _known_macs(nodes, graph: GraphView, per_item: bool) -> dict:
    """node_macs of each computing node, by id: the MACs, grouped MACs and
    streamed bytes of one subgraph read them all (a node's shapes and
    attributes are read once, not three times)."""
    return {id(n): node_macs(n, graph, per_item) for n in nodes if n.op_type in COMPUTING_OPS}


def _macs(node: onnx.NodeProto, graph: GraphView, per_item: bool, known: Optional[dict]) -> Optional[int]:
    """node_macs(node, graph, per_item), from `known` (see _known_macs) where it holds the node."""
    if known is not None and id(node) in known:
        return known[id(node)]
    return node_macs(node, graph, per_item)


def batch_one(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a (standalone) model whose symbolic input dims are 1."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = 1
    return m


def model_cost(model: onnx.ModelProto) -> Cost:
    """The cost of a whole (standalone) model at batch 1 (batch_one);
    unknown figures are None where shapes cannot be inferred."""
    m = batch_one(model)
    try:
        return subgraph_cost(m.graph.node, GraphView(m))
    except Exception:  # shape inference failed on an odd model: no figures
        return Cost(nodes=len(m.graph.node))


def model_macs(model: onnx.ModelProto) -> Optional[int]:
    """MACs of a whole model at batch 1 (see model_cost)."""
    return model_cost(model).macs
