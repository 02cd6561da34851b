"""The profile key `dense_dilation`: a target that runs a dilated Conv, but as
a dense kernel holding the skipped positions as zeros (Vela 5.2 for Ethos-U:
the hardware dilates by 1 or 2, a larger rate is written into the kernel).

Its validation, the dense kernel it describes, `needs_lowering`'s verdict on
dilated, undilated and 1x1 Convs, and what the driver then does: a Conv whose
dense kernel costs enough more MACs is lowered to a form with only the true
taps (end to end under `arm-ethos-u55`), and one for which no form fits
stays, with the reason.  What Vela itself does with such models is in
test_vela.py and docs/ethos_u.md."""
from __future__ import annotations

import json
import re

import pytest

from convrewrite import optimize
from convrewrite.core.errors import InputError
from convrewrite.core.graph import GraphView
from convrewrite.core.report import REWRITTEN
from convrewrite.core.rewrite import Code
from convrewrite.target import load_profile, needs_lowering, runs_as_is_reason

from builders import conv_model
from helpers import assert_rewrites, assert_skips, op_counts

VELA_LIKE = {"native_dilations": [1, 2], "min_macs_saved_per_output": 1000}


def profile(tmp_path, name="dense", **spec):
    """A profile file of the test's own, loaded like a user's."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, **spec}))
    return load_profile(path)


def verdict(model, target):
    graph = GraphView(model)
    return needs_lowering(graph.graph.node[-1], graph, target)


def dilated(channels=32, rate=6, kernel=3, size=32, group=1, **attrs):
    """A kernel x kernel Conv at `rate`, padded to keep the size ('conv')."""
    return conv_model((1, channels, size, size), (channels, channels // group, kernel, kernel),
                      dilations=[rate, rate], pads=[(kernel - 1) * rate // 2] * 4, group=group, **attrs)


# --- validation ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, message", [
    (True, r"dense_dilation: must be null or an object with native_dilations, min_macs_saved_per_output, "
           r"min_dense_ratio, note, not true/false"),
    ({}, r"dense_dilation: needs 'native_dilations': the dilation factors the hardware steps by itself"),
    ({"native_dilations": []}, r"dense_dilation\.native_dilations: empty list"),
    ({"native_dilations": [1, 0]}, r"dense_dilation\.native_dilations\[1\]: must be a positive integer, not 0"),
    ({"native_dilations": [1, 2], "min_macs_saved_per_output": 0},
     r"dense_dilation\.min_macs_saved_per_output: must be a positive integer, not 0"),
    ({"native_dilations": [1, 2], "min_dense_ratio": 0.5},
     r"dense_dilation\.min_dense_ratio: must be a number of at least 1, not 0\.5"),
    ({"native_dilations": [1, 2], "min_dense_ratio": "4"},
     r"dense_dilation\.min_dense_ratio: must be a number of at least 1, not \"4\""),
    ({"native_dilations": [1, 2], "min_macs_saved": 10},
     r"dense_dilation: unknown key 'min_macs_saved' \(did you mean 'min_macs_saved_per_output'\?"),
])
def test_a_bad_dense_dilation_is_named_with_its_path(tmp_path, value, message):
    with pytest.raises(InputError, match=r"^profile .*dense\.json: " + message):
        profile(tmp_path, dense_dilation=value)


def test_dense_dilation_loads_defaults_and_extends(tmp_path):
    assert load_profile("generic-npu").dense_dilation is None
    p = profile(tmp_path, dense_dilation={"native_dilations": [1, 2]})
    assert p.dense_dilation.native_dilations == (1, 2) and p.dense_dilation.min_macs_saved_per_output == 1
    assert p.to_dict()["dense_dilation"] == {"native_dilations": [1, 2], "min_macs_saved_per_output": 1,
                                             "min_dense_ratio": 1.0}
    child = profile(tmp_path, "child", extends="dense.json", max_rank=4)
    assert child.dense_dilation == p.dense_dilation
    assert profile(tmp_path, "off", extends="dense.json", dense_dilation=None).dense_dilation is None
    for name, threshold, ratio in (("arm-ethos-u55", 5120, 1.0), ("arm-ethos-u85", 3840, 5.0)):
        d = load_profile(name).dense_dilation
        assert d.native_dilations == (1, 2) and d.min_macs_saved_per_output == threshold
        assert d.min_dense_ratio == ratio
        assert "FixupDilationGT2" in d.note


# --- the dense kernel ---------------------------------------------------------------------

@pytest.mark.parametrize("kernel, dilations, dense", [
    ((3, 3), (1, 1), (3, 3)),      # undilated
    ((3, 3), (2, 2), (3, 3)),      # the hardware's own factor
    ((3, 3), (3, 3), (7, 7)),      # odd: all of it in the kernel
    ((3, 3), (4, 4), (5, 5)),      # 2 x 2
    ((3, 3), (6, 6), (7, 7)),      # 2 x 3
    ((3, 3), (12, 12), (13, 13)),  # Vela: 42.5 GMAC for DeepLabV3's rate-12 ASPP Conv, a 13x13 kernel's
    ((3, 3), (36, 36), (37, 37)),
    ((1, 3), (6, 6), (1, 7)),      # a 1-tap axis has nothing to dilate
    ((3, 5), (2, 3), (3, 13)),
])
def test_dense_kernel_splits_the_rate_into_the_hardware_factor_and_zeros(kernel, dilations, dense):
    d = load_profile("arm-ethos-u55").dense_dilation
    assert d.dense_kernel(kernel, dilations) == dense


def test_native_factor_is_the_largest_listed_divisor():
    d = load_profile("arm-ethos-u55").dense_dilation
    assert [d.native_factor(r) for r in (1, 2, 3, 4, 5, 6)] == [1, 2, 1, 2, 1, 2]


# --- needs_lowering ---------------------------------------------------------------------------

def test_a_dilated_conv_whose_dense_kernel_costs_enough_needs_lowering(tmp_path):
    target = profile(tmp_path, dense_dilation=VELA_LIKE)
    # rate 6 -> hardware 2 x a 7x7 kernel: (49 - 9) * 32 channels = 1280 MACs more per output value
    assert verdict(dilated(rate=6), target) == (
        "Conv 'conv': not as a dilated Conv: target 'dense' computes dilation 6x6 as a dense 7x7 kernel "
        "(zeros included, hardware dilation 2x2), 1568 MACs per output value against the 288 of its 3x3 true "
        "taps (5.4x): 1280 more, and the profile lowers from 1000")
    assert "dense 7x7 kernel (zeros included, hardware dilation 1x1)" in verdict(dilated(rate=3), target)


@pytest.mark.parametrize("model, why", [
    (dilated(rate=1), "undilated"),
    (dilated(rate=2), "the hardware's own factor"),
    (dilated(rate=12, kernel=1), "a 1x1 kernel has no taps to spread"),
    (dilated(rate=4), "5x5 dense: (25 - 9) * 32 = 512 more, below 1000"),
    (dilated(channels=32, group=32, rate=12), "depthwise: (169 - 9) * 1 = 160 more"),
    (conv_model((1, 32, 32, 32), (32, 32, 3, 3), dilations=[1, 6], pads=[0, 6, 0, 6]), "rate 6 on W only: "
     "3x7 dense, (21 - 9) * 32 = 384 more"),
])
def test_a_conv_whose_dense_kernel_costs_little_is_left_to_the_target(tmp_path, model, why):
    assert verdict(model, profile(tmp_path, dense_dilation=VELA_LIKE)) is None, why


def test_a_dense_kernel_below_the_ratio_is_left_to_the_target(tmp_path):
    """Rate 4 on 512 channels: a 5x5 dense kernel, 8192 MACs more per output value
    but only 2.8x the true taps' (timm_resnet18_os8's layer4; on the U85 the nine
    one-tap Convs ran slower than Vela's 5x5 kernel)."""
    model = dilated(channels=512, rate=4)
    ratio = profile(tmp_path, dense_dilation={**VELA_LIKE, "min_dense_ratio": 3})
    assert verdict(model, ratio) is None
    assert "(5.4x): 20480 more, and the profile lowers from 1000 at 3x or more" in verdict(
        dilated(channels=512, rate=6), ratio)
    assert verdict(model, profile(tmp_path, dense_dilation=VELA_LIKE)).endswith(
        "(2.8x): 8192 more, and the profile lowers from 1000")
    graph = GraphView(model)
    assert runs_as_is_reason(graph.graph.node[0], graph, ratio).endswith(
        "(2.8x): 8192 more, below what the profile lowers from (1000 more at 3x or more); left unchanged")


def test_without_dense_dilation_a_dilated_conv_the_target_runs_stays(tmp_path):
    assert verdict(dilated(rate=12), profile(tmp_path)) is None
    assert verdict(dilated(rate=12), load_profile("generic-npu")).startswith(
        "Conv 'conv': dilation 12x12 not allowed")


def test_unknown_input_channels_are_not_judged(tmp_path):
    model = dilated(rate=12)
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "C"
    assert verdict(model, profile(tmp_path, dense_dilation=VELA_LIKE)) is None


def test_a_broken_rule_and_the_dense_kernel_are_both_reasons(tmp_path):
    target = profile(tmp_path, dense_dilation=VELA_LIKE, operators={"Conv": {"strides": [1]}})
    why = verdict(dilated(rate=12, strides=[2, 2]), target)
    assert re.match(r"^Conv 'conv': stride 2x2 not allowed .*; Conv 'conv': not as a dilated Conv: target 'dense' "
                    r"computes dilation 12x12 as a dense 13x13 kernel", why), why


# --- the driver ---------------------------------------------------------------------------------

def test_arm_ethos_u55_lowers_a_costly_dilated_conv_to_its_true_taps():
    """Rate 12 on 32 channels: Vela would compute a 13x13 kernel, 5120 more MACs per
    output value than the 9 true taps, the profile's threshold; the taps form
    (one Conv per tap, summed; no operator the U55 lacks) replaces it."""
    new, report = assert_rewrites(dilated(rate=12), "dilated-conv", {"Conv": 9, "Add": 8}, target="arm-ethos-u55")
    record = report.records(REWRITTEN)[0]
    assert record.form == "taps"
    assert "target arm-ethos-u55: form 'taps' fits" in record.notes
    assert ("target arm-ethos-u55 cannot run the Conv: Conv 'conv': not as a dilated Conv: target 'arm-ethos-u55' "
            "computes dilation 12x12 as a dense 13x13 kernel (zeros included, hardware dilation 2x2), 5408 MACs per "
            "output value against the 288 of its 3x3 true taps (18.8x): 5120 more, and the profile lowers from 5120"
            ) in record.notes
    assert report.target["fits"] and not any(n.op_type == "Conv" and any(a.name == "dilations" and max(a.ints) > 1
                                             for a in n.attribute) for n in new.graph.node)


def test_arm_ethos_u55_leaves_a_cheap_dilated_conv_with_the_reason():
    """Rate 6 on 32 channels: 1280 more MACs per output value; Vela's dense 7x7
    kernel was measured faster than the taps form there (docs/ethos_u.md)."""
    assert_skips(dilated(rate=6), "dilated-conv", target="arm-ethos-u55", code=Code.TARGET_RUNS_IT,
                 reason=r"^Conv 'conv': target 'arm-ethos-u55' runs it as it is \(no rule of the profile is broken\); "
                        r"it computes dilation 6x6 as a dense 7x7 kernel .* \(5\.4x\): 1280 more, below what the "
                        r"profile lowers from \(5120 more\); left unchanged$")


def test_the_aspp_rate_beyond_the_map_becomes_one_pointwise_conv():
    """Rate 36 on a 32x32 map: every tap but the centre reads only padding, so
    the exact simplification leaves a 1x1 Conv (Vela: a 37x37 kernel)."""
    new, report = assert_rewrites(dilated(rate=36), "dilated-conv", {"Conv": 1, "Add": 0}, target="arm-ethos-u55")
    conv = GraphView(new).graph.node[0]
    assert conv.op_type == "Conv" and GraphView(new).static_shape(conv.input[1]) == (32, 32, 1, 1)


def test_a_costly_dilated_conv_no_form_fits_stays_with_the_reason(tmp_path):
    """Where no form runs on the target the Conv stays as it is (never worse:
    the target ran it, densely, and would run none of the forms fully)."""
    target = profile(tmp_path, "no-slice", dense_dilation=VELA_LIKE, batch_must_be_one=True,
                     unsupported_operators=["Slice", "SpaceToDepth"])
    assert_skips(dilated(rate=12), "dilated-conv", target=target, code=Code.NO_FORM,
                 reason=r"^Conv 'conv': no lowering form runs on target 'no-slice', so the node is left as it is; "
                        r"closest first: '\w+' would leave \d+ node\(s\) the target does not run .* not fewer than "
                        r"the 0 it replaces(;|$)")
    new, report = optimize(dilated(rate=12), passes=["dilated-conv"], target=target)
    assert op_counts(new) == op_counts(dilated(rate=12)) and report.target["fits"]
    # it runs there as it is: --strict has nothing to count (it exited 3 while the summary said it fits)
    assert [r.code for r in report.left_alone] == [Code.NO_FORM] and report.unfinished == []
