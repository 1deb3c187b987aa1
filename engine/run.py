"""The main job: ``python -m engine.run --archive PATH --out DIR``.

Stages: read events (archive + detection or catalogue, event files, or image
folders) chunk by chunk -> superlet images -> CNN features -> resumable feature
store -> clustering with model selection over k -> assignments, metrics,
figures and ``report.html``. ``python -m engine.run --help`` lists every flag.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


from engine._util import atomic_write, configure_logging, progress
from engine.config import RunConfig, parse_args
from engine.features.base import Featurizer
from engine.pipeline import compute_in_batches, fitted, process_chunks
from engine.store import FeatureStore


log = logging.getLogger("engine.run")  # also when run as __main__

#: consecutive chunks computed together by one Dask task
DASK_GROUP = 8


@dataclass
class RunSummary:
    """What a run did: counts, time per stage, throughput (printed and saved)."""

    input: str = ""
    device: str = "cpu"
    chunks: int = 0
    chunks_resumed: int = 0
    files_read: int = 0
    samples: int = 0
    events: int = 0
    events_computed: int = 0
    skipped: list = field(default_factory=list)
    clusters: int = 0
    k_chosen: Optional[int] = None
    workers: int = 0
    busy_seconds: dict = field(default_factory=dict)
    unclustered: int = 0
    k_criterion: str = ""
    assigned: bool = False
    report: str = ""
    stage_seconds: dict = field(default_factory=dict)
    out: str = ""

    def text(self) -> str:
        """Human-readable closing summary."""
        t = self.stage_seconds
        total = sum(t.values()) or 1e-9
        lines = [
            "microquake-engine run summary",
            f"  input            {self.input} (device {self.device})",
            f"  chunks           {self.chunks} ({self.chunks_resumed} resumed from the store)",
            f"  files read       {self.files_read}",
            f"  events           {self.events}",
            f"  skipped          {len(self.skipped)}",
        ]
        for path, reason in self.skipped[:20]:
            lines.append(f"    - {path}: {reason}")
        if len(self.skipped) > 20:
            lines.append(f"    ... and {len(self.skipped) - 20} more (see summary.json)")
        lines.append(f"  clusters         {self.clusters}"
                     + (f" (k chosen by the {self.k_criterion} rule: {self.k_chosen})"
                        if self.k_chosen else ""))
        lines.append("  time per stage   " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()))
        if self.busy_seconds:
            lines.append("  feature stage    " + ", ".join(
                f"{k} {v:.1f} s" for k, v in self.busy_seconds.items())
                + f" (busy time summed over {max(self.workers, 1)} worker(s))")
        done = self.chunks - self.chunks_resumed
        if self.events and done:
            lines.append(f"  throughput       {self.events_computed / max(t.get('features', 0), 1e-9):.2f}"
                         f" events/s through read+images+features ({self.events_computed} "
                         f"events in {done} chunks this run); {self.events / total:.2f} "
                         "events/s overall")
        elif self.events:
            lines.append("  throughput       (every chunk resumed from the store)")
        if self.assigned:
            lines.append(f"  novel events     {self.unclustered} (cluster -1: none of the "
                         "known families)")
        elif self.unclustered:
            lines.append(f"  unclustered      {self.unclustered} (cluster -1)")
        lines.append(f"  outputs          {self.out}")
        if self.report:
            lines.append(f"  report           {self.report}")
        return "\n".join(lines)


def resolve_device(device: str) -> str:
    """'cpu' or 'cuda' from the --device choice ('auto': CUDA if usable)."""
    if device == "cpu":
        return "cpu"
    ok = False
    try:
        import torch

        ok = torch.cuda.is_available()
        if ok:
            import cupy  # noqa: F401
    except ImportError:
        ok = False
    if device == "cuda" and not ok:
        raise RuntimeError("--device cuda needs a CUDA GPU with PyTorch CUDA and CuPy; "
                           "install 'microquake-engine[gpu]' or use --device cpu")
    return "cuda" if ok else "cpu"


def build_source(cfg: RunConfig, out: Path):
    """The event source of the run and the label catalogue that goes with it.

    With no input flag (or ``--archive synthetic``) the embedded synthetic archive is
    generated into ``OUT/synthetic_archive`` (once; a re-run reuses it) and its
    catalogue labels the detected events for validation.
    """
    from engine.sources import open_source

    label_catalog = None
    archive = cfg.archive
    if cfg.input_kind == "synthetic":
        archive = str(ensure_synthetic_archive(cfg, out))
        label_catalog = str(Path(archive) / "catalog.csv")
    source = open_source(archive=archive, events=cfg.events, images=cfg.images,
                         catalog=cfg.catalog, network=cfg.network, station=cfg.station,
                         location=cfg.location, channel=cfg.channel,
                         starttime=cfg.starttime, endtime=cfg.endtime, target_fs=cfg.fs,
                         chunk_length=cfg.chunk_length, fs=cfg.events_fs,
                         max_gap=cfg.max_gap, mask_labels=cfg.mask_labels,
                         datasets=cfg.datasets,
                         detect=cfg.detector() if archive else True)
    return source, label_catalog


def ensure_synthetic_archive(cfg: RunConfig, out: Path) -> Path:
    """Generate the embedded synthetic archive into ``OUT/synthetic_archive`` once."""
    from engine.synth import write_archive

    target = out / "synthetic_archive"
    done = target / ".complete"
    wanted = {"days": cfg.synthetic_days, "stations": cfg.synthetic_stations,
              "seed": cfg.seed, "rate": cfg.synthetic_rate}
    if done.exists() and json.loads(done.read_text()) == wanted:
        return target
    tmp = out / "synthetic_archive.tmp"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    log.info("generating the embedded synthetic archive (%s day(s), %s station(s)) in %s",
             cfg.synthetic_days, cfg.synthetic_stations, target)
    write_archive(tmp, days=cfg.synthetic_days, stations=cfg.synthetic_stations,
                  seed=cfg.seed, rate=cfg.synthetic_rate)
    (tmp / ".complete").write_text(json.dumps(wanted))
    if target.exists():
        import shutil

        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def fingerprint(cfg: RunConfig, featurizer: Featurizer) -> dict[str, Any]:
    """Everything the stored features depend on (clustering settings excluded).

    The input, selection and detection fields marked ``fingerprint`` on
    :class:`~engine.config.RunConfig`, plus the featurizer's own fingerprint.
    """
    fp = cfg.fingerprint_fields()
    fp["features"] = featurizer.fingerprint()
    if cfg.input_kind == "synthetic":
        fp["synthetic"] = [cfg.synthetic_days, cfg.synthetic_stations, cfg.synthetic_rate,
                           cfg.seed]
    return fp


def extract_local(source, todo: list[str], featurizer: Featurizer, store: FeatureStore,
                  label_catalog: Optional[str] = None, batch_target: int = 1) -> None:
    """Process chunks in this process; a reader thread prefetches the next chunk.

    Chunks are gathered until they hold ``batch_target`` events (or 64 chunks),
    computed together, and written as one part per chunk
    (:func:`engine.pipeline.compute_in_batches`).
    """
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqe-read") as pool:
        def read(key):
            t0 = time.perf_counter()
            return source.read_chunk(key), time.perf_counter() - t0

        def prefetched():
            nxt = pool.submit(read, todo[0])
            for i in progress(range(len(todo)), desc="chunks", unit="chunk"):
                res = nxt.result()
                if i + 1 < len(todo):
                    nxt = pool.submit(read, todo[i + 1])
                yield res

        compute_in_batches(prefetched(), featurizer, store.parts_dir, batch_target,
                           label_catalog)


def extract_parallel(plan, source, todo: list[str], featurizer: Featurizer,
                     store: FeatureStore, label_catalog: Optional[str] = None) -> None:
    """Process chunks with the worker processes of ``plan`` (:mod:`engine.parallel`)."""
    from engine import parallel

    ticks = iter(progress(range(len(todo)), desc="chunks", unit="chunk"))

    def advance(n: int) -> None:
        for _ in range(n):
            next(ticks, None)

    runner = parallel.run_gpu if plan.device == "cuda" else parallel.run_cpu
    runner(plan, source, todo, featurizer, str(store.parts_dir), label_catalog, advance)
    advance(len(todo))  # close the bar (every chunk is done)


def extract_dask(source, todo: list[str], featurizer: Featurizer, store: FeatureStore,
                 scheduler: Optional[str], n_local: int, label_catalog: Optional[str] = None,
                 device: str = "cpu") -> None:
    """Process chunks as Dask distributed tasks writing to the same store.

    Each task reads and computes ``DASK_GROUP`` consecutive chunks together (full
    CNN batches) and writes one part per chunk.
    """
    from engine._util import require

    distributed = require("distributed", "dev", "--scheduler/--dask-local")
    cluster = None
    if scheduler:
        client = distributed.Client(scheduler)
    else:
        if device == "cuda":
            dask_cuda = require("dask_cuda", "gpu", "--dask-local with --device cuda")
            cluster = dask_cuda.LocalCUDACluster(n_workers=n_local)
        else:
            cluster = distributed.LocalCluster(n_workers=n_local, threads_per_worker=1,
                                               processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        client.run(_configure_worker_logging)  # workers' warnings in one format
        src = client.scatter(source, broadcast=True)
        groups = [todo[i:i + DASK_GROUP] for i in range(0, len(todo), DASK_GROUP)]
        from sklearn.base import clone

        unfitted = clone(featurizer)  # workers fit their own copy once per process
        parts = str(store.parts_dir.resolve())  # workers may run elsewhere
        futures = [client.submit(process_chunks, src, keys, unfitted, parts,
                                 label_catalog, pure=False) for keys in groups]
        for fut in progress(distributed.as_completed(futures), desc="chunk groups (dask)",
                            total=len(futures), unit="group"):
            fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


ADAPTED = "adapted_squeezenet.safetensors"


def adapt_featurizer(cfg: RunConfig, featurizer: Featurizer, source, keys: list[str],
                     out: Path, device: str) -> Featurizer:
    """The run's featurizer with weights adapted to this input (``--adapt``).

    Events of chunks taken in a seeded random order (at most ``--adapt-events``)
    train the network without labels (:func:`engine.features.adapt.adapt_weights`); the
    weights go to ``OUT/adapted_squeezenet.*`` with a note of what they were
    adapted to, and a re-run with the same input, starting weights and
    settings reuses them (resuming a killed run does not train again).
    """
    import numpy as np

    from engine.features.adapt import adapt_weights
    from engine.features.base import file_digest

    request = {"input": cfg.fingerprint_fields(),
               "start": featurizer.fingerprint()["weights"],
               "events": cfg.adapt_events, "budget_s": cfg.adapt_budget, "seed": cfg.seed}
    weights, note = out / ADAPTED, out / "adapted_request.json"
    if weights.is_file() and note.is_file() and not cfg.fresh:
        try:
            done = json.loads(note.read_text())
        except ValueError:
            done = {}
        if done.get("request") == json.loads(json.dumps(request)) and \
                done.get("weights") == file_digest(weights):
            log.info("--adapt: reusing %s (adapted to this input before)", weights)
            return featurizer.set_params(weights=str(weights.resolve()))
    events: list = []
    # chunks in a seeded random order: the sample spreads over the whole input
    for i in np.random.default_rng(cfg.seed).permutation(len(keys)):
        if len(events) >= cfg.adapt_events:
            break
        events.extend(source.read_chunk(keys[int(i)]).events)
    events = events[: cfg.adapt_events]
    if len(events) < 2:
        raise ValueError(f"--adapt needs at least 2 events; the input gave {len(events)}")
    log.info("--adapt: adapting %s to %d events of this input (budget %.0f s)",
             featurizer.fingerprint()["weights"], len(events), cfg.adapt_budget)
    path = adapt_weights(events, init=str(featurizer.weights_path()), out=weights,
                         fs=cfg.fs, budget_s=cfg.adapt_budget, seed=cfg.seed,
                         device=device)
    atomic_write(note, json.dumps({"request": request, "weights": file_digest(path)},
                                  indent=1))
    return featurizer.set_params(weights=str(Path(path).resolve()))


def _check_k_against_size(cfg: RunConfig, source) -> None:
    """Refuse a fixed ``--k`` larger than the input, before any feature is computed."""
    from engine.cluster.factory import needs_k

    n = source.size_hint()
    if n is None or cfg.assign_to or not needs_k(cfg.method):
        return
    lowest = min(cfg.k_values())
    if lowest >= n:
        raise ValueError(f"--k {cfg.k} needs more events than the {n} in the input "
                         f"({cfg.events or cfg.images}); give a smaller --k")


def _configure_worker_logging() -> None:
    configure_logging()  # (returns a handler, which cannot travel back from a worker)


def run(cfg: RunConfig) -> RunSummary:
    """Run the whole job for a validated configuration; returns its summary."""
    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = RunSummary(out=str(out))
    times = summary.stage_seconds
    device = resolve_device(cfg.device)
    summary.device = device
    if device == "cuda":
        from engine.superlet import check_device

        log.info("superlet on the GPU: %s", check_device(device))  # compiles once, here
    cfg.save(out / "config.toml")

    images_dir = str((out / "images").resolve()) if cfg.save_images else None
    featurizer = cfg.featurizer(device, images_dir)
    featurizer.check()
    if cfg.assign_to:
        from engine.clustering_stage import check_model_features

        check_model_features(cfg.assign_to, featurizer)  # before any feature is computed

    t0 = time.perf_counter()
    source, label_catalog = build_source(cfg, out)
    summary.input = f"{cfg.input_kind}: " + str(cfg.archive or cfg.events or cfg.images
                                                 or out / "synthetic_archive")
    keys = source.chunks()
    _check_k_against_size(cfg, source)
    if cfg.adapt:
        t1 = time.perf_counter()
        featurizer = adapt_featurizer(cfg, featurizer, source, keys, out, device)
        times["adapt"] = time.perf_counter() - t1
    store = FeatureStore(out, fingerprint(cfg, featurizer), fresh=cfg.fresh)
    todo = store.todo(keys)
    summary.chunks, summary.chunks_resumed = len(keys), len(keys) - len(todo)
    from engine.features import save_run_featurizer

    save_run_featurizer(featurizer, out)
    times["setup"] = time.perf_counter() - t0 - times.get("adapt", 0.0)

    t0 = time.perf_counter()
    if cfg.scheduler or cfg.dask_local:
        extract_dask(source, todo, featurizer, store, cfg.scheduler, cfg.dask_local,
                     label_catalog, device)
    elif todo:
        from engine.parallel import make_plan

        plan = make_plan(device, cfg.workers, len(todo), cfg.batch)
        summary.workers = plan.workers
        if plan.device == "cuda" or plan.workers == 1:
            featurizer = fitted(featurizer)  # the GPU consumer / the one worker is here
        if plan.workers == 1:
            extract_local(source, todo, featurizer, store, label_catalog,
                          plan.batch_target)
        else:
            extract_parallel(plan, source, todo, featurizer, store, label_catalog)
    times["features"] = time.perf_counter() - t0

    X, meta, stats = store.gather(keys)
    todo_set = set(todo)
    store.consolidate(X, meta)
    for key, st in zip(keys, stats):
        if key in todo_set:
            summary.events_computed += st.get("events", 0)
            for name, sec in st.items():
                if name.startswith("t_") and name != "t_total":
                    stage = "read+detect" if name == "t_read" else name[2:]
                    summary.busy_seconds[stage] = summary.busy_seconds.get(stage, 0.0) + sec
        summary.files_read += st.get("files_read", 0)
        summary.samples += st.get("samples", 0)
        summary.skipped.extend(tuple(s) for s in st.get("skipped", []))
    from engine.sources.base import unique_skipped

    summary.skipped = list(unique_skipped(summary.skipped))  # a file spans many chunks
    summary.events = X.shape[0]
    if summary.events == 0:
        _finish(summary, out)
        raise RuntimeError(
            f"no events found in {summary.input} (chunks: {len(keys)}, files read: "
            f"{summary.files_read}, skipped: {len(summary.skipped)}); check the "
            "selection flags and detection thresholds")

    t0 = time.perf_counter()
    from engine.clustering_stage import cluster_and_report

    summary.k_chosen, summary.clusters, summary.unclustered = cluster_and_report(
        cfg, X, meta, source, featurizer, out, device)
    summary.assigned = bool(cfg.assign_to)
    summary.k_criterion = cfg.k_criterion
    summary.report = str(out / "report.html") if cfg.report else ""
    times["clustering+report"] = time.perf_counter() - t0
    _finish(summary, out)
    return summary


def _finish(summary: RunSummary, out: Path) -> None:
    d = summary.__dict__.copy()
    d["skipped"] = [list(s) for s in summary.skipped]
    d["python"] = platform.python_version()
    atomic_write(out / "summary.json", json.dumps(d, indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    configure_logging()
    try:
        cfg = parse_args(argv)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = run(cfg)
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: finished chunks are kept in the store; re-run the same "
              "command to resume", file=sys.stderr)
        return 130
    print(summary.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
