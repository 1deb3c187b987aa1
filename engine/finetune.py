"""Train or fine-tune the SqueezeNet on a labelled image folder.

``python -m engine.finetune --images DIR --out weights.safetensors`` reads
``DIR/<class>/*.png`` (any PIL-readable image, converted to RGB), splits it
into stratified train / validation parts, trains with augmentations suited to
scalograms and early stopping on the validation loss, prints per-class
accuracy and the confusion matrix, and writes engine weights (tensor file +
JSON metadata with the exact command and provenance) atomically.

Start: ``--from FILE`` (a MATLAB DAGNetwork ``.mat`` or engine weights) keeps
the body and replaces the final conv by a new one with a filter per class;
without ``--from`` the network is trained from scratch (the input mean is then
the per-channel mean of the training images and the divisor their per-channel
standard deviation, so that training starts from unit-scale inputs, and the
class scores are the plain spatial average of ``conv10`` without the ReLU,
so that a fresh head cannot die).

Augmentations (training only): random time shifts of up to 10 % of the width
with the edge columns repeated (a horizontal crop-and-pad) and small
brightness (+-10 of 255) and contrast (x 0.9-1.1) jitter. No vertical flips
(the vertical axis is frequency) and no horizontal flips (time runs one way).

Optimiser: AdamW (``--lr``, weight decay 1e-4) with a cosine learning-rate
decay over ``--epochs`` (``--schedule constant`` turns it off).

Deterministic for a seed on the same machine, torch version and thread count.

Without labels: ``python -m engine.finetune --self-supervised (--archive PATH |
--events PATH | --images DIR) --out W.safetensors [--from FILE] [--epochs N]
[--budget-seconds S]`` adapts the network (by default the engine's own
weights) to the target events with a VICReg objective on augmented scalogram
views; see :mod:`engine.features.adapt`.
"""
from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from engine._util import progress
from engine.features.squeezenet import SqueezeNet, projector_width

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class FinetuneResult:
    """What :func:`finetune` produced.

    Attributes
    ----------
    weights : Path
        The weights file written.
    classes : list of str
        Class names, in score order.
    history : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_accuracy``.
    best_epoch : int
        Epoch (1-based) whose weights were kept (lowest validation loss).
    val_accuracy : float
        Validation accuracy of the kept weights.
    per_class_accuracy : dict
        Class -> validation recall.
    confusion : numpy.ndarray
        Validation confusion matrix, rows true class, columns predicted.
    """

    weights: Path
    classes: list[str]
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    val_accuracy: float = 0.0
    per_class_accuracy: dict[str, float] = field(default_factory=dict)
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), int))


def load_image_folder(root: str | Path, image_size: int = 227
                      ) -> tuple[np.ndarray, np.ndarray, list[str], list[Path]]:
    """Read ``root/<class>/*`` images as uint8 RGB, resized to ``image_size`` if needed.

    Parameters
    ----------
    root : str or Path
        Folder with one sub-folder per class.
    image_size : int
        Side of the square images returned (bicubic resize when different).

    Returns
    -------
    images : numpy.ndarray
        (n, image_size, image_size, 3) uint8.
    labels : numpy.ndarray
        (n,) int class indices.
    classes : list of str
        Sorted class (sub-folder) names.
    paths : list of Path
        The files, in the order of ``images``.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a folder.
    ValueError
        No class folders, fewer than 2 classes, a class with fewer than 2 images,
        or an unreadable image.
    """
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = {d.name: sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
             for d in class_dirs}
    files = {k: v for k, v in files.items() if v}
    if not files:
        raise ValueError(f"{root} holds no class sub-folders with images "
                         f"(expected {root}/<class>/*.png)")
    if len(files) < 2:
        raise ValueError(f"{root} has images of one class only ({list(files)}); need >= 2")
    few = {k: len(v) for k, v in files.items() if len(v) < 2}
    if few:
        raise ValueError(f"class folders of {root} with fewer than 2 images: {few} "
                         "(each class needs images for training and validation)")
    classes = sorted(files)
    images, labels, paths = [], [], []
    for ci, name in enumerate(classes):
        for f in files[name]:
            try:
                with Image.open(f) as im:
                    im = im.convert("RGB")
                    if im.size != (image_size, image_size):
                        im = im.resize((image_size, image_size), Image.BICUBIC)
                    images.append(np.asarray(im, dtype=np.uint8))
            except OSError as exc:
                raise ValueError(f"cannot read image {f}: {exc}") from exc
            labels.append(ci)
            paths.append(f)
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes, paths


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) with every class in both parts.

    Each class puts ``round(n_c * val_fraction)`` images (at least 1, at most
    n_c - 1) in validation, chosen with a seeded permutation.

    Raises
    ------
    ValueError
        If ``val_fraction`` is not in (0, 1) or a class has fewer than 2 images.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if idx.size < 2:
            raise ValueError(f"class {c} has {idx.size} image(s); need >= 2 for a split")
        idx = rng.permutation(idx)
        k = int(min(max(round(idx.size * val_fraction), 1), idx.size - 1))
        val.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.asarray(train)), np.sort(np.asarray(val))


def augment(x: torch.Tensor, gen: torch.Generator, max_shift: float = 0.10,
            brightness: float = 10.0, contrast: float = 0.10) -> torch.Tensor:
    """Scalogram-safe augmentation of a float batch (n, 3, H, W) in 0..255.

    Time shift: each image moves by up to ``max_shift`` of its width left or
    right, the edge column repeated into the gap. Then contrast x (1 +- contrast)
    about the image mean and brightness +- ``brightness``; clipped to 0..255.
    Never flips.
    """
    n, _, h, w = x.shape
    s = int(round(max_shift * w))
    if s > 0:
        shifts = torch.randint(-s, s + 1, (n,), generator=gen)
        padded = F.pad(x, (s, s, 0, 0), mode="replicate")
        cols = torch.arange(w)[None, :] + s - shifts[:, None]  # (n, w)
        idx = cols[:, None, None, :].expand(n, x.shape[1], h, w)
        x = padded.gather(3, idx)
    c = 1.0 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * contrast
    b = (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * brightness
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - m) * c + m + b).clamp_(0.0, 255.0)


def _to_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
    return x.contiguous(memory_format=torch.channels_last)


def _evaluate(model: SqueezeNet, images: np.ndarray, labels: np.ndarray, batch: int,
              device: torch.device) -> tuple[float, np.ndarray]:
    model.eval()
    losses, preds = [], []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = _to_input(images[i:i + batch], device)
            y = torch.from_numpy(labels[i:i + batch]).to(device)
            logits = model(x)
            losses.append(float(F.cross_entropy(logits, y, reduction="sum")))
            preds.append(logits.argmax(1).cpu().numpy())
    return sum(losses) / max(len(images), 1), np.concatenate(preds)


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _initial_model(init: Optional[str | Path], n_classes: int, mean: np.ndarray,
                   std: np.ndarray, projector: int = 0) -> tuple[SqueezeNet, dict[str, Any]]:
    if init is None:
        model = SqueezeNet(n_classes, mean=mean.tolist(), std=std.tolist(), head_relu=False,
                           projector=projector)
        return model, {"init": "scratch"}
    init = Path(init)
    if init.suffix.lower() == ".mat":
        from engine.features.matlab import import_matlab

        net = import_matlab(init)
        state, pads, prov = net.state_dict, net.pool_padding, net.source
        head_relu = True
    else:
        from engine.features.weights import load_weights

        state, meta = load_weights(init)
        pads = meta["pool_padding"]
        head_relu = bool(meta.get("head_relu", True))
        prov = {"file": init.name, "sha256": _file_sha256(init),
                "training": meta.get("training", {})}
    state = dict(state)
    state.setdefault("std", torch.ones(3, 1, 1))
    model = SqueezeNet(int(state["conv10.weight"].shape[0]), pool_padding=pads,
                       mean=state["mean"], std=state["std"], head_relu=head_relu,
                       projector=projector_width(state))
    model.load_state_dict(state)
    model.replace_head(n_classes)
    return model, {"init": "fine-tune", "from": prov}


def finetune(images: str | Path, out: str | Path, *, init: Optional[str | Path] = None,
             epochs: int = 10, batch: int = 32, lr: float = 1e-3, val_fraction: float = 0.2,
             seed: int = 0, image_size: int = 227, patience: int = 3, device: str = "cpu",
             weight_decay: float = 1e-4, schedule: str = "cosine", projector: int = 0,
             command: Optional[str] = None,
             log: Callable[[str], None] = print) -> FinetuneResult:
    """Train a SqueezeNet on ``images/<class>/*`` and write engine weights to ``out``.

    Parameters
    ----------
    images : str or Path
        Labelled image folder (one sub-folder per class).
    out : str or Path
        Weights file (``.safetensors`` or ``.pt``); the JSON goes beside it.
    init : str or Path, optional
        Start from a MATLAB ``.mat`` network or engine weights (final conv
        replaced); ``None`` trains from scratch.
    epochs : int
        Maximum epochs.
    batch : int
        Mini-batch size.
    lr : float
        AdamW learning rate.
    val_fraction : float
        Share of each class held out for validation, in (0, 1).
    seed : int
        Seed of the split, the initialisation, the shuffling and the augmentation.
    image_size : int
        Side of the square training images (227 as published; smaller is faster).
    patience : int
        Stop after this many epochs without a lower validation loss.
    device : {"cpu", "cuda", "auto"}
        Training device.
    weight_decay : float
        AdamW weight decay.
    schedule : {"cosine", "constant"}
        Learning rate: cosine decay from ``lr`` to 0 over ``epochs`` (per step),
        or constant.
    projector : int
        Train from scratch with an MLP projector of this width between fire9
        and the classifier (:class:`SqueezeNet`); 0 (default) for none. It is
        saved with the weights. Not with ``init`` (a network from a file keeps
        the projector it has).
    command : str, optional
        Command line recorded in the metadata (the CLI passes its own).
    log : callable
        Where progress lines go.

    Returns
    -------
    FinetuneResult

    Raises
    ------
    FileNotFoundError
        Missing image folder or ``init`` file.
    ValueError
        Empty folder, a class with fewer than 2 images, bad parameters.
    """
    for name, value, low in (("epochs", epochs, 1), ("batch", batch, 1),
                             ("image_size", image_size, 32), ("patience", patience, 1)):
        if int(value) < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if int(projector) < 0:
        raise ValueError(f"projector must be >= 0 (0: none), got {projector}")
    if projector and init is not None:
        raise ValueError("projector applies to training from scratch; a network from a file "
                         "(init) keeps the projector it has")
    out = Path(out)
    if out.suffix not in (".safetensors", ".pt"):
        raise ValueError(f"--out {out} must end in .safetensors or .pt")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device must be cpu, cuda or auto, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA GPU")
    dev = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    X, y, classes, paths = load_image_folder(images, image_size)
    tr, va = stratified_split(y, val_fraction, seed)
    log(f"{len(X)} images, classes {classes} "
        f"({', '.join(f'{c}: {int((y == i).sum())}' for i, c in enumerate(classes))}); "
        f"train {len(tr)}, validation {len(va)}")
    torch.manual_seed(seed)
    pixels = X[tr].reshape(-1, 3)
    mean = pixels.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = np.maximum(pixels.std(axis=0, dtype=np.float64), 1.0).astype(np.float32)
    model, provenance = _initial_model(init, len(classes), mean, std, int(projector))
    model.to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    Xtr, ytr, Xva, yva = X[tr], y[tr], X[va], y[va]
    steps = epochs * -(-len(Xtr) // batch)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
             if schedule == "cosine" else None)
    best_loss, best_state, best_epoch, bad = np.inf, None, 0, 0
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(Xtr), generator=gen).numpy()
        total, count = 0.0, 0
        for i in progress(range(0, len(order), batch), desc=f"epoch {epoch}",
                          total=-(-len(order) // batch), unit="batch"):
            sel = order[i:i + batch]
            x = augment(_to_input(Xtr[sel], torch.device("cpu")), gen).to(dev)
            x = x.contiguous(memory_format=torch.channels_last)
            target = torch.from_numpy(ytr[sel]).to(dev)
            loss = F.cross_entropy(model(x), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += float(loss.detach()) * len(sel)
            count += len(sel)
        val_loss, pred = _evaluate(model, Xva, yva, batch, dev)
        acc = float((pred == yva).mean())
        history.append({"epoch": epoch, "train_loss": total / count, "val_loss": val_loss,
                        "val_accuracy": acc})
        log(f"epoch {epoch:3d}  train loss {total / count:.4f}  val loss {val_loss:.4f}  "
            f"val acc {acc:.3f}")
        if val_loss < best_loss - 1e-6:
            best_loss, best_epoch, bad = val_loss, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                log(f"early stop: no better validation loss for {patience} epochs")
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    _, pred = _evaluate(model, Xva, yva, batch, dev)
    k = len(classes)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (yva, pred), 1)
    per_class = {c: float(confusion[i, i] / max(confusion[i].sum(), 1))
                 for i, c in enumerate(classes)}
    val_acc = float(np.trace(confusion) / max(confusion.sum(), 1))
    log(f"kept epoch {best_epoch}: validation accuracy {val_acc:.3f}")
    log("per-class accuracy: " + ", ".join(f"{c} {a:.3f}" for c, a in per_class.items()))
    width = max(len(c) for c in classes) + 1
    log("confusion (rows true, columns predicted):")
    log(" " * width + "".join(f"{c:>{width}}" for c in classes))
    for i, c in enumerate(classes):
        log(f"{c:>{width}}" + "".join(f"{v:>{width}d}" for v in confusion[i]))
    import engine

    mean_meta = best_state["mean"].reshape(-1).tolist() if best_state["mean"].numel() == 3 \
        else "image"
    metadata = {
        "classes": classes,
        "mean": mean_meta,
        "std": best_state["std"].reshape(-1).tolist(),
        "head_relu": model.head_relu,
        "input_size": [image_size, image_size, 3],
        "pool_padding": {k2: list(v) for k2, v in model.pool_padding.items()},
        "layer_aliases": {},
        "training": {
            **provenance,
            "command": command,
            "images": str(Path(images)),
            "counts": {c: int((y == i).sum()) for i, c in enumerate(classes)},
            "n_train": int(len(tr)), "n_val": int(len(va)),
            "epochs": int(epochs), "epochs_run": len(history), "best_epoch": best_epoch,
            "batch": int(batch), "lr": float(lr), "weight_decay": float(weight_decay),
            "schedule": schedule, "projector": projector_width(best_state),
            "val_fraction": float(val_fraction), "seed": int(seed),
            "image_size": int(image_size), "patience": int(patience),
            "device": str(dev), "val_accuracy": val_acc, "per_class_accuracy": per_class,
            "confusion": confusion.tolist(), "history": history,
            "augmentation": "time shift <=10% (edge repeat), brightness +-10, contrast x0.9-1.1",
            "engine_version": engine.__version__, "torch_version": torch.__version__,
            "seconds": round(time.perf_counter() - t0, 1),
        },
    }
    from engine.features.weights import save_weights

    path, meta_path = save_weights(out, best_state, metadata)
    log(f"wrote {path} and {meta_path}")
    return FinetuneResult(weights=path, classes=classes, history=history, best_epoch=best_epoch,
                          val_accuracy=val_acc, per_class_accuracy=per_class,
                          confusion=confusion)


def build_parser() -> argparse.ArgumentParser:
    """Command-line parser of ``python -m engine.finetune``."""
    p = argparse.ArgumentParser(
        prog="python -m engine.finetune",
        description="Train or fine-tune the SqueezeNet feature network on a labelled "
                    "image folder (DIR/<class>/*.png) and write engine weights; with "
                    "--self-supervised, adapt it to unlabelled events (--archive, --events "
                    "or --images) with a VICReg objective.")
    p.add_argument("--self-supervised", action="store_true",
                   help="adapt without labels (VICReg on augmented scalogram views), starting "
                        "from --from or the engine's default weights")
    src = p.add_argument_group("input (exactly one; --archive and --events need "
                               "--self-supervised)")
    src.add_argument("--images", default=None, metavar="DIR",
                     help="image folder (DIR/<class>/*.png; unlabelled DIR/*.png also with "
                          "--self-supervised)")
    src.add_argument("--archive", default=None, metavar="PATH",
                     help="continuous data (SDS tree or waveform folder): events are detected")
    src.add_argument("--events", default=None, metavar="PATH",
                     help="event files (HDF5, .npy/.npz, or a folder of waveform files)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="weights to write (.safetensors or .pt; a .json goes beside)")
    p.add_argument("--from", dest="init", default=None, metavar="FILE",
                   help="start from a MATLAB .mat network or engine weights (default: from "
                        "scratch; with --self-supervised: the engine's default weights)")
    p.add_argument("--epochs", type=int, default=None,
                   help="maximum epochs (default 10; with --self-supervised: enough epochs for "
                        "256 gradient steps)")
    p.add_argument("--batch", type=int, default=None,
                   help="mini-batch size (default 32; 64 with --self-supervised)")
    p.add_argument("--lr", type=float, default=None,
                   help="AdamW learning rate (default 1e-3; 3e-4 with --self-supervised)")
    p.add_argument("--schedule", default=None, choices=["cosine", "constant"],
                   help="learning-rate schedule over --epochs (default cosine)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="share of each class for validation (default 0.2; supervised only)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--image-size", type=int, default=None,
                   help="side of the training images (default 227; with --self-supervised "
                        "the side of the augmented views, default 113; smaller is faster)")
    p.add_argument("--patience", type=int, default=None,
                   help="early-stopping patience in epochs (default 3; supervised only)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--projector", type=int, default=None, metavar="WIDTH",
                   help="train from scratch with an MLP projector of this width between fire9 "
                        "and the classifier (default 0: none; supervised only, not with --from)")
    ss = p.add_argument_group("self-supervised only")
    ss.add_argument("--budget-seconds", type=float, default=None, metavar="S",
                    help="stop training after S seconds (default: run every epoch)")
    ss.add_argument("--trainable", default=None,
                    help="first trained layer: fire6 (default), fire7, fire8, fire9 or conv10; "
                         "the layers below stay frozen")
    ss.add_argument("--fs", type=float, default=100.0,
                    help="sampling rate of event arrays that do not state it (default 100 Hz)")
    return p


_SUPERVISED_ONLY = ("schedule", "val_fraction", "patience", "projector")
_SELF_SUPERVISED_ONLY = ("budget_seconds", "trainable", "archive", "events")


def _or(value: Any, default: Any) -> Any:
    """``value`` unless the flag was not given (None): 0 stays 0 and fails validation."""
    return default if value is None else value


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_flags(args: argparse.Namespace) -> None:
    """Flag combinations argparse cannot express; ValueError naming the flag."""
    given = [n for n in ("images", "archive", "events") if getattr(args, n) is not None]
    if not args.self_supervised:
        bad = [n for n in _SELF_SUPERVISED_ONLY if getattr(args, n) is not None]
        if bad:
            raise ValueError(f"{', '.join(map(_flag, bad))} only apply with --self-supervised")
        if args.images is None:
            raise ValueError("--images DIR is required (a labelled image folder)")
        return
    if len(given) != 1:
        raise ValueError("--self-supervised needs exactly one of --archive, --events, "
                         f"--images (got {', '.join(map(_flag, given)) or 'none'})")
    bad = [n for n in _SUPERVISED_ONLY if getattr(args, n) is not None]
    if bad:
        raise ValueError(f"{', '.join(map(_flag, bad))} do not apply with --self-supervised")


def _self_supervised(args: argparse.Namespace, command: str) -> None:
    import logging

    from engine.features.adapt import DEFAULT_SIDE, adapt, images_of_data

    path = Path(args.images or args.archive or args.events)
    if not path.exists():
        flag = "--images" if args.images else "--archive" if args.archive else "--events"
        raise FileNotFoundError(f"{flag}: {path} does not exist")
    if args.images is not None:
        data, desc = images_of_data(path)
    else:
        from engine.sources import open_source

        kind = "archive" if args.archive is not None else "events"
        source = open_source(**{kind: str(path)}, fs=args.fs)
        events, _ = source.read_all()
        if not events:
            raise ValueError(f"--{kind} {path}: no events found")
        data, desc = images_of_data(events, args.fs)
        desc = f"{desc} from {kind} {path}"
    adapt(data, args.out, init=args.init, epochs=args.epochs, budget_s=args.budget_seconds,
          batch=_or(args.batch, 64), lr=_or(args.lr, 3e-4),
          side=_or(args.image_size, DEFAULT_SIDE), trainable=_or(args.trainable, "fire6"),
          seed=args.seed, device=args.device, data_description=desc, command=command,
          log=logging.getLogger("engine.finetune").info)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m engine.finetune`` / ``microquake-finetune``."""
    args = build_parser().parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = "python -m engine.finetune " + shlex.join(argv_list)
    try:
        _check_flags(args)
        if args.self_supervised:
            from engine._util import configure_logging

            configure_logging()
            _self_supervised(args, command)
            return 0
        finetune(args.images, args.out, init=args.init,
                 epochs=10 if args.epochs is None else args.epochs,
                 batch=_or(args.batch, 32), lr=_or(args.lr, 1e-3),
                 schedule=args.schedule or "cosine",
                 val_fraction=0.2 if args.val_fraction is None else args.val_fraction,
                 seed=args.seed, image_size=_or(args.image_size, 227),
                 patience=3 if args.patience is None else args.patience,
                 projector=args.projector or 0, device=args.device, command=command)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
