#!/usr/bin/env bash
# GPU check, under 8 minutes on one GPU: the CUDA tests, then the paper preset's SSL and segmentation
# throughput against the GPU's matmul rate, then one paper round end to end (benchmarks/bench_gpu.py).
#
#   bash benchmarks/gpu_check.sh              # PYTHON=/path/to/python to choose the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"

if ! "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    echo "gpu_check: no CUDA GPU visible to torch ('$PY -c \"import torch; assert torch.cuda.is_available()\"'" \
         "failed); run this on a machine with a GPU and a CUDA build of torch" >&2
    exit 1
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

echo "== CUDA tests =="
timeout 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py

echo "== throughput and one paper round =="
timeout 330 "$PY" benchmarks/bench_gpu.py --device cuda
