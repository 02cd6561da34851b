"""The HTML report: a section per record, drawings of each rewrite, no
external resource; and, where Chromium is installed, the page in a real
browser: it loads with no script error, the filters ran, the screenshot is
not blank."""
from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from convrewrite import optimize, write_html
from convrewrite.core.html import render_report
from convrewrite.core.sketch import Sketch, SketchNode
from convrewrite.core.svg import layers
from toy_passes import ReluToIdentity, ReluToMax

MODELS = Path(__file__).resolve().parents[2] / "models"


class _Page(HTMLParser):
    """Sections (their data- attributes), svgs per section, and every URL the page would fetch."""

    def __init__(self):
        super().__init__()
        self.sections, self.svgs, self.fetches, self._current = [], {}, [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._current = a.get("id")
            self.sections.append(a)
        if tag == "svg":
            self.svgs[self._current] = self.svgs.get(self._current, 0) + 1
        for key in ("src", "href"):
            if key in a and not a[key].startswith("#"):
                self.fetches.append(a[key])
        if tag == "link":
            self.fetches.append(a.get("href"))


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def test_a_section_per_record_with_both_drawings_of_each_rewrite():
    _, report = optimize(MODELS / "all_three.onnx", sketches=True)
    page = parse(render_report(report))
    assert [(s["data-node"], s["data-status"], s["data-pass"]) for s in page.sections] == \
        [(r.node, r.status, r.pass_name) for r in report.rewrites]
    assert all(page.svgs.get(s["id"]) == 2 for s in page.sections)  # original and replacement
    assert page.fetches == []  # self-contained: opens from disk with no network


def _relu_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"), helper.make_node("Relu", ["a"], ["y"], name="keep_r2")]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])


def test_skips_and_rollbacks_say_why():
    _, kept = optimize(_relu_model(), passes=[ReluToMax()], sketches=True)
    _, rolled = optimize(_relu_model(), passes=[ReluToIdentity()], sketches=True)
    html = render_report(kept) + render_report(rolled)
    page = parse(html)
    assert [s["data-status"] for s in page.sections] == ["rewritten", "skipped", "rolled_back", "skipped"]
    assert "name starts with keep" in html and "unsupported-attribute" in html
    assert "local check failed" in html and "verification-failed" in html


def test_the_operator_table_shows_each_count_under_its_operator():
    """An op type may hold a space (a custom domain's "My Op"): the table's
    cells were the summary's text split at spaces, which showed "My" | "Op" |
    1 -- the count before under "before" as "Op" and the count after as the
    count before."""
    from convrewrite.core.report import Report

    report = Report(passes=["p"], op_counts_before={"My Op": 2, "Conv": 1}, op_counts_after={"My Op": 2, "Conv": 3})
    html = render_report(report)
    assert "<tr><td>My Op</td><td>2</td><td>2</td></tr>" in html
    assert "<tr><td>Conv</td><td>1</td><td>3</td></tr>" in html


def test_layers_follow_the_data():
    s = Sketch([SketchNode("a", "Conv"), SketchNode("b", "Relu"), SketchNode("c", "Add"), SketchNode("in:x", "x")],
               [("in:x", "a", ""), ("a", "b", ""), ("b", "c", ""), ("in:x", "c", "")])
    assert layers(s) == {"in:x": 0, "a": 1, "b": 2, "c": 3}


# --- in a real browser --------------------------------------------------------------

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _png_pixels(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB(A) PNG (what Chromium writes) into an array."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    rows, prev = [], np.zeros(width * channels, np.int32)
    for line in raw:
        kind, row = line[0], line[1:].astype(np.int32)
        if kind == 1:      # Sub: a running sum per channel
            row = np.cumsum(row.reshape(width, channels), axis=0).reshape(-1) % 256
        elif kind == 2:    # Up
            row = (row + prev) % 256
        elif kind in (3, 4):  # Average, Paeth: byte by byte
            out = row.copy()
            for i in range(len(out)):
                left = out[i - channels] if i >= channels else 0
                up, corner = prev[i], prev[i - channels] if i >= channels else 0
                if kind == 3:
                    out[i] = (out[i] + (left + up) // 2) % 256
                else:
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                    out[i] = (out[i] + pred) % 256
            row = out
        rows.append(row)
        prev = row
    return np.array(rows, np.uint8).reshape(height, width, channels)


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)")
def test_the_page_in_a_real_browser(tmp_path):
    _, report = optimize(MODELS / "deeplab_aspp.onnx", sketches=True)
    page = tmp_path / "report.html"
    write_html(report, page)
    run = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                          "--v=0", "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert not [c for c in console if "Uncaught" in c or "Error" in c], console
    assert f"{len(report.rewrites)} shown" in run.stdout  # the filter script ran over every record
    assert run.stdout.count('class="record"') == len(report.rewrites)
    shot = tmp_path / "shot.png"
    subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=900,700", f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   timeout=120, cwd=tmp_path)
    pixels = _png_pixels(shot)[..., :3]
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert pixels.std() > 20 and colours > 50, (pixels.std(), colours)   # text, tables, a coloured header


def test_check_target_page_lists_the_misfits_and_no_records(tmp_path):
    import subprocess
    import sys

    page = tmp_path / "t.html"
    cli = Path(__file__).resolve().parents[2] / "cli.py"
    run = subprocess.run([sys.executable, str(cli), "check-target", str(MODELS / "deeplab_aspp.onnx"),
                          "--target", "generic-npu", "--html", str(page)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    html = page.read_text()
    parsed = parse(html)
    assert parsed.sections == [] and parsed.fetches == []
    assert html.count("operators.Conv.dilations") == 7 and "8 node(s) do not fit" in html
