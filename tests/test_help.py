"""``--help`` of every console script: podhl-train's custom Hydra help (podhl/conf/hydra/help/podhl.yaml)
names every config group with a description and its options, and its example commands compose; the
argparse scripts explain every option."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from podhl.config import CONFIG_DIR, compose_config, config_options

GROUPS = sorted(p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__"))


@pytest.fixture(scope="module")
def train_help() -> str:
    proc = subprocess.run([sys.executable, "-m", "podhl.train", "--help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _section(text: str, title: str) -> list[str]:
    """The non-empty lines after ``== title ==`` up to the next section."""
    body = text.split(f"== {title} ==\n", 1)[1]
    return [line for line in body.split("\n== ", 1)[0].splitlines() if line.strip()]


def test_train_help_describes_every_config_group(train_help):
    assert "podhl-train: train an image classifier" in train_help
    assert "is powered by Hydra" not in train_help  # Hydra's generic screen is replaced
    described = {line.split()[0] for line in _section(train_help, "Config groups (GROUP=OPTION)")}
    assert described == set(GROUPS)  # one description line per group of podhl/conf, no stale ones
    listed = {line.split(":")[0]: line.split(":", 1)[1] for line in _section(train_help, "Options of each group")}
    for group in GROUPS:  # every option of every group, as generated from the config folders
        for option in config_options(group):
            parent, _, name = f"{group}/{option}".rpartition("/")
            assert re.search(rf"(^|, ){re.escape(name)}(,|$)", listed[parent].strip()), (group, option)


def test_train_help_examples_compose(train_help):
    examples = [line for line in _section(train_help, "Examples") if line.startswith("podhl-train ")]
    assert len(examples) >= 5
    for line in examples:
        args = shlex.split(line.split("#")[0])[1:]
        # a sweep composes like its first job: drop -m and take the first value of each comma list
        overrides = [a.split(",")[0] if "=" in a and "[" not in a else a for a in args if a != "-m"]
        cfg = compose_config(overrides)
        for override in overrides:
            key, value = override.split("=", 1)
            if not key.startswith("hydra.") and "." in key:
                node = cfg
                for part in key.split("."):
                    node = node[part]
                assert str(node).lower() == value.lower(), (line, key, node)


def test_train_help_shows_inspection_and_completion(train_help):
    inspect = "\n".join(_section(train_help, "Inspect and complete"))
    assert "--cfg job -p loss" in inspect and "-sc install=bash" in inspect and "$(" in inspect


def test_cfg_job_package_prints_one_group():
    proc = subprocess.run(
        [sys.executable, "-m", "podhl.train", "loss=pod", "--cfg", "job", "-p", "loss"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "_target_: podhl.losses.pod.pod.PODLoss" in proc.stdout and "trainer" not in proc.stdout


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from podhl import bench, evaluate
    from podhl.pedcc import cli as pedcc_cli
    from podhl.runs import tables

    return {
        "podhl-bench": bench.build_parser(),
        "podhl-tables": tables.build_parser(),
        "podhl-pedcc": pedcc_cli.build_parser(),
        "podhl-eval": evaluate.build_parser(),
    }


@pytest.mark.parametrize("script", ["podhl-bench", "podhl-tables", "podhl-pedcc", "podhl-eval"])
def test_every_option_has_help(script, capsys):
    parser = _parsers()[script]
    assert parser.prog == script and parser.description
    for action in parser._actions:
        assert action.help and action.help != argparse.SUPPRESS, (script, action.dest)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    for action in parser._actions:  # every option is on the help screen with (the start of) its explanation
        assert (action.option_strings[-1] if action.option_strings else action.dest) in shown
        assert " ".join(action.help.split()[:2]) in " ".join(shown.split()), (script, action.dest)
