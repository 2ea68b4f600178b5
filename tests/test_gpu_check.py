"""``scripts/gpu_check.sh`` (issue 23), the one script a session lent a GPU runs: its CPU dry run
(``GPU_CHECK_DRY=1``: tiny sizes, gloo) goes through every step and prints the whole table, so a lent GPU's
minutes are not lost to a broken script."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_prints_every_row(tmp_path):
    env = {**os.environ, "GPU_CHECK_DRY": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), str(tmp_path / "out")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for label in ("| fp32 |", "| bf16 |", "| bf16 + channels_last |"):
        assert label in out, out
    assert "step vs softmax (bf16, CL) | hl |" in out and "step vs softmax (bf16, CL) | arc |" in out
    assert "| input pipeline | gpu_resident" in out
    assert "| loss alone, C = 50 | hl |" in out
    assert "| 1-process DDP (podhl-train, 1 synthetic epoch) | torchrun | ok," in out
    assert (tmp_path / "out" / "ddp_run" / "metrics.json").is_file()
