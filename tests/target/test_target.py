"""Target profiles: loading and validation, per-node rules, the whole-model
compatibility check, and the queries the passes make (needs_lowering,
allows_op, and the driver's check of a replacement against a target)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite.core.builder import Builder
from convrewrite.core.forms import Cost, Form
from convrewrite.core.lowering import lower
from convrewrite.core.rewrite import Match, Skip
from convrewrite.core.errors import InputError
from convrewrite.core.graph import GraphView
from convrewrite.emit.pixel_shuffle import pixel_shuffle
from convrewrite.target.facts import node_facts
from convrewrite.target.rules import undecided
from convrewrite.target import (Profile, Violation, builtin_names, builtin_profiles, check_model,
                                format_violations, load_profile, needs_lowering, node_violations, op_violations,
                                runs_as_is_reason, target_report)

ROOT = Path(__file__).resolve().parents[2]
# The arm-ethos-u55 profile as it was written from Vela 3.6's document (rank 4, no
# Transpose, ConvTranspose stride 2 with SAME/VALID sizes, Pad constant on H/W): the
# rule machinery tests below use it as a rich vendor table; the built-in profile now
# follows Vela 5.2 (tests/target/test_vela.py).
U55_VELA36 = Path(__file__).resolve().parent / "ethos_u55_vela36.json"
F = TensorProto.FLOAT


# --- model building -----------------------------------------------------------------

def model_of(nodes, inputs, outputs, inits=(), opset=17):
    """inputs/outputs: {name: shape}; shapes may hold strings (symbolic) or None."""
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, F, s) for n, s in inputs.items()],
                          [helper.make_tensor_value_info(n, F, s) for n, s in outputs.items()], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def weight(name, *shape):
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def ints(name, values):
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def conv_model(op="Conv", x=(1, 4, 8, 8), w=(4, 4, 3, 3), out=None, **attrs):
    node = helper.make_node(op, ["x", "w"], ["y"], name="n", **attrs)
    return model_of([node], {"x": list(x)}, {"y": out}, [weight("w", *w)])


def only_node(model):
    graph = GraphView(model)
    return graph.graph.node[0], graph


def node_msgs(model, profile):
    node, graph = only_node(model)
    return node_violations(node, graph, profile)


def profile_file(tmp_path, spec, name="p.json"):
    path = tmp_path / name
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return path


def inline(tmp_path, spec) -> Profile:
    return load_profile(profile_file(tmp_path, spec))


# --- built-in profiles ------------------------------------------------------------------

def test_builtin_profiles_load_and_describe_themselves():
    names = builtin_names()
    assert {"generic-npu", "no-deconv"} <= set(names)
    vendor = [n for n in names if n not in ("generic-npu", "no-deconv")]
    assert len(vendor) >= 2
    listed = dict(builtin_profiles())
    assert sorted(listed) == names
    for name, description in listed.items():
        assert description and "\n" not in description
        p = load_profile(name)
        assert p.name == name and p.origin == "built-in"
    for name in vendor:
        p = load_profile(name)
        assert p.references and all(re.search(r"https://", r) for r in p.references)
        notes = [r.note for rules in p.operators.values() for r in rules]
        assert any(notes), f"{name}: rules should quote their source"


def test_generic_npu_is_what_the_issue_asks_for():
    p = load_profile("generic-npu")
    assert p.max_rank == 4 and p.batch_must_be_one
    for op in ("ConvTranspose", "Resize", "Upsample"):
        assert not p.supports(op)
    assert p.supports("Conv") and p.supports("DepthToSpace") and p.supports("SomeUnlistedOp")
    assert p.allows_op("Conv", kernel_shape=[3, 3], dilations=[1, 1])
    assert not p.allows_op("Conv", kernel_shape=[3, 3], dilations=[2, 2])
    assert not p.allows_op("Transpose", rank=6) and p.allows_op("Transpose", rank=4)


def test_no_deconv_lacks_only_convtranspose():
    p = load_profile("no-deconv")
    assert not p.supports("ConvTranspose")
    assert p.supports("Resize") and p.supports("Conv") and p.max_rank is None and not p.batch_must_be_one
    assert p.allows_op("Conv", kernel_shape=[3, 3], dilations=[4, 4])


def test_to_dict_round_trips(tmp_path):
    for name in builtin_names():
        p = load_profile(name)
        again = inline(tmp_path, p.to_dict())
        assert again.to_dict() == p.to_dict()
        assert {p: name}[p] == name  # hashable despite its operator table


def test_the_documented_examples_load(tmp_path):
    text = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```json\n(.*?)```", text, re.S) if '"operators"' in b]
    assert len(blocks) >= 2
    full = inline(tmp_path, blocks[0])
    assert full.name == "my-npu" and full.max_rank == 4
    # extends no-deconv, but gives ConvTranspose limits of its own: those win
    assert full.supports("ConvTranspose") and not full.supports("Resize")
    assert full.allows_op("ConvTranspose", kernel_shape=[2, 2], strides=[2, 2], dilations=[1, 1])
    assert not full.allows_op("ConvTranspose", kernel_shape=[3, 3], strides=[2, 2])
    inline(tmp_path, blocks[1])
    # together the examples use every key of the format
    from convrewrite.target.schema import COMMON_KEYS, GLOBAL_KEYS, OP_KEYS
    used = set()
    for block in blocks:
        spec = json.loads(block)
        used |= set(spec)
        for entry in spec.get("operators", {}).values():
            for rule in entry if isinstance(entry, list) else [entry]:
                used |= set(rule)
    every = set(GLOBAL_KEYS) | set(COMMON_KEYS) | {k for keys in OP_KEYS.values() for k in keys}
    assert every - used == set()


def test_extends_overrides_and_adds(tmp_path):
    base = profile_file(tmp_path, {"name": "base", "max_rank": 4, "unsupported_operators": ["Resize"],
                                   "operators": {"Conv": {"dilations": [1]}}}, "base.json")
    child = inline(tmp_path, {"extends": base.name, "max_rank": None, "unsupported_operators": ["Pad"],
                              "operators": {"Resize": {"factors": [2]}}})
    assert child.name == "p" and child.max_rank is None
    assert not child.supports("Pad") and child.supports("Resize")
    assert child.allows_op("Resize", factors=[2, 2]) and not child.allows_op("Resize", factors=[4, 4])
    assert not child.allows_op("Conv", kernel_shape=[3, 3], dilations=[2, 2])  # inherited
    built = inline(tmp_path, {"extends": "generic-npu", "operators": {"ConvTranspose": {"strides": [2]}}})
    assert built.supports("ConvTranspose") and not built.supports("Resize") and built.max_rank == 4


# --- validation errors -----------------------------------------------------------------

BAD_PROFILES = [
    ({"operators": {"ConvTranspose": {"kernal_shapes": [[2, 2]]}}},
     r"operators\.ConvTranspose: unknown key 'kernal_shapes' \(did you mean 'kernel_shapes'\? expected one of: .*strides"),
    ({"max_rnak": 4}, r"top level: unknown key 'max_rnak' \(did you mean 'max_rank'\?"),
    ({"operators": {"Conv": {"block_sizes": [2]}}},
     r"operators\.Conv: key 'block_sizes' does not apply to Conv \(it is for DepthToSpace, SpaceToDepth\)"),
    ({"max_rank": "4"}, r"max_rank: must be a positive integer, not \"4\""),
    ({"max_rank": True}, r"max_rank: must be a positive integer, not true"),
    ({"max_rank": 0}, r"max_rank: must be a positive integer, not 0"),
    ({"batch_must_be_one": 1}, r"batch_must_be_one: must be true or false, not a number 1"),
    ({"operators": {"DepthToSpace": {"modes": ["DRC"]}}},
     r"operators\.DepthToSpace\.modes\[0\]: \"DRC\" is not one of: DCR, CRD"),
    ({"operators": {"Resize": {"modes": ["bilinear"]}}}, r"operators\.Resize\.modes\[0\]: \"bilinear\" is not one of: nearest, linear, cubic"),
    ({"operators": {"Conv": {"strides": [0, 1]}}}, r"operators\.Conv\.strides\[0\]: must be a positive integer, not 0"),
    ({"operators": {"Conv": {"strides": [1.5]}}}, r"operators\.Conv\.strides\[0\]: must be a positive integer, not 1\.5"),
    ({"operators": {"Slice": {"steps": [0]}}}, r"operators\.Slice\.steps\[0\]: must be a non-zero integer"),
    ({"operators": {"Conv": {"dilations": []}}}, r"operators\.Conv\.dilations: empty list"),
    ({"operators": {"Conv": {"kernel_shapes": [2, 2]}}}, r"operators\.Conv\.kernel_shapes\[0\]: must be a list, not a number"),
    ({"operators": {"Conv": {"groups": ["depthwize"]}}}, r"operators\.Conv\.groups\[0\]: \"depthwize\" is not one of: standard, depthwise, grouped"),
    ({"operators": {"Conv": {"dilations": [1], "note": 3}}}, r"operators\.Conv\.note: must be a non-empty string"),
    ({"operators": {"ConvTranpose": {}}},
     r"operators: unknown ONNX operator 'ConvTranpose' \(did you mean 'ConvTranspose'\?\)"),
    ({"unsupported_operators": ["Resise"]}, r"unsupported_operators\[0\]: unknown ONNX operator 'Resise' \(did you mean 'Resize'\?\)"),
    ({"unsupported_operators": "Resize"}, r"unsupported_operators: must be a list, not a string"),
    ({"unsupported_operators": ["Resize"], "operators": {"Resize": {"factors": [2]}}},
     r"operators\.Resize: also listed in unsupported_operators"),
    ({"operators": {"Conv": {"supported": False, "strides": [1]}}}, r"operators\.Conv: '\"supported\": false' takes no limits \(found 'strides'\)"),
    ({"operators": {"Conv": [{"strides": [1]}, {"supported": False}]}}, r"operators\.Conv: \"supported\": false cannot be one of several forms"),
    ({"operators": {"Conv": []}}, r"operators\.Conv: empty list of forms"),
    ({"operators": {"Conv": "no"}}, r"operators\.Conv: must be an object \(one rule\) or a list of objects"),
    ({"operators": {"Conv": [{"strides": [1]}, {"stride": [2]}]}}, r"operators\.Conv\[1\]: unknown key 'stride' \(did you mean 'strides'\?"),
    ({"operators": ["Conv"]}, r"operators: must be an object mapping operator names to rules, not a list"),
    ({"unlisted_operators": "forbidden"}, r"unlisted_operators: \"forbidden\" is not one of: allowed, unsupported"),
    ({"name": ""}, r"name: must be a non-empty string"),
    ({"extends": "nowhere"}, r"extends: 'nowhere' is neither a built-in profile"),
    ([1, 2], r"the top level must be a JSON object, not a list"),
    ('{"max_rank": 4,,}', r"not valid JSON: Expecting property name enclosed in double quotes at line 1 column 16"),
    # deeper than json's decoder recurses: was an internal error (RecursionError)
    ("[" * 100_000 + "]" * 100_000, r"not a profile: JSON nested too deeply"),
]


@pytest.mark.parametrize("spec,message", BAD_PROFILES, ids=[m[:40] for _, m in BAD_PROFILES])
def test_bad_profiles_are_refused_in_one_line(tmp_path, spec, message):
    path = profile_file(tmp_path, spec)
    with pytest.raises(InputError) as e:
        load_profile(path)
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(f"profile {path}: "), text
    assert re.search(message, text), text


def test_missing_and_unknown_profiles(tmp_path):
    with pytest.raises(InputError, match=r"profile .*nothere\.json: no such file"):
        load_profile(tmp_path / "nothere.json")
    with pytest.raises(InputError, match=r"unknown target profile 'generic-npx': not a built-in profile "
                                         r"\(.*generic-npu.*\) and not a file"):
        load_profile("generic-npx")
    with pytest.raises(InputError, match=r"is a directory"):
        load_profile(tmp_path)
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"description": "\xe9"}')
    with pytest.raises(InputError, match=r"not UTF-8 text"):
        load_profile(path)


def test_circular_extends(tmp_path):
    profile_file(tmp_path, {"extends": "b.json"}, "a.json")
    profile_file(tmp_path, {"extends": "a.json"}, "b.json")
    with pytest.raises(InputError, match=r"extends: circular chain through 'a\.json'"):
        load_profile(tmp_path / "a.json")


def test_other_domains_are_written_domain_dot_op(tmp_path):
    p = inline(tmp_path, {"unsupported_operators": ["com.microsoft.FusedConv"]})
    node = helper.make_node("FusedConv", ["x", "w"], ["y"], name="f", domain="com.microsoft")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", F, None)], [weight("w", 4, 4, 3, 3)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    [v] = check_model(m, p)
    assert v.rule == "unsupported_operators" and v.node == "f"


# --- rules on single nodes ----------------------------------------------------------------

def test_the_issue_example_message(tmp_path):
    p = inline(tmp_path, {"operators": {"ConvTranspose": {"kernel_shapes": [[2, 2], [4, 4]]}}})
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up1", strides=[2, 2])
    m = model_of([node], {"x": [1, 4, 8, 8]}, {"y": None}, [weight("w", 4, 2, 3, 3)])
    assert node_msgs(m, p) == ["ConvTranspose 'up1': kernel 3x3 not in allowed kernel shapes [2x2, 4x4]"]
    [v] = check_model(m, p)
    assert v == Violation("up1", "ConvTranspose", "operators.ConvTranspose.kernel_shapes", v.message)
    assert v.to_dict() == {"node": "up1", "op": "ConvTranspose", "rule": "operators.ConvTranspose.kernel_shapes",
                           "message": v.message}


def test_convtranspose_on_tidl_is_left_alone_only_where_listed():
    tidl = load_profile("ti-tidl")
    for k, fits in ((2, True), (3, True), (4, True), (5, False)):
        m = conv_model("ConvTranspose", w=(4, 4, k, k), strides=[2, 2])
        assert (node_msgs(m, tidl) == []) == fits, (k, node_msgs(m, tidl))
    msgs = node_msgs(conv_model("ConvTranspose", w=(4, 4, 2, 2), strides=[1, 1]), tidl)
    assert msgs == ["ConvTranspose 'n': stride 1x1 not allowed (allowed values per axis: [2])"]


def test_dilation_rules(tmp_path):
    generic = load_profile("generic-npu")
    assert node_msgs(conv_model(pads=[1, 1, 1, 1]), generic) == []
    assert node_msgs(conv_model(dilations=[2, 2], pads=[2, 2, 2, 2]), generic) == [
        "Conv 'n': dilation 2x2 not allowed (allowed values per axis: [1])"]
    p = inline(tmp_path, {"operators": {"Conv": {"equal_dilations": True, "dilation_requires_unit_stride": True}}})
    assert node_msgs(conv_model(dilations=[2, 2]), p) == []
    assert node_msgs(conv_model(dilations=[2, 1]), p) == [
        "Conv 'n': dilations 2x1 differ between axes; the target requires equal dilations"]
    assert node_msgs(conv_model(dilations=[2, 2], strides=[2, 2]), p) == [
        "Conv 'n': dilation 2x2 at stride 2x2; the target allows dilation > 1 only at stride 1"]


def test_group_kinds(tmp_path):
    p = inline(tmp_path, {"operators": {"Conv": {"groups": ["standard"]}, "ConvTranspose": {"groups": ["depthwise"]}}})
    assert node_msgs(conv_model(), p) == []
    assert node_msgs(conv_model(w=(8, 1, 3, 3), group=4), p) == [
        "Conv 'n': depthwise convolution (group 4) not allowed (allowed: standard)"]
    assert node_msgs(conv_model(w=(4, 2, 3, 3), group=2), p) == [
        "Conv 'n': grouped convolution (group 2) not allowed (allowed: standard)"]
    # ConvTranspose W is [C, M/g, k..]: depthwise when C == group
    assert node_msgs(conv_model("ConvTranspose", w=(4, 1, 4, 4), group=4, strides=[2, 2]), p) == []
    assert node_msgs(conv_model("ConvTranspose", w=(4, 1, 4, 4), strides=[2, 2]), p) == [
        "ConvTranspose 'n': standard convolution (group 1) not allowed (allowed: depthwise)"]


def test_kernel_and_stride_limits_of_ethos_n():
    n78 = load_profile("arm-ethos-n78")
    assert node_msgs(conv_model(w=(4, 4, 9, 9), pads=[4, 4, 4, 4]), n78) == []
    assert node_msgs(conv_model(w=(4, 4, 3, 5), pads=[1, 2, 1, 2]), n78) == []  # need not be square
    [msg] = node_msgs(conv_model(w=(4, 4, 9, 9), strides=[2, 2]), n78)
    assert msg.startswith("Conv 'n': fits none of the 2 allowed forms: (1) kernel 9x9 has a size not in allowed "
                          "kernel sizes [1, 2, 3, 5, 7]; (2) stride 2x2 not allowed (allowed values per axis: [1])")
    [msg] = node_msgs(conv_model(w=(4, 4, 3, 3), strides=[2, 1], pads=[0, 1, 1, 1]), n78)  # SAME_UPPER
    assert "strides 2x1 differ between axes" in msg


def test_ethos_n_resizes_nearest_or_bilinear_only():
    """Arm NN, through which the Ethos-N driver stack is reached, has two
    resize methods (bilinear, nearest neighbour): a cubic Resize x2 was
    said to fit, and was left as it is."""
    n78 = load_profile("arm-ethos-n78")
    for mode in ("nearest", "linear"):
        assert node_msgs(resize_model([1, 8, 8, 8], [1, 1, 2, 2], mode=mode), n78) == []
    assert node_msgs(resize_model([1, 8, 8, 8], [1, 1, 2, 2], mode="cubic"), n78) == [
        "Resize 'r': mode cubic not in allowed modes [nearest, linear]"]


def test_pad_kinds():
    n78 = load_profile("arm-ethos-n78")  # Same and Valid padding only
    assert node_msgs(conv_model(), n78) == []                                    # valid
    assert node_msgs(conv_model(pads=[1, 1, 1, 1]), n78) == []                   # == SAME for 3x3/s1
    assert node_msgs(conv_model(auto_pad="SAME_LOWER"), n78) == []
    assert node_msgs(conv_model(w=(4, 4, 2, 2), pads=[0, 0, 1, 1]), n78) == []   # SAME_UPPER for 2x2
    assert node_msgs(conv_model(pads=[0, 0, 1, 1]), n78) == [
        "Conv 'n': pads [0, 0, 1, 1] not of an allowed kind (valid, same_upper, same_lower, same_symmetric)"]
    # stride 2 on an even input: SAME_UPPER puts the odd unit at the end
    assert node_msgs(conv_model(strides=[2, 2], pads=[0, 0, 1, 1]), n78) == []
    assert node_msgs(conv_model(strides=[2, 2], pads=[1, 1, 0, 0]), n78) == []   # SAME_LOWER
    # SAME's total of 1 split as ceil(1/2) on both sides: PyTorch's 3x3/s2/p1 (the support library takes it)
    assert node_msgs(conv_model(strides=[2, 2], pads=[1, 1, 1, 1]), n78) == []
    assert len(node_msgs(conv_model(strides=[2, 2], pads=[2, 2, 2, 2]), n78)) == 1
    q = load_profile("generic-npu")  # no pads limit at all
    assert node_msgs(conv_model(strides=[2, 2], pads=[2, 2, 2, 2]), q) == []


def test_pad_kinds_of_a_symbolic_size():
    """A Conv whose spatial size is symbolic (a dynamic-H/W export): at
    stride 1 SAME pads the dilated kernel's extent less one whatever the
    size, so PyTorch's 3x3/p1 is SAME there too; at a larger stride SAME
    depends on the size, so its padding is not known (no violation, and the
    rules read an unknown fact).  Every padded Conv of a dynamic export was
    reported 'not of an allowed kind' on arm-ethos-n78."""
    n78 = load_profile("arm-ethos-n78")
    dyn = (1, 4, "H", "W")
    assert node_msgs(conv_model(x=dyn, pads=[1, 1, 1, 1]), n78) == []
    assert node_msgs(conv_model(x=dyn, w=(4, 4, 2, 2), pads=[0, 0, 1, 1]), n78) == []   # SAME_UPPER for 2x2
    assert node_msgs(conv_model(x=(1, 4, 8, "W"), w=(4, 4, 5, 5), pads=[2, 2, 2, 2]), n78) == []
    assert node_msgs(conv_model(x=dyn, pads=[0, 0, 1, 1]), n78) == [
        "Conv 'n': pads [0, 0, 1, 1] not of an allowed kind (valid, same_upper, same_lower, same_symmetric)"]
    node, graph = only_node(conv_model(x=dyn, strides=[2, 2], pads=[1, 1, 1, 1]))
    facts = node_facts(node, graph)
    assert facts.pad_kinds == {"symmetric"} and facts.pads == (1, 1, 1, 1)
    assert node_msgs(conv_model(x=dyn, strides=[2, 2], pads=[1, 1, 1, 1]), n78) == []
    assert undecided(n78, facts, "Conv") == ["its rules read the padding (the input's size), not known before run time"]
    valid = node_facts(*only_node(conv_model(x=dyn, strides=[2, 2])))
    assert valid.pad_kinds == {"valid", "symmetric"} and undecided(n78, valid, "Conv") == []
    # what the size cannot change is still known: padded is not valid (arm-ethos-u55: valid only above stride 3)
    u55 = load_profile("arm-ethos-u55")
    [msg] = node_msgs(conv_model(x=dyn, strides=[4, 4], pads=[1, 1, 1, 1]), u55)
    assert "pads [1, 1, 1, 1] not of an allowed kind (valid)" in msg


def test_convtranspose_output_size_on_ethos_u55():
    u55 = load_profile(U55_VELA36)
    ct = lambda k, **a: conv_model("ConvTranspose", w=(4, 4, k, k), strides=[2, 2], **a)  # noqa: E731
    assert node_msgs(ct(2), u55) == []                      # 16 = 8 x 2 (and unpadded)
    assert node_msgs(ct(4, pads=[1, 1, 1, 1]), u55) == []   # DCGAN 4x4/s2/p1: 16 = 8 x 2
    assert node_msgs(ct(3), u55) == []                      # VALID: (8-1)*2+3 = 17
    assert node_msgs(ct(3, pads=[1, 1, 1, 1]), u55) == [
        "ConvTranspose 'n': output size 15x15 is not an allowed size "
        "(input x stride = 16x16; unpadded (n-1)*s+k = 17x17)"]
    assert node_msgs(ct(3, pads=[1, 1, 1, 1], output_padding=[1, 1]), u55) == []  # 16
    [msg] = node_msgs(conv_model("ConvTranspose", w=(4, 4, 2, 2), strides=[1, 1]), u55)
    assert msg == "ConvTranspose 'n': stride 1x1 not allowed (allowed values per axis: [2])"


def resize_model(x=(1, 4, 8, 8), scales=(1, 1, 2, 2), opset=17, **attrs):
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="r", **attrs)
    s = numpy_helper.from_array(np.asarray(scales, np.float32), "s")
    return model_of([node], {"x": list(x)}, {"y": None}, [s], opset=opset)


def test_resize_rules_on_ethos_u55():
    u55 = load_profile("arm-ethos-u55")
    near = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    assert node_msgs(resize_model(**near), u55) == []
    assert node_msgs(resize_model(scales=(1, 1, 8, 8), **near), u55) == []
    assert node_msgs(resize_model(mode="linear", coordinate_transformation_mode="half_pixel"), u55) == []
    [msg] = node_msgs(resize_model(scales=(1, 1, 4, 4), mode="linear", coordinate_transformation_mode="half_pixel"), u55)
    assert "(9) scale factors 4x4 not allowed (allowed integer upsampling factors per axis: [2])" in msg
    # a 1x1 input may be resized to any size (ASPP image pooling)
    assert node_msgs(resize_model(x=(1, 4, 1, 1), scales=(1, 1, 33, 33), mode="linear"), u55) == []
    [msg] = node_msgs(resize_model(scales=(1, 1, 2, 4), **near), u55)
    assert "scale factors 2x4 differ between axes" in msg
    [msg] = node_msgs(resize_model(scales=(1, 1, 1.5, 1.5), **near), u55)
    assert "scale factors 1.5x1.5 not allowed" in msg
    # onnx2tf computes asymmetric nearest as floor whatever the nearest_mode: round_prefer_floor is
    # floor at x2 (x/2 is an integer or a tie), not at x4 (docs/ethos_u.md, Nearest Resize)
    assert node_msgs(resize_model(**{**near, "nearest_mode": "round_prefer_floor"}), u55) == []
    [msg] = node_msgs(resize_model(scales=(1, 1, 4, 4), **{**near, "nearest_mode": "round_prefer_floor"}), u55)
    assert "(2) nearest_mode round_prefer_floor not in allowed modes [floor]" in msg
    assert "(3) scale factors 4x4 not allowed (allowed integer upsampling factors per axis: [2])" in msg
    [msg] = node_msgs(resize_model(mode="cubic"), u55)
    assert "mode cubic not in allowed modes [nearest]" in msg


def test_resize_factor_details(tmp_path):
    p = inline(tmp_path, {"operators": {"Resize": {"factors": [2]}}})
    assert node_msgs(resize_model(scales=(1, 1, 1, 2)), p) == []  # factor 1 is always allowed
    assert node_msgs(resize_model(scales=(1, 2, 2, 2)), p) == [
        "Resize 'r': resizes the batch or channel axis; the target resizes spatial axes only"]
    assert node_msgs(resize_model(x=(1, 4, 8, 8), scales=(1, 1, 0.5, 0.5)), p) == [
        "Resize 'r': scale factors 0.5x0.5 not allowed (allowed integer upsampling factors per axis: [2])"]
    # Resize-10 counts as asymmetric
    q = inline(tmp_path, {"operators": {"Resize": {"coordinate_transformation_modes": ["half_pixel"]}}})
    node = helper.make_node("Resize", ["x", "s"], ["y"], name="r", mode="nearest")
    s = numpy_helper.from_array(np.asarray([1, 1, 2, 2], np.float32), "s")
    m10 = model_of([node], {"x": [1, 4, 8, 8]}, {"y": None}, [s], opset=10)
    assert node_msgs(m10, q) == [
        "Resize 'r': coordinate_transformation_mode asymmetric not in allowed modes [half_pixel]"]


def test_depth_to_space_modes_and_blocks():
    n78 = load_profile("arm-ethos-n78")  # DCR only, block 2
    d2s = lambda **a: model_of([helper.make_node("DepthToSpace", ["x"], ["y"], name="d", **a)],  # noqa: E731
                               {"x": [1, 16, 4, 4]}, {"y": None})
    assert node_msgs(d2s(blocksize=2), n78) == []
    assert node_msgs(d2s(blocksize=2, mode="DCR"), n78) == []
    assert node_msgs(d2s(blocksize=2, mode="CRD"), n78) == ["DepthToSpace 'd': mode CRD not in allowed modes [DCR]"]
    assert node_msgs(d2s(blocksize=4), n78) == ["DepthToSpace 'd': blocksize 4 not in allowed block sizes [2]"]
    assert node_msgs(d2s(blocksize=2), load_profile(U55_VELA36)) == [
        "DepthToSpace 'd': operator not supported by the target (DEPTH_TO_SPACE is not in the Ethos-U55/U65 table)"]


def test_pad_slice_transpose_rules():
    u55, tidl = load_profile(U55_VELA36), load_profile("ti-tidl")
    pad = lambda pads, **a: model_of(  # noqa: E731
        [helper.make_node("Pad", ["x", "p"], ["y"], name="p", **a)], {"x": [1, 4, 8, 8]}, {"y": None},
        [ints("p", pads)])
    assert node_msgs(pad([0, 0, 1, 1, 0, 0, 1, 1]), u55) == []
    assert node_msgs(pad([0, 0, 1, 1, 0, 0, 1, 1], mode="edge"), u55) == [
        "Pad 'p': mode edge not in allowed modes [constant]"]
    assert node_msgs(pad([0, 1, 0, 0, 0, 1, 0, 0]), u55) == [
        "Pad 'p': pads the batch or channel axis; the target pads spatial axes only"]
    sl = lambda steps: model_of(  # noqa: E731
        [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"], name="s")], {"x": [1, 4, 8, 8]},
        {"y": None}, [ints("st", [0, 0]), ints("en", [8, 8]), ints("ax", [2, 3]), ints("sp", steps)])
    assert node_msgs(sl([1, 1]), u55) == []
    assert node_msgs(sl([2, 2]), u55) == ["Slice 's': steps [2, 2] not allowed (allowed step values: [1])"]
    tr = lambda perm: model_of([helper.make_node("Transpose", ["x"], ["y"], name="t", perm=perm)],  # noqa: E731
                               {"x": [1, 4, 8, 8]}, {"y": None})
    assert node_msgs(tr([0, 2, 3, 1]), tidl) == []
    assert node_msgs(tr([1, 0, 2, 3]), tidl) == [
        "Transpose 't': permutation [1, 0, 2, 3] moves the batch axis; the target requires perm[0] == 0"]


def test_per_operator_rank_and_non_singleton_dims():
    tidl = load_profile("ti-tidl")
    # Conv3d, batch 2: 5 dimensions > 1 on the variable input; TIDL allows 4
    m = conv_model(x=(2, 4, 8, 8, 8), w=(4, 4, 1, 1, 1))
    msgs = node_msgs(m, tidl)
    assert msgs == ["Conv 'n': input 'x' [2,4,8,8,8] has 5 dimensions > 1, above the Conv limit of 4"]
    [v] = check_model(m, tidl)
    assert v.rule == "operators.Conv.max_non_unit_dims"  # common to every form: reported once, on its own
    # singleton dimensions do not count
    assert node_msgs(conv_model(x=(1, 4, 1, 8, 8), w=(4, 4, 1, 1, 1)), tidl) == []
    sl = model_of([helper.make_node("Slice", ["x", "st", "en"], ["y"], name="s")], {"x": [1, 2, 2, 2, 4, 4]},
                  {"y": None}, [ints("st", [0]), ints("en", [1])])
    assert node_msgs(sl, tidl) == ["Slice 's': input 'x' has rank 6, above the Slice limit of 4"]


def test_strict_operator_list_and_constant_subgraphs():
    tidl = load_profile("ti-tidl")  # "unlisted_operators": "unsupported"
    nodes = [helper.make_node("Shape", ["x"], ["shape"], name="shape"),          # folds: exempt
             helper.make_node("Identity", ["x"], ["y"], name="id"),              # not listed
             helper.make_node("Relu", ["y"], ["z"], name="relu")]                # listed
    m = model_of(nodes, {"x": [1, 4, 8, 8]}, {"z": None, "shape": None})
    [v] = check_model(m, tidl)
    assert (v.node, v.rule) == ("id", "unlisted_operators")
    assert v.message == "Identity 'id': Identity is not in the target's operator list (profile lists only what it runs)"


# --- whole models ----------------------------------------------------------------------------

def test_a_model_that_fits():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("DepthToSpace", ["r"], ["y"], name="d2s", blocksize=2)]
    m = model_of(nodes, {"x": ["N", 4, 8, 8]}, {"y": None}, [weight("w", 16, 4, 3, 3)])
    before = m.SerializeToString()
    for name in ("generic-npu", "no-deconv", "arm-ethos-n78"):
        assert check_model(m, load_profile(name)) == [], name
    assert m.SerializeToString() == before  # the symbolic batch is set to 1 on a copy only
    assert format_violations([], load_profile("generic-npu")) == ["target generic-npu: every node fits"]
    assert target_report([], load_profile("generic-npu"))["fits"] is True


def test_rank_six_space_to_batch_does_not_fit_generic_npu():
    # the dilated pass's batch form, for dilation 2 on an 8x8 map, batch symbolic
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["a"], name="s2b/split"),
             helper.make_node("Transpose", ["a"], ["b"], name="s2b/transpose", perm=[3, 5, 0, 1, 2, 4]),
             helper.make_node("Reshape", ["b", "s2"], ["c"], name="s2b/merge"),
             helper.make_node("Conv", ["c", "w"], ["y"], name="conv")]
    m = model_of(nodes, {"x": ["N", 4, 8, 8]}, {"y": None},
                 [ints("s1", [0, 4, 4, 2, 4, 2]), ints("s2", [-1, 4, 4, 4]), weight("w", 4, 4, 3, 3)])
    found = check_model(m, load_profile("generic-npu"))
    assert [(v.node, v.rule) for v in found] == [
        ("s2b/split", "max_rank"), ("s2b/transpose", "max_rank"), ("s2b/merge", "batch_must_be_one")]
    assert found[0].message == ("Reshape 's2b/split': produces rank-6 tensor 'a' [1,4,4,2,4,2]; "
                                "the target allows rank <= 4")
    assert found[2].message == ("Reshape 's2b/merge': produces batch 4 (tensor 'c' [4,4,4,4]); "
                                "the target requires batch 1")
    # the Conv inherits batch 4: reported once, where it is made
    assert not any(v.node == "conv" for v in found)
    # TIDL: rank 6 is fine there, but the Transpose moves the batch axis
    tidl = [v for v in check_model(m, load_profile("ti-tidl"))]
    assert [(v.node, v.rule) for v in tidl] == [("s2b/transpose", "operators.Transpose.batch_axis_fixed")]
    lines = format_violations(found, load_profile("generic-npu"))
    assert lines[0] == "target generic-npu: 3 node(s) do not fit (3 rule(s) broken)"
    assert lines[1].endswith("[max_rank]")
    report = target_report(found, load_profile("generic-npu"))
    assert report["fits"] is False and report["nodes_not_fitting"] == 3 and len(report["violations"]) == 3
    json.dumps(report)


def test_batch_rules_on_graph_inputs():
    p = load_profile("generic-npu")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Relu", ["r"], ["y"], name="relu2")]
    m = model_of(nodes, {"x": [2, 4, 8, 8]}, {"y": None})
    [v] = check_model(m, p)  # reported at the input only, not at every node after it
    assert (v.node, v.op, v.rule) == ("x", "graph input", "batch_must_be_one")
    assert v.message == "graph input 'x' [2,4,8,8] has batch 2; the target requires batch 1"
    m5 = model_of(nodes, {"x": [1, 4, 4, 8, 8]}, {"y": None})
    assert [(v.node, v.rule) for v in check_model(m5, p)] == [
        ("x", "max_rank"), ("relu", "max_rank"), ("relu2", "max_rank")]
    assert check_model(m, load_profile("no-deconv")) == []


def test_dilated_conv_and_convtranspose_do_not_fit():
    m = conv_model(dilations=[2, 2], pads=[2, 2, 2, 2])
    [v] = check_model(m, load_profile("generic-npu"))
    assert (v.node, v.rule) == ("n", "operators.Conv.dilations")
    ct = conv_model("ConvTranspose", w=(4, 4, 2, 2), strides=[2, 2])
    [v] = check_model(ct, load_profile("no-deconv"))
    assert (v.rule, v.message) == ("unsupported_operators",
                                   "ConvTranspose 'n': operator not supported by the target")
    assert check_model(ct, load_profile("ti-tidl")) == []


# --- what the passes ask ----------------------------------------------------------------

def test_needs_lowering():
    ct = conv_model("ConvTranspose", w=(4, 4, 2, 2), strides=[2, 2])
    node, graph = only_node(ct)
    assert needs_lowering(node, graph, load_profile("ti-tidl")) is None
    assert needs_lowering(node, graph, load_profile("generic-npu")) == \
        "ConvTranspose 'n': operator not supported by the target"
    assert needs_lowering(node, graph, None)  # no profile: lower every candidate
    assert runs_as_is_reason(node, graph, load_profile("ti-tidl")) == (
        "ConvTranspose 'n': target 'ti-tidl' runs it as it is (no rule of the profile is broken); left unchanged")


def test_allows_op_answers_form_questions():
    n78, u55, generic = (load_profile(n) for n in ("arm-ethos-n78", U55_VELA36, "generic-npu"))
    assert n78.allows_op("DepthToSpace", mode="DCR", blocksize=2)
    assert not n78.allows_op("DepthToSpace", mode="CRD", blocksize=2)
    assert not u55.allows_op("DepthToSpace", mode="DCR", blocksize=2)
    assert not u55.allows_op("Slice", steps=[2, 2]) and u55.allows_op("Slice", steps=[1])
    assert not u55.allows_op("Pad", mode="edge")
    assert u55.allows_op("Resize", mode="nearest", coordinate_transformation_mode="asymmetric",
                         nearest_mode="floor", factors=[2, 2])
    assert generic.allows_op("Reshape", rank=4) and not generic.allows_op("Reshape", rank=6)
    assert op_violations(generic, "Transpose", rank=6) == ["Transpose: produces rank-6 tensors; the target allows rank <= 4"]
    assert op_violations(load_profile("ti-tidl"), "Conv", kernel_shape=[3, 3], strides=[2, 2],
                         group_kind="depthwise") == []


def _shuffle_replacement(graph, node, layout, allow_d2s=True):
    """ConvTranspose 2x2/s2 -> 1x1 Conv with 4x channels -> pixel shuffle
    (the structure of the convtranspose pass's result; only its fit matters here)."""
    b = Builder(graph, node, "convtranspose")
    w = b.initializer(np.ones((16, 4, 1, 1), np.float32), "weight")
    c = b.op("Conv", [node.input[0], w], "conv")
    y = pixel_shuffle(b, c, 4, [2, 2], [8, 8], layout=layout, allow_depth_to_space=allow_d2s)
    return b.replacement({node.output[0]: y})


def replacement_violations(replacement, graph, profile):
    from convrewrite.core.lowering import violations

    return [v.message for v in violations(replacement, graph, profile)] if profile is not None else []


def test_replacement_violations():
    ct = conv_model("ConvTranspose", x=("N", 4, 8, 8), w=(4, 4, 2, 2), strides=[2, 2])
    node, graph = only_node(ct)
    n78, generic = load_profile("arm-ethos-n78"), load_profile("generic-npu")
    assert replacement_violations(_shuffle_replacement(graph, node, "DCR"), graph, n78) == []
    assert replacement_violations(_shuffle_replacement(graph, node, "CRD"), graph, n78) == [
        "DepthToSpace 'n/convtranspose/depth_to_space': mode CRD not in allowed modes [DCR]"]
    general = _shuffle_replacement(graph, node, "DCR", allow_d2s=False)
    problems = replacement_violations(general, graph, generic)
    assert problems == [
        "Reshape 'n/convtranspose/shuffle_split': produces rank-6 tensor 'n/convtranspose/shuffle_split' "
        "[1,2,2,4,8,8]; the target allows rank <= 4",
        "Transpose 'n/convtranspose/shuffle_transpose': produces rank-6 tensor "
        "'n/convtranspose/shuffle_transpose' [1,4,8,2,8,2]; the target allows rank <= 4"]


class _ShuffleForm(Form):
    """A toy form: the 2x2/s2 ConvTranspose as 1x1 Conv + pixel shuffle."""

    def __init__(self, name, layout="DCR", allow_d2s=True, refuse=None):
        self.name, self.layout, self.allow_d2s, self.refuse = name, layout, allow_d2s, refuse

    def applies(self, match, graph):
        return self.refuse

    def cost(self, match, variant, graph):
        return Cost(macs=0)

    def build(self, match, variant, graph, b):
        w = b.initializer(np.ones((16, 4, 1, 1), np.float32), "weight")
        c = b.op("Conv", [match.node.input[0], w], "conv")
        return {match.node.output[0]: pixel_shuffle(b, c, 4, [2, 2], [8, 8], layout=self.layout,
                                                    allow_depth_to_space=self.allow_d2s)}


class _ShufflePass:
    name, op_types, mac_bound = "convtranspose", ("ConvTranspose",), None

    def __init__(self, *forms):
        self.forms = forms

    def preferred(self):
        return ()

    def candidate(self, node, graph):
        return node.op_type == "ConvTranspose"

    def match(self, node, graph):
        return Match(node, None)


def test_lower_takes_the_first_form_that_fits():
    ct = conv_model("ConvTranspose", w=(4, 4, 2, 2), strides=[2, 2])
    node, graph = only_node(ct)
    n78 = load_profile("arm-ethos-n78")
    p = _ShufflePass(_ShuffleForm("CRD", "CRD"), _ShuffleForm("DCR"))
    done = lower(p, p.match(node, graph), graph, n78)
    assert done.fits and done.option.form.name == "DCR"
    assert done.notes == (
        "target arm-ethos-n78: form 'CRD' not used: DepthToSpace 'n/convtranspose/depth_to_space': "
        "mode CRD not in allowed modes [DCR]",
        "target arm-ethos-n78: form 'DCR' fits")
    # without a profile: the first form
    assert lower(p, p.match(node, graph), graph).option.form.name == "CRD"


def test_lower_when_nothing_fits_or_applies(tmp_path):
    ct = conv_model("ConvTranspose", w=(4, 4, 2, 2), strides=[2, 2])
    node, graph = only_node(ct)
    (tmp_path / "vela36.json").write_text(U55_VELA36.read_text())  # no DepthToSpace, no Transpose
    u55 = inline(tmp_path, {"extends": "vela36.json", "operators": {"ConvTranspose": {"supported": False}}})
    p = _ShufflePass(_ShuffleForm("refused", refuse="weight too large for this form"),
                     _ShuffleForm("general", allow_d2s=False), _ShuffleForm("d2s"))
    # never worse: the closest form, d2s (1 problem; general has 3: rank 6 twice, Transpose), would leave
    # its DepthToSpace to the host, as many host nodes as the one ConvTranspose it replaces
    kept = lower(p, p.match(node, graph), graph, u55)
    assert isinstance(kept, Skip) and kept.code == "no-form"
    assert re.search(r"so the node is left as it is; closest first: 'd2s' would leave 1 node\(s\) the target does "
                     r"not run \(DepthToSpace .*\), not fewer than the 1 it replaces", kept.reason), kept.reason
    # every other form considered, one clause each: 'general' built (its first problem), 'refused' not applicable
    assert re.search(r"; 'general': 3 problems, the first: Reshape .*rank-6 .*; refused: not applicable: weight too large for this form$",
                     kept.reason), kept.reason
    # a match of two host nodes replaced by one that leaves one on the host: fewer, so taken
    two = model_of([helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="n", strides=[2, 2]),
                    helper.make_node("ConvTranspose", ["x", "w"], ["z"], name="m", strides=[2, 2])],
                   {"x": [1, 4, 8, 8]}, {"y": None, "z": None}, [weight("w", 4, 4, 2, 2)])
    graph2 = GraphView(two)
    both = Match(graph2.graph.node[0], None, nodes=tuple(graph2.graph.node))
    done = lower(p, both, graph2, u55)
    assert not done.fits and done.option.form.name == "d2s"
    assert ("no form fits; 'd2s' has the fewest problems, all of them data movement (the computation runs on "
            "the target): DepthToSpace") in done.notes[-1]
    # the forms not taken are in the notes too, the one that did not apply among them
    assert "target p: refused: not applicable: weight too large for this form" in done.notes, done.notes
    assert any(n.startswith("target p: form 'general' not used: ") for n in done.notes), done.notes
    nothing = lower(_ShufflePass(p.forms[0]), p.match(node, graph), graph, u55)
    assert isinstance(nothing, Skip) and nothing.code == "no-form"
    assert "refused: weight too large for this form" in nothing.reason


def test_never_worse_a_form_whose_computation_the_target_cannot_run_is_not_used(tmp_path):
    """When no form fits and the closest still leaves a computing node the
    target does not run, the node stays as it is: its computation would fall
    back to the host either way, and the rewrite would only add work."""
    ct = conv_model("ConvTranspose", w=(4, 4, 2, 2), strides=[2, 2])
    node, graph = only_node(ct)
    no_conv = inline(tmp_path, {"unsupported_operators": ["ConvTranspose", "Conv", "DepthToSpace"]})
    p = _ShufflePass(_ShuffleForm("d2s"))
    kept = lower(p, p.match(node, graph), graph, no_conv)
    assert isinstance(kept, Skip) and kept.code == "no-form"
    assert "still has Conv the target does not run" in kept.reason and "left as it is" in kept.reason


def test_resize_factors_with_a_symbolic_batch_and_runtime_sizes(tmp_path):
    p = inline(tmp_path, {"operators": {"Resize": {"factors": [2]}}})
    node = helper.make_node("Resize", ["x", "", "", "sz"], ["y"], name="r", mode="nearest")
    m = model_of([node], {"x": ["N", 4, 8, 8]}, {"y": None}, [ints("sz", [1, 4, 32, 32])])
    assert node_msgs(m, p) == [
        "Resize 'r': scale factors 4x4 not allowed (allowed integer upsampling factors per axis: [2])"]
    runtime = model_of([helper.make_node("Resize", ["x", "", "s"], ["y"], name="r")],
                       {"x": [1, 4, 8, 8], "s": [4]}, {"y": None})
    assert node_msgs(runtime, p) == []  # the factor is unknown before run time: not reported


SAMPLES = sorted((ROOT / "models").glob("*.onnx"))


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLES, reason="no sample models")
@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_models_against_every_builtin_profile(path):
    """On the exported sample models (before any rewrite), generic-npu and
    no-deconv flag exactly the nodes an independent reading of the model
    says they must, and every built-in profile runs without error."""
    model = onnx.load(path)
    nodes = GraphView(model)
    dilated = {nodes.label(n) for n in model.graph.node if n.op_type == "Conv"
               and any(d > 1 for a in n.attribute if a.name == "dilations" for d in a.ints)}
    lacking = {nodes.label(n) for n in model.graph.node if n.op_type in ("ConvTranspose", "Resize", "Upsample")}
    deconv = {nodes.label(n) for n in model.graph.node if n.op_type == "ConvTranspose"}
    # generic-npu allows rank <= 4: every graph input and node with a wider tensor is flagged too
    inferred = onnx.shape_inference.infer_shapes(model)
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in
            [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]}
    too_wide = {i.name for i in model.graph.input if rank.get(i.name, 0) > 4}
    too_wide |= {nodes.label(n) for n in model.graph.node if any(rank.get(o, 0) > 4 for o in n.output)}
    generic = check_model(model, load_profile("generic-npu"))
    assert {v.node for v in generic} == dilated | lacking | too_wide
    assert {v.node for v in check_model(model, load_profile("no-deconv"))} == deconv
    for name in builtin_names():
        for v in check_model(model, load_profile(name)):
            assert v.message.startswith(f"{v.op} '{v.node}': ") or v.op == "graph input"


from hypothesis import given, settings, strategies as st  # noqa: E402


@st.composite
def conv_cases(draw):
    op = draw(st.sampled_from(["Conv", "ConvTranspose"]))
    k = tuple(draw(st.lists(st.integers(1, 5), min_size=2, max_size=2)))
    s = tuple(draw(st.lists(st.integers(1, 3), min_size=2, max_size=2)))
    d = tuple(draw(st.lists(st.integers(1, 3), min_size=2, max_size=2)))
    pads = draw(st.lists(st.integers(0, 2), min_size=4, max_size=4))
    depthwise = draw(st.booleans())
    return op, k, s, d, pads, depthwise


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(conv_cases(), st.sampled_from(["generic-npu", "arm-ethos-n78", "arm-ethos-u55", "ti-tidl"]))
def test_attribute_queries_agree_with_node_checks(case, name):
    """profile.op_violations (what a pass asks before building) and
    node_violations (what the check finds on the built node) agree."""
    op, k, s, d, pads, depthwise = case
    c = 4
    group = c if depthwise else 1
    w = (c, 1 if depthwise else c, *k) if op == "Conv" else (c, 1 if depthwise else c, *k)
    m = conv_model(op, x=(1, c, 9, 9), w=w, kernel_shape=list(k), strides=list(s), dilations=list(d),
                   pads=pads, group=group)
    node, graph = only_node(m)
    y = graph.shape("y")
    if y is None or any(not isinstance(v, int) or v < 1 for v in y):
        return  # not a valid configuration for this input size
    p = load_profile(name)
    by_node = [m_.split(": ", 1)[1] for m_ in node_violations(node, graph, p)]
    by_attrs = [m_.split(": ", 1)[1] for m_ in op_violations(
        p, op, kernel_shape=list(k), strides=list(s), dilations=list(d), pads=pads, group=group,
        group_kind="depthwise" if depthwise else "standard", input_shape=[1, c, 9, 9], output_shape=list(y))]
    assert by_node == by_attrs
