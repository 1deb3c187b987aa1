"""Torch backend: exact nearest neighbours and k-means from tiled matrix products.

Runs on CPU or CUDA tensors alike; the device is chosen per call
(``device="cpu"|"cuda"``), never at import. Squared distances come from
``|x|^2 - 2 x.y + |y|^2`` on tiles whose size is bounded by a memory budget, so
no ``N x M`` matrix is ever held. Exact kNN keeps a few more candidates than
asked from the matrix products and re-ranks them on directly computed
distances, so cancellation in ``|x|^2 + |y|^2 - 2 x.y`` (float32, TF32) cannot
reorder the answer.

The slow obvious references are in the tests (``tests/test_knn_torch.py``).
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

__all__ = ["knn", "nearest_center_torch", "kmeans_torch", "kmeans_plusplus_torch",
           "is_tensor", "cuda_available", "torch_device", "as_tensor"]

log = logging.getLogger(__name__)

#: bytes of one distance tile (CPU: stays in cache-friendly sizes; CUDA: large tiles)
TILE_BYTES = {"cpu": 128 << 20, "cuda": 1 << 30}
#: extra candidates re-ranked on exact distances in :func:`knn`
RERANK_MARGIN = 8


def _torch():
    import torch  # core dependency; imported late because it is heavy
    return torch


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "device")


def cuda_available() -> bool:
    """Whether torch sees a CUDA device."""
    try:
        torch = _torch()
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False
    return bool(torch.cuda.is_available())


def torch_device(device: str):
    """The ``torch.device`` for ``"cpu"`` or ``"cuda"``.

    Raises
    ------
    ValueError
        For ``"cuda"`` without a visible GPU, or an unknown name.
    """
    torch = _torch()
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' but torch sees no CUDA GPU "
                             "(torch.cuda.is_available() is False); use device='cpu'")
        return torch.device("cuda")
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def as_tensor(X, device: str = "cpu", *, name: str = "X", check_finite: bool = True):
    """Return ``X`` as a 2-D finite floating tensor on ``device``.

    NumPy arrays and tensors are accepted; float32/float64 are kept, other
    dtypes become float32. A tensor already on a CUDA device stays there when
    ``device`` is that device type. ``check_finite=False`` skips the NaN
    scan (for arrays validated before, e.g. a stored index).

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, empty, or holds NaN or infinity.
    """
    torch = _torch()
    dev = torch_device(device)
    if is_tensor(X):
        t = X.detach()
    else:
        arr = np.asarray(X)
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float32)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    if t.dim() != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), got shape "
                         f"{tuple(t.shape)}")
    if t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    t = t.to(dev).contiguous()
    if not check_finite:
        return t
    bad = ~torch.isfinite(t.sum(dim=1, dtype=torch.float64))
    if bool(bad.any()):
        rows = torch.nonzero(~torch.isfinite(t).all(dim=1)).flatten().cpu().tolist()
        raise ValueError(f"{name} holds NaN or infinite values in {len(rows)} of {t.shape[0]} "
                         f"rows (first rows: {rows[:5]}); drop or impute them first")
    return t


def _rows_per_tile(n_cols: int, itemsize: int, device_type: str) -> int:
    return max(1, TILE_BYTES.get(device_type, TILE_BYTES["cpu"]) // max(1, n_cols * itemsize))


def _sqnorms(X):
    return _torch().einsum("ij,ij->i", X, X)


def nearest_center_torch(X, C, x2=None, chunk: int | None = None):
    """Index of and squared distance to the nearest row of ``C`` for every row of ``X``.

    Parameters
    ----------
    X : Tensor, shape (n, d)
    C : Tensor, shape (k, d)
        Same dtype and device as ``X``.
    x2 : Tensor, shape (n,), optional
        ``|x|^2`` of the rows, if already known.
    chunk : int, optional
        Rows per tile; default from the memory budget.

    Returns
    -------
    labels : Tensor of int64, shape (n,)
    sqdist : Tensor, shape (n,)
        Non-negative squared Euclidean distances (from the expanded form).
    """
    torch = _torch()
    n, k = X.shape[0], C.shape[0]
    c2 = _sqnorms(C)
    if x2 is None:
        x2 = _sqnorms(X)
    step = chunk or min(n, max(1024, _rows_per_tile(k + X.shape[1], X.element_size(),
                                                    X.device.type)))
    labels = torch.empty(n, dtype=torch.int64, device=X.device)
    sq = torch.empty(n, dtype=X.dtype, device=X.device)
    for s in range(0, n, step):
        block = torch.addmm(c2.unsqueeze(0), X[s:s + step], C.T, alpha=-2.0)
        val, idx = block.min(dim=1)
        labels[s:s + step] = idx
        sq[s:s + step] = (val + x2[s:s + step]).clamp_min_(0)
    return labels, sq


def knn(Q, R=None, k: int = 10, *, exclude_self: bool = False, device: str = "cpu",
        rerank: bool = True, query_chunk: int | None = None, ref_chunk: int | None = None,
        check_finite: bool = True, precision: str = "highest"
        ) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (Euclidean) of every row of ``Q`` among the rows of ``R``.

    Parameters
    ----------
    Q : array_like or Tensor, shape (q, d)
        Queries.
    R : array_like or Tensor, shape (m, d), optional
        Reference points; default ``Q`` itself.
    k : int
        Neighbours per query.
    exclude_self : bool
        With ``R`` omitted: leave each query out of its own neighbours
        (by index, so exact duplicates still count as neighbours).
    device : {"cpu", "cuda"}
        Where the products run; inputs are moved there.
    rerank : bool
        Re-rank ``k + 8`` candidates on directly computed distances (default).
    query_chunk, ref_chunk : int, optional
        Tile sizes; default from a memory budget (128 MiB per tile on the CPU,
        1 GiB on CUDA).
    check_finite : bool
        Scan ``R`` for NaN/infinity (default); False for references
        validated before (a stored index). ``Q`` is always scanned.
    precision : {"highest", "high"}
        float32 matrix products in full precision (default), or ``"high"``:
        TF32 tensor cores on CUDA for the candidate search (several times
        faster on recent GPUs), with ``k + 32`` candidates re-ranked on exact
        distances. No effect on the CPU.

    Returns
    -------
    distances : ndarray of float64, shape (q, k)
        Euclidean distances, ascending along each row.
    indices : ndarray of int64, shape (q, k)
        Rows of ``R``.

    Raises
    ------
    ValueError
        For malformed inputs, a feature-count mismatch, or ``k`` larger than
        the number of candidate neighbours.

    Examples
    --------
    >>> d, i = knn(X, k=5, exclude_self=True)   # doctest: +SKIP
    """
    torch = _torch()
    if precision not in ("highest", "high"):
        raise ValueError(f"precision must be 'highest' or 'high', got {precision!r}")
    Qt = as_tensor(Q, device, name="Q")
    self_query = R is None
    Rt = Qt if self_query else as_tensor(R, device, name="R",
                                         check_finite=check_finite).to(Qt.dtype)
    if exclude_self and not self_query:
        raise ValueError("exclude_self applies when R is omitted (queries against themselves)")
    if Rt.shape[1] != Qt.shape[1]:
        raise ValueError(f"Q has {Qt.shape[1]} features, R has {Rt.shape[1]}")
    q, m = Qt.shape[0], Rt.shape[0]
    avail = m - (1 if exclude_self else 0)
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= avail):
        raise ValueError(f"k must be an int in 1..{avail} ({m} reference points"
                         f"{', self excluded' if exclude_self else ''}), got {k!r}")
    Qt, Rt = _centred(Qt, Rt, self_query)
    margin = RERANK_MARGIN * (4 if precision == "high" else 1)
    kc = min(avail, k + margin) if rerank else k
    dev_type = Qt.device.type
    isz = Qt.element_size()
    rc = ref_chunk or min(m, max(kc, 65536 if dev_type == "cuda" else 32768))
    qc = query_chunk or min(q, max(1, _rows_per_tile(rc, isz, dev_type)))
    r2 = _sqnorms(Rt)
    q2 = r2 if self_query else _sqnorms(Qt)
    out_d = np.empty((q, k), dtype=np.float64)
    out_i = np.empty((q, k), dtype=np.int64)
    old_precision = torch.get_float32_matmul_precision()
    if precision != old_precision:
        torch.set_float32_matmul_precision(precision)
    try:
        _knn_tiles(torch, Qt, Rt, q2, r2, k, kc, qc, rc, exclude_self, rerank, out_d, out_i)
    finally:
        if precision != old_precision:
            torch.set_float32_matmul_precision(old_precision)
    return out_d, out_i


def _knn_tiles(torch, Qt, Rt, q2, r2, k, kc, qc, rc, exclude_self, rerank, out_d, out_i):
    """The tile loop of :func:`knn` (fills ``out_d``, ``out_i``)."""
    q, m = Qt.shape[0], Rt.shape[0]
    inf = float("inf")
    with torch.no_grad():
        for q0 in range(0, q, qc):
            q1 = min(q, q0 + qc)
            qb = Qt[q0:q1]
            best_d = best_i = None
            for r0 in range(0, m, rc):
                r1 = min(m, r0 + rc)
                # |q|^2 is the same along a row: ranks need only |r|^2 - 2 q.r
                tile = torch.addmm(r2[r0:r1].unsqueeze(0), qb, Rt[r0:r1].T, alpha=-2.0)
                if exclude_self and r0 < q1 and q0 < r1:
                    lo, hi = max(q0, r0), min(q1, r1)
                    rows = torch.arange(lo, hi, device=tile.device)
                    tile[rows - q0, rows - r0] = inf
                kt = min(kc, r1 - r0)
                vals, ids = torch.topk(tile, kt, dim=1, largest=False, sorted=False)
                ids += r0
                if best_d is None:
                    best_d, best_i = vals, ids
                else:
                    cat_d = torch.cat([best_d, vals], dim=1)
                    cat_i = torch.cat([best_i, ids], dim=1)
                    keep = min(kc, cat_d.shape[1])
                    best_d, pos = torch.topk(cat_d, keep, dim=1, largest=False, sorted=False)
                    best_i = torch.gather(cat_i, 1, pos)
            if rerank:
                diff = qb.unsqueeze(1) - Rt[best_i]          # (qb, kc, d)
                exact = (diff * diff).sum(dim=2)
                if exclude_self:
                    own = torch.arange(q0, q1, device=exact.device).unsqueeze(1)
                    exact = exact.masked_fill(best_i == own, inf)
                best_d = exact
            else:
                best_d = (best_d + q2[q0:q1].unsqueeze(1)).clamp_min_(0)
            # ascending, ties by index (stable sort of the index-sorted candidates)
            order_i, o = torch.sort(best_i, dim=1)
            sd, o2 = torch.sort(torch.gather(best_d, 1, o), dim=1, stable=True)
            si = torch.gather(order_i, 1, o2)
            out_d[q0:q1] = np.sqrt(sd[:, :k].double().cpu().numpy())
            out_i[q0:q1] = si[:, :k].cpu().numpy()


def _centred(Qt, Rt, self_query: bool):
    """Shift both sets by the mean of ``Rt`` when it dominates their spread.

    Distances do not change, but ``|x|^2 + |y|^2 - 2 x.y`` of points far from
    the origin (relative to their spread) loses every digit in float32.
    """
    sample = Rt[::max(1, Rt.shape[0] // 4096)]     # the decision needs no exact mean
    mu = sample.mean(dim=0, dtype=torch_f64())
    spread = float(sample.var(dim=0, unbiased=False).double().sum())
    if float((mu * mu).sum()) <= spread:
        return Qt, Rt
    mu = Rt.mean(dim=0, dtype=torch_f64()).to(Rt.dtype)
    Rc = Rt - mu
    return (Rc if self_query else Qt - mu), Rc


def torch_f64():
    """``torch.float64`` (kept as a function so that torch is imported late)."""
    return _torch().float64


def kmeans_plusplus_torch(X, n_clusters: int, rng: np.random.RandomState, x2=None):
    """Greedy k-means++ seeding (as scikit-learn's ``kmeans_plusplus``) on a tensor.

    Parameters
    ----------
    X : Tensor, shape (n, d)
    n_clusters : int
    rng : numpy.random.RandomState
        Source of the (few) random numbers; they are drawn on the host in the
        order scikit-learn draws them, so a seed gives the same centres on
        every device and as ``sklearn.cluster.kmeans_plusplus`` (up to
        floating-point ties).
    x2 : Tensor, optional
        ``|x|^2`` of the rows.

    Returns
    -------
    centers : Tensor, shape (n_clusters, d)
    indices : ndarray of int64
        Rows of ``X`` picked as centres.
    """
    torch = _torch()
    n = X.shape[0]
    if x2 is None:
        x2 = _sqnorms(X)
    n_trials = 2 + int(math.log(n_clusters))
    idx = np.empty(n_clusters, dtype=np.int64)
    # same random stream as scikit-learn's kmeans_plusplus (unit sample weights)
    weights = np.ones(n, dtype=np.float32 if X.dtype == torch.float32 else np.float64)
    idx[0] = rng.choice(n, p=weights / weights.sum())
    closest = _sq_to(X, x2, X[idx[:1]]).squeeze(1).double()
    pot = float(closest.sum())
    for c in range(1, n_clusters):
        cum = torch.cumsum(closest, 0)
        draws = torch.from_numpy(rng.uniform(size=n_trials) * pot).to(cum.device)
        cand = torch.searchsorted(cum, draws).clamp_(max=n - 1)
        d_cand = torch.minimum(closest.unsqueeze(1), _sq_to(X, x2, X[cand]).double())
        pots = d_cand.sum(dim=0)
        best = int(torch.argmin(pots))
        idx[c] = int(cand[best])
        closest = d_cand[:, best].contiguous()
        pot = float(pots[best])
    return X[torch.from_numpy(idx).to(X.device)].clone(), idx


def _sq_to(X, x2, C):
    """(n, c) squared distances of the rows of X to the rows of C, tiled."""
    torch = _torch()
    c2 = _sqnorms(C)
    n = X.shape[0]
    step = max(1024, _rows_per_tile(C.shape[0] + X.shape[1], X.element_size(), X.device.type))
    out = torch.empty((n, C.shape[0]), dtype=X.dtype, device=X.device)
    for s in range(0, n, step):
        blk = torch.addmm(c2.unsqueeze(0), X[s:s + step], C.T, alpha=-2.0)
        blk += x2[s:s + step].unsqueeze(1)
        out[s:s + step] = blk.clamp_min_(0)
    return out


def _cluster_sums(X, labels, k: int, chunk: int = 1 << 16):
    """(k, d) float64 sums of the rows of each cluster (chunks summed in X's dtype)."""
    torch = _torch()
    sums = torch.zeros((k, X.shape[1]), dtype=torch.float64, device=X.device)
    for s in range(0, X.shape[0], chunk):
        part = torch.zeros((k, X.shape[1]), dtype=X.dtype, device=X.device)
        sums += part.index_add_(0, labels[s:s + chunk], X[s:s + chunk]).double()
    return sums


def _lloyd(X, x2, C, max_iter: int, tol_abs: float):
    torch = _torch()
    n, k = X.shape[0], C.shape[0]
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        labels, sq = nearest_center_torch(X, C, x2)
        counts = torch.bincount(labels, minlength=k)
        sums = _cluster_sums(X, labels, k)
        new = C.clone()
        nz = counts > 0
        new[nz] = (sums[nz] / counts[nz].unsqueeze(1).double()).to(C.dtype)
        empty = torch.nonzero(~nz).flatten()
        if empty.numel():
            # as scikit-learn: an empty cluster takes the events farthest from their centre
            far = torch.topk(sq, empty.numel()).indices
            new[empty] = X[far]
            log.debug("k-means (torch): %d empty cluster(s) relocated", empty.numel())
        shift = float(((new - C) ** 2).sum())
        C = new
        if shift <= tol_abs:
            break
    labels, sq = nearest_center_torch(X, C, x2)
    return C, labels, float(sq.double().sum()), n_iter


def kmeans_torch(X, n_clusters: int, *, n_init: int = 4, max_iter: int = 100,
                 tol: float = 1e-4, random_state: int = 0):
    """k-means (greedy k-means++ start, Lloyd iterations) on a tensor.

    Parameters
    ----------
    X : Tensor, shape (n, d)
        Validated (see :func:`as_tensor`), on the device to run on.
    n_clusters, n_init, max_iter : int
    tol : float
        Stop when the squared shift of the centres is at most
        ``tol * mean(var(X, axis=0))`` (scikit-learn's rule).
    random_state : int
        Seed; each restart draws its seeding from one host RandomState.

    Returns
    -------
    centers : Tensor, shape (n_clusters, d)
    labels : Tensor of int64, shape (n,)
    inertia : float
        Sum of squared distances to the assigned centre.
    n_iter : int
        Lloyd iterations of the kept restart.
    """
    rng = np.random.RandomState(random_state)
    # as scikit-learn: work on centred data (exact distances in float32), shift back at the end
    mu = X.mean(dim=0, dtype=torch_f64())
    spread = float(X.var(dim=0, unbiased=False).double().sum())
    shift = float((mu * mu).sum()) > 1e-3 * spread
    if shift:
        X = X - mu.to(X.dtype)
    x2 = _sqnorms(X)
    tol_abs = float(tol) * spread / X.shape[1] if tol else 0.0
    best = None
    for _ in range(n_init):
        C0, _ = kmeans_plusplus_torch(X, n_clusters, rng, x2)
        res = _lloyd(X, x2, C0, max_iter, tol_abs)
        if best is None or res[2] < best[2]:
            best = res
    if shift:
        best = (best[0] + mu.to(best[0].dtype),) + tuple(best[1:])
    return best
