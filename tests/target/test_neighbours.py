"""A lowering is judged together with the existing nodes that read its
outputs, for the rules whose facts come from a node's producers
(`no_reshaped_inputs`, `no_channel_join_of_spatial_joins`): a replacement
that fits by itself but makes such a reader break one of them is not a form
that fits (convrewrite/core/lowering.py `judged`).

Found on smp_upernet_resnet18 (`--target arm-ethos-u55`): a linear x3
Resize's deconv form, its ConvTranspose lowered again to a Conv and the
Reshape/Transpose pixel shuffle, ends in a Reshape, and the PSP Concat that
reads the Resize's output then broke no_reshaped_inputs (check-target 4 ->
5 misfits) though the pointwise form fits without it."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite import optimize
from convrewrite.core.report import REWRITTEN
from convrewrite.core.rewrite import Code
from convrewrite.target import check_model, load_profile
from tests.helpers import assert_rewrites, assert_skips, forms
from toy_passes import ReluJoinedFirst

F = TensorProto.FLOAT


def resize_into_concat(mode: str, factor: int, reader: str = "Concat", n: int = 6):
    """x -> 1x1 Conv -> Resize (half_pixel, `factor`) -> r; `reader` reads r:
    a channel Concat with another branch y, or a crop Slice of r."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 8, 1, 1)) * 0.3).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1, 1, factor, factor], np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node("Resize", ["c", "", "scales"], ["r"], name="resize", mode=mode,
                              coordinate_transformation_mode="half_pixel")]
    inputs = [helper.make_tensor_value_info("x", F, [1, 8, n, n])]
    m = n * factor
    if reader == "Concat":
        nodes.append(helper.make_node("Concat", ["r", "y"], ["z"], name="cat", axis=1))
        inputs.append(helper.make_tensor_value_info("y", F, [1, 4, m, m]))
        out = [1, 12, m, m]
    else:
        nodes.append(helper.make_node("Slice", ["r", "st", "en", "ax"], ["z"], name="crop"))
        inits += [numpy_helper.from_array(np.array(v, np.int64), k)
                  for k, v in (("st", [1, 1]), ("en", [m - 1, m - 1]), ("ax", [2, 3]))]
        out = [1, 8, m - 2, m - 2]
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("z", F, out)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("mode,factor,reader", [("linear", 3, "Concat"), ("nearest", 3, "Concat"),
                                                ("linear", 4, "Concat"), ("linear", 3, "Slice")])
def test_a_lowering_leaves_its_readers_fitting(mode, factor, reader):
    """The Resize (U55: factor 3 or 4 at half_pixel is not run) is lowered to
    a form after which every node fits, the reader included (pointwise); the
    deconv form, whose ConvTranspose (stride 3 or 4) the convtranspose pass
    lowers to a Conv and the Reshape/Transpose pixel shuffle the reader would
    read, is passed over.  Before: deconv, and the reader broke
    no_reshaped_inputs."""
    u55 = load_profile("arm-ethos-u55")
    model = resize_into_concat(mode, factor, reader)
    before = check_model(model, u55)
    assert [v.node for v in before] == ["resize"], [v.message for v in before]
    new, report = assert_rewrites(model, ["resize", "convtranspose"], {"Resize": 0}, target=u55)
    assert report.target["fits"], report.target["violations"]
    assert check_model(new, u55) == []
    assert forms(report) == ["pointwise"], forms(report)


def test_the_report_says_the_reader_fits(tmp_path):
    """The same through the command line's JSON report and check-target."""
    from cli import main

    src, out, rep = tmp_path / "m.onnx", tmp_path / "o.onnx", tmp_path / "r.json"
    import onnx
    onnx.save(resize_into_concat("linear", 3), src)
    assert main(["optimize", str(src), "-o", str(out), "--target", "arm-ethos-u55", "--report", str(rep),
                 "-q"]) == 0
    report = json.loads(rep.read_text())
    assert report["target"]["nodes_not_fitting"] == 0, report["target"]["violations"]
    assert main(["check-target", str(out), "--target", "arm-ethos-u55", "--strict", "-q"]) == 0
    assert main(["check-target", str(src), "--target", "arm-ethos-u55", "--strict", "-q"]) == 3


def convtranspose_into_concat(stride: int, kernel: int, bias: bool, n: int = 6):
    """x -> ConvTranspose (stride, kernel, no pads) -> r; Concat(r, y) along channels."""
    rng = np.random.default_rng(1)
    m = (n - 1) * stride + kernel
    inits = [numpy_helper.from_array((rng.standard_normal((8, 8, kernel, kernel)) * 0.3).astype(np.float32), "w")]
    if bias:
        inits.append(numpy_helper.from_array((rng.standard_normal(8) * 0.3).astype(np.float32), "b"))
    nodes = [helper.make_node("ConvTranspose", ["x", "w"] + (["b"] if bias else []), ["r"], name="ct",
                              kernel_shape=[kernel, kernel], strides=[stride, stride]),
             helper.make_node("Concat", ["r", "y"], ["z"], name="cat", axis=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, 8, n, n]),
                                       helper.make_tensor_value_info("y", F, [1, 4, m, m])],
                          [helper.make_tensor_value_info("z", F, [1, 12, m, m])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_a_convtranspose_takes_the_variant_its_reader_takes():
    """A stride-3 ConvTranspose (U55 runs strides 1 and 2) read by a Concat:
    the single-conv form's Reshape/Transpose shuffle variants end in the
    Reshape the Concat would read; the one that adds the bias after the
    shuffle puts an Add (which requantizes) between them, and is taken.
    Before: 'single-conv, CRD Reshape/Transpose', and the Concat broke
    no_reshaped_inputs."""
    u55 = load_profile("arm-ethos-u55")
    new, report = assert_rewrites(convtranspose_into_concat(3, 3, bias=True), "convtranspose",
                                  {"ConvTranspose": 0, "Add": 1}, target=u55)
    assert report.target["fits"], report.target["violations"]
    (record,) = report.records(REWRITTEN)
    assert (record.form, record.variant) == ("single-conv", "CRD Reshape/Transpose, bias after the shuffle")
    assert any("form 'single-conv, CRD Reshape/Transpose' not used: Concat 'cat': input 'r' passes through a "
               "RESHAPE in onnx2tf's TFLite (at 'ct/convtranspose/shuffle_merge')" in n and
               "it reads the lowering's output, and did not break this rule before" in n for n in record.notes), \
        record.notes


def test_no_form_that_leaves_its_reader_fitting_is_never_worse():
    """Without a bias no variant puts a requantizing node between the
    shuffle's Reshape and the Concat: every form leaves one node the target
    does not run (a DepthToSpace, or the Concat), not fewer than the
    ConvTranspose it replaces, so the node is left as it is (never worse;
    before, the rewrite traded the ConvTranspose for a Concat that Vela's
    compile refuses)."""
    u55 = load_profile("arm-ethos-u55")
    model = convtranspose_into_concat(3, 3, bias=False)
    assert_skips(model, "convtranspose", r"no lowering form runs on target 'arm-ethos-u55', so the node is left "
                                         r"as it is.*not fewer than the 1 it replaces", code=Code.NO_FORM, target=u55)
    new, report = optimize(model, target=u55)
    assert [v.node for v in check_model(new, u55)] == [v.node for v in check_model(model, u55)] == ["ct"]


def _relu_into_concat(y_joined: bool):
    """x -> Relu -> r; Concat(r, y) along channels, y a graph input or
    (y_joined) itself a Concat of two halves along the last axis."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu")]
    inputs = [helper.make_tensor_value_info("x", F, [1, 3, 4, 6])]
    if y_joined:
        nodes.append(helper.make_node("Concat", ["a", "a"], ["y"], name="ay", axis=3))
        inputs.append(helper.make_tensor_value_info("a", F, [1, 2, 4, 3]))
    else:
        inputs.append(helper.make_tensor_value_info("y", F, [1, 2, 4, 6]))
    nodes.append(helper.make_node("Concat", ["r", "y"], ["z"], name="cat", axis=1))
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("z", F, [1, 5, 4, 6])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("y_joined", [False, True])
def test_a_channel_concat_reading_a_spatial_join(tmp_path, y_joined):
    """The same for the tflite profile's no_channel_join_of_spatial_joins,
    which a channel Concat breaks where an input is a spatial Concat: a toy
    pass whose first form ends in a Concat along W fits by itself, and makes
    the Concat reading its output break the rule; the second form is taken.
    Where that Concat broke the rule before (its other input is a spatial
    join already), the first form makes nothing worse and is taken."""
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"operators": {"Relu": {"supported": False},
                                              "Concat": {"no_channel_join_of_spatial_joins": True}}}))
    profile = load_profile(path)
    model = _relu_into_concat(y_joined)
    assert len(check_model(model, profile)) == 1 + y_joined
    new, report = assert_rewrites(model, ReluJoinedFirst(), {"Relu": 0, "Max": 1}, target=profile)
    assert forms(report) == (["joined"] if y_joined else ["max"])
    assert [v.node for v in check_model(new, profile)] == (["cat"] if y_joined else [])
    if not y_joined:
        (record,) = report.records(REWRITTEN)
        assert any("form 'joined' not used: Concat 'cat': joins along the channel axis what is joined along a "
                   "spatial axis: 'r' (Concat 'relu/relu-joined/join' along axis 3)" in n for n in record.notes), \
            record.notes


def test_an_unnamed_reader_is_named_as_in_the_graph(tmp_path):
    """An unnamed Concat's label is its place in the graph (Concat_2 here,
    after an Identity and the Relu); in the replacement's model, after the
    joined form's five nodes, it is another (Concat_4).  The reasons say
    what the user finds in the graph, and the value the replacement writes
    by the original output's name, 'r'.  Before, the value was renamed by a
    search of the text, and the reader kept its label in that model."""
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"operators": {"Relu": {"supported": False},
                                              "Concat": {"no_channel_join_of_spatial_joins": True}}}))
    profile = load_profile(path)
    nodes = [helper.make_node("Identity", ["y0"], ["y"]), helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Concat", ["r", "y"], ["z"], axis=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, 3, 4, 6]),
                                       helper.make_tensor_value_info("y0", F, [1, 2, 4, 6])],
                          [helper.make_tensor_value_info("z", F, [1, 5, 4, 6])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    new, report = assert_rewrites(model, ReluJoinedFirst(), {"Relu": 0, "Max": 1}, target=profile)
    assert forms(report) == ["max"]
    (record,) = report.records(REWRITTEN)
    (note,) = [n for n in record.notes if "form 'joined' not used" in n]
    assert note == (f"target {profile.name}: form 'joined' not used: Concat 'Concat_2': joins along the channel "
                    "axis what is joined along a spatial axis: 'r' (Concat 'relu/relu-joined/join' along axis 3); "
                    "the target joins along channels only tensors not joined spatially (it reads the lowering's "
                    "output, and did not break this rule before)"), note


def resize_1d_beside(reader: str):
    """x0 -> Relu -> x; x -> 1-D nearest Resize x2 (asymmetric, round_prefer_floor) -> r,
    and an existing `reader` of x: a channel Concat with y, or a crop Slice.
    round_prefer_floor: the profiles claim it on 2-D maps only (1-D asymmetric
    floor they keep as it is since it was measured, docs/ethos_u.md *1-D
    Resize*), so the lowering is asked for; at x2 it is floor."""
    inits = [numpy_helper.from_array(np.array([1, 1, 2], np.float32), "scales")]
    nodes = [helper.make_node("Relu", ["x0"], ["x"], name="relu"),
             helper.make_node("Resize", ["x", "", "scales"], ["r"], name="resize", mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="round_prefer_floor")]
    inputs = [helper.make_tensor_value_info("x0", F, [1, 8, 6])]
    if reader == "Concat":
        nodes.append(helper.make_node("Concat", ["x", "y"], ["z"], name="cat", axis=1))
        inputs.append(helper.make_tensor_value_info("y", F, [1, 4, 6]))
        out = [1, 12, 6]
    else:
        inits += [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in (("st", [1]), ("en", [5]), ("ax", [2]))]
        nodes.append(helper.make_node("Slice", ["x", "st", "en", "ax"], ["z"], name="crop"))
        out = [1, 8, 4]
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("r", F, [1, 8, 12]),
                                               helper.make_tensor_value_info("z", F, out)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("target", ["arm-ethos-u55", "arm-ethos-u85"])
@pytest.mark.parametrize("reader", ["Concat", "Slice"])
def test_a_lowering_leaves_the_other_readers_of_its_input_fitting(target, reader):
    """no_reshaped_inputs reads a Concat's (a Slice's) input's other readers
    too: asked for the deconv form, a 1-D nearest Resize the profiles do not
    keep (resize_1d_beside) becomes a 1-D ConvTranspose reading x, which onnx2tf runs
    between two RESHAPEs, and the Concat beside it reading x would read a
    RESHAPE's input: Vela refuses it.  The lowering is judged with the
    existing readers of its inputs: deconv does not fit, the shuffle form
    (channel copies, then the Reshape/Transpose pixel shuffle, none reading
    x through a RESHAPE) is taken.  Before: deconv, 'fits', and check-target
    on the result reported the Concat."""
    profile = load_profile(target)
    model = resize_1d_beside(reader)
    assert [v.node for v in check_model(model, profile)] == ["resize"]
    label = "cat" if reader == "Concat" else "crop"
    new, report = assert_rewrites(model, "resize", {"Resize": 0, "ConvTranspose": 0}, target=profile,
                                  resize_nearest="deconv")
    assert forms(report) == ["shuffle"], forms(report)
    assert report.target["fits"], report.target["violations"]
    assert check_model(new, profile) == []
    (record,) = report.records(REWRITTEN)
    assert any(n.startswith(f"target {target}: form 'deconv' not used: {reader} '{label}': input 'x' passes through "
                            "a RESHAPE in onnx2tf's TFLite (at 'resize/resize/deconv')") and
               n.endswith("(it reads an input of the lowering, and did not break this rule before)")
               for n in record.notes), record.notes


def test_the_deconv_form_stays_where_no_other_reader_is_judged():
    """The same Resize with the Concat reading the Relu's input instead: no
    node beside the lowering reads x, and the deconv form asked for is
    taken (the judgement of the neighbours changes nothing there)."""
    u55 = load_profile("arm-ethos-u55")
    model = resize_1d_beside("Concat")
    model.graph.node[2].input[0] = "x0"
    new, report = assert_rewrites(model, "resize", {"Resize": 0, "ConvTranspose": 1}, target=u55,
                                  resize_nearest="deconv")
    assert forms(report) == ["deconv"], forms(report)
    assert check_model(new, u55) == []
