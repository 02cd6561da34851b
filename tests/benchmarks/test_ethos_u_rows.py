"""benchmarks/ethos_u_rows.py: the Vela tables are made from the committed rows, and a row
knows when the code of today would compile something else (no onnx2tf or Vela needed)."""
import json
import os
from collections import Counter

import pytest

from benchmarks import ethos_u
from benchmarks.ethos_u_rows import ACCELERATORS, Row, VelaResult, change, never_worse_summary, summary_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
SAMPLES, REAL = (os.path.join(RESULTS, f"ethos_u_{s}.jsonl") for s in ("samples", "real"))


def vela(cpu=0, ms=1.0, npu=10, ops=None):
    return VelaResult("ethos-u55-128", ok=True, npu=npu, cpu=cpu, cpu_ops=Counter(ops or {}), ms=ms,
                      sram_kib=100.0, offchip_kib=50.0)


def test_change_says_how_many_cpu_operators_go_and_by_how_much_the_estimate_moves():
    assert change(vela(2, 2.147), vela(0, 2.154)) == "2 fewer CPU ops, NPU estimate +0.3 %"
    assert change(vela(0, 12.318), vela(0, 9.510)) == "1.30x faster"
    assert change(vela(1, 8629.078), vela(0, 252.877)) == "1 fewer CPU op, NPU estimate **34.12x faster**"
    assert change(vela(0, 1.0), vela(0, 1.06)) == "**1.06x slower**"      # never worse broken
    assert change(vela(1, 1.0), vela(2, 1.0)) == "**1 more CPU op**, NPU estimate +0.0 %"


def test_never_worse_flags_more_cpu_operators_and_an_equal_count_5_percent_slower():
    rows = [Row("a", "arm-ethos-u55", vela(0, 1.0), vela(0, 1.05)),            # at the bound: kept
            Row("b", "arm-ethos-u55", vela(0, 1.0), vela(0, 1.06)),            # above: broken
            Row("c", "arm-ethos-u55", vela(1, 1.0, ops={"RESIZE_BILINEAR": 1}),
                vela(2, 0.5, ops={"RESIZE_BILINEAR": 1, "TRANSPOSE": 1})),     # more CPU: broken
            Row("d", "arm-ethos-u85", vela(0, 1.0), vela(0, 9.0)),             # U85: not judged
            Row("e", "arm-ethos-u55", vela(0, 1.0),
                VelaResult("ethos-u55-128", ok=False, error="Vela stops")),          # rewritten fails: broken
            Row("f", "arm-ethos-u55", None, vela(0, 1.0), original_error="onnx2tf fails")]   # not judged
    text = never_worse_summary(rows)
    assert "4 model(s) whose original compiles" in text and "3 violation(s)" in text
    assert "- `b`: equal CPU operators" in text and "- `c`: CPU operators 1 -> 2 (new on the CPU: TRANSPOSE)" in text
    assert "- `e`: the original compiles, the rewritten model does not (Vela stops)" in text
    assert "Not judged (the original does not convert or compile): `f`" in text
    assert "`a`" not in text and "`d`" not in text


def test_summary_table_is_one_line_per_model_with_both_targets():
    left = Row("m", "arm-ethos-u85", vela(0, 2.0), vela(0, 2.0), reused=True)
    rewritten = Row("m", "arm-ethos-u55", vela(2, 0.412, ops={"RESIZE_BILINEAR": 2}), vela(0, 0.488, npu=23))
    failed = Row("f", "arm-ethos-u55", None, None, original_error="flatbuffer_direct: x; tf_converter: y",
                 rewritten_error="flatbuffer_direct: x; tf_converter: y")
    converts = Row("g", "arm-ethos-u85", None, vela(2, 3.0, ops={"MEAN": 2}), original_error="tf_converter: x")
    lines = summary_table([left, rewritten, failed, converts]).splitlines()
    assert len(lines) == 5
    assert lines[2] == "| `f` | onnx2tf fails before and after |  |  | — | not measured |  |  |  |"
    assert lines[3] == ("| `g` | not measured |  |  |  | onnx2tf fails → 10 / 2 (MEAN×2) | — → 3.000 "
                        "| — → 100.0 / 50.0 | — |")
    assert lines[4] == ("| `m` | 10 / 2 (RESIZE_BILINEAR×2) → 23 / 0 | 0.412 → 0.488 | 100.0 / 50.0 → 100.0 / 50.0 "
                        "| 2 fewer CPU ops, NPU estimate 1.18x slower | 10 / 0 | 2.000 | 100.0 / 50.0 | left alone |")


def test_a_row_survives_its_json_line():
    row = Row("m", "arm-ethos-u55", vela(2, 0.4, ops={"TRANSPOSE_CONV": 2}), vela(0, 0.5), rewrite="2 rewritten",
              original_digest="0123", rewritten_digest="4567", convrewrite="abc1234")
    assert Row.from_json(json.loads(json.dumps(dict(row.to_json(), env="x")))) == row


def _rows(path):
    with open(path) as f:
        return [Row.from_json(json.loads(line)) for line in f if line.strip()]


@pytest.mark.parametrize("path", [SAMPLES, REAL])
def test_the_committed_rows_are_whole(path):
    """Both targets for every model, each with the digests of what it compiled."""
    rows = _rows(path)
    models = {r.model for r in rows}
    assert sorted((r.model, r.target) for r in rows) == sorted((m, t) for m in models for t in ACCELERATORS)
    assert all(r.original_digest and r.rewritten_digest for r in rows)
    assert all(r.reused == (r.original_digest == r.rewritten_digest) for r in rows)


@pytest.mark.parametrize("path, real", [(SAMPLES, False), (REAL, True)])
def test_the_tables_are_the_committed_rows(path, real, tmp_path):
    """The generated blocks of docs/ethos_u.md and the README are what --from-json makes of
    the committed rows (both files in a copy; nothing else in them changes)."""
    files = {name: os.path.join(ROOT, name) for name in ("README.md", os.path.join("docs", "ethos_u.md"))}
    copies = {name: tmp_path / os.path.basename(name) for name in files}
    for name, copy in copies.items():
        copy.write_text(open(files[name]).read())
    argv = (["--real"] if real else []) + ["--from-json", path, "--update-readme", str(copies["README.md"]),
                                           "--update-doc", str(copies[os.path.join("docs", "ethos_u.md")])]
    assert ethos_u.main(argv) == 0
    for name, copy in copies.items():
        assert copy.read_text() == open(files[name]).read(), name


def test_stale_finds_a_row_whose_rewrite_changed(tmp_path):
    """all_three is left alone by arm-ethos-u55: a row recording that is current; a row
    recording some other rewritten graph, or no digest, is stale."""
    import onnx

    path = os.path.join(ROOT, "models", "all_three.onnx")
    digest = ethos_u.graph_digest(onnx.load(path))
    current = Row("all_three", "arm-ethos-u55", vela(), vela(), reused=True,
                  original_digest=digest, rewritten_digest=digest)
    other = Row("all_three", "arm-ethos-u55", vela(), vela(), original_digest=digest, rewritten_digest="0" * 16)
    old = Row("all_three", "arm-ethos-u55", vela(), vela(), reused=True)
    found = ethos_u.stale([current, other, old], {"all_three": path}, str(tmp_path))
    assert [(r is other or r is old, why) for r, why in found] == [(True, "rewritten differently"),
                                                                   (True, "no digest recorded")]


def test_the_check_target_column_counts_nodes_not_findings():
    """A node breaking two rules counts once, as `check-target`'s "N node(s)
    do not fit" counts it: smp_fpn_resnet18's stack Concat (batch 4, and
    inputs onnx2tf reshapes) made the column 9 / 2 where check-target says 8 / 1.
    The sample below: a Concat of batch-4 Unsqueezes breaks both rules on the U55."""
    import onnx
    from onnx import TensorProto, helper

    from convrewrite.target import check_model, load_profile

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 1, 8, 4, 4])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [0])
    nodes = [helper.make_node("Unsqueeze", ["x", "axes"], [f"u{k}"], name=f"unsq{k}") for k in range(4)]
    nodes.append(helper.make_node("Concat", [f"u{k}" for k in range(4)], ["y"], name="stack", axis=0))
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [axes]),
                              opset_imports=[helper.make_opsetid("", 17)])
    found = check_model(model, load_profile("arm-ethos-u55"))
    nodes_reported = {v.node for v in found}
    assert len(found) > len(nodes_reported)   # some node breaks more than one rule
    assert ethos_u.misfit_nodes(model, "arm-ethos-u55") == len(nodes_reported)
