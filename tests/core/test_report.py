"""The report's text: what the command line prints."""
from __future__ import annotations

from onnx import TensorProto, helper

from builders import relu_then_custom_op
from convrewrite import optimize
from convrewrite.core.report import REWRITTEN, target_lines


def _left_alone(name: str):
    """A ConvTranspose named `name` whose weight is a graph input: left alone, its name in the reason."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 16])
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name=name, strides=[2, 2])
    return helper.make_model(helper.make_graph([node], "g", [x, w], [y]), opset_imports=[helper.make_opsetid("", 17)])


def test_control_characters_of_node_names_are_escaped_in_the_summary():
    """A node name is the model's text: "\\r" and an ANSI erase-line in it
    hid the 'left alone' line on a terminal, and "\\n" split it in two."""
    name = "up\r\x1b[2K\nok"
    _, report = optimize(_left_alone(name), target="generic-npu")
    text = report.summary()
    assert "\x1b" not in text and "\r" not in text
    (line,) = [s for s in text.splitlines() if "left alone" in s]
    assert "'up\\r\\x1b[2K\\nok'" in line
    assert report.rewrites[0].node == name                 # the JSON keeps the name as it is
    misfits = target_lines(report.target)[1:]
    assert misfits and all("\x1b" not in s and "\n" not in s for s in misfits)


def test_strict_counts_with_a_target_only_what_does_not_fit_it():
    """A left-alone node the target check of the output flags is unfinished;
    without a target every left-alone candidate is."""
    _, report = optimize(_left_alone("up"), target="generic-npu")       # no ConvTranspose there
    assert not report.target["fits"] and [r.node for r in report.unfinished] == ["up"]
    _, report = optimize(_left_alone("up"))
    assert [r.node for r in report.unfinished] == ["up"]


def _relu_pairs_model():
    """x -> Relu r1 -> Relu r2 -> Neg -> Relu r3: ReluPairs rewrites r1 and r2 as one pair, r3 alone."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"), helper.make_node("Relu", ["a"], ["b"], name="r2"),
             helper.make_node("Neg", ["b"], ["c"], name="neg"), helper.make_node("Relu", ["c"], ["y"], name="r3")]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])


def test_the_count_per_pass_is_of_nodes_replaced_in_the_summary_json_and_html():
    """"rewrote N node(s)" counted records: a chain of nodes rewritten
    together counted 1.  It counts the original nodes replaced now, with the
    rewrites where they differ, the same in the summary, JSON and HTML."""
    import json

    from convrewrite.core.html import render_report
    from toy_passes import ReluPairs

    _, report = optimize(_relu_pairs_model(), passes=[ReluPairs()])
    assert [(r.node, r.replaced_nodes) for r in report.rewrites] == [("r1", ["r1", "r2"]), ("r3", ["r3"])]
    assert all(r.nodes_before == len(r.replaced_nodes) for r in report.rewrites)
    assert "pass relu-pairs: rewrote 3 node(s) in 2 rewrite(s)" in report.summary().splitlines()
    d = json.loads(report.to_json())
    assert d["per_pass"] == {"relu-pairs": {"rewrites": 2, "nodes_replaced": 3}}
    assert [r["replaced_nodes"] for r in d["rewrites"]] == [["r1", "r2"], ["r3"]]
    page = render_report(report)
    assert '<b class="ok">3 node(s) in 2 rewrite(s)</b>' in page and "relu-pairs: 3 node(s) in 2 rewrite(s)" in page
    _, dry = optimize(_relu_pairs_model(), passes=[ReluPairs()], dry_run=True)
    assert "pass relu-pairs: would rewrite 3 node(s) in 2 rewrite(s)" in dry.summary().splitlines()
    assert dry.per_pass() == report.per_pass()


def test_a_rolled_back_rewrite_replaces_nothing():
    """A wrong pair is rolled back and its nodes matched alone: three
    rewrites of one node each stand.  A broken rewrite replaced nothing."""
    from toy_passes import ReluBroken, ReluPairs

    _, report = optimize(_relu_pairs_model(), passes=[ReluPairs(wrong_chain=True)])
    assert [(r.node, r.status, r.replaced_nodes) for r in report.rewrites] == [
        ("r3", "rewritten", ["r3"]), ("r1", "rewritten", ["r1"]), ("r2", "rewritten", ["r2"])]
    assert report.per_pass()["relu-pairs"] == {"rewrites": 3, "nodes_replaced": 3}
    _, report = optimize(_relu_pairs_model(), passes=[ReluBroken()])
    assert {(r.status, tuple(r.replaced_nodes)) for r in report.rewrites} == {("rolled_back", ())}
    assert "pass relu-broken: rewrote 0 node(s)" in report.summary().splitlines()


def test_a_quantized_group_counts_its_operator_not_its_quantize_linear():
    """A quantized ConvTranspose's match takes the QuantizeLinear after it
    (the rewrite emits its own): "pass convtranspose: rewrote 2 node(s) in
    1 rewrite(s)" for one ConvTranspose, where a quantized dilated Conv (whose
    QuantizeLinear stays) rewrote 1."""
    from qdq_models import quantized

    for name, p, node in (("convt", "convtranspose", "up"), ("dilated", "dilated-conv", "aspp")):
        _, report = optimize(quantized(name), passes=[p], verify=False)
        (r,) = report.records(REWRITTEN)
        assert r.replaced_nodes == [node], r.replaced_nodes
        assert f"pass {p}: rewrote 1 node(s)" in report.summary().splitlines()


def _reports(model, passes, monkeypatch, from_file_bytes: int) -> list:
    """Two runs' reports (timings aside) and summaries, every model going to
    onnxruntime through a file when `from_file_bytes` is 0, as bytes when large."""
    import json

    from convrewrite.core import equivalence

    monkeypatch.setattr(equivalence, "RUN_FROM_FILE_BYTES", from_file_bytes)
    runs = []
    for _ in range(2):
        _, report = optimize(model, passes)
        d = report.to_dict()
        d.pop("timings")
        runs.append((json.dumps(d, sort_keys=True), "\n".join(report.summary().splitlines()[:-1])))   # less its time
    return runs


def test_a_check_onnxruntime_refuses_from_a_file_reports_the_same_text_in_every_run(monkeypatch):
    """A model with large weights goes to onnxruntime as a file in a
    temporary folder, and onnxruntime's refusal named it: "Load model from
    /tmp/tmpk9vd.../model.onnx failed:", in a rollback's reason (the local
    check) and in the whole-model check's detail, different in every run.
    Now it says what it says of the model given as bytes."""
    import tempfile

    from toy_passes import ReluToMax, ReluUnloadable

    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in "xy")
    relu_only = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g", [x], [y]),
                                  opset_imports=[helper.make_opsetid("", 17)])
    for model, passes, said in ((relu_only, [ReluUnloadable()], "onnxruntime cannot run the replacement: "),
                                (relu_then_custom_op(), [ReluToMax()], "the original model could not be run: ")):
        through_a_file = _reports(model, passes, monkeypatch, 0)
        assert through_a_file[0] == through_a_file[1]
        assert through_a_file == _reports(model, passes, monkeypatch, 1 << 40)   # as bytes
        report, summary = through_a_file[0]
        assert said in report and said in summary and "[ONNXRuntimeError]" in report
        assert tempfile.gettempdir() not in report + summary and "Load model from" not in report
