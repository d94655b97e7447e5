#!/usr/bin/env bash
# The cosub step on one GPU: images/s and peak memory of the baseline, masked
# and efficient cosub (ViT-B/16 = DeiT III-B at 224 px, bf16 autocast,
# batches 64/128/256, backbone eager and torch.compile'd), in one call.
#
#   bash tools/analysis_tools/benchmark_gpu.sh [out_dir] [extra args...]
#
# Writes one JSON per batch size into out_dir (default: work_dirs/bench_gpu)
# and prints the tables. Fails at once, with the reason, without CUDA.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-work_dirs/bench_gpu}
shift || true
python="${PYTHON:-python}"
"$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else
    "benchmark_gpu.sh: torch sees no CUDA device on this machine")'
mkdir -p "$out"
"$python" -c 'import torch; print(torch.cuda.get_device_name(0), "torch",
    torch.__version__)' | tee "$out/device.txt"
for batch in 64 128 256; do
    echo "== batch $batch"
    "$python" tools/analysis_tools/benchmark_train_step.py --device cuda \
        --arch base --img-size 224 --batch-size "$batch" --amp bf16 \
        --compile both --steps 10 --warmup 2 --mem-steps 2 \
        --json "$out/vit-b16_bf16_b$batch.json" "$@"
done
