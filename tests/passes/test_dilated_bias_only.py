"""dilated-conv, the bias-only form: a dilated Conv whose taps along some
spatial axis all read padding, so no output reads x and the output is the
bias broadcast to [N, O, out...] (zeros without a bias)."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from onnx import TensorProto, numpy_helper

from builders import conv_model
from convrewrite import optimize
from convrewrite.core.cost import model_cost
from convrewrite.core.forms import rank
from convrewrite.core.graph import GraphView
from convrewrite.core.lowering import build
from convrewrite.core.report import REWRITTEN
from convrewrite.core.rewrite import Code, Match
from convrewrite.core.standalone import replacement_model
from convrewrite.geometry import conv_output_size, conv_pads
from helpers import assert_rewrites, assert_skips, forms, op_counts
from passes.dilated_conv.forms import BiasAlone
from passes.dilated_conv.rewrite import DilatedConvOptions
from passes.dilated_conv.rewrite import DilatedConvToSpaceToBatch as DilatedConv
from qdq_models import dilated_geometry, quantize

ROOT = Path(__file__).resolve().parents[2]
F16 = TensorProto.FLOAT16

# name: (x shape, w shape, Conv attributes); along the named axis every tap reads only padding
CASES = {
    # n 7, k 3, d 9, pads (11, 2): 2 outputs, taps 0 and 1 read x[i - 11], x[i - 2] < 0, tap 2 x[i + 7]
    "1d": ((2, 3, 7), (4, 3, 3), dict(dilations=[9], pads=[11, 2])),
    # n 2, s 3, d 8, pads (6, 4): 2 outputs, x[3i - 6] and x[3i + 2]
    "1d_strided": ((1, 2, 2), (3, 2, 2), dict(dilations=[8], strides=[3], pads=[6, 4])),
    # the first axis dead, the second live: the output still reads nothing of x
    "2d": ((1, 2, 3, 5), (2, 2, 2, 3), dict(dilations=[6, 2], pads=[3, 2, 3, 2])),
    "2d_second_axis": ((1, 3, 6, 4), (5, 3, 3, 2), dict(dilations=[2, 7], strides=[1, 2], pads=[2, 3, 2, 3])),
    "2d_grouped": ((1, 4, 3, 5), (6, 2, 2, 3), dict(dilations=[6, 2], group=2, pads=[3, 2, 3, 2])),
    "2d_depthwise": ((1, 4, 3, 5), (4, 1, 2, 3), dict(dilations=[6, 2], group=4, pads=[3, 2, 3, 2])),
    "3d": ((1, 2, 3, 4, 2), (2, 2, 2, 2, 2), dict(dilations=[1, 2, 5], pads=[0, 1, 3, 1, 1, 3])),
    # SAME: n 3, k 2, d 8: 8 padding in all, (4, 4); d 9: 9, (4, 5) upper and (5, 4) lower
    "same_upper": ((1, 2, 3, 5), (3, 2, 2, 3), dict(dilations=[8, 2], auto_pad="SAME_UPPER")),
    "same_upper_odd": ((1, 2, 3, 5), (3, 2, 2, 3), dict(dilations=[9, 2], auto_pad="SAME_UPPER")),
    "same_lower": ((1, 2, 3, 5), (3, 2, 2, 3), dict(dilations=[9, 2], auto_pad="SAME_LOWER")),
    "same_strided": ((1, 2, 3, 5), (3, 2, 2, 3), dict(dilations=[9, 2], strides=[2, 1], auto_pad="SAME_LOWER")),
}


def bias_only(**options) -> DilatedConv:
    return DilatedConv(DilatedConvOptions(**options))


def expected_ops(batch, bias: bool, opset: int, runtime_bias: bool = False) -> dict:
    """What the form builds: zeros (ConstantOfShape from opset 9, an
    initializer before it; with a symbolic batch Shape, Slice, Concat and
    ConstantOfShape, or a batch-1 Expand (opset 8) / Tile (opset 7)), then
    an Add of the bias column (a Reshape of a run-time bias)."""
    symbolic = not isinstance(batch, int)
    ops = {"Conv": 0, "Shape": int(symbolic), "Slice": int(symbolic), "Concat": int(symbolic),
           "ConstantOfShape": int(opset >= 9), "Expand": int(symbolic and opset == 8),
           "Tile": int(symbolic and opset == 7), "Add": int(bias), "Reshape": int(runtime_bias)}
    if not symbolic and opset < 9 and not bias:
        ops["Identity"] = 1   # the output is an initializer: the splice names it by an Identity
    return ops


def rewrite(model, batch=1, bias=True, opset=17, runtime_bias=False, **options):
    new, report = assert_rewrites(model, bias_only(**options), expected_ops(batch, bias, opset, runtime_bias))
    assert forms(report) == ["bias-only"]
    return new, report


def assert_cost_matches_the_built(model, p=None) -> Match:
    """The bias-only form's Cost is the built replacement's (model_cost,
    batch 1) on every figure: no MACs, the bytes the zeros and a run-time
    bias's Reshape move, its nodes, their largest rank (None: no node)."""
    p = p or bias_only()
    graph = GraphView(model)
    match = p.match(model.graph.node[0], graph)
    assert isinstance(match, Match) and isinstance(match.params, BiasAlone), match
    options = rank(p, match, graph, None, with_variants=True, with_opt_in=True).options
    assert [o.form.name for o in options] == ["bias-only"]
    c = options[0].cost
    built = model_cost(replacement_model(build(p, match, options[0], graph), graph))
    assert c == built, (c, built)
    assert c.macs == 0 and c.streamed_bytes == 0 and c.grouped_macs == 0
    return match


def output_of(model) -> tuple[int, tuple]:
    """(element type, shape) of the Conv's output, as ONNX shape inference finds it."""
    t = onnx.shape_inference.infer_shapes(model).graph.output[0].type.tensor_type
    return t.elem_type, tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim)


# --- the cases --------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("bias", [True, False])
def test_every_case_is_its_bias(case, bias):
    x_shape, w_shape, attrs = CASES[case]
    new, report = rewrite(conv_model(x_shape, w_shape, bias=bias, **attrs), bias=bias)
    assert not any(n.op_type == "Conv" for n in new.graph.node)
    notes = [n for r in report.records(REWRITTEN) for n in r.notes]
    assert any(n.startswith("every tap along spatial axis") and "reads only padding" in n for n in notes), notes


@pytest.mark.parametrize("case", ["1d", "2d", "3d", "same_lower"])
@pytest.mark.parametrize("bias", [True, False])
def test_float16(case, bias):
    x_shape, w_shape, attrs = CASES[case]
    new, _ = rewrite(conv_model(x_shape, w_shape, dtype=F16, bias=bias, batch="N", **attrs), batch="N", bias=bias)
    assert output_of(new)[0] == F16
    assert all(t.data_type in (F16, TensorProto.INT64) for t in new.graph.initializer)


@pytest.mark.parametrize("opset", [7, 8, 9, 13, 17])
@pytest.mark.parametrize("batch", [2, "N"])
@pytest.mark.parametrize("bias", [True, False])
def test_every_opset_and_batch(opset, batch, bias):
    """The zeros as each opset has them; a symbolic batch read from x at run time
    (assert_rewrites checks batch 1 and 3)."""
    x_shape, w_shape, attrs = CASES["2d"]
    rewrite(conv_model(x_shape, w_shape, bias=bias, batch=batch, opset=opset, **attrs), batch, bias, opset)


@pytest.mark.parametrize("batch", [1, "N"])
def test_a_bias_computed_at_run_time_is_reshaped(batch):
    x_shape, w_shape, attrs = CASES["2d_second_axis"]
    rewrite(conv_model(x_shape, w_shape, bias_input=True, batch=batch, **attrs), batch, runtime_bias=True)


def test_a_weight_computed_at_run_time_is_not_read():
    x_shape, w_shape, attrs = CASES["1d"]
    new, _ = rewrite(conv_model(x_shape, w_shape, weight_input=True, **attrs))
    assert "W" not in {i for n in new.graph.node for i in n.input}


@pytest.mark.parametrize("opset", [5, 6])
def test_before_opset_7_it_is_left_alone_old_opset(opset):
    x_shape, w_shape, attrs = CASES["2d"]
    assert_skips(conv_model(x_shape, w_shape, opset=opset, **attrs), bias_only(),
                 r"every tap along spatial axis 0 reads only padding, so the output is the bias alone .*opset 7 or "
                 rf"later, and the model's is {opset}; upgrade the model's opset", code=Code.OLD_OPSET)


def test_a_dilated_mode_cannot_express_it():
    """--dilated-mode batch: the note says why batch is not built."""
    x_shape, w_shape, attrs = CASES["2d"]
    _, report = rewrite(conv_model(x_shape, w_shape, **attrs), mode="batch")
    notes = [n for r in report.records(REWRITTEN) for n in r.notes]
    assert any(n.startswith("preferred form batch cannot express this node: no output reads the input")
               for n in notes), notes


@pytest.mark.parametrize("target", ["generic-npu", "tflite"])
def test_with_a_target_it_is_judged_as_usual(target):
    """A target that does not run the dilated Conv gets the bias-only form,
    which its rules judge like any other (ConstantOfShape and Add fit)."""
    x_shape, w_shape, attrs = CASES["2d"]
    new, report = assert_rewrites(conv_model(x_shape, w_shape, **attrs), bias_only(), expected_ops(1, True, 17),
                                  target=target)
    assert forms(report) == ["bias-only"] and report.target["fits"], report.target["violations"]


def test_no_other_form_applies():
    x_shape, w_shape, attrs = CASES["2d"]
    model = conv_model(x_shape, w_shape, **attrs)
    p, graph = bias_only(), GraphView(model)
    match = p.match(model.graph.node[0], graph)
    ranking = rank(p, match, graph, None, with_variants=True, with_opt_in=True)
    assert [o.form.name for o in ranking.options] == ["bias-only"]
    assert {name for name, _ in ranking.passed_over} == {"plain", "subsample", "batch", "depth", "slices",
                                                         "reshape", "taps", "im2col"}


def test_a_conv_that_reads_x_is_not_bias_only():
    """Tap 1 of axis 0 reads x[0..2] (pads (4, 4), d 4): the usual forms."""
    model = conv_model((1, 2, 3, 5), (2, 2, 2, 3), dilations=[4, 2], pads=[4, 2, 4, 2])
    match = bias_only().match(model.graph.node[0], GraphView(model))
    assert isinstance(match, Match) and not isinstance(match.params, BiasAlone)


# --- costs ------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_costs_match_the_built_replacement(case):
    x_shape, w_shape, attrs = CASES[case]
    for opset in (7, 8, 9, 17):
        for batch in (1, "N"):
            for bias, bias_input in ((False, False), (True, False), (True, True)):
                for dtype in (TensorProto.FLOAT, F16):
                    assert_cost_matches_the_built(conv_model(x_shape, w_shape, batch=batch, opset=opset, bias=bias,
                                                             bias_input=bias_input, dtype=dtype, **attrs))


def test_cost_figures():
    """Static, constant bias: ConstantOfShape and Add, no bytes moved (neither
    is data movement); a run-time bias adds its Reshape (4 + 4 floats)."""
    x_shape, w_shape, attrs = CASES["2d_second_axis"]
    p, model = bias_only(), conv_model(x_shape, w_shape, **attrs)
    m = assert_cost_matches_the_built(model, p)
    c = rank(p, m, GraphView(model), None, with_variants=False, with_opt_in=False).options[0].cost
    assert (c.macs, c.moved_bytes, c.nodes, c.max_rank) == (0, 0, 2, 4)
    model = conv_model(x_shape, w_shape, bias_input=True, **attrs)
    m = assert_cost_matches_the_built(model, p)
    c = rank(p, m, GraphView(model), None, with_variants=False, with_opt_in=False).options[0].cost
    assert (c.macs, c.moved_bytes, c.nodes, c.max_rank) == (0, 2 * 5 * 4, 3, 4)


# --- huge dilations: the work is the output's, not the dilation's ---------------------------

@pytest.mark.parametrize("batch", [1, "N"])
@pytest.mark.parametrize("dilation", [10 ** 9, (1 << 31) - 1])
def test_a_huge_dilation_finishes_at_once_with_a_tiny_model(batch, dilation):
    """Before the bias-only form, every form padded x out to where the taps
    read: dilation 4e7 on this 1x2x3x5 map built a 1 GB Pad (34 s)."""
    model = conv_model((1, 2, 3, 5), (2, 2, 2, 3), batch=batch, dilations=[dilation, 2],
                       pads=[dilation // 2, 2, dilation // 2, 2])
    t = time.perf_counter()
    new, _ = rewrite(model, batch)
    assert time.perf_counter() - t < 20, "took as long as the dilation"   # ~0.1 s; a hang detector
    assert new.ByteSize() < 2000, new.ByteSize()


def test_an_output_beyond_the_size_budget_is_left_alone():
    """The work is the output's: pads of 2**31 - 1 make it 3.3e10 elements,
    which the driver refuses before any form is built (too-large)."""
    big = (1 << 31) - 1
    model = conv_model((1, 2, 3, 5), (2, 2, 2, 3), dilations=[10 ** 9, 2], pads=[big, 2, big, 2])
    t = time.perf_counter()
    assert_skips(model, bias_only(), r"tensor 'y' of shape \[1, 2, 3294967297, 5\] has 3.295e\+10 elements",
                 code=Code.TOO_LARGE)
    assert time.perf_counter() - t < 20


def test_a_huge_dilation_with_auto_pad_same_unverified():
    """auto_pad SAME with a dilation: onnxruntime refuses the original, and
    the reference evaluator builds the dilated kernel (74 GB at 1e9), so the
    check cannot run; without verification the output is the bias broadcast
    to the shape ONNX shape inference gives the Conv."""
    model = conv_model((2, 2, 3, 5), (3, 2, 2, 3), dilations=[10 ** 9, 2], auto_pad="SAME_UPPER")
    t = time.perf_counter()
    new, report = optimize(model, passes=[bias_only()], verify=False)
    assert time.perf_counter() - t < 20
    assert forms(report) == ["bias-only"] and op_counts(new) == {"ConstantOfShape": 1, "Add": 1}
    _, shape = output_of(model)
    b = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "B"))
    y = ort.InferenceSession(new.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.ones((2, 2, 3, 5), np.float32)})[0]
    assert y.shape == shape and np.array_equal(y, np.broadcast_to(b.reshape(1, 3, 1, 1), shape))


@pytest.mark.parametrize("dilation", [3000, 10 ** 9])
def test_a_large_dilation_with_auto_pad_same_verified_is_bounded(dilation):
    """Verified, the same node: onnxruntime refuses the original, and onnx's
    reference evaluator would build a dilated kernel and im2col columns that
    grow with the dilation (at 3000 on this 3x5 map: 1.8e9 elements, 23 s and
    24 GB before the bound).  The check says so at once and the rewrite is
    rolled back; the run never builds them (equivalence.REFERENCE_ELEMENTS)."""
    model = conv_model((2, 2, 3, 5), (3, 2, 2, 3), dilations=[dilation, dilation], auto_pad="SAME_UPPER")
    t = time.perf_counter()
    _, report = optimize(model, passes=[bias_only()])
    assert time.perf_counter() - t < 20
    (record,) = report.records("rolled_back")
    assert record.code == Code.VERIFICATION_FAILED
    assert re.search(r"reference evaluator: Conv .* with dilations .* would need .* elements in onnx's reference "
                     r"evaluator", record.reason)
    assert "with explicit pads instead of auto_pad SAME onnxruntime runs it, or --no-verify" in record.reason


def test_the_reference_bound_holds_with_a_symbolic_batch(monkeypatch):
    """The same node with a symbolic batch: the shapes the reference
    evaluator would build from are those of the check's inputs, not of the
    model's declared types (where the batch is a name, shape inference gives
    no static size, and a bound read from it held for nothing: the 23 s and
    24 GB at dilation 3000 again).  The reference Conv must not run."""
    from onnx.reference.ops import op_conv

    def ran(*args, **kwargs):
        raise AssertionError("the reference evaluator's Conv ran")

    monkeypatch.setattr(op_conv, "_conv_implementation", ran)
    model = conv_model((2, 2, 3, 5), (3, 2, 2, 3), batch="N", dilations=[3000, 3000], auto_pad="SAME_UPPER")
    _, report = optimize(model, passes=[bias_only()])
    (record,) = report.records("rolled_back")
    assert record.code == Code.VERIFICATION_FAILED
    assert re.search(r"reference evaluator: Conv 'conv' with dilations \[3000, 3000\] would need .* elements",
                     record.reason), record.reason


@pytest.mark.parametrize("attrs", [dict(dilations=[9, 2], auto_pad="SAME_UPPER"),
                                   dict(dilations=[9, 2], strides=[2, 1], auto_pad="SAME_LOWER"),
                                   dict(dilations=[3, 2], pads=[4, 0, 1, 2], strides=[1, 2], group=2)])
def test_the_reference_bound_counts_what_the_reference_builds(monkeypatch, attrs):
    """equivalence.reference_conv_elements against onnx's reference Conv: its
    im2col columns and its padded x have the sizes the bound counts."""
    from onnx.reference.ops import op_conv

    from convrewrite.core.equivalence import reference_conv_elements, run_reference

    seen, im2col, pad = {}, op_conv.im2col, np.pad

    def columns(*args, **kwargs):
        cols, shape = im2col(*args, **kwargs)
        seen["columns"] = cols.size
        return cols, shape

    def padded(*args, **kwargs):
        out = pad(*args, **kwargs)
        seen["padded"] = out.size
        return out

    monkeypatch.setattr(op_conv, "im2col", columns)
    monkeypatch.setattr(op_conv.np, "pad", padded)
    group = attrs.get("group", 1)
    model = conv_model((2, 4, 5, 7), (6, 4 // group, 2, 3), **attrs)
    x = np.ones((2, 4, 5, 7), np.float32)
    (y,) = run_reference(model, {"x": x})
    dilations = attrs["dilations"]
    spread = ((2 - 1) * dilations[0] + 1) * ((3 - 1) * dilations[1] + 1)
    assert seen["columns"] == 4 * spread * 2 * y.shape[2] * y.shape[3]
    need = reference_conv_elements(x.shape, (6, 4 // group, 2, 3), attrs.get("auto_pad"), dilations,
                                   attrs.get("strides"), attrs.get("pads"))
    assert need == max(seen["columns"], seen["padded"], 6 * (4 // group) * spread)


# --- quantized ------------------------------------------------------------------------

def test_a_quantized_conv_is_left_alone():
    """A QDQ Conv's output is B requantized by the QuantizeLinear after it;
    built in float it need not round as the fused QLinearConv's int32 bias
    does, so it stays as it is (as a ConvTranspose's bias-only phases do)."""
    model = quantize(dilated_geometry((1, 4, 3, 5), (4, 4, 2, 3), dilations=[6, 2], pads=[3, 2, 3, 2]))
    assert_skips(model, bias_only(), r"no form of this pass keeps it quantized .*the output is the bias alone, which "
                 r"no quantized form builds", code=Code.QUANTIZED)


# --- the sweep ------------------------------------------------------------------------

def dead_reference(n, k, d, s, begin, out) -> bool:
    """The definition: no output i and tap t read inside x, 0 <= i*s + t*d - begin < n."""
    return not any(0 <= i * s + t * d - begin < n for i in range(out) for t in range(k))


@st.composite
def dead_convs(draw):
    """A 1-D to 3-D dilated Conv; axis `dead` has its taps around x (the
    padding reaches past it on both sides), the others anything."""
    r = draw(st.integers(1, 3))
    auto_pad = draw(st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER"]))
    sizes, kernel, strides, dilations, begins, ends = [], [], [], [], [], []
    dead = draw(st.integers(0, r - 1))
    for axis in range(r):
        n, k, s = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        if axis == dead:
            d = draw(st.integers(n + 1, 4 * n + 8))
            begin = draw(st.integers(0, d + n))
            end = draw(st.integers(0, d + n))
        else:
            d, begin, end = draw(st.integers(1, 3)), draw(st.integers(0, 2)), draw(st.integers(0, 2))
        for v, where in zip((n, k, s, d, begin, end), (sizes, kernel, strides, dilations, begins, ends)):
            where.append(v)
    cin = draw(st.integers(1, 3))
    group = draw(st.sampled_from([g for g in (1, cin) if cin % g == 0]))
    cout = group * draw(st.integers(1, 2))
    attrs = dict(dilations=dilations, strides=strides)
    if auto_pad == "NOTSET":
        attrs["pads"] = begins + ends
    else:
        attrs["auto_pad"] = auto_pad
    pads = conv_pads(auto_pad, sizes, kernel, strides, dilations, attrs.get("pads"))
    outs = [conv_output_size(n, k, s, d, lo, hi) for n, k, s, d, (lo, hi) in
            zip(sizes, kernel, strides, dilations, pads)]
    assume(all(o >= 1 for o in outs) and max(dilations) > 1)
    assume(any(dead_reference(n, k, d, s, lo, o) for n, k, d, s, (lo, _), o in
               zip(sizes, kernel, dilations, strides, pads, outs)))
    x_shape = (draw(st.integers(1, 2)), cin, *sizes)
    return x_shape, (cout, cin // group, *kernel), dict(attrs, group=group), draw(st.booleans())


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(dead_convs(), st.sampled_from([1, "N"]), st.sampled_from([TensorProto.FLOAT, F16]))
def test_sweep_every_all_padding_conv_is_its_bias(conv, batch, dtype):
    """Every attribute combination whose taps along some axis read only
    padding is rewritten (all of them: a rate of 1), equal to the original."""
    x_shape, w_shape, attrs, bias = conv
    model = conv_model(x_shape, w_shape, bias=bias, batch=batch, dtype=dtype, **attrs)
    rewrite(model, batch, bias)
    assert_cost_matches_the_built(model)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 6), k=st.integers(1, 4), d=st.integers(2, 12), s=st.integers(1, 3),
       begin=st.integers(0, 14), end=st.integers(0, 14),
       auto_pad=st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
def test_bias_only_exactly_where_no_output_reads_x(n, k, d, s, begin, end, auto_pad):
    """match gives the bias-only params iff the definition says no output
    reads x (VALID never: its taps stay inside x)."""
    model = conv_model((1, 2, n, 4), (3, 2, k, 2), dilations=[d, 2], strides=[s, 1],
                       **({"pads": [begin, 1, end, 1]} if auto_pad == "NOTSET" else {"auto_pad": auto_pad}))
    ((lo, hi), _) = conv_pads(auto_pad, [n, 4], [k, 2], [s, 1], [d, 2], [begin, 1, end, 1])
    out = conv_output_size(n, k, s, d, lo, hi)
    assume(out >= 1 and conv_output_size(4, 2, 1, 2, 1, 1) >= 1)
    m = bias_only().match(model.graph.node[0], GraphView(model))
    dead = dead_reference(n, k, d, s, lo, out)
    assert (isinstance(m, Match) and isinstance(m.params, BiasAlone)) == dead, m
    assert not (dead and auto_pad == "VALID")


# --- the command line -----------------------------------------------------------------

@pytest.mark.slow
def test_the_cli_end_to_end(tmp_path):
    """cli.py optimize on a model with a dilation of 1e9 and a symbolic
    batch: the bias-only form, verified, the output the original's."""
    src, out = tmp_path / "m.onnx", tmp_path / "m.opt.onnx"
    model = conv_model((1, 2, 3, 5), (2, 2, 2, 3), batch="N", dilations=[10 ** 9, 2],
                       pads=[10 ** 9 // 2, 2, 10 ** 9 // 2, 2])
    onnx.save(model, src)
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "optimize", str(src), "-o", str(out), "--strict"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pass dilated-conv: rewrote 1 node(s)" in r.stdout and "equivalent" in r.stdout, r.stdout
    new = onnx.load(out)
    assert "Conv" not in op_counts(new) and out.stat().st_size < 2000
    x = np.random.default_rng(0).standard_normal((3, 2, 3, 5)).astype(np.float32)
    want, got = (ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
                 for m in (model, new))
    assert got.shape == want.shape == (3, 2, 3, 5) and np.allclose(got, want, rtol=0, atol=1e-6)
