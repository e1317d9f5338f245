#!/usr/bin/env bash
# The word2vec GPU check and timings (bench/gpu.py) on a GPU machine where the repository
# travels without ../shared/data: the data comes packed in .gpudata/shared-data.tar.xz
# (made beside the repository by `bash bench/device_run.sh --pack`), logs go to $OUT.
#     bash bench/device_run.sh [CONFIGS]      # default sg-hs,cbow-hs,sg-ns,cbow-ns
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--pack" ]]; then
    mkdir -p .gpudata
    tar -cJf .gpudata/shared-data.tar.xz -C ../shared/data corpora/en-mix eval
    ls -l .gpudata
    exit
fi
export PYTHONUNBUFFERED=1 BENCH_DATA=/tmp/bench-data
OUT="${OUT:-/tmp/bench-out}"
mkdir -p "$BENCH_DATA" "$OUT"
tar -xJf .gpudata/shared-data.tar.xz -C "$BENCH_DATA"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
lscpu | grep -E '^Model name|^CPU\(s\)' || true
python3 -c "import numba, numpy; from numba import cuda; import importlib.metadata as m;
print('python', __import__('sys').version.split()[0], 'numba', numba.__version__,
      'numba-cuda', m.version('numba-cuda'), 'numpy', numpy.__version__)"
python3 bench/gpu.py --no-registers --configs "${1:-sg-hs,cbow-hs,sg-ns,cbow-ns}" 2>&1 | tee "$OUT/gpu.log"
