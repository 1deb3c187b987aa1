"""Agreement of a clustering with known labels (contingency, purity, ARI, NMI)."""
from __future__ import annotations

import numpy as np

__all__ = ["label_scores"]


def label_scores(y_true, y_pred) -> dict:
    """Compare clusters with known classes (e.g. LP, VT, TC, TR).

    Parameters
    ----------
    y_true : array_like, shape (n,)
        Known classes (strings or integers).
    y_pred : array_like of int, shape (n,)
        Cluster of each event (-1, noise, counts as a cluster of its own).

    Returns
    -------
    dict
        - ``classes``: sorted class names (str), ``clusters``: sorted cluster ids;
        - ``contingency``: counts, one row per class, one column per cluster;
        - ``purity``: sum over clusters of their largest class count, / n;
        - ``ari``: adjusted Rand index; ``nmi``: normalised mutual information;
        - ``per_class``: for each class, ``n``, ``dominant_cluster`` (the cluster
          holding most of its events), ``share`` (the fraction of its events
          there: the paper's "91% of LP in one cluster"), and that cluster's
          size: ``cluster_size`` events, ``cluster_fraction`` of all events (a
          share means little when the cluster holds most events).

    Raises
    ------
    ValueError
        If the inputs are not 1-D of the same length, or are empty.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    yt = np.asarray(y_true)
    yp = np.asarray(y_pred)
    if yt.ndim != 1 or yp.ndim != 1 or yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred must be 1-D of the same length, got shapes "
                         f"{yt.shape} and {yp.shape}")
    if yt.size == 0:
        raise ValueError("y_true and y_pred are empty")
    yt = yt.astype(str)
    classes, ti = np.unique(yt, return_inverse=True)
    clusters, pi = np.unique(yp, return_inverse=True)
    cont = np.zeros((classes.size, clusters.size), dtype=np.int64)
    np.add.at(cont, (ti, pi), 1)
    n = int(yt.size)
    per_class: dict = {}
    for r, c in enumerate(classes):
        j = int(np.argmax(cont[r]))
        size = int(cont[:, j].sum())
        per_class[str(c)] = {"n": int(cont[r].sum()), "dominant_cluster": clusters[j].item(),
                             "share": float(cont[r, j] / cont[r].sum()),
                             "cluster_size": size, "cluster_fraction": size / n}
    return {
        "classes": [str(c) for c in classes],
        "clusters": [c.item() for c in clusters],
        "contingency": cont.tolist(),
        "purity": float(cont.max(axis=0).sum() / n),
        "ari": float(adjusted_rand_score(yt, yp)),
        "nmi": float(normalized_mutual_info_score(yt, yp)),
        "per_class": per_class,
        "n": n,
    }
