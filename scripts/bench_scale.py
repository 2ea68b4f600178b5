#!/usr/bin/env python
"""Face-recognition scale: time and memory of one training step of each loss alone at large C (issue 23).

    OMP_NUM_THREADS=1 python scripts/bench_scale.py                          # C = 10,575 and 100,000
    OMP_NUM_THREADS=1 python scripts/bench_scale.py --classes 100000 --losses softmax arc hl --out scale.json

Every (loss, C) runs ``scripts/bench_er.py --protocol`` in a fresh child process (prepare_batch → forward →
backward → after_optimizer_step on random features, B = 256, d = 512): ``ms`` (median over ``--steps``),
``saved_mb`` (tensors saved for backward) and ``peak_extra_mb`` (the child's peak resident memory during one step
minus its resident memory before: everything the step allocates at once). A markdown table is printed;
``--out`` keeps the rows as JSON. ``er`` runs with ``loss.refresh_every=100`` (its exact neighbour search is
O(C²d): ~277 s a step at 100,000 on one thread) unless ``--er-exact``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOSSES = ["softmax", "arc", "am", "cm", "mml", "asl", "magface", "hl", "hl_official", "center", "ccl", "pod", "er"]


def measure(loss: str, classes: int, args) -> dict:
    overrides = ["loss.refresh_every=100"] if loss == "er" and not args.er_exact else []
    cmd = [sys.executable, str(HERE / "bench_er.py"), "--child", "--protocol", "--loss", loss]
    cmd += ["--classes", str(classes), "--steps", str(args.steps), "--warmup", str(args.warmup), *overrides]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        return {"loss": loss, "classes": classes, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, nargs="+", default=[10575, 100000])
    p.add_argument("--losses", nargs="+", default=LOSSES)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--er-exact", action="store_true", help="er with its neighbour search every step")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    rows = []
    print("| loss | C | ms | saved MB | peak extra MB |\n|---|---|---|---|---|", flush=True)
    for classes in args.classes:
        for loss in args.losses:
            r = measure(loss, classes, args)
            rows.append(r)
            if "error" in r:
                print(f"| {loss} | {classes:,} | error: {r['error']} | | |", flush=True)
            else:
                name = loss + (" (refresh_every=100)" if r.get("overrides") else "")
                print(
                    f"| {name} | {classes:,} | {r['ms']:.0f} | {r['saved_mb']:.0f} | {r['peak_extra_mb']:.0f} |",
                    flush=True,
                )
    load = os.getloadavg()
    print(f"\nthreads {rows[0].get('threads') if rows else '?'}, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "load_avg": load}, indent=2))


if __name__ == "__main__":
    main()
