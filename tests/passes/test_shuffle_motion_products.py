"""shuffle-motion through an elementwise op whose other operand is a phase
product v = L · X · R (passes/shuffle_motion/products.py): the shuffle moves
on, v is computed in phase order by the same two MatMuls' MACs.  Every
positive case goes through assert_rewrites (model, op counts, numerical
equivalence, idempotence)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from convrewrite import optimize
from convrewrite.core.graph import GraphView
from convrewrite.core.report import REWRITTEN
from helpers import assert_rewrites, forms, op_counts
from passes.shuffle_motion.products import phase_matrices, phase_product
from test_shuffle_motion import Net, assert_costs_exact

MODELS = Path(__file__).resolve().parents[2] / "models"
PASS = "shuffle-motion"


def product(n: Net, x: str, block: int, size, left_first=True, matrices=None) -> str:
    """v = L · x · R with L [bH, H] and R [W, bW] random (the identity needs no interpolation
    weights), or the given (L, R) initializer names; the MatMul with L first or second."""
    h, w = size
    left, right = matrices or (n.const((n.rng.standard_normal((block * h, h)) * .5).astype(n.dtype)),
                               n.const((n.rng.standard_normal((w, block * w)) * .5).astype(n.dtype)))
    if left_first:
        return n.op("MatMul", right, after=n.op("MatMul", x, after=left))
    return n.op("MatMul", n.op("MatMul", right, after=x), after=left)


def product_model(block=2, c=4, c_out=2, mode="DCR", batch=1, size=(3, 4), left_first=True, op="Add",
                  product_first=False, runtime_scale=False, dtype=np.float32, seed=0) -> onnx.ModelProto:
    """x [N, 3, H, W] -> Conv 3x3 -> DepthToSpace -> op(., v) -> [Mul by a run-time scale] -> Relu
    -> Conv 1x1 (c -> c_out), v = L · (Conv 1x1 of x) · R (`product`)."""
    n = Net([batch, 3, *size], seed=seed, dtype=dtype)
    v = product(n, n.conv(3, c), block, size, left_first)
    n.conv(3, block * block * c, k=3, after="x")
    s = n.op("DepthToSpace", blocksize=block, mode=mode)
    n.op(op, s, after=v) if product_first else n.op(op, v, after=s)
    if runtime_scale:
        n.op("Mul", "scale")
    n.op("Relu")
    n.conv(c, c_out)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inputs = [helper.make_tensor_value_info("scale", elem, [1, c, 1, 1])] if runtime_scale else ()
    return n.model(inputs=inputs)


def test_an_add_of_a_phase_product_lets_the_shuffle_move_on():
    new, report = assert_rewrites(product_model(), PASS, {"DepthToSpace": 1, "MatMul": 2, "Reshape": 2})
    assert forms(report) == ["grouped"]
    (record,) = report.records(REWRITTEN)
    notes = " ".join(record.notes)
    assert "shuffles 2 channels instead of 4" in notes
    assert "'v3' (MatMul 'n2', MatMul 'n3') computed in phase order" in notes
    assert [n.op_type for n in new.graph.node][-4:] == ["Add", "Relu", "Conv", "DepthToSpace"]
    # the same MACs: the MatMuls multiply the same numbers, in phase order
    assert record.macs_after == record.macs_before


@pytest.mark.parametrize("left_first", [True, False])
@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("batch", [1, 2, "N"])
def test_either_matmul_order_mode_and_batch(left_first, mode, batch):
    model = product_model(left_first=left_first, mode=mode, batch=batch)
    assert_rewrites(model, PASS, {"DepthToSpace": 1, "MatMul": 2, "Reshape": 2})


@pytest.mark.parametrize("op", ["Sub", "Mul", "Max", "Div"])
def test_the_product_as_either_operand_of_other_elementwise_ops(op):
    for product_first in (False, True):
        model = product_model(op=op, product_first=product_first, block=3, size=(2, 3))
        new, _ = assert_rewrites(model, PASS, {"DepthToSpace": 1, op: 1})
        (moved,) = [n for n in new.graph.node if n.op_type == op]
        assert ("product_phases" in moved.input[0]) == product_first   # the operands keep their order


def test_float16():
    assert_rewrites(product_model(dtype=np.float16), PASS, {"DepthToSpace": 1, "MatMul": 2})


def test_a_runtime_parameter_takes_the_phase_batch_form_with_the_product_as_a_batch():
    new, report = assert_rewrites(product_model(runtime_scale=True, batch=2), PASS,
                                  {"DepthToSpace": 1, "MatMul": 2, "Reshape": 4})
    assert forms(report) == ["phase-batch"]
    shapes = {n.name.rsplit("/", 1)[-1]: n for n in new.graph.node}
    phases = onnx.numpy_helper.to_array(next(t for t in new.graph.initializer
                                             if t.name == shapes["product_phases"].input[1]))
    assert phases.tolist() == [-1, 4, 3, 4]          # [N*b*b, C, h, w]


def test_phase_matrices_are_the_phase_rows_and_columns():
    left, right = np.arange(24.).reshape(6, 4), np.arange(30.).reshape(5, 6)
    lp, rp = phase_matrices(left, right, 3)
    assert lp.shape == (3, 1, 1, 2, 4) and rp.shape == (3, 1, 5, 2)
    x = np.random.default_rng(1).standard_normal((4, 5))
    full = left @ x @ right
    for p in range(3):
        for q in range(3):
            np.testing.assert_array_equal(lp[p, 0, 0] @ x @ rp[q, 0], full[p::3, q::3])


def _no_candidate(model):
    new, report = optimize(model, passes=[PASS])
    assert report.rewrites == [] and op_counts(new) == op_counts(model)


def test_a_product_read_twice_stops_the_run():
    model = product_model()
    model.graph.output.append(helper.make_tensor_value_info("v3", TensorProto.FLOAT, [1, 4, 6, 8]))
    _no_candidate(model)
    model = product_model()
    model.graph.output.append(helper.make_tensor_value_info("v2", TensorProto.FLOAT, [1, 4, 6, 4]))
    _no_candidate(model)


def test_a_matrix_computed_at_run_time_stops_the_run():
    model = product_model()
    (init,) = [t for t in model.graph.initializer if t.name == "c3"]
    model.graph.initializer.remove(init)
    model.graph.input.append(helper.make_tensor_value_info("c3", TensorProto.FLOAT, list(init.dims)))
    _no_candidate(model)


def test_one_matmul_alone_is_no_product():
    """v = L · X resizes one axis only: its phases along the other would need a copy."""
    n = Net([1, 3, 3, 4])
    x = n.conv(3, 4)
    v = n.op("MatMul", x, after=n.const(np.ones((6, 3), np.float32)))
    graph = GraphView(n.model())
    assert graph.shape(v) == (1, 4, 6, 4) and phase_product(v, 2, graph) is None


@pytest.mark.parametrize("model,batch,forms_", [
    (lambda: product_model(batch=2, mode="CRD"), 2, ["grouped", "phase-batch"]),
    (lambda: product_model(left_first=False, block=3, size=(2, 3)), 1, ["grouped", "phase-batch"]),
    (lambda: product_model(runtime_scale=True), 1, ["phase-batch"]),
])
def test_form_costs_with_products_are_exact(model, batch, forms_):
    assert_costs_exact(model(), batch, forms_)


@pytest.mark.parametrize("name", ["all_three", "all_three_dynamo", "all_three_fp16"])
def test_all_three_moves_the_convtranspose_shuffle_through_the_resize_sum(name):
    """ConvTranspose 2x2/s2 (single-conv, CRD) + bilinear Resize x2 (matmul form), Relu, the 1x1
    class Conv: the shuffle ends after the class Conv (3 channels instead of 8); in float32
    shuffle-spelling then spells it one axis at a time, float16 keeps the DepthToSpace."""
    new, report = optimize(onnx.load(MODELS / f"{name}.onnx"))
    assert report.verification.equivalent is True
    (record,) = [r for r in report.records(REWRITTEN) if r.pass_name == PASS]
    assert record.form == "grouped" and "shuffles 3 channels instead of 8" in " ".join(record.notes)
    shuffle = ["DepthToSpace"] if name.endswith("fp16") else ["Reshape", "Transpose", "Reshape"] * 2
    assert [n.op_type for n in new.graph.node][-3 - len(shuffle):] == ["Add", "Relu", "Conv"] + shuffle


@pytest.mark.slow
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block=st.integers(2, 3), c=st.integers(2, 6), mode=st.sampled_from(["DCR", "CRD"]),
       batch=st.sampled_from([1, 2, "N"]), size=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       left_first=st.booleans(), op=st.sampled_from(["Add", "Sub", "Mul", "Max", "Min"]),
       product_first=st.booleans(), runtime_scale=st.booleans(), seed=st.integers(0, 3))
def test_property_products_are_exact(block, c, mode, batch, size, left_first, op, product_first, runtime_scale, seed):
    """Random products, orders, ops and layouts: always rewritten, equal to the original, idempotent."""
    model = product_model(block=block, c=c, c_out=1, mode=mode, batch=batch, size=size, left_first=left_first,
                          op=op, product_first=product_first, runtime_scale=runtime_scale, seed=seed)
    assert_rewrites(model, PASS, {"DepthToSpace": 1, "MatMul": 2}, expect_rewrites=1)


def test_a_product_read_twice_by_one_sum_stops_the_run():
    """Sum(shuffled, v, v) reads v twice: not one reader, so v stays as it is."""
    model = product_model(op="Sum")
    (total,) = [n for n in model.graph.node if n.op_type == "Sum"]
    total.input.append(total.input[1])
    _no_candidate(model)


def two_products_model(shared=False, where="two adds") -> onnx.ModelProto:
    """Two products in one run: in two Adds (one after a 1x1 Conv of the run), in one Sum of three
    inputs, or as a PRelu slope and an Add; with `shared`, of the same L and R."""
    block, c, size = 2, 4, (3, 4)
    n = Net([1, 3, *size])
    first = product(n, n.conv(3, c), block, size)
    matmuls = [m for m in n.nodes if m.op_type == "MatMul"]
    matrices = (matmuls[0].input[0], matmuls[1].input[1]) if shared else None
    second = product(n, n.conv(3, c, after="x"), block, size, left_first=False, matrices=matrices)
    n.conv(3, block * block * c, k=3, after="x")
    s = n.op("DepthToSpace", blocksize=block)
    if where == "sum":
        n.op("Sum", first, second, after=s)
    elif where == "prelu slope":
        n.op("Add", first, after=n.op("PRelu", second, after=s))
    else:
        n.op("Add", first, after=s)
        n.conv(c, c)
        n.op("Add", second)
    n.op("Relu")
    n.conv(c, 2)
    return n.model()


@pytest.mark.parametrize("where", ["two adds", "sum", "prelu slope"])
def test_two_products_in_one_run(where):
    new, report = assert_rewrites(two_products_model(where=where), PASS, {"DepthToSpace": 1, "MatMul": 4, "Reshape": 4})
    (record,) = report.records(REWRITTEN)
    assert sum("computed in phase order" in note for note in record.notes) == 2


def test_products_of_the_same_matrices_share_their_phase_matrices():
    new, _ = assert_rewrites(two_products_model(shared=True), PASS, {"DepthToSpace": 1, "MatMul": 4})
    phase = [t.name for t in new.graph.initializer if "phase_rows" in t.name or "phase_columns" in t.name]
    assert len(phase) == 2, phase


def test_a_product_of_another_batch_stops_the_run():
    """v's batch (2) broadcasts against the shuffle's (1): not the value's own shape."""
    n = Net([1, 3, 3, 4])
    n.conv(3, 16, k=3)
    s = n.op("DepthToSpace", blocksize=2)
    v = product(n, "xp", 2, (3, 4))
    n.op("Add", v, after=s)
    n.conv(4, 2)
    _no_candidate(n.model(inputs=[helper.make_tensor_value_info("xp", TensorProto.FLOAT, [2, 4, 3, 4])]))


@pytest.mark.parametrize("where", ["two adds", "sum", "prelu slope"])
def test_form_costs_with_two_products_are_exact(where):
    assert_costs_exact(two_products_model(where=where), 1, ["grouped", "phase-batch"])
