"""What the podhl loop costs over a hand-written one (a benchmark, not a test).

Three ways to train the same model on the same batches, timed interleaved (``podhl.bench.interleaved``:
each round runs every variant over ``--batches`` batches in a random order; ratios are per round):

* ``trainer``: podhl's loop (``Trainer._train_epoch``: task, criterion hooks, on-device statistics, NaN
  checks, TensorBoard step scalars off, no progress bar);
* ``minimal``: ``for x, y in loader: zero_grad; loss = criterion(model(x), y)["loss"]; backward; step``
  with the same loader, model, criterion and optimizer settings;
* ``floor``: the minimal loop over batches already in memory (no loader at all).

    python scripts/bench_trainer_overhead.py --threads 1                 # MNIST small_cnn and CIFAR-shaped ResNet18
    python scripts/bench_trainer_overhead.py --cases mnist --data-root ../shared/data

MNIST is read from ``--data-root`` (torchvision layout); without it the digits set stands in. The
ResNet18 case uses SYNTHETIC CIFAR-shaped images (a speed test only).
"""

from __future__ import annotations

import argparse
import copy
import itertools
from pathlib import Path

import torch

from podhl.bench import interleaved, machine
from podhl.config import compose_run, run_names
from podhl.engine.trainer import Trainer
from podhl.tasks.stats import EpochStats

CASES = {
    "mnist": ["dataset=mnist", "backbone=small_cnn", "schedule.batch_size=128"],
    "resnet18": [
        "dataset=synthetic",
        "dataset.train_size=2048",
        "dataset.test_size=64",
        "backbone=resnet18",
        "schedule.batch_size=32",
    ],
}


def variants(overrides: list[str], batches: int, tmp: Path):
    cfg, choices = compose_run(
        [
            *overrides,
            "trainer.device=cpu",
            "trainer.progress=false",
            "trainer.save_checkpoints=false",
            f"trainer.limit_train_batches={batches}",
            "trainer.log_every_n_steps=1000000",
        ]
    )
    trainer = Trainer.from_config(cfg, tmp, run_names(cfg, choices))
    loader = trainer.task.train_batches()
    device = trainer.runtime.device

    def plain(source):
        model, criterion = copy.deepcopy(trainer.model), copy.deepcopy(trainer.criterion)
        opt = torch.optim.SGD(list(model.parameters()) + list(criterion.parameters()), lr=0.01, momentum=0.9)

        def go():
            for x, y in itertools.islice(source(), batches):
                opt.zero_grad(set_to_none=True)
                criterion(model(x.to(device)).float(), y.to(device))["loss"].backward()
                opt.step()

        return go

    preloaded = [(x.to(device), y.to(device)) for x, y in itertools.islice(iter(loader), batches)]
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    return {
        "trainer": lambda: trainer._train_epoch(1, EpochStats(device), 0, lr),
        "minimal": plain(lambda: iter(loader)),
        "floor": plain(lambda: iter(preloaded)),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--batches", type=int, default=20, help="batches per variant per round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-root", default=None, help="folder holding MNIST/ (else digits stands in)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {machine()}")
    for case in args.cases:
        overrides = list(CASES[case])
        if case == "mnist":
            overrides = (
                overrides + [f"dataset.root={args.data_root}"]
                if args.data_root
                else ["backbone=small_cnn", "schedule.batch_size=64"]
            )
        timed = interleaved(
            variants(overrides, args.batches, Path("outputs/bench_overhead") / case),
            "minimal",
            torch.device("cpu"),
            args.rounds,
            warmup=1,
        )
        label = case if case != "mnist" or args.data_root else "digits (MNIST not given)"
        print(
            f"\n{label}: {args.batches} batches per round, {args.rounds} rounds, median ratio to the minimal loop (IQR)"
        )
        for name, t in timed.items():
            print(
                f"  {name:8s} {t['seconds']:.3f} s   ×{t['ratio']:.3f} (IQR {t['iqr']:.3f})   "
                f"throughput vs minimal {1 / t['ratio']:.1%}"
            )
    print(f"\nload after: {machine()['load_avg']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
