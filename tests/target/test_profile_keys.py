"""The profile keys that state where an accelerator's rule depends on more than
an attribute: align_corners' scale (Resize `corner_factors`,
`equal_corner_factors`), the axis a Slice steps on (`strided_axes`), the size of
the data a Transpose moves (`within_last_axes`, `max_dim`,
`max_product_of_rank_minus_2_dims`) and constant MatMul operands
(`computed_operands`), a Resize's largest scale by any ratio (`max_factor`) and
the axis a Gather indexes (`gather_axes`), a channel Concat of spatial joins
(`no_channel_join_of_spatial_joins`, read from the producers of its inputs), and a
Concat's or Slice's input that onnx2tf passes through a RESHAPE (`no_reshaped_inputs`):
their validation and their verdicts on single nodes.
What Vela itself does with such models is in test_vela.py."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite.core.errors import InputError
from convrewrite.core.graph import GraphView
from convrewrite.target import check_model, load_profile, node_violations, op_violations

F = TensorProto.FLOAT


def model_of(nodes, inputs, inits=(), opset=17):
    """inputs: {name: shape}; the last node's first output is the graph output."""
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, F, s) for n, s in inputs.items()],
                          [helper.make_tensor_value_info(nodes[-1].output[0], F, None)], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def ints(name, values):
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def messages(model, profile):
    graph = GraphView(model)
    return node_violations(graph.graph.node[-1], graph, profile)


def inline(tmp_path, operators):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"operators": operators}))
    return load_profile(path)


# --- validation ------------------------------------------------------------------------

ALIGN = {"coordinate_transformation_modes": ["align_corners"]}
BAD = [
    ({"Resize": {"corner_factors": [2]}},
     r"operators\.Resize: 'corner_factors' measures align_corners' scale \(output-1\)/\(input-1\): "
     r"give it with \"coordinate_transformation_modes\": \[\"align_corners\"\]$"),
    ({"Resize": {"coordinate_transformation_modes": ["align_corners", "half_pixel"], "equal_corner_factors": True}},
     r"operators\.Resize: 'equal_corner_factors' measures align_corners' scale"),
    ({"Resize": {**ALIGN, "corner_factors": [0]}}, r"operators\.Resize\.corner_factors\[0\]: must be a positive integer, not 0"),
    ({"Resize": {**ALIGN, "equal_corner_factors": "yes"}},
     r"operators\.Resize\.equal_corner_factors: must be true or false, not a string \"yes\""),
    ({"Upsample": {"corner_factors": [2]}},
     r"operators\.Upsample: key 'corner_factors' does not apply to Upsample \(it is for Resize\)"),
    ({"Slice": {"strided_axes": ["channels"]}},
     r"operators\.Slice\.strided_axes\[0\]: \"channels\" is not one of: batch, channel, spatial"),
    ({"Slice": {"strided_axes": []}}, r"operators\.Slice\.strided_axes: empty list"),
    ({"Transpose": {"within_last_axes": True}}, r"operators\.Transpose\.within_last_axes: must be a positive integer, not true"),
    ({"Transpose": {"max_dim": 0}}, r"operators\.Transpose\.max_dim: must be a positive integer, not 0"),
    ({"Transpose": {"max_product_of_rank_minus_2_dims": "65536"}},
     r"operators\.Transpose\.max_product_of_rank_minus_2_dims: must be a positive integer, not \"65536\""),
    ({"Conv": {"max_dim": 4}}, r"operators\.Conv: key 'max_dim' does not apply to Conv \(it is for Transpose\)"),
    ({"MatMul": {"computed_operands": 1}}, r"operators\.MatMul\.computed_operands: must be true or false, not a number 1"),
    ({"Resize": {"max_factor": 1.5}}, r"operators\.Resize\.max_factor: must be a positive integer, not 1\.5"),
    ({"Gather": {"gather_axes": ["rows"]}},
     r"operators\.Gather\.gather_axes\[0\]: \"rows\" is not one of: batch, channel, spatial"),
    ({"Gemm": {"computed_operands": True}},
     r"operators\.Gemm: key 'computed_operands' does not apply to Gemm \(it is for MatMul\)"),
    ({"Concat": {"no_channel_join_of_spatial_joins": "yes"}},
     r"operators\.Concat\.no_channel_join_of_spatial_joins: must be true or false, not a string \"yes\""),
    ({"Pad": {"no_channel_join_of_spatial_joins": True}},
     r"operators\.Pad: key 'no_channel_join_of_spatial_joins' does not apply to Pad \(it is for Concat\)"),
]


@pytest.mark.parametrize("operators,message", BAD, ids=[m[:50] for _, m in BAD])
def test_bad_keys_are_refused_in_one_line(tmp_path, operators, message):
    with pytest.raises(InputError) as e:
        inline(tmp_path, operators)
    text = str(e.value)
    assert "\n" not in text and text.startswith("profile ")
    assert re.search(message, text), text


def test_good_keys_load_and_round_trip(tmp_path):
    ops = {"Resize": {**ALIGN, "corner_factors": [2, 4], "equal_corner_factors": True},
           "Slice": {"steps": [1, 2], "strided_axes": ["channel", "spatial"]},
           "Transpose": [{"within_last_axes": 3, "max_dim": 8}, {"max_product_of_rank_minus_2_dims": 64}],
           "MatMul": {"computed_operands": True},
           "Upsample": {"max_factor": 16},
           "Gather": {"gather_axes": ["batch"]},
           "Concat": {"no_channel_join_of_spatial_joins": True}}
    p = inline(tmp_path, ops)
    assert p.rules("Slice")[0].strided_axes == ("channel", "spatial")
    assert p.to_dict()["operators"] == ops


# --- Resize: align_corners' scale ---------------------------------------------------------

def corner_resize(x, out, mode="align_corners", channels=4):
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="r", mode="linear",
                            coordinate_transformation_mode=mode)
    return model_of([node], {"x": [1, channels, *x]}, [ints("sizes", [1, channels, *out])])


def test_corner_factors(tmp_path):
    p = inline(tmp_path, {"Resize": {**ALIGN, "corner_factors": [2, 4], "equal_corner_factors": True}})
    assert messages(corner_resize([8, 8], [15, 15]), p) == []       # (15-1)/(8-1) = 2
    assert messages(corner_resize([8, 8], [29, 29]), p) == []       # 4
    assert messages(corner_resize([8, 8], [8, 8]), p) == []         # 1: nothing is scaled
    assert messages(corner_resize([8, 8], [16, 16]), p) == [
        "Resize 'r': align_corners scale factors 2.143x2.143 ((output-1)/(input-1)) not allowed "
        "(allowed integer factors per axis: [2, 4])"]
    assert messages(corner_resize([8, 8], [15, 29]), p) == [
        "Resize 'r': align_corners scale factors 2x4 ((output-1)/(input-1)) differ between axes; "
        "the target requires equal factors"]
    assert messages(corner_resize([1, 8], [4, 15]), p) == [
        "Resize 'r': an axis of input size 1 is resized to more: align_corners has no scale (output-1)/(input-1) "
        "there (allowed integer factors per axis: [2, 4])"]
    # another coordinate mode is the form's mode rule's to refuse, and the channel axis stays
    assert messages(corner_resize([8, 8], [15, 15], mode="half_pixel"), p) == [
        "Resize 'r': coordinate_transformation_mode half_pixel not in allowed modes [align_corners]"]
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="r", mode="linear",
                            coordinate_transformation_mode="align_corners")
    wide = model_of([node], {"x": [1, 4, 8, 8]}, [ints("sizes", [1, 8, 15, 15])])
    assert "resizes the batch or channel axis" in messages(wide, p)[0]


def test_corner_factors_from_attributes():
    u55 = load_profile("arm-ethos-u55")
    ask = dict(mode="linear", coordinate_transformation_mode="align_corners", input_shape=[1, 8, 8, 8])
    assert op_violations(u55, "Resize", output_shape=[1, 8, 15, 15], **ask) == []
    assert op_violations(u55, "Resize", output_shape=[1, 8, 16, 16], **ask)
    # without the output's shape the scale is not known, so not judged
    assert op_violations(u55, "Resize", **ask) == []


# --- Slice: the axes a step other than 1 is on ---------------------------------------------

def strided_slice(axes, steps, starts=None, ends=None):
    names = ["x", "starts", "ends"] + (["axes"] if axes is not None else [""]) + ["steps"]
    inits = [ints("starts", starts or [0] * len(steps)), ints("ends", ends or [8] * len(steps)), ints("steps", steps)]
    inits += [ints("axes", axes)] if axes is not None else []
    return model_of([helper.make_node("Slice", names, ["y"], name="s")], {"x": [1, 8, 8, 8]}, inits)


def test_strided_axes(tmp_path):
    p = inline(tmp_path, {"Slice": {"strided_axes": ["channel"]}})
    assert messages(strided_slice([1], [2]), p) == []
    assert messages(strided_slice([2, 3], [1, 1]), p) == []          # step 1 anywhere
    assert messages(strided_slice([2, 3], [2, 2]), p) == [
        "Slice 's': step 2 on axis 2 (spatial), step 2 on axis 3 (spatial) not allowed; "
        "the target takes a step other than 1 only on the channel axis"]
    assert messages(strided_slice([-1], [-1]), p) == [
        "Slice 's': step -1 on axis 3 (spatial) not allowed; the target takes a step other than 1 only on the channel axis"]
    # no axes input: the steps apply to the first axes (ONNX's default)
    assert messages(strided_slice(None, [1, 2]), p) == []
    assert messages(strided_slice(None, [2]), p) == [
        "Slice 's': step 2 on axis 0 (batch) not allowed; the target takes a step other than 1 only on the channel axis"]
    both = inline(tmp_path, {"Slice": {"strided_axes": ["channel", "spatial"]}})
    assert messages(strided_slice([2, 3], [2, 2]), both) == []
    assert p.allows_op("Slice", steps=[2], axes=[1]) and not p.allows_op("Slice", steps=[2], axes=[-2], rank=4)
    assert p.allows_op("Slice", steps=[2])  # axes not given: not judged


def test_strided_axes_with_axes_computed_at_run_time(tmp_path):
    p = inline(tmp_path, {"Slice": {"strided_axes": ["channel"]}})
    node = helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"], name="s")
    m = model_of([node], {"x": [1, 8, 8, 8], "axes": [1]}, [ints("starts", [0]), ints("ends", [8]), ints("steps", [2])])
    assert messages(m, p) == []  # the axis is not known: not reported


# --- Transpose: the size of the data it moves -----------------------------------------------

# Vela 5.2's rule for an int8 TRANSPOSE on the Ethos-U55, as arm-ethos-u55 states it
VELA_TRANSPOSE = [{"within_last_axes": 3, "max_dim": 65536},
                  {"max_product_of_rank_minus_2_dims": 65536, "max_dim": 65536}]


def transpose(shape, perm):
    return model_of([helper.make_node("Transpose", ["x"], ["y"], name="t", perm=perm)], {"x": list(shape)})


def test_transpose_within_last_axes(tmp_path):
    p = inline(tmp_path, {"Transpose": {"within_last_axes": 3}})
    assert messages(transpose([1, 2, 256, 512], [0, 1, 3, 2]), p) == []
    assert messages(transpose([1, 1, 2, 256, 256], [0, 1, 2, 4, 3]), p) == []
    assert messages(transpose([70000, 3], [1, 0]), p) == []          # rank <= 3: any permutation
    assert messages(transpose([1, 1, 256, 512], [1, 0, 3, 2]), p) == [
        "Transpose 't': permutation [1, 0, 3, 2] moves axis 0; the target permutes only the last 3 axes"]
    assert messages(transpose([1, 2, 1, 256, 256], [0, 1, 2, 4, 3]), p) == [
        "Transpose 't': input 'x' [1,2,1,256,256] has size 2 on axis 1; the target permutes the last 3 axes "
        "only when every axis before them is 1"]
    assert messages(transpose(["N", 4, 8, 8], [1, 0, 2, 3]), p)       # the permutation alone breaks it
    assert messages(transpose(["N", 4, 8, 8], [0, 1, 3, 2]), p) == []  # a symbolic size is not judged


def test_transpose_sizes(tmp_path):
    p = inline(tmp_path, {"Transpose": {"max_dim": 65536}})
    assert messages(transpose([1, 1, 2, 65536], [0, 1, 3, 2]), p) == []
    assert messages(transpose([1, 1, 2, 66560], [0, 1, 3, 2]), p) == [
        "Transpose 't': input 'x' [1,1,2,66560] has a dimension of 66560; the target transposes at most 65536 "
        "per dimension"]
    q = inline(tmp_path, {"Transpose": {"max_product_of_rank_minus_2_dims": 65536}})
    assert messages(transpose([1, 2, 2, 2, 128, 128], [0, 3, 4, 1, 5, 2]), q) == []  # 2*2*128*128
    assert messages(transpose([1, 2, 2, 2, 128, 130], [0, 3, 4, 1, 5, 2]), q) == [
        "Transpose 't': input 'x' [1,2,2,2,128,130]: the product of any 4 of its 6 dimensions must be at most "
        "65536, and its 4 largest give 66560"]
    assert messages(transpose([70000, 3], [1, 0]), q) == []  # rank 2: the product of no dimension
    # the identity permutation moves nothing
    for r in (p, q):
        assert messages(transpose([1, 21, 8, 8, 65, 65], [0, 1, 2, 3, 4, 5]), r) == []


def test_vela_transpose_rule(tmp_path):
    p = inline(tmp_path, {"Transpose": VELA_TRANSPOSE})
    fits = [([1, 2, 256, 512], [0, 1, 3, 2]),              # 3-D permutation: 2^16 per axis
            ([1, 1, 2, 256, 256], [0, 1, 2, 4, 3]),        # the same at rank 5
            ([1, 2, 2, 2, 128, 128], [0, 3, 4, 1, 5, 2]),  # else: any 4 of 6 axes <= 2^16
            ([300, 200], [1, 0]), ([1, 21, 8, 8, 65, 65], [0, 1, 2, 3, 4, 5])]
    for shape, perm in fits:
        assert messages(transpose(shape, perm), p) == [], (shape, perm)
    # an axis above 2^16 breaks both forms alike: reported on its own, under max_dim
    [v] = check_model(transpose([1, 1, 2, 66560], [0, 1, 3, 2]), p)
    assert v.rule == "operators.Transpose.max_dim"
    [v] = check_model(transpose([70000, 3], [1, 0]), p)   # rank 2: Vela's per-axis bound
    assert v.rule == "operators.Transpose.max_dim"
    # the x8 shuffle of LR-ASPP (docs/ethos_u.md): 21*8*65*65 = 709800
    [msg] = messages(transpose([1, 21, 8, 8, 65, 65], [0, 1, 4, 2, 5, 3]), p)
    assert msg == ("Transpose 't': fits none of the 2 allowed forms: (1) permutation [0, 1, 4, 2, 5, 3] moves axis 2; "
                   "the target permutes only the last 3 axes; (2) input 'x' [1,21,8,8,65,65]: the product of any 4 "
                   "of its 6 dimensions must be at most 65536, and its 4 largest give 709800")
    u55 = [{k: v for k, v in r.to_dict().items() if k != "note"} for r in load_profile("arm-ethos-u55").rules("Transpose")]
    assert u55 == VELA_TRANSPOSE
    assert load_profile("arm-ethos-u85").rules("Transpose") is None  # no size limit on the U85


# --- MatMul: constant or computed operands ------------------------------------------------

def test_computed_operands(tmp_path):
    p = inline(tmp_path, {"MatMul": {"computed_operands": True}})
    both = model_of([helper.make_node("MatMul", ["a", "b"], ["y"], name="m")], {"a": [1, 4, 8, 8], "b": [1, 4, 8, 8]})
    assert messages(both, p) == []
    weight = numpy_helper.from_array(np.ones((8, 16), np.float32), "w")
    const = model_of([helper.make_node("MatMul", ["a", "w"], ["y"], name="m")], {"a": [1, 4, 8, 8]}, [weight])
    assert messages(const, p) == [
        "MatMul 'm': operand 'w' is a constant (known before run time); the target runs MatMul only on operands "
        "computed at run time"]
    # a weight behind a folded chain (Transpose of an initializer) is a constant too
    nodes = [helper.make_node("Transpose", ["w"], ["wt"], name="wt", perm=[1, 0]),
             helper.make_node("MatMul", ["a", "wt"], ["y"], name="m")]
    chain = model_of(nodes, {"a": [1, 4, 8, 16]}, [weight])
    assert messages(chain, p) == [
        "MatMul 'm': operand 'wt' is a constant (known before run time); the target runs MatMul only on operands "
        "computed at run time"]


def _conv(x, y, kernel, name, c=8):
    w = numpy_helper.from_array(np.ones((c, c) + tuple(kernel), np.float32), f"w_{name}")
    return helper.make_node("Conv", [x, w.name], [y], name=name, kernel_shape=list(kernel)), w


def test_no_reshaped_inputs(tmp_path):
    """A Concat or a Slice reading a tensor onnx2tf writes or reads through a
    RESHAPE (a 1-D Conv's output, a Reshape's output, or one a 1-D Conv also
    reads) breaks it; after a 2-D Conv, or with a requantizing Relu between, not."""
    p = inline(tmp_path, {"Concat": {"no_reshaped_inputs": True},
                          "Slice": {"steps": [1], "no_reshaped_inputs": True}})
    concat = helper.make_node("Concat", ["u", "u"], ["y"], name="cat", axis=1)
    c1d, w1 = _conv("x", "u", [3], "c1d")
    assert messages(model_of([c1d, concat], {"x": [1, 8, 16]}, [w1]), p) == [
        "Concat 'cat': input 'u' passes through a RESHAPE in onnx2tf's TFLite (at 'c1d'), whose int8 scales the "
        "quantizer may make differ (it forces the Concat's scale onto the input), which the target's compiler refuses"]
    c2d, w2 = _conv("x", "u", [3, 3], "c2d")
    assert messages(model_of([c2d, concat], {"x": [1, 8, 16, 16]}, [w2]), p) == []
    relu = helper.make_node("Relu", ["r"], ["u"], name="relu")
    c1d_r, w1r = _conv("x", "r", [3], "c1d")
    assert messages(model_of([c1d_r, relu, concat], {"x": [1, 8, 16]}, [w1r]), p) == []
    # read through a RESHAPE: a 1-D Conv reads the Concat's input too (a graph input here)
    reader, w3 = _conv("u", "v", [1], "reader")
    graph = GraphView(model_of([reader, concat], {"u": [1, 8, 16]}, [w3]))
    assert [v for v in node_violations(graph.graph.node[1], graph, p)] == [
        "Concat 'cat': input 'u' passes through a RESHAPE in onnx2tf's TFLite (at 'reader'), whose int8 scales the "
        "quantizer may make differ (it forces the Concat's scale onto the input), which the target's compiler refuses"]
    # a Slice of a Reshape's output; a Slice reads only its data input through the rule
    nodes = [helper.make_node("Reshape", ["x", "s"], ["u"], name="rs"),
             helper.make_node("Slice", ["u", "st", "en", "ax"], ["y"], name="sl")]
    inits = [ints("s", [1, 8, 64]), ints("st", [0]), ints("en", [1]), ints("ax", [2])]
    assert messages(model_of(nodes, {"x": [1, 8, 8, 8]}, inits), p)[0].startswith(
        "Slice 'sl': input 'u' passes through a RESHAPE in onnx2tf's TFLite (at 'rs')")
    sl = helper.make_node("Slice", ["x", "st", "en", "ax"], ["y"], name="sl")
    assert messages(model_of([sl], {"x": [1, 8, 8, 8]}, inits[1:]), p) == []
    # an Add between the Reshape and the Slice (a lowered ConvTranspose's bias before its crop)
    # requantizes: the Slice's input is the Add's; unless a Reshape reads the Add's output too
    add = [helper.make_node("Reshape", ["x", "s"], ["r"], name="rs"),
           helper.make_node("Add", ["b", "r"], ["u"], name="bias"),
           helper.make_node("Slice", ["u", "st", "en", "ax"], ["y"], name="sl")]
    inits_add = inits + [numpy_helper.from_array(np.ones((1, 8, 1), np.float32), "b")]
    assert messages(model_of(add, {"x": [1, 8, 8, 8]}, inits_add), p) == []
    read_again = add + [helper.make_node("Reshape", ["u", "s2"], ["z"], name="rs2")]
    graph = GraphView(model_of(read_again, {"x": [1, 8, 8, 8]}, inits_add + [ints("s2", [1, 8, 8, 8])]))
    assert [v for v in node_violations(graph.graph.node[2], graph, p)] == [
        "Slice 'sl': input 'u' passes through a RESHAPE in onnx2tf's TFLite (at 'rs2'), whose int8 scales the "
        "quantizer may make differ (it forces the Slice's scale onto the input), which the target's compiler refuses"]


# --- static_shapes --------------------------------------------------------------------

def _relu_on(shape):
    return model_of([helper.make_node("Relu", ["x"], ["y"], name="r")], {"x": shape})


def test_static_shapes_reports_every_symbolic_input_dimension(tmp_path):
    path = tmp_path / "static.json"
    path.write_text(json.dumps({"name": "static", "static_shapes": True}))
    static = load_profile(path)
    found = check_model(_relu_on(["N", 4, "H", 8]), static)
    assert [(v.node, v.rule) for v in found] == [("x", "static_shapes")]
    assert re.search(r"graph input 'x' \[\?,4,\?,8\] has symbolic dimension\(s\) at axis 0, 2; the target "
                     r"needs static shapes", found[0].message), found[0].message
    assert check_model(_relu_on([1, 4, 8, 8]), static) == []
    path.write_text(json.dumps({"name": "lenient"}))
    assert check_model(_relu_on(["N", 4, "H", 8]), load_profile(path)) == []  # the default: not checked


def test_static_shapes_on_ethos_u_is_reported_before_the_batch_is_fixed_to_one():
    """batch_must_be_one checks a symbolic batch as 1; static_shapes still sees it
    (onnx2tf keeps its shape arithmetic, which Vela runs on the CPU)."""
    for name in ("arm-ethos-u55", "arm-ethos-u85"):
        profile = load_profile(name)
        assert profile.static_shapes and profile.batch_must_be_one
        assert [v.rule for v in check_model(_relu_on(["N", 4, 8, 8]), profile)] == ["static_shapes"]


def test_static_shapes_must_be_a_boolean(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "static_shapes": "yes"}))
    with pytest.raises(InputError, match=r"static_shapes: must be true or false"):
        load_profile(path)


# --- Resize: the largest scale, by any ratio --------------------------------------------------

def nearest_resize(x, out):
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="r", mode="nearest")
    return model_of([node], {"x": [1, 4, *x]}, [ints("sizes", [1, 4, *out])])


def test_max_factor(tmp_path):
    p = inline(tmp_path, {"Resize": {"max_factor": 1024}})
    assert messages(nearest_resize([8, 8], [12, 12]), p) == []        # x1.5
    assert messages(nearest_resize([16, 16], [8, 8]), p) == []        # x0.5
    assert messages(nearest_resize([1, 2], [1, 2048]), p) == []       # x1024 on W
    assert messages(nearest_resize([1, 2], [1, 2050]), p) == [
        "Resize 'r': scale factors 1x1025 not allowed (the target scales each axis by at most 1024, by any ratio)"]
    assert p.allows_op("Resize", factors=[3.5, 3.5]) and not p.allows_op("Resize", factors=[2048, 1])
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="r", mode="nearest")
    channels = model_of([node], {"x": [1, 4, 8, 8]}, [ints("sizes", [1, 8, 8, 8])])
    assert messages(channels, p) == ["Resize 'r': resizes the batch or channel axis; the target resizes spatial axes only"]


# --- Gather: the axis it indexes -----------------------------------------------------------------

def gather(axis, shape=(8, 64)):
    node = helper.make_node("Gather", ["x", "i"], ["y"], name="g", axis=axis)
    return model_of([node], {"x": list(shape)}, [ints("i", [1, 0])])


def test_gather_axes(tmp_path):
    p = inline(tmp_path, {"Gather": {"gather_axes": ["batch"]}})
    assert messages(gather(0), p) == []
    assert messages(gather(-2), p) == []                              # axis 0 of a matrix, counted from the end
    assert messages(gather(1), p) == ["Gather 'g': gathers along axis 1; the target gathers only along axis 0"]
    assert messages(gather(3, (1, 8, 8, 8)), p) == [
        "Gather 'g': gathers along axis 3; the target gathers only along axis 0"]
    assert p.allows_op("Gather", axis=0) and p.allows_op("Gather") and not p.allows_op("Gather", axis=1)


# --- Concat: a channel Concat of spatial joins -------------------------------------------------
#
# onnx2tf 2.6.9 (flatbuffer_direct) joins such a Concat along W of tensors it keeps in NCHW
# (docs/tflite.md reproducer 10). A spatial join is a Concat along axis 2 or up, or an edge Pad
# (which onnx2tf writes as slices and a CONCATENATION), read directly or through Slices and
# constant Pads.

JOIN = {"Concat": {"no_channel_join_of_spatial_joins": True}}


def joined(producers, axis=1, inputs=None, inits=()):
    """producers: nodes writing 'a' and 'b' from x [1,4,6,6]; then Concat(a, b, axis) 'c'."""
    nodes = list(producers) + [helper.make_node("Concat", ["a", "b"], ["y"], name="c", axis=axis)]
    return model_of(nodes, inputs or {"x": [1, 4, 6, 6]}, list(inits))


def _slice(src, out, name, starts, ends, axes):
    return helper.make_node("Slice", [src, f"{name}_s", f"{name}_e", f"{name}_a"], [out], name=name)


def _slice_inits(name, starts, ends, axes):
    return [ints(f"{name}_s", starts), ints(f"{name}_e", ends), ints(f"{name}_a", axes)]


def test_a_channel_concat_of_a_spatial_concat_breaks_it(tmp_path):
    p = inline(tmp_path, JOIN)
    spatial = [helper.make_node("Concat", ["x", "x"], ["a"], name="w", axis=3),
               helper.make_node("Concat", ["x", "x"], ["b"], name="w2", axis=3)]
    assert messages(joined(spatial), p) == [
        "Concat 'c': joins along the channel axis what is joined along a spatial axis: 'a' (Concat 'w' along "
        "axis 3) and 'b' (Concat 'w2' along axis 3); the target joins along channels only tensors not joined "
        "spatially"]
    # a negative axis counts from the end: -3 is the channel axis, -1 W
    negative = [helper.make_node("Concat", ["x", "x"], ["a"], name="w", axis=-1), helper.make_node("Relu", ["x"], ["r"]),
                helper.make_node("Concat", ["r", "r"], ["b"], name="w2", axis=-1)]
    [msg] = messages(joined(negative, axis=-3), p)
    assert "'a' (Concat 'w' along axis 3) and 'b' (Concat 'w2' along axis 3)" in msg
    # the same inputs joined along W, or tensors joined along channels, break nothing
    assert messages(joined(spatial, axis=3), p) == []
    channels = [helper.make_node("Concat", ["x", "x"], ["a"], name="k", axis=1), helper.make_node("Relu", ["x"], ["b"])]
    assert messages(joined(channels), p) == []
    # nor without the key
    assert messages(joined(spatial), inline(tmp_path, {"Concat": {"note": "no limit"}})) == []


def test_a_spatial_join_is_seen_through_slices_and_constant_pads(tmp_path):
    p = inline(tmp_path, JOIN)
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    edge = [helper.make_node("Pad", ["x", "pads"], ["e"], name="edge", mode="edge"),
            _slice("e", "a", "s1", [0, 0], [6, 6], [2, 3]), _slice("e", "b", "s2", [1, 1], [7, 7], [2, 3])]
    inits = [pads] + _slice_inits("s1", [0, 0], [6, 6], [2, 3]) + _slice_inits("s2", [1, 1], [7, 7], [2, 3])
    [msg] = messages(joined(edge, inits=inits), p)
    assert msg.startswith("Concat 'c': joins along the channel axis what is joined along a spatial axis: 'a' "
                          "(edge Pad 'edge', through Slice 's1') and 'b' (edge Pad 'edge', through Slice 's2')"), msg
    # a zero border of a spatial Concat is still joined; a reflect Pad (MIRROR_PAD) and a Conv are not joins
    zero = [helper.make_node("Concat", ["x", "x"], ["w"], name="w", axis=2),
            helper.make_node("Pad", ["w", "pads"], ["a"], name="z", mode="constant"), helper.make_node("Relu", ["a"], ["b"])]
    [msg] = messages(joined(zero, inits=[pads]), p)
    assert "'a' (Concat 'w' along axis 2, through Pad 'z')" in msg and "'b'" not in msg
    mirror = [helper.make_node("Pad", ["x", "pads"], ["a"], name="m", mode="reflect"), helper.make_node("Relu", ["a"], ["b"])]
    assert messages(joined(mirror, inits=[pads]), p) == []
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "wt")
    conv = [helper.make_node("Concat", ["x", "x"], ["w"], name="w", axis=3),
            helper.make_node("Conv", ["w", "wt"], ["a"], name="conv"),
            helper.make_node("Conv", ["w", "wt"], ["b"], name="conv2")]
    assert messages(joined(conv, inits=[w]), p) == []


def test_the_tflite_profile_has_the_channel_join_rule():
    p = load_profile("tflite")
    [rule] = p.rules("Concat")
    assert rule.no_channel_join_of_spatial_joins and "reproducer 10" in rule.note
    for name in ("arm-ethos-u55", "arm-ethos-u85", "generic-npu"):
        rules = load_profile(name).rules("Concat")
        assert rules is None or not any(r.no_channel_join_of_spatial_joins for r in rules)


@pytest.mark.parametrize("key", ["standard_convs_first", "bias_after_shuffle"])
def test_preference_keys_must_be_booleans_and_round_trip(tmp_path, key):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", key: 1}))
    with pytest.raises(InputError, match=rf"{key}: must be true or false"):
        load_profile(path)
    path.write_text(json.dumps({"name": "good", key: True}))
    assert load_profile(path).to_dict()[key] is True


def test_no_reshaped_inputs_knows_a_1d_conv_by_its_weight(tmp_path):
    """A 1-D Conv whose input's shape inference cannot tell (a custom
    operator writes it) is still 1-D: its weight has one spatial axis, and
    a pool's kernel_shape one entry.  The Slice of its output broke
    nothing where the rank was read from the input alone."""
    p = inline(tmp_path, {"Slice": {"steps": [1], "no_reshaped_inputs": True}})
    inits = [ints("st", [0]), ints("en", [4]), ints("ax", [2])]
    for op, extra in [("Conv", dict(kernel_shape=[3], pads=[1, 1])), ("MaxPool", dict(kernel_shape=[3]))]:
        writer = helper.make_node(op, ["g"] + (["w"] if op == "Conv" else []), ["u"], name="c1d",
                                  **({"pads": [1, 1]} if op == "Conv" else extra))
        nodes = [helper.make_node("Gelu2", ["x"], ["g"], name="custom", domain="my.ops"), writer,
                 helper.make_node("Slice", ["u", "st", "en", "ax"], ["y"], name="sl")]
        model = model_of(nodes, {"x": [1, 8, 16]}, inits + [numpy_helper.from_array(np.ones((8, 8, 3), np.float32), "w")])
        model.opset_import.append(helper.make_opsetid("my.ops", 1))
        graph = GraphView(model)
        assert graph.shape("g") is None
        assert messages(model, p)[0].startswith("Slice 'sl': input 'u' passes through a RESHAPE in onnx2tf's TFLite "
                                                "(at 'c1d')"), op


@pytest.mark.parametrize("writer", ["Reshape", "reader"])
def test_no_reshaped_inputs_sees_the_graph_around_a_replacement(writer):
    """A lowering is judged in a model of its own nodes, where what it reads
    from the graph is a graph input: a dilated Conv (U55: its dense kernel
    costs more than the profile allows) whose input a Reshape writes, or a
    1-D Conv elsewhere also reads, took the taps form, Slices of that input,
    which broke no_reshaped_inputs in the model it was written into (Vela
    stops on it) while its own model said it fit."""
    from tests.helpers import assert_rewrites

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32), "wd")]
    dilated = helper.make_node("Conv", ["t", "wd"], ["y"], name="dilated", kernel_shape=[3, 3],
                               dilations=[12, 12], pads=[12] * 4)
    outputs = [helper.make_tensor_value_info("y", F, [1, 64, 16, 16])]
    if writer == "Reshape":
        nodes = [helper.make_node("Reshape", ["x", "s"], ["t"], name="rs"), dilated]
        x = helper.make_tensor_value_info("x", F, [1, 64 * 16 * 16])
        inits.append(ints("s", [1, 64, 16, 16]))
    else:   # t a graph input, read by a 1-D Conv (through its RESHAPE) as well
        nodes = [dilated, helper.make_node("Reshape", ["t", "s1"], ["f"], name="flat"),
                 helper.make_node("Conv", ["f", "w1"], ["z"], name="c1d", kernel_shape=[1])]
        x = helper.make_tensor_value_info("t", F, [1, 64, 16, 16])
        inits += [ints("s1", [1, 64, 256]), numpy_helper.from_array(np.ones((4, 64, 1), np.float32), "w1")]
        outputs.append(helper.make_tensor_value_info("z", F, [1, 4, 256]))
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    u55 = load_profile("arm-ethos-u55")
    new, report = assert_rewrites(model, "dilated-conv", {"Conv": 9 + (writer == "reader")}, target=u55)
    assert report.target["fits"], report.target["violations"]
    assert not [n.name for n in new.graph.node if n.op_type == "Slice" and n.input[0] == "t"]
