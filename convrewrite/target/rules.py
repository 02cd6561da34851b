"""The rules of a profile, applied to the facts of one node.

Each check returns what is wrong in a few words ("stride 2x2 not allowed
(allowed values per axis: [1])"), or None; `op_rule_violations` turns them
into Violations that start with the node and name the rule's key path.
With alternative forms, a problem every form shares is reported on its own
and the rest form by form.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from fractions import Fraction
from math import prod
from typing import Mapping, Optional

import onnx

from ..core.graph import GraphView
from ..core.preconditions import shown_dims
from . import wording
from .facts import OpFacts, Tensor
from .profile import OpRule, Profile


@dataclass(frozen=True, eq=False)
class Violation:
    """One rule broken.  Its sentence is held as parts: the
    words, and each value and node it names as a field of its own (wording.py), so
    `message` is rendered from them and `renamed` substitutes names without
    searching the text.  Two violations are equal when they say the same of
    the same node under the same rule."""

    node: str        # node label, or the graph input's name
    op: str          # operator, or "graph input"
    rule: str        # key path in the profile
    sentence: tuple  # the full sentence, starting with the node, as parts (a str: words alone)

    def __post_init__(self):
        object.__setattr__(self, "sentence", wording.parts(self.sentence))

    @property
    def message(self) -> str:
        return wording.render(self.sentence)

    @property
    def values(self) -> tuple:
        """The names of the values the sentence is about, in order."""
        return wording.quoted(self.sentence, wording.VALUE)

    def renamed(self, values: Mapping[str, str] = {}, nodes: Mapping[str, str] = {}) -> "Violation":
        """The same violation with the values and nodes it names renamed
        (`node` too, where it is in `nodes`)."""
        return replace(self, node=nodes.get(self.node, self.node),
                       sentence=wording.renamed(self.sentence, values, nodes))

    def extended(self, *words) -> "Violation":
        """The same violation, its sentence continued by `words` (parts)."""
        return replace(self, sentence=wording.parts(self.sentence, words))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Violation):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple:
        return self.node, self.op, self.rule, self.message

    def to_dict(self) -> dict:
        return {"node": self.node, "op": self.op, "rule": self.rule, "message": self.message}

    def __str__(self) -> str:
        return self.message


# --- the rules ---------------------------------------------------------------------

def op_key(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def op_rule_violations(profile: Profile, f: OpFacts, op: str, label: str,
                        head: Optional[str] = None) -> list[Violation]:
    head = head or node_head(f.op, label)
    rules = profile.rules(op)
    if rules is None:
        if profile.unlisted_operators == "allowed":
            return []
        return [Violation(label, f.op, "unlisted_operators",
                          (head, f": {op} is not in the target's operator list (profile lists only what it runs)"))]
    if len(rules) == 1:
        return [Violation(label, f.op, key, (head, ": ", text)) for key, text in _rule_problems(rules[0], f)]
    per_form = [_rule_problems(r, f) for r in rules]
    if any(not p for p in per_form):
        return []
    # a problem every form has is reported on its own; the rest form by form
    common = [(key, text) for key, text in per_form[0] if all(text in (t for _, t in p) for p in per_form[1:])]
    found = [Violation(label, f.op, re.sub(r"\[\d+\]", "", key), (head, ": ", text)) for key, text in common]
    rest = [[t for _, t in p if t not in {t for _, t in common}] for p in per_form]
    if all(rest):
        forms = wording.joined("; ", [(f"({k + 1}) ", wording.joined(", ", p)) for k, p in enumerate(rest)])
        found.append(Violation(label, f.op, f"operators.{op}",
                               (head, f": fits none of the {len(rules)} allowed forms: ", forms)))
    return found


def node_head(op: str, label: str) -> tuple:
    """The start of a node's sentence: "<op> '<label>'", the label quoted as the node's."""
    return f"{op} ", wording.node(label)


def _rule_problems(r: OpRule, f: OpFacts) -> list[tuple[str, tuple]]:
    """(rule key path, what is wrong, as a sentence's parts) for every limit of `r` that `f` breaks."""
    if not r.supported:
        key = r.where if r.where == "unsupported_operators" else f"{r.where}.supported"
        return [(key, wording.parts("operator not supported by the target" + (f" ({r.note})" if r.note else "")))]
    out = []
    for key, check in _CHECKS:
        limit = getattr(r, key)
        if limit is None or limit is False:
            continue
        text = check(limit, f)
        if text:
            out.append((f"{r.where}.{key}", wording.parts(text)))
    return out


def _x(values) -> str:
    return "x".join(str(v) for v in values)


def _list(values) -> str:
    return "[" + ", ".join(_x(v) if isinstance(v, tuple) else str(v) for v in values) + "]"


def _factor(q: Fraction) -> str:
    return str(q.numerator) if q.denominator == 1 else f"{float(q):.4g}"


def _check_spatial_ranks(limit, f):
    if f.spatial_rank is not None and f.spatial_rank not in limit:
        return f"{f.spatial_rank}-D (spatial rank {f.spatial_rank}) not in allowed spatial ranks {_list(limit)}"


def _check_kernel_sizes(limit, f):
    if f.kernel is not None and any(k not in limit for k in f.kernel):
        return f"kernel {_x(f.kernel)} has a size not in allowed kernel sizes {_list(limit)}"


def _check_kernel_shapes(limit, f):
    if f.kernel is not None and f.kernel not in limit:
        return f"kernel {_x(f.kernel)} not in allowed kernel shapes {_list(limit)}"


def _check_kernel_area(limit, f):
    if f.kernel is None or f.dilations is None:
        return None
    ext = [(k - 1) * d + 1 for k, d in zip(f.kernel, f.dilations)]
    area = 1
    for e in ext:
        area *= e
    if area > limit:
        return f"dilated kernel extent {_x(ext)} ({area} positions) above the allowed {limit}"


def _check_strides(limit, f):
    if f.strides is not None and any(s not in limit for s in f.strides):
        return f"stride {_x(f.strides)} not allowed (allowed values per axis: {_list(limit)})"


def _check_equal_strides(limit, f):
    if f.strides is not None and len(set(f.strides)) > 1:
        return f"strides {_x(f.strides)} differ between axes; the target requires equal strides"


def _check_dilations(limit, f):
    if f.dilations is not None and any(d not in limit for d in f.dilations):
        return f"dilation {_x(f.dilations)} not allowed (allowed values per axis: {_list(limit)})"


def _check_equal_dilations(limit, f):
    if f.dilations is not None and len(set(f.dilations)) > 1:
        return f"dilations {_x(f.dilations)} differ between axes; the target requires equal dilations"


def _check_dilation_stride(limit, f):
    if f.dilations is not None and f.strides is not None and max(f.dilations) > 1 and max(f.strides) > 1:
        return f"dilation {_x(f.dilations)} at stride {_x(f.strides)}; the target allows dilation > 1 only at stride 1"


def _check_groups(limit, f):
    if f.group_kind is not None and f.group_kind not in limit:
        group = f" (group {f.group})" if f.group is not None else ""
        return f"{f.group_kind} convolution{group} not allowed (allowed: {', '.join(limit)})"


def _check_pads(limit, f):
    if "any" in limit or f.pad_kinds is None or f.pad_kinds & set(limit) or f.pad_kinds_open & set(limit):
        return None
    pads = f"pads {list(f.pads)}" if f.pads is not None else "padding"
    return f"{pads} not of an allowed kind ({', '.join(limit)})"


def _check_output_size(limit, f):
    if f.output_size_kinds is None or f.output_size_kinds & set(limit):
        return None
    got, times, full = f.output_sizes
    want = {"input_times_stride": f"input x stride = {_x(times)}", "full": f"unpadded (n-1)*s+k = {_x(full)}",
            "onnx2tf_valid": "the VALID TRANSPOSE_CONV onnx2tf writes, (n-1)*s+k plus output_padding when no "
                             "pad is set, of the size Vela takes, n*s + max(k-s, 0)"}
    return f"output size {_x(got)} is not an allowed size ({'; '.join(want[k] for k in limit)})"


def _check_modes(limit, f):
    if f.mode is not None and f.mode not in limit:
        return f"mode {f.mode} not in allowed modes {_list(limit)}"


def _check_coordinate_modes(limit, f):
    m = f.coordinate_transformation_mode
    if m is not None and m not in limit:
        return f"coordinate_transformation_mode {m} not in allowed modes {_list(limit)}"


def _check_nearest_modes(limit, f):
    if f.mode == "nearest" and f.nearest_mode is not None and f.nearest_mode not in limit:
        return f"nearest_mode {f.nearest_mode} not in allowed modes {_list(limit)}"


def _check_factors(limit, f):
    if f.resizes_batch_or_channel:
        return "resizes the batch or channel axis; the target resizes spatial axes only"
    if f.factors is None:
        return None
    bad = [q for q in f.factors if q != 1 and (q.denominator != 1 or q.numerator not in limit)]
    if bad:
        return (f"scale factors {_x(_factor(q) for q in f.factors)} not allowed "
                f"(allowed integer upsampling factors per axis: {_list(limit)})")


def _check_max_factor(limit, f):
    if f.resizes_batch_or_channel:
        return "resizes the batch or channel axis; the target resizes spatial axes only"
    if f.factors is not None and any(q > limit for q in f.factors):
        return (f"scale factors {_x(_factor(q) for q in f.factors)} not allowed "
                f"(the target scales each axis by at most {limit}, by any ratio)")


def _check_equal_factors(limit, f):
    if f.factors is not None and len(set(f.factors)) > 1:
        return f"scale factors {_x(_factor(q) for q in f.factors)} differ between axes; the target requires equal factors"


def _check_no_identity(limit, f):
    if limit and f.factors is not None and f.factors and all(q == 1 for q in f.factors):
        return "every scale is 1 (an identity Resize), which the target does not run as a Resize"


def _check_unit_input(limit, f):
    if f.unit_input is False:
        return "input is larger than 1 on some spatial axis; the target resizes only a 1x1 input this way"


def _check_corner_factors(limit, f):
    if f.resizes_batch_or_channel:
        return "resizes the batch or channel axis; the target resizes spatial axes only"
    if f.corner_factors is None:
        return None
    if None in f.corner_factors:
        return ("an axis of input size 1 is resized to more: align_corners has no scale (output-1)/(input-1) "
                f"there (allowed integer factors per axis: {_list(limit)})")
    bad = [q for q in f.corner_factors if q != 1 and (q.denominator != 1 or q.numerator not in limit)]
    if bad:
        return (f"align_corners scale factors {_x(_factor(q) for q in f.corner_factors)} ((output-1)/(input-1)) "
                f"not allowed (allowed integer factors per axis: {_list(limit)})")


def _check_equal_corner_factors(limit, f):
    q = f.corner_factors
    if q is not None and None not in q and len(set(q)) > 1:
        return (f"align_corners scale factors {_x(_factor(v) for v in q)} ((output-1)/(input-1)) differ "
                f"between axes; the target requires equal factors")


def _check_block_sizes(limit, f):
    if f.blocksize is not None and f.blocksize not in limit:
        return f"blocksize {f.blocksize} not in allowed block sizes {_list(limit)}"


def _check_steps(limit, f):
    if f.steps is not None and any(s not in limit for s in f.steps):
        return f"steps {list(f.steps)} not allowed (allowed step values: {_list(limit)})"


def _axis_kind(axis: int) -> str:
    return ("batch", "channel")[axis] if axis < 2 else "spatial"


def _check_strided_axes(limit, f):
    if f.steps is None or f.slice_axes is None or len(f.steps) != len(f.slice_axes):
        return None
    bad = [f"step {s} on axis {ax} ({_axis_kind(ax)})" for s, ax in zip(f.steps, f.slice_axes)
           if s != 1 and _axis_kind(ax) not in limit]
    if bad:
        where = " or ".join({"batch": "the batch axis", "channel": "the channel axis", "spatial": "spatial axes"}[k]
                            for k in limit)
        return f"{', '.join(bad)} not allowed; the target takes a step other than 1 only on {where}"


def _check_channel_reduction(limit, f):
    if limit and f.channel_reduction is not None and min(f.channel_reduction) > 1:
        h, w, c = f.channel_reduction
        return (f"normalizes the channel axis of a {h}x{w}x{c} map; the target reduces over channels only "
                "where one of H, W, C is 1")


def _check_gather_axes(limit, f):
    if f.gather_axis is not None and _axis_kind(f.gather_axis) not in limit:
        where = " or ".join({"batch": "axis 0", "channel": "axis 1", "spatial": "axes 2 and up"}[k] for k in limit)
        return f"gathers along axis {f.gather_axis}; the target gathers only along {where}"


def _check_channel_join(limit, f):
    if limit and f.spatial_joins:
        joins = [(wording.value(name), " (", join, ")") for name, join in f.spatial_joins]
        return ("joins along the channel axis what is joined along a spatial axis: ", _and_parts(joins),
                "; the target joins along channels only tensors not joined spatially")


def _check_spatial_only(limit, f):
    if f.pads_batch_or_channel:
        return "pads the batch or channel axis; the target pads spatial axes only"


def _check_batch_axis(limit, f):
    if f.perm is not None and f.perm and f.perm[0] != 0:
        return f"permutation {list(f.perm)} moves the batch axis; the target requires perm[0] == 0"


# The Transpose size keys bound the data a permutation moves: the identity
# permutation moves nothing and breaks none of them.

def _moved_input(f) -> Optional[Tensor]:
    """The input of a Transpose that moves data, when its shape is static."""
    if f.perm is None or f.perm == tuple(range(len(f.perm))):
        return None
    t = next((t for t in f.tensors if t.role == "input"), None)
    if t is None or t.shape is None or not all(isinstance(d, int) for d in t.shape):
        return None
    return t


def _check_within_last_axes(limit, f):
    if f.perm is None:
        return None
    lead = max(len(f.perm) - limit, 0)  # the axes before the last `limit`
    moved = [k for k in range(lead) if f.perm[k] != k]
    if moved:
        return (f"permutation {list(f.perm)} moves axis {moved[0]}; "
                f"the target permutes only the last {limit} axes")
    t = _moved_input(f)
    wide = [k for k in range(lead) if t.shape[k] != 1] if t is not None else []
    if wide:
        return ("input ", wording.value(t.name), f" {shape_text(t.shape)} has size {t.shape[wide[0]]} on axis "
                f"{wide[0]}; the target permutes the last {limit} axes only when every axis before them is 1")


def _check_max_dim(limit, f):
    t = _moved_input(f)
    if t is not None and max(t.shape, default=1) > limit:
        return ("input ", wording.value(t.name), f" {shape_text(t.shape)} has a dimension of {max(t.shape)}; "
                f"the target transposes at most {limit} per dimension")


def _check_rank_minus_2_product(limit, f):
    t = _moved_input(f)
    if t is None:
        return None
    largest = sorted(t.shape)[2:]
    if prod(largest) > limit:
        n, rank = len(largest), len(t.shape)
        return ("input ", wording.value(t.name), f" {shape_text(t.shape)}: the product of any {n} of its {rank} "
                f"dimensions must be at most {limit}, and its {n} largest give {prod(largest)}")


def _check_computed_operands(limit, f):
    if f.constant_inputs:
        return ("operand ", wording.value(f.constant_inputs[0]), " is a constant (known before run time); "
                f"the target runs {f.op} only on operands computed at run time")


def _check_no_reshaped_inputs(limit, f):
    if f.reshaped_input is not None:
        name, maker = f.reshaped_input
        return ("input ", wording.value(name), " passes through a RESHAPE in onnx2tf's TFLite (at ",
                wording.node(maker), "), whose int8 scales the quantizer may make differ (it forces the "
                f"{f.op}'s scale onto the input), which the target's compiler refuses")


def _check_op_rank(limit, f):
    for t in f.tensors:
        if t.shape is not None and len(t.shape) > limit:
            return (f"{t.role} ", wording.value(t.name), f" has rank {len(t.shape)}, above the {f.op} limit of {limit}")


def _check_non_unit_dims(limit, f):
    for t in f.tensors:
        if t.role == "input" and t.shape is not None:
            n = sum(1 for d in t.shape if isinstance(d, int) and d > 1)
            if n > limit:
                return ("input ", wording.value(t.name), f" {shape_text(t.shape)} has {n} dimensions > 1, "
                        f"above the {f.op} limit of {limit}")


_CHECKS = (
    ("max_rank", _check_op_rank), ("max_non_unit_dims", _check_non_unit_dims),
    ("spatial_ranks", _check_spatial_ranks), ("kernel_sizes", _check_kernel_sizes),
    ("kernel_shapes", _check_kernel_shapes), ("max_kernel_area", _check_kernel_area),
    ("strides", _check_strides), ("equal_strides", _check_equal_strides),
    ("dilations", _check_dilations), ("equal_dilations", _check_equal_dilations),
    ("dilation_requires_unit_stride", _check_dilation_stride), ("groups", _check_groups),
    ("pads", _check_pads), ("output_size", _check_output_size), ("modes", _check_modes),
    ("coordinate_transformation_modes", _check_coordinate_modes), ("nearest_modes", _check_nearest_modes),
    ("factors", _check_factors), ("max_factor", _check_max_factor), ("equal_factors", _check_equal_factors),
    ("unit_input", _check_unit_input), ("no_identity", _check_no_identity),
    ("corner_factors", _check_corner_factors), ("equal_corner_factors", _check_equal_corner_factors),
    ("block_sizes", _check_block_sizes), ("steps", _check_steps), ("strided_axes", _check_strided_axes),
    ("spatial_only", _check_spatial_only), ("batch_axis_fixed", _check_batch_axis),
    ("within_last_axes", _check_within_last_axes), ("max_dim", _check_max_dim),
    ("max_product_of_rank_minus_2_dims", _check_rank_minus_2_product),
    ("computed_operands", _check_computed_operands), ("gather_axes", _check_gather_axes),
    ("channel_reduction_needs_unit_dim", _check_channel_reduction),
    ("no_channel_join_of_spatial_joins", _check_channel_join),
    ("no_reshaped_inputs", _check_no_reshaped_inputs),
)

# The limits whose facts a node's producers (and its inputs' other readers) make, not the node
# itself: a rewrite elsewhere can make an untouched node break them, so a lowering is judged
# together with the existing nodes that read its outputs or its inputs where a profile sets one of
# them (check.neighbour_violations, lowering.judged).
PRODUCER_RULES = ("no_reshaped_inputs", "no_channel_join_of_spatial_joins")
# Of those, the limits the other readers of a node's inputs make too (facts._reshape_maker: a
# RESHAPE reading the input): a lowering that reads one of them can make its other readers break
# them.  A spatial join is read from producers alone.
SIBLING_RULES = ("no_reshaped_inputs",)


# --- what the rules cannot judge -------------------------------------------------
#
# A check passes where its fact is None ("not known here": a symbolic size, a
# runtime scales input): the compatibility check reports only what it knows
# is broken.  Saying the target *runs* a node is the other claim, and it
# holds only where every fact a rule reads is known: a Resize of symbolic
# size passes the unit_input form of Ethos-U's rules by not knowing its input
# size, and a runtime scales input passes every factor rule unread.

# The OpFacts fields each limit reads, and what they are in words (the limits
# left out: _NOT_READ).
_READS = {
    "spatial_ranks": ("spatial_rank",), "kernel_sizes": ("kernel",), "kernel_shapes": ("kernel",),
    "max_kernel_area": ("kernel", "dilations"), "strides": ("strides",), "equal_strides": ("strides",),
    "dilations": ("dilations",), "equal_dilations": ("dilations",),
    "dilation_requires_unit_stride": ("dilations", "strides"), "groups": ("group_kind",),
    "pads": ("pad_kinds",), "output_size": ("output_size_kinds",), "modes": ("mode",),
    "coordinate_transformation_modes": ("coordinate_transformation_mode",),
    "factors": ("factors",), "max_factor": ("factors",), "equal_factors": ("factors",),
    "no_identity": ("factors",), "unit_input": ("unit_input",),
    "corner_factors": ("corner_factors",), "equal_corner_factors": ("corner_factors",),
    "block_sizes": ("blocksize",), "steps": ("steps",), "strided_axes": ("steps", "slice_axes"),
    "spatial_only": ("pads_batch_or_channel",), "batch_axis_fixed": ("perm",),
    "within_last_axes": ("perm",), "max_dim": ("perm",), "max_product_of_rank_minus_2_dims": ("perm",),
    "gather_axes": ("gather_axis",),
}

_IN_WORDS = {
    "spatial_rank": "the spatial rank", "kernel": "the kernel size",
    "group_kind": "the group kind (the weight's shape)", "pad_kinds": "the padding (the input's size)",
    "output_size_kinds": "the output size", "mode": "the mode",
    "coordinate_transformation_mode": "the coordinate transformation mode",
    "factors": "the scale factors (output size / input size, or a constant scales or sizes input)",
    "unit_input": "the input's spatial size", "corner_factors": "the input and output sizes (align_corners' "
    "(output-1)/(input-1))", "blocksize": "the block size", "steps": "the steps", "slice_axes": "the axes",
    "pads_batch_or_channel": "the pads", "perm": "the permutation", "gather_axis": "the axis",
}

# The limits _READS leaves out, and why (tests/target/test_undecided.py checks that every limit
# is in one of the two): the rank limits read the tensors' shapes (_rule_unknowns), a nearest_mode
# is read from the node's own attribute, computed_operands from constant_inputs and
# no_reshaped_inputs from the inputs' producers and readers (both always worked out), a channel
# reduction's facts are None both where the map's size is unknown and where the normalization does
# not cover the channel axis, so they cannot tell unknown from absent (no lowering pass builds or
# leaves a LayerNormalization, whose target check reports what it knows), and a channel Concat's
# spatial joins are read from the producers of its inputs, where a spatial Concat of unknown rank
# counts as no join (its axis is not known to be spatial).
_NOT_READ = frozenset({"max_rank", "max_non_unit_dims", "nearest_modes", "computed_operands",
                       "channel_reduction_needs_unit_dim", "no_channel_join_of_spatial_joins",
                       "no_reshaped_inputs"})

# the Transpose size limits also read the moved input's shape (static, unless the permutation moves nothing)
_MOVED_SHAPE = frozenset({"within_last_axes", "max_dim", "max_product_of_rank_minus_2_dims"})


def _rule_unknowns(r: OpRule, f: OpFacts) -> list[str]:
    """What the limits of `r` read that `f` does not know, in words (empty:
    every limit of `r` is decided for `f`)."""
    if not r.supported:
        return []
    out = []
    for key, _ in _CHECKS:
        limit = getattr(r, key)
        if limit is None or limit is False or (key == "pads" and "any" in limit):
            continue
        if key in ("factors", "max_factor") and f.resizes_batch_or_channel:
            continue   # broken whatever the factors
        if key == "strided_axes" and f.steps is not None and all(s == 1 for s in f.steps):
            continue   # no step other than 1 to place: the axes decide nothing
        missing = [field for field in _READS.get(key, ()) if getattr(f, field) is None]
        if key == "pads" and f.pad_kinds is not None and not f.pad_kinds & set(limit) \
                and f.pad_kinds_open & set(limit):
            missing.append("pad_kinds")   # an allowed kind the pads may be, depending on the size
        if key in _MOVED_SHAPE and f.perm is not None and f.perm != tuple(range(len(f.perm))) \
                and _moved_input(f) is None:
            missing.append("the input's shape")
        if key in ("max_rank", "max_non_unit_dims") and any(t.shape is None for t in f.tensors):
            missing.append("the shapes")
        out += [_IN_WORDS.get(m, m) for m in missing]
    return list(dict.fromkeys(out))


def undecided(profile: Profile, f: OpFacts, op: str) -> list[str]:
    """Why `profile`'s rules for `op` cannot say the target runs `f` as it
    is, though none is known to be broken, in clauses (empty: some form of
    them holds with every fact it reads known, or the profile does not list
    the operator): what no such form knows; and on a profile with
    `static_shapes`, the node's tensors of symbolic size (but for the batch
    axis, which the check of the graph's inputs reports, and the target
    check takes as 1 where the profile requires batch 1)."""
    rules = profile.rules(op)
    found = []
    if rules is not None:
        open_forms = [_rule_unknowns(r, f) for r in rules if not _rule_problems(r, f)]
        if open_forms and all(open_forms):
            unknown = list(dict.fromkeys(u for form in open_forms for u in form))
            found.append(f"its rules read {_and(unknown)}, not known before run time")
    if profile.static_shapes:
        symbolic = [f"{t.role} '{t.name}' is {shape_text(shown_dims(t.shape))}" for t in f.tensors
                    if t.shape is not None and not all(isinstance(d, int) for d in t.shape[1:])]
        if symbolic:
            found.append(f"it needs static shapes (static_shapes), and {_and(symbolic)}")
    return found


def _and(items: list) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _and_parts(items: list) -> tuple:
    """_and for sentences (wording.parts)."""
    return wording.parts(items[0]) if len(items) == 1 else \
        wording.parts(wording.joined(", ", items[:-1]), " and ", items[-1])


# --- global rules ------------------------------------------------------------------

def shape_text(shape) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def rank_violations(profile: Profile, f: OpFacts, op: str, label: str,
                     head: Optional[str] = None) -> list[Violation]:
    if profile.max_rank is None:
        return []
    head = head or node_head(f.op, label)
    return [Violation(label, f.op, "max_rank",
                      (head, f": produces rank-{len(t.shape)} tensor",
                       (" ", wording.value(t.name), f" {shape_text(t.shape)}") if t.name else "s",
                       f"; the target allows rank <= {profile.max_rank}"))
            for t in f.tensors if t.role == "output" and t.shape is not None and len(t.shape) > profile.max_rank]


def batch_violations(profile: Profile, f: OpFacts, op: str, label: str) -> list[Violation]:
    if not profile.batch_must_be_one:
        return []
    inherited = {t.shape[0] for t in f.tensors if t.role == "input" and t.shape}
    return [Violation(label, f.op, "batch_must_be_one",
                      (node_head(f.op, label), f": produces batch {t.shape[0]} (tensor ", wording.value(t.name),
                       f" {shape_text(t.shape)}); the target requires batch 1"))
            for t in f.tensors
            if t.role == "output" and t.shape is not None and 3 <= len(t.shape) <= 5
            and isinstance(t.shape[0], int) and t.shape[0] > 1 and t.shape[0] not in inherited]


def graph_input_violations(graph: GraphView, profile: Profile) -> list[Violation]:
    found = []
    for vi in graph.graph.input:
        if not graph.is_graph_input(vi.name) or graph.is_initializer(vi.name):
            continue
        shape = graph.shape(vi.name)
        if shape is None:
            continue
        if profile.max_rank is not None and len(shape) > profile.max_rank:
            found.append(Violation(vi.name, "graph input", "max_rank",
                                   ("graph input ", wording.value(vi.name), f" {shape_text(shape)} has rank "
                                    f"{len(shape)}; the target allows rank <= {profile.max_rank}")))
        if profile.batch_must_be_one and 3 <= len(shape) <= 5 and isinstance(shape[0], int) and shape[0] > 1:
            found.append(Violation(vi.name, "graph input", "batch_must_be_one",
                                   ("graph input ", wording.value(vi.name), f" {shape_text(shape)} has batch "
                                    f"{shape[0]}; the target requires batch 1")))
    return found


def symbolic_input_violations(model: onnx.ModelProto, profile: Profile) -> list[Violation]:
    """With `static_shapes`: every graph input dimension that is not a number."""
    if not profile.static_shapes:
        return []
    inits = {t.name for t in model.graph.initializer}
    found = []
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        symbolic = [k for k, d in enumerate(dims) if not d.HasField("dim_value")]
        if symbolic:
            shape = shape_text([d.dim_value if d.HasField("dim_value") else None for d in dims])
            found.append(Violation(vi.name, "graph input", "static_shapes",
                                   ("graph input ", wording.value(vi.name), f" {shape} has symbolic dimension(s) "
                                    f"at axis {', '.join(map(str, symbolic))}; the target needs static shapes "
                                    "(export with fixed sizes, or fix them with onnx.tools.update_model_dims)")))
    return found
