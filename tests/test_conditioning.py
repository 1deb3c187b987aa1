"""Feature conditioning: each step against a plain reference, spec strings, saving in the model."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from engine.cluster import ClusterModel, FeatureConditioner, KMeans


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n, d = 300, 12
    A = rng.normal(size=(d, d))
    X = rng.normal(size=(n, d)) @ A + 5.0
    groups = rng.choice(["ST1", "ST2", "ST3"], size=n)
    offsets = {"ST1": 0.0, "ST2": 8.0, "ST3": -4.0}
    X += np.array([offsets[g] for g in groups])[:, None]
    return X, groups


def _ref_station_centre(X, groups):
    out = X.copy()
    for g in set(groups):
        m = groups == g
        out[m] -= X[m].mean(axis=0)
    return out


def test_station_centring_matches_reference(data):
    X, g = data
    c = FeatureConditioner(station=True).fit(X, groups=g)
    np.testing.assert_allclose(c.transform(X, groups=g), _ref_station_centre(X, g), atol=1e-12)
    # unseen stations (and missing groups) use the global centre
    Z = c.transform(X[:5], groups=["NEW"] * 5)
    np.testing.assert_allclose(Z, X[:5] - X.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(c.transform(X[:5]), X[:5] - X.mean(axis=0), atol=1e-12)


def test_standardize_pca_whiten_l2_match_sklearn(data):
    X, g = data
    ref_std = StandardScaler().fit_transform(X)
    c = FeatureConditioner(standardize=True).fit(X)
    np.testing.assert_allclose(c.transform(X), ref_std, atol=1e-10)

    for whiten in (False, True):
        ref = PCA(5, whiten=whiten, svd_solver="full").fit_transform(ref_std)
        Z = FeatureConditioner(standardize=True, pca=5, whiten=whiten).fit_transform(X)
        # principal components are defined up to sign
        signs = np.sign((Z * ref).sum(axis=0))
        np.testing.assert_allclose(Z * signs, ref, atol=1e-8)
        if whiten:
            np.testing.assert_allclose(Z.std(axis=0, ddof=1), 1.0, atol=1e-8)

    Z = FeatureConditioner.from_spec("station+standardize+pca4+l2").fit_transform(X, groups=g)
    assert Z.shape == (300, 4)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-12)
    ref = PCA(4, svd_solver="full").fit_transform(
        StandardScaler().fit_transform(_ref_station_centre(X, g)))
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs(Z), np.abs(ref), atol=1e-8)


def test_pca_capped_and_constant_features():
    X = np.random.default_rng(1).normal(size=(6, 4))
    X[:, 2] = 3.0
    c = FeatureConditioner(standardize=True, pca=50).fit(X)
    assert c.n_components_ == 4 and c.transform(X).shape == (6, 4)
    assert np.isfinite(c.transform(X)).all()
    Z = FeatureConditioner(l2=True).fit_transform(np.zeros((2, 3)))
    assert (Z == 0).all()


def test_spec_parsing_and_round_trip():
    c = FeatureConditioner.from_spec(" L2 + PCA50+std+center ")
    assert (c.station, c.standardize, c.pca, c.whiten, c.l2) == (True, True, 50, False, True)
    assert c.spec == "station+standardize+pca50+l2"
    for spec in ["station+standardize+pca50+l2", "pca8+whiten", "l2", "none", "standardize"]:
        assert FeatureConditioner.from_spec(spec).spec == spec
        assert FeatureConditioner.from_spec(FeatureConditioner.from_spec(spec).spec).get_params() \
            == FeatureConditioner.from_spec(spec).get_params()
    assert FeatureConditioner.from_spec("").spec == "none"
    with pytest.raises(ValueError, match="unknown step 'pac50'"):
        FeatureConditioner.from_spec("standardize+pac50")
    with pytest.raises(ValueError, match="'whiten' needs a PCA step"):
        FeatureConditioner.from_spec("whiten+l2")
    with pytest.raises(ValueError, match="step 'standardize' given twice"):
        FeatureConditioner.from_spec("std+standardize")
    with pytest.raises(ValueError, match="keeps no component"):
        FeatureConditioner.from_spec("pca0")


def test_bad_input(data):
    X, g = data
    with pytest.raises(ValueError, match="station centring needs groups"):
        FeatureConditioner(station=True).fit(X)
    with pytest.raises(ValueError, match="one entry per event"):
        FeatureConditioner(station=True).fit(X, groups=g[:10])
    c = FeatureConditioner(standardize=True).fit(X)
    with pytest.raises(ValueError, match="X has 3 features, the conditioner was fitted with 12"):
        c.transform(X[:, :3])


def test_model_with_conditioner_round_trip(tmp_path, data):
    X, g = data
    cond = FeatureConditioner.from_spec("station+standardize+pca6+whiten+l2").fit(X, groups=g)
    Z = cond.transform(X, groups=g)
    km = KMeans(3, random_state=0).fit(Z)
    model = ClusterModel.from_labels(X, km.labels_, centers=km.cluster_centers_,
                                     conditioner=cond, groups=g, quantile=0.9)
    assert model.n_features_in == 12 and model.centers.shape == (3, 6)
    lab, dist, novel = model.assign(X, groups=g)
    np.testing.assert_array_equal(lab[~novel], km.labels_[~novel])
    model.save(tmp_path / "model")
    loaded = ClusterModel.load(tmp_path / "model")
    assert loaded.conditioner.spec == cond.spec
    lab2, dist2, novel2 = loaded.assign(X, groups=g)
    np.testing.assert_array_equal(lab2, lab)
    np.testing.assert_array_equal(novel2, novel)
    np.testing.assert_allclose(dist2, dist, rtol=0, atol=0)
    # the conditioning is really applied: raw-space assignment would differ
    with pytest.raises(ValueError, match="X has 6 features, the model was built on 12"):
        loaded.assign(Z)
    # groups matter: other stations get other (global) centring
    assert not np.allclose(loaded.assign(X, groups=None)[1], dist)


def test_model_without_conditioner_unchanged(tmp_path):
    X = np.random.default_rng(2).normal(size=(40, 3))
    lab = (X[:, 0] > 0).astype(int)
    m = ClusterModel.from_labels(X, lab)
    m.save(tmp_path / "m")
    loaded = ClusterModel.load(tmp_path / "m")
    assert loaded.conditioner is None and loaded.n_features_in == 3
    np.testing.assert_array_equal(loaded.assign(X)[0], m.assign(X)[0])


def test_model_assign_on_cuda_path_matches_cpu(monkeypatch, data):
    """ClusterModel.assign(device="cuda") (torch nearest centre) with CPU torch standing in."""
    import torch

    from engine.cluster import _torch

    monkeypatch.setattr(_torch, "torch_device", lambda device: torch.device("cpu"))
    X, g = data
    lab = KMeans(4, random_state=0).fit(X).labels_
    model = ClusterModel.from_labels(X, lab, quantile=0.8)
    a = model.assign(X)
    b = model.assign(X.astype(np.float32), device="cuda")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    np.testing.assert_array_equal(a[2], b[2])
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        model.assign(X, device="gpu")


@pytest.mark.parametrize("n", [10, 24, 5_000])
def test_blockwise_pca_matches_sklearn(monkeypatch, n):
    """PCA by the thin SVD (n <= d) or by the covariance summed over blocks of rows
    (n > d): the components of scikit-learn, whatever the block size."""
    import engine.cluster.conditioning as cond

    monkeypatch.setattr(cond, "_BLOCK_ROWS", 7)   # many blocks, a ragged last one
    rng = np.random.default_rng(3)
    d = 24
    # a clear spectrum so the leading components are well separated
    X = rng.normal(size=(n, d)) * np.linspace(6.0, 0.5, d) @ np.linalg.qr(
        rng.normal(size=(d, d)))[0] + 3.0
    k = min(4, n)
    Z = FeatureConditioner(standardize=True, pca=k).fit_transform(X)
    ref = PCA(k, svd_solver="full").fit(StandardScaler().fit_transform(X))
    R = ref.transform(StandardScaler().fit_transform(X))
    signs = np.sign((Z * R).sum(axis=0))
    np.testing.assert_allclose(Z * signs, R, atol=1e-8 * np.abs(R).max())
    c = FeatureConditioner(standardize=True, pca=k).fit(X)
    np.testing.assert_allclose(c.explained_variance_[:k - 1], ref.explained_variance_[:k - 1],
                               rtol=1e-8)


def test_float32_input_is_not_copied_to_float64_whole(monkeypatch):
    """float32 features are read in blocks: same result as float64 input, and the
    conditioner never asks for a float64 copy of all of X."""
    import engine.cluster.conditioning as cond

    rng = np.random.default_rng(4)
    X32 = rng.normal(size=(3000, 40)).astype(np.float32)
    groups = rng.choice(["A", "B"], size=3000)
    seen = []
    real = cond.check_features

    def spy(X, **kw):
        seen.append(kw.get("dtype", np.float64))
        return real(X, **kw)

    monkeypatch.setattr(cond, "check_features", spy)
    monkeypatch.setattr(cond, "_BLOCK_ROWS", 512)
    spec = "station+standardize+pca8+l2"
    Z32 = FeatureConditioner.from_spec(spec).fit_transform(X32, groups=groups)
    assert seen and all(dt is None for dt in seen)
    Z64 = FeatureConditioner.from_spec(spec).fit_transform(X32.astype(np.float64),
                                                            groups=groups)
    np.testing.assert_allclose(Z32, Z64, atol=1e-12)
