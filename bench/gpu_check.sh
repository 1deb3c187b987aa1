#!/usr/bin/env bash
# The one prepared device check for a lent GPU (device tool: command
# "bash bench/gpu_check.sh", carry [".whl"], timeout_s 540; fill .whl first with
# bench/gpu_wheels.sh). It runs, each step guarded by its own timeout so that one
# failure does not stop the rest (7.5 minutes at most):
#   1. the GPU tests (fused CUDA kernel, superlet/images on CuPy, CNN precisions);
#   2. superlet kernel rates by batch size (paper parameters, 6000 samples) and
#      the CPU rate on all cores in the same run;
#   3. event_images images/s on the GPU (RGB and grey);
#   4. CNN images/s by precision from GPU memory, with the error vs the CPU;
#   5. the main job, --device cuda vs --device cpu (all cores), on a synthetic
#      archive of 30 station-days (10 days x 3 stations): events/s, station-days
#      per hour, peak memory, and the agreement (ARI) of the two runs.
# It prints a table and writes it, with the logs and a JSON of the rates, under
# $OUT (bench/results/ when run by hand). Without a CUDA device it says so and
# exits 0 (a dry run).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no CUDA device here (nvidia-smi missing or sees no GPU): nothing measured"
    exit 0
fi
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" MQE_NO_PROGRESS=1 PYTHONUNBUFFERED=1
tag="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-')_$(date +%F)"
SUM="$OUT/gpu-$tag.txt"
LOG="$OUT/gpu-steps-$tag.log"
JSON="$OUT/gpu-rates-$tag.json"
: > "$LOG"
: > "$JSON"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$SUM"
"$PY" -c "import numpy, torch, cupy; print('numpy', numpy.__version__, 'torch', torch.__version__, 'cupy', cupy.__version__)" >> "$SUM" 2>&1

STEPS=$(mktemp /tmp/gpu_check_steps.XXXX.py)
cat > "$STEPS" <<'PY'
"""Measurement steps of bench/gpu_check.sh: python STEPS.py NAME JSON."""
import json, os, sys, time
import numpy as np

name, out = sys.argv[1], sys.argv[2]
FS, N = 100.0, 6000


def record(**kw):
    kw["step"] = name
    with open(out, "a") as fh:
        fh.write(json.dumps(kw) + "\n")
    print(json.dumps(kw), flush=True)


def events(n, seed=0, ragged=False):
    rng = np.random.default_rng(seed)
    t = np.arange(N) / FS
    x = rng.standard_normal((n, N))
    x += 10 * np.sin(2 * np.pi * 3 * t) * np.exp(-((t - t[-1] / 3) ** 2) / 20)
    if not ragged:
        return x.astype(np.float32)
    lens = rng.integers(N // 2, N + 1, n)
    return [np.r_[x[i, :lens[i]], np.full(N - lens[i], x[i, lens[i] - 1])] for i in range(n)]


def best(fn, sync, reps=3):
    fn(); sync()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t0)
    return min(ts)


if name == "kernels":
    import cupy as cp
    from engine.images import DEFAULT_FREQS
    from engine.superlet import superlet
    from kernels.superlet_gpu import fused_status, superlet_gpu
    from kernels.wavelets import wavelet_bank
    record(fused=fused_status(cp)[1])
    sync = cp.cuda.Device().synchronize
    host = events(1024, seed=1)
    ref = superlet(host[:2], FS, DEFAULT_FREQS)
    got = cp.asnumpy(superlet(cp.asarray(host[:2]), FS, DEFAULT_FREQS, device="cuda"))
    record(max_rel_err_vs_cpu=float((np.abs(got - ref).max(-1) / np.abs(ref).max(-1)).max()))
    bank = wavelet_bank(FS, DEFAULT_FREQS, 3.0, (10, 20), N, True, np.float32)
    for b in (16, 64, 256, 1024):  # the kernel on device-resident traces
        xd = cp.asarray(host[:b])
        t = best(lambda: superlet_gpu(xd, bank, xp=cp), sync)
        record(batch=b, events_per_s=b / t)
    t = best(lambda: superlet(host[:256], FS, DEFAULT_FREQS, device="cuda"), sync)
    record(api_batch=256, api_events_per_s=256 / t)  # public API from host arrays
    n_cpu = 32
    t = best(lambda: superlet(host[:n_cpu], FS, DEFAULT_FREQS), lambda: None, reps=1)
    record(cpu_cores=os.cpu_count(), cpu_events_per_s=n_cpu / t)
elif name == "images":
    import cupy as cp
    from engine.images import event_images
    sync = cp.cuda.Device().synchronize
    tr = events(512, seed=2, ragged=True)
    for cm in (True, False):
        t = best(lambda: event_images(tr, device="cuda", colormap=cm, show_progress=False),
                 sync, reps=2)
        record(colormap=cm, images_per_s=len(tr) / t)
    g = cp.asnumpy(event_images(tr[:8], device="cuda", show_progress=False))
    c = event_images(tr[:8], show_progress=False)
    d = np.abs(g.astype(int) - c.astype(int))
    record(image_max_level_diff=int(d.max()), image_pixels_differing=float((d > 0).mean()))
elif name == "cnn":
    import torch
    from engine.features.extractor import SqueezeNetExtractor
    imgs = np.random.default_rng(0).integers(0, 256, (2048, 227, 227, 3), dtype=np.uint8)
    cpu = SqueezeNetExtractor(weights="random", batch_size=64).fit().transform(imgs[:16])
    dev = torch.from_numpy(imgs).cuda()
    for prec in ("fp32", "tf32", "fp16", "bf16"):
        try:
            ext = SqueezeNetExtractor(weights="random", device="cuda", batch_size=256,
                                      precision=prec, output="torch").fit()
            t = best(lambda: ext.transform(dev), torch.cuda.synchronize)
            f = ext.transform(dev[:16]).cpu().numpy()
            record(precision=prec, images_per_s=len(imgs) / t,
                   rel_err_vs_cpu=float(np.abs(f - cpu).max() / np.abs(cpu).max()))
        except Exception as exc:  # one precision failing must not hide the others
            record(precision=prec, error=f"{type(exc).__name__}: {exc}"[:300])
PY

step() {  # step NAME SECONDS COMMAND...: run guarded, log, note rc
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($(date +%T))" >> "$LOG"
    local t0=$SECONDS
    timeout "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    echo "step $name: rc=$rc, $((SECONDS - t0)) s" | tee -a "$SUM"
    return 0
}

step tests 60 "$PY" -m pytest -q -p no:cacheprovider tests/test_kernels_cuda.py \
    tests/test_superlet.py tests/test_images.py tests/test_gpu_path.py tests/test_features.py \
    -k "cuda or gpu or kernel"
step kernels 70 "$PY" "$STEPS" kernels "$JSON"
step images 40 "$PY" "$STEPS" images "$JSON"
step cnn 40 "$PY" "$STEPS" cnn "$JSON"
rm -rf /tmp/mqe-archive
step archive 60 "$PY" -m engine.synth --out /tmp/mqe-archive --days 10 --stations 3 --seed 1
for dev in cuda cpu; do
    rm -rf "/tmp/mqe-$dev"
    step "run-$dev" 90 /usr/bin/time -v "$PY" -m engine.run \
        --archive /tmp/mqe-archive --out "/tmp/mqe-$dev" --device "$dev" --k 3 --no-report
done
rm -f "$STEPS"

"$PY" - "$JSON" "$LOG" >> "$SUM" 2>&1 <<'PY'
import csv, json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\n| what | figure |\n| --- | --- |")
for r in rows:
    s = r["step"]
    if "batch" in r:
        print(f"| superlet GPU kernel, batch {r['batch']} | {r['events_per_s']:,.0f} events/s |")
    elif "api_batch" in r:
        print(f"| superlet(device='cuda') from host, batch {r['api_batch']} | "
              f"{r['api_events_per_s']:,.0f} events/s |")
    elif "cpu_events_per_s" in r:
        print(f"| superlet CPU, {r['cpu_cores']} cores | {r['cpu_events_per_s']:,.1f} events/s |")
    elif "fused" in r:
        print(f"| superlet GPU path | {r['fused']} |")
    elif "max_rel_err_vs_cpu" in r:
        print(f"| superlet GPU vs CPU | max rel err {r['max_rel_err_vs_cpu']:.1e} |")
    elif s == "images" and "images_per_s" in r:
        kind = "RGB" if r["colormap"] else "grey"
        print(f"| event_images GPU ({kind}) | {r['images_per_s']:,.0f} images/s |")
    elif "image_max_level_diff" in r:
        print(f"| images GPU vs CPU | max {r['image_max_level_diff']} level(s), "
              f"{r['image_pixels_differing']:.1e} of pixels |")
    elif s == "cnn":
        fig = (f"{r['images_per_s']:,.0f} images/s, rel err {r['rel_err_vs_cpu']:.1e}"
               if "images_per_s" in r else r["error"])
        print(f"| CNN {r['precision']} from GPU memory | {fig} |")
log = open(sys.argv[2]).read()
for dev in ("cuda", "cpu"):
    part = log.split(f"=== run-{dev}")[-1].split("===")[0] if f"=== run-{dev}" in log else ""
    wall = re.search(r"Elapsed \(wall clock\) time.*?\): ([\d:.]+)", part)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", part)
    rate = ""
    try:
        sm = json.load(open(f"/tmp/mqe-{dev}/summary.json"))
        secs = sum(sm["stage_seconds"].values())
        busy = ", ".join(f"{k} {v:.0f} s" for k, v in sm.get("busy_seconds", {}).items())
        rate = (f", {sm['events']} events, {sm['events'] / secs:,.0f} events/s, "
                f"{30 / (secs / 3600):,.0f} station-days/h, {sm.get('workers')} worker(s); "
                f"busy: {busy}")
    except (OSError, KeyError, ZeroDivisionError):
        pass
    print(f"| main job --device {dev}, 30 station-days | {wall.group(1) if wall else 'n/a'} "
          f"wall, {int(rss.group(1)) // 1024 if rss else 'n/a'} MB peak (main process)"
          f"{rate} |")
try:
    a = {r["event_id"]: r["cluster"] for r in csv.DictReader(open("/tmp/mqe-cuda/assignments.csv"))}
    b = {r["event_id"]: r["cluster"] for r in csv.DictReader(open("/tmp/mqe-cpu/assignments.csv"))}
    from sklearn.metrics import adjusted_rand_score
    common = sorted(set(a) & set(b))
    ari = adjusted_rand_score([a[k] for k in common], [b[k] for k in common])
    print(f"| main job cuda vs cpu | ARI {ari:.4f} on {len(common)} common events "
          f"({len(a)} vs {len(b)}) |")
except (OSError, ImportError) as exc:
    print(f"| main job cuda vs cpu | not compared: {exc} |")
PY
cat "$SUM"
