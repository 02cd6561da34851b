"""benchmarks/calibrate_cost.py --from-raw: refitting rows written earlier
(no onnxruntime timing needed)."""
import json

from benchmarks import calibrate_cost
from benchmarks.calibrate_cost import FEATURES, STUDY


def _rows():
    """Two cases of two forms each, every figure the script records, times
    linear in the chooser figures."""
    keys = set(FEATURES) | {f for features in STUDY.values() for f in features}
    rows = []
    for case, scale in (("resize linear c16 16x16 x2", 1), ("resize linear c64 32x32 x4", 3)):
        for form, k in (("deconv", 2), ("matmul", 1)):
            row = dict.fromkeys(keys, 0)
            row.update(view_dense_macs=1000 * k * scale, view_streamed_bytes=400 * k * scale, view_nodes=k + 1,
                       view_moved_bytes=10 * scale)
            rows.append(dict(row, case=case, form=form, default=form == "matmul", rule=form == "deconv",
                             seconds=(0.03 * 1000 * k * scale + 0.2 * 400 * k * scale + 1000 * (k + 1)) * 1e-9))
    return rows


def test_rows_written_before_a_figure_existed_are_refused_not_fitted_as_zero(tmp_path, capsys):
    rows = _rows()
    for r in rows:
        del r["view_streamed_bytes"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"rows": rows}))
    assert calibrate_cost.main(["--from-raw", str(path)]) == 2
    assert "have no view_streamed_bytes" in capsys.readouterr().err


def test_rows_with_every_figure_are_refitted(tmp_path, capsys):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"rows": _rows()}))
    assert calibrate_cost.main(["--from-raw", str(path), "--study"]) == 0
    out = capsys.readouterr().out
    assert "ns/view_streamed_bytes" in out and "resize linear (2 cases): model 1.000 (1.00)" in out
