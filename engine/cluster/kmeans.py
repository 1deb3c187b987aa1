"""k-means with k-means++ start on scikit-learn, FAISS (CPU/GPU), cuML (GPU) or torch (CPU/GPU)."""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from .._util import require
from ._base import BaseClusterer
from ._nearest import distances_to_assigned, nearest_center
from ._validation import check_features, check_n_clusters

__all__ = ["KMeans", "resolve_kmeans_backend"]


def _faiss_gpus() -> int:
    try:
        import faiss
    except ImportError:
        return 0
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _has_module(name: str) -> bool:
    from importlib.util import find_spec
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def resolve_kmeans_backend(backend: str, device: str, n_samples: int,
                           large: int = 100_000) -> tuple[str, str]:
    """Pick the (backend, device) pair that a :class:`KMeans` fit will use.

    Parameters
    ----------
    backend : {"auto", "sklearn", "faiss", "cuml", "torch"}
    device : {"cpu", "cuda", "auto"}
    n_samples : int
        Number of events; on the CPU ``backend="auto"`` takes FAISS above ``large``.
    large : int
        Size from which FAISS is preferred on the CPU.

    Returns
    -------
    (backend, device) : tuple of str
        ``device`` is ``"cpu"`` or ``"cuda"``.

    Raises
    ------
    ValueError
        For combinations that cannot work (``"cuml"`` on the CPU, ``"sklearn"``
        on CUDA, CUDA asked for but no GPU backend present).

    Notes
    -----
    On CUDA ``"auto"`` prefers cuML, then FAISS-GPU, then torch (present
    wherever torch sees a GPU). On the CPU ``"auto"`` never picks torch.
    """
    from ._torch import cuda_available

    if device == "auto":
        try:
            return resolve_kmeans_backend(backend, "cuda", n_samples, large)
        except (ValueError, ImportError):
            return resolve_kmeans_backend("auto" if backend == "cuml" else backend, "cpu",
                                          n_samples, large)
    if device == "cpu":
        if backend == "cuml":
            raise ValueError("backend='cuml' runs on the GPU only; use device='cuda' or "
                             "backend='sklearn'/'faiss' on the CPU")
        if backend == "auto":
            backend = "faiss" if (n_samples > large and _has_module("faiss")) else "sklearn"
        return backend, "cpu"
    if device == "cuda":
        if backend == "sklearn":
            raise ValueError("backend='sklearn' has no GPU path; use backend='faiss' or 'cuml' "
                             "with device='cuda'")
        if backend in ("auto", "cuml") and _has_module("cuml"):
            return "cuml", "cuda"
        if backend in ("auto", "faiss") and _faiss_gpus() > 0:
            return "faiss", "cuda"
        if backend in ("auto", "torch") and cuda_available():
            return "torch", "cuda"
        if backend == "cuml":
            require("cuml", "gpu", "KMeans(backend='cuml')")
        raise ValueError(
            f"device='cuda' with backend={backend!r} needs a visible GPU (torch sees none) "
            f"or cuML / FAISS-GPU (found cuML: {_has_module('cuml')}, FAISS GPUs: "
            f"{_faiss_gpus()}); use device='cpu' or 'auto'")
    raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")


class KMeans(BaseClusterer):
    """k-means clustering (k-means++ start) with interchangeable backends.

    Parameters
    ----------
    n_clusters : int, default 3
        Number of clusters.
    n_init : int, default 4
        Restarts; the run with the lowest inertia is kept.
    max_iter : int, default 100
        Lloyd iterations per restart.
    tol : float, default 1e-4
        Relative tolerance (scikit-learn and torch backends: stop when the
        squared centre shift is below ``tol`` times the mean feature variance).
    backend : {"auto", "sklearn", "faiss", "cuml", "torch"}, default "auto"
        ``"auto"``: cuML, FAISS-GPU or else torch on CUDA; on the CPU exact
        scikit-learn Lloyd up to 100,000 events and FAISS above. ``"torch"``:
        greedy k-means++ and Lloyd iterations on tiled matrix products, on the
        CPU or CUDA (a torch tensor given to :meth:`fit` is clustered on its
        own device).
    device : {"cpu", "cuda", "auto"}, default "cpu"
    minibatch_above : int, default 200_000
        The scikit-learn backend switches to ``MiniBatchKMeans`` above this size.
    max_points_per_centroid : int, default 4096
        FAISS trains on at most ``k * max_points_per_centroid`` seeded sampled
        events (each restart starts from scikit-learn's greedy k-means++),
        then assigns all of them.
    random_state : int, RandomState or None, default None
        Seed of the k-means++ start (and of FAISS' training subsample).

    Attributes
    ----------
    cluster_centers_ : ndarray, shape (n_clusters, n_features)
    labels_ : ndarray of int64, shape (n_samples,)
    inertia_ : float
        Sum of squared distances of the events to their centre.
    backend_, device_ : str
        Backend and device actually used.
    n_iter_ : int
        Lloyd iterations of the kept restart (torch backend only).
    n_features_in_ : int

    Notes
    -----
    On well-separated data all backends find the same partition (adjusted Rand
    index 1) and centres equal within ``1e-3`` of the data scale; on
    overlapping data they are different local optima of the same objective.

    Examples
    --------
    >>> km = KMeans(n_clusters=3, random_state=0).fit(X)  # doctest: +SKIP
    >>> km.labels_, km.cluster_centers_                    # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "backend": [StrOptions({"auto", "sklearn", "faiss", "cuml", "torch"})],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "minibatch_above": [Interval(Integral, 1, None, closed="left")],
        "max_points_per_centroid": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_clusters: int = 3, *, n_init: int = 4, max_iter: int = 100,
                 tol: float = 1e-4, backend: str = "auto", device: str = "cpu",
                 minibatch_above: int = 200_000, max_points_per_centroid: int = 4096,
                 random_state=None):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.backend = backend
        self.device = device
        self.minibatch_above = minibatch_above
        self.max_points_per_centroid = max_points_per_centroid
        self.random_state = random_state

    def fit(self, X, y=None) -> "KMeans":
        """Cluster ``X``.

        Parameters
        ----------
        X : array_like or torch.Tensor, shape (n_samples, n_features)
            A tensor is clustered by the torch backend on its own device
            (unless ``backend`` names another one; it is then copied to NumPy).
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        ValueError
            On bad parameters, NaN features, ``n_clusters > n_samples`` or an
            impossible backend/device pair.
        """
        from ._torch import is_tensor

        self._validate_params()
        if is_tensor(X):
            if self.backend in ("auto", "torch"):
                return self._fit_tensor(X)
            X = X.detach().cpu().numpy()
        X = check_features(X, dtype=None)
        check_n_clusters(self.n_clusters, X.shape[0])
        backend, device = resolve_kmeans_backend(self.backend, self.device, X.shape[0])
        if backend == "torch":
            return self._fit_tensor(X, device)
        fit = {"sklearn": self._fit_sklearn, "faiss": self._fit_faiss, "cuml": self._fit_cuml}
        centers, labels = fit[backend](X, device)
        self.cluster_centers_ = np.asarray(centers, dtype=np.float64)
        if labels is None:
            labels, dist = nearest_center(X, self.cluster_centers_)
        else:
            labels = np.asarray(labels, dtype=np.int64)
            dist = distances_to_assigned(X, self.cluster_centers_, labels)
        self.labels_ = labels
        self.inertia_ = float(np.sum(dist ** 2))
        self.backend_, self.device_ = backend, device
        self.n_features_in_ = X.shape[1]
        return self

    def _fit_tensor(self, X, device: str | None = None) -> "KMeans":
        """Torch backend on ``device`` (default: the tensor's own device)."""
        from ._torch import as_tensor, kmeans_torch

        if device is None:
            device = "cuda" if X.device.type == "cuda" else "cpu"
        Xt = as_tensor(X, device)
        check_n_clusters(self.n_clusters, Xt.shape[0])
        C, labels, inertia, n_iter = kmeans_torch(
            Xt, self.n_clusters, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
            random_state=self._seed())
        self.cluster_centers_ = C.double().cpu().numpy()
        self.labels_ = labels.cpu().numpy().astype(np.int64)
        self.inertia_ = float(inertia)
        self.n_iter_ = int(n_iter)
        self.backend_, self.device_ = "torch", device
        self.n_features_in_ = int(Xt.shape[1])
        return self

    def _seed(self) -> int:
        if isinstance(self.random_state, Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _fit_sklearn(self, X: np.ndarray, device: str):
        from sklearn.cluster import KMeans as SkKMeans, MiniBatchKMeans

        if X.shape[0] > self.minibatch_above:
            est = MiniBatchKMeans(self.n_clusters, init="k-means++", n_init=self.n_init,
                                  max_iter=self.max_iter, batch_size=4096, tol=self.tol,
                                  random_state=self.random_state)
        else:
            est = SkKMeans(self.n_clusters, init="k-means++", n_init=self.n_init,
                           max_iter=self.max_iter, tol=self.tol, random_state=self.random_state)
        est.fit(X)
        return est.cluster_centers_, est.labels_

    def _fit_faiss(self, X: np.ndarray, device: str):
        """FAISS Lloyd iterations from scikit-learn's greedy k-means++ start.

        FAISS' own k-means++ is the plain (non-greedy) variant and lands in bad
        local optima more often; seeding every restart with
        :func:`sklearn.cluster.kmeans_plusplus` on the (seeded) training sample
        makes the backends agree.
        """
        from sklearn.cluster import kmeans_plusplus

        if device == "cuda":
            faiss = require("faiss", "gpu", "KMeans(backend='faiss', device='cuda')")
        else:
            import faiss  # faiss-cpu is a core dependency
        rng = check_random_state(self._seed())
        n, d = X.shape
        n_train = min(n, self.n_clusters * self.max_points_per_centroid)
        train = (np.sort(rng.choice(n, n_train, replace=False)) if n_train < n
                 else slice(None))
        Xt = np.ascontiguousarray(X[train], dtype=np.float32)
        Xt64 = Xt.astype(np.float64)   # sklearn's float32 distance path upcasts in chunks: slow
        best_obj, best = np.inf, None
        for _ in range(self.n_init):
            C0, _ = kmeans_plusplus(Xt64, self.n_clusters, random_state=rng.randint(2**31 - 1))
            km = faiss.Kmeans(d, self.n_clusters, niter=self.max_iter, nredo=1,
                              seed=int(rng.randint(2**31 - 1)), verbose=False,
                              gpu=(device == "cuda"), max_points_per_centroid=n_train,
                              min_points_per_centroid=1)
            obj = km.train(Xt, init_centroids=np.ascontiguousarray(C0, dtype=np.float32))
            if obj < best_obj:
                best_obj, best = obj, km
        # float32 input: labels from the index; float64: assigned in float64 by fit()
        labels = best.index.search(X, 1)[1][:, 0] if X.dtype == np.float32 else None
        return best.centroids.astype(np.float64), labels

    def _fit_cuml(self, X: np.ndarray, device: str):  # pragma: no cover - needs a GPU
        cuml = require("cuml", "gpu", "KMeans(backend='cuml')")
        est = cuml.cluster.KMeans(n_clusters=self.n_clusters, init="k-means++",
                                  n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                                  random_state=self._seed(), output_type="numpy")
        est.fit(np.ascontiguousarray(X, dtype=np.float32))
        return np.asarray(est.cluster_centers_), np.asarray(est.labels_)
