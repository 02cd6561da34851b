"""Checking quantized rewrites the way a deployment runs them.

A QDQ model means two things: the spec semantics (DequantizeLinear, the op in
float, QuantizeLinear: what onnxruntime computes with its graph optimizations
off, and what every check compares first), and the integer kernels a runtime
or an accelerator compiler fuses each QDQ group into (onnxruntime with its
graph optimizations on: QLinearConv, int8 data movement).  The two round
differently, and a rewrite can agree with the original under one and not
under the other (a bias whose DequantizeLinear scale is not input scale x
weight scale: the spec reads the scale, QLinearConv assumes it).  So for a
quantized rewrite both sides also run under onnxruntime's fused int8
execution (ORT_ENABLE_ALL), and their integer outputs are compared in
quantization steps with the same rule as the spec check: equal except
rounding ties (mean |difference| <= MEAN_STEPS, 99th percentile <= P99_STEPS,
core/qdq.py).  A rewrite that changes the int8 result systematically fails.

The comparisons made here are OutputComparisons flagged `fused`, carrying
their `steps`; their float errors are 0 (the report's `max_abs_error` stays
the spec check's), and `record_steps` turns a Comparison into the report's
`quantized_steps`: {"spec": {mean, p99, max}, "fused": {...}}.

The whole-model check runs the fused execution for every model with Q/DQ
nodes, also when an output is float (a last Conv left in float reads the
fused int8 layers before it): such an output is compared with the ordinary
float tolerance, and its comparison carries its float errors, which the
report gives as `quantized_steps["fused_float_max_abs"]`.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import onnx

from . import qdq
from .equivalence import Comparison, OutputComparison, compare_arrays, first_line, run_onnxruntime

FUSED = "onnxruntime's fused int8 execution (graph optimizations on)"


# --- the original side keeps its weights quantized -------------------------------------

def weight_nodes(graph, nodes: Sequence[onnx.NodeProto]) -> list:
    """The DequantizeLinear nodes (and the constant data movement after them)
    through which quantized `nodes` read their weights, in graph order.

    The standalone original must keep them: folded into a float initializer,
    the weight would look unquantized to onnxruntime's fusion, which then
    quantizes it again by itself (per tensor) and computes another function
    than the model."""
    if not qdq._may_quantize(graph):   # no node of the graph is quantized
        return []
    out, seen = [], set()
    for node in nodes:
        if qdq.region(node, graph) is None:
            continue
        for name in node.input[1:]:
            path = _path_to_dequantize(name, graph) if name else []
            for n in path:
                if id(n) not in seen and n not in nodes:
                    seen.add(id(n))
                    out.append(n)
    return sorted(out, key=graph.position)


def dequantized_reads(graph, reads: Sequence[str]) -> list:
    """The DequantizeLinear nodes (and constant data movement after them)
    that produce the constant values a replacement reads from the graph
    (`reads`: a quantized form's Conv reading the original DQ(w int8)), in
    graph order: kept in its check model for the reason `weight_nodes` gives."""
    if not qdq._may_quantize(graph):   # no DequantizeLinear in the graph
        return []
    out, seen = [], set()
    for name in reads:
        for n in _path_to_dequantize(name, graph):
            if id(n) not in seen:
                seen.add(id(n))
                out.append(n)
    return sorted(out, key=graph.position)


def _path_to_dequantize(name: str, graph) -> list:
    if qdq.weight_dequantize(name, graph) is None or not graph.is_constant(name):   # the cheap test first
        return []
    path = []
    while True:
        p = graph.producer(name)
        path.append(p)
        if p.op_type == qdq.DEQUANTIZE:
            return path
        name = p.input[0]


def with_quantizers(graph, original: onnx.ModelProto, replacement: onnx.ModelProto, outputs: Sequence[str],
                    steps: dict) -> tuple:
    """A float output of the rewrite that the model quantizes next (it goes
    into a per-tensor QuantizeLinear with constant parameters: a Resize
    between DQ and Q) gets that QuantizeLinear in both check models, as an
    extra integer output compared in steps: so the check sees the integers
    the model computes, and under fusion the QDQ group the runtime fuses.
    Where that QuantizeLinear is the output's only reader, the float output
    itself is dropped from both: the model never sees it, and as an output
    of the check it would keep the runtime from fusing the group.
    Returns (original, replacement, steps)."""
    from onnx import helper, numpy_helper

    extra = quantizers_after(graph, outputs, steps)
    if not extra:
        return original, replacement, steps
    steps = dict(steps)

    def add_quantizers(m: onnx.ModelProto) -> None:
        for o, q, scale, zp, alone in extra:
            name = f"{o}/check_quantized"
            s, z = f"{name}/scale", f"{name}/zero_point"
            m.graph.initializer.extend([numpy_helper.from_array(scale, s), numpy_helper.from_array(zp, z)])
            m.graph.node.append(helper.make_node(qdq.QUANTIZE, [o, s, z], [name], name=name,
                                                 **{a.name: helper.get_attribute_value(a) for a in q.attribute}))
            name = _fetchable(m, name, helper.np_dtype_to_tensor_dtype(zp.dtype))
            steps[name] = qdq.integer_step(zp.dtype)
            if alone:
                kept = [v for v in m.graph.output if v.name != o]
                del m.graph.output[:]
                m.graph.output.extend(kept)
    return (*_edited(original, replacement, add_quantizers), steps)


def quantizers_after(graph, outputs: Sequence[str], steps: dict) -> list:
    """The QuantizeLinear after each output that with_quantizers adds to both
    check models: (output, QuantizeLinear, scale, zero point, whether it is
    the output's only reader); empty where it leaves them as they are."""
    if not qdq._may_quantize(graph):   # no QuantizeLinear in the graph
        return []
    extra = []
    for o in outputs:
        if o in steps:
            continue
        q = next((c for c in graph.consumers(o) if c.op_type == qdq.QUANTIZE and qdq.grid_of(c) is not None), None)
        if q is None:
            continue
        scale, zp = graph.constant(q.input[1]), graph.constant(q.input[2])
        if scale is None or zp is None or np.size(scale) != 1:
            continue
        alone = len(graph.consumers(o)) == 1 and o not in graph.graph_outputs
        extra.append((o, q, np.asarray(scale), np.asarray(zp), alone))
    return extra


def _edited(original: onnx.ModelProto, replacement: onnx.ModelProto, edit) -> tuple:
    """Copies of both check models, each changed in place by `edit`."""
    models = []
    for model in (original, replacement):
        m = onnx.ModelProto()
        m.CopyFrom(model)
        edit(m)
        models.append(m)
    return models[0], models[1]


# Quantized types onnxruntime's Python API returns no array for ("No corresponding Numpy type"),
# and the type each is fetched as, through an exact Cast (float8 as float32: steps_between reads the
# float values back as float8 numbers).  float8_e4m3fn comes back as its uint8 bit patterns.
_FETCHED_AS = {onnx.TensorProto.INT4: onnx.TensorProto.INT8, onnx.TensorProto.UINT4: onnx.TensorProto.UINT8,
               onnx.TensorProto.FLOAT8E5M2: onnx.TensorProto.FLOAT,
               onnx.TensorProto.FLOAT8E4M3FNUZ: onnx.TensorProto.FLOAT,
               onnx.TensorProto.FLOAT8E5M2FNUZ: onnx.TensorProto.FLOAT}


def _fetchable(model: onnx.ModelProto, name: str, elem: int) -> str:
    """Make `name` (of element type `elem`) an output of `model` that
    onnxruntime can return: as it is, or through a Cast to a type that holds
    every value exactly (int4 as int8; a check that cannot fetch its output
    could only roll the rewrite back).  Returns the output's name."""
    from onnx import helper

    to = _FETCHED_AS.get(elem)
    if to is not None:
        model.graph.node.append(helper.make_node("Cast", [name], [f"{name}/fetched"], name=f"{name}/fetch", to=to))
        name, elem = f"{name}/fetched", to
    model.graph.output.append(helper.make_tensor_value_info(name, elem, None))
    return name


def unfetchable_outputs(outputs: Sequence[onnx.ValueInfoProto]) -> list:
    """The names of `outputs` of a type onnxruntime cannot return (fetchable_outputs fetches them through a Cast)."""
    return [v.name for v in outputs if v.type.tensor_type.elem_type in _FETCHED_AS]


def fetchable_outputs(original: onnx.ModelProto, replacement: onnx.ModelProto, steps: dict) -> tuple:
    """Both check models with each output of a type onnxruntime cannot return
    (a QuantizeLinear to int4 that the rewrite's output is) fetched through
    `_fetchable`'s Cast instead, and `steps` keyed by the new names.
    Returns (original, replacement, steps)."""
    unfetchable = unfetchable_outputs(original.graph.output[:])
    if not unfetchable:
        return original, replacement, steps
    steps = dict(steps)

    def fetch(m: onnx.ModelProto) -> None:
        outputs = list(m.graph.output)
        del m.graph.output[:]
        for v in outputs:
            if v.name not in unfetchable:
                m.graph.output.append(v)
                continue
            name = _fetchable(m, v.name, v.type.tensor_type.elem_type)
            if v.name in steps:
                steps[name] = steps[v.name]

    original, replacement = _edited(original, replacement, fetch)
    for name in unfetchable:
        steps.pop(name, None)
    return original, replacement, steps


# --- running and comparing under fusion ---------------------------------------------------

def run_fused(models: Sequence[onnx.ModelProto], feeds: Sequence[dict]) -> list:
    """Per model, its outputs under onnxruntime's graph optimizations, or an
    error string.  Several models are merged into one session (as the spec
    checks are); one that fails alone is reported alone."""
    from .local_check import _merge

    if len(models) > 1:
        try:
            merged = _merge(models)
            outs = run_onnxruntime(merged, {f"c{k}/{n}": v for k, f in enumerate(feeds) for n, v in f.items()},
                                   optimized=True)
            result, at = [], 0
            for m in models:
                result.append(outs[at:at + len(m.graph.output)])
                at += len(m.graph.output)
            return result
        except Exception:
            pass
    result = []
    for m, f in zip(models, feeds):
        try:
            result.append(run_onnxruntime(m, f, optimized=True))
        except Exception as e:  # onnxruntime raises several unrelated types
            result.append(first_line(e))
    return result


def fused_comparisons(group: Sequence[int], checks, models, feeds) -> dict:
    """The local checks of `group` (indices into `checks`) that compare
    quantized outputs, run again under onnxruntime's fused int8 execution
    (`models`: (original, replacement) per group entry, `feeds` likewise):
    index -> Comparison in steps.  An original that onnxruntime cannot
    optimize and run is left to the spec check; a replacement that it cannot
    (where it runs the original) fails."""
    idx = [j for j, k in enumerate(group) if checks[k].steps]
    if not idx:
        return {}
    want = run_fused([models[j][0] for j in idx], [feeds[j] for j in idx])
    got = run_fused([models[j][1] for j in idx], [feeds[j] for j in idx])
    out = {}
    for j, w, g in zip(idx, want, got):
        k = group[j]
        if isinstance(w, str):
            continue
        if isinstance(g, str):
            out[k] = Comparison([OutputComparison("replacement (fused int8)", False, 0.0, 0.0, 0.0,
                                                  f"onnxruntime cannot run the replacement under {FUSED}: {g}",
                                                  fused=True)])
            continue
        out[k] = compare_fused([o.name for o in checks[k].original.graph.output], w, g, checks[k].steps)
    return out


def compare_fused(names: Sequence[str], want: Sequence[np.ndarray], got: Sequence[np.ndarray],
                  steps: dict, float_tolerance: Optional[tuple] = None) -> Comparison:
    """The quantized outputs (`steps`: name -> step) of two fused runs, in
    steps; with `float_tolerance` (rtol, atol) the float outputs too, with
    that tolerance."""
    out = []
    for n, w, g in zip(names, want, got):
        if n in steps:
            out.append(fused_output(n, w, g, steps[n]))
        elif float_tolerance is not None:
            out.append(fused_float_output(n, w, g, *float_tolerance))
    return Comparison(out)


def fused_float_output(name: str, want, got, rtol: Optional[float], atol: Optional[float]) -> OutputComparison:
    c = compare_arrays(name, want, got, rtol, atol)
    verdict = "" if c.equivalent else "the rewrite changes a float output beyond the tolerance: "
    return OutputComparison(f"{name} (fused int8)", c.equivalent, c.max_abs_error, c.max_rel_error,
                            c.allowed_error, f"under {FUSED} {verdict}{c}", fused=True)


def fused_output(name: str, want, got, scale: float) -> OutputComparison:
    c = qdq.compare_quantized(name, want, got, scale)
    s = c.steps
    if s is None:   # a shape or dtype mismatch
        message = f"under {FUSED} the replacement's output differs: {c.message}"
    elif c.equivalent:
        message = f"under {FUSED}: {s}"
    else:
        message = (f"under {FUSED} the rewrite changes the int8 result systematically: {s} (equal except "
                   f"rounding ties allows a mean of {qdq.MEAN_STEPS:g} and a 99th percentile of {qdq.P99_STEPS:g} step)")
    return OutputComparison(f"{name} (fused int8)", c.equivalent, 0.0, 0.0, 0.0, message, steps=s, fused=True)


def fused_failure(comparison: Comparison) -> Optional[str]:
    """The message of a failing fused comparison, when only fused ones fail."""
    bad = [o for o in comparison.outputs if not o]
    if bad and all(o.fused for o in bad):
        return bad[0].message
    return None


# --- what the report says -----------------------------------------------------------

def record_steps(comparison) -> Optional[dict]:
    """{"spec": Steps dict, "fused": Steps dict or None} of the quantized
    outputs of a Comparison; None when nothing was compared in steps."""
    if not isinstance(comparison, Comparison):
        return None
    spec = [o.steps for o in comparison.outputs if o.steps is not None and not o.fused]
    fused = [o.steps for o in comparison.outputs if o.steps is not None and o.fused]
    fused_float = [o.max_abs_error for o in comparison.outputs if o.steps is None and o.fused]
    if not spec and not fused and not fused_float:
        return None
    record = {"spec": qdq.worst(spec).to_dict() if spec else None,
              "fused": qdq.worst(fused).to_dict() if fused else None}
    if fused_float:   # float outputs of a quantized model, compared under the fused execution too
        record["fused_float_max_abs"] = max(fused_float)
    return record


# --- the original's own rounding-tie noise (whole-model check) -------------------------
#
# A rewrite that computes the same real values can break rounding ties the
# other way (bilinear taps put 1 output in 16 exactly half-way between two
# integers; the original's float Resize itself breaks a fifth of them the
# "wrong" way).  Downstream layers carry such one-step changes on, so a
# whole model's outputs can differ by more than the tie rule allows even
# where every rewrite passed its local check.  The yardstick is the original
# itself: every QuantizeLinear of an activation reads its input scaled by
# 1 +- TIE_NUDGE (its scale divided by that), so its ties -- and values
# within ~1e-3 step of one -- round the other way; the worst of the two runs
# is the original's tie noise per quantized output, in steps.  A quantized
# output that fails the tie rule is accepted when its mean and 99th
# percentile are within that noise: the rewrite changes the result no more
# than breaking the original's own ties does.

TIE_NUDGE = 2.0 ** -18


def tie_nudged(model: onnx.ModelProto, sign: float) -> onnx.ModelProto:
    """`model` with every QuantizeLinear of an activation (input not an
    initializer, scale an initializer) quantizing its input times 1 + sign*TIE_NUDGE."""
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    made = {}
    for n in g.node:
        if n.op_type != qdq.QUANTIZE or n.domain not in ("", "ai.onnx") or len(n.input) < 2:
            continue
        if n.input[0] in inits or n.input[1] not in inits:
            continue
        if n.input[1] not in made:
            s = numpy_helper.to_array(inits[n.input[1]])
            name = f"{n.input[1]}/tie_nudged"
            made[n.input[1]] = name
            g.initializer.append(numpy_helper.from_array((s / (1 + sign * TIE_NUDGE)).astype(s.dtype), name))
        n.input[1] = made[n.input[1]]
    return out


def tie_noise(model: onnx.ModelProto, feeds: dict, want: Sequence[np.ndarray], names: Sequence[str],
              steps: dict, fused: bool) -> dict:
    """{output name: Steps}: the original's tie noise (see above) of each
    quantized output, under the spec run or the fused one ({} if it cannot run)."""
    noise: dict = {}
    for sign in (1.0, -1.0):
        try:
            got = run_onnxruntime(tie_nudged(model, sign), feeds, fused)
        except Exception:  # a probe that cannot run measures nothing
            continue
        for n, w, g in zip(names, want, got):
            if n in steps:
                noise[n] = qdq.worst([noise.get(n, qdq.Steps()), qdq.steps_between(w, g, steps[n])])
    return noise


def within_tie_noise(result: Comparison, spec_noise: dict, fused_noise: dict) -> Comparison:
    """`result` with each failing quantized output accepted where its
    difference is within the original's tie noise (mean and 99th percentile)."""
    out = []
    for o in result.outputs:
        name = o.name[:-len(" (fused int8)")] if o.fused and o.name.endswith(" (fused int8)") else o.name
        n = (fused_noise if o.fused else spec_noise).get(name)
        if not o and o.steps is not None and n is not None and (n.mean > qdq.MEAN_STEPS or n.p99 > qdq.P99_STEPS) \
                and o.steps.mean <= max(qdq.MEAN_STEPS, n.mean) and o.steps.p99 <= max(qdq.P99_STEPS, n.p99):
            o = OutputComparison(o.name, True, o.max_abs_error, o.max_rel_error, o.allowed_error,
                                 f"{o.message}; within the original's own rounding-tie noise ({n}: its "
                                 "ties broken the other way)", steps=o.steps, fused=o.fused, tie_noise=n)
        out.append(o)
    return Comparison(out)
