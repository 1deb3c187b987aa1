#!/usr/bin/env bash
# The device check for a lent GPU, as one short script (device tool: command
# "bash bench/gpu_check.sh", carry [".whl"], timeout_s 540). It runs the GPU
# tests (real CuPy/Numba CUDA superlets and images, CUDA CNN paths), the GPU
# benchmarks beside their CPU baselines on the same machine, and the main job
# with --device cuda vs --device cpu on a small synthetic archive; everything
# lands in $OUT (bench/results/ when run by hand). Fill .whl first with
# bench/gpu_wheels.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" MQE_NO_PROGRESS=1 PYTHONUNBUFFERED=1
tag="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-')_$(date +%F)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu-$tag.txt"
python3 -c "import torch, cupy, numba; print('torch', torch.__version__, 'cupy', cupy.__version__, 'numba', numba.__version__)" >> "$OUT/gpu-$tag.txt"

timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_superlet.py tests/test_images.py \
    tests/test_features.py tests/test_gpu_path.py -k "cuda or gpu" > "$OUT/gpu-tests-$tag.log" 2>&1
echo "gpu tests rc=$?" | tee -a "$OUT/gpu-$tag.txt"

timeout 240 python3 -m pytest -q -p no:cacheprovider bench/bench_superlet.py bench/bench_features.py \
    --benchmark-json "$OUT/gpu-bench-$tag.json" -s > "$OUT/gpu-bench-$tag.log" 2>&1
echo "gpu bench rc=$?" | tee -a "$OUT/gpu-$tag.txt"
python3 bench/report.py "$OUT/gpu-bench-$tag.json" -o "$OUT/gpu-bench-$tag.md"

for dev in cuda cpu; do
    /usr/bin/time -v timeout 120 python3 -m engine.run --out "/tmp/mqe-$dev" --synthetic-days 0.25 \
        --device "$dev" --k 3 --no-report > "/tmp/mqe-$dev.log" 2>&1
    echo "engine.run --device $dev rc=$?" | tee -a "$OUT/gpu-$tag.txt"
    grep -E "events|time per stage|throughput|Maximum resident" "/tmp/mqe-$dev.log" >> "$OUT/gpu-$tag.txt"
done
python3 - "$OUT/gpu-$tag.txt" <<'PY' >> "$OUT/gpu-$tag.txt"
import csv, sys
a = [r["cluster"] for r in csv.DictReader(open("/tmp/mqe-cuda/assignments.csv"))]
b = [r["cluster"] for r in csv.DictReader(open("/tmp/mqe-cpu/assignments.csv"))]
print(f"cuda vs cpu assignments: {sum(x == y for x, y in zip(a, b))}/{len(b)} equal, {len(a)} vs {len(b)} events")
PY
cat "$OUT/gpu-$tag.txt"
