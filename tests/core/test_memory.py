"""Memory: a model the driver loaded itself is spliced in place (its
surviving weights are never copied), a caller's model is never modified,
bisection still finds the culprit in a model edited in place, and large
files are read and written one weight at a time, byte for byte as onnx does."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite import optimize
from convrewrite.core import model_io
from convrewrite.core.graph import GraphView
from convrewrite.core.lowering import lower
from convrewrite.core.report import REWRITTEN, ROLLED_BACK
from convrewrite.core.splice import Undo, apply_rewrites, splice_in_place
from toy_passes import AddToSub, ReluToClip, relu_both_signs


def _two_adds(n=64):
    """y = (x + w1) + w2 and z = x * keep: keep survives every rewrite."""
    rng = np.random.default_rng(0)
    w = {k: numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), k) for k in ("w1", "keep", "w2")}
    nodes = [helper.make_node("Add", ["x", "w1"], ["a"], name="add1"),
             helper.make_node("Add", ["a", "w2"], ["y"], name="add2"),
             helper.make_node("Mul", ["x", "keep"], ["z"], name="mul")]
    io_ = [helper.make_tensor_value_info(v, TensorProto.FLOAT, [n, n]) for v in ("x", "y", "z")]
    return helper.make_model(helper.make_graph(nodes, "g", io_[:1], io_[1:], list(w.values())),
                             opset_imports=[helper.make_opsetid("", 17)])


def _rewrites(model):
    graph = GraphView(model)
    p = AddToSub()
    return graph, [(m, lower(p, m, graph).replacement)
                   for m in (p.match(n, graph) for n in graph.graph.node if n.op_type == "Add")]


def test_a_callers_model_is_never_modified_and_the_result_is_a_new_model():
    model = _two_adds()
    before = model.SerializeToString()
    new, report = optimize(model, passes=[AddToSub()])
    assert report.rewritten == 2 and report.verification.equivalent
    assert model.SerializeToString() == before and new is not model
    assert [t.name for t in new.graph.initializer] == ["keep", "add1/add-to-sub/neg_w", "add2/add-to-sub/neg_w"]


def test_a_model_loaded_from_a_path_is_spliced_in_place(tmp_path, monkeypatch):
    # The loaded model is the result: its surviving weight is the very same
    # protobuf object, never copied; the replaced weights are gone.
    import convrewrite.core.driver as driver

    path = tmp_path / "m.onnx"
    onnx.save(_two_adds(), path)
    loaded = []

    def load(p):
        model, shapes = model_io.load_and_infer(p)
        loaded.extend([model, model.graph.initializer[1]])  # "keep"
        return model, shapes

    monkeypatch.setattr(driver, "load_and_infer", load)
    new, report = optimize(str(path), passes=[AddToSub()])
    assert report.rewritten == 2 and report.verification.equivalent
    assert new is loaded[0]
    assert new.graph.initializer[0] is loaded[1] and loaded[1].name == "keep"
    assert [t.name for t in new.graph.initializer] == ["keep", "add1/add-to-sub/neg_w", "add2/add-to-sub/neg_w"]


def test_splice_in_place_matches_apply_rewrites_and_undo_gives_the_model_back():
    model = _two_adds()
    original = model.SerializeToString()
    _, pairs = _rewrites(model)
    copied = apply_rewrites(model, pairs)
    assert model.SerializeToString() == original
    keep = model.graph.initializer[1]
    undo = Undo(model)
    removed, _ = splice_in_place(model, list(pairs))
    assert model.SerializeToString() == copied.SerializeToString()
    assert model.graph.initializer[0] is keep                      # not a copy
    assert [t.name for t in removed] == ["w1", "w2"]
    assert undo.before(model, removed).SerializeToString() == original
    assert model.SerializeToString() == copied.SerializeToString()  # giving it back leaves it as it is


def test_bisection_works_on_a_model_edited_in_place(tmp_path):
    # As test_driver's bisection test, from a path: the pass's input is
    # given back from the edited model and the weights it took out.
    model = relu_both_signs(scale=2.0)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    feeds = {"x": np.full((1, 3, 4), 100.0, np.float32)}
    new, report = optimize(str(path), passes=[ReluToClip()], inputs=feeds)
    assert {r.node: r.status for r in report.rewrites} == {"r1": ROLLED_BACK, "r3": REWRITTEN}
    assert report.verification.equivalent
    assert [n.op_type for n in new.graph.node] == ["Relu", "Neg", "Clip", "Add", "Mul"]
    assert [t.name for t in new.graph.initializer][0] == "w"


def test_the_noise_probes_load_a_model_edited_in_place_again(tmp_path, monkeypatch):
    from convrewrite.core.driver import Settings
    from convrewrite.core.oracle import Oracle

    model = _two_adds()
    calls = []
    oracle = Oracle(model, Settings(), reload=lambda: calls.append(1) or _two_adds())
    assert oracle.model is not model and calls == [1]
    assert not oracle.measure_noise().unstable and len(calls) == 2


@pytest.mark.parametrize("whole", [False, True])   # written weight by weight, or (small weights) serialised whole
@pytest.mark.parametrize("path", ["models/all_three.onnx", "models/unet_decoder_dynamo.onnx", None])
def test_large_files_are_read_and_written_one_weight_at_a_time_byte_for_byte(path, whole, tmp_path, monkeypatch):
    monkeypatch.setattr(model_io, "STREAM_LOAD_BYTES", 0)
    if not whole:
        monkeypatch.setattr(model_io, "SAVE_WHOLE_BYTES", 0)
    if path is None:
        path = tmp_path / "m.onnx"
        m = _two_adds()
        m.graph.doc_string, m.doc_string = "after the initializers", "model"
        onnx.save(m, path)
    expected = onnx.load_model(str(path), load_external_data=False)
    got = model_io.load_model(path)
    assert got.SerializeToString() == expected.SerializeToString()
    model_io.save_model(got, tmp_path / "out.onnx")
    assert (tmp_path / "out.onnx").read_bytes() == expected.SerializeToString()


@pytest.mark.parametrize("data", [b"\x3a\x05abc", b"\x0b", b"\xff\xff\xff"])
def test_a_damaged_large_file_gets_onnxs_own_error(data, tmp_path, monkeypatch):
    monkeypatch.setattr(model_io, "STREAM_LOAD_BYTES", 0)
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(model_io.InputError, match="not a readable ONNX protobuf|not an ONNX model"):
        model_io.load_model(path)


# --- compaction: the weights a splice took out are freed -------------------------

def _with_odd_tensors():
    """_two_adds with a tensor of every kind compacted() must keep as it is: a
    doc string, float_data instead of raw_data, a small one, an external stub."""
    from convrewrite.core.weights import weight_stub

    m = _two_adds()
    m.graph.initializer[0].doc_string = "kept"
    m.graph.initializer.append(helper.make_tensor("listed", TensorProto.FLOAT, [64, 64], [0.5] * 4096))
    m.graph.initializer.append(numpy_helper.from_array(np.arange(3, dtype=np.int64), "small"))
    m.graph.initializer.append(weight_stub("stub", TensorProto.FLOAT, [64, 64], "elsewhere.bin", offset=0, length=16384))
    m.graph.doc_string = "after the initializers"
    return m


def _detached_and_back(held, f):
    from convrewrite.core.weights import detached, reattached

    return reattached(*detached(held, f), f)


@pytest.mark.parametrize("model", [_with_odd_tensors, _two_adds, lambda: onnx.load("models/unet_decoder_dynamo.onnx")])
def test_a_model_detached_and_read_back_is_the_same_message(model, monkeypatch, tmp_path):
    from convrewrite.core import weights

    monkeypatch.setattr(weights, "MOVE_BYTES", 1024)
    m = model()
    expected = m.SerializeToString()
    held = [m]
    del m
    with open(tmp_path / "data", "w+b") as f:
        out = _detached_and_back(held, f)
    assert held == [] and out.SerializeToString() == expected


def _eight_weights(n=256):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), f"w{k}") for k in range(8)]
    nodes = [helper.make_node("Add", ["x" if k == 0 else f"a{k - 1}", f"w{k}"], [f"a{k}"]) for k in range(8)]
    io_ = [helper.make_tensor_value_info(v, TensorProto.FLOAT, [n, n]) for v in ("x", "a7")]
    return helper.make_model(helper.make_graph(nodes, "g", io_[:1], io_[1:], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def test_weights_are_detached_and_read_back_one_at_a_time_on_the_python_side(tmp_path):
    # protobuf's own copies are not traced; what is (the bytes each weight is
    # read into and written from) must never be two weights at once.
    import tracemalloc

    m = _eight_weights()
    one = 256 * 256 * 4
    expected = m.SerializeToString()
    held = [m]
    del m
    tracemalloc.start()
    try:
        with open(tmp_path / "data", "w+b") as f:
            out = _detached_and_back(held, f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.SerializeToString() == expected
    assert one <= peak < 2 * one   # one weight's bytes, never two (8 weights in all)


def _models_holding_weights(min_bytes: int) -> int:
    """How many live ModelProtos hold a weight's data of at least min_bytes."""
    import gc

    return sum(1 for o in gc.get_objects() if isinstance(o, onnx.ModelProto)
               and any(len(t.raw_data) >= min_bytes for t in o.graph.initializer))


def test_a_model_handed_over_is_not_in_memory_while_onnxruntime_runs_it(monkeypatch):
    from convrewrite.core import equivalence

    monkeypatch.setattr(equivalence, "RUN_FROM_FILE_BYTES", 0)
    seen = []
    session = equivalence.onnxruntime_session
    monkeypatch.setattr(equivalence, "onnxruntime_session",
                        lambda model, *a: seen.append(_models_holding_weights(256 * 256 * 4)) or session(model, *a))
    m = _eight_weights()
    feeds = {"x": np.ones((256, 256), np.float32)}
    expected, want = m.SerializeToString(), equivalence.run_onnxruntime(m, feeds)
    seen.clear()
    held = [m]
    del m
    got = equivalence.run_handed_over(held, feeds)
    assert seen == [0]                                  # no model with its weights while the session exists
    assert held[0].SerializeToString() == expected      # and it comes back, the same
    np.testing.assert_array_equal(got[0], want[0])


def test_a_model_onnxruntime_refuses_comes_back_for_the_reference_evaluator(monkeypatch):
    from convrewrite.core import equivalence, weights

    monkeypatch.setattr(equivalence, "RUN_FROM_FILE_BYTES", 0)
    monkeypatch.setattr(weights, "MOVE_BYTES", 16)
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((2, 2, 3, 3)).astype(np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], dilations=[2, 2], auto_pad="SAME_UPPER")
    io_ = [helper.make_tensor_value_info(v, TensorProto.FLOAT, [1, 2, 8, 8]) for v in ("x", "y")]
    m = helper.make_model(helper.make_graph([conv], "g", io_[:1], io_[1:], [w]), opset_imports=[helper.make_opsetid("", 17)])
    expected = m.SerializeToString()
    feeds = {"x": rng.standard_normal((1, 2, 8, 8)).astype(np.float32)}
    want = equivalence.run_reference(m, feeds)
    held = [m]
    del m
    got, engine = equivalence.run_model(held, feeds, allow_reference=True)
    assert engine == "reference"   # onnxruntime refuses SAME dilated Convs
    assert held[0].SerializeToString() == expected
    np.testing.assert_array_equal(got[0], want[0])


def test_the_whole_model_checks_hand_the_model_over(tmp_path, monkeypatch):
    # The result's check writes the model out and reads it back (the
    # original's run does not: its peak is below the passes' anyway); the
    # result is the same as without.
    from convrewrite.core import equivalence, weights

    path = tmp_path / "m.onnx"
    onnx.save(_two_adds(), path)
    plain, _ = optimize(str(path), passes=[AddToSub()])
    monkeypatch.setattr(equivalence, "RUN_FROM_FILE_BYTES", 0)
    monkeypatch.setattr(weights, "MOVE_BYTES", 1024)
    from convrewrite.core.oracle import Oracle

    calls, compares = [], []
    real, compare = equivalence.detached, Oracle.compare
    monkeypatch.setattr(equivalence, "detached", lambda held, f: calls.append(1) or real(held, f))
    monkeypatch.setattr(Oracle, "compare", lambda self, m, *a: compares.append(type(m)) or compare(self, m, *a))
    new, report = optimize(str(path), passes=[AddToSub()])
    assert calls == [1] and report.rewritten == 2 and report.verification.equivalent
    assert compares == [list]   # the final verdict is that comparison's: the model read back is the one it names
    assert new.SerializeToString() == plain.SerializeToString()


def test_bisection_works_with_models_handed_over(tmp_path, monkeypatch):
    # As test_bisection_works_on_a_model_edited_in_place, every model going
    # to onnxruntime through a file, those the driver owns handed over.
    from convrewrite.core import equivalence, weights

    monkeypatch.setattr(equivalence, "RUN_FROM_FILE_BYTES", 0)
    monkeypatch.setattr(weights, "MOVE_BYTES", 0)
    path = tmp_path / "m.onnx"
    onnx.save(relu_both_signs(scale=2.0), path)
    feeds = {"x": np.full((1, 3, 4), 100.0, np.float32)}
    new, report = optimize(str(path), passes=[ReluToClip()], inputs=feeds)
    assert {r.node: r.status for r in report.rewrites} == {"r1": ROLLED_BACK, "r3": REWRITTEN}
    assert report.verification.equivalent
    assert [n.op_type for n in new.graph.node] == ["Relu", "Neg", "Clip", "Add", "Mul"]


def test_check_sessions_have_no_memory_arena():
    # Its prepacked weights outlived the session (README "Memory").
    from convrewrite.core.equivalence import onnxruntime_session

    sess = onnxruntime_session(_two_adds().SerializeToString())
    assert not sess.get_session_options().enable_cpu_mem_arena


def test_without_verification_the_new_weights_wait_on_disk_until_the_splice(tmp_path, monkeypatch):
    # Thresholds lowered so the small model counts as large: between build and
    # splice no tensor holds a new weight's data; the result is the same.
    import gc

    import convrewrite.core.driver as driver
    from convrewrite.core import weights

    path = tmp_path / "m.onnx"
    onnx.save(_two_adds(), path)
    plain, _ = optimize(str(path), passes=[AddToSub()], verify=False)
    monkeypatch.setattr(driver, "RELEASE_BYTES", 0)
    monkeypatch.setattr(weights, "MOVE_BYTES", 1024)
    held_at_splice = []

    def progress(stage, done, total):
        if stage.endswith(": splice"):
            held_at_splice.append(sum(1 for o in gc.get_objects() if isinstance(o, onnx.TensorProto)
                                      and "/add-to-sub/" in o.name and o.HasField("raw_data")))

    new, report = optimize(str(path), passes=[AddToSub()], verify=False, progress=progress)
    assert held_at_splice == [0] and report.rewritten == 2
    assert new.SerializeToString() == plain.SerializeToString()


@pytest.mark.parametrize("model", [_with_odd_tensors, _two_adds])
def test_a_compacted_model_is_the_same_message(model, monkeypatch):
    from convrewrite.core import weights

    monkeypatch.setattr(weights, "MOVE_BYTES", 1024)
    m = model()
    expected = m.SerializeToString()
    held = [m]
    del m
    out = weights.compacted(held)
    assert held == [] and out.SerializeToString() == expected


@pytest.mark.parametrize("release_bytes, compactions", [(0, 1), (40 << 10, 0)])
def test_the_model_is_compacted_only_when_its_splice_took_out_enough(release_bytes, compactions, tmp_path, monkeypatch):
    # _two_adds: 48 KiB of weights, of which the splice takes out 32 KiB; with
    # RELEASE_BYTES at 40 KiB the new weights still wait on disk, and come
    # into the model without a compaction.
    import convrewrite.core.driver as driver
    from convrewrite.core import weights

    path = tmp_path / "m.onnx"
    onnx.save(_two_adds(), path)
    plain, _ = optimize(str(path), passes=[AddToSub()], verify=False)
    monkeypatch.setattr(driver, "RELEASE_BYTES", release_bytes)
    monkeypatch.setattr(weights, "MOVE_BYTES", 1024)
    calls, puts = [], []
    compacted, put = driver.compacted, weights.Spill.put
    monkeypatch.setattr(driver, "compacted", lambda held: calls.append(1) or compacted(held))
    monkeypatch.setattr(weights.Spill, "put", lambda self, ts: puts.append(1) or put(self, ts))
    new, report = optimize(str(path), passes=[AddToSub()], verify=False)
    assert len(calls) == compactions and len(puts) == 2 and report.rewritten == 2
    assert new.SerializeToString() == plain.SerializeToString()
