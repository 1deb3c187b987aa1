"""Input checking at the boundary of the clustering package.

One function turns what users pass into a clean 2-D float array or raises a
ValueError saying what was expected and what arrived; the algorithms below it
trust their inputs.
"""
from __future__ import annotations

import numpy as np

__all__ = ["check_features", "check_n_clusters", "check_device"]


def check_features(X, *, name: str = "X", dtype=np.float64, min_samples: int = 1) -> np.ndarray:
    """Return ``X`` as a C-contiguous 2-D finite float array.

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features)
        Feature matrix.
    name : str
        Name used in error messages.
    dtype : numpy dtype or None
        Floating dtype of the result; None keeps float32/float64 input as it
        is and converts anything else to float64.
    min_samples : int
        Smallest acceptable number of rows.

    Returns
    -------
    ndarray, shape (n_samples, n_features)

    Raises
    ------
    ValueError
        If ``X`` is not numeric, not 2-D, empty, or holds NaN or infinity.
    """
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be a 2-D numeric array; could not convert it ({exc})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be a 2-D numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n_samples, n_features), got {arr.ndim}-D array "
            f"of shape {arr.shape}; reshape a single event with X.reshape(1, -1)")
    if arr.shape[0] < min_samples:
        raise ValueError(f"{name} has {arr.shape[0]} samples; at least {min_samples} needed")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has 0 features (shape {arr.shape})")
    if dtype is None:
        dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
    arr = np.ascontiguousarray(arr, dtype=dtype)
    # cheap test first (NaN/inf propagate through a float64 row sum); exact check on failure
    row_ok = np.isfinite(arr.sum(axis=1, dtype=np.float64))
    if not row_ok.all():
        row_ok = np.isfinite(arr).all(axis=1)
    if not row_ok.all():
        bad_rows = np.flatnonzero(~row_ok)
        raise ValueError(
            f"{name} holds NaN or infinite values in {bad_rows.size} of {arr.shape[0]} rows "
            f"(first rows: {bad_rows[:5].tolist()}); drop or impute them before clustering")
    return arr


def check_n_clusters(n_clusters: int, n_samples: int) -> None:
    """Raise a ValueError unless ``2 <= n_clusters <= n_samples``.

    Parameters
    ----------
    n_clusters : int
        Requested number of clusters.
    n_samples : int
        Number of samples available.

    Raises
    ------
    ValueError
        If ``n_clusters`` exceeds the number of samples.
    """
    if n_clusters > n_samples:
        raise ValueError(f"n_clusters={n_clusters} is larger than the number of samples "
                         f"({n_samples}); choose n_clusters <= {n_samples}")


def check_device(device: str, gpu_methods: str = "") -> str:
    """Validate a ``device`` argument of an estimator without GPU backend.

    Parameters
    ----------
    device : {"cpu", "auto", "cuda"}
        Requested device.
    gpu_methods : str
        Name of the estimator, used in the message.

    Returns
    -------
    str
        Always ``"cpu"``.

    Raises
    ------
    ValueError
        For ``"cuda"`` (no GPU backend) or an unknown value.
    """
    if device in ("cpu", "auto"):
        return "cpu"
    if device == "cuda":
        raise ValueError(f"{gpu_methods or 'this method'} has no GPU backend; use device='cpu' or 'auto'")
    raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
