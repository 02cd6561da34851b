"""Does a node, a replacement, or a whole model fit a target profile?

Every check produces `Violation`s: the node, its operator, the rule it breaks
(the rule's key path in the profile, e.g. "operators.ConvTranspose.strides",
"max_rank", "batch_must_be_one") and one readable sentence.

What is checked, per node (nodes that only compute constants are skipped:
converters fold them):
  - the operator's rules: unsupported, or attributes outside the limits; with
    several alternative forms, the node must fit one of them;
  - `max_rank`: every tensor the node produces has rank <= max_rank;
  - `batch_must_be_one`: the node does not create a batch dimension > 1 (an
    output of rank 3 to 5 -- N, C and 1 to 3 spatial axes -- whose dim 0 is
    > 1 and differs from every variable input's dim 0, so the fault is
    reported where it is made, once; higher-rank reshape intermediates have
    no batch axis and are left to `max_rank`).
Per model, also every graph input's rank and batch.  A symbolic batch
dimension is checked as 1 when the profile requires batch 1.  A limit whose
fact is unknown (a symbolic size, a runtime scales input) is not reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import onnx

from ..core.errors import InputError
from ..core.followup import standalone_model
from ..core.graph import GraphView
from .facts import facts_from_attributes, is_constant, node_facts
from .profile import Profile
from .rules import (Violation, batch_violations, graph_input_violations, op_key, op_rule_violations,
                    rank_violations)

SMALL_CONSTANT = 64  # constants a replacement reads are copied into its check model up to this size


# --- one operator, from facts ----------------------------------------------------

def op_violations(profile: Profile, op_type: str, **facts) -> list[str]:
    """Why `profile` would not run `op_type` with these attributes and facts
    (empty: it would).  Keywords are ONNX attribute names (kernel_shape,
    strides, dilations, group, pads, mode, coordinate_transformation_mode,
    nearest_mode, blocksize, perm), which take their ONNX defaults when not
    given, as on a node; plus rank, input_shape, output_shape, factors (per
    spatial axis), steps and group_kind ("standard", "depthwise", "grouped"),
    which are not checked when not given."""
    f = facts_from_attributes(op_type, **facts)
    found = op_rule_violations(profile, f, op_type, op_type, head=op_type)
    found += rank_violations(profile, f, op_type, op_type, head=op_type)
    return [v.message for v in found]


# --- one node ----------------------------------------------------------------------

def check_node(node: onnx.NodeProto, graph: GraphView, profile: Profile,
               constants: frozenset = frozenset()) -> list[Violation]:
    """Every rule of `profile` that `node` breaks (see the module docstring)."""
    outputs = [o for o in node.output if o]
    if outputs and all(is_constant(o, graph, constants) for o in outputs):
        return []  # a constant subgraph: folded before it reaches the target
    label = graph.label(node)
    facts = node_facts(node, graph, constants)
    op = op_key(node)
    found = op_rule_violations(profile, facts, op, label)
    found += rank_violations(profile, facts, op, label)
    found += batch_violations(profile, facts, op, label)
    return found


def node_violations(node: onnx.NodeProto, graph: GraphView, profile: Profile) -> list[str]:
    """The sentences of check_node."""
    return [v.message for v in check_node(node, graph, profile)]


def needs_lowering(node: onnx.NodeProto, graph: GraphView, profile: Optional[Profile]) -> Optional[str]:
    """Why the target cannot run `node` as it is (None: it can).  Without a
    profile every candidate needs lowering."""
    if profile is None:
        return "no target profile: every candidate is lowered"
    found = node_violations(node, graph, profile)
    return "; ".join(found) if found else None


def runs_as_is_reason(node: onnx.NodeProto, graph: GraphView, profile: Profile) -> str:
    """The Skip reason for a candidate the target runs as it is."""
    return (f"{node.op_type} '{graph.label(node)}': target '{profile.name}' runs it as it is "
            f"(no rule of the profile is broken); left unchanged")


# --- a whole model ----------------------------------------------------------------

def check_model(model: onnx.ModelProto, profile: Profile) -> list[Violation]:
    """Every node and graph input of `model` that does not fit `profile`."""
    if profile.batch_must_be_one:
        model = _with_unit_batch(model)
    graph = GraphView(model)
    found = graph_input_violations(graph, profile)
    for node in graph.graph.node:
        found += check_node(node, graph, profile)
    return found


def format_violations(violations: Sequence[Violation], profile: Profile) -> list[str]:
    """Summary lines: a header, then one line per violation."""
    if not violations:
        return [f"target {profile.name}: every node fits"]
    nodes = len({v.node for v in violations})
    lines = [f"target {profile.name}: {nodes} node(s) do not fit ({len(violations)} rule(s) broken)"]
    return lines + [f"  {v.message}  [{v.rule}]" for v in violations]


def target_report(violations: Sequence[Violation], profile: Profile) -> dict:
    """The JSON report's "target" section."""
    return {"profile": profile.name, "origin": profile.origin, "fits": not violations,
            "nodes_not_fitting": len({v.node for v in violations}),
            "violations": [v.to_dict() for v in violations]}


# --- a replacement, and choosing between lowering forms -------------------------

def replacement_violations(replacement, graph: GraphView, profile: Optional[Profile]) -> list[str]:
    """What the target could not run among a Replacement's new nodes.

    The new nodes are checked in a small model of their own (their inputs
    typed as in `graph`, their shapes inferred), so a pass can ask before the
    driver splices anything."""
    return [v.message for v in _replacement_check(replacement, graph, profile)]


def _replacement_check(replacement, graph: GraphView, profile: Optional[Profile]) -> list[Violation]:
    if profile is None:
        return []
    view, constants = _replacement_view(replacement, graph, profile)
    return [v for node in view.graph.node for v in check_node(node, view, profile, constants)]


@dataclass(frozen=True)
class FormChoice:
    """The lowering form a pass picked for a target, and why not the others.

    `replacement` is None only when no form could be built at all (every
    form's builder returned a reason).  `violations` is empty when the chosen
    form fits the target; otherwise it is the form with the fewest problems.
    """

    form: Any
    replacement: Any
    violations: tuple = ()
    rejected: tuple = ()  # ((form, reason), ...) for the forms not chosen

    @property
    def fits(self) -> bool:
        return self.replacement is not None and not self.violations

    def notes(self, profile: Optional[Profile]) -> tuple:
        if profile is None or self.form is None:
            return ()
        target = f"target {profile.name}"
        notes = [f"{target}: form '{f}' not used: {_first(why)}" for f, why in self.rejected]
        if self.violations:
            notes.append(f"{target}: no form fits; '{self.form}' has the fewest problems: {_first(self.violations)}")
        else:
            notes.append(f"{target}: form '{self.form}' fits")
        return tuple(notes)


def pick_form(forms: Sequence, build: Callable[[Any], Any], graph: GraphView,
              profile: Optional[Profile]) -> FormChoice:
    """Try `forms` in order of preference; `build(form)` returns a Replacement,
    or a string saying why that form cannot be built for this node.  Returns
    the first form whose replacement fits `profile` (without a profile: the
    first that builds), else the one breaking the fewest distinct rules (a
    rule broken once per tap is one problem, not many), then the fewest
    violations."""
    tried, best = [], None
    for form in forms:
        result = build(form)
        if isinstance(result, str):
            tried.append((form, result))
            continue
        found = _replacement_check(result, graph, profile)
        problems = tuple(v.message for v in found)
        if not problems:
            return FormChoice(form, result, (), tuple(tried))
        tried.append((form, problems))
        cost = (len({v.rule for v in found}), len(found))
        if best is None or cost < best[3]:
            best = (form, result, problems, cost)
    if best is None:
        return FormChoice(None, None, (), tuple(tried))
    return FormChoice(best[0], best[1], best[2], tuple(t for t in tried if t[0] != best[0]))


def _first(why) -> str:
    if isinstance(why, str):
        return why
    return why[0] + (f" (and {len(why) - 1} more)" if len(why) > 1 else "")


# --- models built for checking -------------------------------------------------------

def _with_unit_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where the batch dimension of every rank >= 3 graph input is 1
    when it is symbolic, and so is every other use of the same symbol."""
    symbols, unnamed = set(), False
    for vi in model.graph.input:
        dims = _dims(vi)
        if len(dims) >= 3 and not dims[0].HasField("dim_value"):
            if dims[0].dim_param:
                symbols.add(dims[0].dim_param)
            else:
                unnamed = True
    if not symbols and not unnamed:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.value_info[:]  # stale symbolic shapes would fight the new ones
    for is_input, values in ((True, out.graph.input), (False, out.graph.output)):
        for vi in values:
            dims = _dims(vi)
            for k, d in enumerate(dims):
                if d.HasField("dim_value"):
                    continue
                if (d.dim_param and d.dim_param in symbols) or \
                        (is_input and unnamed and k == 0 and len(dims) >= 3 and not d.dim_param):
                    d.Clear()
                    d.dim_value = 1
    return out


def _dims(vi: onnx.ValueInfoProto):
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return []
    return vi.type.tensor_type.shape.dim


def _replacement_view(replacement, graph: GraphView, profile: Profile) -> tuple[GraphView, frozenset]:
    """The replacement's nodes as a model of their own, and which of their
    inputs are constants of the original graph (small ones are copied in:
    shape inference may need their values)."""
    inits = {t.name for t in replacement.initializers}
    produced = {o for n in replacement.nodes for o in n.output if o}
    external = {i for n in replacement.nodes for i in n.input if i and i not in produced and i not in inits}
    constants = frozenset(i for i in external if is_constant(i, graph)) | frozenset(inits)
    model = standalone_model(replacement, graph, SMALL_CONSTANT)
    if profile.batch_must_be_one:
        model = _with_unit_batch(model)
    try:
        view = GraphView(model)
    except InputError:
        view = GraphView(model, inferred=model)  # attribute rules still apply
    return view, constants
