"""Local execution of the feature stage: worker processes and cross-chunk batches.

Two plans, chosen by the device:

CPU (``workers`` processes compute)
    Each worker process reads, detects and featurizes a group of consecutive
    chunks (their events go through the featurizer together, so batches stay
    full) and writes one store part per chunk. Workers are pinned to disjoint
    sets of cores and run their FFT and torch threads there, so cores are used
    once each, never oversubscribed. The main process only dispatches.
GPU (``workers`` reader processes feed one GPU consumer)
    Reader processes read, filter and detect chunks; the main process gathers
    the events of many chunks into batches of at least ``batch_target`` events
    for the featurizer on the GPU, then writes one part per chunk.

In both, at most ``2 * workers`` tasks are in flight, so memory stays flat
with the archive's length, and a killed run loses at most the chunks in flight
(parts are written atomically per chunk; a re-run resumes).
"""
from __future__ import annotations

import logging
import math
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Callable, Iterable, Iterator, Optional, Sequence

from engine._util import available_cores
from engine.features.base import Featurizer

log = logging.getLogger(__name__)


#: chunks a worker process must get before the automatic plan starts it
MIN_CHUNKS_PER_WORKER = 8


@dataclass(frozen=True)
class Plan:
    """How the feature stage runs on this machine.

    Attributes
    ----------
    workers : int
        Worker processes (1: everything in this process, a reader thread prefetches).
    threads : int
        Compute threads per worker (CPU plan) or of the main process (GPU plan).
    chunks_per_task : int
        Consecutive chunks one CPU task reads and featurizes together.
    batch_target : int
        Events gathered before the GPU consumer runs the featurizer.
    device : str
        ``"cpu"`` or ``"cuda"``.
    """

    workers: int
    threads: int
    chunks_per_task: int
    batch_target: int
    device: str


def make_plan(device: str, workers: int, n_chunks: int, batch: int,
              cores: Optional[int] = None) -> Plan:
    """The execution plan for ``n_chunks`` chunks.

    Parameters
    ----------
    device : {"cpu", "cuda"}
    workers : int
        ``--workers``: 0 = automatic (CPU: one worker per core; CUDA: cores - 1
        readers), otherwise the number of processes.
    n_chunks : int
        Chunks to compute.
    batch : int
        ``--batch`` (events per featurizer batch).
    cores : int, optional
        Cores available (default: this process's affinity).

    Returns
    -------
    Plan
    """
    cores = cores or available_cores()
    if workers < 0:
        raise ValueError(f"--workers must be >= 0; got {workers}")
    if device == "cuda":
        n = workers or max(1, min(cores - 1, n_chunks // MIN_CHUNKS_PER_WORKER))
        return Plan(workers=max(1, min(n, n_chunks)), threads=cores if n <= 1 else 1,
                    chunks_per_task=1, batch_target=max(256, batch), device=device)
    # automatic: one worker per core, but a worker only pays its start-up (a few
    # seconds of imports) when it gets at least MIN_CHUNKS_PER_WORKER chunks
    n = workers or min(cores, n_chunks // MIN_CHUNKS_PER_WORKER)
    n = max(1, min(n, n_chunks))
    threads = max(1, cores // n)
    # enough tasks per worker to balance the finish, few enough to keep batches full
    per_task = max(1, min(16, math.ceil(n_chunks / (4 * n))))
    return Plan(workers=n, threads=threads, chunks_per_task=per_task,
                batch_target=batch, device=device)


def _init_worker(cores: list[list[int]], threads: int, counter, compute: bool) -> None:
    """Pin this worker to its share of the cores and size its thread pools.

    Ctrl-C is left to the main process, which stops the workers (parts are
    written atomically, so a stopped worker leaves nothing half-written).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with counter.get_lock():
        slot = counter.value
        counter.value += 1
    if hasattr(os, "sched_setaffinity") and cores:
        try:
            os.sched_setaffinity(0, set(cores[slot % len(cores)]))
        except OSError:  # pragma: no cover - restricted containers
            pass
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if compute:  # compute workers run the CNN; readers never import torch
        import torch

        torch.set_num_threads(threads)
    from engine._util import configure_logging

    configure_logging()


def _core_sets(n_workers: int) -> list[list[int]]:
    if not hasattr(os, "sched_getaffinity"):
        return []
    cores = sorted(os.sched_getaffinity(0))
    if n_workers > len(cores):
        return []
    per = len(cores) // n_workers
    return [cores[i * per:(i + 1) * per] for i in range(n_workers)]


@contextmanager
def _pool(plan: Plan, compute: bool) -> Iterator[ProcessPoolExecutor]:
    """A spawn-context process pool; on any error or Ctrl-C its workers are stopped
    at once instead of finishing the tasks in flight.

    ``compute``: workers run the featurizer (pinned to their cores, torch threads
    set); otherwise they only read and detect."""
    ctx = get_context("spawn")  # torch and threads do not survive fork
    counter = ctx.Value("i", 0)
    cores = _core_sets(plan.workers) if compute else []
    pool = ProcessPoolExecutor(max_workers=plan.workers, mp_context=ctx,
                               initializer=_init_worker,
                               initargs=(cores, plan.threads, counter, compute))
    try:
        yield pool
    except BaseException:
        procs = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.terminate()
        raise
    else:
        pool.shutdown(wait=True)


def _bounded(pool: ProcessPoolExecutor, fn: Callable, tasks: Iterable[tuple],
             limit: int) -> Iterator[Future]:
    """Submit ``fn(*task)`` with at most ``limit`` in flight; yield them as they finish."""
    pending: set[Future] = set()
    it = iter(tasks)
    exhausted = False
    while True:
        while not exhausted and len(pending) < limit:
            try:
                task = next(it)
            except StopIteration:
                exhausted = True
                break
            pending.add(pool.submit(fn, *task))
        if not pending:
            return
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            yield fut


def _read(source, key: str):
    t0 = time.perf_counter()
    return source.read_chunk(key), time.perf_counter() - t0


def run_cpu(plan: Plan, source, todo: Sequence[str], featurizer: Featurizer, parts_dir: str,
            label_catalog: Optional[str], on_chunks: Callable[[int], None]) -> None:
    """CPU plan: worker processes read, detect and featurize groups of chunks."""
    from sklearn.base import clone

    from engine.pipeline import process_chunks

    unfitted = clone(featurizer)
    groups = [(source, list(todo[i:i + plan.chunks_per_task]), unfitted, parts_dir,
               label_catalog) for i in range(0, len(todo), plan.chunks_per_task)]
    log.info("feature stage: %d worker process(es) x %d thread(s), %d chunk(s) per task",
             plan.workers, plan.threads, plan.chunks_per_task)
    with _pool(plan, compute=True) as pool:
        for fut in _bounded(pool, process_chunks, groups, 2 * plan.workers):
            on_chunks(len(fut.result()))


def run_gpu(plan: Plan, source, todo: Sequence[str], featurizer: Featurizer, parts_dir: str,
            label_catalog: Optional[str], on_chunks: Callable[[int], None]) -> None:
    """GPU plan: reader processes feed cross-chunk batches to the featurizer here."""
    from engine.pipeline import compute_in_batches

    log.info("feature stage: %d reader process(es) -> GPU batches of >= %d events",
             plan.workers, plan.batch_target)
    with _pool(plan, compute=False) as pool:
        reads = (fut.result() for fut in _bounded(pool, _read, [(source, k) for k in todo],
                                                  4 * plan.workers))
        compute_in_batches(reads, featurizer, parts_dir, plan.batch_target, label_catalog,
                           max_chunks=256, on_chunks=on_chunks)
