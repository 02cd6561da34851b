"""The command line, end to end through a subprocess: the exact contract."""
import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytestmark = pytest.mark.slow  # every test here starts a subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(ROOT, "cli.py")


def run(*args, cwd=None):
    return subprocess.run([sys.executable, CLI, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def deconv_model(path, symbolic_batch=False):
    """A ConvTranspose 2x2/s2 (U-Net decoder style) followed by Relu."""
    rng = np.random.default_rng(0)
    batch = "N" if symbolic_batch else 1
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3, 16, 16])
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 2, 2)).astype(np.float32), "w")
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["t"], name="up1", strides=[2, 2]),
             helper.make_node("Relu", ["t"], ["y"], name="relu")]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, path)
    return m


def runtime_weight_model(path):
    """A ConvTranspose whose weight is a graph input: it cannot be lowered."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 16])
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up_rt", strides=[2, 2])
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x, w], [y]),
                                opset_imports=[helper.make_opsetid("", 17)]), path)


def test_optimize_writes_verified_model_next_to_input(tmp_path):
    src = tmp_path / "net.onnx"
    deconv_model(src)
    before = src.read_bytes()
    r = run("optimize", src)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "net.opt.onnx"
    assert out.exists() and src.read_bytes() == before
    m = onnx.load(out)
    assert "ConvTranspose" not in {n.op_type for n in m.graph.node}
    assert "ConvTranspose" in r.stdout and "whole-model check" in r.stdout and "equivalent" in r.stdout
    assert "pass convtranspose: rewrote 1 node(s)" in r.stdout


def test_report_json_schema(tmp_path):
    src, rep = tmp_path / "net.onnx", tmp_path / "report.json"
    deconv_model(src, symbolic_batch=True)
    r = run("optimize", src, "-o", tmp_path / "o.onnx", "--report", rep)
    assert r.returncode == 0, r.stderr
    d = json.loads(rep.read_text())
    assert d["input"] == str(src) and d["output"] == str(tmp_path / "o.onnx")
    assert d["passes"] == ["resize", "convtranspose", "dilated-conv", "shuffle-motion", "shuffle-spelling"]
    assert d["op_counts"]["before"] == {"ConvTranspose": 1, "Relu": 1}
    assert "ConvTranspose" not in d["op_counts"]["after"]
    (rec, spelled) = d["rewrites"]    # the ConvTranspose, then its DepthToSpace: 768 elements, left as it is
    assert rec["pass"] == "convtranspose" and rec["node"] == "up1" and rec["status"] == "rewritten"
    assert spelled["pass"] == "shuffle-spelling" and spelled["op"] == "DepthToSpace" and spelled["status"] == "skipped"
    assert spelled["code"] == "no-form" and "768 elements per image, at most 1024" in spelled["reason"]
    assert rec["max_abs_error"] is not None and rec["new_nodes"]
    assert rec["macs_before"] == 4 * 8 * 8 * 3 * 4 and rec["macs_after"] <= rec["macs_before"]
    assert {"total", "load_and_check"} <= set(d["timings"])


def test_passes_lists_every_pass():
    r = run("passes")
    assert r.returncode == 0
    names = [line.split()[0] for line in r.stdout.splitlines()]
    assert names == ["resize", "convtranspose", "dilated-conv", "shuffle-motion", "shuffle-spelling"]


def test_dry_run_writes_nothing(tmp_path):
    src = tmp_path / "net.onnx"
    deconv_model(src)
    r = run("optimize", src, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "dry run" in r.stdout and "would rewrite 1" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]


def test_strict_exits_3_when_a_candidate_is_left_alone(tmp_path):
    src = tmp_path / "rt.onnx"
    runtime_weight_model(src)
    r = run("optimize", src)
    assert r.returncode == 0, r.stderr
    assert "left alone" in r.stdout and "up_rt" in r.stdout and "graph input" in r.stdout
    r = run("optimize", src, "--strict", "-o", tmp_path / "o2.onnx")
    assert r.returncode == 3


def test_strict_with_a_target_ignores_what_the_target_runs(tmp_path):
    """A node a target runs as it is (`target-runs-it`) is left alone for a
    reason, but nothing is left for the target to lack: with every node
    fitting, --strict exits 0 (it exited 3: all_three on no-deconv, Ethos,
    TIDL); a node the target cannot run still makes it 3."""
    src = tmp_path / "net.onnx"
    deconv_model(src)
    r = run("optimize", src, "--target", "ti-tidl", "--strict", "-o", tmp_path / "b.onnx", "--report", tmp_path / "b.json")
    report = json.loads((tmp_path / "b.json").read_text())
    assert [x["code"] for x in report["rewrites"]] == ["target-runs-it"] and report["target"]["fits"]
    assert r.returncode == 0, r.stderr
    assert "left alone [convtranspose, target-runs-it]" in r.stdout      # still listed, with its reason
    r = run("optimize", src, "--target", "generic-npu", "--passes", "resize", "--strict", "-o", tmp_path / "c.onnx")
    assert r.returncode == 3 and "do not fit" in r.stderr


def test_check_command(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    deconv_model(a)
    assert run("optimize", a, "-o", b).returncode == 0
    r = run("check", a, b)
    assert r.returncode == 0 and "equivalent" in r.stdout and "max_abs" in r.stdout
    m = onnx.load(a)
    m.graph.node[1].op_type = "Abs"  # a different function
    onnx.save(m, tmp_path / "c.onnx")
    r = run("check", a, tmp_path / "c.onnx")
    assert r.returncode == 1 and "NOT equivalent" in r.stdout


def test_check_that_compares_no_value_says_so(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    deconv_model(a)
    assert run("optimize", a, "-o", b).returncode == 0
    np.savez(tmp_path / "nan.npz", x=np.full((1, 4, 8, 8), np.nan, np.float32))
    r = run("check", a, b, "--inputs", tmp_path / "nan.npz")
    assert r.returncode == 0 and "no value was compared" in r.stdout
    assert "no value was compared" not in run("check", a, b).stdout


def test_inputs_npz_is_used(tmp_path):
    src = tmp_path / "net.onnx"
    deconv_model(src)
    np.savez(tmp_path / "feeds.npz", x=np.ones((1, 4, 8, 8), np.float32))
    r = run("optimize", src, "--inputs", tmp_path / "feeds.npz", "--report", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r.json").read_text())["verification"]["inputs"] == "given"
    np.savez(tmp_path / "bad.npz", nope=np.ones(3, np.float32))
    r = run("optimize", src, "--inputs", tmp_path / "bad.npz", "-o", tmp_path / "x.onnx")
    assert r.returncode == 2 and "expected tensors named ['x']" in r.stderr


# --- bad input: one line, exit 2, no traceback, input untouched, no output ---

def _bad_files(tmp_path):
    good = deconv_model(tmp_path / "good.onnx").SerializeToString()
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "truncated.onnx").write_bytes(good[: len(good) // 2])
    tensor = numpy_helper.from_array(np.ones(3, np.float32), "t").SerializeToString()
    (tmp_path / "not_a_model.onnx").write_bytes(tensor)  # valid protobuf, wrong message
    m = onnx.load_from_string(good)
    m.opset_import[0].version = 999
    (tmp_path / "future_opset.onnx").write_bytes(m.SerializeToString())
    m = onnx.load_from_string(good)
    m.graph.node[0].input[0] = "undefined_value"
    (tmp_path / "invalid_graph.onnx").write_bytes(m.SerializeToString())
    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "short_weight.onnx").write_bytes(_short_weight_model().SerializeToString())
    return ["missing.onnx", "folder.onnx", "empty.onnx", "random.onnx", "truncated.onnx",
            "not_a_model.onnx", "future_opset.onnx", "invalid_graph.onnx", "short_weight.onnx"]


def _short_weight_model(defect="short"):
    """A large weight (16 KiB, which the model-level check sees only as a
    stub) with a defect the checker's tensor check finds."""
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    if defect == "short":
        w.raw_data = w.raw_data[:-4]
    elif defect == "negative dim":
        w.dims[0] = -1
    elif defect == "two value fields":
        w.float_data.extend([1.0])
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 64])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("defect, message", [
    ("short", "raw_data size (16380 bytes) is too small for the declared shape"),
    ("negative dim", "Negative dimension value"),
    ("two value fields", "should contain one and only one value field")])
def test_a_defective_large_weight_is_refused(tmp_path, defect, message):
    model = _short_weight_model(defect)
    with pytest.raises(onnx.checker.ValidationError, match=re.escape(message)):
        onnx.checker.check_model(model)  # what onnx says of the whole model ...
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    r = run("optimize", path)  # ... convrewrite says too, though it checks a weightless copy
    assert r.returncode == 2 and "invalid ONNX model (" in r.stderr and message in r.stderr
    assert not list(tmp_path.glob("*.opt.onnx"))


def _declared(kind: str):
    """Conv -> Relu on float, with one declaration of the Conv's output
    (value_info) or of the graph's output: a wrong element type (onnxruntime
    refuses such a model) or a stale shape (onnxruntime overrides it)."""
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    out_type = TensorProto.FLOAT16 if kind == "output type" else TensorProto.FLOAT
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", out_type, [1, 4, 8, 8])], [w])
    if kind == "value_info type":
        g.value_info.append(helper.make_tensor_value_info("c", TensorProto.FLOAT16, [1, 4, 8, 8]))
    if kind == "value_info shape":
        g.value_info.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 4, 5, 5]))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("kind, node, name, fix", [
    ("value_info type", "conv", "c", "correct or remove that value_info entry"),
    ("output type", "relu", "y", "correct that graph output's element type")])
def test_a_declared_type_the_node_does_not_compute_is_refused(tmp_path, kind, node, name, fix):
    """onnx.checker passes such a model, onnxruntime refuses it, and shape
    inference stops at the node: without the check every candidate after
    it was left alone as "rank unknown"."""
    stderr = _refused(tmp_path, _declared(kind))
    assert (f"invalid ONNX model (output '{name}' of node '{node}' is declared float16 but the node computes "
            f"float; {fix})") in stderr
    assert not list(tmp_path.glob("*.opt.onnx"))


def _refused(tmp_path, model) -> str:
    """optimize's one line on stderr (exit 2) for a model onnx.checker passes and onnxruntime refuses."""
    import onnxruntime as ort

    onnx.checker.check_model(model)
    with pytest.raises(Exception, match="Type Error|TypeInferenceError"):
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    r = run("optimize", path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


def _declared_elsewhere(kind: str):
    """A wrong declared element type on the output of an unnamed node (its
    Relu reader, named, then computes the declared float16 against the
    graph output's float), or on the output of a subgraph (If's else branch)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    if kind == "unnamed node":
        nodes = [helper.make_node("Neg", ["x"], ["c"]), helper.make_node("Relu", ["c"], ["y"], name="relu")]
        g = helper.make_graph(nodes, "g", [x], [y],
                              value_info=[helper.make_tensor_value_info("c", TensorProto.FLOAT16, [1, 4, 8, 8])])
    else:
        branch = {b: helper.make_graph([helper.make_node("Neg", ["x"], [b], name=f"neg_{b}")], b, [], [
            helper.make_tensor_value_info(b, TensorProto.FLOAT16 if b == "e" else TensorProto.FLOAT, [1, 4, 8, 8])])
            for b in "te"}
        c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
        nodes = [helper.make_node("If", ["c"], ["y"], name="if", then_branch=branch["t"], else_branch=branch["e"])]
        g = helper.make_graph(nodes, "g", [x, c], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("kind, said", [
    ("unnamed node", "output 'c' of an unnamed Neg node is declared float16 but the node computes float; "
                     "correct or remove that value_info entry"),
    ("subgraph", "output 'e' of node 'neg_e' in a subgraph of If 'if' is declared float16 but the node computes "
                 "float; correct that subgraph output's element type")])
def test_a_wrong_declared_type_is_named_where_it_is(tmp_path, kind, said):
    """The first clash is the cause: onnx's message for an unnamed node has
    no "node name", and one in a subgraph is nested in its holder's; the
    refusal blamed the named Relu after it (its graph output, which is
    right) and, for the subgraph, quoted a piece of onnx's message as the
    node's name."""
    assert f"invalid ONNX model ({said})" in _refused(tmp_path, _declared_elsewhere(kind))


def _resize_reading(scales_type):
    """A bilinear Resize x2 whose scales are a constant of `scales_type` (Resize takes float there)."""
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], helper.tensor_dtype_to_np_dtype(scales_type)), "scales")
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", mode="linear")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])], [scales])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])


def test_a_constant_of_a_type_the_operator_does_not_read_is_refused(tmp_path):
    """Resize's scales in float16: onnx.checker passes it, onnxruntime refuses
    the model, and the Resize used to be rewritten (checked against onnx's
    reference evaluator, which reads them) and the result written, exit 0."""
    stderr = _refused(tmp_path, _resize_reading(TensorProto.FLOAT16))
    assert ("invalid ONNX model (Resize node 'up' reads 'scales' as float, but it is float16; correct that "
            "tensor's element type (onnxruntime refuses the model))") in stderr
    assert not list(tmp_path.glob("*.opt.onnx"))


def test_a_stale_declared_shape_is_not_refused(tmp_path):
    """A declared shape that inference contradicts is not an error:
    onnxruntime runs the model (it overrides the declaration)."""
    import onnxruntime as ort

    model = _declared("value_info shape")
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    path = tmp_path / "stale.onnx"
    path.write_bytes(model.SerializeToString())
    r = run("optimize", path, "-o", tmp_path / "out.onnx")
    assert r.returncode == 0, r.stderr


def test_bad_inputs_get_one_line_errors(tmp_path):
    names = _bad_files(tmp_path)
    for name in names:
        path = tmp_path / name
        before = path.read_bytes() if path.is_file() else None
        r = run("optimize", path)
        assert r.returncode == 2, (name, r.returncode, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout
        if before is not None:
            assert path.read_bytes() == before
        assert not list(tmp_path.glob("*.opt.onnx")), name
        assert not list(tmp_path.glob(".*.tmp")), name


def test_bad_output_paths(tmp_path):
    src = tmp_path / "net.onnx"
    deconv_model(src)
    before = src.read_bytes()
    r = run("optimize", src, "-o", tmp_path / "missing_dir" / "o.onnx")
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run("optimize", src, "-o", src)
    assert r.returncode == 2 and "--force" in r.stderr and src.read_bytes() == before


def test_outputs_never_replace_the_inputs_external_data_or_each_other(tmp_path):
    m = deconv_model(tmp_path / "plain.onnx")
    src = tmp_path / "ext.onnx"
    onnx.save_model(m, src, save_as_external_data=True, location="ext.weights", size_threshold=0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for args in (["-o", "ext.weights"], ["-o", "ext.weights", "--force"], ["--report", "ext.weights"],
                 ["--html", "ext.weights"]):
        r = run("optimize", src, *args, cwd=tmp_path)
        assert r.returncode == 2 and "is external data the input model" in r.stderr, (args, r.stderr)
    r = run("check-target", src, "--target", "tflite", "--report", "ext.weights", cwd=tmp_path)
    assert r.returncode == 2 and "is external data the input model" in r.stderr, r.stderr
    for args in (["-o", "o.onnx", "--report", "o.onnx"], ["-o", "o.onnx", "--html", "./o.onnx"],
                 ["--report", "r.json", "--html", "r.json"]):
        r = run("optimize", "plain.onnx", *args, cwd=tmp_path)
        assert r.returncode == 2 and "each output needs its own path" in r.stderr, (args, r.stderr)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    onnx.checker.check_model(onnx.load(src))


def test_read_only_output_folder_is_refused(tmp_path, monkeypatch):
    # Root ignores permission bits, so the refusal is tested at the library
    # level with os.access reporting a read-only folder.
    from convrewrite import InputError
    from convrewrite.core.model_io import check_output_path

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(InputError, match="not writable"):
        check_output_path(tmp_path / "o.onnx", tmp_path / "in.onnx", force=False)


# --- a write that fails after the run ----------------------------------------------

def _refuse_renames_to(monkeypatch, target: Path, code: int) -> None:
    """os.replace onto `target` fails as the system call would with `code`
    (a full disk, a bind-mounted target: EBUSY); every other rename works."""
    real = os.replace

    def replace(src, dst):
        if os.fspath(dst) == os.fspath(target):
            raise OSError(code, os.strerror(code), src, None, dst)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def _main(capsys, *args) -> tuple:
    """cli.main in this process: (exit code, stderr's lines)."""
    import cli

    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("command, option, what", [
    ("optimize", "-o", "the output model (-o)"), ("optimize", "--report", "the JSON report (--report)"),
    ("optimize", "--html", "the HTML report (--html)"),
    ("check-target", "--report", "the JSON target report (--report)"),
    ("check-target", "--html", "the HTML report (--html)")])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EBUSY])
def test_a_write_that_fails_after_the_run_is_bad_output_not_a_bug(tmp_path, monkeypatch, capsys, command, option,
                                                                  what, code):
    """It was 'internal error: OSError: [Errno 28] ...: PosixPath(...)', exit
    4: an output path found unusable only when written, one line, exit 2."""
    src, target = tmp_path / "net.onnx", tmp_path / "out" / "file"
    deconv_model(src)
    target.parent.mkdir()
    _refuse_renames_to(monkeypatch, target, code)
    more = ["--target", "tflite"] if command == "check-target" else ["--quiet"]
    exit_code, lines = _main(capsys, command, src, option, target, *more)
    assert exit_code == 2 and lines == [f"error: {target}: cannot write {what}: {os.strerror(code)}"], lines
    assert not list(target.parent.iterdir())   # neither the file nor a temporary one beside it


def test_a_directory_put_in_the_outputs_way_during_the_run_is_bad_output(tmp_path, monkeypatch, capsys):
    import convrewrite

    src, out = tmp_path / "net.onnx", tmp_path / "out.onnx"
    deconv_model(src)
    real = convrewrite.optimize

    def optimize_then_block(*args, **kwargs):   # after check_output_paths, before the write
        result = real(*args, **kwargs)
        out.mkdir()
        (out / "inside").write_text("kept")
        return result

    monkeypatch.setattr(convrewrite, "optimize", optimize_then_block)
    exit_code, lines = _main(capsys, "optimize", src, "-o", out, "--quiet")
    assert exit_code == 2 and len(lines) == 1, lines
    assert re.fullmatch(rf"error: {re.escape(str(out))}: cannot write the output model \(-o\): .+", lines[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx", "out.onnx"]   # no temporary file left
    assert (out / "inside").read_text() == "kept"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("option", ["-o", "--report", "--html"])
def test_a_full_device_is_one_line_and_exit_2(tmp_path, option):
    """A stream (written in place, not renamed) that fails, in a process of its own."""
    src = tmp_path / "net.onnx"
    deconv_model(src)
    model = [] if option == "-o" else ["-o", tmp_path / "o.onnx"]
    r = run("optimize", src, *model, option, "/dev/full", "--quiet")
    assert r.returncode == 2 and r.stderr.startswith("error: /dev/full: cannot write the "), r.stderr
    assert r.stderr.endswith(": No space left on device\n") and len(r.stderr.splitlines()) == 1, r.stderr


def test_output_equal_to_input_with_force_overwrites(tmp_path):
    src = tmp_path / "net.onnx"
    deconv_model(src)
    r = run("optimize", src, "-o", src, "--force")
    assert r.returncode == 0, r.stderr
    assert "ConvTranspose" not in {n.op_type for n in onnx.load(src).graph.node}


def test_bad_usage_exits_2(tmp_path):
    r = run("optimize")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    src = tmp_path / "net.onnx"
    deconv_model(src)
    r = run("optimize", src, "--passes", "nosuchpass")
    assert r.returncode == 2 and "unknown pass 'nosuchpass'" in r.stderr
    for names in ("", ","):  # a slip that ran nothing and wrote the model unchanged, exit 0
        r = run("optimize", src, "--passes", names)
        assert r.returncode == 2 and "names no pass; choose from resize," in r.stderr, r.stderr
        assert not (tmp_path / "net.opt.onnx").exists()
    r = run("optimize", src, "--rtol", "abc")
    assert r.returncode == 2
    for flags, said in ((["--passes", "resize", "--dilated-mode", "taps"], "--dilated-mode is an option of the "
                         "dilated-conv pass, which --passes resize leaves out"),
                        (["--passes", "convtranspose", "--no-dilated-chains"], "--no-dilated-chains is an option")):
        r = run("optimize", src, *flags)   # it would change nothing, silently
        assert r.returncode == 2 and said in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "net.opt.onnx").exists()
    for option, value in (("--seed", "-5"), ("--rtol", "nan"), ("--atol", "-1"), ("--rtol", "inf")):
        r = run("optimize", src, option, value)
        assert r.returncode == 2 and f"argument {option}: {value!r} is not" in r.stderr, (option, r.stderr)
        r = run("check", src, src, option, value)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (option, r.stderr)
    np.savez(tmp_path / "wrong_shape.npz", x=np.ones((1, 4, 9, 8), np.float32))
    for command in (["optimize", src, "-o", tmp_path / "o.onnx"], ["check", src, src]):
        r = run(*command, "--inputs", tmp_path / "wrong_shape.npz")
        assert r.returncode == 2 and "'x' has shape [1, 4, 9, 8], the model's input is [1, 4, 8, 8]" in r.stderr
    (tmp_path / "junk.npz").write_bytes(b"junk")
    r = run("optimize", src, "--inputs", tmp_path / "junk.npz")
    assert r.returncode == 2 and "not a readable .npz" in r.stderr



@pytest.mark.parametrize("damage", ["truncated", "bad crc", "bad compressed member"])
def test_a_damaged_inputs_archive_is_bad_input(tmp_path, damage):
    """A damaged .npz is bad input in one line (exit 2); zipfile's BadZipFile
    and zlib's error used to escape as internal errors (exit 4)."""
    import cli
    from convrewrite import InputError

    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    path = tmp_path / "feeds.npz"
    (np.savez_compressed if damage == "bad compressed member" else np.savez)(path, x=x)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[:100]
    else:   # a byte of the member's data flipped
        data[len(data) // 3] ^= 0xFF
        data[len(data) // 3 + 1] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"^--inputs .*feeds\.npz: not a readable \.npz file \(.+\)$"):
        cli.load_inputs(path)

def test_model_with_external_data(tmp_path):
    m = deconv_model(tmp_path / "plain.onnx")
    src = tmp_path / "ext.onnx"
    onnx.save_model(m, src, save_as_external_data=True, location="ext.weights", size_threshold=0)
    assert (tmp_path / "ext.weights").exists()
    r = run("optimize", src)
    assert r.returncode == 0, r.stderr
    assert "ConvTranspose" not in {n.op_type for n in onnx.load(tmp_path / "ext.opt.onnx").graph.node}


def test_version_and_python_dash_m():
    import convrewrite

    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"cli.py {convrewrite.__version__}".replace("cli.py", "convrewrite")
    m = subprocess.run([sys.executable, "-m", "convrewrite", "passes"], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert m.returncode == 0 and m.stdout.split()[0] == "resize", m.stderr
    assert "onnxruntime" not in subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv = ['cli.py', 'passes']; import cli; cli.main(['passes']); "
                               "print(sorted(m for m in sys.modules if m.startswith('onnxruntime')))"],
        capture_output=True, text=True, cwd=ROOT, timeout=300).stdout.splitlines()[-1].replace("[]", "")


def _upsample_with_runtime_scales(path, with_deconv=False):
    """Upsample whose scales are a graph input: random scales make
    onnxruntime refuse the original; optionally a ConvTranspose to rewrite."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    s = helper.make_tensor_value_info("scales", TensorProto.FLOAT, [4])
    nodes = [helper.make_node("Upsample", ["x", "scales"], ["u"], name="up", mode="nearest")]
    inits, last = [], "u"
    if with_deconv:
        inits.append(numpy_helper.from_array(np.ones((2, 2, 2, 2), np.float32), "w"))
        nodes.append(helper.make_node("ConvTranspose", ["x", "w"], ["d"], name="deconv", strides=[2, 2]))
    y = helper.make_tensor_value_info(last, TensorProto.FLOAT, [1, 2, None, None])
    outs = [y] + ([helper.make_tensor_value_info("d", TensorProto.FLOAT, [1, 2, 8, 8])] if with_deconv else [])
    model = helper.make_model(helper.make_graph(nodes, "g", [x, s], outs, inits),
                              opset_imports=[helper.make_opsetid("", 9)])
    onnx.save(model, path)


def test_nothing_rewritten_needs_no_check_even_when_random_inputs_cannot_run_it(tmp_path):
    model, out = tmp_path / "m.onnx", tmp_path / "m.opt.onnx"
    _upsample_with_runtime_scales(model)
    r = run("optimize", model)
    assert r.returncode == 0, r.stderr
    assert "nothing was rewritten, so no check was needed" in r.stdout and out.exists()
    assert onnx.load(out).graph.node[0].op_type == "Upsample"


def test_random_inputs_that_cannot_run_the_original_are_named(tmp_path):
    model = tmp_path / "m.onnx"
    _upsample_with_runtime_scales(model, with_deconv=True)
    r = run("optimize", model)
    assert r.returncode == 1 and not (tmp_path / "m.opt.onnx").exists()
    assert "random values for input(s) 'scales'" in r.stdout and "--inputs" in r.stdout, r.stdout
    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, x=np.ones((1, 2, 4, 4), np.float32), scales=np.array([1, 1, 2, 2], np.float32))
    r = run("optimize", model, "--inputs", feeds)
    assert r.returncode == 0, r.stdout + r.stderr


# --- start-up, progress, --quiet ----------------------------------------------------

# Runs the CLI in-process in a fresh interpreter and prints, on the last line
# of stderr, which of the heavy modules got imported.
IMPORTS = r"""
import contextlib, io, sys
sys.path.insert(0, sys.argv[1])
import cli
with contextlib.redirect_stdout(io.StringIO()):
    try:
        code = cli.main(sys.argv[2:])
    except SystemExit as e:  # --help
        code = e.code
print("imported:" + ",".join(m for m in ("onnxruntime", "onnx.reference") if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


def imported(*args) -> list:
    r = subprocess.run([sys.executable, "-c", IMPORTS, ROOT, *map(str, args)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("imported:"), r.stderr
    return [m for m in last[len("imported:"):].split(",") if m]


@pytest.mark.parametrize("args", [["passes"], ["targets"], ["--help"], ["optimize", "--help"]])
def test_listing_commands_do_not_import_onnxruntime(args):
    assert imported(*args) == []


def test_no_verify_does_not_import_onnxruntime(tmp_path):
    deconv_model(tmp_path / "m.onnx")
    assert "onnxruntime" not in imported("optimize", tmp_path / "m.onnx", "--no-verify")
    assert (tmp_path / "m.opt.onnx").exists()


# Whether cli.main froze the import-time objects out of the garbage
# collector's sight: for the process's own command line (argv None) only.
FROZEN = r"""
import contextlib, gc, io, sys
sys.path.insert(0, sys.argv[1])
import cli
own = sys.argv[2] == "own"
sys.argv = ["cli.py", "passes"]
with contextlib.redirect_stdout(io.StringIO()):
    code = cli.main() if own else cli.main(["passes"])
print(f"frozen:{gc.get_freeze_count() > 0}", file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("how,frozen", [("own", True), ("given", False)])
def test_only_the_process_command_line_freezes_the_import_time_objects(how, frozen):
    r = subprocess.run([sys.executable, "-c", FROZEN, ROOT, how], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"frozen:{frozen}"


def _without_time(summary: str) -> list:
    return [line for line in summary.splitlines() if not line.startswith(("time:", "written:"))]


def test_progress_is_shown_on_stderr_when_forced_and_stdout_is_unchanged(tmp_path):
    deconv_model(tmp_path / "m.onnx")
    env = dict(os.environ, CONVREWRITE_PROGRESS="always")
    r = subprocess.run([sys.executable, CLI, "optimize", str(tmp_path / "m.onnx")], capture_output=True,
                       env=env, timeout=300)  # bytes: text mode would turn "\r" into "\n"
    r.stdout, r.stderr = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 0, r.stderr
    lines = [s.strip() for s in r.stderr.split("\r") if s.strip()]
    assert lines[0] == "convrewrite: load 0/1  [0 s]", lines
    for stage in ("convtranspose: match and build 1/1", "convtranspose: local checks", "convtranspose: splice"):
        assert any(s.startswith(f"convrewrite: {stage}") for s in lines), (stage, lines)
    splice = next(k for k, s in enumerate(lines) if s.startswith("convrewrite: convtranspose: splice"))
    assert any(s.startswith("convrewrite: whole-model check") for s in lines[splice:]), lines   # of the result
    assert "\n" not in r.stderr and r.stderr.endswith("\r") and r.stderr.split("\r")[-2].strip() == "", \
        "one line, rewritten in place and cleared at the end"
    plain = run("optimize", tmp_path / "m.onnx", "-o", tmp_path / "b.onnx")
    assert plain.returncode == 0 and plain.stderr == ""
    assert _without_time(plain.stdout) == _without_time(r.stdout)


def test_progress_on_a_terminal_only_after_the_delay(tmp_path):
    """stderr a pseudo-terminal: a run shorter than the delay shows no
    progress, a run past it does (the delay set to 0 stands for a long run)."""
    import pty

    deconv_model(tmp_path / "m.onnx")
    env = {k: v for k, v in os.environ.items() if k != "CONVREWRITE_PROGRESS"}
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import cli; cli.PROGRESS_DELAY = float(sys.argv[2]); "
            "sys.exit(cli.main(sys.argv[3:]))")
    for delay, expect in (("0", True), ("60", False)):
        leader, follower = pty.openpty()
        p = subprocess.Popen([sys.executable, "-c", code, ROOT, delay, "optimize", str(tmp_path / "m.onnx"),
                              "--force", "-o", str(tmp_path / "o.onnx")],
                             stdout=subprocess.PIPE, stderr=follower, env=env, text=True)
        os.close(follower)
        err = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            err += chunk
        out, _ = p.communicate(timeout=300)
        os.close(leader)
        assert p.returncode == 0, err
        assert (b"convrewrite: convtranspose: match and build" in err) == expect, (delay, err)
        assert "pass convtranspose: rewrote 1 node(s)" in out


def test_without_a_terminal_stderr_stays_empty(tmp_path):
    deconv_model(tmp_path / "m.onnx")
    env = {k: v for k, v in os.environ.items() if k != "CONVREWRITE_PROGRESS"}
    r = subprocess.run([sys.executable, CLI, "optimize", str(tmp_path / "m.onnx")], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_quiet_prints_nothing_and_keeps_exit_code_output_and_report(tmp_path):
    deconv_model(tmp_path / "m.onnx")
    env = dict(os.environ, CONVREWRITE_PROGRESS="always")
    r = subprocess.run([sys.executable, CLI, "optimize", str(tmp_path / "m.onnx"), "--quiet", "--report",
                        str(tmp_path / "r.json")], capture_output=True, text=True, env=env, timeout=300)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert (tmp_path / "m.opt.onnx").exists()
    assert json.loads((tmp_path / "r.json").read_text())["verification"]["equivalent"] is True
    # errors still go to stderr, with the same exit codes
    r = run("optimize", tmp_path / "missing.onnx", "-q")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith("error:")
    runtime_weight_model(tmp_path / "rt.onnx")
    r = run("optimize", tmp_path / "rt.onnx", "-q", "--strict")
    assert r.returncode == 3 and r.stdout == "" and "--strict" in r.stderr
    r = run("check-target", tmp_path / "m.onnx", "--target", "generic-npu", "--strict", "--quiet")
    assert r.returncode == 3 and r.stdout == ""


def test_the_installed_command():
    """`pip install .` gives a `convrewrite` command (next to the interpreter) with the same subcommands."""
    import shutil
    from pathlib import Path

    import convrewrite

    exe = shutil.which("convrewrite", path=str(Path(sys.executable).parent)) or shutil.which("convrewrite")
    if exe is None:
        pytest.skip("the convrewrite command is not installed (pip install .)")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=300)
    assert version.returncode == 0 and version.stdout.split() == ["convrewrite", convrewrite.__version__]
    listed = subprocess.run([exe, "passes"], capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0 and [line.split()[0] for line in listed.stdout.splitlines()] == \
        ["resize", "convtranspose", "dilated-conv", "shuffle-motion", "shuffle-spelling"]


def test_dilated_flags_reach_the_pass(tmp_path):
    """--no-dilated-estimates gives the rules alone (tcn_1d's 16-channel
    Convs: taps, not the reshape form); --no-dilated-chains leaves that choice alone."""
    model = os.path.join(os.path.dirname(__file__), "..", "models", "tcn_1d.onnx")
    forms = {}
    for flags in ([], ["--no-dilated-estimates"], ["--no-dilated-chains"]):
        report = tmp_path / f"r{len(forms)}.json"
        r = run("optimize", model, "-o", str(tmp_path / f"o{len(forms)}.onnx"), "--report", str(report),
                "--passes", "dilated-conv", "--quiet", *flags)
        assert r.returncode == 0, r.stderr
        recs = json.loads(report.read_text())["rewrites"]
        forms[" ".join(flags)] = sorted({x["form"] for x in recs if x["status"] == "rewritten"})
    assert forms == {"": ["reshape"], "--no-dilated-estimates": ["taps"], "--no-dilated-chains": ["reshape"]}


def test_python_dash_m_convrewrite_names_itself_in_usage_and_errors():
    """`python -m convrewrite` is the same command line, and its help and errors say so."""
    helped = subprocess.run([sys.executable, "-m", "convrewrite", "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: python -m convrewrite ")
    bad = subprocess.run([sys.executable, "-m", "convrewrite", "optimize"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("python -m convrewrite optimize: error: ")


def test_a_long_first_stage_is_shown_once_the_delay_is_over(monkeypatch):
    # the timer was given the constructor's delay argument, None by default: it never fired
    import io
    import time

    import cli

    monkeypatch.setattr(cli, "PROGRESS_DELAY", 0.05)
    stream = io.StringIO()
    line = cli.ProgressLine(stream=stream, enabled=True)
    line("load", 0, 1)  # and no call after it, as while a large model loads
    deadline = time.monotonic() + 10
    while "convrewrite: load 0/1" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    line.close()
    assert "convrewrite: load 0/1" in stream.getvalue()


def test_the_report_to_stdout_and_the_model_to_dev_null(tmp_path):
    """Streams are written in place: `--report /dev/stdout --quiet` is the JSON
    alone on stdout, `-o /dev/null` discards the model; both stay what they are."""
    src = tmp_path / "net.onnx"
    deconv_model(src)
    r = run("optimize", src, "-o", "/dev/null", "--report", "/dev/stdout", "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output"] == "/dev/null" and r.stderr == ""
    assert os.path.islink("/dev/stdout") or os.path.exists("/dev/stdout")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_a_bug_is_one_line_with_exit_4_and_no_address(monkeypatch, capsys):
    """An exception the CLI does not expect is a bug: one line on stderr
    (no traceback), exit 4; an object's default repr in its text loses its
    address, so two runs print the same."""
    import cli

    class Thing:
        pass

    def broken(args):
        raise RuntimeError(f"cannot handle {Thing()}\nsecond line")

    monkeypatch.setattr(cli, "cmd_passes", broken)
    monkeypatch.delenv("CONVREWRITE_DEBUG", raising=False)
    assert cli.main(["passes"]) == cli.EXIT_INTERNAL == 4
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "internal error: RuntimeError: cannot handle <test_cli.test_a_bug_is_one_line_with_exit_4_and_no_address."
        "<locals>.Thing object> (set CONVREWRITE_DEBUG=1 for the traceback)"]
