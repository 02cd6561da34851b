"""External data that points outside the model's folder is bad input (exit 2),
refused before any of it is read and before anything is written."""
import os
import re
import subprocess
import sys

import numpy as np
from pathlib import Path
import onnx
import pytest
from hypothesis import given, strategies as st
from onnx import TensorProto, helper, numpy_helper

from convrewrite import InputError
from convrewrite.core import model_io
from convrewrite.core.model_io import _occurs_folded

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, "cli.py")


def _model() -> onnx.ModelProto:
    """A ConvTranspose whose weight 'w' is saved as external data."""
    w = numpy_helper.from_array(np.arange(48, dtype=np.float32).reshape(4, 3, 2, 2), "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2, 2])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 16])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _with_location(tmp_path, location: str, **extra) -> "os.PathLike":
    """model/m.onnx whose weight's data lives at `location` (plus `extra` keys);
    a real copy of the data sits outside, in tmp_path/outside.bin."""
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    m = _model()
    raw = m.graph.initializer[0].raw_data
    (tmp_path / "outside.bin").write_bytes(raw)
    (folder / "w.bin").write_bytes(raw)
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    for key, value in extra.items():
        t.external_data.add(key=key, value=value)
    path = folder / "m.onnx"
    path.write_bytes(m.SerializeToString())
    return path


def _outside_link(tmp_path):
    (tmp_path / "model").mkdir()
    os.symlink(tmp_path / "outside.bin", tmp_path / "model" / "link.bin")
    return "link.bin"


def _outside_folder_link(tmp_path):
    (tmp_path / "model").mkdir()
    os.symlink(tmp_path, tmp_path / "model" / "up")
    return "up/outside.bin"


BAD = {
    "dotdot": (lambda tmp: "../outside.bin", "points outside the model's folder"),
    "nested dotdot": (lambda tmp: "sub/../../outside.bin", "points outside the model's folder"),
    "absolute": (lambda tmp: str(tmp / "outside.bin"), "is absolute"),
    "link to a file outside": (_outside_link, "leads outside the model's folder"),
    "link to a folder outside": (_outside_folder_link, "leads outside the model's folder"),
    "missing": (lambda tmp: "nothere.bin", "no such file"),
    # the folder itself: was said to lead outside "through a symbolic link"
    "the folder": (lambda tmp: ".", "names the model's folder, not a file"),
    "the folder, with a slash": (lambda tmp: "./", "names the model's folder, not a file"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_load_model_refuses_before_reading(tmp_path, monkeypatch, case):
    make_location, message = BAD[case]
    path = _with_location(tmp_path, make_location(tmp_path))

    def must_not_read(*args, **kwargs):
        raise AssertionError("external data was read before the reference was checked")

    monkeypatch.setattr(model_io, "load_external_data_for_model", must_not_read)
    with pytest.raises(InputError) as e:
        model_io.load_model(path)
    text = str(e.value)
    assert "tensor 'w'" in text and message in text and "\n" not in text


@pytest.mark.parametrize("extra, message", [
    ({"offset": "4096"}, "beyond the file's 192 bytes"),
    ({"length": "-4"}, "is not a non-negative whole number"),
    ({"offset": "12", "length": "192"}, "beyond the file's 192 bytes")])
def test_offset_and_length_stay_within_the_file(tmp_path, extra, message):
    with pytest.raises(InputError, match=message):
        model_io.load_model(_with_location(tmp_path, "w.bin", **extra))


def test_data_inside_the_folder_loads(tmp_path):
    path = _with_location(tmp_path, "w.bin")
    (path.parent / "sub").mkdir()
    os.replace(path.parent / "w.bin", path.parent / "sub" / "w.bin")
    m = onnx.load(path, load_external_data=False)
    m.graph.initializer[0].external_data[0].value = "sub/w.bin"
    path.write_bytes(m.SerializeToString())
    loaded = model_io.load_model(path)
    w = numpy_helper.to_array(loaded.graph.initializer[0])
    assert np.array_equal(w, numpy_helper.to_array(_model().graph.initializer[0]))


@pytest.mark.parametrize("case", ["dotdot", "absolute", "link to a file outside", "link to a folder outside"])
def test_cli_exits_2_with_one_line(tmp_path, case):
    make_location, message = BAD[case]
    path = _with_location(tmp_path, make_location(tmp_path))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    out = tmp_path / "model" / "out.onnx"
    r = subprocess.run([sys.executable, CLI, "optimize", str(path), "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "tensor 'w'" in lines[0], r.stderr
    assert message in lines[0] and "Traceback" not in r.stdout + r.stderr
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing changed
    assert not out.exists()


# --- the files a command writes: none the input's external data, no file named twice ---

def test_an_output_that_is_the_inputs_external_data_is_refused(tmp_path):
    path = _with_location(tmp_path, "w.bin")
    data = path.parent / "w.bin"
    for option, force in (("-o", ""), ("-o", "-o"), ("--report", ""), ("--html", "")):
        with pytest.raises(InputError, match=rf"w.bin \({option}\) is external data the input model .* reads"):
            model_io.check_output_paths({option: data}, path, force_option=force)
    model_io.check_output_paths({"-o": path.parent / "out.onnx", "--report": tmp_path / "outside.bin"}, path)


def test_external_data_in_a_subfolder_and_a_model_that_names_no_file(tmp_path):
    path = _with_location(tmp_path, "sub/w.bin")
    (path.parent / "sub").mkdir()
    (path.parent / "sub" / "w.bin").write_bytes((path.parent / "w.bin").read_bytes())
    assert model_io.input_external_data(path, [path.parent / "sub" / "w.bin", path.parent / "w.bin"]) \
        == [path.parent / "sub" / "w.bin"]
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(_model().SerializeToString())
    assert model_io.input_external_data(plain, [path.parent / "w.bin"]) == []


@pytest.mark.parametrize("first, second", [("-o", "--report"), ("-o", "--html"), ("--report", "--html")])
def test_one_file_named_for_two_outputs_is_refused(tmp_path, first, second):
    path = tmp_path / "m.onnx"
    path.write_bytes(_model().SerializeToString())
    with pytest.raises(InputError, match=f"given for both {first} and {second}"):
        model_io.check_output_paths({first: tmp_path / "o.onnx", second: tmp_path / "." / "o.onnx"}, path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_an_output_that_is_a_pipe_or_a_device_is_written_as_a_stream_not_replaced(tmp_path):
    """The rename over the path replaced it with a regular file (as root, -o
    /dev/null replaced /dev/null): a character device or a pipe is written
    in place, as a stream (-o /dev/null, --report /dev/stdout)."""
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    model_io.check_output_path(fifo, tmp_path / "in.onnx", force=False)
    model_io.save_model(_model(), fifo)
    reader.join(10)
    assert onnx.load_from_string(got[0]).graph.node[0].op_type == "ConvTranspose"
    model_io.save_model(_model(), Path("/dev/null"))
    model_io.write_text(Path("/dev/null"), "{}")
    assert Path("/dev/null").is_char_device()
    assert fifo.is_fifo() and sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mknod of a block device needs root")
def test_a_block_device_output_is_refused(tmp_path):
    import stat

    dev = tmp_path / "disk"
    os.mknod(dev, 0o600 | stat.S_IFBLK, os.makedev(7, 250))
    for write in (lambda: model_io.save_model(_model(), dev), lambda: model_io.write_text(dev, "{}"),
                  lambda: model_io.check_output_path(dev, tmp_path / "in.onnx", force=False)):
        with pytest.raises(InputError, match="is not a regular file, a character device or a pipe"):
            write()
    assert dev.is_block_device()


def test_a_symlinked_output_is_written_through_and_kept(tmp_path):
    """The rename replaced the link itself (report.json -> real.json: the link
    became a file, real.json kept its old content); a link to a device
    (--report /dev/stdout, which as root the rename replaced for the whole
    machine) is written as a stream."""
    real, link = tmp_path / "real.json", tmp_path / "report.json"
    real.write_text("old")
    link.symlink_to(real)
    model_io.write_text(link, "{}")
    assert link.is_symlink() and real.read_text() == "{}"
    model_link = tmp_path / "m.onnx"
    model_link.symlink_to(tmp_path / "target.onnx")   # a link to a file not made yet
    model_io.save_model(_model(), model_link)
    assert model_link.is_symlink() and onnx.load(tmp_path / "target.onnx").graph.node[0].op_type == "ConvTranspose"
    to_device = tmp_path / "out"
    to_device.symlink_to("/dev/null")   # a stream: written in place, the link and the device kept
    model_io.check_output_path(to_device, tmp_path / "in.onnx", force=False)
    model_io.write_text(to_device, "{}")
    model_io.save_model(_model(), to_device)
    assert to_device.is_symlink() and os.readlink(to_device) == "/dev/null" and Path("/dev/null").is_char_device()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_link_to_the_inputs_external_data_is_that_file(tmp_path):
    """A hard link or a symlink of another name (an output written through
    the link would write the input's data)."""
    path = _with_location(tmp_path, "w.bin")
    alias, link = tmp_path / "alias.bin", tmp_path / "link.json"
    os.link(path.parent / "w.bin", alias)
    link.symlink_to(path.parent / "w.bin")
    for option, output in (("--report", alias), ("-o", link)):
        with pytest.raises(InputError, match=rf"{output.name} \({option}\) is external data the input model"):
            model_io.check_output_paths({option: output}, path)


def test_a_saved_model_gets_the_umask_permissions_or_those_of_the_file_it_replaces(tmp_path):
    # mkstemp's temporary file is 0600: every written model was unreadable to the group and others
    mask = os.umask(0o022)
    try:
        model_io.save_model(_model(), tmp_path / "new.onnx")
        assert (tmp_path / "new.onnx").stat().st_mode & 0o777 == 0o644
        old = tmp_path / "old.onnx"
        old.write_bytes(b"x")
        old.chmod(0o640)
        model_io.save_model(_model(), old)
        assert old.stat().st_mode & 0o777 == 0o640 and onnx.load(old).graph.node[0].op_type == "ConvTranspose"
    finally:
        os.umask(mask)


def test_a_failed_save_of_a_large_model_leaves_the_files_that_were_there_whole(tmp_path, monkeypatch):
    """Above 2 GB (simulated: the limit set to 0) the weights go to
    `<name>.data`: written to a temporary file renamed over it only when
    complete, so a write that fails (here: the second weight) leaves the
    model and data files of the previous save, which still load, and no
    temporary file.  (It was truncated in place, first thing.)"""
    monkeypatch.setattr(model_io, "TWO_GB", 0)
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((32, 32)).astype(np.float32), n) for n in "ab"]
    node = helper.make_node("Add", ["a", "b"], ["y"])
    g = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [32, 32])],
                          weights)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    out = tmp_path / "m.onnx"
    model_io.save_model(model, out)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(before) == {"m.onnx", "m.onnx.data"}
    stub, calls = model_io.weight_stub, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return stub(*args, **kwargs)

    monkeypatch.setattr(model_io, "weight_stub", failing)
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    changed.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.zeros((32, 32), np.float32), "a"))
    with pytest.raises(OSError):
        model_io.save_model(changed, out)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    loaded = onnx.load(out)
    assert np.array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), numpy_helper.to_array(weights[0]))


def test_an_output_whose_external_data_file_is_the_inputs_is_refused(tmp_path, monkeypatch):
    """A model over 2 GB is saved with its weights in `<-o>.data`: where the
    input reads that file as its external data, the run used to write it
    (exit 0) and the input then read a file of the output's weights (here
    an empty one: 'beyond the file's 0 bytes')."""
    import cli

    path = _with_location(tmp_path, "out.onnx.data")
    os.replace(path.parent / "w.bin", path.parent / "out.onnx.data")
    out = path.parent / "out.onnx"
    with pytest.raises(InputError, match=r"out\.onnx\.data is external data the input model .*m\.onnx reads, and the "
                                         r"file -o .*out\.onnx writes its weights to if the model exceeds 2 GB"):
        model_io.check_output_paths({"-o": out}, path, model_option="-o")
    model_io.check_output_paths({"-o": path.parent / "other.onnx"}, path, model_option="-o")
    model_io.check_output_paths({"-o": path}, path, force_option="-o", model_option="-o")  # replaces the input
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    monkeypatch.setattr(model_io, "TWO_GB", 100)   # this small model saved as one over 2 GB is
    assert cli.main(["optimize", str(path), "-o", str(out), "-q"]) == 2
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before and not out.exists()
    model_io.load_model(path)   # the input intact


@given(st.binary(max_size=60), st.binary(min_size=1, max_size=4), st.integers(1, 12))
def test_a_name_occurs_folded_where_an_ignorecase_regex_finds_it(data, name, chunk):
    """_occurs_folded (chunks, overlapping) finds what the regex it replaces found."""
    want = re.search(re.escape(name), data, re.IGNORECASE) is not None
    assert _occurs_folded(name, data, chunk) == want
    assert _occurs_folded(name.upper(), data.lower() + name.swapcase(), chunk)


def test_the_checkers_complaint_does_not_name_its_temporary_folder():
    """A model given in memory whose Constant's data is external and not
    loaded: onnx.checker looks for it beside the file it is given, in a
    temporary folder, and its complaint named that folder's random path."""
    import tempfile

    from convrewrite.core.errors import TEMPORARY_FOLDER

    t = numpy_helper.from_array(np.ones((4,), np.float32), "c")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="c.bin")
    nodes = [helper.make_node("Constant", [], ["c"], value=t), helper.make_node("Add", ["x", "c"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    said = []
    for _ in range(2):
        with pytest.raises(InputError) as e:
            model_io.check_model(model)
        said.append(str(e.value))
    assert said[0] == said[1] and f"{TEMPORARY_FOLDER}/c.bin" in said[0] and tempfile.gettempdir() not in said[0]


def test_a_failed_rename_names_the_same_temporary_file_in_every_run(tmp_path, monkeypatch):
    """The file written beside the output before its rename had a random
    name, which the rename's error (a bind-mounted output: 'Device or
    resource busy') printed."""
    def busy(src, dst):
        raise OSError(16, "Device or resource busy", src, None, dst)

    out = tmp_path / "m.onnx"
    monkeypatch.setattr(model_io.os, "replace", busy)
    said = []
    for _ in range(2):
        with pytest.raises(OSError) as e:
            model_io.save_model(_model(), out)
        said.append(str(e.value))
    assert said[0] == said[1] == f"[Errno 16] Device or resource busy: '{tmp_path}/.m.onnx.0.tmp' -> {out!r}"
    assert not list(tmp_path.iterdir())   # the temporary file is gone, its number free again


def test_no_free_temporary_name_is_an_error_saying_so_once(tmp_path):
    """Its text is the reason the command line quotes after the path (it
    was OSError('<path>: no free ...'), the path said twice there)."""
    out = tmp_path / "r.json"
    for k in range(100):
        (tmp_path / f".r.json.{k}.tmp").write_text("")
    with pytest.raises(FileExistsError) as e:
        model_io.write_text(out, "{}")
    assert e.value.strerror == "no free temporary name beside it (.r.json.0.tmp to .99.tmp are taken)"
    assert not out.exists() and len(list(tmp_path.iterdir())) == 100
