#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with the wheels that the lent GPU machines lack, for
# Python 3.12 on x86-64 (their image has torch, cupy, numba(-cuda), h5py, scipy,
# scikit-learn, matplotlib, pytest-benchmark, but not these). Run here, where
# the package registries are reachable; then bench/gpu_check.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl \
    obspy mat-io kmedoids openTSNE faiss-cpu dask distributed sqlalchemy greenlet \
    decorator partd locket zict tblib tornado
du -sh .whl
# the device tool carries at most 64 MiB with the tree; issue 12 keeps the wheels under 40 MB
total=$(du -sb .whl | cut -f1)
if [ "$total" -gt 40000000 ]; then
    echo "gpu_wheels: .whl holds $((total / 1000000)) MB, over the 40 MB budget: drop wheels" \
         "that bench/gpu_check.sh does not need" >&2
    exit 1
fi
