"""engine.finetune: image folder, split, augmentation, training smoke test, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.features import SqueezeNetExtractor
from engine.features.weights import load_weights, metadata_path
from engine.finetune import (augment, finetune, load_image_folder, main,
                             stratified_split)

SIZE = 48


def _make_folder(root: Path, per_class: int = 6, seed: int = 0) -> Path:
    """Two trivially separable classes: a bright band at the bottom (LP) or top (VT)."""
    rng = np.random.default_rng(seed)
    for cls, rows in (("LP", slice(SIZE - 16, SIZE)), ("VT", slice(0, 16))):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = rng.integers(0, 40, (SIZE, SIZE, 3)).astype(np.uint8)
            a[rows, :, 0] = 240
            a[rows, :, 1] = 200
            Image.fromarray(a).save(root / cls / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _make_folder(tmp_path_factory.mktemp("imgs"), per_class=8)


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "w.safetensors"
    lines: list[str] = []
    res = finetune(folder, out, epochs=3, batch=4, lr=3e-4, seed=1, image_size=SIZE,
                   patience=3, command="python -m engine.finetune (test)", log=lines.append)
    return res, out, lines


def test_load_image_folder(folder):
    X, y, classes, paths = load_image_folder(folder, image_size=SIZE)
    assert X.shape == (16, SIZE, SIZE, 3) and X.dtype == np.uint8
    assert classes == ["LP", "VT"] and list(np.bincount(y)) == [8, 8]
    assert paths[0].parent.name == "LP"
    small, _, _, _ = load_image_folder(folder, image_size=32)
    assert small.shape == (16, 32, 32, 3)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_image_folder(tmp_path / "empty")
    one = _make_folder(tmp_path / "one", per_class=3)
    for f in sorted((one / "VT").glob("*.png"))[1:]:
        f.unlink()
    with pytest.raises(ValueError, match="fewer than 2 images.*VT"):
        load_image_folder(one)
    (one / "VT" / "0.png").write_bytes(b"broken")
    (one / "VT" / "1.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match="cannot read image"):
        load_image_folder(one)


def test_stratified_split():
    labels = np.repeat([0, 1, 2], [10, 5, 2])
    tr, va = stratified_split(labels, 0.2, seed=3)
    assert set(tr).isdisjoint(va) and len(tr) + len(va) == len(labels)
    assert list(np.bincount(labels[va])) == [2, 1, 1]
    assert set(labels[tr]) == {0, 1, 2}
    tr2, va2 = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(va, va2)
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(labels, 1.0, seed=0)


def _shift_reference(img: np.ndarray, shift: int) -> np.ndarray:
    """Move columns by ``shift`` (positive: right), repeating the edge column."""
    w = img.shape[-1]
    src = np.clip(np.arange(w) - shift, 0, w - 1)
    return img[..., src]


def test_augment_time_shift_matches_reference():
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (5, 3, 8, 20))
                         .astype(np.float32))
    gen = torch.Generator().manual_seed(4)
    got = augment(x, gen, max_shift=0.2, brightness=0.0, contrast=0.0).numpy()
    for k in range(5):
        matches = [s for s in range(-4, 5)
                   if np.allclose(got[k], _shift_reference(x[k].numpy(), s), atol=1e-4)]
        assert len(matches) == 1, k
    # rows (frequencies) never move: every row stays a shift of the same row
    assert not np.allclose(got, x.numpy())


def test_augment_never_flips_vertically():
    rows = np.linspace(0, 255, 16, dtype=np.float32)
    x = torch.from_numpy(np.broadcast_to(rows[None, None, :, None], (4, 3, 16, 16)).copy())
    got = augment(x, torch.Generator().manual_seed(0)).numpy()
    assert (np.diff(got[:, 0, :, 5], axis=1) >= 0).all()  # still increasing downwards
    assert got.min() >= 0 and got.max() <= 255


def test_training_smoke(trained, folder):
    res, out, lines = trained
    assert out.is_file() and metadata_path(out).is_file()
    assert not list(out.parent.glob("*.tmp"))
    hist = res.history
    assert len(hist) == 3
    # trivially separable: validation accuracy above chance and training loss falling
    assert res.val_accuracy > 0.5
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert res.confusion.shape == (2, 2) and res.confusion.sum() == 4
    assert set(res.per_class_accuracy) == {"LP", "VT"}
    assert any("confusion" in line for line in lines)
    meta = json.loads(metadata_path(out).read_text())
    assert meta["classes"] == ["LP", "VT"] and meta["input_size"] == [SIZE, SIZE, 3]
    t = meta["training"]
    assert t["init"] == "scratch" and t["seed"] == 1 and t["epochs_run"] == 3
    assert meta["head_relu"] is False and len(meta["std"]) == 3
    assert t["command"] == "python -m engine.finetune (test)"
    assert t["val_accuracy"] == pytest.approx(res.val_accuracy)
    assert t["counts"] == {"LP": 8, "VT": 8}
    # the weights work in the extractor, at the training image size
    ext = SqueezeNetExtractor.load(out)
    assert ext.model_.head_relu is False
    X, y, classes, _ = load_image_folder(folder, image_size=SIZE)
    assert ext.transform(X).shape == (16, 2 * 2 * 2)  # conv10 of a 48 px image: 2 x 2
    assert np.mean(ext.predict(X) == np.asarray(classes)[y]) > 0.5


def test_deterministic_for_a_seed(folder, tmp_path):
    a = finetune(folder, tmp_path / "a.pt", epochs=1, batch=4, seed=5, image_size=32,
                 log=lambda s: None)
    b = finetune(folder, tmp_path / "b.pt", epochs=1, batch=4, seed=5, image_size=32,
                 log=lambda s: None)
    sa, _ = load_weights(a.weights)
    sb, _ = load_weights(b.weights)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_from_engine_weights_replaces_head(trained, tmp_path):
    _, out, _ = trained
    three = _make_folder(tmp_path / "three", per_class=3)
    (three / "TR").mkdir()
    for i in range(3):
        Image.fromarray(np.full((SIZE, SIZE, 3), 90, np.uint8)).save(three / "TR" / f"{i}.png")
    res = finetune(three, tmp_path / "ft.safetensors", init=out, epochs=1, batch=4,
                   image_size=SIZE, val_fraction=0.34, log=lambda s: None)
    state, meta = load_weights(res.weights)
    start, _ = load_weights(out)
    assert state["conv10.weight"].shape == (3, 512, 1, 1)
    assert meta["classes"] == ["LP", "TR", "VT"]
    assert meta["training"]["init"] == "fine-tune"
    assert meta["training"]["from"]["file"] == "w.safetensors"
    torch.testing.assert_close(state["mean"], start["mean"])  # the source's mean is kept


def test_cli(folder, tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    rc = main(["--images", str(folder), "--out", str(out), "--epochs", "1", "--batch", "6",
               "--image-size", "32", "--seed", "2"])
    assert rc == 0 and out.is_file()
    meta = json.loads(metadata_path(out).read_text())
    assert meta["training"]["command"].startswith("python -m engine.finetune --images ")
    assert "--image-size 32" in meta["training"]["command"]
    assert "per-class accuracy" in capsys.readouterr().out
    rc = main(["--images", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.pt")])
    assert rc == 2 and "image folder not found" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_from_matlab_network(shared_data, folder, tmp_path):
    mat = shared_data / "cotopaxi_squeezenet.mat"
    res = finetune(folder, tmp_path / "m.safetensors", init=mat, epochs=1, batch=8,
                   image_size=SIZE, log=lambda s: None)
    state, meta = load_weights(res.weights)
    assert meta["training"]["init"] == "fine-tune"
    assert meta["training"]["from"]["file"] == "cotopaxi_squeezenet.mat"
    assert len(meta["training"]["from"]["sha256"]) == 64
    assert meta["head_relu"] is True and meta["classes"] == ["LP", "VT"]
    np.testing.assert_allclose(meta["mean"], [89.8579, 154.10643, 157.51947], rtol=1e-6)
    assert state["conv10.weight"].shape == (2, 512, 1, 1)


@pytest.fixture(scope="module")
def projected(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("proj") / "p.safetensors"
    res = finetune(folder, out, epochs=2, batch=4, lr=3e-4, seed=1, image_size=SIZE,
                   projector=16, log=lambda s: None)
    return res, out


def test_projector_network_shapes_and_head():
    from engine.features.squeezenet import SqueezeNet, projector_width

    torch.manual_seed(0)
    net = SqueezeNet(3, projector=16).eval()
    assert projector_width(net.state_dict()) == 16
    assert projector_width(SqueezeNet(3).state_dict()) == 0
    assert net.conv10.in_channels == 16
    x = torch.rand(2, 3, 64, 64) * 255
    acts = net.forward_layers(x, ["fire9", "conv10"])
    # the conv10 stage is the projector (1x1 conv, batch norm, ReLU) and then conv10
    p = net.projector
    by_hand = net.conv10(torch.relu(p[1](p[0](acts["fire9"]))))
    torch.testing.assert_close(acts["conv10"], by_hand)
    with pytest.raises(ValueError, match="projector"):
        SqueezeNet(3, projector=-1)


def test_projector_trained_saved_and_loaded(projected, folder):
    res, out = projected
    state, meta = load_weights(out)
    assert state["projector.0.weight"].shape == (16, 512, 1, 1)
    assert "projector.1.running_mean" in state           # batch norm statistics travel too
    assert state["conv10.weight"].shape == (2, 16, 1, 1)
    assert meta["training"]["projector"] == 16
    # the extractor rebuilds the projector (strict load), batch-norm statistics and all:
    # it calls the validation images as the trained network did
    ext = SqueezeNetExtractor.load(out)
    assert ext.model_.projector is not None
    X, y, classes, _ = load_image_folder(folder, image_size=SIZE)
    _, va = stratified_split(y, 0.2, 1)
    pred = np.asarray([classes.index(c) for c in ext.predict(X[va])])
    confusion = np.zeros((2, 2), int)
    np.add.at(confusion, (y[va], pred), 1)
    assert np.array_equal(confusion, res.confusion)
    # fine-tuning from it keeps the projector and replaces only the classifier
    ft = finetune(folder, out.parent / "ft.safetensors", init=out, epochs=1, batch=4,
                  image_size=SIZE, log=lambda s: None)
    st2, meta2 = load_weights(ft.weights)
    assert st2["projector.0.weight"].shape == (16, 512, 1, 1)
    assert meta2["training"]["projector"] == 16


def test_projector_errors(folder, tmp_path, projected, capsys):
    _, out = projected
    with pytest.raises(ValueError, match="projector must be >= 0"):
        finetune(folder, tmp_path / "x.pt", projector=-2, log=lambda s: None)
    with pytest.raises(ValueError, match="training from scratch"):
        finetune(folder, tmp_path / "x.pt", init=out, projector=8, log=lambda s: None)
    rc = main(["--self-supervised", "--images", str(folder), "--out", str(tmp_path / "y.pt"),
               "--projector", "8"])
    assert rc == 2 and "--projector" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()


def test_cli_projector(folder, tmp_path):
    out = tmp_path / "cli_p.safetensors"
    rc = main(["--images", str(folder), "--out", str(out), "--epochs", "1", "--batch", "6",
               "--image-size", "32", "--projector", "8"])
    assert rc == 0
    state, meta = load_weights(out)
    assert state["projector.0.weight"].shape[0] == 8 and meta["training"]["projector"] == 8
    assert "--projector 8" in meta["training"]["command"]
