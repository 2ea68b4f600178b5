"""Benchmark building a POD-family criterion at 100k–1M classes on CPU (not a test): time, peak memory,
tensors held, disk cache written; each case in a fresh process.

    python scripts/bench_pod_scale.py --threads 1                         # k = 100,000 and 1,000,000, n = 512
    python scripts/bench_pod_scale.py --threads 1 --cases 100000x512 --loss nac

Each case builds ``loss(num_classes=k, feat_dim=n)`` with an empty ``PODHL_CACHE_DIR`` (as on a fresh
machine) and prints the build time, the process's peak resident memory above the import baseline
(``ru_maxrss``), the bytes of the criterion's tensors (buffers, and the normalized copy that versions
before issue 23 cached next to them) and of the files written to the PEDCC cache. The load average is
printed with each case: the machine is shared, so timings carry noise. For ``podhl-pedcc`` itself:
``/usr/bin/time -v podhl-pedcc 1000000 512 --threads 1``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from procstat import load_text

_CASE = r"""
import os, pathlib, resource, sys, tempfile, time, warnings
warnings.simplefilter("ignore")
import torch
torch.set_num_threads(int(sys.argv[4]))
k, n, loss = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cache = tempfile.mkdtemp()
os.environ["PODHL_CACHE_DIR"] = cache
from podhl import losses
cls = {"pod": losses.PODLoss, "nac": losses.NaCLoss, "cosine": losses.CosineLoss, "pedcc": losses.PEDCCLoss}[loss]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
crit = cls(k, n)
crit.unit_pedcc  # the normalized centroids the losses use
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
held = sum(b.numel() * b.element_size() for b in crit.buffers())
old = getattr(crit, "_unit_cache", None)  # before issue 23: a second, normalized copy
if old is not None and old[2] is not crit.pedcc:
    held += old[2].numel() * old[2].element_size()
written = sum(p.stat().st_size for p in pathlib.Path(cache).rglob("*") if p.is_file())
print(f"{seconds:.2f} {(peak - base) / 1024:.0f} {held / 1e6:.0f} {written / 1e6:.0f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["100000x512", "1000000x512"], help="k x n pairs")
    parser.add_argument("--loss", choices=("pod", "nac", "cosine", "pedcc"), default="pod")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each case (default 1)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case (default 900)")
    args = parser.parse_args()
    print(f"loss={args.loss}, {args.threads} threads, {os.cpu_count()} CPUs, {load_text()}")
    print("| k | n | build s | peak MB above import | tensors held MB | cache written MB | load |")
    print("|---|---|---|---|---|---|---|")
    for case in args.cases:
        k, n = (int(v) for v in case.lower().split("x"))
        cmd = [sys.executable, "-c", _CASE, str(k), str(n), args.loss, str(args.threads)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
            out = proc.stdout.split() if proc.returncode == 0 else ["failed:", proc.stderr.strip().splitlines()[-1]]
        except subprocess.TimeoutExpired:
            out = [f"over {args.timeout:g} s"]
        print(f"| {k:,} | {n} | {' | '.join(out)} | {load_text()} |", flush=True)


if __name__ == "__main__":
    main()
