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
Per model, also every graph input's rank and batch, and with `static_shapes`
every symbolic dimension of a graph input.  A symbolic batch
dimension is checked as 1 when the profile requires batch 1.  A limit whose
fact is unknown (a symbolic size, a runtime scales input) is not reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Optional, Sequence

import onnx

from ..core import qdq
from ..core.graph import GraphView, attributes, nested_nodes
from .facts import RESIZE_OPS, OpFacts, facts_from_attributes, is_constant, node_facts
from .profile import Profile
from .rules import (PRODUCER_RULES, SIBLING_RULES, Violation, batch_violations, graph_input_violations, node_head,
                    op_key, op_rule_violations, rank_violations, symbolic_input_violations, undecided)



# --- one operator, from facts ----------------------------------------------------

def op_violations(profile: Profile, op_type: str, **facts) -> list[str]:
    """Why `profile` would not run `op_type` with these attributes and facts
    (empty: it would).  Keywords are ONNX attribute names (kernel_shape,
    strides, dilations, group, pads, mode, coordinate_transformation_mode,
    nearest_mode, blocksize, perm), which take their ONNX defaults when not
    given, as on a node; plus rank, input_shape, output_shape, factors (per
    spatial axis), steps, axes (a Slice's) and group_kind ("standard",
    "depthwise", "grouped"), which are not checked when not given."""
    f = facts_from_attributes(op_type, **facts)
    found = op_rule_violations(profile, f, op_type, op_type, head=op_type)
    found += rank_violations(profile, f, op_type, op_type, head=op_type)
    return [v.message for v in found]


# --- one node ----------------------------------------------------------------------

def check_node(node: onnx.NodeProto, graph: GraphView, profile: Profile,
               constants: frozenset = frozenset(), reshaped: Optional[dict] = None) -> list[Violation]:
    """Every rule of `profile` that `node` breaks (see the module docstring;
    `constants`, `reshaped`: facts.node_facts)."""
    outputs = [o for o in node.output if o]
    if outputs and all(is_constant(o, graph, constants) for o in outputs):
        return []  # a constant subgraph: folded before it reaches the target
    label = graph.label(node)
    facts = node_facts(node, graph, constants, reshaped)
    op = op_key(node)
    found = op_rule_violations(profile, facts, op, label)
    found += rank_violations(profile, facts, op, label)
    found += batch_violations(profile, facts, op, label)
    if profile.int8_only:
        found += weight_type_violations(node, graph, label)
    return found


def node_violations(node: onnx.NodeProto, graph: GraphView, profile: Profile) -> list[str]:
    """The sentences of check_node."""
    return [v.message for v in check_node(node, graph, profile)]


def needs_lowering(node: onnx.NodeProto, graph: GraphView, profile: Optional[Profile]) -> Optional[str]:
    """Why `node` should not reach the target as it is (None: it should):
    the rules it breaks, or the dense kernel the target would compute for
    its dilation (`dense_dilation_cost`).  Without a profile every candidate
    needs lowering."""
    if profile is None:
        return "no target profile: every candidate is lowered"
    found = node_violations(node, graph, profile)
    dense = dense_dilation_cost(node, graph, profile)
    found += [dense] if dense else []
    return "; ".join(found) if found else None


def dense_dilation_cost(node: onnx.NodeProto, graph: GraphView, profile: Profile) -> Optional[str]:
    """Why a dilated Conv the target runs is still worth lowering (None: it
    is not): the target computes it as a dense kernel (the profile's
    `dense_dilation`) whose MACs per output value exceed those of the true
    taps by at least the profile's `min_macs_saved_per_output`."""
    dense = _dense_kernel(node, graph, profile)
    if dense is None or _too_cheap(dense, profile.dense_dilation):
        return None
    return (f"Conv '{graph.label(node)}': not as a dilated Conv: target '{profile.name}' {dense.text}: "
            f"{dense.saved} more, and the profile lowers from {profile.dense_dilation.min_macs_saved_per_output}"
            + _ratio_text(profile.dense_dilation))


def undecided_reason(node: onnx.NodeProto, graph: GraphView, profile: Profile) -> Optional[str]:
    """Why the target's rules cannot say it runs `node` as it is (None:
    they can, or `node` breaks one; `needs_lowering` says which): a fact a
    rule reads is not known before run time (rules.undecided).  Asked of a
    node `needs_lowering` lets through: "runs it as it is" is a claim, and
    a rule passed unread is no ground for it."""
    unknown = undecided(profile, node_facts(node, graph), op_key(node))
    if not unknown:
        return None
    return (f"{node.op_type} '{graph.label(node)}': target '{profile.name}' may or may not run it as it is: "
            f"{'; '.join(unknown)}; left unchanged (no pass lowers a node whose sizes are not known): "
            f"{_undecided_fix(node, graph)}")


def _undecided_fix(node: onnx.NodeProto, graph: GraphView) -> str:
    """What makes the unknown facts known: static sizes of the data input,
    else (its size is known) a Resize's constant scales or sizes, or a Conv's
    or ConvTranspose's weight and bias as initializers (given at run time,
    their shapes may be symbolic)."""
    if _sizes_symbolic(node, graph):
        return ("give the graph's inputs static shapes (export with fixed sizes, or fix them with "
                "onnx.tools.update_model_dims)")
    if node.op_type in RESIZE_OPS:
        return f"compute the {node.op_type}'s scales or sizes from constants"
    return f"make the {node.op_type}'s weight and bias initializers (of static shape)"


def _sizes_symbolic(node: onnx.NodeProto, graph: GraphView) -> bool:
    """Whether a spatial size of the node's data input is symbolic (else
    what is unknown comes from another input: a Resize's scales or sizes
    computed at run time, a weight given at run time)."""
    x = graph.shape(node.input[0]) if node.input else None
    return x is None or not all(isinstance(d, int) for d in x[2:])


def runs_as_is_reason(node: onnx.NodeProto, graph: GraphView, profile: Profile) -> str:
    """The Skip reason for a candidate the target runs as it is."""
    reason = (f"{node.op_type} '{graph.label(node)}': target '{profile.name}' runs it as it is "
              f"(no rule of the profile is broken)")
    dense = _dense_kernel(node, graph, profile)
    if dense is not None and dense.saved > 0:
        reason += (f"; it {dense.text}: {dense.saved} more, below what the profile lowers from "
                   f"({profile.dense_dilation.min_macs_saved_per_output} more"
                   + _ratio_text(profile.dense_dilation) + ")")
    return reason + "; left unchanged"


def _too_cheap(dense: "_DenseKernel", rule) -> bool:
    """Below the profile's threshold in MACs saved or in dense-to-true ratio."""
    return dense.saved < rule.min_macs_saved_per_output or dense.ratio < rule.min_dense_ratio


def _ratio_text(rule) -> str:
    return f" at {rule.min_dense_ratio:g}x or more" if rule.min_dense_ratio > 1 else ""


@dataclass(frozen=True)
class _DenseKernel:
    """A dilated Conv as a dense_dilation target computes it."""

    text: str      # what the target does, in words ("computes dilation 6x6 as ...")
    saved: int     # MACs per output value the true taps save
    ratio: float   # dense MACs / true MACs


def _dense_kernel(node: onnx.NodeProto, graph: GraphView, profile: Profile) -> Optional[_DenseKernel]:
    """Per output value a Conv multiplies (input channels / group) * taps; the
    dense kernel's taps are `DenseDilation.dense_kernel`'s.  None without
    dense_dilation, for other operators, and when the input channels are
    not known."""
    dense = profile.dense_dilation
    if dense is None or node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
        return None
    f = node_facts(node, graph)
    x = graph.shape(node.input[0])
    if f.kernel is None or f.dilations is None or not f.group or x is None or not isinstance(x[1], int):
        return None
    computed = dense.dense_kernel(f.kernel, f.dilations)
    per_tap = x[1] // f.group
    true_macs, dense_macs = prod(f.kernel) * per_tap, prod(computed) * per_tap
    native = tuple(dense.native_factor(d) for d in f.dilations)
    text = (f"computes dilation {_x(f.dilations)} as a dense {_x(computed)} kernel (zeros "
            f"included, hardware dilation {_x(native)}), {dense_macs} MACs per output value against the {true_macs} "
            f"of its {_x(f.kernel)} true taps ({dense_macs / true_macs:.1f}x)")
    return _DenseKernel(text, dense_macs - true_macs, dense_macs / true_macs)


def _x(values) -> str:
    return "x".join(str(v) for v in values)


# --- a whole model ----------------------------------------------------------------

def check_model(model: onnx.ModelProto, profile: Profile) -> list[Violation]:
    """Every node and graph input of `model` that does not fit `profile`."""
    symbolic = symbolic_input_violations(model, profile)
    if profile.batch_must_be_one:
        model = unit_batch(model)
    graph = GraphView(model)
    found = symbolic + graph_input_violations(graph, profile)
    for node in graph.graph.node:
        found += check_node(node, graph, profile)
    for scope, node in nested_nodes(model):
        found += nested_node_violations(scope, node, profile)
    if profile.int8_only:
        found += float_compute_violations(graph)
    return found


def nested_node_violations(scope: str, node: onnx.NodeProto, profile: Profile) -> list[Violation]:
    """A node in a subgraph or a model-local function (`scope`), whose shapes
    the main graph's view does not hold: judged by its operator and its
    attributes alone, so what the profile rules out whatever the shapes is
    reported (an unsupported operator, a stride or dilation it does not run)."""
    label = f"{scope}/{node.name or node.op_type}"
    facts = OpFacts(node.op_type)
    if node.domain in ("", "ai.onnx"):
        try:
            a = {k: v for k, v in attributes(node).items() if k not in _SHAPE_FACTS}
            facts = facts_from_attributes(node.op_type, **a)
        except Exception:  # an attribute a function binds at the call, or one of another kind: the operator alone
            facts = OpFacts(node.op_type)
    return op_rule_violations(profile, facts, op_key(node), label)


# facts_from_attributes' own keywords, which come from shapes, not attributes
_SHAPE_FACTS = frozenset({"rank", "input_shape", "output_shape", "factors", "steps", "group_kind"})


COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "ConvInteger", "MatMulInteger")


def float_compute_violations(graph: GraphView) -> list[Violation]:
    """On an int8-only target, the computing nodes of a quantized (QDQ) model
    that compute in float: not read through DequantizeLinear and written
    through QuantizeLinear, so no converter or fusion makes them int8.  A
    model without any QuantizeLinear is float throughout and is quantized by
    the converter (onnx2tf -oiqt, a vendor tool): nothing is reported then."""
    if not any(n.op_type == "QuantizeLinear" for n in graph.graph.node):
        return []
    found = []
    for node in graph.graph.node:
        if node.op_type in COMPUTE_OPS and node.domain in ("", "ai.onnx") and not qdq.in_group(node, graph):
            label = graph.label(node)
            found.append(Violation(label, node.op_type, "int8_only",
                                   (node_head(node.op_type, label), ": computes in float in a quantized model; "
                                    "the target computes int8 only (it would run on the host CPU)")))
    return found


def weight_type_violations(node: onnx.NodeProto, graph: GraphView, label: str) -> list[Violation]:
    """On an int8-only target: a Conv / ConvTranspose whose weight is
    DequantizeLinear of integers other than int8 (uint8, int4, int16, ...).
    TFLite's int8 scheme, which these compilers take, has int8 weights only."""
    if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 2 or not node.input[1]:
        return []
    dq = qdq.weight_dequantize(node.input[1], graph)
    dtype = graph.dtype(dq.input[0]) if dq is not None else 0
    if not dtype or dtype == onnx.TensorProto.INT8:
        return []
    kind = onnx.helper.tensor_dtype_to_np_dtype(dtype).name
    return [Violation(label, node.op_type, "int8_only",
                      (node_head(node.op_type, label), f": its weight is {kind} behind DequantizeLinear; the target "
                       "takes int8 weights only (it would run on the host CPU)"))]


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


# --- a replacement -------------------------------------------------------------------

def replacement_violations_in(view: GraphView, profile: Profile, constants: frozenset,
                              reshaped: Optional[dict] = None, nodes: Optional[Sequence] = None) -> list[Violation]:
    """Every rule the nodes of a replacement's standalone model break
    (convrewrite.core.lowering builds the model; `constants` are the values
    that are constant in the original graph, `reshaped` those it writes or
    reads through a RESHAPE: facts.reshaped_around; `nodes`, the model's
    nodes that are the replacement's, default all)."""
    nodes = view.graph.node if nodes is None else nodes
    return [v for node in nodes for v in check_node(node, view, profile, constants, reshaped)]


def reads_producers(node: onnx.NodeProto, profile: Profile) -> bool:
    """Whether `profile` has, for `node`'s operator, a rule whose facts the
    node's producers make (rules.PRODUCER_RULES): a rewrite of a node that
    writes one of its inputs can make it break that rule (and, for
    reads_siblings, a rewrite of another node that reads one)."""
    rules = profile.rules(op_key(node))
    return bool(rules) and any(getattr(r, key) for r in rules for key in PRODUCER_RULES)


def reads_siblings(node: onnx.NodeProto, profile: Profile) -> bool:
    """Whether `profile` has, for `node`'s operator, a rule whose facts the
    other readers of the node's inputs make (rules.SIBLING_RULES): a
    rewrite of a node that reads one of its inputs can make it break that
    rule."""
    rules = profile.rules(op_key(node))
    return bool(rules) and any(getattr(r, key) for r in rules for key in SIBLING_RULES)


def neighbour_violations(original: onnx.NodeProto, graph: GraphView, copy: onnx.NodeProto, view: GraphView,
                         profile: Profile, constants: frozenset, reshaped: Optional[dict] = None) -> list[Violation]:
    """The rules of PRODUCER_RULES that an existing neighbour of a replacement
    (a node reading its output, or a value it reads) breaks after the rewrite
    and did not before: `copy`, the neighbour in `view` (the replacement's
    standalone model with its neighbours:
    convrewrite.core.lowering), against `original`, the same node in `graph`.
    A rule broken before is no news (an operator whose rules are alternative
    forms is compared by the forms' joint verdict, which is not counted here)."""
    before = {v.rule for v in check_node(original, graph, profile)}
    return [v for v in check_node(copy, view, profile, constants, reshaped)
            if v.rule.rsplit(".", 1)[-1] in PRODUCER_RULES and v.rule not in before]


def replacement_undecided_in(view: GraphView, profile: Profile, constants: frozenset,
                             reshaped: Optional[dict] = None, nodes: Optional[Sequence] = None) -> list[str]:
    """Per node of a replacement's standalone model that breaks no rule, why
    the rules still cannot say the target runs it (rules.undecided: a size
    they read is symbolic); empty: every node is decided.  A lowering that
    breaks no rule "fits" only where this is empty (`nodes`: as in
    replacement_violations_in)."""
    out = []
    for node in (view.graph.node if nodes is None else nodes):
        outputs = [o for o in node.output if o]
        if outputs and all(is_constant(o, view, constants) for o in outputs):
            continue   # folded before it reaches the target (check_node)
        unknown = undecided(profile, node_facts(node, view, constants, reshaped), op_key(node))
        if unknown:
            out.append(f"{node.op_type} '{view.label(node)}': {'; '.join(unknown)}")
    return out


# --- models built for checking -------------------------------------------------------

def unit_batch(model: onnx.ModelProto) -> onnx.ModelProto:
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
