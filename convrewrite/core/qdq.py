"""Quantized (QDQ) models: recognising quantized nodes, their quantization
parameters, and comparing quantized outputs in quantization steps.

A QDQ model computes in float between DequantizeLinear and QuantizeLinear
nodes; a runtime or an accelerator compiler fuses each group

    DequantizeLinear(x) -> Op(DequantizeLinear(w int8), DequantizeLinear(b int32)) -> QuantizeLinear

into an integer kernel (onnxruntime: QLinearConv).  A rewrite that builds
float Convs with float weights inside such a group would dequantize the
model silently, so a node is *quantized* (`region`) when

    its data input comes from DequantizeLinear, or
    its output goes into QuantizeLinear, or
    a weight or bias input is DequantizeLinear of a constant (an integer
    initializer, or a float one behind QuantizeLinear: fake quantization),
    possibly through constant data movement (Identity, Reshape, Transpose, ...).

Only forms that keep it quantized (`Form.keeps_quantized`: pure data
movement, or forms that build QDQ groups themselves) may lower it; the others
are passed over, and a node no form keeps quantized is left alone with the
code `quantized` (core/lowering.py).

Grid facts used by the quantized forms: a value v on the grid of (scale s,
zero point z) -- DequantizeLinear's output -- comes back unchanged through
QuantizeLinear -> DequantizeLinear with the same s and z, and data movement
(Slice, Pad with 0 = DQ(z), Concat, Reshape, Transpose, DepthToSpace) keeps it
on the grid; so Q/DQ pairs may be added around data movement, and Q commutes
with it, without changing a single integer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import onnx

QUANTIZE, DEQUANTIZE = "QuantizeLinear", "DequantizeLinear"
# Constant data movement a weight may pass on its way from DequantizeLinear to the node.
_WEIGHT_PATH_OPS = frozenset({"Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Cast"})
_MAX_PATH = 8

NOT_KEPT = "it computes in float: on a quantized (QDQ) node it would dequantize the model"

# Outputs equal "except rounding ties": at most this mean and 99th percentile of |difference| in steps.
MEAN_STEPS, P99_STEPS = 0.05, 1.0


def _std(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx")


def _is(node: Optional[onnx.NodeProto], op: str) -> bool:
    return node is not None and node.op_type == op and _std(node)


@dataclass(frozen=True)
class Region:
    """Why a node is quantized: one phrase per fact ("its input comes from
    DequantizeLinear 'x_dq'")."""

    facts: tuple[str, ...]
    edge: bool = False   # only its input is dequantized: a float node where a quantized region ends

    def describe(self) -> str:
        return "it is in a quantized (QDQ) region: " + "; ".join(self.facts)

    def left_alone(self) -> str:
        """Why a node no form keeps quantized stays as it is."""
        if self.edge:
            return ("its weights are float and its output is not quantized -- a float node where a quantized "
                    "region ends (as quantize_static's nodes_to_exclude leaves it) -- but its float forms would "
                    "read that DequantizeLinear from several nodes, and onnxruntime then stops fusing the "
                    "quantized node before it into an integer kernel (measured with int8 activations), so it is "
                    "left as it is")
        return "so it is left as it is rather than dequantized into float"


def region(node: onnx.NodeProto, graph) -> Optional[Region]:
    """A Region when `node` is quantized (see the module docstring), else None."""
    if not _may_quantize(graph):
        return None
    facts = []
    p = graph.producer(node.input[0]) if node.input and node.input[0] else None
    if _is(p, DEQUANTIZE):
        facts.append(f"its input comes from DequantizeLinear '{graph.label(p)}'")
    input_only = len(facts)
    for o in node.output[:]:   # a slice: see graph._indexes
        qs = [c for c in graph.consumers(o) if _is(c, QUANTIZE)] if o else []
        if qs:
            facts.append(f"its output goes into QuantizeLinear '{graph.label(qs[0])}'")
            break
    for k, name in enumerate(node.input[1:], 1):
        dq = weight_dequantize(name, graph) if name else None
        if dq is not None:
            facts.append(f"its input {k} ('{name}') is DequantizeLinear '{graph.label(dq)}' of a constant")
    edge = input_only == len(facts) == 1   # only the input is dequantized: a float node where a region ends
    return Region(tuple(facts), edge) if facts else None


def _may_quantize(graph) -> bool:
    """False when the graph has no QuantizeLinear or DequantizeLinear node at
    all (GraphView.has_qdq): then no node is quantized, no weight is read
    through a DequantizeLinear, and the questions below need no walk."""
    return getattr(graph, "has_qdq", True)


def in_group(node: onnx.NodeProto, graph) -> bool:
    """Whether `node` sits in a full QDQ group (what a converter or onnxruntime
    turns into an int8 kernel): its data input from DequantizeLinear, every
    output into QuantizeLinear, every constant input through DequantizeLinear."""
    if not node.input or not _is(graph.producer(node.input[0]), DEQUANTIZE):
        return False
    if not all(o and any(_is(c, QUANTIZE) for c in graph.consumers(o)) for o in node.output[:]):
        return False
    weights = [name for name in node.input[1:2] if name]   # the weight; a bias may stay int32 behind DQ or be absent
    return all(weight_dequantize(name, graph) is not None or _is(graph.producer(name), DEQUANTIZE)
               for name in weights)


def weight_dequantize(name: str, graph) -> Optional[onnx.NodeProto]:
    """The DequantizeLinear a constant input is read through, directly or
    via constant data movement; None if there is none."""
    if not _may_quantize(graph):
        return None
    for _ in range(_MAX_PATH):
        p = graph.producer(name)
        if p is None or not _std(p):
            return None
        if p.op_type == DEQUANTIZE:
            return p if graph.is_constant(p.input[0]) or _is(graph.producer(p.input[0]), QUANTIZE) else None
        if p.op_type not in _WEIGHT_PATH_OPS or not p.input:
            return None
        name = p.input[0]
    return None


# --- quantization parameters ---------------------------------------------------------

@dataclass(frozen=True)
class QParams:
    """The constant parameters of one QuantizeLinear / DequantizeLinear:
    `scale` and `zero_point` as numpy arrays (scalar or per-axis), their
    input names ("" for an absent zero point), `axis` (None: per tensor),
    the integer type."""

    node: str
    scale: np.ndarray
    zero_point: np.ndarray
    scale_name: str
    zero_point_name: str
    axis: Optional[int]
    dtype: np.dtype

    @property
    def per_tensor(self) -> bool:
        return self.scale.size == 1


def qparams(node: onnx.NodeProto, graph) -> "QParams | str":
    """The parameters of a Q or DQ node, or why they cannot be used (not
    constant, blocked quantization)."""
    from .folding import attributes

    label = f"{node.op_type} '{graph.label(node)}'"
    if len(node.input) < 2 or graph.constant(node.input[1]) is None:
        return f"{label}'s scale is not a constant"
    a = attributes(node)
    if a.get("block_size", 0):
        return f"{label} uses blocked quantization (block_size), which no quantized form handles"
    scale = np.asarray(graph.constant(node.input[1]))
    zp_name = node.input[2] if len(node.input) > 2 else ""
    if zp_name:
        zp = graph.constant(zp_name)
        if zp is None:
            return f"{label}'s zero point is not a constant"
        zp = np.asarray(zp)
    else:
        zp = None
    if node.op_type == DEQUANTIZE:
        dtype = graph.dtype(node.input[0])
        dtype = onnx.helper.tensor_dtype_to_np_dtype(dtype) if dtype else (zp.dtype if zp is not None else None)
    else:
        out = a.get("output_dtype", 0)
        dtype = (onnx.helper.tensor_dtype_to_np_dtype(out) if out else zp.dtype if zp is not None else np.dtype(np.uint8))
    if dtype is None:
        return f"{label}'s integer type is unknown"
    dtype = np.dtype(dtype)
    if zp is None:
        zp = np.zeros(scale.shape, dtype)
    axis = int(a.get("axis", 1)) if scale.size > 1 else None
    return QParams(graph.label(node), scale, zp, node.input[1], zp_name, axis, dtype)


def real_type(graph, name: str) -> np.dtype:
    """The float type of a dequantized value `name` (float32 where unknown):
    the type a new DequantizeLinear's scale (its output's type) and a float
    bias beside it must have to feed the same op (float16 in a float16 model)."""
    dtype = graph.dtype(name)
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(dtype) if dtype else np.float32)


def fused_concat_problem(graph, grid: tuple[str, str]) -> Optional[str]:
    """Why a Concat between Q/DQ of `grid` cannot be built, or None.
    onnxruntime fuses DQ -> Concat -> Q into a QLinearConcat whatever the
    scales' type, and QLinearConcat takes float32 scales only: with float16
    (or bfloat16) scales the written model would not load."""
    dtype = graph.dtype(grid[0])
    if dtype in (None, onnx.TensorProto.FLOAT):
        return None
    name = onnx.helper.tensor_dtype_to_np_dtype(dtype).name
    return (f"its Concat between QuantizeLinear/DequantizeLinear of {name} scales: onnxruntime fuses it "
            "into a QLinearConcat, which takes float32 scales only, so the model would not load")


# onnxruntime (graph optimizations on, its default) fuses DequantizeLinear -> DepthToSpace ->
# QuantizeLinear of one grid into a DepthToSpace of the integers, and has 8-bit DepthToSpace
# kernels from DepthToSpace-11 on only: at opset 10 (DepthToSpace-1) the session cannot be
# created ("Failed to find kernel for DepthToSpace(1)").  Measured on onnxruntime 1.32 CPU,
# uint8 and int8, opsets 10 to 21: SpaceToDepth and Pad it does not fuse (they run in float
# between the DQ and the Q); Reshape, Transpose, Slice and Gather it fuses with 8-bit kernels
# at every opset, Concat (QLinearConcat) too.  So between Q/DQ below opset 11 a pixel shuffle
# is spelled Reshape -> Transpose -> Reshape: the same values, moved by kernels that exist.
INTEGER_DEPTH_TO_SPACE_MIN_OPSET = 11


def integer_depth_to_space(opset: int) -> bool:
    """Whether a DepthToSpace between Q/DQ at `opset` runs in onnxruntime once fused."""
    return opset >= INTEGER_DEPTH_TO_SPACE_MIN_OPSET


def reshaped_shuffle_note(opset: int) -> str:
    """Why a quantized form's pixel shuffle is Reshape/Transpose (rank 6) at
    `opset` (below 11), and what would let it be a DepthToSpace (rank 4)."""
    return (f"between QuantizeLinear/DequantizeLinear at opset {opset} the pixel shuffle is Reshape/Transpose, "
            f"since onnxruntime has no 8-bit DepthToSpace before opset {INTEGER_DEPTH_TO_SPACE_MIN_OPSET}: "
            f"upgrade the opset to {INTEGER_DEPTH_TO_SPACE_MIN_OPSET}+ for a rank-4 DepthToSpace")


# --- comparing in quantization steps ----------------------------------------------------

@dataclass(frozen=True)
class Steps:
    """|got - want| in quantization steps, over one or more outputs."""

    mean: float = 0.0
    p99: float = 0.0
    max: float = 0.0

    @property
    def ok(self) -> bool:
        return self.mean <= MEAN_STEPS and self.p99 <= P99_STEPS

    def to_dict(self) -> dict:
        return {"mean": round(self.mean, 6), "p99": round(self.p99, 6), "max": round(self.max, 6)}

    def __str__(self) -> str:
        return f"mean {self.mean:.3g}, 99th percentile {self.p99:.3g}, max {self.max:.3g} step(s)"


@dataclass(frozen=True)
class Float8Grid:
    """The step of a float output dequantized from a float8 tensor (opset 19
    float8 types): its values are scale times float8 numbers, whose spacing
    grows with their magnitude, so differences are counted in float8 units
    in the last place (ulps), not in multiples of the scale."""

    scale: float
    dtype: np.dtype


def is_float8(dtype) -> bool:
    return np.dtype(dtype).name.startswith("float8")


def float8_ordinals(values: np.ndarray) -> np.ndarray:
    """Each float8 value's position on the number line: float8 formats are
    sign-magnitude with magnitudes ordered as their bit patterns, so
    neighbours differ by 1 and the two zeros coincide."""
    bits = np.asarray(values).view(np.uint8).astype(np.int32)
    magnitude = bits & 0x7F
    return np.where(bits & 0x80, -magnitude, magnitude)


def _as_float8(values: np.ndarray, grid: Float8Grid) -> np.ndarray:
    """float8 numbers from onnxruntime's uint8 bit patterns, from the
    reference evaluator's float8 arrays, or from dequantized floats (exact:
    they are on the grid)."""
    if values.dtype == np.uint8:
        return values.view(grid.dtype)
    if is_float8(values.dtype):
        return values
    return (np.asarray(values, np.float32) / np.float32(grid.scale)).astype(grid.dtype)


def steps_between(want: np.ndarray, got: np.ndarray, scale: "float | Float8Grid" = 1.0) -> Steps:
    """The difference of two tensors in steps of `scale` (1 for integer
    tensors); float8 tensors, and float outputs of a Float8Grid, in ulps."""
    want, got = np.asarray(want), np.asarray(got)
    if isinstance(scale, Float8Grid):
        want, got = (_as_float8(a, scale) for a in (want, got))
    if is_float8(want.dtype):
        d = np.abs(float8_ordinals(got) - float8_ordinals(want)).ravel().astype(np.float64)
    else:
        d = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)).ravel() / scale
        if scale != 1.0:   # outputs of a DequantizeLinear: whole steps up to float rounding (1.000001 is 1)
            whole = np.round(d)
            d = np.where(np.abs(d - whole) < 1e-4, whole, d)
    if d.size == 0:
        return Steps()
    return Steps(float(d.mean()), float(np.percentile(d, 99)), float(d.max()))


def worst(steps: Sequence[Steps]) -> Steps:
    return Steps(max((s.mean for s in steps), default=0.0), max((s.p99 for s in steps), default=0.0),
                 max((s.max for s in steps), default=0.0))


def compare_quantized(name: str, want: np.ndarray, got: np.ndarray, scale: "float | Float8Grid" = 1.0):
    """An OutputComparison in steps: equivalent when equal except rounding
    ties (mean <= MEAN_STEPS, 99th percentile <= P99_STEPS).  Errors are in
    the tensor's own unit (steps times `scale`)."""
    from .equivalence import OutputComparison

    want, got = np.asarray(want), np.asarray(got)
    if want.dtype != got.dtype or want.shape != got.shape:
        what = f"dtype {got.dtype} != {want.dtype}" if want.dtype != got.dtype else f"shape {got.shape} != {want.shape}"
        return OutputComparison(name, False, np.inf, np.inf, 0.0, what)
    s = steps_between(want, got, scale)
    top = float(np.max(np.abs(want.astype(np.float64)), initial=0.0))
    abs_err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)), initial=0.0))
    unit = scale.scale if isinstance(scale, Float8Grid) else scale   # a float8 ulp's size varies: nominal
    return OutputComparison(name, s.ok, abs_err, abs_err / top if top else float(abs_err > 0),
                            P99_STEPS * unit, f"quantized: {s}", steps=s)


def has_qdq(model: onnx.ModelProto) -> bool:
    """Does the model have any QuantizeLinear or DequantizeLinear node?"""
    return any(_is(n, QUANTIZE) or _is(n, DEQUANTIZE) for n in model.graph.node)


def output_steps(model: onnx.ModelProto) -> dict:
    """Graph outputs of a QDQ model that are quantized: name -> the step to
    compare them in (1 for the integer output of a QuantizeLinear, the scale
    of a per-tensor DequantizeLinear producing a float output; a Float8Grid
    where that DequantizeLinear reads float8)."""
    inits = {t.name: t for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for o in model.graph.output:
        p = producers.get(o.name)
        if _is(p, QUANTIZE):
            out[o.name] = integer_step(_quantized_type(p, inits))
        elif _is(p, DEQUANTIZE) and len(p.input) > 1 and p.input[1] in inits:
            scale = onnx.numpy_helper.to_array(inits[p.input[1]])
            if scale.size == 1:
                dtype = _dequantized_type(p, inits, producers)
                out[o.name] = (Float8Grid(float(scale.reshape(())), dtype) if dtype is not None and is_float8(dtype)
                               else float(scale.reshape(())))
    return out


def _dequantized_type(dq: onnx.NodeProto, inits: dict, producers: dict) -> Optional[np.dtype]:
    """The element type a DequantizeLinear reads, from its zero point or the
    QuantizeLinear before it (None when neither says)."""
    for node in (dq, producers.get(dq.input[0])):
        dtype = _quantized_type(node, inits) if node is not None else None
        if dtype is not None:
            return dtype
    return None


def _quantized_type(node: onnx.NodeProto, inits: dict) -> Optional[np.dtype]:
    """The element type of a Q's output or a DQ's input, from its zero point
    or a Q's output_dtype (None when neither says)."""
    if len(node.input) > 2 and node.input[2] in inits:
        return onnx.helper.tensor_dtype_to_np_dtype(inits[node.input[2]].data_type)
    out = next((a.i for a in node.attribute if a.name == "output_dtype"), 0)
    return onnx.helper.tensor_dtype_to_np_dtype(out) if node.op_type == QUANTIZE and out else None


def compare_outputs(names, want, got, rtol=None, atol=None, steps: Optional[dict] = None):
    """compare_outputs, with the outputs in `steps` compared in quantization steps."""
    from .equivalence import Comparison, compare_arrays, compare_outputs as float_outputs

    if not steps:
        return float_outputs(names, want, got, rtol, atol)
    return Comparison([compare_quantized(n, w, g, steps[n]) if n in steps else compare_arrays(n, w, g, rtol, atol)
                       for n, w, g in zip(names, want, got)])


def not_kept(where: str, r: Region, passed_over: Sequence[tuple[str, str]]) -> str:
    """The reason of a quantized node no form keeps quantized."""
    own = [f"{f}: {why}" for f, why in passed_over if why != NOT_KEPT]
    tried = f" (the forms that would keep it quantized: {'; '.join(own)})" if own else ""
    return f"{where}: {r.describe()}; no form of this pass keeps it quantized{tried}; {r.left_alone()}"


# --- keeping a replacement on the grid ------------------------------------------------

# Ops that only move values: a value on a quantization grid stays on it (Pad pads with 0 = DQ(zero point)).
DATA_MOVEMENT = frozenset({"Slice", "Pad", "Concat", "Reshape", "Transpose", "DepthToSpace", "SpaceToDepth",
                           "Expand", "Tile", "Identity", "Split", "Gather", "Squeeze", "Unsqueeze", "Flatten"})


def grid_of(node: Optional[onnx.NodeProto]) -> Optional[tuple[str, str]]:
    """(scale, zero point) input names of a per-tensor Q or DQ node, or None."""
    if node is None or node.op_type not in (QUANTIZE, DEQUANTIZE) or not _std(node) or len(node.input) < 3:
        return None
    return node.input[1], node.input[2]


def insert_qdq(b, value: str, grid: tuple[str, str], what: str) -> str:
    """QuantizeLinear -> DequantizeLinear of `value` with `grid`, placed right
    after its producer in `b.nodes`; the builder's other readers of `value`
    read the DequantizeLinear instead.  Returns the new value."""
    readers = [n for n in b.nodes if value in n.input]
    q = b.op(QUANTIZE, [value, *grid], f"{what}_quantize")
    dq = b.op(DEQUANTIZE, [q, *grid], f"{what}_dequantize")
    new = b.nodes[-2:]
    del b.nodes[-2:]
    at = next((k + 1 for k, n in enumerate(b.nodes) if value in n.output), 0)
    b.nodes[at:at] = new
    for n in readers:
        for k, i in enumerate(n.input):
            if i == value:
                n.input[k] = dq
    return dq


def requantize_movement(b, grids: dict, keep: Sequence[str] = ()) -> None:
    """Give every data-movement node of the builder whose input is on a grid
    (`grids`: value -> (scale, zero point) names) a QuantizeLinear ->
    DequantizeLinear of its own after it, with the same grid: each becomes a
    QDQ group an integer runtime fuses, and no integer changes (module
    docstring).  Values in `keep` (the replacement's outputs) are left as they are."""
    if not grids:
        return
    grids = dict(grids)
    _tile_copies(b)
    for node in list(b.nodes):
        if node.op_type not in DATA_MOVEMENT or not _std(node):
            continue
        grid = grids.get(node.input[0]) if node.input else None
        if grid is None:
            continue
        for o in node.output:
            if not o:
                continue
            grids[o] = grid
            if o in keep or not any(o in n.input for n in b.nodes):
                continue
            grids[insert_qdq(b, o, grid, o.rsplit("/", 1)[-1])] = grid


def group_grids(node: onnx.NodeProto, graph) -> "tuple | str":
    """(x's grid, y's grid) of a node in a QDQ group: the (scale, zero point)
    names of the per-tensor DequantizeLinear its input comes from and of the
    one per-tensor QuantizeLinear its output goes into alone; or why there
    are none."""
    x_dq = graph.producer(node.input[0])
    x_grid = grid_of(x_dq) if x_dq is not None and x_dq.op_type == DEQUANTIZE else None
    if x_grid is None or grid_inputs(graph, [node.input[0]]) == {}:
        return "its input does not come from a per-tensor DequantizeLinear with a constant scale and zero point"
    consumers = graph.consumers(node.output[0])
    if len(consumers) != 1 or consumers[0].op_type != QUANTIZE or node.output[0] in graph.graph_outputs:
        return "its output does not go into one QuantizeLinear alone"
    q = consumers[0]
    yp = qparams(q, graph)
    if grid_of(q) is None or isinstance(yp, str) or not yp.per_tensor:
        return "the QuantizeLinear after it is not per-tensor with a constant scale and zero point"
    return x_grid, grid_of(q)


def grids_around(node: onnx.NodeProto, graph) -> dict:
    """{input: its grid} when a data-movement node's input comes from a
    per-tensor DequantizeLinear (so it is on that grid), else {}."""
    x = node.input[0]
    grid = grid_of(graph.producer(x))
    return {x: grid} if grid is not None else {}


# --- local checks of quantized rewrites ------------------------------------------------

def grid_inputs(graph, runtime: Sequence[str]) -> dict:
    """Runtime inputs of a rewrite that come from a per-tensor DequantizeLinear
    with constant parameters: name -> (scale, zero point) values.  The local
    check puts its random inputs on that grid, as the model does."""
    out = {}
    for name in runtime:
        p = graph.producer(name)
        grid = grid_of(p) if p is not None and p.op_type == DEQUANTIZE else None
        if grid is None:
            continue
        scale, zp = graph.constant(grid[0]), graph.constant(grid[1])
        if scale is not None and zp is not None and np.size(scale) == 1 and np.size(zp) == 1:
            out[name] = (np.asarray(scale), np.asarray(zp))
    return out


def on_grid(model: onnx.ModelProto, inputs: dict) -> onnx.ModelProto:
    """`model` with each input in `inputs` (name -> (scale, zero point)) fed
    as float `<name>/float` and put on its grid by QuantizeLinear ->
    DequantizeLinear, so the standalone check sees what the model feeds."""
    if not inputs:
        return model
    from onnx import helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g, nodes = out.graph, []
    for vi in g.input:
        if vi.name not in inputs:
            continue
        name, (scale, zp) = vi.name, inputs[vi.name]
        s, z, q = f"{name}/grid_scale", f"{name}/grid_zero_point", f"{name}/grid_q"
        g.initializer.extend([numpy_helper.from_array(scale, s), numpy_helper.from_array(zp, z)])
        nodes += [helper.make_node(QUANTIZE, [f"{name}/float", s, z], [q], name=f"{name}/grid_quantize"),
                  helper.make_node(DEQUANTIZE, [q, s, z], [name], name=f"{name}/grid_dequantize")]
        vi.name = f"{name}/float"
    rest = list(g.node)
    del g.node[:]
    g.node.extend(nodes + rest)
    return out


def quantized_outputs(nodes, outputs: Sequence[str], graph=None) -> dict:
    """Outputs of `nodes` that a QuantizeLinear produces: name -> 1 step
    (a float8 output: a Float8Grid, compared in ulps)."""
    quantizers = {o for n in nodes if _is(n, QUANTIZE) for o in n.output}
    types = {o: graph.dtype(o) for o in outputs} if graph is not None else {}
    return {o: integer_step(onnx.helper.tensor_dtype_to_np_dtype(types[o]) if types.get(o) else None)
            for o in outputs if o in quantizers}


def integer_step(dtype) -> "float | Float8Grid":
    """The step of a QuantizeLinear's own output of type `dtype`: 1, or a
    Float8Grid (onnxruntime returns float8 tensors as their uint8 bit patterns)."""
    return Float8Grid(1.0, np.dtype(dtype)) if dtype is not None and is_float8(dtype) else 1.0


def _tile_copies(b) -> None:
    """A Concat of k copies of one value becomes Tile (the same tensor):
    integer runtimes run Tile on int8 where they have no int8 Concat
    (onnxruntime with int8 activations)."""
    from onnx import helper

    for k, node in enumerate(b.nodes):
        if node.op_type != "Concat" or len(set(node.input)) != 1 or len(node.input) < 2:
            continue
        shape = b.graph.shape(node.input[0])
        if shape is None or b.graph.opset() < 6:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0) % len(shape)
        repeats = [1] * len(shape)
        repeats[axis] = len(node.input)
        tile = helper.make_node("Tile", [node.input[0], b.ints(repeats, "copies_repeats")], list(node.output),
                                name=node.name)
        b.nodes[k] = tile
