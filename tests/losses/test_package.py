"""The loss package as a library: what importing it loads, what it exports, where each loss lives."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import get_class

import podhl.losses
from conftest import REPO
from podhl.config import compose_config, config_options

GROUND_FLOOR = {"podhl", "podhl.errors", "podhl.checks", "podhl.distributed", "podhl.pedcc"}
FAMILIES = ("pod", "margin", "center", "hypersphere", "linear")


def test_importing_the_losses_loads_only_the_ground_floor():
    """A fresh interpreter: ``import podhl.losses`` (and the functional maths) pulls in no engine, data,
    models or tasks, and no Hydra: the losses work in a plain PyTorch loop."""
    code = (
        "import json, sys\n"
        "from podhl.losses import PODLoss, HypersphereLoss\n"
        "import podhl.losses.functional\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, check=True)
    modules = set(json.loads(proc.stdout))
    podhl_modules = {m for m in modules if m == "podhl" or m.startswith("podhl.")}
    outside = {m for m in podhl_modules if not m.startswith(("podhl.losses", "podhl.pedcc."))}  # pedcc: a package
    assert outside <= GROUND_FLOOR, outside - GROUND_FLOOR
    for layer in ("podhl.engine", "podhl.data", "podhl.models", "podhl.tasks", "hydra", "omegaconf"):
        assert not any(m == layer or m.startswith(layer + ".") for m in modules), layer


def test_every_loss_class_and_criterion_are_exported():
    targets = {compose_config([f"loss={name}"]).loss._target_ for name in config_options("loss")}
    for target in targets:
        cls = get_class(target)
        assert getattr(podhl.losses, cls.__name__) is cls and cls.__name__ in podhl.losses.__all__
    assert podhl.losses.Criterion is importlib.import_module("podhl.losses.base").Criterion


def test_functional_reexports_every_family_math():
    functional = importlib.import_module("podhl.losses.functional")
    for family in FAMILIES:
        math_module = importlib.import_module(f"podhl.losses.{family}.math")
        for name in math_module.__all__:
            assert getattr(functional, name) is getattr(math_module, name), (family, name)
    from podhl.losses.functional import sc_loss  # noqa: F401  (the documented import)


def _code_lines(tree: ast.Module, source: str) -> int:
    """Lines of ``source`` outside the docstrings (module, class and function ones)."""
    doc_lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            if is_doc and isinstance(first.value.value, str):
                doc_lines.update(range(first.lineno, first.end_lineno + 1))
    return len(source.splitlines()) - len(doc_lines)


@pytest.mark.parametrize("name", [n for n in config_options("loss") if "/" not in n])
def test_entry_files_are_short_and_cite_their_paper(name):
    """Each loss's entry file has ≤ 150 lines besides its docstrings (which carry the formulas and the
    sources, tests/losses/test_docstrings.py), sits in its family's folder beside a math.py, and its
    module docstring names the paper and the equations (or says why it cannot)."""
    cls = get_class(compose_config([f"loss={name}"]).loss._target_)
    path = Path(sys.modules[cls.__module__].__file__)
    assert path.parent.name in FAMILIES and (path.parent / "math.py").is_file()
    source = path.read_text()
    tree = ast.parse(source)
    assert _code_lines(tree, source) <= 150, f"{path}: {_code_lines(tree, source)} lines besides docstrings"
    doc = ast.get_docstring(tree)
    assert doc and re.search(r"\b(eqs?\.|equation)", doc), path
    assert re.search(r"\b(19|20)\d\d\b|POD|HL", doc), path  # a paper: year, or the POD/HL paper itself
