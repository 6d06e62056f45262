#!/usr/bin/env bash
# The GPU figures of docs/results.md in one command (run from the repository root):
#
#   bash scripts/gpu_benchmarks.sh            # log to ${OUT:-.}/gpu_benchmarks.log
#
# In order of importance, so that a run cut short still gives the main figures:
#   1. liverjax against MONAI's BasicUNet on the same GPU, float32: the CPU protocol (64 and
#      128 px, batch 16) and 256 px, batch 64 (skipped, and said so, without torch + MONAI);
#   2. the same at 256 px, batch 64 in bfloat16 (liverjax bf16 compute, MONAI autocast);
#   3. the README's first command end to end (synthetic CHAOS: train, checkpoint, evaluate);
#   4. the train + eval step of `best_mr_to_ct` (96 px, batch 16), then at 256 px, batch 64,
#      bf16, without and with AugMix + the domain transform (the augmentation's share, which
#      `benchmark_train.py` also times alone);
#   5. the CycleGAN step of `configs/cyclegan.py` (the README command's sizes), f32 and bf16;
#   6. the augmentation ops alone.
# Needs no TensorFlow and no network. Each command has its own time limit (LIMIT seconds), so
# one that hangs does not take the rest. SIZE / BATCH (256 / 64) and SMALL_SIZES / SMALL_BATCH
# (64,128 / 16) override the sizes, e.g. for a dry run on a CPU. SKIP_OPS=1 leaves out step 6.
# On one H200 the whole script took ~9 minutes on 2026-11-28, most of it compilation.
set -u -o pipefail
cd "$(dirname "$0")/.."
LOG="${OUT:-.}/gpu_benchmarks.log"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export TF_CPP_MIN_LOG_LEVEL=2
# JAX and torch share the GPU in the side-by-side: JAX takes half, not its default 75 %.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}"
LIMIT="${LIMIT:-150}"  # seconds per command
SIZE="${SIZE:-256}"
BATCH="${BATCH:-64}"
SMALL_SIZES="${SMALL_SIZES:-64,128}"
SMALL_BATCH="${SMALL_BATCH:-16}"
PY="${PYTHON:-python3}"

run() {  # run <title> <command...>: prints the title, the command's last lines, its status
  echo "### $1" | tee -a "$LOG"
  shift
  local start=$SECONDS
  timeout "$LIMIT" "$@" 2>&1 | grep -v -E "^(WARNING|I0000|W0000|E0000)" | tail -n 14 | tee -a "$LOG"
  echo "(exit ${PIPESTATUS[0]}, $((SECONDS - start)) s)" | tee -a "$LOG"
}

mkdir -p "$(dirname "$LOG")"
: > "$LOG"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
    --format=csv,noheader 2>/dev/null || echo "nvidia-smi not found"
  "$PY" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, \
'optax', optax.__version__, jax.devices())"
  "$PY" -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, \
'cudnn', torch.backends.cudnn.version())" 2>&1 | tail -n 1
} 2>&1 | tee -a "$LOG"

run "liverjax vs MONAI BasicUNet, $SMALL_SIZES px, batch $SMALL_BATCH, float32, same device" \
  "$PY" scripts/benchmark_vs_monai.py --sizes="$SMALL_SIZES" --batch="$SMALL_BATCH" \
    --rounds=3 --steps=20
for dtype in float32 bfloat16; do
  run "liverjax vs MONAI BasicUNet, $SIZE px, batch $BATCH, $dtype, same device" \
    "$PY" scripts/benchmark_vs_monai.py --sizes="$SIZE" --batch="$BATCH" --dtype=$dtype \
      --rounds=3 --steps=20
done
# The whole study's first command end to end on this device (synthetic CHAOS, train, checkpoint,
# reload, evaluate): proves it runs there, and how long it takes (wall, compile included).
E2E_DIR="$(mktemp -d)"
run "python -m liverjax.main --config=configs/mri_to_ct.py (the README's first command), end to end" \
  "$PY" -m liverjax.main --config=configs/mri_to_ct.py --workdir="$E2E_DIR/mri_to_ct"
rm -rf "$E2E_DIR"
run "the step of configs/real/best_mr_to_ct.py (its augmentation, 96 px, batch 16, float32)" \
  "$PY" scripts/benchmark_train.py --size=96 --batch=16 --best=mr
run "U-Net train + eval step, $SIZE px, batch $BATCH, bfloat16, no augmentation" \
  "$PY" scripts/benchmark_train.py --size="$SIZE" --batch="$BATCH" --dtype=bfloat16 --augment=none
run "U-Net train + eval step, $SIZE px, batch $BATCH, bfloat16, AugMix + domain (the overhead)" \
  "$PY" scripts/benchmark_train.py --size="$SIZE" --batch="$BATCH" --dtype=bfloat16 --augment=both
for dtype in float32 bfloat16; do
  run "CycleGAN step, configs/cyclegan.py sizes (the README command), $dtype" \
    "$PY" scripts/benchmark_cyclegan.py --preset=default --dtype=$dtype --steps=10
done
if [ "${SKIP_OPS:-0}" != 1 ]; then  # SKIP_OPS=1: leave out the augmentation ops alone
  run "augmentation ops alone, $SIZE px, batch $BATCH" \
    "$PY" scripts/benchmark_augment.py --size "$SIZE" --batch "$BATCH"
fi
echo "log: $LOG"
