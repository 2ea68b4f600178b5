#!/usr/bin/env bash
# Rerun the committed CPU reproduction (docs/results/) and fail when a committed number no longer comes out.
#
#   bash scripts/reproduce_results.sh                    # all three: fig6_mnist table4_mnist table4_digits
#   bash scripts/reproduce_results.sh table4_digits      # one of them (3 min on one CPU thread)
#   UPDATE=1 bash scripts/reproduce_results.sh           # also copy the new tables and figures into docs/results/
#
# Environment: PODHL_DATA_ROOT  folder holding MNIST/ (default ../shared/data; users: any folder, with
#                               dataset.download=true added below, or torchvision's MNIST layout there)
#              OUT              where the sweeps go (default outputs/repro)
#              TOL              allowed |difference| per run in accuracy points (default 0.01: the tables'
#                               two decimals). Another CPU can differ: float32 training is chaotic, see
#                               docs/results/README.md. Every mismatch is listed; the exit code is 1 if any.
# Every run uses one thread (OMP_NUM_THREADS=1), as the committed runs did.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(cd "${PODHL_DATA_ROOT:-../shared/data}" && pwd)
OUT=${OUT:-outputs/repro}
TOL=${TOL:-0.01}
TRAIN=(python -m podhl.train)
export OMP_NUM_THREADS=1
mkdir -p "$OUT"

run() {  # run NAME: sweep, tables and figures into $OUT/NAME/, then compare with docs/results/NAME/summary.md
  local name=$1 sweep="$OUT/$1" made="$OUT/$1/docs"
  rm -rf "$sweep" && mkdir -p "$made"
  case $name in
    fig6_mnist)
      "${TRAIN[@]}" experiment=pod_fig6 seed=0,1,2 "dataset.root=$DATA" backbone.width=16 schedule.epochs=4 \
        trainer.limit_train_batches=150 trainer.gpu_resident=true trainer.progress=false trainer.device=cpu \
        "hydra.sweep.dir=$sweep"
      python -m podhl.runs.figures features "$sweep" --seed 0 -o "$made/fig6.png"
      podhl-tables "$sweep" --out "$made" --no-curves --no-hparams ;;
    table4_mnist)
      "${TRAIN[@]}" experiment=repro_table4_mnist "dataset.root=$DATA" trainer.device=cpu "hydra.sweep.dir=$sweep"
      podhl-tables "$sweep" --table pod_table4 --out "$made" --no-hparams ;;
    table4_digits)
      "${TRAIN[@]}" experiment=repro_table4_digits trainer.device=cpu "hydra.sweep.dir=$sweep"
      podhl-tables "$sweep" --table pod_table4 --out "$made" --no-hparams ;;
    *) echo "unknown result $name (fig6_mnist, table4_mnist, table4_digits)" >&2; return 2 ;;
  esac
  cp "$sweep/summary.md" "$made/summary.md"
  if [ -f "docs/results/$name/summary.md" ]; then
    python scripts/compare_results.py "docs/results/$name/summary.md" "$made/summary.md" --tol "$TOL"
  else
    echo "docs/results/$name/summary.md is not committed yet: nothing to compare (UPDATE=1 commits this run)"
  fi
}

status=0
for name in "${@:-fig6_mnist table4_mnist table4_digits}"; do
  for one in $name; do
    run "$one" || status=1
    if [ "${UPDATE:-0}" = 1 ]; then mkdir -p "docs/results/$one" && cp -r "$OUT/$one/docs/." "docs/results/$one/"; fi
  done
done
exit $status
