"""Comparison objects: truthy when equivalent, and always say by how much."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from convrewrite.core.equivalence import (Comparison, check_models, compare_arrays, concrete_shape,
                                     RunError, default_tolerance, pinned_dims, random_feeds, run_model)


def test_summation_noise_passes_and_real_mistake_fails():
    rng = np.random.default_rng(0)
    want = (rng.standard_normal((2, 8, 16, 16)) * 1000).astype(np.float32)
    noisy = want + (want * 3e-7).astype(np.float32)  # a few float32 ulps
    assert compare_arrays("y", want, noisy)
    wrong = want.copy()
    wrong[0, 0, 0, 0] += 1.0  # one wrong element at 0.1% of the magnitude
    result = compare_arrays("y", want, wrong)
    assert not result
    assert result.max_abs_error == pytest.approx(1.0, rel=1e-3)
    assert "MISMATCH" in str(result)


def test_tolerance_scales_with_magnitude():
    small = np.full((4,), 1e-3, np.float32)
    assert not compare_arrays("y", small, small * 1.01)  # 1% wrong is wrong at any scale
    big = np.full((4,), 1e6, np.float32)
    assert not compare_arrays("y", big, big * 1.01)
    assert compare_arrays("y", big, np.nextafter(big, np.inf))


def test_nan_and_inf_rules():
    a = np.array([np.nan, np.inf, -np.inf, 1.0], np.float32)
    assert compare_arrays("y", a, a.copy())
    b = a.copy()
    b[1] = -np.inf
    assert not compare_arrays("y", a, b)
    c = a.copy()
    c[3] = np.nan
    assert not compare_arrays("y", a, c)


def test_shape_and_dtype_must_match_exactly():
    a = np.zeros((2, 3), np.float32)
    r = compare_arrays("y", a, np.zeros((3, 2), np.float32))
    assert not r and "shape" in r.message
    r = compare_arrays("y", a, np.zeros((2, 3), np.float16))
    assert not r and "dtype" in r.message


def test_float16_gets_float16_tolerance():
    rtol16, _ = default_tolerance(np.float16)
    rtol32, _ = default_tolerance(np.float32)
    assert rtol16 > rtol32
    want = np.linspace(-4, 4, 101).astype(np.float16)
    one_ulp = np.nextafter(want, np.float16(np.inf))
    assert compare_arrays("y", want, one_ulp)
    assert not compare_arrays("y", want, want + np.float16(0.25))


def test_comparison_aggregates_and_is_falsy_if_any_output_differs():
    ok = compare_arrays("a", np.ones(3, np.float32), np.ones(3, np.float32))
    bad = compare_arrays("b", np.ones(3, np.float32), np.zeros(3, np.float32))
    c = Comparison([ok, bad])
    assert not c
    assert c.max_abs_error == 1.0
    assert c.worst().name == "b"
    assert Comparison([ok])


def test_concrete_shape_replaces_symbolic_dims():
    assert concrete_shape(["N", 3, None, 5], batch=2) == (2, 3, 16, 5)


def _model(op, **attrs):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"], **attrs)], "g", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_check_models_detects_a_different_function():
    assert check_models(_model("Relu"), _model("Relu"))
    result = check_models(_model("Relu"), _model("Abs"))
    assert not result and result.max_abs_error > 0


def test_check_models_refuses_inputs_the_second_model_does_not_take():
    """onnxruntime refuses a [2, 3] feed to a [2, 4] input; the reference
    evaluator, the fallback, ran it anyway, and the models were called
    equivalent."""
    other = _model("Relu")
    for vi in (other.graph.input[0], other.graph.output[0]):
        vi.type.tensor_type.shape.dim[1].dim_value = 4
    with pytest.raises(RunError, match=r"the inputs do not fit the second model: 'x' has shape \[2, 3\], the "
                                       r"model's input is \[2, 4\]"):
        check_models(_model("Relu"), other)
    double = _model("Relu")
    double.graph.input[0].type.tensor_type.elem_type = double.graph.output[0].type.tensor_type.elem_type = \
        TensorProto.DOUBLE
    with pytest.raises(RunError, match=r"'x' has element type float32, the model's input is float64"):
        check_models(_model("Relu"), double)


def test_reference_evaluator_is_the_oracle_where_onnxruntime_refuses():
    # onnxruntime has no kernel for a dilated Conv with auto_pad SAME_UPPER.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 7, 7])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = onnx.numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", dilations=[2, 2])
    m = helper.make_model(helper.make_graph([node], "g", [x], [y], [w]),
                          opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": np.ones((1, 1, 7, 7), np.float32)}
    out, engine = run_model(m, feeds, allow_reference=True)
    assert out[0].shape == (1, 1, 7, 7)
    assert out[0][0, 0, 3, 3] == 9.0 and out[0][0, 0, 0, 0] == 4.0


def test_feed_problem_accepts_every_valid_feed_and_names_what_does_not_fit():
    """An .npz holds strings as '<U' (no object arrays without pickle): a
    STRING input takes them, as onnxruntime does; symbolic, unknown and 0
    dims, an unknown rank and bool are fine; another type or a static dim
    that differs is named."""
    from onnx import TensorProto, helper

    from convrewrite.core.equivalence import feed_problem

    vi = helper.make_tensor_value_info
    inputs = [vi("s", TensorProto.STRING, [2]), vi("x", TensorProto.FLOAT, ["N", 3, None, 0]),
              vi("b", TensorProto.BOOL, None), vi("u", TensorProto.FLOAT, [-1, 2])]
    good = {"s": np.array(["ab", "c"]), "x": np.zeros((5, 3, 7, 0), np.float32),
            "b": np.ones((2, 2), bool), "u": np.zeros((4, 2), np.float32)}
    assert feed_problem(inputs, good) is None
    assert feed_problem(inputs, {**good, "s": np.array([b"ab", b"c"])}) is None
    assert feed_problem(inputs, {**good, "x": np.zeros((5, 4, 7, 0), np.float32)}) == \
        "'x' has shape [5, 4, 7, 0], the model's input is ['?', 3, '?', 0]"
    assert feed_problem(inputs, {**good, "x": np.zeros((5, 3, 7, 0), np.float64)}) == \
        "'x' has element type float64, the model's input is float32"
    assert "element type int64" in feed_problem(inputs, {**good, "s": np.array([1, 2])})


def test_check_numbers_takes_any_real_tolerance_and_whole_seed_and_names_what_it_refuses():
    """One check for the driver and check_models (the API's): any finite real
    number >= 0 (Fraction, numpy scalars) as a tolerance, a whole number >= 0
    as the seed; bools, NaN, infinities and negatives are refused by name."""
    from fractions import Fraction

    from convrewrite import InputError
    from convrewrite.core.equivalence import check_numbers

    check_numbers(Fraction(1, 10000), np.float32(1e-6), np.int64(3))
    for rtol, atol, seed, said in ((float("nan"), None, 0, "rtol"), (None, float("inf"), 0, "atol"),
                                   (True, None, 0, "rtol"), (None, None, -1, "seed"), (None, None, 1.5, "seed")):
        with pytest.raises(InputError, match=rf"^{said} must be"):
            check_numbers(rtol, atol, seed)
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]),
        opset_imports=[onnx.helper.make_opsetid("", 17)])
    with pytest.raises(InputError, match="^seed must be"):
        check_models(model, model, seed=-3)


# --- random inputs for symbolic dims a Conv fixes ---------------------------------

def _conv_graph(op, x_dims, w_dims, before=(), group=1):
    """x -> ops `before` (one-input, one-output) -> op(x, W); W an initializer."""
    nodes, v = [], "x"
    for k, kind in enumerate(before):
        inputs = [v, "s", "z"] if kind in ("DequantizeLinear", "QuantizeLinear") else [v]
        nodes.append(helper.make_node(kind, inputs, [f"t{k}"]))
        v = f"t{k}"
    nodes.append(helper.make_node(op, [v, "W"], ["y"], group=group))
    inits = [onnx.numpy_helper.from_array(np.zeros(w_dims, np.float32), "W"),
             onnx.numpy_helper.from_array(np.array(0.5, np.float32), "s"),
             onnx.numpy_helper.from_array(np.array(0, np.int8), "z")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_dims)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return g


@pytest.mark.parametrize("op,w_dims,group,channels", [
    ("Conv", [4, 3, 3, 3], 1, 3),
    ("Conv", [8, 2, 3, 3], 3, 6),            # grouped: W's dim 1 per group
    ("ConvTranspose", [5, 2, 4, 4], 1, 5),   # ConvTranspose: W's dim 0
])
def test_a_symbolic_channel_dim_takes_the_size_the_conv_requires(op, w_dims, group, channels):
    g = _conv_graph(op, [1, "C", 8, 8], w_dims, group=group)
    assert pinned_dims(g) == {"x": {1: channels}}
    assert random_feeds(g.input, pinned=pinned_dims(g))["x"].shape == (1, channels, 8, 8)
    assert random_feeds(g.input)["x"].shape == (1, 16, 8, 8)   # without: the 16 no Conv of these weights runs


def test_the_channel_dim_is_followed_through_quantize_and_relu_but_static_dims_stay():
    behind = _conv_graph("Conv", ["N", "C", 8, 8], [4, 3, 3, 3],
                         before=("QuantizeLinear", "DequantizeLinear", "Relu"))
    assert pinned_dims(behind) == {"x": {1: 3}}
    assert pinned_dims(_conv_graph("Conv", ["N", 3, 8, 8], [4, 3, 3, 3])) == {}   # static: nothing to pin
    assert pinned_dims(_conv_graph("Conv", [1, "C", 8, 8], [4, 3, 3, 3], before=("Transpose",))) == {}



def _requantized(gain: float) -> onnx.ModelProto:
    """y = DequantizeLinear(QuantizeLinear(x * gain)), int8 with scale 0.05:
    a gain near 1 moves a few values across a rounding boundary (one step)."""
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.05])
    zero = helper.make_tensor("z", TensorProto.INT8, [], [0])
    g = helper.make_tensor("g", TensorProto.FLOAT, [], [gain])
    nodes = [helper.make_node("Mul", ["x", "g"], ["xg"]),
             helper.make_node("QuantizeLinear", ["xg", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 64])], [scale, zero, g])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_check_models_compares_a_quantized_output_in_steps():
    """A rounding tie that falls the other way is one step: equivalent, as
    optimize's whole-model check judges it (a float tolerance called it a
    mismatch, so `check` said NOT equivalent of a verified rewrite); many
    values a step off, or one value several steps off, are not."""
    ref = _requantized(1.0)
    few = check_models(ref, _requantized(1.0005))
    assert few and few.outputs[0].steps is not None and few.outputs[0].max_abs_error == pytest.approx(0.05, rel=1e-5)
    x = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    want, got = [run_model(m, {"x": x})[0][0] for m in (ref, _requantized(1.0005))]
    assert not compare_arrays("y", want, got)   # the float rule's verdict on the same pair
    assert not check_models(ref, _requantized(1.1))
    assert not check_models(ref, _requantized(0.5))


def _refused_at_load() -> onnx.ModelProto:
    """y = Max(x @ w, 0.0 as float64): onnxruntime refuses to load it (Max of
    float and double), onnx's reference evaluator to run it."""
    from onnx import numpy_helper

    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    zero = numpy_helper.from_array(np.zeros((), np.float64), "zero")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["t"], name="mm"), helper.make_node("Max", ["t", "zero"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w, zero])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _refusal(run) -> str:
    with pytest.raises(Exception) as e:
        run()
    return str(e.value)


def test_onnxruntime_refusing_a_model_file_says_what_it_says_of_the_bytes(monkeypatch):
    """Large weights go to onnxruntime as a file in a temporary folder, and
    its refusal named that file ("Load model from /tmp/tmpu9z1.../model.onnx
    failed:"): a rollback's reason or the whole-model check's detail differed
    from run to run, and from the same model's as bytes."""
    import tempfile

    from convrewrite.core import equivalence

    m, feeds = _refused_at_load(), {"x": np.ones((1, 4), np.float32)}
    as_bytes = [_refusal(lambda: run_model(m, feeds, allow_reference=a)) for a in (False, True)]
    monkeypatch.setattr(equivalence, "RUN_FROM_FILE_BYTES", 0)
    assert equivalence._through_a_file(m)
    for _ in range(2):
        for a in (False, True):
            assert _refusal(lambda: run_model(m, feeds, allow_reference=a)) == as_bytes[a]
            assert _refusal(lambda: run_model([m], feeds, allow_reference=a)) == as_bytes[a]   # handed over
    assert "Type Error" in as_bytes[0] and "; reference evaluator: " in as_bytes[1]
    assert tempfile.gettempdir() not in as_bytes[0] + as_bytes[1]
    direct = _refusal(lambda: equivalence.run_onnxruntime(m, feeds, optimized=True))   # the fused run's way
    assert "Type Error" in direct and tempfile.gettempdir() not in direct and "Load model from" not in direct


def test_any_other_mention_of_the_temporary_folder_is_named_so(monkeypatch):
    """An error raised while the model's file exists (here: writing it)
    names the folder TEMPORARY_FOLDER, the file by its name in it."""
    import tempfile

    from convrewrite.core import equivalence
    from convrewrite.core.errors import TEMPORARY_FOLDER

    def full(model, path, data_name):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(equivalence, "RUN_FROM_FILE_BYTES", 0)
    monkeypatch.setattr(equivalence, "save_external", full)
    m = _refused_at_load()
    with pytest.raises(OSError) as e:
        equivalence.run_onnxruntime(m, {"x": np.ones((1, 4), np.float32)})
    assert str(e.value) == f"[Errno 28] No space left on device: '{TEMPORARY_FOLDER}/model.onnx'"
    assert tempfile.gettempdir() not in str(e.value)


def test_first_line_leaves_out_object_addresses():
    """onnx's reference evaluator, when an operator's class cannot be made,
    prints its run_params, a function among them ("<function ... at
    0x7f...>"): an address differs from run to run."""
    from convrewrite.core.equivalence import first_line

    def said(address):
        return first_line(TypeError(f"Unable to instantiate class <class 'X'> with run_params={{'log': "
                                    f"<function ReferenceEvaluator.__init__.<locals>.<lambda> at {address}>, "
                                    "'opsets': {'': 17}} and node=\nmore"))

    assert said("0x7f3a2b1c0d30") == said("0x7f00deadbeef") == (
        "Unable to instantiate class <class 'X'> with run_params={'log': "
        "<function ReferenceEvaluator.__init__.<locals>.<lambda>>, 'opsets': {'': 17}} and node=")
