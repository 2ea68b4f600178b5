"""Step time of the face-verification task (HL Table VII): SphereFace-20 on 112×96 faces, d = 512, C = 10,572.

    python scripts/bench_verification.py                       # CPU defaults: batch 32, softmax / hl / arc
    python scripts/bench_verification.py --device cuda --batch 256 --precision bf16 --channels-last
    python scripts/bench_verification.py --losses softmax,hl,arc,er,center --steps 20

Inputs are SYNTHETIC: random uint8 112×96 images with random labels, already on the device (so the
numbers are the model + loss + optimizer step, no JPEG decoding). One training step is what the
trainer does (podhl/engine/trainer.py): forward, ``prepare_batch`` when the loss asks, the loss,
backward, SGD step (schedule=sphereface), ``after_optimizer_step``. Each loss is timed in the state
where all of its terms are active: HL after its softmax warm-up (its centers then update every
step), center loss with its centers. Also measured: embedding throughput of the evaluation (with
flip fusion: 2 forward images per image) and the 10-fold metrics on 6,000 synthetic pairs.
Results print as a table and go to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate

from podhl.config import compose_config
from podhl.engine.optim import build_optimizer, param_groups
from podhl.engine.validate import resolve_device
from podhl.models import build_model
from podhl.tasks.verification_metrics import verification_metrics


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, device, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_loss(loss: str, args, device: torch.device, images: torch.Tensor, labels: torch.Tensor) -> dict:
    cfg = compose_config(["experiment=hl_table7", f"loss={loss}"])
    torch.manual_seed(0)
    model = build_model(cfg.backbone, cfg.model, 3, tuple(args.image_size)).to(device)
    criterion = instantiate(cfg.loss, num_classes=args.classes, feat_dim=model.feat_dim).to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.schedule, param_groups(model, criterion))
    epoch = int(getattr(criterion, "warmup_epochs", 0) or 0) + 1  # past any warm-up: every term active
    criterion.on_epoch_start(epoch)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    x = images.contiguous(memory_format=torch.channels_last) if args.channels_last else images

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp) if amp else torch.autocast(device.type, enabled=False):
            features = model(x).float()
        kw = (
            {"prepared": criterion.prepare_batch(features.detach(), labels, 0)}
            if criterion.needs_prepared_batch()
            else {}
        )
        criterion(features, labels, step=0, **kw)["loss"].backward()
        optimizer.step()
        with torch.no_grad():
            criterion.after_optimizer_step(features.detach(), labels, 0, **kw)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = _median_time(step, device, args.steps, args.warmup)
    row = {
        "loss": loss,
        "ms_per_step": 1000 * seconds,
        "images_per_s": len(labels) / seconds,
        "model_params": sum(p.numel() for p in model.parameters()),
        "loss_params_and_buffers": sum(t.numel() for t in [*criterion.parameters(), *criterion.buffers()]),
    }
    if device.type == "cuda":
        row["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


@torch.no_grad()
def bench_eval(args, device: torch.device) -> dict:
    cfg = compose_config(["experiment=hl_table7"])
    model = build_model(cfg.backbone, cfg.model, 3, tuple(args.image_size)).to(device).eval()
    x = torch.randn(args.batch, 3, *args.image_size, device=device)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)

    def embed():
        with torch.autocast(device.type, dtype=amp) if amp else torch.autocast(device.type, enabled=False):
            f = model(torch.cat([x, x.flip(-1)]))
        return f[: len(x)] + f[len(x) :]

    seconds = _median_time(embed, device, max(args.steps // 2, 1), 1)
    rng = np.random.default_rng(0)
    same = np.arange(6000) % 2 == 0
    scores = rng.normal(same * 0.6, 0.2)
    t = time.perf_counter()
    verification_metrics(scores, same)
    return {
        "embed_images_per_s_with_flip": args.batch / seconds,
        "ten_fold_metrics_s_6000_pairs": time.perf_counter() - t,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=None, help="default: 256 on CUDA (the schedule's), 32 elsewhere")
    parser.add_argument("--losses", default="softmax,hl,arc")
    parser.add_argument(
        "--classes", type=int, default=10572, help="CASIA-WebFace in insightface's pack (HL Table I: 10,575)"
    )
    parser.add_argument("--image-size", type=int, nargs=2, default=[112, 96])
    parser.add_argument("--steps", type=int, default=None, help="timed steps (median); default 20 on CUDA, 5 elsewhere")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="outputs/bench_verification.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.batch = args.batch or (256 if device.type == "cuda" else 32)
    args.steps = args.steps or (20 if device.type == "cuda" else 5)
    g = torch.Generator().manual_seed(0)
    images = ((torch.randint(0, 256, (args.batch, 3, *args.image_size), generator=g).float() - 127.5) / 128).to(device)
    labels = torch.randint(0, args.classes, (args.batch,), generator=g).to(device)
    rows = [bench_loss(loss, args, device, images, labels) for loss in args.losses.split(",")]
    base = next((r["ms_per_step"] for r in rows if r["loss"] == "softmax"), None)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    )
    print(
        f"SphereFace-20, SYNTHETIC {args.image_size[0]}x{args.image_size[1]} inputs, "
        f"batch {args.batch}, C={args.classes}, "
        f"d=512, {args.precision}{', channels_last' if args.channels_last else ''}, {device.type} ({where}), "
        f"median of {args.steps} steps, torch {torch.__version__}"
    )
    print(
        "| loss | ms/step | images/s | × softmax | loss params+buffers |"
        + (" peak MB |" if device.type == "cuda" else "")
    )
    print("|---|---|---|---|---|" + ("---|" if device.type == "cuda" else ""))
    for r in rows:
        ratio = f"{r['ms_per_step'] / base:.2f}" if base else "—"
        peak = f" {r['peak_mb']:.0f} |" if "peak_mb" in r else ""
        print(
            f"| {r['loss']} | {r['ms_per_step']:.1f} | {r['images_per_s']:.1f} | {ratio} "
            f"| {r['loss_params_and_buffers']:,} |{peak}"
        )
    evaluation = bench_eval(args, device)
    print(
        f"evaluation: {evaluation['embed_images_per_s_with_flip']:.1f} images/s embedded with flip fusion; "
        f"10-fold metrics on 6,000 pairs {evaluation['ten_fold_metrics_s_6000_pairs'] * 1000:.0f} ms"
    )
    result = {
        "device": str(device),
        "where": where,
        "batch": args.batch,
        "classes": args.classes,
        "image_size": args.image_size,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "steps": args.steps,
        "torch": torch.__version__,
        "losses": rows,
        "evaluation": evaluation,
        "inputs": "SYNTHETIC random uint8 images, random labels",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
