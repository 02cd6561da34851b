"""The architecture's promises, checked: layers point one way, the CLI's
choices are form names, every skip code is documented, options are typed."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from onnx import TensorProto, helper

from convrewrite import InputError, optimize
from convrewrite.core.rewrite import CODES, Skip
from passes import PASSES, make_passes, option_choices

ROOT = Path(__file__).resolve().parents[2]


def test_the_library_never_imports_the_passes():
    offenders = []
    for path in (ROOT / "convrewrite").rglob("*.py"):
        if path.name in ("__init__.py", "__main__.py") and path.parent.name == "convrewrite":
            continue  # the package's public face is a caller, like cli.py
        if re.search(r"^\s*(from passes\b|import passes\b)", path.read_text(), re.M):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


def test_every_cli_choice_is_a_form_of_its_pass():
    for p in PASSES:
        names = {f.name for f in p().forms}
        for key, values in p.Options.CHOICES.items():
            assert set(values) - {"auto"} <= names, (p.name, key, values)
    assert set(option_choices()) == {"convtranspose_form", "dilated_mode", "resize_mode", "resize_nearest"}


def test_the_cli_offers_exactly_those_choices():
    import cli

    parser = cli.build_parser()
    optimize_parser = next(a for a in parser._subparsers._group_actions[0].choices.values()
                           if a.prog.endswith("optimize"))
    offered = {a.dest: tuple(a.choices) for a in optimize_parser._actions if a.choices}
    assert offered == option_choices()


def test_every_code_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    table = dict(re.findall(r"^\| `([a-z-]+)` \| (.+?) \|$", readme, re.M))
    assert {k: table.get(k) for k in CODES} == CODES
    with pytest.raises(ValueError, match="unknown skip code"):
        Skip("why", "no-such-code")


def test_an_option_of_a_pass_the_run_leaves_out_is_an_error_naming_both():
    with pytest.raises(ValueError, match=r"option 'dilated_mode' is the dilated-conv pass's, which this run "
                                         r"leaves out \(passes: resize, convtranspose\)"):
        make_passes(["convtranspose", "resize"], {"dilated_mode": "taps"})
    with pytest.raises(InputError, match="resize_mode"):
        optimize(_relu_model(), passes=["dilated-conv"], options={"resize_mode": "matmul"})
    assert [p.name for p in make_passes(["resize"], {"resize_mode": "matmul"})] == ["resize"]


def test_an_unknown_option_is_an_error_naming_it():
    with pytest.raises(ValueError, match="unknown option 'dilated_mdoe'"):
        make_passes(None, {"dilated_mdoe": "slices"})
    model = _relu_model()
    with pytest.raises(InputError, match="dilated_mdoe"):
        optimize(model, options={"dilated_mdoe": "slices"})
    with pytest.raises(ValueError, match="dilated_mode must be one of"):
        make_passes(None, {"dilated_mode": "fastest"})


def _deconv_model():
    """One ConvTranspose 2x2/s2, 4 -> 2 channels on 8x8."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 2, 2, 2], [0.5] * 32)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2, 2])
    return helper.make_model(helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 16, 16])], [w]),
        opset_imports=[helper.make_opsetid("", 17)])


def test_the_target_applies_whatever_passes_are_given():
    from passes.convtranspose.rewrite import ConvTransposeToConv

    model = _deconv_model()
    _, report = optimize(model, passes=[ConvTransposeToConv()], target="generic-npu")
    assert report.target is not None and report.target["profile"] == "generic-npu"
    relaxed = {"name": "runs-deconv", "unlisted_operators": "allowed"}
    _, report = optimize(model, passes=[ConvTransposeToConv()], target=_profile(relaxed))
    assert report.rewrites[0].code == "target-runs-it"


def _profile(spec):
    import json
    import tempfile

    from convrewrite.target import load_profile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    return load_profile(f.name)


def _relu_model():
    return helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])]), opset_imports=[helper.make_opsetid("", 17)])


def test_form_and_code_reach_the_json_report():
    import json

    from toy_passes import ReluToMax

    model = _relu_model()
    model.graph.node.append(helper.make_node("Relu", ["y"], ["z"], name="keep_me"))
    model.graph.output[0].name = "z"
    _, report = optimize(model, passes=[ReluToMax()])
    records = json.loads(report.to_json())["rewrites"]
    assert [(r["status"], r["form"], r["code"]) for r in records] == [
        ("rewritten", "max", ""), ("skipped", "", "unsupported-attribute")]
    assert records[0]["nodes_before"] == 1 and records[0]["nodes_after"] == 1


def test_every_json_report_key_is_documented_in_the_readme():
    """The README's "JSON report" table names every top-level key and every
    timing phase a run with a target writes (`target`, `optimization_passes`,
    `dry_run` and the `check_target` timing were missing from it)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## JSON report"):readme.index("## Quantized models")]
    keys = {k for cell in re.findall(r"^\| ([^|]+) \|", section, re.M) for k in re.findall(r"`([a-z_]+)", cell)}
    model = _deconv_model()
    report = optimize(model, target="generic-npu")[1].to_dict()
    assert set(report) - keys == set()
    timings = section[section.index("| `timings` |"):].split("\n", 1)[0]
    phases = {re.sub(r":.*", ":<name>", k) for k in report["timings"]}
    assert {p for p in phases if f"`{p}`" not in timings} == set()
