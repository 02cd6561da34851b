"""Lowering forms as objects, and the one chooser that ranks them.

A form is one way to lower a matched node (for ConvTranspose: single-conv,
phase-convs, border-split, bias-only).  It answers four questions:

    applies(match, graph)  -> None, or why it cannot express this node
    variants(match, graph) -> the ways to emit it, the default first (a pixel
                              shuffle layout, Pad nodes instead of Conv pads,
                              ...): a target that rejects one may take another
    cost(match, variant, graph) -> Cost: MACs, bytes moved by data-movement
                              ops, node count, largest tensor rank
    build(match, variant, graph, b) -> {original output: new value}

and optionally `favoured(match, graph)`: why it should go first for this
node whatever the list order (tiny phase images convolve inefficiently, so
the dilated taps form is favoured on them).  `opt_in` forms are used only
when the user asks for them, a target needs a lowering, or they are
favoured (a favour measured on onnxruntime CPU, `favour_needs_cost_model`,
holds only without a target).

`rank` orders a pass's forms for one match, by these keys in turn:

    0. `first` forms (identity, broadcast: exact, no work) before anything
    1. the user's preference (the pass's `preferred()`, in that order)
    2. opt-in forms last
    3. favoured forms first (given a cost model, a `favour_weighed` form's
       favour goes where it is estimated more than OVERRULE times slower
       than the form that comes first without it: _weigh_favour)
    4. with a MAC bound: forms within bound x the node's MACs first; the
       others by fewest MACs.  Where what the forms build is lowered again
       by the run's passes (`Form.nested`: a ConvTranspose's dilated phase
       Convs), the form the bound puts first goes after the form that would
       come first without the bound when the final graphs (both settled by
       the driver) are estimated slower, and the bound is set aside for
       the node: _weigh_bound
    5. the pass's list order (simplest first), except that, given a cost
       model (core/cost_model.py: the driver passes onnxruntime CPU's when
       there is no target), the forms that say the model decides their
       place for this node (`estimated`) take the place of the first of
       them, by the shortest estimated run time (with a MAC bound, only
       those within it: key 4 has placed the others).  An opt-in form that says
       so is ranked then too, as if asked for.

`estimated` is for choices no rule with a measured basis makes (a linear
Resize: deconv or matmul); forms a rule orders (a favoured form, the MAC
bound) keep their rule.

The driver takes the first option; with a target it builds them in this
order, variants included, and takes the first whose nodes the target runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any, ClassVar, Mapping, Optional, Sequence

from . import qdq


@dataclass(frozen=True)
class Cost:
    """What a replacement costs.  Every form works out all its figures
    before building anything, exactly as `convrewrite.core.cost` measures
    the built replacement at batch 1 (MACs and bytes per batch item); None
    only where a figure cannot be known (a symbolic size).  (A run-time bias
    that the dilated `depth` and ConvTranspose `border-split` forms move once
    per batch counts per item: at a static batch N their bytes are (N - 1)
    times that bias over the measurement; no choice turns on it.)"""

    macs: Optional[int] = None         # multiply-accumulates at batch 1
    moved_bytes: Optional[int] = None  # bytes read + written by data-movement ops
    nodes: Optional[int] = None
    max_rank: Optional[int] = None     # the largest rank of a tensor it creates
    # the part of `macs` in convolutions with few input channels per group
    # (depthwise and the like: memory-bound, several times slower per MAC)
    grouped_macs: Optional[int] = None
    # bytes the GEMM-based nodes stream besides their weights: a Conv's im2col
    # matrix, MACs x item size / output channels per group (core/cost.py)
    streamed_bytes: Optional[int] = None


@dataclass(frozen=True)
class Variant:
    """One way to emit a form; `label` is "" for the default.  `pads_convs`:
    its Convs pad their own input beyond VALID/SAME (a target whose
    toolchain makes that a separate PAD op takes the form's other variants
    first: Profile.separate_conv_padding)."""

    label: str = ""
    pads_convs: bool = False


DEFAULT = Variant()


@dataclass(frozen=True)
class Advice:
    """An option of the pass that has the node lowered otherwise: `key` and
    `value` as optimize's `options` take them (the command line's
    --key-with-dashes value), `forms` the forms whose being built makes the
    advice true, `says` what it then does ("lowers it").  A form gives one
    (Form.advice); the chooser shows it only where it holds
    (lowering.advised)."""

    key: str
    value: str
    forms: tuple
    says: str

    @property
    def flag(self) -> str:
        return f"--{self.key.replace('_', '-')} {self.value}"

    @property
    def text(self) -> str:
        return f"{self.flag} {self.says}"


class Form:
    """Base class of a lowering form (see the module docstring)."""

    name: ClassVar[str]
    opt_in: ClassVar[bool] = False
    first: ClassVar[bool] = False     # exact and free where it applies (identity): ahead of any preference
    # Quantized (QDQ) nodes (core/qdq.py): only forms that keep them quantized
    # (pure data movement, or forms building QDQ groups) may lower them;
    # `quantized_only` forms are for quantized nodes alone.
    keeps_quantized: ClassVar[bool] = False
    quantized_only: ClassVar[bool] = False
    # A pass that must lower what this form builds, in the same run, for the
    # form to be worth building (a quantized Resize's QDQ ConvTranspose: only
    # the convtranspose pass makes it integer Convs); without it the form is
    # passed over.
    lowered_by: ClassVar[Optional[str]] = None
    # Its `favoured` rule is a heuristic the cost model may overrule (rank:
    # _weigh_favour): given one, the favour goes where the estimate says
    # the form is more than OVERRULE times slower than the form that would
    # come first without it.
    favour_weighed: ClassVar[bool] = False
    # Its `favoured` rule was measured on onnxruntime's CPU provider: it holds
    # only where the chooser has that runtime's cost model (no target).  With
    # a target the form keeps its list place (an opt-in one: after the others).
    favour_needs_cost_model: ClassVar[bool] = False

    def applies(self, match, graph) -> Optional[str]:
        return None

    def favoured(self, match, graph) -> Optional[str]:
        return None

    def advice(self, match, graph, built: bool) -> Optional[Advice]:
        """An option that has the node lowered otherwise, for the user:
        where this form does not apply (`built` False), one that lowers it
        (appended to its reason); where it is built, one that avoids what
        it costs (a note).  Shown only where following it builds one of the Advice's
        forms: without a target, the chooser's first option under that
        option; never with a target, which tries every form that applies
        (lowering.advised)."""
        return None

    def nested(self, match, graph) -> Optional[str]:
        """What of this form's output another pass of the run may lower
        again (a ConvTranspose's phase Convs that keep a dilation: the
        dilated-conv pass), or None.  Where a form says so, the chooser
        weighs the MAC bound's choice on the final graphs (_weigh_bound)."""
        return None

    def left_behind(self, match, graph, run_passes: Sequence[str]) -> Optional[str]:
        """Without a target: why the run's passes would leave what this form
        builds in the model as an operator they exist to remove (a Resize's
        ConvTranspose the convtranspose pass cannot lower), or None.  Such a
        form trades the node for another the run lowers, and is passed over
        (lowering.lower); with a target, the target check judges the result."""
        return None

    def estimated(self, match, graph) -> bool:
        """Whether a cost model, when the chooser has one, places this form
        for this node among the others that say so (rank: key 5)."""
        return False

    def variants(self, match, graph) -> Sequence[Any]:
        return (DEFAULT,)

    def rank_note(self, match, variant, graph) -> Optional[str]:
        """Why this variant needs its largest rank here, where the user can
        change that (a quantized pixel shuffle below opset 11: rank 6, where
        DepthToSpace would be 4), or None; shown where a target's max_rank
        refuses the variant (core/lowering.py)."""
        return None

    def cost(self, match, variant, graph) -> Cost:
        raise NotImplementedError

    def build(self, match, variant, graph, b) -> Mapping[str, str]:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Option:
    """A form and one of its variants: one way to rewrite.  Its cost is
    worked out when first asked for (the chooser needs it only under a MAC
    bound, the target check only for the options it tries)."""

    form: Form
    variant: Any
    why: str = ""             # why it ranks where it does, when a rule decided
    pricing: Any = field(default=None, repr=False)   # () -> Cost

    @cached_property
    def cost(self) -> Cost:
        return self.pricing()

    @property
    def label(self) -> str:
        return self.form.name + (f", {self.variant.label}" if self.variant.label else "")


@dataclass
class Ranking:
    """The options for one match, best first, and the forms that do not apply."""

    options: list = field(default_factory=list)
    passed_over: list = field(default_factory=list)   # (form name, reason)
    weighed: str = ""         # why the MAC bound's choice went after another (_weigh_bound), or ""

    def first_per_form(self) -> list:
        """The default variant of each ranked form."""
        seen, out = set(), []
        for o in self.options:
            if o.form.name not in seen:
                seen.add(o.form.name)
                out.append(o)
        return out


def rank(p, match, graph, node_macs: Optional[int], with_variants: bool, with_opt_in: bool,
         unpadded_first: bool = False, run_passes: Optional[Sequence[str]] = None,
         bias_after_first: bool = False, cost_model=None, final_cost=None, nested_model=None) -> Ranking:
    """Order `p.forms` for `match` (see the module docstring); with
    `unpadded_first`, each form's variants that pad their own Convs last;
    with `bias_after_first`, its variants that add the bias after the pixel
    shuffle (`bias_after`: Profile.bias_after_shuffle) first.
    `run_passes`: the names of the run's passes (None: not known), which a
    form's `lowered_by` must be among.  `cost_model`: a
    core.cost_model.CostModel that places the `estimated` forms, or None.
    `final_cost`: option -> (the Cost of its replacement as the run's passes
    leave it, whether they lower anything in it), built and settled by the
    driver (None: no model of it could be made), and `nested_model` the
    CostModel that weighs those (_weigh_bound); None: not weighed."""
    preferred = list(p.preferred_for(match) if hasattr(p, "preferred_for") else p.preferred())
    ranking = Ranking()
    scored = []
    node = getattr(match, "node", None)
    quantized = node is not None and graph is not None and qdq.region(node, graph) is not None
    for index, form in enumerate(p.forms):
        if form.quantized_only and not quantized:
            continue
        reason = qdq.NOT_KEPT if quantized and not form.keeps_quantized else form.applies(match, graph)
        if reason is None and form.lowered_by and run_passes is not None and form.lowered_by not in run_passes:
            reason = (f"what it builds needs the {form.lowered_by} pass in the same run, which is not among "
                      f"this run's passes ({', '.join(run_passes)})")
        if reason is not None:
            ranking.passed_over.append((form.name, reason))
            continue
        asked = form.name in preferred
        estimated = cost_model is not None and form.estimated(match, graph)
        favoured = None if form.favour_needs_cost_model and cost_model is None else form.favoured(match, graph)
        if form.opt_in and not asked and not with_opt_in and not estimated and not favoured:
            continue
        variants = list(form.variants(match, graph))[:None if with_variants else 1]
        if unpadded_first:
            variants.sort(key=lambda v: getattr(v, "pads_convs", False))
        if bias_after_first:
            variants.sort(key=lambda v: not getattr(v, "bias_after", False))
        pricing = [partial(form.cost, match, v, graph) for v in variants]
        first = pricing[0]() if p.mac_bound is not None or estimated else None   # figures decide only here
        macs = first.macs if first is not None else None
        over = _over_bound(macs, node_macs, p.mac_bound)
        seconds = cost_model.seconds(first) if estimated and not over else None   # the bound comes first
        rules = (not form.first, preferred.index(form.name) if asked else len(preferred),
                 form.opt_in and not asked and not estimated and not favoured, favoured is None, False, over,
                 (macs or 0) if over else 0)
        why = ("asked for" if asked else favoured or _list_reason(p, over))
        options = [Option(form, v, why, f) for v, f in zip(variants, pricing)]
        if first is not None:
            options[0].__dict__["cost"] = first   # already worked out: keep it
        scored.append(_Scored(rules, index, index, options, seconds, ruled=bool(asked or favoured or over),
                              only_estimated=form.opt_in and not asked and not with_opt_in and not favoured,
                              weighed=bool(favoured and not asked and form.favour_weighed)))
    scored = _weigh_favour(_place_by_estimate(scored, cost_model), cost_model)
    scored, ranking.weighed = _weigh_bound(p, match, graph, scored, final_cost, nested_model)
    for s in sorted(scored, key=_Scored.key):
        ranking.options += s.options
    return ranking


@dataclass
class _Scored:
    """One form's options and what orders them: keys 0-4 of the module
    docstring (`rules`), then its `place` in the list (the pass's order; an
    estimated form takes the place of the first estimated one), then the
    estimate, then the list order."""

    rules: tuple
    place: int
    index: int                  # its position in the pass's list
    options: list
    seconds: Optional[float]    # the estimate, for an `estimated` form given a cost model
    ruled: bool                 # a rule placed it (asked for, favoured, the MAC bound)
    only_estimated: bool        # an opt-in form ranked only because the model weighs it
    weighed: bool = False       # favoured by a rule the cost model may overrule (Form.favour_weighed)

    FAVOURED = 3                # the slot of `rules` that is False for a favoured form
    OUTWEIGHED = 4              # the slot that is True for a form the MAC bound placed, outweighed (_weigh_bound)
    OVER = 5                    # the slot that is True for a form over the MAC bound (its MACs follow)

    def key(self) -> tuple:
        return self.rules + (self.place, self.seconds is None, self.seconds or 0.0, self.index)

    def estimate(self, cost_model) -> Optional[float]:
        return cost_model.seconds(self.options[0].cost)


# How much slower than the form that would come first without its favour the
# cost model must estimate a favour_weighed form before the favour goes.
# Measured on the dilated-Conv grid of benchmarks/calibrate_cost.py (123
# cases, 4..256 channels): slowdown of the picks against the fastest form,
# geometric mean, 1.28x by the rules alone, 1.093x / 1.085x / 1.087x /
# 1.107x overruling at 1.0 / 1.25 / 1.5 / 2.0; from 1.5 no Conv of 32 or
# more channels changes form (docs/cost_model.md).
OVERRULE = 1.5


def _weigh_favour(scored: list, cost_model) -> list:
    """Drop the favour of a `weighed` form (a favoured rule's heuristic)
    where the cost model estimates it more than OVERRULE times slower than
    the form that comes first without it: a rule that says "small phase
    images convolve inefficiently" does not see that nine tiny Convs cost
    more in per-node overhead than a phase split costs in copies."""
    if cost_model is None:
        return scored
    for s in [s for s in scored if s.weighed]:
        ranked = sorted(scored, key=_Scored.key)
        if ranked[0] is not s or len(ranked) < 2:
            continue            # its favour decides nothing (the user asked for another form)
        unfavoured = _with_slots(s.rules, _Scored.FAVOURED, True)
        rival = ranked[1]
        if unfavoured + s.key()[len(s.rules):] < rival.key():
            continue            # first even without its favour
        mine, theirs = s.estimate(cost_model), rival.estimate(cost_model)
        if mine is None or theirs is None or mine <= OVERRULE * theirs:
            continue
        s.rules, s.ruled = unfavoured, False
        verdict = (f"overruled: estimated {mine * 1e6:.3g} us on {cost_model.name}, more than {OVERRULE}x "
                   f"{rival.options[0].form.name}'s {theirs * 1e6:.3g} us")
        for o in s.options:
            object.__setattr__(o, "why", f"{o.why}, but {verdict}")
        for o in rival.options:
            object.__setattr__(o, "why", f"{o.why}; {s.options[0].form.name} was favoured, {verdict}")
    return scored


def _weigh_bound(p, match, graph, scored: list, final_cost, model) -> tuple:
    """Put the form the MAC bound placed first after the form that would
    come first without the bound, where what they build is lowered again
    (`Form.nested`) and the final graph of the bound's form is estimated
    slower than the other's.  The bound is then set aside for this node:
    the forms go in the order without it, the outweighed one last (the
    bound also orders the forms over it by their MACs, which would put a
    third form, never weighed, first: a stride-2 ConvTranspose's
    phase-convs, whose dilated phase Convs are lowered again as well).

    The bound trades nodes for MACs on what a form builds: border-split cuts
    a ConvTranspose's output into tiles so that no tap multiplies padding.
    When those tiles are dilated Convs, the dilated-conv pass lowers each one
    again, and on a small map (phase images of a few outputs) into its taps:
    one ConvTranspose k=4, dilation 3 on a 4x4x4 map became 417 nodes, then
    2,425.  No MAC saving pays for that, so the choice is made on the final
    graphs: measured on onnxruntime CPU (2-D, k=4 / dilation 3 and k=3 /
    dilation 2, maps 4..24, 8 and 32 channels: 24 cases), the dense form
    lowered by dilated-conv ran 1.3x to 6.5x faster than border-split in
    every case, and the estimate ranked them so in every case (by 1.06x
    to 13x), hence no margin (docs/convtranspose.md, *Nested lowering*).
    The figures priced are nodes and MACs, of which a target's accelerator
    pays for the nodes no less (per-op set-up) and for the MACs less, so
    the estimate's verdict holds there too: the driver weighs with the
    onnxruntime CPU model with or without a target.  A form the user asked
    for, or one favoured, keeps its place.  Returns (scored, the verdict or "")."""
    if final_cost is None or model is None or p.mac_bound is None or len(scored) < 2:
        return scored, ""
    first = min(scored, key=_Scored.key)
    if first.ruled:
        return scored, ""          # asked for, favoured, or over the bound itself: no rule of the bound's to weigh
    rival = min((s for s in scored if s is not first), key=_unbounded)
    if _unbounded(first) < _unbounded(rival):
        return scored, ""          # first even without the bound: it decides nothing
    mine_form, theirs_form = first.options[0].form, rival.options[0].form
    why_nested = mine_form.nested(match, graph) or theirs_form.nested(match, graph)
    if why_nested is None:
        return scored, ""          # nothing is lowered again: the bound's rule stands
    finals = final_cost(first.options[0]), final_cost(rival.options[0])
    if None in finals or not any(again for _, again in finals):
        return scored, ""          # not a model, or neither is lowered again (the pass runs alone): the bound stands
    (mine, _), (theirs, _) = finals
    a, b = model.seconds(mine), model.seconds(theirs)
    if a is None or b is None or a <= b:
        return scored, ""
    over_why = _list_reason(p, True)
    for s in scored:
        s.rules = _without_bound(s.rules)
        for o in s.options if s is not first and s is not rival else ():
            if o.why == over_why:
                object.__setattr__(o, "why", f"the pass's order, the MAC bound set aside ({mine_form.name} outweighed)")
    first.rules = _with_slots(first.rules, _Scored.OUTWEIGHED, True)
    verdict = (f"{mine_form.name} is within {p.mac_bound}x the original's MACs, but {why_nested}: "
               f"{mine.nodes} nodes in the end, estimated {a * 1e6:.3g} us on {model.name}, slower than "
               f"{theirs_form.name}'s {b * 1e6:.3g} us ({theirs.nodes} nodes)")
    for o in first.options:
        object.__setattr__(o, "why", f"{o.why}, but outweighed by what is lowered again")
    for o in rival.options:
        object.__setattr__(o, "why", f"the final graph estimated faster: {verdict}")
    return scored, verdict


def _unbounded(s: "_Scored") -> tuple:
    """s's key as if there were no MAC bound (its slots cleared)."""
    return _without_bound(s.rules) + s.key()[len(s.rules):]


def _without_bound(rules: tuple) -> tuple:
    """`rules` with the MAC bound's slots cleared (not over it, no MACs to order by)."""
    return _with_slots(rules, _Scored.OVER, False, 0)


def _with_slots(rules: tuple, at: int, *values) -> tuple:
    """`rules` with the slots from `at` on set to `values`."""
    return rules[:at] + values + rules[at + len(values):]


def _place_by_estimate(scored: list, cost_model) -> list:
    """The estimated forms share the list place of the first of them, and
    the shortest estimated time goes first there.  With fewer than two of
    them there is nothing to weigh: an opt-in form that came in only to be
    weighed (or that has no estimate: a size is symbolic) goes again."""
    timed = [s for s in scored if s.seconds is not None]
    if len(timed) < 2:
        timed = []
    scored = [s for s in scored if not s.only_estimated or s in timed]
    if not timed:
        return scored
    place = min(s.place for s in timed)
    times = ", ".join(f"{s.options[0].form.name} {s.seconds * 1e6:.3g} us" for s in timed)
    fastest = min(timed, key=lambda s: s.seconds)
    for s in timed:
        s.place = place
        if not s.ruled:
            why = (f"the shortest time estimated for {cost_model.name} ({times})" if s is fastest else
                   f"estimated slower than {fastest.options[0].form.name} on {cost_model.name} ({times})")
            for o in s.options:
                object.__setattr__(o, "why", why)
    return scored


def _list_reason(p, over: bool) -> str:
    """Why a form ranks where it does when no preference decided."""
    if p.mac_bound is None:
        return "the first form in the pass's order that applies"
    if over:
        return f"no form is within {p.mac_bound}x the original's MACs: the fewest MACs"
    return f"the simplest form within {p.mac_bound}x the original's MACs"


def _over_bound(macs: Optional[int], node_macs: Optional[int], bound: Optional[float]) -> bool:
    if bound is None or macs is None or node_macs is None:
        return False
    return macs > bound * node_macs


def form_names(p) -> tuple[str, ...]:
    """The names of a pass's forms (the CLI's choices come from these)."""
    return tuple(f.name for f in p.forms)
