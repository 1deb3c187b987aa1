"""engine.features.adapt: views, VICReg objective, adaptation, saved weights, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.features import SqueezeNetExtractor
from engine.features.adapt import (Augmentation, adapt, adapt_weights, augment_scalar,
                                   colourise, images_of_data, jet_lut, time_warp, to_scalar,
                                   vicreg_loss)
from engine.features.weights import default_weights_path, load_weights, metadata_path
from engine.finetune import main

NO_AUG = dict(max_shift=0.0, stretch=0.0, noise_prob=0.0, mask_prob=0.0, gamma=0.0,
              brightness=0.0)


def _jet_images(scalar: np.ndarray) -> np.ndarray:
    """uint8 jet RGB images (n, H, W, 3) of scalar images (n, H, W) 0..255."""
    lut = np.floor(jet_lut().numpy() + 0.5).astype(np.uint8)
    return lut[scalar.astype(np.int64)]


def _families(n: int, side: int, seed: int = 0) -> np.ndarray:
    """Scalar scalogram-like images of two families: a low-frequency blob or a high one."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:side, 0:side] / side
    out = np.empty((n, side, side), np.float64)
    for i in range(n):
        centre_row = 0.8 if i % 2 else 0.25  # low frequencies are at the bottom
        t0 = rng.uniform(0.2, 0.5)
        blob = np.exp(-((rows - centre_row) / 0.1) ** 2 - ((cols - t0) / 0.15) ** 2)
        out[i] = blob + 0.05 * rng.random((side, side))
    out -= out.min(axis=(1, 2), keepdims=True)
    out /= out.max(axis=(1, 2), keepdims=True)
    return np.round(out * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return _jet_images(_families(12, 227))


@pytest.fixture(scope="module")
def adapted(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapt") / "a.safetensors"
    mild = Augmentation(max_shift=0.05, stretch=0.05, noise_prob=0.0, mask_prob=0.0, gamma=0.1,
                        brightness=2.0)
    res = adapt(images, out, epochs=12, batch=12, side=64, lr=1e-3, proj_dim=8, seed=3,
                augmentation=mild, data_description="test families",
                command="python -m engine.finetune (test)")
    return res, out


# ----------------------------------------------------------------------------- views
def _warp_reference(img: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """Column j reads the input at 0.5 + scale (u - 0.5) + shift, u = (j + 0.5) / W."""
    h, w = img.shape
    out = np.empty_like(img)
    for j in range(w):
        u = (j + 0.5) / w
        src = (0.5 + scale * (u - 0.5) + shift) * w - 0.5  # pixel coordinate
        src = min(max(src, 0.0), w - 1.0)
        lo = int(np.floor(src))
        hi = min(lo + 1, w - 1)
        f = src - lo
        out[:, j] = (1 - f) * img[:, lo] + f * img[:, hi]
    return out


def test_time_warp_matches_reference():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (3, 1, 5, 17)).astype(np.float32)
    scale = torch.tensor([1.0, 0.8, 1.15])
    shift = torch.tensor([0.1, -0.12, 0.05])
    got = time_warp(torch.from_numpy(x), scale, shift).numpy()
    for k in range(3):
        want = _warp_reference(x[k, 0].astype(np.float64), float(scale[k]), float(shift[k]))
        np.testing.assert_allclose(got[k, 0], want, atol=1e-3)
    # identity
    same = time_warp(torch.from_numpy(x), torch.ones(3), torch.zeros(3)).numpy()
    np.testing.assert_allclose(same, x, rtol=1e-5, atol=1e-3)


def test_augment_shapes_dtypes_and_seeding():
    x = torch.from_numpy(_families(5, 40)[:, None])
    a = augment_scalar(x, torch.Generator().manual_seed(1))
    b = augment_scalar(x, torch.Generator().manual_seed(1))
    c = augment_scalar(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 255.0
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert augment_scalar(x[:0], torch.Generator()).shape == (0, 1, 40, 40)
    with pytest.raises(ValueError, match="n, 1, H, W"):
        augment_scalar(torch.zeros(2, 3, 8, 8), torch.Generator())


def test_augment_never_moves_frequencies():
    # every row constant in time: time warps leave the image as it was (after min-max)
    rows = np.linspace(0, 255, 24, dtype=np.float32)
    x = torch.from_numpy(np.broadcast_to(rows[None, None, :, None], (4, 1, 24, 30)).copy())
    aug = Augmentation(**{**NO_AUG, "max_shift": 0.2, "stretch": 0.2})
    got = augment_scalar(x, torch.Generator().manual_seed(0), aug)
    torch.testing.assert_close(got, x, atol=1e-3, rtol=0)


def test_band_mask_touches_one_band_of_rows():
    x = torch.from_numpy(_families(6, 32, seed=4)[:, None]).float()
    x[:, :, 0, 0], x[:, :, -1, -1] = 0.0, 255.0  # keep min-max fixed
    aug = Augmentation(**{**NO_AUG, "mask_prob": 1.0, "mask_band": (0.1, 0.3)})
    got = augment_scalar(x, torch.Generator().manual_seed(0), aug)
    for k in range(6):
        changed = np.flatnonzero((got[k, 0] != x[k, 0]).any(dim=1).numpy())
        assert changed.size >= 1
        assert changed.size <= round(0.3 * 32) + 1
        assert np.all(np.diff(changed) == 1)  # one contiguous band of frequencies


def test_noise_floor_raises_the_quiet_part():
    x = torch.from_numpy(_families(4, 32, seed=5)[:, None]).float()
    aug = Augmentation(**{**NO_AUG, "noise_prob": 1.0, "noise_level": (0.4, 0.4)})
    got = augment_scalar(x, torch.Generator().manual_seed(0), aug)
    quiet = x < 30
    # the quiet background rises to the (rescaled) noise floor ...
    assert float(got[quiet].mean()) > float(x[quiet].mean()) + 10
    assert float(got.amax()) == pytest.approx(255.0)
    # ... while the strong part of the event keeps its shape (a monotonic merge)
    loud = x > 180
    assert np.corrcoef(got[loud].numpy(), x[loud].numpy())[0, 1] > 0.99


def test_scalar_roundtrip_through_jet():
    scalar = _families(3, 64, seed=1)
    rgb = _jet_images(scalar)
    back = to_scalar(rgb, side=64)
    assert back.shape == (3, 1, 64, 64) and back.dtype == torch.uint8
    assert int((back[:, 0].int() - torch.from_numpy(scalar).int()).abs().max()) <= 3
    recol = colourise(back.float())
    assert recol.shape == (3, 3, 64, 64)
    assert float((recol - torch.from_numpy(rgb).permute(0, 3, 1, 2).float()).abs().mean()) < 3
    small = to_scalar(rgb, side=32)
    assert small.shape == (3, 1, 32, 32)
    with pytest.raises(ValueError, match="uint8"):
        to_scalar(rgb.astype(np.float32))


# ----------------------------------------------------------------------------- objective
def _vicreg_reference(z1: np.ndarray, z2: np.ndarray, eps: float = 1e-4) -> float:
    n, d = z1.shape
    inv = ((z1 - z2) ** 2).mean()
    var = cov = 0.0
    for z in (z1, z2):
        z = z - z.mean(axis=0)
        var += np.mean([max(0.0, 1 - np.sqrt(z[:, j].var(ddof=1) + eps)) for j in range(d)])
        c = z.T @ z / (n - 1)
        cov += sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d
    return 25 * inv + 25 * var + cov


def test_vicreg_matches_reference():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(8, 5)) * 0.7, rng.normal(size=(8, 5))
    loss, parts = vicreg_loss(torch.from_numpy(z1), torch.from_numpy(z2))
    assert float(loss) == pytest.approx(_vicreg_reference(z1, z2), rel=1e-6)
    assert set(parts) == {"invariance", "variance", "covariance"}
    # a collapsed embedding pays the full variance term and nothing else
    zero = torch.zeros(6, 4)
    loss, parts = vicreg_loss(zero, zero)
    assert parts["invariance"] == 0.0 and parts["covariance"] == 0.0
    assert parts["variance"] == pytest.approx(2 * (1 - 1e-2), rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        vicreg_loss(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="one shape"):
        vicreg_loss(torch.zeros(4, 3), torch.zeros(4, 2))


# ----------------------------------------------------------------------------- training
def test_objective_decreases(adapted):
    res, _ = adapted
    hist = res.history
    assert len(hist) == 12 and res.epochs_run == 12 and res.stopped == "epochs"
    assert all(h["steps"] == 1 for h in hist)
    first = np.mean([h["loss"] for h in hist[:3]])
    last = np.mean([h["loss"] for h in hist[-3:]])
    assert last < 0.8 * first
    assert hist[-1]["variance"] < hist[0]["variance"]  # the embedding spreads out


def test_saved_weights_load_and_give_features(adapted, images):
    res, out = adapted
    assert out.is_file() and metadata_path(out).is_file()
    assert not list(out.parent.glob("*.tmp"))
    state, meta = load_weights(out)
    start, start_meta = load_weights(default_weights_path())
    # frozen layers kept, trained layers moved, buffers of the start kept
    assert torch.equal(state["conv1.weight"], start["conv1.weight"])
    assert torch.equal(state["fires.fire5.squeeze.weight"], start["fires.fire5.squeeze.weight"])
    for fire in ("fire6", "fire7", "fire8", "fire9"):
        assert not torch.equal(state[f"fires.{fire}.squeeze.weight"],
                               start[f"fires.{fire}.squeeze.weight"]), fire
    assert not torch.equal(state["conv10.weight"], start["conv10.weight"])
    torch.testing.assert_close(state["mean"], start["mean"])
    assert meta["classes"] == start_meta["classes"]
    assert meta["input_size"] == [227, 227, 3]
    t = meta["training"]
    assert t["init"] == "self-supervised" and t["objective"] == "vicreg"
    assert t["seed"] == 3 and t["epochs"] == 12 and t["epochs_run"] == 12
    assert t["n_events"] == 12 and t["data_sha256"].startswith("sha256:")
    assert t["data"] == "test families" and t["from"]["default"] is True
    assert t["trainable"] == ["fire6", "fire7", "fire8", "fire9", "conv10"]
    assert t["view_side"] == 64
    assert t["command"] == "python -m engine.finetune (test)"
    assert len(t["history"]) == 12 and t["augmentation"]["max_shift"] == 0.05
    n_classes = len(meta["classes"])
    conv10 = SqueezeNetExtractor.load(out).transform(images)
    assert conv10.shape == (12, n_classes * 14 * 14) and np.isfinite(conv10).all()
    gap = SqueezeNetExtractor.load(out, feature_layer="fire9_gap").transform(images)
    assert gap.shape == (12, 512)
    default_gap = SqueezeNetExtractor.load(default_weights_path(),
                                           feature_layer="fire9_gap").transform(images)
    assert not np.allclose(gap, default_gap)


def test_deterministic_for_a_seed(images, tmp_path):
    kw = dict(epochs=1, batch=6, side=32)
    a = adapt(images, tmp_path / "a.pt", seed=5, **kw)
    b = adapt(images, tmp_path / "b.pt", seed=5, **kw)
    c = adapt(images, tmp_path / "c.pt", seed=6, **kw)
    sa, _ = load_weights(a.weights)
    sb, _ = load_weights(b.weights)
    sc, _ = load_weights(c.weights)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert not torch.equal(sa["fires.fire9.squeeze.weight"], sc["fires.fire9.squeeze.weight"])


def test_budget_stops_training(images, tmp_path):
    res = adapt(images, tmp_path / "b.safetensors", epochs=50, batch=6, side=32,
                budget_s=1e-6)
    assert res.stopped == "budget" and res.epochs_run == 1
    assert res.history[0]["steps"] == 1
    meta = json.loads(metadata_path(res.weights).read_text())
    assert meta["training"]["stopped"] == "budget"


def test_default_epochs_aim_at_min_steps(images, tmp_path, monkeypatch):
    import engine.features.adapt as adapt_module

    monkeypatch.setattr(adapt_module, "MIN_STEPS", 5)
    res = adapt(images, tmp_path / "auto.pt", batch=6, side=32)  # 2 steps an epoch
    assert res.epochs_run == 3 and sum(h["steps"] for h in res.history) == 6
    assert json.loads(metadata_path(res.weights).read_text())["training"]["epochs"] == 3


def test_trainable_fire9_keeps_fire8(images, tmp_path):
    res = adapt(images, tmp_path / "f9.pt", epochs=1, batch=6, side=32, trainable="fire9")
    state, _ = load_weights(res.weights)
    start, _ = load_weights(default_weights_path())
    assert torch.equal(state["fires.fire8.expand3x3.weight"],
                       start["fires.fire8.expand3x3.weight"])
    assert not torch.equal(state["fires.fire9.expand3x3.weight"],
                           start["fires.fire9.expand3x3.weight"])


def test_adapts_a_network_with_a_projector(images, tmp_path):
    from engine.features.squeezenet import SqueezeNet
    from engine.features.weights import save_weights

    torch.manual_seed(0)
    net = SqueezeNet(2, projector=8, head_relu=False)
    start = tmp_path / "proj.safetensors"
    save_weights(start, net.state_dict(), {
        "classes": ["A", "B"], "input_size": [227, 227, 3], "head_relu": False,
        "pool_padding": {k: list(v) for k, v in net.pool_padding.items()}})
    res = adapt(images, tmp_path / "ad.safetensors", init=start, epochs=1, batch=6, side=32)
    state, _ = load_weights(res.weights)
    # the projector sits in the conv10 stage: it is kept, and trained with conv10
    assert state["projector.0.weight"].shape == (8, 512, 1, 1)
    assert not torch.equal(state["projector.0.weight"], net.state_dict()["projector.0.weight"])
    assert SqueezeNetExtractor.load(res.weights).transform(images).shape == (12, 2 * 14 * 14)


@pytest.mark.parametrize("kw, match", [
    (dict(epochs=0), "epochs"), (dict(batch=1), "batch"), (dict(side=8), "side"),
    (dict(lr=0.0), "lr"), (dict(trainable="fire2"), "trainable"),
    (dict(objective="simclr"), "objective"), (dict(budget_s=-1.0), "budget_s"),
])
def test_bad_parameters(images, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        adapt(images, tmp_path / "x.safetensors", **kw)
    assert not (tmp_path / "x.safetensors").exists()


def test_bad_data(tmp_path):
    with pytest.raises(ValueError, match=">= 2 events"):
        adapt(np.zeros((1, 227, 227, 3), np.uint8), tmp_path / "x.pt")
    with pytest.raises(ValueError, match="uint8"):
        adapt(np.zeros((4, 227, 227, 3), np.float32), tmp_path / "x.pt")
    with pytest.raises(ValueError, match=r"\.safetensors or \.pt"):
        adapt(np.zeros((4, 227, 227, 3), np.uint8), tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        adapt(np.zeros((4, 227, 227, 3), np.uint8), tmp_path / "x.pt", init=tmp_path / "no.pt")
    with pytest.raises(ValueError, match="no events"):
        images_of_data([])
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        images_of_data(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        images_of_data(tmp_path / "empty")


def test_adapt_weights_on_waveform_events(tmp_path):
    from engine.events import Event

    rng = np.random.default_rng(0)
    t = np.arange(2000) / 100.0
    events = [Event(id=str(i), data=(np.sin(2 * np.pi * (2 + 6 * (i % 2)) * t)
                                     * np.exp(-((t - 8) / 3) ** 2)
                                     + 0.05 * rng.normal(size=t.size)).astype(np.float32))
              for i in range(4)]
    path = adapt_weights(events, out=tmp_path / "ev.safetensors", epochs=1, batch=4, side=32,
                         budget_s=None)
    meta = json.loads(metadata_path(path).read_text())
    assert meta["training"]["data"] == "4 events" and meta["training"]["n_events"] == 4
    assert SqueezeNetExtractor.load(path, feature_layer="fire9_gap").transform(
        images_of_data(events)[0]).shape == (4, 512)


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def image_dir(images, tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("unlabelled")
    for i, im in enumerate(images[:8]):
        Image.fromarray(im).save(root / f"{i}.png")
    return root


def test_cli_self_supervised_images(image_dir, tmp_path):
    out = tmp_path / "cli.safetensors"
    rc = main(["--self-supervised", "--images", str(image_dir), "--out", str(out),
               "--epochs", "1", "--batch", "4", "--image-size", "32", "--seed", "2",
               "--trainable", "fire9"])
    assert rc == 0 and out.is_file()
    meta = json.loads(metadata_path(out).read_text())
    t = meta["training"]
    assert t["command"].startswith("python -m engine.finetune --self-supervised --images ")
    assert t["seed"] == 2 and t["n_events"] == 8 and t["trainable"] == ["fire9", "conv10"]
    assert t["data"] == f"images {image_dir}"


def test_cli_self_supervised_events(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "ev.npy", rng.normal(size=(4, 1500)).astype(np.float32))
    out = tmp_path / "ev.safetensors"
    rc = main(["--self-supervised", "--events", str(tmp_path / "ev.npy"), "--out", str(out),
               "--epochs", "1", "--batch", "4", "--image-size", "32"])
    assert rc == 0
    t = json.loads(metadata_path(out).read_text())["training"]
    assert t["n_events"] == 4 and "events" in t["data"]


def test_cli_self_supervised_archive(tmp_path):
    from engine.synth import write_archive

    archive = write_archive(tmp_path / "sds", days=0.03, stations=1, seed=5, rate=40)
    out = tmp_path / "arc.safetensors"
    rc = main(["--self-supervised", "--archive", str(archive), "--out", str(out),
               "--epochs", "1", "--batch", "8", "--image-size", "32"])
    assert rc == 0
    meta = json.loads(metadata_path(out).read_text())
    t = meta["training"]
    assert t["n_events"] >= 4 and t["data"].endswith(f"from archive {archive}")
    assert SqueezeNetExtractor.load(out).input_size_ == (227, 227)


@pytest.mark.parametrize("argv, match", [
    (["--self-supervised"], "exactly one of --archive, --events, --images"),
    (["--self-supervised", "--images", "A", "--events", "B"], "got --images, --events"),
    (["--archive", "A"], "--archive only apply with --self-supervised"),
    (["--images", "A", "--budget-seconds", "5"], "--budget-seconds only apply"),
    (["--self-supervised", "--images", "A", "--patience", "2"],
     "--patience do not apply with --self-supervised"),
    (["--self-supervised", "--archive", "/nonexistent/archive"],
     "--archive: /nonexistent/archive does not exist"),
    ([], "--images DIR is required"),
])
def test_cli_errors(argv, match, tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    rc = main([*argv, "--out", str(out)])
    assert rc == 2
    assert match in capsys.readouterr().err
    assert not out.exists()


def test_cli_bad_values(image_dir, tmp_path, capsys):
    rc = main(["--self-supervised", "--images", str(image_dir), "--out",
               str(tmp_path / "x.safetensors"), "--trainable", "fire3"])
    assert rc == 2 and "trainable must be one of" in capsys.readouterr().err
    rc = main(["--self-supervised", "--images", str(image_dir), "--out",
               str(tmp_path / "x.safetensors"), "--lr", "0"])
    assert rc == 2 and "lr must be > 0" in capsys.readouterr().err
    rc = main(["--self-supervised", "--images", str(image_dir), "--out",
               str(tmp_path / "x.safetensors"), "--batch", "0"])
    assert rc == 2 and "batch must be an integer >= 2" in capsys.readouterr().err
    rc = main(["--self-supervised", "--images", str(image_dir), "--out",
               str(tmp_path / "x.h5")])
    assert rc == 2 and ".safetensors or .pt" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cli_unknown_flag_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--self-supervised", "--images", "A", "--out", "x.pt", "--objective", "x"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --objective" in capsys.readouterr().err
