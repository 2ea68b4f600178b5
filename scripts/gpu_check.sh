#!/usr/bin/env bash
# One GPU check for a session lent a GPU (issue 23): under 8 minutes on one H100/H200-class GPU, prints one table
# and keeps every JSON it read. Run from the repository root after `pip install -e .`:
#   bash scripts/gpu_check.sh [OUT_DIR]        # default outputs/gpu_check
# What it measures (SYNTHETIC CIFAR-shaped images and random features: speed only, accuracy is meaningless):
#   1. ResNet-18 at 32×32, batch 256, softmax: ms/step, images/s and the CIFAR-10 epoch (50,000 images) for fp32,
#      bf16, bf16+channels_last, bf16+channels_last+compile;
#   2. every loss's training step relative to softmax (bf16, channels_last);
#   3. the input pipeline: CPU DataLoader vs the GPU-resident loader;
#   4. every loss alone at C = 100,000 (B = 256, d = 512): time vs linear+CE and peak CUDA memory;
#   5. a 1-process NCCL DDP run of podhl-train (torchrun), 1 epoch of the synthetic set, GPU-resident.
# GPU_CHECK_DRY=1 runs the same steps tiny on the CPU (gloo), to test the script itself (tests/test_gpu_check.py).
set -euo pipefail
OUT=${1:-outputs/gpu_check}
mkdir -p "$OUT"
DRY=${GPU_CHECK_DRY:-0}
if [ "$DRY" = 1 ]; then DEV=cpu; BACKEND=gloo; TINY=(--tiny); SOME=(--losses hl arc)
else DEV=cuda; BACKEND=nccl; TINY=(); SOME=(); fi
python - "$DRY" <<'PY'
import torch, sys
if sys.argv[1] == "1":
    print("dry run on the CPU (GPU_CHECK_DRY=1): tiny sizes, gloo; the figures mean nothing")
elif not torch.cuda.is_available():
    sys.exit("scripts/gpu_check.sh needs a CUDA GPU (torch.cuda.is_available() is False)")
else:
    print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PY
bench() { local name=$1; shift; echo "== $name"; python -m podhl.bench --device "$DEV" --out "$OUT/$name.json" "$@" "${TINY[@]}" > "$OUT/$name.log" 2>&1 || { tail -20 "$OUT/$name.log"; echo "FAILED: $name"; FAILS=$((FAILS + 1)); }; }
FAILS=0
STEP=(--sections train_step --backbone resnet18 --batch 256 --image-size 32 --num-classes 10 --steps 30 --warmup 5)
bench step_fp32 "${STEP[@]}" --losses softmax
bench step_bf16 "${STEP[@]}" --losses softmax --precision bf16
bench step_bf16_cl "${STEP[@]}" --losses softmax --precision bf16 --channels-last
if [ "$DRY" = 1 ]; then echo "== step_bf16_cl_compile: skipped in a dry run (needs a compiler toolchain)"
else bench step_bf16_cl_compile "${STEP[@]}" --losses softmax --precision bf16 --channels-last --compile; fi
bench step_every_loss "${STEP[@]}" --precision bf16 --channels-last --steps 20 "${SOME[@]}"
bench pipeline --sections input_pipeline --batch 256 --pipeline-images 50000 --workers 8
bench loss_100k --sections loss_alone --classes 100000 --loss-batch 256 --loss-dim 512 --steps 10 --warmup 2 "${SOME[@]}"
echo "== ddp_nccl"
T0=$(date +%s.%N)
if torchrun --standalone --nproc_per_node=1 -m podhl.train dataset=synthetic backbone=resnet18 loss=softmax \
    schedule.epochs=1 trainer.device="$DEV" trainer.ddp_backend="$BACKEND" trainer.gpu_resident=true \
    trainer.progress=false trainer.precision=bf16 trainer.channels_last=true dataset.val_fraction=0 \
    hydra.run.dir="$OUT/ddp_run" $([ "$DRY" = 1 ] && echo "backbone=small_cnn dataset.train_size=512 dataset.test_size=256") \
    > "$OUT/ddp.log" 2>&1; then DDP=ok; else DDP=FAILED; FAILS=$((FAILS + 1)); tail -20 "$OUT/ddp.log"; fi
T1=$(date +%s.%N)
python - "$OUT" "$DDP" "$T0" "$T1" <<'PY'
import json, sys
from pathlib import Path

out, ddp, t0, t1 = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
def load(name):
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None
def rows(data, section):
    return (data or {}).get(section) or []
print("\n| check | variant | figure |\n|---|---|---|")
for name, label in [("step_fp32", "fp32"), ("step_bf16", "bf16"), ("step_bf16_cl", "bf16 + channels_last"),
                    ("step_bf16_cl_compile", "bf16 + channels_last + compile")]:
    for r in rows(load(name), "train_step"):
        if r["loss"] == "softmax":
            ips = r["img_per_s"]
            print(f"| ResNet-18 32×32 step, softmax | {label} | {r['ms_per_step']:.2f} ms, {ips:,.0f} img/s, "
                  f"CIFAR-10 epoch {50000 / ips:.2f} s |")
for r in rows(load("step_every_loss"), "train_step"):
    print(f"| step vs softmax (bf16, CL) | {r['loss']} | {100 * r['overhead']:+.1f} % (IQR {100 * r['overhead_iqr']:.1f}) |")
for r in rows(load("pipeline"), "input_pipeline"):
    print(f"| input pipeline | {r['pipeline']} | {r['img_per_s']:,.0f} img/s |")
for r in rows(load("loss_100k"), "loss_alone"):
    peak = r.get("cuda_peak_extra_mb")
    peak = "n/a" if peak is None else f"{peak:,.0f} MB"
    print(f"| loss alone, C = {r['classes']:,} | {r['loss']} | {r['ms']:.2f} ms = {r['vs_linear_ce']:.2f}× linear+CE, "
          f"peak extra {peak}, saved {r['saved_mb']:,.0f} MB |")
print(f"| 1-process DDP (podhl-train, 1 synthetic epoch) | torchrun | {ddp}, {t1 - t0:.1f} s wall |")
print(f"\nJSON and logs: {out}")
PY
[ "$FAILS" = 0 ] || { echo "$FAILS check(s) failed: see the logs in $OUT"; exit 1; }
