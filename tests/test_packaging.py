"""The wheel a user installs with `pip install .` holds every module and data file of the tree.

An editable install (the README's) reads the source tree, so it cannot catch a package the build
leaves out; this test builds the wheel and compares its file list with the tree.
"""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

pytestmark = pytest.mark.slow  # builds a wheel in a subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tree_files():
    """Every .py of the two import roots, every profile and the cost model, and cli.py."""
    wanted = {"cli.py"}
    for top in ("convrewrite", "passes"):
        for folder, _, names in os.walk(os.path.join(ROOT, top)):
            rel = os.path.relpath(folder, ROOT)
            if "__pycache__" in rel:
                continue
            wanted |= {os.path.join(rel, n).replace(os.sep, "/") for n in names
                       if n.endswith((".py", ".json"))}
    return wanted


def copy_sources(dest):
    """The files a build reads, without any build/ or egg-info a previous build left in the tree."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("pyproject.toml", "README.md", "cli.py"):
        shutil.copy(os.path.join(ROOT, name), dest)
    for top in ("convrewrite", "passes"):
        shutil.copytree(os.path.join(ROOT, top), dest / top, ignore=ignore)


def test_wheel_holds_every_module_and_data_file(tmp_path):
    src, out = tmp_path / "src", tmp_path / "dist"
    src.mkdir()
    copy_sources(src)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = [p for p in os.listdir(out) if p.endswith(".whl")]
    with zipfile.ZipFile(out / wheel) as zf:
        held = set(zf.namelist())
    missing = sorted(tree_files() - held)
    assert not missing, f"left out of the wheel: {missing}"
    assert "passes/shuffle_motion/rewrite.py" in held
