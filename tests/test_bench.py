"""The benchmark runs end to end in its tiny mode and reports every loss."""

from __future__ import annotations

import json

from podhl.bench import loss_variants, main


def test_bench_tiny_reports_every_loss(tmp_path):
    out = tmp_path / "bench.json"
    results = main(["--tiny", "--device", "cpu", "--out", str(out)])
    assert json.loads(out.read_text())["device"].startswith("cpu")
    names = set(loss_variants())
    assert {"softmax", "hl", "hl_every10"} <= names
    steps = {r["loss"]: r for r in results["train_step"]}
    assert set(steps) == names and steps["softmax"]["overhead"] == 0.0
    assert all(r["ms_per_step"] > 0 and r["img_per_s"] > 0 for r in steps.values())
    # HL owns C×d centers beyond softmax's classifier (HL Table IV "extra parameters")
    assert steps["hl"]["extra_params"] >= 10 * 16
    alone = results["loss_alone"]
    assert {r["classes"] for r in alone} == {10, 50}
    assert all(r["ms"] > 0 and r["saved_mb"] >= 0 for r in alone)
    assert [r["pipeline"].split()[0] for r in results["input_pipeline"]] == ["cpu_dataloader", "gpu_resident"]
