"""From a Match to a Replacement: choose the form, build it, judge it.

    lower(p, match, graph, target, passes) -> Lowered | Skip

Without a target the chooser's first option is built.  With one, the
options are built in the chooser's order (variants included) and each
replacement is checked against the target as the whole run will leave it:
a node of the replacement that one of the run's passes would lower for this
target (a Resize's ConvTranspose, lowered by the convtranspose pass) is
lowered here too, in a small model of the replacement's own (`settle`; where
the replacement's output goes into a QuantizeLinear, that model keeps it, so
a QDQ group is lowered as the run will lower it).  The existing nodes
that read the replacement's outputs, or what it reads, are judged with it
where a rule of the target reads a node's producers (rules.PRODUCER_RULES:
a Concat reading a pixel shuffle's Reshape breaks no_reshaped_inputs though
no pass touched it, and so does a Concat reading x beside a 1-D
ConvTranspose that reads x): what the rewrite makes them break, and they
did not before, counts as the replacement's (`judged`).  The
first option that fits is taken (with the profile's `standard_convs_first`,
the first that fits with group-1 Convs only, else the first that fits); if none fits, the one breaking the fewest
distinct rules -- but only when what it breaks is data movement (the
computation then runs on the target) and it leaves fewer nodes to the host
than the matched nodes it replaces (a ConvTranspose on the host traded for a
DepthToSpace on the host is not a gain an accelerator compiler's estimate
would show: the NPU does more and the host count stays).  Otherwise the node
is left as it is (never worse).
Only what the target check needs is ever built.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Optional, Sequence


from . import qdq
from .builder import Builder
from .cost import COMPUTING_OPS, model_cost, total_macs
from .cost_model import onnxruntime_cpu
from .errors import InputError
from .forms import Advice, Option, Ranking, rank
from .graph import GraphView
from .rewrite import Code, Match, Replacement, Skip
from .splice import renamed_nodes
from .standalone import external_inputs, replacement_model, with_quantize_after, with_readers

SETTLE_DEPTH = 3  # a lowering's nodes lowered again at most this deep (resize -> convtranspose -> dilated-conv)


@dataclass
class Lowered:
    option: Option
    replacement: Replacement
    notes: tuple = ()
    fits: bool = True


def build(p, match: Match, option: Option, graph: GraphView) -> Replacement:
    """The replacement `option` builds for `match`."""
    b = Builder(graph, match.node, p.name)
    outputs = option.form.build(match, option.variant, graph, b)
    return b.replacement(outputs)


def ranking(p, match: Match, graph: GraphView, target, passes: Sequence = (), depth: int = 0) -> Ranking:
    """The options for `match`; `passes`, the run's passes (empty: not known)."""
    macs = total_macs(match.nodes, graph, per_item=True) if p.mac_bound is not None else None
    nested = passes and depth < SETTLE_DEPTH
    return rank(p, match, graph, macs, with_variants=target is not None, with_opt_in=target is not None,
                unpadded_first=bool(getattr(target, "separate_conv_padding", False)),
                bias_after_first=bool(getattr(target, "bias_after_shuffle", False)),
                run_passes=[q.name for q in passes] if passes else None, cost_model=cost_model_for(p, target),
                final_cost=partial(final_cost, p, match, graph, target, passes, depth) if nested else None,
                nested_model=onnxruntime_cpu() if nested else None)


def final_cost(p, match: Match, graph: GraphView, target, passes: Sequence, depth: int, option: Option):
    """(Cost at batch 1, lowered again) of `option`'s replacement as the run's
    passes leave it: built, and what they would lower in it lowered (`settle`,
    as the target check does), and whether that changed anything; None where
    no model of it can be made.  The chooser weighs the MAC bound with it
    where a form's output is lowered again (forms._weigh_bound)."""
    view, _ = _view(build(p, match, option, graph), graph, target)
    if view is None:
        return None
    settled = settle(view, target, passes, depth + 1)
    return model_cost((settled or view).model), settled is not None


def cost_model_for(p, target):
    """The cost model that places a pass's `estimated` forms: onnxruntime
    CPU's (the runtime it was calibrated on) without a target, unless the
    pass says its options ask for the plain order (`estimates` False); with
    a target none (its rules and what it runs decide)."""
    if target is not None or not getattr(p, "estimates", True):
        return None
    return onnxruntime_cpu()


def lower(p, match: Match, graph: GraphView, target=None, passes: Sequence = (), depth: int = 0):
    """A Lowered, or a Skip when no form can be built (see the module docstring)."""
    r = ranking(p, match, graph, target, passes, depth)
    if target is None and passes:
        r = _without_left_behind(r, match, graph, [q.name for q in passes])
    if target is None and depth == 0:
        r = replace(r, passed_over=[(name, _with_advice(why, p, match, graph, name, passes))
                                    for name, why in r.passed_over])
    where = f"{match.node.op_type} '{graph.label(match.node)}'"
    if not r.options:
        quantized = qdq.region(match.node, graph)
        if quantized is not None:
            return Skip(qdq.not_kept(where, quantized, r.passed_over), Code.QUANTIZED)
        why = "; ".join(f"{f}: {reason}" for f, reason in r.passed_over) or "the pass has no form for it"
        return Skip(f"{where}: no lowering form applies ({why})", Code.NO_FORM)
    notes = _preference_notes(p, r)
    if target is None:
        chosen = r.options[0]
        advice = advised(p, match, graph, chosen.form.advice(match, graph, True), passes) if depth == 0 else None
        return Lowered(chosen, build(p, match, chosen, graph),
                       notes + _ranking_note(p, chosen, r) + ((advice,) if advice else ()))
    weighed = (f"{r.options[0].form.name} tried first: {r.weighed}",) if r.weighed else ()
    return _lower_for_target(p, match, graph, target, passes, depth, r, notes + weighed, where)


# --- advice: an option named only where following it does what it says ------------------

def advised(p, match: Match, graph: GraphView, advice: Optional[Advice], passes: Sequence) -> Optional[str]:
    """`advice`'s text where it holds, else None.  Without a target (the
    only caller): it holds where the run with its option set builds one of
    its forms, i.e. the chooser's first option then is of one of them.
    With a target no advice holds: every form that applies was tried
    already, in an order no such option changes but for the forms before
    the one that fits (whether a later one would fit is not known)."""
    if advice is None:
        return None
    field = getattr(p.options, "KEYS", {}).get(advice.key)
    if field is None:
        return None
    q = replace(p, options=replace(p.options, **{field: advice.value}))
    r = ranking(q, match, graph, None, passes)
    if passes:
        r = _without_left_behind(r, match, graph, [x.name for x in passes])
    return advice.text if r.options and r.options[0].form.name in advice.forms else None


def _with_advice(why: str, p, match: Match, graph: GraphView, name: str, passes: Sequence) -> str:
    """A passed-over form's reason, with its advice where that holds."""
    form = next((f for f in p.forms if f.name == name), None)
    text = advised(p, match, graph, form.advice(match, graph, False), passes) if form is not None else None
    return f"{why}; {text}" if text else why


def _without_left_behind(r: Ranking, match: Match, graph: GraphView, run_passes: list) -> Ranking:
    """`r` less the options whose replacement the run would leave holding an
    operator it removes (Form.left_behind), each passed over with why."""
    reasons = {}
    for option in r.options:
        if option.form.name not in reasons:
            reasons[option.form.name] = option.form.left_behind(match, graph, run_passes)
    if not any(reasons.values()):
        return r
    kept = [o for o in r.options if reasons[o.form.name] is None]
    passed = [(name, why) for name, why in reasons.items() if why]
    return replace(r, options=kept, passed_over=r.passed_over + passed)


def _lower_for_target(p, match, graph, target, passes, depth, r: Ranking, notes, where):
    tried, best, grouped_fit = [], None, None   # tried: (option, why, score: None where not built)
    head = f"target {target.name}: "
    for option in r.options:
        too_deep = _rank_problem(option, target, match, graph)
        if too_deep:
            tried.append((option, too_deep, None))
            continue
        replacement = build(p, match, option, graph)
        found, settled, unknown = judged(replacement, graph, target, passes, depth, match.nodes)
        if not found:
            groups = _convs_with_groups(settled) if getattr(target, "standard_convs_first", False) else 0
            if not groups:
                chosen = tuple(f"{head}form '{o.label}' not used: {_first(why)}" for o, why, _ in tried)
                return Lowered(option, replacement, notes + chosen + (f"{head}form '{option.label}' {_fits(unknown)}",))
            # standard_convs_first: it fits, but a later option may fit with group-1 Convs only
            if grouped_fit is None:
                grouped_fit = (option, replacement, list(tried), unknown)
            tried.append((option, f"it builds {groups} Conv(s) with groups, and the target takes a form "
                                  "whose Convs are all group 1 first (standard_convs_first)", None))
            continue
        score = (len({v.rule for v in found}), len(found))
        tried.append((option, tuple(v.message for v in found), score))
        if best is None or score < best[0]:
            best = (score, option, replacement, tuple(v.message for v in found), found)
    if grouped_fit is not None:   # no form fits with group-1 Convs only: the first that fits at all
        option, replacement, before, unknown = grouped_fit
        chosen = tuple(f"{head}form '{o.label}' not used: {_first(why)}" for o, why, _ in before)
        return Lowered(option, replacement, notes + chosen + (
            f"{head}form '{option.label}' {_fits(unknown)} (no form fits with group-1 Convs only)",))
    if best is None:
        return Skip(f"{where}: no lowering form can be built for target '{target.name}'"
                    f"{_unbuilt(tried, r.passed_over)}", Code.NO_FORM)
    _, option, replacement, problems, found = best
    computing = sorted({v.op for v in found if v.op in COMPUTING_OPS})
    left = f"no lowering form runs on target '{target.name}', so the node is left as it is; closest first: "
    if computing:   # never worse: compute would still fall back to the host, so the node stays as it is
        closest = (f"'{option.label}' still has {', '.join(computing)} the target does not run "
                   f"({_first(problems)})")
        return Skip(f"{where}: {left}{_considered(closest, option, tried, r.passed_over)}", Code.NO_FORM)
    before, after = _off_target(match, graph, target), len({v.node for v in found})
    if depth == 0 and after >= before:  # never worse: as many host nodes as the original had
        # (a nested lowering is judged by the outer one, on the whole replacement)
        closest = (f"'{option.label}' would leave {after} node(s) the target does not run ({_first(problems)}), "
                   f"not fewer than the {before} it replaces")
        return Skip(f"{where}: {left}{_considered(closest, option, tried, r.passed_over)}", Code.NO_FORM)
    passed = tuple(f"{head}form '{o.label}' not used: {_first(why)}" for o, why, _ in tried if o is not option)
    passed += tuple(f"{head}{clause}" for clause in _not_applicable(r.passed_over, {o.form.name for o, _, _ in tried}))
    return Lowered(option, replacement, notes + passed + (
        f"{head}no form fits; '{option.label}' has the fewest problems, all of them data movement (the "
        f"computation runs on the target): {_first(problems)}",), fits=False)


# --- why no form was used: every form considered, one clause each ------------------

def _per_form(tried) -> list:
    """The tried options, one per form (its closest variant), closest first:
    the built ones by the rules and violations they break, then those not
    built (their rank is above the target's)."""
    built = sorted((t for t in tried if t[2] is not None), key=lambda t: t[2])
    out, named = [], set()
    for option, why, score in built + [t for t in tried if t[2] is None]:
        if option.form.name not in named:
            named.add(option.form.name)
            out.append((option, why))
    return out


def _not_applicable(passed_over, named) -> list:
    """Clauses for the forms that did not apply, forms refused for one reason
    together ("depth, slices, taps: not applicable: it computes in float ...");
    a form name also tried (a quantized form beside its float namesake, which
    the QDQ node passes over) is left to its tried clause, and a name passed
    over twice keeps its own reason over the float one's."""
    reasons = {}
    for name, why in passed_over:
        if name in named:
            continue
        if name not in reasons or reasons[name] == qdq.NOT_KEPT:
            reasons[name] = why
    grouped = {}
    for name, why in reasons.items():
        grouped.setdefault(why, []).append(name)
    grouped = sorted(grouped.items(), key=lambda item: item[0] == qdq.NOT_KEPT)   # the float forms last
    return [f"{', '.join(names)}: not applicable: {why}" for why, names in grouped]


def _considered(closest: str, option: Option, tried, passed_over) -> str:
    """`closest` (the clause of the option nearest to fitting), then one
    clause per other form considered: built but breaking the target's rules
    (its first problem), not built (why), not applicable (its reason)."""
    forms = [(o, why) for o, why in _per_form(tried) if o.form.name != option.form.name]
    clauses = [closest] + [f"'{o.label}': {_first(why)}" for o, why in forms]
    named = {o.form.name for o, _, _ in tried}
    return "; ".join(clauses + _not_applicable(passed_over, named))


def _unbuilt(tried, passed_over) -> str:
    """Why nothing was built for the target: the one reason all tried forms
    share and their names (one label per form), or each form's reason; then
    the forms that did not apply."""
    forms = _per_form(tried)
    named = {o.form.name for o, _, _ in tried}
    others = _not_applicable(passed_over, named)
    reasons = list(dict.fromkeys(_first(why) for _, why in forms))
    if len(reasons) == 1:
        tried_part = "tried " + ", ".join(repr(o.label) for o, _ in forms)
        return f": {reasons[0]} ({'; '.join([tried_part] + others)})"
    return " (" + "; ".join([f"'{o.label}': {_first(why)}" for o, why in forms] + others) + ")"


def _fits(unknown: list) -> str:
    """The verdict on a form that breaks no rule: it fits, or (a size its
    rules read is symbolic) nothing says it does not: "fits" is a claim,
    made only where every fact the rules read is known."""
    if not unknown:
        return "fits"
    return (f"breaks no rule, but the target may or may not run it: {_first(unknown)}; static sizes of the "
            "graph's inputs would decide it")


def _off_target(match: Match, graph: GraphView, target) -> int:
    """How many of the matched nodes the target cannot run as they are."""
    from ..target.check import check_node

    return sum(1 for n in match.nodes if check_node(n, graph, target))


def _rank_problem(option: Option, target, match: Match, graph: GraphView) -> Optional[str]:
    """Why the option cannot fit the target's max_rank, known before building
    (with the form's own word on why it needs that rank, where it has one)."""
    r, limit = option.cost.max_rank, target.max_rank
    if r is not None and limit is not None and r > limit:
        why = option.form.rank_note(match, option.variant, graph)
        return f"it needs rank-{r} tensors, above the target's max_rank {limit}" + (f" ({why})" if why else "")
    return None


def _preference_notes(p, r: Ranking) -> tuple:
    passed = dict(r.passed_over)
    return tuple(f"preferred form {name} cannot express this node: {passed[name]}"
                 for name in p.preferred() if name in passed)


def _ranking_note(p, chosen: Option, r: Ranking) -> tuple:
    """Why this form; with a MAC bound, the MACs of the forms passed over."""
    others = [f"{o.form.name} macs={o.cost.macs}" for o in r.first_per_form()
              if p.mac_bound is not None and o is not chosen and o.cost.macs is not None]
    return ((f"chosen: {chosen.why}",) if chosen.why else ()) + tuple(others)


def _first(why) -> str:
    if isinstance(why, str):
        return why
    # the count goes first: a problem can quote a nested no-form reason, after which
    # "(and N more)" would read as belonging to its last clause
    return why[0] if len(why) == 1 else f"{len(why)} problems, the first: {why[0]}"


# --- judging a replacement against a target ----------------------------------------

def violations(replacement: Replacement, graph: GraphView, target, passes: Sequence = (), depth: int = 0) -> list:
    """What the target cannot run among the replacement's nodes, after the
    run's passes have lowered what they would (see the module docstring)."""
    return judged(replacement, graph, target, passes, depth)[0]


def judged(replacement: Replacement, graph: GraphView, target, passes: Sequence = (), depth: int = 0,
           removed: Optional[Sequence] = None) -> tuple:
    """(violations, the nodes judged, what the rules cannot decide): the
    replacement's nodes as the run's passes leave them (settled), or as built
    where no model of them can be made.  The third, only where nothing is
    broken: per node, why the rules cannot say the target runs it (a size
    they read is symbolic: check.replacement_undecided_in).

    The violations include those the replacement makes an existing node
    break that reads its outputs (`_readers`): a rule whose facts come from a
    node's producers (rules.PRODUCER_RULES) can break at a node no pass
    touches, as a Concat reading a lowered Resize's pixel shuffle Reshape
    breaks no_reshaped_inputs.  So do the existing nodes that read what the
    replacement reads (`_siblings`): no_reshaped_inputs reads the other
    readers of a Concat's or a Slice's input too, and a lowering whose node
    reads that input through a RESHAPE (a 1-D ConvTranspose in place of a
    1-D Resize) makes the Concat break it.  `removed`: the nodes the
    replacement replaces (match.nodes; default, the producers of its
    outputs), which are no such neighbour.  The neighbours are in the
    standalone model (after the replacement's nodes, never lowered by
    `settle`), so a nested lowering judges them too, as the run's pass will
    judge them in the model."""
    from ..target.check import replacement_undecided_in, replacement_violations_in

    removed = _producers(replacement, graph) if removed is None else removed
    readers = _readers(replacement, graph, target)
    siblings = _siblings(replacement, graph, target, readers, removed)
    neighbours = sorted(readers + siblings, key=graph.position)
    view, constants = _view(replacement, graph, target, neighbours)
    if view is None:
        return [], list(replacement.nodes), []
    theirs = frozenset(o for n in neighbours for o in n.output if o)
    left = {}
    if passes and depth < SETTLE_DEPTH:
        settled = settle(view, target, passes, depth + 1, left, theirs)
        if settled is not None:
            view = settled
    reshaped = _reshaped_around(replacement, graph, constants, removed, neighbours)
    own = [n for n in view.graph.node if not theirs.intersection(n.output)]
    found = [_with_why_left(v, left) for v in replacement_violations_in(view, target, constants, reshaped, own)]
    found += _reader_violations(neighbours, readers, replacement, graph, view, target, constants, reshaped)
    unknown = [] if found else replacement_undecided_in(view, target, constants, reshaped, own)
    return found, own, unknown


def _readers(replacement: Replacement, graph: GraphView, target) -> list:
    """The existing nodes of `graph` that read the replacement's outputs and
    that a rule of `target` judges by their producers (check.reads_producers),
    in graph order; none without such a rule (the judgement stays that of
    the replacement's own nodes)."""
    from ..target.check import reads_producers

    if target is None:
        return []
    found = {}
    for name in replacement.outputs:
        for node in graph.consumers(name):
            if id(node) not in found and reads_producers(node, target):
                found[id(node)] = node
    return sorted(found.values(), key=graph.position)


def _producers(replacement: Replacement, graph: GraphView) -> list:
    """The nodes of `graph` that write the replacement's outputs."""
    return [n for n in (graph.producer(o) for o in replacement.outputs) if n is not None]


def _siblings(replacement: Replacement, graph: GraphView, target, readers: Sequence, removed: Sequence) -> list:
    """The existing nodes of `graph` that read a value the replacement reads
    (computed at run time: a constant has no RESHAPE to share) and that a
    rule of `target` judges by the other readers of their inputs, among them
    the replacement's nodes (check.reads_siblings: no_reshaped_inputs), but
    for `readers`, the `removed` nodes (those the replacement replaces) and
    a node writing a value the replacement reads (its model has that value
    as an input), in graph order."""
    from ..target.check import reads_siblings

    if target is None:
        return []
    reads = external_inputs(replacement.nodes)
    skip = {id(n) for n in (*readers, *removed)}
    found = {}
    for name in reads:
        if name in replacement.outputs.values() or graph.is_constant(name):
            continue
        for node in graph.consumers(name):
            if id(node) not in skip and id(node) not in found and reads_siblings(node, target) \
                    and not set(node.output).intersection(reads):
                found[id(node)] = node
    return sorted(found.values(), key=graph.position)


def _reader_violations(neighbours, readers, replacement: Replacement, graph: GraphView, view: GraphView, target,
                       constants: frozenset, reshaped: dict) -> list:
    """What the rewrite makes `neighbours` break (check.neighbour_violations):
    `readers` read the replacement's outputs, the others what it reads.  Said
    of `graph`: each neighbour by its label there (an unnamed node's label
    is its place in the graph, not in `view`), each of the replacement's
    values it quotes by the original output it stands for (Violation.renamed:
    the names are fields of the violation, not searched for in its text).
    The replacement's own node labels stay: its nodes keep them in the graph."""
    from ..target.check import neighbour_violations

    values = {new: original for original, new in replacement.outputs.items()}
    copies = {tuple(n.output): n for n in view.graph.node}
    pairs = [(node, copies[tuple(node.output)]) for node in neighbours if tuple(node.output) in copies]
    nodes = {view.label(copy): graph.label(node) for node, copy in pairs}
    reading = {id(n) for n in readers}
    found = []
    for node, copy in pairs:
        what = "the lowering's output" if id(node) in reading else "an input of the lowering"
        for v in neighbour_violations(node, graph, copy, view, target, constants, reshaped):
            found.append(v.renamed(values, nodes).extended(
                f" (it reads {what}, and did not break this rule before)"))
    return found


def _reshaped_around(replacement: Replacement, graph: GraphView, constants: frozenset, removed: Sequence,
                     readers=()) -> dict:
    """The values the replacement and its `readers` read from `graph` (the
    replacement's outputs aside) that onnx2tf writes or reads through a
    RESHAPE there (facts.reshaped_around), but for the `removed` nodes (a
    matched node inside a chain reads its input no more): its standalone
    model does not show their producers and their readers outside."""
    from ..target.facts import reshaped_around

    theirs = [i for i in external_inputs(readers) if i not in replacement.outputs]
    outside = [i for i in dict.fromkeys(external_inputs(replacement.nodes) + theirs) if i not in constants]
    return reshaped_around(outside, graph, removed)


def _with_why_left(v, left: dict):
    """A violation of a node a pass would lower but leaves, with the pass's
    reason: a Resize's deconv on a map of symbolic size stays a ConvTranspose
    because its size is not static, which the user can fix; "ConvTranspose:
    operator not supported" alone says nothing can be done."""
    why = left.get(v.node)
    if why is None:
        return v
    return v.extended(f"; it stays because {why}")


def _convs_with_groups(nodes) -> int:
    """How many Conv / ConvTranspose nodes have group > 1 (depthwise or grouped)."""
    return sum(1 for n in nodes if n.op_type in ("Conv", "ConvTranspose")
               and any(a.name == "group" and a.i > 1 for a in n.attribute[:]))


def _view(replacement: Replacement, graph: GraphView, target, readers: Sequence = ()):
    """(GraphView of the replacement's standalone model, with `readers`
    after it: standalone.with_readers; the values constant in `graph`)."""
    from ..target.check import unit_batch

    inits = {t.name for t in replacement.initializers}
    model = with_quantize_after(replacement_model(replacement, graph), replacement, graph)
    if readers:
        model = with_readers(model, replacement, graph, readers)
    constants = frozenset(inits) | frozenset(
        i for n in (*replacement.nodes, *readers) for i in n.input[:] if i and i not in inits and graph.is_constant(i))
    if getattr(target, "batch_must_be_one", False):
        model = unit_batch(model)
    try:
        return GraphView(model), constants
    except InputError:
        if readers:   # no model with them: the replacement is judged alone, as it was without readers
            return _view(replacement, graph, target)
        try:
            return GraphView(model, inferred=model), constants  # attribute rules still apply
        except InputError:
            return None, constants


def settle(view: GraphView, target, passes: Sequence, depth: int, left: Optional[dict] = None,
           fixed: frozenset = frozenset()) -> Optional[GraphView]:
    """The standalone replacement with every node the run's passes would
    lower for `target` replaced by its lowering; None when nothing changes.
    `left` gets, by node label, why a pass leaves a node it would lower; a
    node writing a value in `fixed` (an existing reader the model holds for
    the judgement: judged) is kept as it is."""
    nodes, inits, changed, done, kept = [], list(view.graph.initializer), False, set(), set()
    for node in view.graph.node:
        if id(node) in done:
            continue
        lowered = None if fixed.intersection(node.output) else _lower_nested(node, view, target, passes, depth)
        if isinstance(lowered, Skip):
            if left is not None:
                left[view.label(node)] = _without_node_prefix(lowered.reason, node, view)
            lowered = None
        # a match of several nodes (a QDQ group: the node and the QuantizeLinear after it) is
        # lowered only when none of them was kept already
        if lowered is None or any(id(n) in kept for n in lowered[0].nodes):
            nodes.append(node)
            kept.add(id(node))
            continue
        match, result = lowered
        done.update(id(n) for n in match.nodes)
        nodes.extend(renamed_nodes(result.replacement))
        inits.extend(result.replacement.initializers)
        changed = True
    if not changed:
        return None
    model = view.model.__class__()
    model.CopyFrom(view.model)
    del model.graph.node[:], model.graph.initializer[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    try:
        return GraphView(model)
    except InputError:
        return None


def _lower_nested(node, view: GraphView, target, passes, depth):
    from ..target.check import needs_lowering

    skipped = None
    for p in passes:
        if getattr(p, "optimization", False):   # never with a target (driver._plan_all)
            continue
        if not p.candidate(node, view) or needs_lowering(node, view, target) is None:
            continue
        m = p.match(node, view)
        if isinstance(m, Skip):
            skipped = skipped or m    # what the run would say of this node, if no pass lowers it
            continue
        result = lower(p, m, view, target, passes, depth)
        if isinstance(result, Lowered):
            return m, result
        skipped = skipped or result   # no form for the target: why (its fix, where it has one) goes along
    return skipped


def _without_node_prefix(reason: str, node, view: GraphView) -> str:
    """A pass's reason less its leading "<op> '<node>': ", which the violation states."""
    prefix = f"{node.op_type} '{view.label(node)}': "
    return reason[len(prefix):] if reason.startswith(prefix) else reason
