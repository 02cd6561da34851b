"""The built-in `tflite` profile (onnx2tf -> TFLite accelerators): it loads,
says what the issue asks for, and with target='tflite' every sample model's
output has no ConvTranspose, no Resize (except the ones no form lowers, which
are reported), no dilated Conv, no tensor above rank 4, batch 1, and passes
the whole-model check.  Whether onnx2tf converts that output is measured by
benchmarks/convert_tflite.py (docs/tflite.md), not here: it needs TensorFlow."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from convrewrite import optimize
from convrewrite.core.graph import GraphView
from convrewrite.target import check_model, load_profile

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted(p for p in (ROOT / "models").glob("*.onnx") if not p.name.endswith(".opt.onnx"))
# Sample models whose graph inputs are above rank 4 (3-D volumes): nothing can fit.
RANK5_INPUTS = {"unet3d_decoder"}
# Resizes no fixed-kernel form lowers (align_corners is not a periodic grid):
# the tflite target lowers them with the pointwise form (1x1 Convs) instead
# (the matmul form's constant operand breaks MatMul.computed_operands).
POINTWISE_RESIZES = {"seg_head_align_corners"}


def test_the_profile_loads_and_says_what_the_issue_asks():
    p = load_profile("tflite")
    assert p.name == "tflite" and p.origin == "built-in"
    assert p.max_rank == 4 and p.batch_must_be_one and not p.int8_only
    for op in ("ConvTranspose", "Resize", "Upsample"):
        assert not p.supports(op)
    assert p.allows_op("Conv", kernel_shape=[3, 3], dilations=[1, 1])
    assert not p.allows_op("Conv", kernel_shape=[3, 3], dilations=[2, 2])
    # the forms onnx2tf mis-converts are out (docs/tflite.md, "The `tflite` target profile")
    assert p.allows_op("DepthToSpace", mode="DCR", blocksize=2)
    assert not p.allows_op("DepthToSpace", mode="CRD", blocksize=2)
    assert p.allows_op("Slice", steps=[1, 1]) and not p.allows_op("Slice", steps=[2, 2])
    assert p.standard_convs_first and p.bias_after_shuffle and p.rules("MatMul")[0].computed_operands
    assert all(r.note for rules in p.operators.values() for r in rules)
    assert any("onnx2tf" in r for r in p.references)


def _dilated(node) -> bool:
    return node.op_type == "Conv" and any(d > 1 for a in node.attribute if a.name == "dilations" for d in a.ints)


def _grouped(node, graph: GraphView) -> bool:
    """A Conv with groups of more than one input channel and more than one group."""
    if node.op_type != "Conv":
        return False
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    w = graph.constant(node.input[1])
    return group > 1 and w is not None and w.shape[1] > 1


def _ranks(model) -> dict:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for v in values}


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_every_sample_model_fits_after_the_rewrite(path):
    model, report = optimize(str(path), target="tflite")
    name = path.stem
    assert report.verification.equivalent, report.verification.detail
    graph = GraphView(model)
    ops = [n.op_type for n in model.graph.node]
    violations = check_model(model, load_profile("tflite"))
    assert report.target["fits"] == (not violations)
    if name in RANK5_INPUTS:
        # a rank-5 input cannot fit; what is left is reported, rule by rule, nothing else
        assert violations and {v.rule for v in violations} <= {"max_rank", "unsupported_operators",
                                                               "operators.ConvTranspose.supported"}
        assert any(v.op == "graph input" for v in violations)
        return
    # a quantized model fits too: its dilated Convs take the quantized im2col form (the
    # batch form, rank 5 with the phases in the batch axis, is refused), its Resizes and
    # ConvTransposes the same lowerings as in float
    assert violations == [], [v.message for v in violations]
    assert "ConvTranspose" not in ops and "Upsample" not in ops and "Resize" not in ops
    if name in POINTWISE_RESIZES:
        assert "Transpose" in ops and "MatMul" not in ops
    assert not any(_dilated(n) for n in model.graph.node)
    assert not any(_grouped(n, graph) for n in model.graph.node)
    for n in model.graph.node:
        if n.op_type == "DepthToSpace":
            assert next((a.s for a in n.attribute if a.name == "mode"), b"DCR") == b"DCR"
    # every tensor computed from the graph inputs: rank <= 4, batch 1 (or symbolic, run at 1)
    shapes = _ranks(model)
    inits = {t.name for t in model.graph.initializer}
    live = {i.name for i in model.graph.input if i.name not in inits}
    for n in model.graph.node:
        if any(i in live for i in n.input):
            live.update(n.output)
    for value in live:
        dims = shapes.get(value, [])
        assert len(dims) <= 4, (value, dims)
        if len(dims) >= 3:
            assert dims[0] in (1, None), (value, dims)


def test_a_dilated_conv_takes_the_taps_form_and_a_deconv_a_dcr_pixel_shuffle():
    """The forms the profile picks, on one small model each (quick)."""
    from tests.builders import conv_model, convt_model

    dilated = conv_model((1, 4, 9, 9), (4, 4, 3, 3), dilations=[2, 2], pads=[2, 2, 2, 2])
    model, report = optimize(dilated, target="tflite")
    forms = {r.form for r in report.records("rewritten")}
    assert forms == {"taps"}, forms
    assert report.target["fits"]

    # the taps form's default variant: each tap's Conv pads its own zeros, no
    # padded window (no separate_conv_padding: docs/tflite.md reproducer 6)
    assert not load_profile("tflite").separate_conv_padding
    assert [r.variant for r in report.records("rewritten")] == [""]
    assert "Pad" not in {n.op_type for n in model.graph.node}
    assert any(a.name == "pads" and any(a.ints) for n in model.graph.node if n.op_type == "Conv" for a in n.attribute)

    deconv = convt_model((1, 4, 5, 5), 3, [4, 4], strides=[2, 2], pads=[1, 1, 1, 1])
    model, report = optimize(deconv, target="tflite")
    assert report.target["fits"] and report.rewritten == 1
    modes = [a.s for n in model.graph.node if n.op_type == "DepthToSpace" for a in n.attribute if a.name == "mode"]
    assert modes and set(modes) == {b"DCR"}


# --- the int8 rules (onnx2tf 2.6.9 -oiqt, flatbuffer_direct; docs/tflite.md reproducers 3 and 4) -----------

def _bilinear_resize(coordinates="half_pixel", channels=8, size=8):
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    sizes = numpy_helper.from_array(np.array([1, channels, 2 * size, 2 * size], np.int64), "sizes")
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="resize", mode="linear",
                            coordinate_transformation_mode=coordinates)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 2 * size, 2 * size])],
                              [sizes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _convs_with_groups(model) -> list:
    return [n.name for n in model.graph.node if n.op_type == "Conv"
            and any(a.name == "group" and a.i > 1 for a in n.attribute)]


def _without(tmp_path, **keys):
    """The tflite profile with some of its top-level keys changed."""
    import json

    path = tmp_path / "tflite_variant.json"
    path.write_text(json.dumps({"name": "tflite_variant", "extends": "tflite", **keys}))
    return load_profile(path)


def test_a_bilinear_resize_takes_group_1_convs_first(tmp_path):
    """standard_convs_first: onnx2tf's int8 quantizer fails on every
    DEPTHWISE_CONV_2D, so a bilinear Resize takes the pointwise form (1x1
    Convs of group 1) before the deconv form, whose phase Convs are
    depthwise; without the key the deconv form fits first."""
    model, report = optimize(_bilinear_resize(), target="tflite")
    assert report.verification.equivalent and report.target["fits"]
    assert [r.form for r in report.records("rewritten")] == ["pointwise"]
    assert _convs_with_groups(model) == [] and "MatMul" not in {n.op_type for n in model.graph.node}
    notes = [n for r in report.records("rewritten") for n in r.notes]
    assert any("form 'deconv' not used: it builds" in n and "standard_convs_first" in n for n in notes), notes

    model, report = optimize(_bilinear_resize(), target=_without(tmp_path, standard_convs_first=False))
    assert report.verification.equivalent and report.target["fits"]
    assert {r.form for r in report.records("rewritten")} == {"deconv", "phase-convs"}
    assert _convs_with_groups(model)


def test_a_dilated_depthwise_conv_keeps_its_depthwise_taps():
    """Where every form builds depthwise Convs (a dilated depthwise Conv), the
    preference gives way: the first form that fits is taken, as before."""
    from tests.builders import conv_model

    dilated = conv_model((1, 8, 9, 9), (8, 1, 3, 3), dilations=[2, 2], pads=[2, 2, 2, 2], group=8)
    model, report = optimize(dilated, target="tflite")
    assert report.verification.equivalent and report.target["fits"]
    assert [r.form for r in report.records("rewritten")] == ["taps"]
    assert _convs_with_groups(model) and not any(_dilated(n) for n in model.graph.node)
    notes = [n for r in report.records("rewritten") for n in r.notes]
    assert any("no form fits with group-1 Convs only" in n for n in notes), notes


def test_check_target_refuses_a_matmul_with_a_constant_operand():
    """MatMul.computed_operands (reproducer 4): a MatMul with a constant matrix
    breaks the rule, one of two computed tensors obeys it; the align_corners
    Resize that the matmul form would lower takes the pointwise form."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    def matmul(inputs, inits, out):
        node = helper.make_node("MatMul", ["a", "b"], ["y"], name="m")
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                                               for n, s in inputs.items()],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    p = load_profile("tflite")
    computed = matmul({"a": [1, 8, 16, 16], "b": [1, 8, 16, 16]}, [], [1, 8, 16, 16])
    assert check_model(computed, p) == []
    constant = matmul({"b": [1, 8, 16, 16]}, [numpy_helper.from_array(np.ones((64, 16), np.float32), "a")],
                      [1, 8, 64, 16])
    assert [v.rule for v in check_model(constant, p)] == ["operators.MatMul.computed_operands"]

    model, report = optimize(_bilinear_resize("align_corners"), target="tflite")
    assert report.verification.equivalent and report.target["fits"]
    assert [r.form for r in report.records("rewritten")] == ["pointwise"]


def _pads_reading_a_slice(model) -> list:
    producer = {o: n for n in model.graph.node for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "Pad"
            and getattr(producer.get(n.input[0]), "op_type", None) == "Slice"]


@pytest.mark.parametrize("pads", [[0, 0, 2, 0], [2, 0, 2, 0], [1, 1, 1, 1]])
def test_a_strided_dilated_conv_pads_before_it_crops(pads):
    """The strided im2col form's window is padded, then cropped: no Pad reads
    a Slice, which onnx2tf 2.6.9's flatbuffer_direct applies to the wrong axes
    (docs/tflite.md reproducer 1). Cropped W then padded H, a 3x3 rate-2
    stride-2 Conv on 12x12 came out [1,12,12,8] instead of [1,8,13,11] and
    LiteRT could not run it ("concatenation.cc:215 ... (8 != 9)"); padded
    first it converts and matches (hunt7's random sweep)."""
    from tests.builders import conv_model

    model = conv_model((1, 8, 12, 12), (8, 8, 3, 3), dilations=[2, 2], strides=[2, 2], pads=pads)
    new, report = optimize(model, target="tflite")
    assert report.verification.equivalent and report.target["fits"]
    assert [r.form for r in report.records("rewritten")] == ["im2col"]
    ops = [n.op_type for n in new.graph.node]
    assert "Pad" in ops and _pads_reading_a_slice(new) == []


# --- a channel Concat of spatial joins (onnx2tf 2.6.9 flatbuffer_direct; docs/tflite.md reproducer 10) ------
#
# onnx2tf joins such a Concat along W of tensors it keeps in NCHW: LiteRT stopped at the
# DEPTH_TO_SPACE after it ("8 != 0") or the output had the wrong shape. The profile's
# Concat.no_channel_join_of_spatial_joins keeps out the forms that build one; the cases are
# hunt7's random sweep (float32).

def _reproducer_10():
    """(name, model, passes, the form the profile picks, the form it would pick without the rule)."""
    from tests.builders import convt_model, resize_model

    nearest = resize_model((1, 8, 5, 5), scales=[1, 1, 4, 4], mode="nearest", nearest_mode="ceil",
                           coordinate_transformation_mode="asymmetric", opset=13)
    return [
        # k4 s2 unpadded on 6x6, 16 -> 8: tiles joined along W and H, then the phases along channels
        ("convtranspose_k4s2", convt_model((1, 16, 6, 6), 8, [4, 4], strides=[2, 2]), ["convtranspose"],
         "single-conv", "border-split"),
        # k2 s4 output_padding 3: the empty phases are ConstantOfShape zeros joined to the tiles along H
        ("convtranspose_k2s4_op3", convt_model((1, 8, 6, 6), 8, [2, 2], strides=[4, 4], output_padding=[3, 3]),
         ["convtranspose"], "phase-convs", "border-split"),
        # nearest ceil x4, asymmetric: shifted copies (edge Pad, Slices) joined along channels
        ("nearest_ceil_x4", nearest, ["resize", "convtranspose"], "pointwise", "shuffle"),
    ]


REPRODUCER_10 = {name: rest for name, *rest in _reproducer_10()}
# what each case becomes for the tflite profile (op counts, checked with numerical equivalence)
REPRODUCER_10_OPS = {
    "convtranspose_k4s2": {"ConvTranspose": 0, "Conv": 1, "DepthToSpace": 1, "Add": 1, "Concat": 0, "Slice": 0},
    "convtranspose_k2s4_op3": {"ConvTranspose": 0, "Conv": 4, "ConstantOfShape": 1, "Pad": 3, "Concat": 1,
                               "DepthToSpace": 1, "Slice": 1, "Add": 1},
    "nearest_ceil_x4": {"Resize": 0, "Conv": 2, "Transpose": 3, "Concat": 0, "Pad": 0, "DepthToSpace": 0},
}


def _spatial_concats(model) -> list:
    graph = GraphView(model)
    return [n.name for n in model.graph.node if n.op_type == "Concat"
            and next(a.i for a in n.attribute if a.name == "axis") % len(graph.shape(n.output[0])) >= 2]


def _without_the_join_rule(tmp_path):
    import json

    path = tmp_path / "tflite_joins.json"
    path.write_text(json.dumps({"name": "tflite_joins", "extends": "tflite",
                                "operators": {"Concat": {"note": "the rule left out"}}}))
    return load_profile(path)


@pytest.mark.parametrize("case", sorted(REPRODUCER_10))
def test_a_channel_concat_of_spatial_joins_takes_another_form(case, tmp_path):
    from tests.helpers import assert_rewrites, forms

    model, passes, form, without = REPRODUCER_10[case]
    new, report = assert_rewrites(model, passes, REPRODUCER_10_OPS[case], target="tflite")
    assert forms(report)[0] == form and report.target["fits"]
    assert _spatial_concats(new) == []
    notes = [n for r in report.records("rewritten") for n in r.notes]
    assert any(f"form '{without}" in n and "joins along the channel axis what is joined along a spatial axis" in n
               for n in notes), notes
    # without the rule the profile takes the form onnx2tf mis-converts
    _, report = optimize(model, passes=passes, target=_without_the_join_rule(tmp_path))
    assert forms(report)[0] == without and report.target["fits"]


def test_a_node_whose_only_form_joins_spatial_joins_is_left_and_says_why(tmp_path):
    """Where every other form is out (a profile that also runs no Transpose takes the
    pointwise form away; in a run of the resize pass alone the deconv form's
    ConvTranspose stays, and the matmul form breaks MatMul.computed_operands), the
    nearest Resize is left as it is, with the Concat the shuffle form would build named."""
    import json

    from tests.helpers import assert_skips

    path = tmp_path / "no_transpose.json"
    path.write_text(json.dumps({"name": "no_transpose", "extends": "tflite",
                                "operators": {"Transpose": {"supported": False}}}))
    model = REPRODUCER_10["nearest_ceil_x4"][0]
    report = assert_skips(model, "resize", code="no-form", target=str(path),
                          reason=r"no lowering form runs on target 'no_transpose'.*'shuffle[^']*' would leave 1 "
                                 r"node\(s\) the target does not run \(Concat 'up/resize/copies': joins along the "
                                 r"channel axis what is joined along a spatial axis: 'up/resize/shift' \(edge Pad")
    assert not report.target["fits"]


# --- the same cases through the converter itself (needs onnx2tf and ai-edge-litert: benchmarks/requirements-tflite.txt)

def _converter_missing() -> str:
    from importlib.util import find_spec

    missing = [m for m in ("onnx2tf", "ai_edge_litert") if find_spec(m) is None]
    return f"not installed: {', '.join(missing)} (pip install -r benchmarks/requirements-tflite.txt)" if missing else ""


def _through_onnx2tf(original, rewritten, work):
    """The rewritten model through onnx2tf (flatbuffer_direct, float32) and LiteRT, against
    onnxruntime on the original (benchmarks/convert_tflite.py): its Outcome."""
    from benchmarks import convert_tflite as ct
    from convrewrite import save_model

    work.mkdir()
    path = str(work / "rewritten.onnx")
    save_model(rewritten, path)
    out = ct.Outcome(work.name, "rewritten", "flatbuffer_direct")
    tflite, log, _ = ct.convert(path, str(work), "rewritten", "flatbuffer_direct")
    ct.evaluate(tflite, log, path, out, [(1, *ct.reference_outputs(original, 1))])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(REPRODUCER_10))
def test_onnx2tf_converts_and_matches_the_form_the_profile_picks(case, tmp_path):
    """The form the profile picks converts, runs in LiteRT and matches onnxruntime on
    the original (max abs error <= 1e-4 of the output's scale), with no TRANSPOSE_CONV or
    RESIZE_*; the form the rule keeps out does not (if onnx2tf stops mis-converting it,
    this says the rule can go)."""
    why = _converter_missing()
    if why:
        pytest.skip(f"onnx2tf tier: {why}")
    model, passes, form, without = REPRODUCER_10[case]
    rewritten, report = optimize(model, passes=passes, target="tflite")
    assert forms_of(report)[0] == form
    out = _through_onnx2tf(model, rewritten, tmp_path / "profile")
    assert out.converted and out.ran and out.within_tolerance, out.error
    assert out.flagged == [] and out.max_rel <= 1e-4, (out.flagged, out.max_rel)

    kept_out, report = optimize(model, passes=passes, target=_without_the_join_rule(tmp_path))
    assert forms_of(report)[0] == without
    out = _through_onnx2tf(model, kept_out, tmp_path / "kept_out")
    # onnx2tf writes it, and LiteRT cannot run it (a shape mismatch at the DEPTH_TO_SPACE or ADD after the
    # Concat, or an output of the wrong shape)
    assert out.converted, out.error
    assert not out.ran, f"{case}: LiteRT now runs the {without} form (error {out.max_rel}): the rule may go"


def forms_of(report) -> list:
    return [r.form for r in report.records("rewritten")]
