"""`int8_only` targets: float compute left in a quantized (QDQ) model is a
misfit; a float model, which its converter quantizes, is not judged by it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite import InputError, optimize
from convrewrite.target import check_model, load_profile
from qdq_models import quantized

MODELS = Path(__file__).resolve().parents[2] / "models"


def _profile(tmp_path, **spec) -> object:
    path = tmp_path / "int8.json"
    path.write_text(json.dumps({"name": "int8", **spec}))
    return load_profile(path)


def _with_float_conv(model: onnx.ModelProto) -> onnx.ModelProto:
    """The quantized model with one float 1x1 Conv appended to its output."""
    out = model.graph.output[0]
    channels = out.type.tensor_type.shape.dim[1].dim_value
    w = numpy_helper.from_array(np.ones((channels, channels, 1, 1), np.float32), "float_w")
    model.graph.initializer.append(w)
    model.graph.node.append(helper.make_node("Conv", [out.name, "float_w"], ["float_y"], name="float_conv"))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("float_y", TensorProto.FLOAT, None))
    return model


def test_float_compute_in_a_quantized_model_does_not_fit(tmp_path):
    int8 = _profile(tmp_path, int8_only=True)
    model = quantized("decoder")
    assert [v for v in check_model(model, int8) if v.rule == "int8_only"] == []   # every Conv is in a QDQ group
    found = [v for v in check_model(_with_float_conv(model), int8) if v.rule == "int8_only"]
    assert [(v.node, v.op) for v in found] == [("float_conv", "Conv")]
    assert "computes in float in a quantized model" in found[0].message
    assert [v for v in check_model(_with_float_conv(quantized("decoder")), _profile(tmp_path))
            if v.rule == "int8_only"] == []   # the key off: not judged


def test_a_float_model_is_left_to_its_converter():
    model = onnx.load(MODELS / "unet_decoder.onnx")
    assert [v for v in check_model(model, load_profile("arm-ethos-u55")) if v.rule == "int8_only"] == []


def test_a_quantized_model_rewritten_for_an_int8_target_stays_int8():
    _, report = optimize(quantized("decoder"), target="arm-ethos-u55")
    assert not [v for v in report.target["violations"] if v["rule"] == "int8_only"], report.target


@pytest.mark.parametrize("name, real_misfits", [
    ("ti-tidl", [("float_conv", "int8_only")]),
    ("arm-ethos-n78", [("up", "operators.ConvTranspose.kernel_sizes"), ("float_conv", "int8_only")])])
def test_quantize_and_dequantize_fit_where_qdq_models_are_imported(name, real_misfits):
    """TIDL (which lists every operator it runs) and the Ethos-N78 import QDQ
    models as pre-quantized: their QuantizeLinear / DequantizeLinear are not
    misfits, so only real ones are reported (the float Conv; on the N78 also
    the 4x4 ConvTranspose)."""
    profile = load_profile(name)
    model = onnx.load(MODELS / "deeplab_aspp_qdq_int8.onnx")
    assert sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node) > 60
    assert not [v for v in check_model(model, profile) if v.op in ("QuantizeLinear", "DequantizeLinear")]
    found = check_model(_with_float_conv(quantized("decoder")), profile)
    assert [(v.node, v.rule) for v in found] == real_misfits


@pytest.mark.parametrize("name", ["arm-ethos-u55", "arm-ethos-u85", "arm-ethos-n78", "ti-tidl"])
def test_the_int8_accelerators_say_so(name):
    assert load_profile(name).int8_only and not load_profile("generic-npu").int8_only


def test_int8_only_must_be_a_boolean(tmp_path):
    with pytest.raises(InputError, match="int8_only"):
        _profile(tmp_path, int8_only="yes")


def test_a_conv_whose_weight_is_not_int8_does_not_fit(tmp_path):
    """int8_only also means int8 weights (TFLite's int8 scheme): the bilinear
    x8 Resize rewritten without a target reads a uint8 kernel (w / 256), which
    such a target reports; the same model for the target has int8 weights."""
    model = quantized("resize_linear_x8")
    uint8, _ = optimize(model)
    found = [v for v in check_model(uint8, load_profile("arm-ethos-u55")) if v.rule == "int8_only"]
    assert [v.op for v in found] == ["Conv"] and "its weight is uint8 behind DequantizeLinear" in found[0].message
    assert [v for v in check_model(uint8, _profile(tmp_path)) if v.rule == "int8_only"] == []   # the key off
    int8, report = optimize(model, target="arm-ethos-u55")
    assert [v for v in check_model(int8, load_profile("arm-ethos-u55")) if v.rule == "int8_only"] == []
    assert report.target["fits"], report.target
