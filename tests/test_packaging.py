"""Packaging: one version everywhere it is written, the files a library user expects, and the run-folder
lock degrading to a warning where ``fcntl`` is missing (Windows)."""

from __future__ import annotations

import re

import pytest
import yaml

import podhl
from conftest import REPO
from podhl.engine import run_folder

tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads TOML")  # requires-python allows 3.10


def test_one_version_source():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "podhl.__version__"}
    assert yaml.safe_load((REPO / "CITATION.cff").read_text())["version"] == podhl.__version__
    releases = re.findall(r"^## \[(\d[^\]]*)\]", (REPO / "CHANGELOG.md").read_text(), flags=re.M)
    assert releases[0] == podhl.__version__  # the newest release in the changelog


def test_license_citation_and_typing_marker():
    license_text = (REPO / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "Copyright (c) 2026 the podhl authors" in license_text
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT" and project["project"]["license-files"] == ["LICENSE"]
    assert (REPO / "podhl" / "py.typed").is_file()
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["podhl"]
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    titles = [ref["title"] for ref in cff["references"]]
    assert any(t.startswith("A Softmax-free Loss Function") for t in titles)
    assert "Image Classification on Hypersphere Loss" in titles


def test_without_fcntl_the_run_folder_warns_and_runs_unlocked(monkeypatch, tmp_path):
    monkeypatch.setattr(run_folder, "fcntl", None)
    first, second = run_folder.RunFolder(tmp_path), run_folder.RunFolder(tmp_path)
    with pytest.warns(RuntimeWarning, match="no run-folder lock"):
        assert first.claim(False, False, {}) is False
    with pytest.warns(RuntimeWarning):
        second.claim(False, False, {})  # not refused: nothing can lock here
    first.release(), second.release()
