"""Quantized (QDQ) models: a rewrite never dequantizes them.

The models come from onnxruntime's quantize_static (QDQ format, per-channel
int8 weights, uint8 or int8 activations).  Every test counts what onnxruntime
runs after its own QDQ fusion: a rewrite must not add a float Conv (or any
float compute) where the original ran QLinearConv."""
from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("onnxruntime.quantization")

from convrewrite import optimize
from convrewrite.core.report import REWRITTEN, SKIPPED
from convrewrite.core.rewrite import Code
from passes import make_passes
from qdq_models import float_compute, fused_counts, quantized

logging.getLogger().setLevel(logging.ERROR)   # the quantizer's pre-processing advice
ACTIVATIONS = ("uint8", "int8")


def run(model, **options):
    new, report = optimize(model, passes=make_passes(None, options))
    return new, report, {r.node: r for r in report.rewrites}


def assert_still_quantized(before, after):
    """After onnxruntime's fusion: no more float compute, no fewer QLinearConv."""
    a, b = fused_counts(before), fused_counts(after)
    assert float_compute(b) <= float_compute(a), (dict(a), dict(b))
    assert b.get("QLinearConv", 0) >= a.get("QLinearConv", 0), (dict(a), dict(b))
    return a, b


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_a_quantized_dilated_conv_becomes_an_undilated_int8_conv_in_batch_form(act):
    model = quantized("dilated", act)
    new, report, records = run(model)
    r = records["aspp"]
    assert (r.status, r.form) == (REWRITTEN, "batch"), r.reason
    assert r.quantized_steps["fused"]["mean"] <= 0.05 and r.quantized_steps["spec"]["p99"] <= 1
    assert report.verification.equivalent
    before, after = assert_still_quantized(model, new)
    assert after["QLinearConv"] == before["QLinearConv"] == 1 and float_compute(after) == 0
    # the undilated Conv reads the very DequantizeLinear of the int8 weight the dilated one read
    conv = next(n for n in new.graph.node if n.op_type == "Conv")
    old = next(n for n in model.graph.node if n.op_type == "Conv")
    assert list(conv.input[1:]) == list(old.input[1:])
    assert not any(a.name == "dilations" and max(a.ints) > 1 for a in conv.attribute)
    # every data-movement op reads a DequantizeLinear and feeds a QuantizeLinear
    producer = {o: n for n in new.graph.node for o in n.output}
    for n in new.graph.node:
        if n.op_type in ("Pad", "SpaceToDepth", "Reshape", "Transpose", "DepthToSpace", "Slice"):
            assert producer[n.input[0]].op_type == "DequantizeLinear", n.name
            assert all(c.op_type == "QuantizeLinear" for c in new.graph.node if n.output[0] in c.input), n.name


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_a_quantized_dilated_conv_whose_outer_taps_read_padding_gets_a_sliced_int8_weight(act):
    model = quantized("dilated_tiny", act)    # rate 6 on a 6x6 map: only the centre tap is live
    new, report, records = run(model)
    r = records["aspp"]
    assert (r.status, r.form) == (REWRITTEN, "plain"), r.reason
    assert report.verification.equivalent
    assert_centre_tap_weight(model, new, model)


def assert_centre_tap_weight(model, new, int8_source):
    """One fused QLinearConv, no float compute, and its weight the int8 centre
    tap of `int8_source`'s 3x3 weight."""
    before, after = assert_still_quantized(model, new)
    assert after["QLinearConv"] == 1 and float_compute(after) == 0
    sliced = next(t for t in new.graph.initializer if t.name.endswith("weight_q"))
    assert sliced.data_type == onnx.TensorProto.INT8 and list(sliced.dims) == [4, 4, 1, 1]
    original = next(t for t in int8_source.graph.initializer
                    if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4)
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(sliced),
                                  onnx.numpy_helper.to_array(original)[:, :, 1:2, 1:2])


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_a_fake_quantized_dilated_conv_whose_taps_are_sliced_gets_an_int8_weight(act):
    """Float weight -> QuantizeLinear -> DequantizeLinear (a QAT export): the
    weight's integers are the folded constant, sliced like an int8 initializer."""
    from qdq_models import fake_quantized

    model = fake_quantized(quantized("dilated_tiny", act))
    assert any(n.name.endswith("_fake_quant") for n in model.graph.node)
    new, report, records = run(model)
    r = records["aspp"]
    assert (r.status, r.form) == (REWRITTEN, "plain"), r.reason
    assert report.verification.equivalent
    assert_centre_tap_weight(model, new, quantized("dilated_tiny", act))


def _weight_scales(model: onnx.ModelProto) -> list:
    """The scales of every DequantizeLinear of an int8 weight initializer (4-D)."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    return [inits[n.input[1]] for n in model.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype == np.int8
            and inits[n.input[0]].ndim == 4]


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("name, node, form", [("convt", "up", "single-conv"), ("dilated", "aspp", "batch"),
                                              ("resize_linear", "resize", "deconv")])
def test_per_tensor_weights_are_rewritten_and_stay_quantized(name, node, form, act):
    """Weights quantized per tensor (one scale for the whole kernel): the
    forms move the one scale with the integers; verified in both runs, and
    after onnxruntime's fusion every Conv is still a QLinearConv."""
    model = quantized(name, act, per_channel=False)
    scales = _weight_scales(model)
    assert scales and all(s.size == 1 for s in scales)   # per tensor indeed
    new, report, records = run(model)
    r = records[node]
    assert (r.status, r.form) == (REWRITTEN, form), r.reason
    assert r.quantized_steps["spec"]["p99"] <= 1 and r.quantized_steps["fused"]["mean"] <= 0.05, r.quantized_steps
    assert report.verification.equivalent
    assert all(s.size == 1 for s in _weight_scales(new))
    before, after = assert_still_quantized(model, new)
    assert float_compute(after) == 0 and after["QLinearConv"] >= before.get("QLinearConv", 0)


def _with_float_node(model: onnx.ModelProto, op_type: str) -> onnx.ModelProto:
    """`model` (quantized, output y after a DequantizeLinear) with a float
    tail after y: a Relu, then a ConvTranspose 4x4 / stride 2 / pads 1 or a
    Conv 3x3 with dilation 2 (a partly quantized model; the node touches no
    Q/DQ, so it is in a float region)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in m.graph.node:
        for k, o in enumerate(n.output):
            if o == "y":
                n.output[k] = "y_quantized"
    c = 4   # every test block has 4 output channels
    w = (np.random.default_rng(3).standard_normal((c, c, 4, 4) if op_type == "ConvTranspose" else (c, c, 3, 3))
         * 0.2).astype(np.float32)
    m.graph.initializer.append(onnx.numpy_helper.from_array(w, "float_w"))
    attrs = ({"strides": [2, 2], "pads": [1, 1, 1, 1]} if op_type == "ConvTranspose"
             else {"dilations": [2, 2], "pads": [2, 2, 2, 2]})
    m.graph.node.append(onnx.helper.make_node("Relu", ["y_quantized"], ["float_in"], name="float_relu"))
    m.graph.node.append(onnx.helper.make_node(op_type, ["float_in", "float_w"], ["y"], name="float_node", **attrs))
    return m


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("name, node, op_type", [("decoder", "up", "ConvTranspose"), ("dilated", "aspp", "Conv")])
def test_a_partly_quantized_model_keeps_its_float_node_float_and_the_rest_quantized(name, node, op_type, act):
    model = _with_float_node(quantized(name, act), op_type)
    new, report, records = run(model)
    q, f = records[node], records["float_node"]
    assert q.status == REWRITTEN and q.quantized_steps is not None, q.reason   # a quantized form
    assert f.status == REWRITTEN and f.quantized_steps is None, f.reason       # a float form
    assert report.verification.equivalent, report.verification.detail
    # the float node's replacement computes in float: float weights, read directly, nothing quantized after it
    inits = {t.name: t for t in new.graph.initializer}
    consumers = {i: c for c in new.graph.node for i in c.input}
    float_convs = [n for n in new.graph.node if n.op_type == "Conv" and n.input[1] in inits]
    assert float_convs and all(inits[n.input[1]].data_type == onnx.TensorProto.FLOAT for n in float_convs)
    assert not any(consumers.get(n.output[0]) is not None and consumers[n.output[0]].op_type == "QuantizeLinear"
                   for n in float_convs)
    # after onnxruntime's fusion: the quantized part is as quantized as before, the only float compute is the
    # float node's replacement
    before, after = fused_counts(model), fused_counts(new)
    assert after["QLinearConv"] >= before["QLinearConv"] + (name == "decoder"), (dict(before), dict(after))
    assert float_compute(before) == 1 + (name == "decoder")   # the float node, and onnxruntime's float ConvTranspose
    assert float_compute(after) == len(float_convs), (dict(before), dict(after))


def _after_a_conv(op_type: str, name: str) -> onnx.ModelProto:
    """Conv 1x1 -> `op_type` (a rate-2 3x3 dilated Conv, or a 4x4 stride-2
    ConvTranspose) named `name` -> Relu: the node in the middle of a model."""
    from onnx import helper
    from qdq_models import _init, _model

    rng = np.random.default_rng(3)
    attrs = (dict(dilations=[2, 2], pads=[2] * 4) if op_type == "Conv" else dict(strides=[2, 2], pads=[1] * 4))
    inits = [_init(rng, "w0", (4, 4, 1, 1)), _init(rng, "w", (4, 4, 3, 3) if op_type == "Conv" else (4, 4, 4, 4))]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], name="c0"),
             helper.make_node(op_type, ["a", "w"], ["t"], name=name, **attrs),
             helper.make_node("Relu", ["t"], ["y"], name="relu")]
    return _model(nodes, (1, 4, 12, 12), inits)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("op_type, node", [("Conv", "aspp"), ("ConvTranspose", "up")])
def test_a_float_node_quantize_static_excludes_is_left_alone_saying_why(op_type, node, act):
    """quantize_static(nodes_to_exclude=[node]) leaves the node float, reading
    a DequantizeLinear with no QuantizeLinear after it.  Its float forms would
    read that DequantizeLinear from several nodes, and onnxruntime then stops
    fusing the int8 Conv before it (measured below with int8 activations: the
    QLinearConv becomes a float Conv), so it stays, and the reason says so."""
    import qdq_models
    from onnx import helper

    model = qdq_models.quantize(_after_a_conv(op_type, node), act, exclude=(node,))
    new, report, records = run(model)
    r = records[node]
    assert (r.status, r.code) == (SKIPPED, Code.QUANTIZED), r.reason
    assert "a float node where a quantized region ends" in r.reason and "stops fusing" in r.reason, r.reason
    assert fused_counts(new) == fused_counts(model) and fused_counts(model)["QLinearConv"] == 1
    if act == "int8":   # what the reason says: a second float reader of that DequantizeLinear
        target = next(n for n in model.graph.node if n.name == node)
        twin = helper.make_node(op_type, list(target.input), ["t2"], name="twin",
                                **{a.name: helper.get_attribute_value(a) for a in target.attribute})
        model.graph.node.append(twin)
        model.graph.output.append(helper.make_tensor_value_info("t2", onnx.TensorProto.FLOAT, None))
        assert fused_counts(model).get("QLinearConv", 0) == 0


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_a_strided_quantized_dilated_conv_keeps_quantized(act):
    model = quantized("dilated_s2", act)
    new, report, records = run(model)
    r = records["aspp"]
    assert r.status == REWRITTEN and r.form in ("subsample", "batch"), (r.status, r.form, r.reason)
    assert report.verification.equivalent
    before, after = assert_still_quantized(model, new)
    assert float_compute(after) == 0


@pytest.mark.parametrize("mode", ["batch", "depth", "slices", "taps"])
def test_no_dilated_form_dequantizes_even_when_asked_for(mode):
    """The float forms are passed over; the quantized batch form is used."""
    model = quantized("dilated")
    new, report, records = run(model, dilated_mode=mode)
    assert (records["aspp"].status, records["aspp"].form) == (REWRITTEN, "batch")
    assert float_compute(fused_counts(new)) == 0


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("name, denominator, dtype", [("resize_linear", 16, np.int8), ("resize_linear_x4", 64, np.int8),
                                                     ("resize_linear_x3", 9, np.int8),
                                                     ("resize_linear_x8", 256, np.uint8)])
def test_a_linear_resize_between_qdq_becomes_an_int8_conv(name, denominator, dtype, act):
    """DQ -> Resize(linear) -> Q: a depthwise ConvTranspose with the exact
    8-bit interpolation kernel (scale 1/D), which the convtranspose pass then
    lowers to one QDQ Conv + DepthToSpace; onnxruntime fuses it into QLinearConv.
    At x8 the 2-D taps reach 225/256: uint8 weights (zero point 0) hold them,
    and onnxruntime fuses them with int8 activations too."""
    model = quantized(name, act)
    new, report, records = run(model)
    r = records["resize"]
    assert (r.status, r.form) == (REWRITTEN, "deconv"), r.reason
    assert any(f"kernel = w / {denominator}" in n for n in r.notes), r.notes
    (deconv,) = [x for x in report.rewrites if x.node.startswith("resize/")]
    assert (deconv.status, deconv.form) == (REWRITTEN, "single-conv"), deconv.reason
    assert report.verification.equivalent
    assert r.quantized_steps["spec"]["p99"] <= 1 and r.quantized_steps["fused"]["mean"] <= 0.05
    assert r.quantized_steps["spec"]["mean"] <= 0.05 and r.quantized_steps["fused"]["p99"] <= 1
    before, after = assert_still_quantized(model, new)
    assert "Resize" not in after and float_compute(after) == 0
    assert after["QLinearConv"] == before["QLinearConv"] + 1
    # the interpolation weight is an int8 initializer behind DequantizeLinear, scale 1/D
    producer = {o: n for n in new.graph.node for o in n.output}
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in new.graph.initializer}
    conv = next(n for n in new.graph.node if n.op_type == "Conv" and n.name.startswith("resize/"))
    w_dq = producer[conv.input[1]]
    assert inits[w_dq.input[0]].dtype == dtype and inits[w_dq.input[2]].dtype == dtype
    assert np.allclose(inits[w_dq.input[1]], 1 / denominator) and not np.any(inits[w_dq.input[2]])


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_a_quantized_linear_resize_is_left_alone_when_the_run_does_not_lower_convtranspose(act):
    """onnxruntime runs a QDQ ConvTranspose in float: with the resize pass alone
    the deconv form would trade a Resize for float compute, so it does not apply."""
    model = quantized("resize_linear", act)
    new, report = optimize(model, passes=make_passes(["resize"]))
    (r,) = report.rewrites
    assert (r.status, r.code) == (SKIPPED, Code.QUANTIZED), r.reason
    assert "deconv: what it builds needs the convtranspose pass in the same run" in r.reason, r.reason
    assert "this run's passes (resize)" in r.reason
    before, after = assert_still_quantized(model, new)
    assert after == before and "ConvTranspose" not in after
    # with both passes the Resize becomes one more QLinearConv
    both, report = optimize(model, passes=make_passes(["resize", "convtranspose"]))
    assert [x.status for x in report.rewrites] == [REWRITTEN, REWRITTEN]
    assert fused_counts(both)["QLinearConv"] == before["QLinearConv"] + 1


def test_a_float_resize_still_becomes_a_convtranspose_with_the_resize_pass_alone():
    """`lowered_by` concerns the quantized form only: a float Resize's ConvTranspose is what the user asked for."""
    from qdq_models import resize_block

    model = resize_block("linear")   # 4 channels, 6x6, x2
    del model.graph.output[:]
    model.graph.output.append(onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 12, 12]))
    new, report = optimize(model, passes=make_passes(["resize"], {"resize_mode": "deconv"}))
    (r,) = report.rewrites
    assert (r.status, r.form) == (REWRITTEN, "deconv"), r.reason
    assert [n.op_type for n in new.graph.node].count("ConvTranspose") == 1


@pytest.mark.parametrize("name, why", [("resize_linear_x10", "multiples of 1/400, up to 361/400"),
                                       ("resize_cubic", "does not fit 8 bits exactly")])
def test_a_resize_whose_kernel_does_not_fit_int8_is_left_quantized_saying_by_how_much(name, why):
    model = quantized(name)
    new, report, records = run(model)
    r = records["resize"]
    assert (r.status, r.code) == (SKIPPED, Code.QUANTIZED)
    assert why in r.reason and "off by up to" in r.reason and "step(s) of its QuantizeLinear" in r.reason, r.reason
    assert_still_quantized(model, new)


def test_int8_interpolation_kernels():
    from passes.resize.interpolation import axis_kernel, phase_taps
    from passes.resize.quantized import int_kernel
    from passes.resize.rewrite import ResizeToConvTranspose

    model = quantized("resize_linear")
    from convrewrite.core.graph import GraphView
    g = GraphView(model)
    node = next(n for n in g.graph.node if n.op_type == "Resize")
    interp = ResizeToConvTranspose().match(node, g).params.spec.interp
    for s, d, top in [(2, 16, 9), (4, 64, 49), (3, 9, 9), (8, 256, 225), (16, None, None)]:
        ax = axis_kernel(phase_taps(interp, s), s)
        k = int_kernel([ax, ax], [s, s])
        if d is None:
            assert not k.exact and k.denominator == 4 * s * s and 0 < k.error <= 2.0 ** -k.best_shift / 2
            continue
        assert k.exact and k.denominator == d and int(np.abs(k.values).max()) == top
        w = np.multiply.outer(np.asarray(ax.kernel), np.asarray(ax.kernel))
        np.testing.assert_allclose(k.values / d, w, rtol=0, atol=1e-12)   # exact
        one = int_kernel([ax], [s])                                         # one axis alone: taps / (2s)
        assert one.exact and one.denominator in (2 * s, s)


def _interpolation(name):
    from convrewrite.core.graph import GraphView
    from passes.resize.rewrite import ResizeToConvTranspose

    g = GraphView(quantized(name))
    node = next(n for n in g.graph.node if n.op_type == "Resize")
    return ResizeToConvTranspose().match(node, g).params.spec.interp


@settings(max_examples=60, deadline=None)
@given(mode=st.sampled_from(["resize_linear", "resize_cubic"]), sy=st.integers(1, 12), sx=st.integers(1, 12))
def test_an_8_bit_interpolation_kernel_is_the_float_kernel_exactly(mode, sy, sx):
    """int_kernel's integers over D are the N-D kernel exactly; int8 where every
    |D * tap| <= 127, else uint8 (no negative tap, every D * tap <= 255); a kernel
    it calls inexact fits neither, and its best power-of-two weights are off by at
    most half a step of that scale."""
    from passes.resize.interpolation import axis_kernel, phase_taps
    from passes.resize.quantized import int_kernel

    interp = _interpolation(mode)
    axes = [axis_kernel(phase_taps(interp, s), s) for s in (sy, sx)]
    w = np.multiply.outer(np.asarray(axes[0].kernel, np.float64), np.asarray(axes[1].kernel, np.float64))
    k = int_kernel(axes, [sy, sx])
    if k.exact:
        assert k.values.shape == w.shape
        np.testing.assert_allclose(k.values.astype(np.float64) / k.denominator, w, rtol=0, atol=1e-12)
        assert k.largest == int(np.abs(k.values.astype(np.int64)).max())
        assert k.values.dtype == (np.int8 if k.largest <= 127 else np.uint8)
        return
    assert k.largest > 255 or (k.largest > 127 and w.min() < 0) or k.denominator is None
    assert 0 < k.error <= 2.0 ** -k.best_shift / 2 + 1e-15
    assert np.abs(w).max() * 2.0 ** k.best_shift <= 127.5 < np.abs(w).max() * 2.0 ** (k.best_shift + 1)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_a_nearest_resize_between_qdq_becomes_quantized_data_movement(act):
    model = quantized("resize_nearest", act)
    new, report, records = run(model)
    r = records["resize"]
    assert (r.status, r.form) == (REWRITTEN, "shuffle"), r.reason
    assert report.verification.equivalent and report.verification.max_abs_error == 0.0
    before, after = assert_still_quantized(model, new)
    assert after.get("QLinearConv") == 2 and "Resize" not in after
    # every data-movement op of the shuffle sits between Q/DQ of the Resize's grid
    producer = {o: n for n in new.graph.node for o in n.output}
    for n in new.graph.node:
        if n.op_type in ("Tile", "DepthToSpace"):
            assert producer[n.input[0]].op_type == "DequantizeLinear"
            (q,) = [c for c in new.graph.node if n.output[0] in c.input]
            assert q.op_type == "QuantizeLinear" and q.input[1] == producer[n.input[0]].input[1]


def test_the_deconv_form_of_a_quantized_nearest_resize_is_refused():
    model = quantized("resize_nearest")
    _, _, records = run(model, resize_nearest="deconv")
    assert records["resize"].form == "shuffle"   # the preferred form would dequantize; shuffle keeps it


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("name", ["convt", "decoder"])
def test_a_quantized_convtranspose_becomes_an_int8_conv(name, act):
    model = quantized(name, act)
    new, report, records = run(model)
    r = records["up"]
    assert (r.status, r.form) == (REWRITTEN, "single-conv"), r.reason
    assert report.verification.equivalent
    before, after = assert_still_quantized(model, new)
    assert "ConvTranspose" not in after and after["QLinearConv"] == before.get("QLinearConv", 0) + 1
    # the new Conv reads int8 weights and an int32 bias through DequantizeLinear: nothing became float
    inits = {t.name: t for t in new.graph.initializer}
    conv = next(n for n in new.graph.node if n.op_type == "Conv" and n.name.startswith("up/"))
    producer = {o: n for n in new.graph.node for o in n.output}
    w_dq, b_dq = producer[conv.input[1]], producer[conv.input[2]]
    assert inits[w_dq.input[0]].data_type == onnx.TensorProto.INT8
    assert inits[b_dq.input[0]].data_type == onnx.TensorProto.INT32
    floats = sum(np.prod(t.dims) for t in new.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    assert floats <= sum(np.prod(t.dims) for t in model.graph.initializer
                         if t.data_type == onnx.TensorProto.FLOAT) + 2 * 16 * 2   # scales only


def _with_float_bias(model: onnx.ModelProto) -> onnx.ModelProto:
    """The ConvTranspose's bias DequantizeLinear(int32) replaced by the float
    values it gives (the TensorRT-style QDQ export keeps biases float)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "ConvTranspose")
    dq = producer[node.input[2]]
    bias = (inits[dq.input[0]].astype(np.float64) * inits[dq.input[1]]).astype(np.float32)
    model.graph.initializer.append(numpy_helper.from_array(bias, "float_bias"))
    node.input[2] = "float_bias"
    model.graph.node.remove(dq)
    return model


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("form", ["single-conv", "phase-convs"])
def test_a_quantized_convtranspose_with_a_float_bias_keeps_its_int8_weights(form, act):
    model = _with_float_bias(quantized("convt", act))
    new, report, records = run(model, convtranspose_form=form)
    r = records["up"]
    assert (r.status, r.form) == (REWRITTEN, form), r.reason
    assert report.verification.equivalent
    # onnxruntime fuses no group with a float bias (the original's ConvTranspose runs float there too):
    # what counts is that every new Conv sits in its own QDQ group with int8 weights
    inits = {t.name: t for t in new.graph.initializer}
    producer = {o: n for n in new.graph.node for o in n.output}
    readers = {}
    for n in new.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n.op_type)
    convs = [n for n in new.graph.node if n.op_type == "Conv"]
    assert convs and "ConvTranspose" not in {n.op_type for n in new.graph.node}
    for c in convs:
        assert producer[c.input[0]].op_type == producer[c.input[1]].op_type == "DequantizeLinear"
        assert inits[producer[c.input[1]].input[0]].data_type == onnx.TensorProto.INT8
        assert readers[c.output[0]] == ["QuantizeLinear"]
    bias = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "float_bias"))
    got = np.concatenate([numpy_helper.to_array(inits[c.input[2]]) for c in convs])
    assert set(got.tolist()) == set(bias.tolist())   # each phase Conv reads its channels' float bias


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("name, node", [("convt_depthwise", "up"), ("resize_linear_x8", "resize")])
def test_a_grouped_quantized_convtranspose_for_tflite_is_fused_with_int8_activations_too(name, node, act):
    """tflite takes DepthToSpace in DCR only, and a grouped Conv's outputs come
    in CRD order: the single Conv's channels go through a Gather into DCR order
    (phase-convs' Concat would keep onnxruntime from fusing its groups with int8
    activations).  Every Conv is fused; nothing computes in float."""
    from convrewrite.target import check_model, load_profile

    model = quantized(name, act)
    new, report = optimize(model, passes=make_passes(None, {}), target="tflite")
    rewritten = [r for r in report.rewrites if r.status == REWRITTEN]
    assert rewritten and all(r.form == "single-conv" for r in rewritten if r.pass_name == "convtranspose"), \
        [(r.node, r.form, r.variant) for r in rewritten]
    assert any(r.variant.startswith("CRD via Gather, DCR") for r in rewritten), [r.variant for r in rewritten]
    assert report.verification.equivalent
    before, after = assert_still_quantized(model, new)
    assert float_compute(after) == 0 and after["QLinearConv"] == before.get("QLinearConv", 0) + 1, dict(after)
    assert check_model(new, load_profile("tflite")) == []


@pytest.mark.parametrize("form", ["single-conv", "phase-convs"])
def test_both_quantized_forms_compute_the_same_integers(form):
    model = quantized("convt")
    new, report, records = run(model, convtranspose_form=form)
    assert records["up"].form == form and report.verification.equivalent
    assert report.verification.max_abs_error == 0.0


MOVEMENT = ("Pad", "Slice", "Reshape", "Transpose", "DepthToSpace", "SpaceToDepth", "Concat")


def _grid(node: onnx.NodeProto, inits: dict) -> tuple:
    """A QuantizeLinear's or DequantizeLinear's (scale, zero point) values."""
    scale = inits[node.input[1]]
    zp = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else None
    return float(scale), (None if zp is None else int(zp))


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("form", ["single-conv", "phase-convs"])
@pytest.mark.parametrize("pads, strides", [((1, 1, 1, 1), (2, 2)), ((0, 0, 0, 0), (2, 2)), ((1, 0, 2, 1), (2, 3))])
def test_the_convtranspose_forms_move_data_on_the_grid_of_the_tensor_they_move(form, act, pads, strides):
    """Every Pad / Slice / Reshape / Transpose / DepthToSpace / Concat of a
    quantized ConvTranspose replacement reads DequantizeLinear and feeds
    QuantizeLinear of one and the same scale and zero point (the integers
    move unchanged)."""
    from qdq_models import convt_alone, quantize

    model = quantize(convt_alone(pads=pads, strides=strides), act)
    new, report, records = run(model, convtranspose_form=form)
    assert (records["up"].status, records["up"].form) == (REWRITTEN, form), records["up"].reason
    assert report.verification.equivalent
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in new.graph.initializer}
    producer = {o: n for n in new.graph.node for o in n.output}
    moved = [n for n in new.graph.node if n.op_type in MOVEMENT]
    assert moved, [n.op_type for n in new.graph.node]
    for n in moved:
        data = list(n.input) if n.op_type == "Concat" else [n.input[0]]
        dqs = [producer.get(i) for i in data]
        assert all(d is not None and d.op_type == "DequantizeLinear" for d in dqs), n.name
        qs = [c for c in new.graph.node if n.output[0] in c.input]
        assert qs and all(q.op_type == "QuantizeLinear" for q in qs), n.name
        grids = {_grid(g, inits) for g in dqs + qs}
        assert len(grids) == 1, (n.name, grids)


def test_a_quantized_convtranspose_without_a_quantize_after_it_is_left_alone():
    model = quantized("convt")
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and "y" in n.input[0])
    model.graph.output.append(onnx.helper.make_tensor_value_info(q.input[0], onnx.TensorProto.FLOAT, [1, 4, 12, 12]))
    new, report, records = run(model)
    r = records["up"]
    assert r.code == Code.QUANTIZED and "one QuantizeLinear" in r.reason


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.sampled_from([(2, 2), (3, 3), (4, 4), (3, 2)]),
       st.sampled_from([(2, 2), (1, 1), (3, 2)]), st.integers(0, 1), st.integers(0, 10 ** 6))
def test_integer_rearrangement_commutes_with_dequantization(cin_g, cout_g, group, kernel, strides, pad, seed):
    """Rearranging int8 weights, then dequantizing == dequantizing, then
    rearranging in float: exactly (the float forms' kernels)."""
    from convrewrite.core.builder import Builder
    from convrewrite.core.graph import GraphView
    from passes.convtranspose.forms import PhaseConvs, SingleConv
    from passes.convtranspose.quantized import _integer_convs
    from passes.convtranspose.rewrite import ConvTransposeToConv
    from builders import convt_model

    rng = np.random.default_rng(seed)
    cin, cout = cin_g * group, cout_g * group
    float_model = convt_model((1, cin, 5, 5), cout_g, kernel, group=group, strides=list(strides),
                              pads=[pad] * 4, seed=seed % 100)
    g = GraphView(float_model)
    match = ConvTransposeToConv().match(g.graph.node[0], g)
    wq = rng.integers(-128, 128, (cin, cout_g, *kernel)).astype(np.int8)
    zp = rng.integers(-3, 4, cout).astype(np.int8)
    scale = rng.uniform(0.001, 0.1, cout).astype(np.float32)
    # per output channel c = gi * cout_g + j: the weight's axis-1 channel j within group gi
    full_zp = np.tile(zp[:cout_g], group)
    full_scale = np.tile(scale[:cout_g], group)
    wf = np.empty(wq.shape, np.float32)
    for i in range(cin):
        gi = i // cin_g
        for j in range(cout_g):
            c = gi * cout_g + j
            wf[i, j] = (wq[i, j].astype(np.float32) - full_zp[c]) * full_scale[c]
    for form in (SingleConv(), PhaseConvs()):
        if form.applies(match, g) is not None:
            continue
        d = match.params
        p = form.lowering(d, form.variants(match, g)[0])
        from passes.convtranspose.forms import _phase_convs, _single_conv
        from passes.convtranspose.geometry import conv_weight
        from passes.convtranspose.quantized import QDeconv
        import dataclasses
        qd = QDeconv(**{f.name: getattr(d, f.name) for f in dataclasses.fields(type(d))}, x_grid=("s", "z"),
                     y_grid=("s", "z"), y_output="yq", wq="wq", w_scale=tuple(map(float, full_scale)),
                     w_zero_point=tuple(map(int, full_zp)), bq="", b_scale=())
        build = _single_conv if p.form == "single-conv" else _phase_convs
        fb = Builder(g, match.node, "f")
        build(fb, "x", conv_weight(wf, group), None, p)
        qb = Builder(g, match.node, "q")
        codes = conv_weight(np.arange(1, wq.size + 1, dtype=np.float64).reshape(wq.shape), group)
        y = build(qb, "x", codes, np.arange(1, cout + 1, dtype=np.float64), p)
        _integer_convs(qb, qd, wq, g, y)
        f_kernels = [onnx.numpy_helper.to_array(t) for t in fb.initializers if t.name.endswith("_weight")]
        inits = {t.name: onnx.numpy_helper.to_array(t) for t in qb.initializers}
        q_kernels = []
        for n in qb.nodes:
            if n.op_type == "DequantizeLinear" and "weight_dequantize" in n.name:
                k, s, z = (inits[i] for i in n.input)
                shape = (-1,) + (1,) * (k.ndim - 1)
                q_kernels.append((k.astype(np.float32) - z.reshape(shape)) * s.reshape(shape))
        assert len(f_kernels) == len(q_kernels) > 0
        for a, b in zip(f_kernels, q_kernels):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["convt", "decoder"])
def test_fake_quantized_weights_are_int8_weights(name):
    """Float weights behind QuantizeLinear -> DequantizeLinear (a QAT export)
    fold to their integers, so the ConvTranspose is rewritten as QDQ with
    int8 weights: after onnxruntime's fusion no float compute is left."""
    from qdq_models import fake_quantized

    model = fake_quantized(quantized(name))
    assert any(n.name.endswith("_fake_quant") for n in model.graph.node)
    new, report = optimize(model)
    assert report.verification.equivalent is True
    assert [r.form for r in report.records(REWRITTEN) if r.op == "ConvTranspose"] == ["single-conv"]
    assert float_compute(fused_counts(model)) == 1 and float_compute(fused_counts(new)) == 0
    conv = next(n for n in new.graph.node if n.op_type == "Conv")
    w_dq = next(n for n in new.graph.node if n.output[0] == conv.input[1])
    weight = next(t for t in new.graph.initializer if t.name == w_dq.input[0])
    assert weight.data_type == onnx.TensorProto.INT8


# --- opsets 13, 19 and 21 ---------------------------------------------------------------

# (test model, the node rewritten, its form, QLinearConv the rewrite adds after onnxruntime's fusion)
AT_OPSETS = [("decoder", "up", "single-conv", 1), ("dilated", "aspp", "batch", 0),
             ("resize_linear_x8", "resize", "deconv", 1), ("resize_nearest", "resize", "shuffle", 0)]


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("opset", [13, 19, 21])
@pytest.mark.parametrize("name, node, form, added", AT_OPSETS)
def test_qdq_models_of_opsets_13_19_and_21_stay_quantized(name, node, form, added, opset, act):
    """The float model built at `opset` and quantized there, with that opset's
    QDQ attributes spelled out (19: saturate; 21: block_size 0, output_dtype,
    weights without a zero point): rewritten as at opset 17, equal in steps,
    and as quantized after onnxruntime's fusion."""
    model = quantized(name, act, opset)
    assert model.opset_import[0].version == opset
    attributes = {a.name for n in model.graph.node for a in n.attribute if n.op_type == "QuantizeLinear"}
    assert ("saturate" in attributes) == (opset >= 19) and ("block_size" in attributes) == (opset >= 21)
    new, report, records = run(model)
    r = records[node]
    assert (r.status, r.form) == (REWRITTEN, form), r.reason
    assert report.verification.equivalent
    for mode in ("spec", "fused"):
        assert r.quantized_steps[mode]["mean"] <= 0.05 and r.quantized_steps[mode]["p99"] <= 1, r.quantized_steps
    before, after = assert_still_quantized(model, new)
    assert float_compute(after) == 0 and after["QLinearConv"] == before.get("QLinearConv", 0) + added
    assert new.opset_import[0].version == opset


@pytest.mark.parametrize("change", ["blocked_weight", "int4_weight", "uint4_weight"])
def test_a_blocked_or_int4_convtranspose_weight_is_left_alone_saying_why(change):
    """Opset 21's blocked (block_size > 0) and int4 weights: the quantized
    ConvTranspose forms rearrange 8-bit (and wider) integers with per-tensor
    or per-channel scales, so the node is left as it is, `quantized`, with
    the reason; never dequantized into float."""
    import qdq_models

    model = getattr(qdq_models, change)(quantized("convt", "uint8", 21), "ConvTranspose")
    new, report, records = run(model)
    r = records["up"]
    assert (r.status, r.code) == (SKIPPED, Code.QUANTIZED), r.reason
    why = {"blocked_weight": "uses blocked quantization (block_size)", "int4_weight": "its weight is int4:",
           "uint4_weight": "its weight is uint4:"}[change]
    assert why in r.reason, r.reason
    assert report.verification.equivalent
    assert fused_counts(new) == fused_counts(model)


@pytest.mark.parametrize("change", ["blocked_weight", "int4_weight"])
def test_a_dilated_conv_reads_a_blocked_or_int4_weight_as_it_is_and_slices_none(change):
    """The dilated forms read the weight's DequantizeLinear as it is, so a
    blocked or int4 weight is rewritten exactly; where taps would be sliced
    off (rate 6 on a 6x6 map) the node is left alone saying why."""
    import qdq_models

    model = getattr(qdq_models, change)(quantized("dilated", "uint8", 21), "Conv")
    new, report, records = run(model)
    assert (records["aspp"].status, records["aspp"].form) == (REWRITTEN, "batch"), records["aspp"].reason
    assert report.verification.equivalent
    conv = next(n for n in new.graph.node if n.op_type == "Conv")
    assert list(conv.input[1:]) == list(next(n for n in model.graph.node if n.op_type == "Conv").input[1:])

    tiny = getattr(qdq_models, change)(quantized("dilated_tiny", "uint8", 21), "Conv")
    _, _, records = run(tiny)
    r = records["aspp"]
    assert (r.status, r.code) == (SKIPPED, Code.QUANTIZED), r.reason
    why = "uses blocked quantization (block_size)" if change == "blocked_weight" else "the weight is int4"
    assert "taps were dropped and" in r.reason and why in r.reason, r.reason


# --- int8 weights for bilinear x8 (an int8-only target) ----------------------------------

def _weight_types(model) -> set:
    """The integer types of the weights every Conv / ConvTranspose reads through DequantizeLinear."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    return {inits[producer[n.input[1]].input[0]].data_type for n in model.graph.node
            if n.op_type in ("Conv", "ConvTranspose")}


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_a_bilinear_x8_resize_for_an_int8_only_target_gets_int8_weights_in_parts(act):
    """Ethos-U55 takes int8 weights only (int8_only): the uint8 kernel w / 256
    (taps up to 225) does not fit it, so the variant with each weight split
    into two int8 parts over two copies of its channel is built, and the
    convtranspose pass lowers that grouped ConvTranspose into an int8 Conv."""
    model = quantized("resize_linear_x8", act)
    new, report = optimize(model, target="arm-ethos-u55")
    records = {r.node: r for r in report.rewrites}
    r = records["resize"]
    assert (r.status, r.form) == (REWRITTEN, "deconv"), r.reason
    assert "target arm-ethos-u55: form 'deconv, int8 weights in 2 parts' fits" in r.notes, r.notes
    assert any(n.startswith("target arm-ethos-u55: form 'deconv' not used") for n in r.notes), r.notes
    (deconv,) = [x for x in report.rewrites if x.node.startswith("resize/")]
    assert (deconv.status, deconv.form) == (REWRITTEN, "single-conv"), deconv.reason
    assert report.verification.equivalent
    for mode in ("spec", "fused"):
        assert r.quantized_steps[mode]["mean"] <= 0.05 and r.quantized_steps[mode]["p99"] <= 1, r.quantized_steps
    assert _weight_types(new) == {onnx.TensorProto.INT8}
    assert not [v for v in report.target["violations"] if v["rule"] == "int8_only"], report.target
    before, after = assert_still_quantized(model, new)
    assert "Resize" not in after and float_compute(after) == 0
    assert after["QLinearConv"] == before["QLinearConv"] + 1
    # the copies' Concat sits between a DequantizeLinear and a QuantizeLinear of x's grid
    producer = {o: n for n in new.graph.node for o in n.output}
    (concat,) = [n for n in new.graph.node if n.op_type == "Concat" and n.name.startswith("resize/")]
    (q,) = [n for n in new.graph.node if concat.output[0] in n.input]
    dq = producer[concat.input[0]]
    assert dq.op_type == "DequantizeLinear" and q.op_type == "QuantizeLinear" and q.input[1:] == dq.input[1:]
    x_dq = producer[next(n for n in model.graph.node if n.op_type == "Resize").input[0]]
    assert list(q.input[1:]) == list(x_dq.input[1:])


def _run_fused(model, x):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_int8_weights_in_parts_compute_the_uint8_forms_integers(act):
    """One int32 accumulation of the parts is the uint8 weight's: under
    onnxruntime's fused int8 execution the two rewrites give the same
    output, bit for bit."""
    model = quantized("resize_linear_x8", act)
    uint8, _ = optimize(model)
    int8, _ = optimize(model, target="arm-ethos-u55")
    assert _weight_types(uint8) == {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    assert _weight_types(int8) == {onnx.TensorProto.INT8}
    x = np.random.default_rng(0).standard_normal((16, 4, 3, 3)).astype(np.float32) * 2
    for k in range(len(x)):
        np.testing.assert_array_equal(_run_fused(uint8, x[k:k + 1]), _run_fused(int8, x[k:k + 1]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-127 * 3, 127 * 3), min_size=1, max_size=40), st.integers(1, 4))
def test_int8_parts_sum_to_the_weight_and_fit_int8(weights, parts):
    from passes.resize.quantized import int8_parts

    w = np.array(weights)
    if np.abs(w).max() > 127 * parts:
        with pytest.raises(AssertionError):
            int8_parts(w, parts)
        return
    p = int8_parts(w, parts)
    assert p.dtype == np.int8 and p.shape == (parts, len(weights))
    np.testing.assert_array_equal(p.astype(np.int64).sum(axis=0), w)
    assert p.astype(np.int64).max(axis=0).tolist() == [-(-v // parts) for v in weights]   # ceil(w / parts)


@pytest.mark.parametrize("name, labels", [
    ("resize_linear", ["deconv", "deconv, concat edge"]),
    ("resize_linear_x8", ["deconv", "deconv, concat edge", "deconv, int8 weights in 2 parts",
                          "deconv, concat edge, int8 weights in 2 parts"])])
def test_quantized_deconv_costs_are_exact(name, labels):
    """Every variant of the quantized deconv form: its Cost (MACs -- twice
    the uint8 form's with int8 parts --, bytes moved by the edge pad and the
    copies, nodes with every Q/DQ, rank) is the built replacement's."""
    from convrewrite.core.cost import model_cost
    from convrewrite.core.forms import rank
    from convrewrite.core.graph import GraphView
    from convrewrite.core.lowering import build
    from convrewrite.core.standalone import replacement_model

    g = GraphView(quantized(name, "int8"))
    p = make_passes(["resize"])[0]
    match = p.match(next(n for n in g.graph.node if n.op_type == "Resize"), g)
    options = rank(p, match, g, None, with_variants=True, with_opt_in=True).options
    assert [o.label for o in options] == labels
    for o in options:
        assert o.cost == model_cost(replacement_model(build(p, match, o, g), g)), o.label
    assert [o.cost.macs for o in options[::2]][1:] in ([], [2 * options[0].cost.macs])


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_a_stride_1_quantized_convtranspose_leaves_no_dead_qdq_pair(act):
    """Stride 1: no shuffle, no crop, the Conv's output is what the final
    QuantizeLinear reads.  The form put a Q -> DQ pair after the Conv anyway,
    read by nothing, and it stayed in the saved model (two dead nodes)."""
    model = quantized("convt_s1", act)
    new, report, records = run(model)
    assert (records["up"].status, records["up"].form) == (REWRITTEN, "single-conv"), records["up"].reason
    assert report.verification.equivalent
    read = {i for n in new.graph.node for i in n.input} | {o.name for o in new.graph.output}
    assert all(o in read for n in new.graph.node for o in n.output), [n.name for n in new.graph.node]
    assert len(new.graph.node) == len(model.graph.node)         # weight and bias DQ, ConvTranspose -> Conv, Q
    assert records["up"].nodes_after == 4                        # weight DQ, bias DQ, Conv, Q
    assert_still_quantized(model, new)


def _batched(model: onnx.ModelProto, batch) -> onnx.ModelProto:
    """The model with its input's batch `batch` (an int, or a symbolic name)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    dim = out.graph.input[0].type.tensor_type.shape.dim[0]
    if isinstance(batch, int):
        dim.dim_value = batch
    else:
        dim.dim_param = batch
    del out.graph.value_info[:]
    return out


def _with_run_time_bias(model: onnx.ModelProto, op_type: str) -> onnx.ModelProto:
    """The first `op_type`'s bias DequantizeLinear replaced by a float graph input."""
    from onnx import TensorProto, helper

    producer = {o: n for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.op_type == op_type)
    dq = producer[node.input[2]]
    channels = next(t for t in model.graph.initializer if t.name == dq.input[0]).dims[0]
    node.input[2] = "bias_run_time"
    model.graph.node.remove(dq)
    model.graph.input.append(helper.make_tensor_value_info("bias_run_time", TensorProto.FLOAT, [channels]))
    used = {i for n in model.graph.node for i in n.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model


def _qdq_cost_model(case: str) -> onnx.ModelProto:
    """A quantized test model by case name: `name[/act][/opset N, per tensor][/float bias][/run-time bias]`."""
    from qdq_models import quantized_float8

    name, *changes = case.split("/")
    act = next((c for c in changes if c in ACTIVATIONS), "int8")
    if "float8" in changes:
        return quantized_float8(name)
    opset = next((int(c.split()[1].rstrip(",")) for c in changes if c.startswith("opset ")), None)
    model = quantized(name, act, opset, per_channel=False) if opset else quantized(name, act)
    if "float bias" in changes:
        model = _with_float_bias(model)
    if "run-time bias" in changes:
        model = _with_run_time_bias(model, "Conv")
    return model


# (case for _qdq_cost_model, the node's op type, the pass, the quantized forms that must be among the options)
QDQ_COST_CASES = [
    ("convt", "ConvTranspose", "convtranspose", {"single-conv", "phase-convs"}),
    ("convt/uint8", "ConvTranspose", "convtranspose", {"single-conv", "phase-convs"}),
    ("convt/opset 11, per tensor", "ConvTranspose", "convtranspose", {"single-conv", "phase-convs"}),
    ("convt/float bias", "ConvTranspose", "convtranspose", {"single-conv", "phase-convs"}),
    ("convt/float8", "ConvTranspose", "convtranspose", {"single-conv", "phase-convs"}),
    ("convt_depthwise", "ConvTranspose", "convtranspose", {"single-conv", "phase-convs"}),
    ("convt_s23", "ConvTranspose", "convtranspose", {"single-conv", "phase-convs"}),
    ("convt_s1", "ConvTranspose", "convtranspose", {"single-conv", "phase-convs"}),
    ("convt_k2", "ConvTranspose", "convtranspose", {"single-conv", "phase-convs"}),
    ("dilated", "Conv", "dilated-conv", {"batch", "im2col"}),
    ("dilated/uint8", "Conv", "dilated-conv", {"batch", "im2col"}),
    ("dilated/run-time bias", "Conv", "dilated-conv", {"batch", "im2col"}),
    ("dilated/float8", "Conv", "dilated-conv", {"batch", "im2col"}),
    ("dilated_s2", "Conv", "dilated-conv", {"subsample", "im2col"}),
    ("dilated_s2/run-time bias", "Conv", "dilated-conv", {"subsample", "im2col"}),
    ("dilated_tiny", "Conv", "dilated-conv", {"plain"}),
    ("dilated_tiny/run-time bias", "Conv", "dilated-conv", {"plain"}),
    ("dilated_1d", "Conv", "dilated-conv", {"batch", "im2col"}),
    ("dilated_1d_s2", "Conv", "dilated-conv", {"subsample", "im2col"}),
    ("dilated_asym", "Conv", "dilated-conv", {"batch", "im2col"}),
    ("dilated_unaligned", "Conv", "dilated-conv", {"im2col"}),
    ("dilated_depthwise", "Conv", "dilated-conv", {"batch", "im2col"}),
    ("dilated_depthwise_k2_s2", "Conv", "dilated-conv", {"im2col"}),
    ("dilated_grouped", "Conv", "dilated-conv", {"batch", "im2col"}),
    ("dilated_depthwise_dropped/run-time bias", "Conv", "dilated-conv", {"batch", "im2col"}),
    ("resize_nearest", "Resize", "resize", {"shuffle"}),
    ("resize_nearest/uint8", "Resize", "resize", {"shuffle"}),
    ("resize_nearest/float8", "Resize", "resize", {"shuffle"}),
    ("resize_nearest_x3", "Resize", "resize", {"shuffle"}),
    ("resize_nearest_edge", "Resize", "resize", {"shuffle"}),
    ("resize_linear", "Resize", "resize", {"deconv"}),
    ("resize_linear_x3", "Resize", "resize", {"deconv"}),
    ("resize_linear_x8", "Resize", "resize", {"deconv"}),
    # opset 10: every pixel shuffle between Q/DQ is Reshape/Transpose (no 8-bit DepthToSpace in onnxruntime there)
    ("convt/opset 10, per tensor", "ConvTranspose", "convtranspose", {"single-conv", "phase-convs"}),
    ("convt_k2/opset 10, per tensor", "ConvTranspose", "convtranspose", {"single-conv", "phase-convs"}),
    ("dilated/opset 10, per tensor", "Conv", "dilated-conv", {"batch", "im2col"}),
    ("dilated_depthwise/opset 10, per tensor", "Conv", "dilated-conv", {"batch", "im2col"}),
    ("dilated_depthwise_k2_s2/opset 10, per tensor", "Conv", "dilated-conv", {"im2col"}),
    ("resize_nearest/opset 10, per tensor", "Resize", "resize", {"shuffle"}),
    ("resize_nearest_x3/opset 10, per tensor", "Resize", "resize", {"shuffle"}),
]


@pytest.mark.parametrize("batch", [1, 3, "N"])
@pytest.mark.parametrize("case, op_type, pass_name, forms", QDQ_COST_CASES, ids=[c[0] for c in QDQ_COST_CASES])
def test_quantized_form_costs_are_exact(case, op_type, pass_name, forms, batch):
    """Every quantized ConvTranspose, dilated and Resize form and variant, at
    batch 1, a static batch of 3 and a symbolic one, with int8, uint8 and
    float8 activations, per-tensor and float biases and a bias computed at
    run time: its Cost -- MACs, grouped MACs and bytes (per batch item),
    nodes with every QuantizeLinear / DequantizeLinear it builds, largest
    rank -- is what core/cost.py measures on the built replacement.  (Q and
    DQ are not data movement there: they compute, so they count as nodes and
    move no bytes.)"""
    from convrewrite.core.cost import model_cost
    from convrewrite.core.forms import rank
    from convrewrite.core.graph import GraphView
    from convrewrite.core.lowering import build
    from convrewrite.core.rewrite import Match
    from convrewrite.core.standalone import replacement_model
    from helpers import assert_cost_exact

    model = _batched(_qdq_cost_model(case), batch)
    g = GraphView(model)
    p = make_passes([pass_name])[0]
    match = p.match(next(n for n in g.graph.node if n.op_type == op_type), g)
    assert isinstance(match, Match), match
    options = rank(p, match, g, None, with_variants=True, with_opt_in=True).options
    assert options and all(o.form.keeps_quantized for o in options), [o.label for o in options]
    assert forms <= {o.form.name for o in options}, [o.label for o in options]
    assert qdq_nodes(options[0], p, match, g), "the replacement builds no Q/DQ: not a quantized form"
    for o in options:
        assert_cost_exact(o, model_cost(replacement_model(build(p, match, o, g), g)),
                          batch if isinstance(batch, int) else 1)


def qdq_nodes(option, p, match, g) -> int:
    from convrewrite.core.lowering import build

    return sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in build(p, match, option, g).nodes)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_an_opset_11_convtranspose_quantized_per_tensor_is_rewritten(act):
    """torch's opset-11 export quantized by quantize_static: per-tensor scales
    (DequantizeLinear has no axis before 13), an int32 bias.  The quantized
    form dequantized the bias with one scale per channel and axis 0, a node
    opset 11 does not have; onnxruntime refused the replacement and the
    rewrite was rolled back (verification-failed).  Equal scales stay one."""
    model = quantized("convt", act, 11, per_channel=False)
    assert model.opset_import[0].version == 11
    new, report, records = run(model)
    r = records["up"]
    assert (r.status, r.form) == (REWRITTEN, "single-conv"), r.reason
    assert report.verification.equivalent
    for mode in ("spec", "fused"):
        assert r.quantized_steps[mode]["mean"] <= 0.05 and r.quantized_steps[mode]["p99"] <= 1, r.quantized_steps
    assert not any(a.name == "axis" for n in new.graph.node if n.op_type == "DequantizeLinear" for a in n.attribute)
    before, after = assert_still_quantized(model, new)
    assert float_compute(after) == 0
