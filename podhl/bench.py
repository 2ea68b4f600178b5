"""``podhl-bench``: speed and cost of every loss, measured in one run on the current device.

Sections (all in one process, so ratios compare like with like):

* ``train_step``: a full training step (forward, loss, backward, optimizer step, loss hooks, as the
  loop runs them) of a backbone on CIFAR-shaped inputs for every loss: images/s, ms/step, the loss'
  overhead over softmax, its extra parameters/buffers, extra FLOPs per step and peak memory (HL paper
  Table IV columns). FLOPs are torch's FlopCounterMode count of the loss' forward+backward: matrix
  products and convolutions only (element-wise work is not counted).
* ``loss_alone``: forward+backward of the loss alone at B=256, d=512 for C = 10, 200, 1000, 10,575,
  against a linear layer + cross-entropy; memory as bytes saved for backward (and CUDA peak on GPU).

Timing is interleaved: every round runs each variant once, in a fresh random order, and a variant's
cost is reported as the median over rounds of its time divided by the reference's time *in the same
round* (softmax; linear + CE for the loss alone), with the interquartile range of those ratios. A slow
spell of a shared machine then moves a round, not a variant. Threads and the load average are recorded.
* ``input_pipeline``: CPU DataLoader (PIL crop/flip, workers) vs the GPU-resident loader, on
  SYNTHETIC uint8 CIFAR-shaped tensors (labelled as such: a speed test, not a dataset).

``--tiny`` shrinks everything for the test suite. Results print as tables and save as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms as T

from podhl.config import compose_config, config_options
from podhl.data.gpu_loader import GpuResidentLoader, ResidentArrays
from podhl.engine.validate import resolve_device
from podhl.models import build_model

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def loss_variants(only: list[str] | None = None) -> dict[str, list[str]]:
    """name -> overrides: every top-level loss preset (hl10 is HL Table IV's HL(10)), or those named in
    ``only`` (``--losses``; softmax, the reference, always); softmax first."""
    names = [n for n in config_options("loss") if "/" not in n]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise SystemExit(f"podhl-bench: unknown --losses {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        names = sorted({"softmax", *only})
    return {n: [f"loss={n}"] for n in sorted(names, key=lambda n: (n != "softmax", n))}


def interleaved(
    fns: dict[str, object], reference: str, device, rounds: int, warmup: int, seed: int = 0
) -> dict[str, dict]:
    """Time each callable once per round, in a random order per round; per variant: median seconds and
    the median and IQR over rounds of (its time / the reference's time in the same round)."""
    rng = np.random.default_rng(seed)
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        for i in rng.permutation(len(names)):
            _sync(device)
            t0 = time.perf_counter()
            fns[names[i]]()
            _sync(device)
            if r >= warmup:
                times[names[i]].append(time.perf_counter() - t0)
    ref = np.array(times[reference])
    out = {}
    for n in names:
        ratios = np.array(times[n]) / ref
        q25, q50, q75 = np.percentile(ratios, [25, 50, 75])
        out[n] = {"seconds": float(np.median(times[n])), "ratio": float(q50), "iqr": float(q75 - q25)}
    return out


def machine() -> dict:
    import os

    return {
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _saved_bytes():
    """Count bytes of tensors autograd saves for backward inside the block."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield total


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _state_size(module: torch.nn.Module) -> int:
    return sum(t.numel() for t in list(module.parameters()) + list(module.buffers()))


def _activate(criterion) -> None:
    """Put stateful losses in their steady state (past warm starts) before measuring."""
    criterion.on_epoch_start(100)


def _loop_step(model, criterion, optimizers, x, y, amp, device):
    """One training step as the loop runs it (criterion protocol hooks included), for timing."""

    def step():
        for k in range(criterion.steps_per_batch):
            optimizers[k].zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                feats = model(x)
            feats = feats.float()
            extra = {}
            if criterion.needs_prepared_batch():
                extra = {"prepared": criterion.prepare_batch(feats.detach(), y, k)}
            criterion(feats, y, step=k, **extra)["loss"].backward()
            optimizers[k].step()
            with torch.no_grad():
                criterion.after_optimizer_step(feats.detach(), y, k, **extra)

    return step


def bench_train_step(args, device) -> list[dict]:
    size, amp = args.image_size, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    steps, info = {}, {}
    for name, overrides in loss_variants(args.losses).items():
        cfg = compose_config(
            [
                f"backbone={args.backbone}",
                "dataset=synthetic",
                f"dataset.image_size={size}",
                f"dataset.num_classes={args.num_classes}",
                f"model.feat_dim={args.feat_dim}",
                *overrides,
            ]
        )
        torch.manual_seed(0)
        model = build_model(cfg.backbone, cfg.model, 3, size).to(device)
        criterion = instantiate(cfg.loss, num_classes=args.num_classes, feat_dim=model.feat_dim).to(device)
        _activate(criterion)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        fwd = torch.compile(model) if args.compile else model
        params = list(model.parameters()) + [p for g in criterion.param_groups() for p in g["params"]]
        opts = [torch.optim.SGD(params, lr=1e-3, momentum=0.9) for _ in range(criterion.steps_per_batch)]
        x = torch.randn(args.batch, 3, size, size, device=device)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, args.num_classes, (args.batch,), device=device)
        steps[name] = _loop_step(fwd, criterion, opts, x, y, amp, device)
        feats = torch.randn(args.batch, model.feat_dim, device=device, requires_grad=True)
        flops = _flops(
            lambda crit=criterion, f=feats, y=y: sum(
                crit(f, y, step=k)["loss"] for k in range(crit.steps_per_batch)
            ).backward()
        )
        info[name] = {"loss_state": _state_size(criterion), "loss_flops": flops}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timed = interleaved(steps, "softmax", device, args.steps, args.warmup)
    base = info["softmax"]
    return [
        {
            "loss": n,
            "ms_per_step": 1e3 * t["seconds"],
            "img_per_s": args.batch / t["seconds"],
            "overhead": t["ratio"] - 1.0,
            "overhead_iqr": t["iqr"],
            "extra_params": info[n]["loss_state"] - base["loss_state"],
            "extra_flops": info[n]["loss_flops"] - base["loss_flops"],
        }
        for n, t in timed.items()
    ]


def bench_loss_alone(args, device) -> list[dict]:
    rows = []
    for c in args.classes:
        y = torch.randint(0, c, (args.loss_batch,), device=device)
        baseline = torch.nn.Linear(args.loss_dim, c).to(device)
        losses = {"linear+ce": lambda f, baseline=baseline, y=y: F.cross_entropy(baseline(f), y)}
        for name, overrides in loss_variants(args.losses).items():
            criterion = instantiate(compose_config(overrides).loss, num_classes=c, feat_dim=args.loss_dim).to(device)
            _activate(criterion)
            losses[name] = lambda f, crit=criterion, y=y: sum(
                crit(f, y, step=k)["loss"] for k in range(crit.steps_per_batch)
            )
        feats = torch.randn(args.loss_batch, args.loss_dim, device=device, requires_grad=True)

        def run(fn, feats=feats):
            def go():
                feats.grad = None
                fn(feats).backward()

            return go

        timed = interleaved({n: run(fn) for n, fn in losses.items()}, "linear+ce", device, args.steps, args.warmup)
        for name, fn in losses.items():
            with _saved_bytes() as saved:
                fn(feats)
            peak = _cuda_peak_extra_mb(run(fn), device)
            rows.append(
                {
                    "classes": c,
                    "loss": name,
                    "ms": 1e3 * timed[name]["seconds"],
                    "vs_linear_ce": timed[name]["ratio"],
                    "iqr": timed[name]["iqr"],
                    "saved_mb": saved[0] / 2**20,
                    **({"cuda_peak_extra_mb": peak} if peak is not None else {}),
                }
            )
    return rows


def _cuda_peak_extra_mb(step, device) -> float | None:
    """Peak CUDA memory of one forward+backward above what was allocated before it (MB); None off CUDA."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


class _SyntheticCifar(Dataset):
    """SYNTHETIC uint8 CIFAR-shaped images through the real CPU CIFAR transforms (PIL crop/flip)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.tf = T.Compose(
            [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.tf(Image.fromarray(self.images[i])), int(self.labels[i])


def bench_input_pipeline(args, device) -> list[dict]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.pipeline_images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.pipeline_images)
    rows = []
    loader = DataLoader(
        _SyntheticCifar(images, labels),
        batch_size=args.batch,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=args.workers > 0,
    )
    for _ in loader:  # warm-up (workers start)
        break
    t0 = time.perf_counter()
    n = 0
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        n += len(y)
    _sync(device)
    rows.append({"pipeline": f"cpu_dataloader ({args.workers} workers)", "img_per_s": n / (time.perf_counter() - t0)})
    arrays = ResidentArrays(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(labels),
        CIFAR_MEAN,
        CIFAR_STD,
        pad=4,
        flip=True,
    )
    sampler = torch.utils.data.RandomSampler(range(args.pipeline_images))
    resident = GpuResidentLoader(arrays, args.batch, sampler, device, augment=True)
    for _ in resident:
        break
    t0 = time.perf_counter()
    n = sum(len(y) for _, y in resident)
    _sync(device)
    rows.append({"pipeline": f"gpu_resident (on {device.type})", "img_per_s": n / (time.perf_counter() - t0)})
    return rows


def _table(rows: list[dict]) -> str:
    keys = list(rows[0])

    def fmt(v):
        return "—" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


class _DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Help lines end with "(default: ...)", except for flags and unset options."""

    def _get_help_string(self, action):
        return action.help if action.default in (None, False) else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="podhl-bench",
        formatter_class=_DefaultsShown,
        description="Speed and cost of every loss, measured in one run on the current device; prints tables and "
        "saves them as JSON (exit status 0).",
        epilog="Sections: train_step (a backbone's full training step for every loss), loss_alone (each loss's "
        "forward+backward vs linear+CE), input_pipeline (CPU DataLoader vs the GPU-resident loader on "
        "SYNTHETIC CIFAR-shaped images). Example: podhl-bench --device cpu --threads 1 --sections loss_alone "
        "--steps 15 --warmup 2",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, else CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--backbone", default="resnet18", help="train_step: a backbone config name (podhl/conf/backbone)")
    p.add_argument("--batch", type=int, default=256, help="train_step and input_pipeline: images per step")
    p.add_argument(
        "--image-size", type=int, default=32, help="train_step: side of the square SYNTHETIC input images (px)"
    )
    p.add_argument("--num-classes", type=int, default=10, help="train_step: classes the criterion scores")
    p.add_argument("--feat-dim", type=int, default=512, help="train_step: latent dimension d (model.feat_dim)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="train_step: autocast the model (losses always compute in fp32)",
    )
    p.add_argument("--channels-last", action="store_true", help="train_step: NHWC memory format for model and inputs")
    p.add_argument("--compile", action="store_true", help="train_step: torch.compile the model")
    p.add_argument(
        "--steps", type=int, default=20, help="timed rounds per section (each round runs every variant once)"
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed rounds before the timed ones")
    p.add_argument(
        "--classes",
        type=int,
        nargs="+",
        default=[10, 200, 1000, 10575],
        help="loss_alone: the class counts C to measure",
    )
    p.add_argument(
        "--losses", nargs="+", default=None, help="train_step and loss_alone: only these loss configs (and softmax)"
    )
    p.add_argument("--loss-batch", type=int, default=256, help="loss_alone: batch size B of the random features")
    p.add_argument("--loss-dim", type=int, default=512, help="loss_alone: feature dimension d")
    p.add_argument("--pipeline-images", type=int, default=20000, help="input_pipeline: SYNTHETIC images to load")
    p.add_argument("--workers", type=int, default=4, help="input_pipeline: CPU DataLoader worker processes")
    p.add_argument(
        "--sections",
        nargs="+",
        default=["train_step", "loss_alone", "input_pipeline"],
        choices=["train_step", "loss_alone", "input_pipeline"],
        help="which sections to run, in this order",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads, set before any work (default: torch's choice)"
    )
    p.add_argument("--tiny", action="store_true", help="seconds-long smoke run (test suite): overrides the sizes above")
    p.add_argument("--out", type=Path, default=Path("outputs/bench.json"), help="where the results are saved as JSON")
    return p


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if args.tiny:
        args.backbone, args.batch, args.image_size, args.feat_dim = "small_cnn", 8, 8, 16
        args.steps, args.warmup, args.classes, args.loss_batch, args.loss_dim = 2, 0, [10, 50], 16, 16
        args.pipeline_images, args.workers = 64, 0
    return args


def run(argv=None) -> dict:
    """Run the sections; returns (and saves) the results."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True
    sections = {"train_step": bench_train_step, "loss_alone": bench_loss_alone, "input_pipeline": bench_input_pipeline}
    results = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    for name in args.sections:
        results[name] = sections[name](args, device)
        print(f"\n## {name} on {results['device']}\n{_table(results[name])}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    results["machine_after"] = machine()
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\n{results['machine']} → load after {results['machine_after']['load_avg']}\nsaved {args.out}")
    return results


def main(argv=None) -> int:
    """``podhl-bench``: exit status 0 on success."""
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
