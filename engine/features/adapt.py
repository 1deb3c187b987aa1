"""Adapt the SqueezeNet to a target archive without labels (self-supervised).

``python -m engine.finetune --self-supervised`` and :func:`adapt_weights` start
from trained weights (by default the engine's own, ``engine/data/default_squeezenet.*``)
and fine-tune the top of the network on the run's own events with a VICReg
objective (Bardes, Ponce & LeCun 2022: invariance + variance + covariance
terms, no negatives, no momentum encoder): two augmented views of each event
must map to the same embedding, while every embedding dimension keeps a spread
and the dimensions stay decorrelated, so the representation cannot collapse.

What is trained
    The layers from ``trainable`` (default ``fire6``: fire6 to fire9 and conv10,
    with the network's own projector if it has one, the layers that run on
    14 x 14 maps at 227 px) plus a projection head
    (Linear-BN-ReLU-Linear to 128, discarded afterwards). The layers below are
    frozen and run without gradients. The head sees the
    representation ``fire9`` pooled globally (512) next to ``conv10`` pooled to
    3 x 3 (3 x 3 x n_classes), so that both layers the engine clusters on move.

Views
    Augmentations act on the scalar scalogram (the colour index 0..255 that the
    jet image encodes, recovered from RGB with the nearest jet colour), at a
    lower resolution ``side`` (default 113: four times cheaper than 227), and
    the result is re-coloured with ``jet(256)`` for the network. Each keeps an
    event's family (frequencies never move):

    - time shift, crop and a small time stretch (one affine resampling of the
      time axis, edge values repeated);
    - added background noise: a smooth random noise floor, merged with the
      scalogram as in log power (``log(10^a + 10^b)``), then the image is
      min-max rescaled as the image recipe does;
    - band-limited masking: a random band of frequencies replaced by the floor;
    - amplitude / log-offset jitter: a gain or an offset of the log power
      cancels in the recipe's min-max scaling, so what survives is a gamma on
      the scaled log power (x 0.8-1.25) and a small brightness offset.

The adapted weights keep the start's classes, mean, std and input size
(227 x 227: a valid ``--weights`` file of ``python -m engine.run``), and the
metadata's ``training`` block records the objective, the data (count and a
SHA-256 of the images), the epochs, the seed, the augmentations and the loss
history.

Deterministic for a seed on the CPU (same torch version and thread count).

Measured (CPU, 2 threads, machine idle): 3,600 events with the defaults (5
epochs, 285 steps of 64) in 105 s; about 5 ms per event and epoch. On the
Llaima sample split into seeded stratified halves (adapt on a half, evaluate on
it; standardise + PCA-50), fire9 pooled k-means ARI at k = 4 went from
0.42 / 0.43 (default weights) to 0.61-0.64 / 0.44-0.64 (two seeds); the
raw-pixel baseline is 0.33 / 0.46. The ``fire6`` default was chosen over
``fire8`` after seeing both halves, so these figures are optimistic.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine._util import progress

logger = logging.getLogger(__name__)

#: objectives :func:`adapt` knows
OBJECTIVES: tuple[str, ...] = ("vicreg",)
#: first trainable layer choices (everything after it is trained too)
TRAINABLE: tuple[str, ...] = ("fire6", "fire7", "fire8", "fire9", "conv10")
#: default side of the training views (the weights are saved for 227 x 227 inputs)
DEFAULT_SIDE = 113
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class Augmentation:
    """Strengths of the family-preserving augmentations (see the module docstring).

    Attributes
    ----------
    max_shift : float
        Largest time shift, as a share of the width.
    stretch : float
        Time stretch factor drawn in ``[1 / (1 + stretch), 1 + stretch]``.
    noise_prob : float
        Probability of an added noise floor.
    noise_level : (float, float)
        Range of the noise floor, as a share of the 0..255 scale.
    mask_prob : float
        Probability of a masked frequency band.
    mask_band : (float, float)
        Range of the masked band's height, as a share of the rows.
    gamma : float
        Gamma drawn in ``[1 / (1 + gamma), 1 + gamma]`` on the scaled image.
    brightness : float
        Offset drawn in ``+-brightness`` (of 255), after the gamma.
    """

    max_shift: float = 0.15
    stretch: float = 0.15
    noise_prob: float = 0.5
    noise_level: tuple[float, float] = (0.15, 0.5)
    mask_prob: float = 0.5
    mask_band: tuple[float, float] = (0.05, 0.2)
    gamma: float = 0.25
    brightness: float = 8.0


@dataclass
class AdaptResult:
    """What :func:`adapt` produced.

    Attributes
    ----------
    weights : Path
        The weights file written.
    history : list of dict
        Per epoch: ``epoch``, ``loss`` and its ``invariance``, ``variance`` and
        ``covariance`` parts (means over the epoch's batches), ``steps``.
    epochs_run : int
        Epochs started (the last may be cut by the time budget).
    stopped : str
        ``"epochs"`` or ``"budget"``.
    seconds : float
        Wall time of the training loop.
    """

    weights: Path
    history: list[dict] = field(default_factory=list)
    epochs_run: int = 0
    stopped: str = "epochs"
    seconds: float = 0.0


# ----------------------------------------------------------------------------- images
def jet_lut() -> torch.Tensor:
    """``jet(256)`` as a (256, 3) float32 tensor in 0..255."""
    from engine.images import jet

    return torch.from_numpy((jet(256) * 255.0).astype(np.float32))


def to_scalar(images: np.ndarray, side: int = DEFAULT_SIDE, batch: int = 256) -> torch.Tensor:
    """Scalar scalograms (n, 1, side, side) uint8 of jet RGB images.

    Parameters
    ----------
    images : ndarray (n, H, W, 3) uint8
        Seed-compatible jet images (low frequencies at the bottom).
    side : int
        Output side (bilinear resize with antialiasing).
    batch : int
        Images converted at a time (bounds the memory).

    Returns
    -------
    torch.Tensor (n, 1, side, side) uint8

    Raises
    ------
    ValueError
        Not a uint8 (n, H, W, 3) array, or ``side`` < 16.
    """
    from engine.features.pixels import jet_to_scalar

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (n, H, W, 3) RGB, got {images.dtype} "
                         f"{images.shape}")
    if int(side) < 16:
        raise ValueError(f"side must be >= 16, got {side}")
    out = torch.empty((len(images), 1, side, side), dtype=torch.uint8)
    for i in range(0, len(images), batch):
        s = torch.from_numpy(jet_to_scalar(images[i:i + batch]).astype(np.float32))[:, None]
        if s.shape[-2:] != (side, side):
            s = F.interpolate(s, size=(side, side), mode="bilinear", antialias=True,
                              align_corners=False)
        out[i:i + batch] = s.round().clamp(0, 255).to(torch.uint8)
    return out


def colourise(scalar: torch.Tensor, lut: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Jet RGB (n, 3, H, W) float32 in 0..255 of scalar images (n, 1, H, W) in 0..255."""
    lut = jet_lut() if lut is None else lut
    idx = scalar[:, 0].round().clamp(0, 255).long()
    return lut.to(scalar.device)[idx].permute(0, 3, 1, 2).contiguous()


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def time_warp(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Resample the time axis (columns) of images; rows (frequencies) never move.

    Output column ``j`` (centre ``u = (j + 0.5) / W`` in 0..1) reads the input at
    ``0.5 + scale * (u - 0.5) + shift`` (same units), linearly interpolated,
    the edge columns repeated beyond the ends. ``scale < 1`` stretches the event
    in time (a crop of the middle), ``shift > 0`` moves it left.

    Parameters
    ----------
    x : torch.Tensor (n, c, H, W) float
    scale, shift : torch.Tensor (n,)

    Returns
    -------
    torch.Tensor (n, c, H, W)
    """
    n, c, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = scale
    theta[:, 0, 2] = 2.0 * shift  # normalised coordinates run over -1..1
    theta[:, 1, 1] = 1.0
    grid = F.affine_grid(theta.to(x.device), (n, c, h, w), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_scalar(x: torch.Tensor, gen: torch.Generator,
                   aug: Optional[Augmentation] = None) -> torch.Tensor:
    """One random family-preserving view of scalar scalograms.

    Parameters
    ----------
    x : torch.Tensor (n, 1, H, W)
        Scalar images 0..255 (uint8 or float), rows = frequency, columns = time.
    gen : torch.Generator
        Source of every random draw (CPU generator).
    aug : Augmentation, optional
        Strengths (defaults: :class:`Augmentation`).

    Returns
    -------
    torch.Tensor (n, 1, H, W) float32 in 0..255

    Raises
    ------
    ValueError
        If ``x`` is not 4-D with one channel.
    """
    aug = aug or Augmentation()
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"scalar images must be (n, 1, H, W), got {tuple(x.shape)}")
    x = x.float()
    n, _, h, w = x.shape
    if n == 0:
        return x
    # time shift + crop + stretch
    scale = torch.exp(_uniform(n, -1.0, 1.0, gen) * float(np.log1p(aug.stretch)))
    shift = _uniform(n, -aug.max_shift, aug.max_shift, gen)
    x = time_warp(x, scale.to(x.dtype), shift.to(x.dtype))
    # background noise floor (smooth random field), merged as log power, then rescaled
    use_noise = torch.rand(n, generator=gen) < aug.noise_prob
    level = _uniform(n, *aug.noise_level, gen) * 255.0
    field_ = torch.randn(n, 1, max(h // 8, 2), max(w // 8, 2), generator=gen) * 10.0
    field_ = F.interpolate(field_, size=(h, w), mode="bilinear", align_corners=False)
    floor = (level[:, None, None, None] + field_).to(x.device)
    t = 255.0 / 4.0  # one decade of log power ~ a quarter of the scale
    merged = t * torch.logaddexp(x / t, floor / t)
    x = torch.where(use_noise.to(x.device)[:, None, None, None], merged, x)
    # band-limited masking: a band of rows replaced by the image's low level
    use_mask = torch.rand(n, generator=gen) < aug.mask_prob
    height = (_uniform(n, *aug.mask_band, gen) * h).round().clamp(min=1)
    top = (torch.rand(n, generator=gen) * (h - height + 1)).floor()
    rows = torch.arange(h, dtype=torch.float32)[None, :]
    band = (rows >= top[:, None]) & (rows < (top + height)[:, None]) & use_mask[:, None]
    low = torch.quantile(x.reshape(n, -1), 0.1, dim=1)
    x = torch.where(band.to(x.device)[:, None, :, None], low[:, None, None, None], x)
    # min-max rescaling (the image recipe), then gamma and brightness
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo).clamp(min=1e-6)
    gamma = torch.exp(_uniform(n, -1.0, 1.0, gen) * float(np.log1p(aug.gamma)))
    x = x.clamp(0, 1) ** gamma.to(x.device)[:, None, None, None] * 255.0
    b = _uniform(n, -aug.brightness, aug.brightness, gen).to(x.device)
    return (x + b[:, None, None, None]).clamp(0.0, 255.0)


# ----------------------------------------------------------------------------- objective
def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0,
                var_weight: float = 25.0, cov_weight: float = 1.0,
                eps: float = 1e-4) -> tuple[torch.Tensor, dict[str, float]]:
    """VICReg loss of two batches of embeddings (n, d) of the same items.

    ``sim_weight * MSE(z1, z2) + var_weight * mean(relu(1 - std)) summed over
    both views + cov_weight * (sum of squared off-diagonal covariances / d)``
    summed over both views (Bardes et al. 2022).

    Returns
    -------
    (torch.Tensor, dict)
        The scalar loss and its three parts (floats).

    Raises
    ------
    ValueError
        Shapes differ, or fewer than 2 items.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"embeddings must be two (n, d) tensors of one shape, got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")
    n, d = z1.shape
    if n < 2:
        raise ValueError("VICReg needs at least 2 items per batch")
    inv = F.mse_loss(z1, z2)
    var = z1.new_zeros(())
    cov = z1.new_zeros(())
    for z in (z1, z2):
        z = z - z.mean(dim=0)
        std = torch.sqrt(z.var(dim=0) + eps)
        var = var + F.relu(1.0 - std).mean()
        c = (z.T @ z) / (n - 1)
        off = c - torch.diag(torch.diag(c))
        cov = cov + off.pow(2).sum() / d
    loss = sim_weight * inv + var_weight * var + cov_weight * cov
    return loss, {"invariance": float(inv.detach()), "variance": float(var.detach()),
                  "covariance": float(cov.detach())}


class _Adapter(nn.Module):
    """The SqueezeNet split at ``trainable`` plus a projection head."""

    def __init__(self, net: nn.Module, trainable: str, proj_dim: int) -> None:
        super().__init__()
        self.net = net
        fires = [6, 7, 8, 9]
        first = 10 if trainable == "conv10" else int(trainable[4:])
        self.frozen_until = "pool5" if first == 6 else (f"fire{first - 1}" if first <= 9
                                                         else "fire9")
        self.train_fires = [f"fire{i}" for i in fires if i >= first]
        for p in net.parameters():
            p.requires_grad_(False)
        for name in self.train_fires:
            for p in net.fires[name].parameters():
                p.requires_grad_(True)
        for p in net.conv10.parameters():
            p.requires_grad_(True)
        if net.projector is not None:
            for p in net.projector.parameters():
                p.requires_grad_(True)
        d_in = 512 + 9 * net.conv10.out_channels
        self.projector = nn.Sequential(nn.Linear(d_in, proj_dim), nn.BatchNorm1d(proj_dim),
                                       nn.ReLU(inplace=True), nn.Linear(proj_dim, proj_dim))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) 0..255 -> fire9 pooled (512) + conv10 pooled to 3 x 3."""
        with torch.no_grad():
            h = self.net.forward_layers(x, [self.frozen_until])[self.frozen_until]
        for name in self.train_fires:
            h = self.net.fires[name](h)
        c = self.net.head(h)  # no dropout: the representation is what the engine extracts
        if self.net.head_relu:
            c = F.relu(c)
        return torch.cat([h.mean(dim=(2, 3)), F.adaptive_avg_pool2d(c, 3).flatten(1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.represent(x))


# ----------------------------------------------------------------------------- inputs
def load_unlabelled_images(root: str | Path, image_size: int = 227) -> np.ndarray:
    """Every image under ``root`` (itself and one level of sub-folders), uint8 RGB.

    Class sub-folders are allowed and ignored (no labels are used).

    Raises
    ------
    FileNotFoundError
        ``root`` is not a folder.
    ValueError
        No images, or an unreadable one.
    """
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    files = sorted(f for f in root.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files += sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)}) in itself or "
                         "its sub-folders")
    out = np.empty((len(files), image_size, image_size, 3), np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert("RGB")
                if im.size != (image_size, image_size):
                    im = im.resize((image_size, image_size), Image.BICUBIC)
                out[i] = np.asarray(im, dtype=np.uint8)
        except OSError as exc:
            raise ValueError(f"cannot read image {f}: {exc}") from exc
    return out


def images_of_data(data: Any, fs: float = 100.0) -> tuple[np.ndarray, str]:
    """uint8 (n, 227, 227, 3) images and a description of ``data``.

    ``data`` is an image folder (path), an array of images, or a sequence of
    :class:`~engine.events.Event` (their images, or superlet images of their samples).

    Raises
    ------
    ValueError
        Empty or malformed data.
    FileNotFoundError
        A path that does not exist.
    """
    if isinstance(data, (str, Path)):
        return load_unlabelled_images(data), f"images {Path(data)}"
    if isinstance(data, np.ndarray):
        if data.ndim != 4 or data.shape[-1] != 3 or data.dtype != np.uint8:
            raise ValueError(f"image array must be uint8 (n, H, W, 3), got {data.dtype} "
                             f"{data.shape}")
        return data, f"{len(data)} images (array)"
    events = list(data)
    if not events:
        raise ValueError("no events to adapt on")
    from engine.events import Event
    from engine.features.base import images_of

    if not all(isinstance(e, Event) for e in events):
        raise ValueError("data must be an image folder, a uint8 image array or a sequence "
                         "of engine.events.Event")
    chunks = [images_of(events[i:i + 64], fs) for i in range(0, len(events), 64)]
    return np.concatenate([np.asarray(c) for c in chunks]), f"{len(events)} events"


def _digest(images: np.ndarray) -> str:
    h = hashlib.sha256()
    for i in range(0, len(images), 256):
        h.update(np.ascontiguousarray(images[i:i + 256]).tobytes())
    return "sha256:" + h.hexdigest()[:16]


def _load_start(init: Optional[str | Path]) -> tuple[nn.Module, dict, dict]:
    """Network, metadata and provenance of the starting weights."""
    from engine.features.extractor import _model_from_state
    from engine.features.weights import default_weights_path, load_weights

    if init is None:
        path = default_weights_path()
    else:
        path = Path(init)
        if not path.is_file():
            raise FileNotFoundError(f"--from: {path} does not exist")
    if path.suffix.lower() == ".mat":
        from engine.features.matlab import import_matlab

        net = import_matlab(path)
        state, meta = net.state_dict, net.metadata()
    else:
        state, meta = load_weights(path)
    model = _model_from_state(state, meta, None, path)
    prov = {"file": path.name, "default": init is None,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "training_init": (meta.get("training") or {}).get("init")}
    return model, meta, prov


# ----------------------------------------------------------------------------- training
#: gradient steps that ``epochs=None`` aims at (whole epochs, at least one)
MIN_STEPS = 256


def adapt(images: np.ndarray, out: str | Path, *, init: Optional[str | Path] = None,
          epochs: Optional[int] = None, budget_s: Optional[float] = None, batch: int = 64,
          lr: float = 3e-4, head_lr: Optional[float] = None, weight_decay: float = 1e-4,
          side: int = DEFAULT_SIDE,
          trainable: str = "fire6", proj_dim: int = 128, objective: str = "vicreg",
          augmentation: Optional[Augmentation] = None, seed: int = 0, device: str = "cpu",
          data_description: str = "", command: Optional[str] = None,
          log: Optional[Callable[[str], None]] = None) -> AdaptResult:
    """Fine-tune a SqueezeNet on unlabelled scalogram images with VICReg and save it.

    Parameters
    ----------
    images : ndarray (n, H, W, 3) uint8
        Jet scalogram images of the target events (n >= 2).
    out : str or Path
        Weights file (``.safetensors`` or ``.pt``; the JSON goes beside it).
    init : str or Path, optional
        Starting weights (engine weights or a MATLAB ``.mat``); default the
        engine's own.
    epochs : int, optional
        Passes over the events; default: enough whole epochs for
        :data:`MIN_STEPS` gradient steps (5 epochs for 3,600 events in batches
        of 64, 64 epochs for 200).
    budget_s : float, optional
        Stop after the batch that exceeds this many seconds of training.
    batch : int
        Events per batch (>= 2; the last smaller batch is dropped when it has
        fewer than 2 events).
    lr : float
        AdamW learning rate of the trained network layers (cosine decay over ``epochs``).
    head_lr : float, optional
        Learning rate of the fresh projection head (default ``10 * lr``).
    weight_decay : float
        AdamW weight decay.
    side : int
        Side of the training views (the weights are saved for the start's input size).
    trainable : {"fire6", "fire7", "fire8", "fire9", "conv10"}
        First trained layer; everything before it is frozen.
    proj_dim : int
        Width of the projection head.
    objective : {"vicreg"}
        Self-supervised loss.
    augmentation : Augmentation, optional
        Strengths of the views.
    seed : int
        Seed of the head's initialisation, the order and the views.
    device : {"cpu", "cuda", "auto"}
        Training device (views are drawn on the CPU generator either way).
    data_description : str
        What the images are (recorded in the metadata).
    command : str, optional
        Command line recorded in the metadata.
    log : callable, optional
        Where progress lines go (default: this module's logger).

    Returns
    -------
    AdaptResult

    Raises
    ------
    ValueError
        Bad parameters or images.
    FileNotFoundError
        Missing ``init``.
    """
    log = log or logger.info
    _check_params(epochs=epochs, batch=batch, lr=lr, side=side, trainable=trainable,
                  proj_dim=proj_dim, objective=objective, device=device, budget_s=budget_s,
                  out=out)
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (n, H, W, 3), got {images.dtype} {images.shape}")
    if len(images) < 2:
        raise ValueError(f"self-supervised adaptation needs >= 2 events, got {len(images)}")
    dev = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    aug = augmentation or Augmentation()
    t_start = time.perf_counter()
    model, meta, prov = _load_start(init)
    with torch.random.fork_rng(devices=[]):  # seeded head, global RNG left alone
        torch.manual_seed(seed)
        adapter = _Adapter(model, trainable, proj_dim).to(dev)
    adapter.net.eval()  # frozen part: no dropout; BN only in the projector
    scalar = to_scalar(images, side).to(dev)  # views are drawn on the training device
    digest = _digest(images)
    n = len(scalar)
    bs = min(batch, n)
    steps_per_epoch = n // bs + (1 if n % bs >= 2 else 0)
    if epochs is None:
        epochs = max(1, -(-MIN_STEPS // steps_per_epoch))
    head = list(adapter.projector.parameters())
    body = [q for q in adapter.trainable_parameters() if all(q is not h for h in head)]
    head_lr = 10.0 * lr if head_lr is None else head_lr
    opt = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": head_lr}],
                            weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs * steps_per_epoch, 1))
    gen = torch.Generator().manual_seed(seed)
    lut = jet_lut().to(dev)
    log(f"self-supervised adaptation ({objective}): {n} events, {side} px views, "
        f"training {', '.join(adapter.train_fires + ['conv10'])} + projection head, "
        f"{epochs} epoch(s)" + (f", budget {budget_s:g} s" if budget_s else ""))
    history: list[dict] = []
    stopped = "epochs"
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        adapter.projector.train()
        order = torch.randperm(n, generator=gen)
        sums = {"loss": 0.0, "invariance": 0.0, "variance": 0.0, "covariance": 0.0}
        steps = 0
        for i in progress(range(0, n, bs), desc=f"adapt epoch {epoch}",
                          total=-(-n // bs), unit="batch"):
            sel = order[i:i + bs]
            if len(sel) < 2:
                continue
            x = scalar[sel.to(dev)]
            v1 = colourise(augment_scalar(x, gen, aug), lut)
            v2 = colourise(augment_scalar(x, gen, aug), lut)
            if dev.type == "cpu":
                v1 = v1.contiguous(memory_format=torch.channels_last)
                v2 = v2.contiguous(memory_format=torch.channels_last)
            loss, parts = vicreg_loss(adapter(v1), adapter(v2))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums["loss"] += float(loss.detach())
            for k, v in parts.items():
                sums[k] += v
            steps += 1
            if budget_s is not None and time.perf_counter() - t0 > budget_s:
                stopped = "budget"
                break
        rec = {"epoch": epoch, "steps": steps,
               **{k: round(v / max(steps, 1), 6) for k, v in sums.items()}}
        history.append(rec)
        log(f"epoch {epoch:3d}  loss {rec['loss']:.4f}  (invariance {rec['invariance']:.4f}, "
            f"variance {rec['variance']:.4f}, covariance {rec['covariance']:.4f})  "
            f"{time.perf_counter() - t0:.0f} s")
        if stopped == "budget":
            log(f"time budget of {budget_s:g} s reached in epoch {epoch}")
            break
    seconds = time.perf_counter() - t0
    import engine

    state = {k: v.detach().float().cpu() for k, v in adapter.net.state_dict().items()}
    metadata = {k: meta[k] for k in ("classes", "input_size", "pool_padding") if k in meta}
    metadata.update({
        "mean": state["mean"].reshape(-1).tolist() if state["mean"].numel() == 3 else "image",
        "std": state["std"].reshape(-1).tolist(),
        "head_relu": bool(adapter.net.head_relu),
        "layer_aliases": meta.get("layer_aliases", {}),
        "training": {
            "init": "self-supervised", "objective": objective, "from": prov,
            "command": command, "data": data_description, "n_events": int(n),
            "data_sha256": digest, "epochs": int(epochs), "epochs_run": len(history),
            "stopped": stopped, "budget_s": budget_s, "seed": int(seed), "batch": int(bs),
            "lr": float(lr), "head_lr": float(head_lr), "weight_decay": float(weight_decay),
            "schedule": "cosine",
            "view_side": int(side), "trainable": adapter.train_fires + ["conv10"],
            "projection": [512 + 9 * adapter.net.conv10.out_channels, proj_dim, proj_dim],
            "augmentation": {k: list(v) if isinstance(v, tuple) else v
                             for k, v in asdict(aug).items()},
            "history": history, "device": str(dev), "threads": torch.get_num_threads(),
            "engine_version": engine.__version__, "torch_version": torch.__version__,
            "seconds": round(time.perf_counter() - t_start, 1),
        },
    })
    from engine.features.weights import save_weights

    path, meta_path = save_weights(out, state, metadata)
    log(f"wrote {path} and {meta_path} ({seconds:.0f} s of training)")
    return AdaptResult(weights=path, history=history, epochs_run=len(history), stopped=stopped,
                       seconds=seconds)


def _check_params(*, epochs: Optional[int], batch: int, lr: float, side: int, trainable: str,
                  proj_dim: int, objective: str, device: str, budget_s: Optional[float],
                  out: str | Path) -> None:
    for name, value, low in (("epochs", epochs, 1), ("batch", batch, 2), ("side", side, 32),
                             ("proj_dim", proj_dim, 2)):
        if name == "epochs" and value is None:
            continue
        if not isinstance(value, (int, np.integer)) or int(value) < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if budget_s is not None and not budget_s > 0:
        raise ValueError(f"budget_s must be > 0 seconds, got {budget_s}")
    if trainable not in TRAINABLE:
        raise ValueError(f"trainable must be one of {', '.join(TRAINABLE)}, got {trainable!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device must be cpu, cuda or auto, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA GPU")
    if Path(out).suffix not in (".safetensors", ".pt"):
        raise ValueError(f"--out {out} must end in .safetensors or .pt")


def adapt_weights(data: Any, init: Optional[str | Path] = None,
                  out: str | Path = "adapted.safetensors", fs: float = 100.0,
                  budget_s: Optional[float] = 600.0, seed: int = 0, device: str = "cpu",
                  epochs: Optional[int] = None, **params: Any) -> Path:
    """Adapt weights to ``data`` without labels and write them (library entry point).

    Parameters
    ----------
    data : path, ndarray or sequence of Event
        An image folder, uint8 (n, 227, 227, 3) jet images, or the run's events
        (their images, or superlet images of their samples at ``fs``).
    init : str or Path, optional
        Starting weights; default the engine's own.
    out : str or Path
        Weights file to write (``.safetensors`` / ``.pt``), usable as ``--weights``.
    fs : float
        Sampling rate of the events' samples (Hz).
    budget_s : float, optional
        Time budget of the training loop in seconds (default 600).
    seed : int
        Random seed.
    device : {"cpu", "cuda", "auto"}
        Training device.
    epochs : int, optional
        Epochs (default: enough for :data:`MIN_STEPS` gradient steps).
    **params
        Other parameters of :func:`adapt` (``batch``, ``lr``, ``side``, ``trainable``...).

    Returns
    -------
    Path
        The weights file.

    Raises
    ------
    ValueError, FileNotFoundError
        Bad data or parameters.
    """
    images, desc = images_of_data(data, fs)
    return adapt(images, out, init=init, epochs=epochs, budget_s=budget_s, seed=seed,
                 device=device, data_description=desc, **params).weights
