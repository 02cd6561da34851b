"""resize: Resize / Upsample -> depthwise ConvTranspose with interpolation weights.

Before:
    x [N, C, n_1..n_r] --Resize(integer factors s_i, nearest | linear | cubic)--> y [N, C, n_1*s_1..n_r*s_r]

After (deconv, any mode):
    x --Pad(edge, (lo_i, hi_i))--> ConvTranspose(W [C, 1, k_1..k_r], group C, strides s,
                                                 pads (pad_begin_i, pad_end_i)) --> y
    W[c, 0] = kernel_1 (x) kernel_2 (x) ... (x) kernel_r   (outer product of per-axis kernels)

After (shuffle, nearest; MAC-free):
    x --Pad(edge)?--Slice per phase?--> Concat(prod(s) copies, axis 1) --DepthToSpace(DCR)--> y

After (broadcast, every resized axis has size 1): x --Expand([.., m_i, ..])--> y

After (matmul, --resize-mode matmul; any static Resize, align_corners and downsampling included):
    x --MatMul(M_a) along each resized axis a (Reshape around it when a < rank - 2)--> y
        [+ extrapolation_value * mask for tf_crop_and_resize]

Identity (per axis; passes.resize.interpolation derives it from the spec's formulas):

    y[q*s + r] = sum_{(d, w) in phase_taps[r]} w * x[clamp(q + d, 0, n - 1)]
               = ConvTranspose(Pad_edge(x), kernel)[q*s + r],  kernel[r + pad_begin - (d + lo)*s] = w

The edge Pad is the spec's clamp, so borders match exactly; the ConvTranspose's
own pads crop its output to n*s.  With a plain floor(t / s) nearest mapping the
kernel is all ones and the shuffle form needs no Pad or Slice at all.  In the
default pass order the ConvTranspose is then lowered by the convtranspose pass.

With a target profile (options["target"]): a Resize the target runs as it is
is left alone.  Otherwise the forms are tried in order of preference -- identity
or broadcast where they apply, the user's choice (resize_mode, resize_nearest),
then shuffle (nearest), deconv, matmul -- and the first whose nodes the target
runs is built (convrewrite.target.pick_form).  Where the target has no Pad
edge, the shuffle and deconv forms have a variant ("-concat-edge") that
replicates the border by Concat of edge Slices instead, the same clamp:

    Pad_edge(x, lo, hi) = Concat(x[..., :1] * lo, x, x[..., -1:] * hi)   (per axis)

The deconv forms are judged by what the target finally runs: their
ConvTranspose as the convtranspose pass (which runs next) leaves or lowers it
for this target (convrewrite.core.followup.after_pass), not the ConvTranspose as
built.
"""
from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, replace
from math import prod
from typing import Any, ClassVar, Optional

import numpy as np
import onnx
from onnx import helper

from convrewrite.core.builder import Builder
after_pass = None  # TEMP
from convrewrite.core.graph import GraphView
from passes.resize.interpolation import (AxisKernel, ResizeSpec, Unsupported, axis_kernel, depthwise_kernel,
                                       identity_kernel, interpolation_matrix, is_plain_nearest,
                                       phase_taps, read_resize)
from convrewrite.emit.opset_ops import slice_axes
from convrewrite.geometry import join_pads
from convrewrite.emit.pixel_shuffle import pixel_shuffle
from convrewrite.core.rewrite import Match, Replacement, Skip
Profile = needs_lowering = pick_form = runs_as_is_reason = None  # TEMP


# onnxruntime has no float64 Conv on CPU, so a double rewrite could not be verified.
FLOAT_TYPES = (onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT)
MODES = ("deconv", "matmul")
NEAREST_FORMS = ("deconv", "shuffle")
MATMUL_HINT = "; --resize-mode matmul lowers it"


@dataclass(frozen=True, eq=False)
class Plan:
    """What build emits.  `kernels` (deconv, shuffle) has one entry per
    spatial axis; `matrices` (matmul) holds (axis, M [m, n], extrapolated rows).
    `edge` (deconv, shuffle): how the border is replicated, "pad" (Pad edge)
    or "concat" (Concat of edge Slices, for targets without Pad edge)."""

    form: str                  # identity | broadcast | deconv | shuffle | matmul
    spec: ResizeSpec
    dtype: np.dtype
    channels: Optional[int] = None
    kernels: tuple[AxisKernel, ...] = ()
    matrices: tuple = ()
    edge: str = "pad"

    @property
    def label(self) -> str:
        return self.form + ("-concat-edge" if self.edge == "concat" else "")


@dataclass(frozen=True)
class ResizeToConvTranspose:
    """`mode`: "deconv" (integer upsampling -> depthwise ConvTranspose) or
    "matmul" (any static Resize -> interpolation matrices).  `nearest_form`:
    "shuffle" (default: channel copies + DepthToSpace, no MACs) or "deconv".
    `target`: the profile the model is for (lower only what it cannot run,
    in a form it can run).  `finisher`: the pass that runs next and lowers
    the ConvTranspose of the deconv form (passes.make_passes sets it when
    both run); a target judges the deconv form as that pass leaves it."""

    mode: str = "deconv"
    nearest_form: str = "shuffle"
    target: Optional[Profile] = None
    finisher: Any = None

    name: ClassVar[str] = "resize"
    description: ClassVar[str] = ("Resize/Upsample -> depthwise ConvTranspose with interpolation weights "
                                  "(nearest: copies + DepthToSpace; --resize-mode matmul: MatMuls)")

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"resize_mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.nearest_form not in NEAREST_FORMS:
            raise ValueError(f"resize_nearest must be one of {', '.join(NEAREST_FORMS)}, not {self.nearest_form!r}")

    @classmethod
    def from_options(cls, options: dict) -> "ResizeToConvTranspose":
        return cls(options.get("resize_mode") or "deconv", options.get("resize_nearest") or "shuffle",
                   options.get("target"), options.get("resize_finisher"))

    def candidate(self, node: onnx.NodeProto, graph: GraphView) -> bool:
        return node.op_type in ("Resize", "Upsample") and node.domain in ("", "ai.onnx")

    # --- match ------------------------------------------------------------

    def match(self, node: onnx.NodeProto, graph: GraphView) -> Match | Skip:
        where = f"{node.op_type} '{graph.label(node)}'"
        spec = read_resize(node, graph)
        if isinstance(spec, str):
            return Skip(f"{where}: {spec}")
        dtype = graph.dtype(node.input[0])
        if dtype not in FLOAT_TYPES:
            name = onnx.TensorProto.DataType.Name(dtype) if dtype else "unknown"
            return Skip(f"{where}: element type {name} is not lowered: only float16 and float32 are, "
                        "because onnxruntime has no Conv or MatMul of other types to verify the rewrite against")
        np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
        if self.target is not None:
            return self._match_for_target(node, graph, spec, np_dtype, where)
        trivial = _trivial(node, graph, spec, np_dtype)
        if trivial is not None:
            return trivial
        if self.mode == "matmul":
            return _match_matmul(node, spec, np_dtype, where)
        base = _deconv_base(node, graph, spec, where)
        if isinstance(base, Skip):
            return base
        fallback = ()
        if spec.interp.mode == "nearest" and self.nearest_form == "shuffle":
            shuffle = _match_shuffle(node, graph, spec, np_dtype, *base)
            if isinstance(shuffle, Match):
                return shuffle
            fallback = (f"{shuffle}; used deconv",)
        return _match_deconv_form(node, spec, np_dtype, *base, extra=fallback)

    # --- match, with a target profile -------------------------------------

    def _match_for_target(self, node, graph: GraphView, spec: ResizeSpec, dtype, where: str) -> Match | Skip:
        """Left alone when the target runs the node; otherwise the first form
        in order of preference whose nodes the target runs (else the one with
        the fewest problems)."""
        unfit = needs_lowering(node, graph, self.target)
        if unfit is None:
            return Skip(runs_as_is_reason(node, graph, self.target))
        forms = self._forms(node, graph, spec, dtype, where)
        choice = pick_form(list(forms), lambda f: self._attempt(forms[f], graph), graph, self.target)
        if choice.replacement is None:
            why = "; ".join(f"{f}: {r}" for f, r in choice.rejected)
            return Skip(f"{where}: no lowering form can be built for target '{self.target.name}' ({why})")
        chosen = forms[choice.form]
        why = f"target {self.target.name} cannot run it as it is: {unfit.replace(where + ': ', '')}"
        notes = chosen.notes + (why,) + choice.notes(self.target)
        if chosen.params.form == "deconv":
            kept = any(n.op_type == "ConvTranspose" for n in choice.replacement.nodes)
            notes += (f"target {self.target.name}: the ConvTranspose was judged "
                      + ("as built (the convtranspose pass leaves it)" if kept else
                         "as the convtranspose pass lowers it for this target"),)
        return Match(node, chosen.params, notes=notes)

    def _forms(self, node, graph: GraphView, spec: ResizeSpec, dtype, where: str) -> dict:
        """form label -> its Match, or why it cannot be built; in order of
        preference.  Identity and broadcast come first where they apply: they
        compute the same values with no arithmetic and one node."""
        trivial = _trivial(node, graph, spec, dtype)
        forms = {} if trivial is None else {trivial.params.label: trivial}
        if not spec.resized:
            return forms
        nearest = spec.interp.mode == "nearest"
        preferred = ("matmul" if self.mode == "matmul"
                     else self.nearest_form if nearest else "deconv")
        order = dict.fromkeys([preferred] + (["shuffle"] if nearest else []) + ["deconv", "matmul"])
        base = _deconv_base(node, graph, spec, where)
        for form in order:
            if form == "matmul":
                m = _match_matmul(node, spec, dtype, where)
                forms[form] = m if isinstance(m, Match) else _plain_reason(m.reason, where)
            elif isinstance(base, Skip):
                forms[form] = _plain_reason(base.reason, where)
            else:
                m = (_match_shuffle(node, graph, spec, dtype, *base) if form == "shuffle"
                     else _match_deconv_form(node, spec, dtype, *base))
                forms[form] = m
                if isinstance(m, Match) and any(k.edge != (0, 0) for k in m.params.kernels):
                    forms[f"{form}-concat-edge"] = _with_concat_edge(m)
        return forms

    def _attempt(self, form: "Match | str", graph: GraphView) -> "Replacement | str":
        """The replacement a form builds, as the target will run it: the
        deconv forms' ConvTranspose as the convtranspose pass leaves or
        lowers it for this target."""
        if isinstance(form, str):
            return form
        replacement = self.build(form, graph)
        if form.params.form == "deconv" and self.finisher is not None:
            replacement = after_pass(replacement, graph, self.finisher)
        return replacement

    # --- build ------------------------------------------------------------

    def build(self, match: Match, graph: GraphView) -> Replacement:
        p: Plan = match.params
        b = Builder(graph, match.node, self.name)
        x = match.node.input[0]
        if p.form == "identity":
            y = b.op("Identity", [x], "identity")
        elif p.form == "broadcast":
            shape = [ax.n_out if not ax.identity else 1 for ax in p.spec.axes]
            y = b.op("Expand", [x, b.ints(shape, "shape")], "broadcast")
        elif p.form == "matmul":
            y = _build_matmul(b, x, p)
        elif p.form == "shuffle":
            y = _build_shuffle(b, x, p)
        else:
            y = _build_deconv(b, x, p)
        return b.replacement({match.node.output[0]: y})


# --- match helpers ----------------------------------------------------------

def _trivial(node, graph: GraphView, spec: ResizeSpec, dtype) -> Optional[Match]:
    """The identity or broadcast form, where one applies."""
    if not spec.resized:
        return Match(node, Plan("identity", spec, dtype), notes=("form=identity (every scale is 1)",))
    if _broadcasts(spec, graph):
        return Match(node, Plan("broadcast", spec, dtype),
                     notes=("form=broadcast (every resized axis has size 1: Expand, no MACs)",))
    return None


def _plain_reason(reason: str, where: str) -> str:
    """A form's Skip reason without the node (pick_form's notes name it)."""
    return reason.removeprefix(f"{where}: ").removesuffix(MATMUL_HINT)


def _broadcasts(spec: ResizeSpec, graph: GraphView) -> bool:
    """Every resized axis has input size 1, so every output is x itself
    (all weights of a row add up to 1 once clamped); Expand needs opset 8."""
    return (graph.opset() >= 8 and spec.interp.coordinate_mode != "tf_crop_and_resize"
            and all(ax.n_in == 1 and ax.n_out is not None for ax in spec.resized))


def _deconv_problem(spec: ResizeSpec, where: str) -> Optional[str]:
    """Why this Resize is not a fixed-kernel deconvolution, or None."""
    interp = spec.interp
    if interp.coordinate_mode in ("align_corners", "tf_crop_and_resize"):
        grid = ("t * (n - 1) / (m - 1)" if interp.coordinate_mode == "align_corners"
                else "a crop window")
        return (f"{where}: coordinate_transformation_mode {interp.coordinate_mode} samples {grid}, a grid that "
                f"is not periodic in the output index, so no fixed kernel reproduces it{MATMUL_HINT}")
    if interp.exclude_outside and interp.mode != "linear":
        return (f"{where}: {interp.mode} with exclude_outside=1 renormalises the weights near the borders, so "
                f"they differ from the interior's and no fixed kernel with edge padding reproduces them{MATMUL_HINT}")
    if len(spec.axes) < 3 or any(not ax.identity for ax in spec.axes[:2]):
        scales = [float(ax.scale) for ax in spec.axes]
        return (f"{where}: it resizes the batch or channel axis (scales {scales}) or its input has no "
                f"[N, C, spatial...] layout; a depthwise ConvTranspose resizes spatial axes only{MATMUL_HINT}")
    for ax in spec.resized:
        if ax.scale < 1:
            return (f"{where}: it downsamples axis {ax.axis} (scale {float(ax.scale):g}); a transposed "
                    f"convolution only upsamples{MATMUL_HINT}")
        if ax.factor is None:
            return (f"{where}: scale {float(ax.scale):g} on axis {ax.axis} is not an integer, so the output "
                    f"phases do not repeat with a fixed kernel{MATMUL_HINT}")
    return None


def _deconv_base(node, graph: GraphView, spec: ResizeSpec, where: str) -> tuple | Skip:
    """(channels, per-axis kernels, notes) shared by the deconv and shuffle
    forms, or why neither applies."""
    problem = _deconv_problem(spec, where)
    if problem:
        return Skip(problem)
    channels = graph.shape(node.input[0])[1]
    if not isinstance(channels, int):
        return Skip(f"{where}: the channel count is not static, and a depthwise ConvTranspose needs it "
                    "(group = C); give the input a static channel dimension")
    kernels = tuple(identity_kernel() if ax.identity else axis_kernel(phase_taps(spec.interp, ax.factor), ax.factor)
                    for ax in spec.axes[2:])
    notes = (f"factors={[k.factor for k in kernels]}", f"mode={spec.interp.mode}",
             f"coordinates={spec.interp.coordinate_mode}")
    return channels, kernels, notes


def _match_shuffle(node, graph: GraphView, spec: ResizeSpec, dtype, channels, kernels, notes) -> Match | str:
    factors = [k.factor for k in kernels]
    if not _can_shuffle(graph, node, factors):
        return "shuffle form needs static spatial sizes here (a general pixel shuffle)"
    plain = is_plain_nearest(kernels)
    head = (f"form=shuffle (MAC-free: {prod(factors)} channel copies + DepthToSpace"
            f"{'' if plain else ', each copy an edge-padded shifted slice'})")
    return Match(node, Plan("shuffle", spec, dtype, channels, kernels), notes=(head,) + notes)


def _match_deconv_form(node, spec: ResizeSpec, dtype, channels, kernels, notes, extra=()) -> Match:
    shape = [channels, 1, *[len(k.kernel) for k in kernels]]
    axes = "; ".join(" ".join(f"{w:.4g}" for w in k.kernel) for k in kernels)
    head = ("form=deconv", f"kernel={shape} = outer product of [{axes}]",
            f"edge pad={[k.edge for k in kernels]}", f"convtranspose pads={[k.pads for k in kernels]}")
    return Match(node, Plan("deconv", spec, dtype, channels, kernels), notes=head + notes + tuple(extra))


def _with_concat_edge(m: Match) -> Match:
    """The same form with the border replicated by Concat of edge Slices."""
    p = replace(m.params, edge="concat")
    head = m.notes[0].replace(f"form={m.params.form}", f"form={p.label}", 1)
    return Match(m.node, p, notes=(head, "edge replicated by Concat of edge Slices (no Pad edge)") + m.notes[1:])


def _can_shuffle(graph: GraphView, node, factors) -> bool:
    """pixel_shuffle emits DepthToSpace for 2-D equal blocks; otherwise its
    Reshape needs static spatial sizes."""
    sizes = graph.shape(node.input[0])[2:]
    return (len(factors) == 2 and factors[0] == factors[1]) or all(isinstance(n, int) for n in sizes)


def _match_matmul(node, spec: ResizeSpec, dtype, where: str):
    first = min(ax.axis for ax in spec.resized)
    if any(ax.n_in is None for ax in spec.axes[first:]):
        dims = [ax.n_in for ax in spec.axes]
        return Skip(f"{where}: the matmul form needs static sizes from the first resized axis on "
                    f"(input {dims}); give the input static spatial dimensions")
    try:
        matrices = tuple((ax.axis, *interpolation_matrix(spec.interp, ax)) for ax in spec.resized)
    except Unsupported as e:
        return Skip(f"{where}: {e}")
    sizes = [f"axis {a}: [{m.shape[0]}, {m.shape[1]}]" for a, m, _ in matrices]
    total = sum(m.size for _, m, _ in matrices)
    notes = ("form=matmul", f"matrices {', '.join(sizes)} ({total} weights)",
             f"mode={spec.interp.mode}", f"coordinates={spec.interp.coordinate_mode}")
    return Match(node, Plan("matmul", spec, dtype, matrices=matrices), notes=notes)


# --- build helpers ----------------------------------------------------------

def _edge_pad(b: Builder, x: str, kernels, edge: str = "pad", what: str = "edge_pad") -> str:
    """Replicate the border: the spec's clamp of source indices.  `edge`
    "pad": one Pad(mode=edge); "concat": per axis, Concat of lo copies of the
    first slice, x, and hi copies of the last (for targets without Pad edge)."""
    if all(k.edge == (0, 0) for k in kernels):
        return x
    if edge == "concat":
        return _edge_concat(b, x, kernels, what)
    pads = [0, 0, *[k.edge[0] for k in kernels], 0, 0, *[k.edge[1] for k in kernels]]
    if b.graph.opset() < 11:
        return b.op("Pad", [x], what, pads=pads, mode="edge")
    return b.op("Pad", [x, b.ints(pads, f"{what}_pads")], what, mode="edge")


def _edge_concat(b: Builder, x: str, kernels, what: str) -> str:
    for axis, k in enumerate(kernels, start=2):
        lo, hi = k.edge
        if lo == hi == 0:
            continue
        first = [slice_axes(b, x, [axis], [0], [1], f"{what}{axis}_first")] * lo if lo else []
        last = [slice_axes(b, x, [axis], [-1], [sys.maxsize], f"{what}{axis}_last")] * hi if hi else []
        x = b.op("Concat", first + [x] + last, f"{what}{axis}", axis=axis)
    return x


def _build_deconv(b: Builder, x: str, p: Plan) -> str:
    x = _edge_pad(b, x, p.kernels, p.edge)
    w = b.initializer(depthwise_kernel(p.kernels, p.channels, p.dtype), "weight")
    return b.op("ConvTranspose", [x, w], "deconv", group=p.channels,
                kernel_shape=[len(k.kernel) for k in p.kernels], strides=[k.factor for k in p.kernels],
                pads=join_pads([k.pads for k in p.kernels]))


def _build_shuffle(b: Builder, x: str, p: Plan) -> str:
    """One copy of x per output phase (x shifted by the phase's source offset
    d, read from the edge-padded input), in DCR order, then DepthToSpace."""
    padded = _edge_pad(b, x, p.kernels, p.edge)
    copies, slices = [], {}
    for combo in itertools.product(*[k.phases for k in p.kernels]):
        shifts = tuple(phase[0][0] for phase in combo)
        if shifts not in slices:
            slices[shifts] = _shifted(b, padded, p.kernels, shifts)
        copies.append(slices[shifts])
    y = copies[0] if len(copies) == 1 else b.op("Concat", copies, "copies", axis=1)
    sizes = [ax.n_in for ax in p.spec.axes[2:]]
    return pixel_shuffle(b, y, p.channels, [k.factor for k in p.kernels], sizes, "DCR")


def _shifted(b: Builder, padded: str, kernels, shifts) -> str:
    """padded[..., lo + d : lo + d + n] on each spatial axis (ends counted
    from the back, so symbolic sizes work)."""
    cut = [(i + 2, k.edge[0] + d, -(k.edge[1] - d) if k.edge[1] > d else sys.maxsize)
           for i, (k, d) in enumerate(zip(kernels, shifts)) if k.edge != (0, 0)]
    if not cut:
        return padded
    axes, starts, ends = zip(*cut)
    return slice_axes(b, padded, axes, starts, ends, "shift")


def _build_matmul(b: Builder, x: str, p: Plan) -> str:
    """One MatMul per resized axis, shrinking axes first (fewest MACs)."""
    dims = [ax.n_in for ax in p.spec.axes]
    rank = len(dims)
    masks = []
    for axis, m, outside in sorted(p.matrices, key=lambda t: t[1].shape[0] / t[1].shape[1]):
        x = _matmul_axis(b, x, axis, m.astype(p.dtype), dims, rank)
        dims[axis] = m.shape[0]
        if outside.any():
            masks.append((axis, outside))
    value = p.spec.interp.extrapolation_value
    if masks and value != 0:
        x = b.op("Add", [x, b.initializer(_extrapolation(masks, rank, value).astype(p.dtype), "extrapolation")],
                 "extrapolate")
    return x


def _matmul_axis(b: Builder, x: str, axis: int, m: np.ndarray, dims, rank: int) -> str:
    """y = M applied along `axis` of x (current sizes `dims`)."""
    if axis == rank - 1:
        return b.op("MatMul", [x, b.initializer(np.ascontiguousarray(m.T), f"axis{axis}_matrix")],
                    f"axis{axis}_matmul")
    w = b.initializer(m, f"axis{axis}_matrix")
    if axis == rank - 2:
        return b.op("MatMul", [w, x], f"axis{axis}_matmul")
    folded = b.op("Reshape", [x, b.ints([0] * axis + [dims[axis], -1], f"axis{axis}_fold_shape")],
                  f"axis{axis}_fold")
    y = b.op("MatMul", [w, folded], f"axis{axis}_matmul")
    back = [0] * axis + [m.shape[0]] + list(dims[axis + 1:])
    return b.op("Reshape", [y, b.ints(back, f"axis{axis}_unfold_shape")], f"axis{axis}_unfold")


def _extrapolation(masks, rank: int, value: float) -> np.ndarray:
    """value where any axis's source coordinate falls outside the input."""
    shape = [1] * rank
    for axis, outside in masks:
        shape[axis] = len(outside)
    out = np.zeros(shape, bool)
    for axis, outside in masks:
        view = [1] * rank
        view[axis] = len(outside)
        out = out | outside.reshape(view)
    return out * value
