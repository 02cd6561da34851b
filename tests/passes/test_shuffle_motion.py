"""shuffle-motion: a DepthToSpace moved after the pointwise ops that follow it,
to where it shuffles fewer channels.  Every positive case goes through
assert_rewrites (model, op counts, numerical equivalence, idempotence)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from convrewrite import optimize
from convrewrite.core.cost import model_cost
from convrewrite.core.forms import rank
from convrewrite.core.graph import GraphView
from convrewrite.core.lowering import build
from convrewrite.core.report import REWRITTEN
from convrewrite.core.rewrite import Code, Match
from convrewrite.core.standalone import replacement_model
from builders import with_output_shape
from helpers import assert_rewrites, assert_skips, forms, op_counts
from passes import make_passes
from passes.shuffle_motion.forms import Grouped

MODELS = Path(__file__).resolve().parents[2] / "models"
PASS = "shuffle-motion"


class Net:
    """A small graph written op by op: x [N, C, H, W] -> ... -> y."""

    def __init__(self, shape, seed=0, dtype=np.float32):
        self.rng, self.dtype = np.random.default_rng(seed), dtype
        self.nodes, self.inits, self.k = [], [], 0
        self.input = helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape)
        self.last = "x"

    def const(self, array, name=None) -> str:
        name = name or f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, *others, after=None, **attrs) -> str:
        self.k += 1
        out = f"v{self.k}"
        self.nodes.append(helper.make_node(op_type, [after or self.last, *others], [out], name=f"n{self.k}", **attrs))
        self.last = out
        return out

    def conv(self, cin, cout, k=1, group=1, bias=True, **attrs) -> str:
        w = self.const((self.rng.standard_normal((cout, cin // group, k, k)) * 0.5).astype(self.dtype))
        b = [self.const(self.rng.standard_normal(cout).astype(self.dtype))] if bias else []
        return self.op("Conv", w, *b, kernel_shape=[k, k], group=group, pads=[k // 2] * 4, **attrs)

    def model(self, opset=17, outputs=None, inputs=()) -> onnx.ModelProto:
        outs = [helper.make_tensor_value_info(o, self.input.type.tensor_type.elem_type, None)
                for o in (outputs or [self.last])]
        g = helper.make_graph(self.nodes, "g", [self.input, *inputs], outs, self.inits)
        return with_output_shape(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]))


def head(block=2, c=6, c_out=3, mode="DCR", shape=(1, 5, 7, 7), opset=17, relu=True) -> onnx.ModelProto:
    """Conv 3x3 -> DepthToSpace -> Relu -> Conv 1x1 (c -> c_out)."""
    n = Net(list(shape))
    n.conv(shape[1], block * block * c, k=3)
    n.op("DepthToSpace", blocksize=block, **({"mode": mode} if opset >= 11 else {}))
    if relu:
        n.op("Relu")
    n.conv(c, c_out)
    return n.model(opset)


def test_the_shuffle_moves_after_a_channel_reducing_conv():
    new, report = assert_rewrites(head(), PASS, {"DepthToSpace": 1, "Reshape": 0, "Conv": 2, "Relu": 1})
    assert forms(report) == ["grouped"]
    (record,) = report.records(REWRITTEN)
    assert "shuffles 3 channels instead of 6" in " ".join(record.notes)
    assert [n.op_type for n in new.graph.node] == ["Conv", "Relu", "Conv", "DepthToSpace"]
    conv = new.graph.node[2]
    assert {a.name: helper.get_attribute_value(a) for a in conv.attribute}["group"] == 4
    # grouped: the shuffle writes 3 channels instead of 6, and nothing else moves data
    assert record.moved_bytes_after < record.moved_bytes_before


def test_a_parameter_computed_at_run_time_takes_the_phase_batch_form():
    """Grouped repeats per-channel parameters offline; one fed at run time
    stays as it is on a batch of phase images instead."""
    n = Net([1, 4, 5, 5])
    n.conv(4, 4 * 6, k=3)
    n.op("DepthToSpace", blocksize=2)
    n.op("Mul", "scale")
    n.conv(6, 2)
    model = n.model(inputs=[helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1, 6, 1, 1])])
    new, report = assert_rewrites(model, PASS, {"DepthToSpace": 1, "Reshape": 2, "Mul": 1})
    assert forms(report) == ["phase-batch"]
    (record,) = report.records(REWRITTEN)
    assert "the first form in the pass's order that applies" in " ".join(record.notes)
    graph = GraphView(model)
    match = make_passes([PASS])[0].match(model.graph.node[1], graph)
    assert "reads 'scale' computed at run time" in Grouped().applies(match, graph)


def test_a_crd_shuffle_rebuilds_its_conv_in_dcr_order():
    new, report = assert_rewrites(head(mode="CRD"), PASS, {"DepthToSpace": 1, "Conv": 2})
    (record,) = report.records(REWRITTEN)
    assert any("DCR order" in note for note in record.notes)
    (shuffle,) = [n for n in new.graph.node if n.op_type == "DepthToSpace"]
    assert {a.name: helper.get_attribute_value(a) for a in shuffle.attribute}.get("mode") == b"DCR"


def test_a_crd_shuffle_without_its_own_conv_is_left_with_a_reason():
    n = Net([1, 8, 4, 4])
    n.op("DepthToSpace", blocksize=2, mode="CRD")
    n.conv(2, 1)
    report = assert_skips(n.model(), PASS, code=Code.UNSUPPORTED_ATTRIBUTE,
                          reason="CRD shuffle moves only with the Conv that produces its input.*does not come from a Conv")
    assert report.left_alone == []      # an optimization: nothing a target lacks is left (--strict)


def test_a_grouped_convtranspose_keeps_its_shuffle_and_strict_passes(tmp_path):
    """A grouped ConvTranspose's single-conv form is a grouped Conv with CRD
    channels, which DCR order would mix across groups: the record says so,
    and `--strict` does not count it."""
    n = Net([1, 4, 5, 5])
    w = n.const(np.random.default_rng(1).standard_normal((4, 3, 2, 2)).astype(np.float32))
    n.op("ConvTranspose", w, kernel_shape=[2, 2], strides=[2, 2], group=2)
    n.op("Relu")
    n.conv(6, 1)
    model = n.model()
    new, report = optimize(model)
    (record,) = report.records(pass_name=PASS)
    assert record.code == Code.UNSUPPORTED_ATTRIBUTE and "has group 2" in record.reason, record.reason
    assert report.left_alone == [] and report.records(REWRITTEN)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    cli = Path(__file__).resolve().parents[2] / "cli.py"
    r = subprocess.run([sys.executable, str(cli), "optimize", str(path), "--strict", "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("opset", [9, 10, 11, 13])
def test_old_opsets_use_the_dcr_default(opset):
    assert_rewrites(head(opset=opset), PASS, {"DepthToSpace": 1})


def test_symbolic_batch_and_spatial_sizes():
    assert_rewrites(head(shape=("N", 5, "H", "W")), PASS, {"DepthToSpace": 1})


def test_block_3_and_float16():
    n = Net([2, 4, 5, 6], dtype=np.float16)
    n.conv(4, 9 * 8, k=3)
    n.op("DepthToSpace", blocksize=3)
    n.op("Sigmoid")
    n.conv(8, 2)
    assert_rewrites(n.model(), PASS, {"DepthToSpace": 1}, rtol=1e-2, atol=1e-2)


def test_float64_is_left_with_a_true_reason():
    """onnxruntime has a float64 DepthToSpace (the reason used to say it had
    none); what it lacks is a float64 Conv, and the gain was measured in
    float32 only."""
    n = Net([1, 5, 7, 7], dtype=np.float64)
    n.conv(5, 4 * 6, k=3)
    n.op("DepthToSpace", blocksize=2)
    n.op("Relu")
    n.conv(6, 3)
    assert_skips(n.model(), PASS, code=Code.UNSUPPORTED_TYPE,
                 reason=r"^DepthToSpace '[^']+': element type DOUBLE is not lowered: only float16 and float32 are, "
                        r"because the pass is an optimization measured on onnxruntime CPU in float32 .*, and "
                        r"onnxruntime has no Conv of other types to check a moved 1x1 Conv against$")


def test_it_goes_to_the_last_point_of_fewest_channels():
    """8 channels -> 4 (Conv) -> Relu -> 16 (Conv): past the Relu, not the second Conv."""
    n = Net([1, 3, 6, 6])
    n.conv(3, 32, k=3)
    n.op("DepthToSpace", blocksize=2)
    n.conv(8, 4)
    n.op("Relu")
    n.conv(4, 16)
    new, _ = assert_rewrites(n.model(), PASS, {"DepthToSpace": 1, "Conv": 3})
    assert [x.op_type for x in new.graph.node] == ["Conv", "Conv", "Relu", "DepthToSpace", "Conv"]


def test_per_channel_constants_batchnorm_clip_and_prelu_move_with_it():
    c = 6
    n = Net([1, 4, 5, 5])
    n.conv(4, 4 * c, k=3)
    n.op("DepthToSpace", blocksize=2)
    n.op("Add", n.const(np.arange(c, dtype=np.float32).reshape(c, 1, 1)))
    n.op("Mul", n.const(np.float32(0.5)))
    n.op("BatchNormalization", *[n.const(v.astype(np.float32)) for v in
                                 (np.linspace(.5, 2, c), np.linspace(-1, 1, c), np.linspace(0, .3, c), np.linspace(1, 2, c))])
    n.op("Clip", n.const(np.float32(-1)), n.const(np.float32(2)))
    n.op("PRelu", n.const(np.full((1, c, 1, 1), 0.1, np.float32)))
    n.conv(c, 2)
    assert_rewrites(n.model(), PASS, {"DepthToSpace": 1, "BatchNormalization": 1, "PRelu": 1})


@pytest.mark.parametrize("blocker", ["spatial constant", "two readers", "graph output", "3x3 conv", "strided conv"])
def test_the_run_stops_where_an_op_is_not_pointwise(blocker):
    """Before the channel-reducing Conv something stops the run: no candidate, no record, no change."""
    n = Net([1, 4, 4, 4])
    n.conv(4, 16, k=3)
    n.op("DepthToSpace", blocksize=2)
    outputs = None
    if blocker == "spatial constant":
        n.op("Add", n.const(np.ones((1, 4, 8, 8), np.float32)))
    elif blocker == "two readers":
        relu = n.op("Relu")
        n.op("Sigmoid", after=relu)
        n.last = relu
    elif blocker == "graph output":
        outputs = [n.op("Relu")]
    elif blocker == "3x3 conv":
        n.conv(4, 4, k=3)
    else:
        n.conv(4, 4, strides=[2, 2])
    n.conv(4, 1)
    model = n.model(outputs=(outputs + [n.last]) if outputs else None)
    new, report = optimize(model, passes=[PASS])
    assert report.rewrites == [] and op_counts(new) == op_counts(model)


def test_no_gain_is_no_candidate():
    """A shuffle followed by ops that keep its channels stays; nothing is reported."""
    n = Net([1, 4, 4, 4])
    n.conv(4, 16, k=3)
    n.op("DepthToSpace", blocksize=2)
    n.op("Relu")
    n.conv(4, 4)
    model = n.model()
    new, report = optimize(model, passes=[PASS])
    assert report.rewrites == [] and op_counts(new) == op_counts(model)


def test_a_quantized_shuffle_is_no_candidate():
    n = Net([1, 16, 4, 4])
    scale, zero = n.const(np.float32(0.05), "s"), n.const(np.uint8(128), "z")
    n.op("QuantizeLinear", scale, zero)
    n.op("DequantizeLinear", scale, zero)
    n.op("DepthToSpace", blocksize=2)
    n.op("QuantizeLinear", scale, zero)
    n.op("DequantizeLinear", scale, zero)
    n.conv(4, 1)
    model = n.model()
    _, report = optimize(model, passes=[PASS])
    assert report.rewrites == []


def test_a_target_gets_no_candidates():
    model = head()
    new, report = optimize(model, passes=[PASS], target="generic-npu")
    assert report.rewrites == [] and op_counts(new) == op_counts(model)


def test_the_mask_head_after_convtranspose():
    """The sample Mask R-CNN head: ConvTranspose 2x2/s2 (single-conv, CRD) -> Relu -> 1x1 Conv to the
    classes: the shuffle moves after the class Conv, the Conv before it rebuilt in DCR order; then
    shuffle-spelling spells it one axis at a time (two Reshape/Transpose/Reshape steps)."""
    model = onnx.load(MODELS / "maskrcnn_mask_head.onnx")
    new, report = optimize(model)
    assert forms(report) == ["single-conv", "grouped", "per-axis"]
    assert [n.op_type for n in new.graph.node][-9:] == ["Conv", "Relu", "Conv"] + ["Reshape", "Transpose", "Reshape"] * 2
    assert report.verification.equivalent is True


def _costs_model(kind):
    """Runs of every kind of op the forms tile or keep: BatchNormalization,
    Add, PRelu, a grouped 1x1 Conv, Clip, Sum; a run-time parameter."""
    c = 8
    n = Net(["N", 3, 4, 5] if kind == "runtime" else [2, 3, 4, 5])
    n.conv(3, 4 * c, k=3, bias=False)
    n.op("DepthToSpace", blocksize=2, mode="CRD")
    n.op("BatchNormalization", *[n.const(np.linspace(.5, 2, c).astype(np.float32)) for _ in range(4)])
    n.op("Add", n.const(np.linspace(-1, 1, c, dtype=np.float32).reshape(c, 1, 1)))
    n.op("PRelu", n.const(np.full((c, 1, 1), .2, np.float32)))
    n.conv(c, c, group=4)
    n.op("Clip", n.const(np.float32(-2)), "")
    n.op("Sum", n.const(np.float32(1)), n.const(np.ones((1, c, 1, 1), np.float32)))
    if kind == "runtime":
        n.op("Mul", "scale")
    n.conv(c, 2)
    inputs = [helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1, c, 1, 1])] if kind == "runtime" else ()
    return n.model(inputs=inputs)


@pytest.mark.parametrize("model,batch,forms_", [
    (lambda: head(mode="CRD", shape=(3, 5, 7, 7)), 3, ["grouped", "phase-batch"]),
    (lambda: head(block=3, shape=(1, 2, 4, 5)), 1, ["grouped", "phase-batch"]),
    (lambda: _costs_model("constants"), 2, ["grouped", "phase-batch"]),
    (lambda: _costs_model("runtime"), 1, ["phase-batch"]),
])
def test_form_costs_are_exact(model, batch, forms_):
    assert_costs_exact(model(), batch, forms_)


def assert_costs_exact(model, batch, forms_):
    """Every form that applies to the model's shuffle (`forms_`, in rank
    order): the Cost worked out before building is the built replacement's
    (MACs and bytes per batch item, nodes, rank)."""
    p = make_passes([PASS])[0]
    graph = GraphView(model)
    node = next(n for n in model.graph.node if n.op_type == "DepthToSpace")
    match = p.match(node, graph)
    assert isinstance(match, Match), match
    options = rank(p, match, graph, None, with_variants=True, with_opt_in=True).options
    assert [o.form.name for o in options] == forms_
    for option in options:
        built = model_cost(replacement_model(build(p, match, option, graph), graph))
        c = option.cost
        assert (c.macs * batch, c.moved_bytes * batch, c.nodes, c.max_rank, c.grouped_macs * batch,
                c.streamed_bytes * batch) == \
            (built.macs, built.moved_bytes, built.nodes, built.max_rank, built.grouped_macs,
             built.streamed_bytes), option.label


def test_every_op_kind_moves_exactly():
    for kind in ("constants", "runtime"):
        _, report = assert_rewrites(_costs_model(kind), PASS, {"DepthToSpace": 1, "BatchNormalization": 1})
        assert forms(report) == (["grouped"] if kind == "constants" else ["phase-batch"])


UNARY = ["Relu", "Sigmoid", "Tanh", "Abs", "Neg", "HardSwish"]


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block=st.integers(2, 3), c=st.integers(2, 8), shrink=st.integers(1, 7), mode=st.sampled_from(["DCR", "CRD"]),
       before=st.lists(st.sampled_from(UNARY + ["add", "conv"]), max_size=3), batch=st.sampled_from([1, 2, "N"]),
       size=st.tuples(st.integers(1, 6), st.integers(1, 6)), group=st.sampled_from([1, 2]))
def test_property_moves_are_exact(block, c, shrink, mode, before, batch, size, group):
    """Random runs of pointwise ops after a (possibly CRD) shuffle, ending in a
    1x1 Conv to fewer channels: always rewritten, equal to the original, idempotent."""
    c_out = max(1, c - shrink)
    n = Net([batch, 3, *size])
    n.conv(3, block * block * c, k=3)
    n.op("DepthToSpace", blocksize=block, mode=mode)
    for op in before:
        if op == "add":
            n.op("Add", n.const(np.linspace(-1, 1, c, dtype=np.float32).reshape(1, c, 1, 1)))
        elif op == "conv":
            n.conv(c, c, group=group if c % group == 0 else 1)
        else:
            n.op(op)
    n.conv(c, c_out)
    assert_rewrites(n.model(), PASS, {"DepthToSpace": 1}, expect_rewrites=1)


def test_a_broadcast_that_widens_the_channels_takes_the_phase_batch_form():
    """[N, 1, H, W] + [1, 3, 1, 1] has 3 channels; in grouped form the phase
    channels (4 x 1) could not broadcast against 4 x 3, so phase-batch."""
    n = Net([1, 3, 4, 4])
    n.conv(3, 16, k=3)
    n.op("DepthToSpace", blocksize=2)
    n.conv(4, 1)
    n.op("Add", n.const(np.arange(3, dtype=np.float32).reshape(1, 3, 1, 1)))
    n.conv(3, 1)
    _, report = assert_rewrites(n.model(), PASS, {"DepthToSpace": 1, "Reshape": 2, "Add": 1})
    assert forms(report) == ["phase-batch"]


def test_a_training_mode_batchnorm_stops_the_run():
    """In training mode BatchNormalization normalizes with statistics over the
    batch and every position (and has its running statistics as outputs); on
    phase channels each phase would get statistics of its own.  Only the
    inference formula moves."""
    def model(training):
        c = 4
        n = Net([2, 3, 4, 4])
        n.conv(3, 4 * c, k=3)
        n.op("DepthToSpace", blocksize=2)
        stats = [n.const(np.linspace(.5, 2, c).astype(np.float32)) for _ in range(4)]
        n.op("BatchNormalization", *stats, **({"training_mode": 1} if training else {}))
        if training:
            n.nodes[-1].output.extend(["running_mean", "running_var"])
        n.conv(c, 1)
        return n.model(opset=15)

    _, report = optimize(model(True), passes=[PASS], verify=False)
    assert report.rewrites == []
    assert_rewrites(model(False), PASS, {"DepthToSpace": 1, "BatchNormalization": 1})
