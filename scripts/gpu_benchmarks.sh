#!/usr/bin/env bash
# The GPU figures of docs/results.md in one command (run from the repository root):
#
#   bash scripts/gpu_benchmarks.sh            # log to ${OUT:-.}/gpu_benchmarks.log
#
# U-Net train step at 256 px, batch 64, float32 and bfloat16 (slices/s, FLOP/s, MFU); the
# augmentation overhead (the same step with AugMix + the domain transform, and the augmentation
# ops alone); the CycleGAN step (f32, bf16); and MONAI's BasicUNet on the same GPU when torch
# and MONAI are installed (skipped, and said so, when they are not). Needs no TensorFlow and no
# network. Each command has its own time limit, so one that hangs does not take the rest.
set -u -o pipefail
cd "$(dirname "$0")/.."
LOG="${OUT:-.}/gpu_benchmarks.log"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2
LIMIT="${LIMIT:-150}"  # seconds per command

run() {  # run <title> <command...>: prints the title, the command's last lines, its status
  echo "### $1" | tee -a "$LOG"
  shift
  timeout "$LIMIT" "$@" 2>&1 | grep -v -E "^(WARNING|I0000|W0000|E0000)" | tail -n 12 | tee -a "$LOG"
  echo "(exit ${PIPESTATUS[0]})" | tee -a "$LOG"
}

: > "$LOG"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "nvidia-smi not found"
  python -c "import jax; print('jax', jax.__version__, jax.devices())"
} 2>&1 | tee -a "$LOG"

for dtype in float32 bfloat16; do
  run "U-Net train step, 256 px, batch 64, $dtype" \
    python scripts/benchmark_vs_monai.py --sizes=256 --batch=64 --dtype=$dtype --no_monai \
      --rounds=3 --steps=20
done
run "U-Net train + eval step, 256 px, batch 64, bfloat16, no augmentation" \
  python scripts/benchmark_train.py --size=256 --batch=64 --dtype=bfloat16 --augment=none
run "U-Net train + eval step, 256 px, batch 64, bfloat16, AugMix + domain (the overhead)" \
  python scripts/benchmark_train.py --size=256 --batch=64 --dtype=bfloat16 --augment=both
run "augmentation ops alone, 256 px, batch 64" \
  python scripts/benchmark_augment.py --size 256 --batch 64
for dtype in float32 bfloat16; do
  run "CycleGAN step, 256 px, batch 8, default networks, $dtype" \
    python scripts/benchmark_cyclegan.py --size=256 --batch=8 --dtype=$dtype --steps=10
done
if python -c "import torch, monai" 2>/dev/null; then
  for size in 128 256; do
    run "liverjax vs MONAI BasicUNet, $size px, batch 64, float32, same GPU" \
      python scripts/benchmark_vs_monai.py --sizes=$size --batch=64 --rounds=3 --steps=20
  done
else
  echo "### liverjax vs MONAI: skipped, torch/MONAI are not installed here" \
       "(pip install -e '.[bench]' where a registry is reachable)" | tee -a "$LOG"
fi
echo "log: $LOG"
