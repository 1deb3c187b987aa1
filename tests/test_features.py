"""SqueezeNet network, feature extractor and weights files (engine.features)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.base import clone

from engine.features import SqueezeNet, SqueezeNetExtractor
from engine.features import weights as W
from engine.features.layouts import flatten_activation as _flatten
from engine.features.squeezenet import GAP_NAMES, LAYER_NAMES, PaddedMaxPool2d


def _images(n: int, size: int = 227, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def random_ext() -> SqueezeNetExtractor:
    return SqueezeNetExtractor(weights="random", random_state=3, batch_size=4).fit()


# ---------------------------------------------------------------- max-pool padding
def _maxpool_reference(x: np.ndarray, pad: tuple[int, int, int, int], k: int = 3,
                       s: int = 2) -> np.ndarray:
    """Slow max-pool: window rows/cols outside the input (the padding) never count."""
    top, bottom, left, right = pad
    n, c, h, w = x.shape
    oh = (h + top + bottom - k) // s + 1
    ow = (w + left + right - k) // s + 1
    out = np.empty((n, c, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s - top, j * s - left
            rows = [r for r in range(r0, r0 + k) if 0 <= r < h]
            cols = [q for q in range(c0, c0 + k) if 0 <= q < w]
            out[:, :, i, j] = x[:, :, rows][:, :, :, cols].max(axis=(2, 3))
    return out


@pytest.mark.parametrize("pad", [(0, 0, 0, 0), (0, 1, 0, 1), (1, 0, 1, 0), (1, 1, 0, 2)])
@pytest.mark.parametrize("hw", [(7, 7), (8, 9), (14, 13)])
def test_padded_maxpool_matches_reference(pad, hw):
    x = np.random.default_rng(1).normal(size=(2, 3, *hw)).astype(np.float32)
    got = PaddedMaxPool2d(pad)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, _maxpool_reference(x, pad))


def test_padding_of_negative_inputs_is_ignored():
    # with -inf padding a padded border never wins, even when all inputs are negative
    x = -torch.arange(1, 17, dtype=torch.float32).reshape(1, 1, 4, 4)
    got = PaddedMaxPool2d((0, 1, 0, 1))(x)
    np.testing.assert_array_equal(got.numpy(), _maxpool_reference(x.numpy(), (0, 1, 0, 1)))
    assert (got < 0).all()


def test_bad_padding_rejected():
    with pytest.raises(ValueError, match="pool3"):
        SqueezeNet(2, pool_padding={"pool3": (0, 1)})
    with pytest.raises(ValueError, match="unknown pool"):
        SqueezeNet(2, pool_padding={"pool4": (0, 0, 0, 0)})


# ---------------------------------------------------------------- network shapes
def test_layer_shapes_227():
    torch.manual_seed(0)
    net = SqueezeNet(2).eval()
    x = torch.from_numpy(_images(2)).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        out = net.forward_layers(x, list(LAYER_NAMES) + ["fire9_gap"])
    expect = {"conv1": (64, 113, 113), "pool1": (64, 56, 56), "fire2": (128, 56, 56),
              "fire3": (128, 56, 56), "pool3": (128, 28, 28), "fire5": (256, 28, 28),
              "pool5": (256, 14, 14), "fire9": (512, 14, 14), "conv10": (2, 14, 14),
              "pool10": (2,), "prob": (2,), "fire9_gap": (512,)}
    for name, shape in expect.items():
        assert tuple(out[name].shape) == (2, *shape), name
    torch.testing.assert_close(out["prob"].sum(1), torch.ones(2))
    torch.testing.assert_close(out["pool10"], torch.relu(out["conv10"]).mean(dim=(2, 3)))
    torch.testing.assert_close(out["fire9_gap"], out["fire9"].mean(dim=(2, 3)))


def test_flatten_is_matlab_column_major():
    act = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    flat = _flatten(act)
    n, c, h, w = act.shape
    for ci in range(c):
        for i in range(h):
            for j in range(w):
                assert flat[1, ci * h * w + j * h + i] == act[1, ci, i, j]
    # same as numpy's Fortran-order ravel of the H x W x C array
    np.testing.assert_array_equal(flat[0].numpy(),
                                  act[0].permute(1, 2, 0).numpy().ravel(order="F"))


def test_replace_head():
    net = SqueezeNet(2)
    net.replace_head(5)
    assert net.conv10.weight.shape == (5, 512, 1, 1) and net.n_classes == 5


# ---------------------------------------------------------------- extractor
@pytest.mark.parametrize("layer, dim", [("conv10", 392), ("fire9_gap", 512), ("pool10", 2),
                                        ("prob", 2), ("fire5_gap", 256), ("pool5", 256 * 196)])
def test_feature_layer_shapes(random_ext, layer, dim):
    ext = clone(random_ext).set_params(feature_layer=layer)
    f = ext.transform(_images(3))
    assert f.shape == (3, dim) and f.dtype == np.float32 and np.isfinite(f).all()


def test_conv10_feature_equals_network_activation(random_ext):
    x = _images(2, seed=5)
    f = random_ext.transform(x)
    with torch.inference_mode():
        act = random_ext.model_.forward_layers(
            torch.from_numpy(x).permute(0, 3, 1, 2).float(), ["conv10"])["conv10"]
    np.testing.assert_allclose(f, act.permute(0, 1, 3, 2).reshape(2, -1).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_unknown_layer_rejected():
    with pytest.raises(ValueError, match="feature_layer 'fire10': an unknown layer"):
        SqueezeNetExtractor(weights="random", feature_layer="fire10").fit()
    assert "fire9_gap" in GAP_NAMES


def test_batching_does_not_change_features(random_ext):
    x = _images(7, seed=2)
    a = clone(random_ext).set_params(batch_size=2).transform(x)
    b = clone(random_ext).set_params(batch_size=7).transform(x)
    # float sums may be ordered differently per batch shape: relative to the feature scale
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())


def test_torch_and_list_inputs(random_ext):
    x = _images(3, seed=4)
    ref = random_ext.transform(x)
    np.testing.assert_allclose(random_ext.transform(torch.from_numpy(x)), ref, rtol=1e-6)
    np.testing.assert_allclose(random_ext.transform(torch.from_numpy(x).float()), ref,
                               rtol=1e-6)
    np.testing.assert_allclose(random_ext.transform(list(x)), ref, rtol=1e-6)
    # a batch of one may use other conv kernels: equal to float rounding of the scale
    np.testing.assert_allclose(random_ext.transform(x[0]), ref[:1], rtol=0,
                               atol=1e-5 * np.abs(ref).max())
    out = clone(random_ext).set_params(output="torch").transform(x)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6)
    assert random_ext.transform(x[:0]).shape == (0, 392)


def test_predict_and_proba(random_ext):
    x = _images(4, seed=6)
    p = random_ext.predict_proba(x)
    assert p.shape == (4, 2)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    assert list(random_ext.predict(x)) == list(random_ext.classes_[p.argmax(1)])
    assert random_ext.fit() is random_ext


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 224, 224, 3), np.uint8), r"\(n, 227, 227, 3\)"),
    (np.zeros((2, 227, 227, 4), np.uint8), r"\(n, 227, 227, 3\)"),
    (np.zeros((2, 227, 227), np.uint8), r"\(n, 227, 227, 3\)"),
    (np.zeros((2, 227, 227, 3), np.float64), "uint8"),
    (torch.zeros((1, 227, 227, 3), dtype=torch.int32), "uint8 or float"),
    ([np.zeros((227, 227, 3), np.uint8), np.zeros((200, 227, 3), np.uint8)], "different"),
])
def test_bad_images_raise_clear_errors(random_ext, bad, match):
    with pytest.raises(ValueError, match=match):
        random_ext.transform(bad)


def test_device_and_precision_checks():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            SqueezeNetExtractor(weights="random", device="cuda").fit()
        assert SqueezeNetExtractor(weights="random", device="auto").fit().device_.type == "cpu"
    with pytest.raises(ValueError, match="needs CUDA"):
        SqueezeNetExtractor(weights="random", device="cpu", precision="fp16").fit()
    with pytest.raises(ValueError, match="tensorrt"):
        SqueezeNetExtractor(weights="random", device="cpu", tensorrt=True).fit()
    with pytest.raises(ValueError):
        SqueezeNetExtractor(weights="random", batch_size=0).fit()
    with pytest.raises(ValueError):
        SqueezeNetExtractor(weights="random", precision="fp8").fit()


def test_set_params_refits(random_ext):
    ext = clone(random_ext).fit()
    assert ext.transform(_images(1)).shape == (1, 392)
    ext.set_params(feature_layer="fire9_gap")
    assert ext.transform(_images(1)).shape == (1, 512)


def test_tensorrt_cache_key(random_ext, tmp_path):
    ext = clone(random_ext).set_params(tensorrt_cache=tmp_path).fit()
    a = ext.tensorrt_cache_path("conv10", (4, 3, 227, 227))
    assert a.parent == tmp_path
    assert a == ext.tensorrt_cache_path("conv10", (4, 3, 227, 227))
    assert a != ext.tensorrt_cache_path("conv10", (8, 3, 227, 227))
    assert a != ext.tensorrt_cache_path("fire9_gap", (4, 3, 227, 227))
    other = clone(random_ext).set_params(tensorrt_cache=tmp_path, random_state=4).fit()
    assert a != other.tensorrt_cache_path("conv10", (4, 3, 227, 227))


# ---------------------------------------------------------------- weights files
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_save_load_round_trip(random_ext, tmp_path, suffix):
    x = _images(3, seed=7)
    path = random_ext.save(tmp_path / f"w{suffix}")
    assert path.is_file() and W.metadata_path(path).is_file()
    meta = json.loads(W.metadata_path(path).read_text())
    assert meta["classes"] == ["class0", "class1"] and meta["input_size"] == [227, 227, 3]
    assert meta["format"] == W.FORMAT
    back = SqueezeNetExtractor.load(path, batch_size=random_ext.batch_size)
    np.testing.assert_array_equal(back.transform(x), random_ext.transform(x))
    assert list(back.classes_) == list(random_ext.classes_)
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_weights_files(random_ext, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        SqueezeNetExtractor.load(tmp_path / "none.safetensors")
    path = random_ext.save(tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="n_classes=3"):
        SqueezeNetExtractor.load(path, n_classes=3)
    garbage = tmp_path / "g.pt"
    garbage.write_bytes(b"not a torch file")
    W.metadata_path(garbage).write_text(W.metadata_path(path).read_text())
    with pytest.raises(ValueError, match="unreadable"):
        SqueezeNetExtractor.load(garbage)
    lonely = tmp_path / "lonely.safetensors"
    lonely.write_bytes(path.read_bytes())
    with pytest.raises(FileNotFoundError, match="metadata"):
        SqueezeNetExtractor.load(lonely)
    W.metadata_path(lonely).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SqueezeNetExtractor.load(lonely)
    W.metadata_path(lonely).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not microquake-engine"):
        SqueezeNetExtractor.load(lonely)
    with pytest.raises(ValueError, match="must end in"):
        SqueezeNetExtractor.load(tmp_path / "w.bin")


def test_load_default_uses_data_dir(random_ext, tmp_path, monkeypatch):
    monkeypatch.setattr(W, "DATA_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="no default weights"):
        W.load_default()
    assert W.default_weights_id() == "default:missing"
    random_ext.save(tmp_path / f"{W.DEFAULT_STEM}.safetensors")
    ext = W.load_default(feature_layer="fire9_gap")
    assert ext.transform(_images(2)).shape == (2, 512)
    assert W.default_weights_id().startswith("default:default_squeezenet.safetensors:")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision, tol", [("fp32", 1e-4), ("tf32", 3e-3), ("fp16", 1e-2),
                                              ("bf16", 3e-2)])
def test_gpu_matches_cpu(random_ext, precision, tol):
    x = _images(8, seed=8)
    ref = random_ext.transform(x)
    gpu = clone(random_ext).set_params(device="cuda", precision=precision)
    got = gpu.transform(torch.from_numpy(x).cuda())
    assert np.abs(got - ref).max() <= tol * np.abs(ref).max()


class _DLPackOnly:
    """Stands in for a CuPy array: only the DLPack protocol (no numpy/torch type)."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_dlpack_input_is_read_without_copy(random_ext):
    x = _images(2, seed=9)
    got = random_ext.transform(_DLPackOnly(x))
    np.testing.assert_array_equal(got, random_ext.transform(x))
    t = torch.from_dlpack(_DLPackOnly(x))
    assert t.data_ptr() == x.ctypes.data  # the protocol shares memory


def test_shipped_default_weights():
    """The engine's own weights: small, trained from scratch, usable at 227 x 227."""
    path = W.default_weights_path()
    assert path.stat().st_size < 6 * 2**20
    ext = W.load_default(batch_size=4)
    meta = ext.metadata_
    assert meta["training"]["init"] == "scratch"  # never the MATLAB network
    assert "from" not in meta["training"]
    assert meta["input_size"] == [227, 227, 3]
    assert meta["training"]["command"].startswith("python -m engine.finetune ")
    k = len(ext.classes_)
    assert k >= 4 and {"LP", "VT", "TR", "TC"} <= set(ext.classes_)
    f = ext.transform(_images(2, seed=10))
    assert f.shape == (2, 14 * 14 * k) and np.isfinite(f).all()
    assert W.default_weights_id().startswith(f"default:{path.name}:")
