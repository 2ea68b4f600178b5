"""The benchmark runs end to end in its tiny mode, reports every loss, times them interleaved, exits 0."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from podhl.bench import interleaved, loss_variants, run


def test_bench_tiny_reports_every_loss(tmp_path):
    out = tmp_path / "bench.json"
    results = run(["--tiny", "--device", "cpu", "--threads", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert (
        saved["device"].startswith("cpu")
        and saved["machine"]["threads"] == 1
        and len(saved["machine"]["load_avg"]) == 3
    )
    names = set(loss_variants())
    assert {"softmax", "hl", "hl10"} <= names
    steps = {r["loss"]: r for r in results["train_step"]}
    assert set(steps) == names and steps["softmax"]["overhead"] == 0.0 and steps["softmax"]["overhead_iqr"] == 0.0
    assert all(r["ms_per_step"] > 0 and r["img_per_s"] > 0 for r in steps.values())
    # HL owns C×d centers beyond softmax's classifier (HL Table IV "extra parameters")
    assert steps["hl"]["extra_params"] >= 10 * 16
    alone = results["loss_alone"]
    assert {r["classes"] for r in alone} == {10, 50}
    assert all(r["ms"] > 0 and r["saved_mb"] >= 0 for r in alone)
    assert [r["pipeline"].split()[0] for r in results["input_pipeline"]] == ["cpu_dataloader", "gpu_resident"]


def test_interleaving_reports_per_round_ratios():
    calls = []
    fns = {name: (lambda n=name: calls.append(n)) for name in "abcd"}
    timed = interleaved(fns, "a", device=torch.device("cpu"), rounds=4, warmup=1)
    rounds = [tuple(calls[i : i + 4]) for i in range(0, 20, 4)]
    assert all(sorted(r) == list("abcd") for r in rounds)  # every variant once per round, warm-up included
    assert len(set(rounds)) > 1  # the order is drawn anew per round
    assert timed["a"]["ratio"] == 1.0 and timed["a"]["iqr"] == 0.0 and timed["b"]["seconds"] > 0


def test_podhl_bench_exits_0(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "podhl.bench",
            "--tiny",
            "--device",
            "cpu",
            "--sections",
            "input_pipeline",
            "--out",
            str(tmp_path / "b.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
