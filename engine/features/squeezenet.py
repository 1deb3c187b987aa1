"""SqueezeNet v1.1 written out by hand (no torchvision), with MATLAB-style pooling.

The layout follows the paper's network (method.md, Stage 3): conv1 3x3/2 with 64
filters, max-pools 3x3/2 after conv1, fire3 and fire5, fire modules 2-9 with the
v1.1 widths, dropout, a final 1x1 conv with one filter per class, ReLU and a
global average pool. MATLAB pads ``pool3`` and ``pool5`` asymmetrically (0 on
top/left, 1 on bottom/right); that is done here with an explicit ``F.pad`` by
``-inf`` in front of an unpadded ``MaxPool2d``, so that any per-pool padding
can be reproduced.

Every intermediate result has a name (see :data:`LAYER_NAMES`), and
:meth:`SqueezeNet.forward_layers` returns the activations of any of them.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from engine.features.layouts import LAYER_NAMES as _LAYOUT_LAYER_NAMES

#: (squeeze, expand1x1, expand3x3) widths of the SqueezeNet v1.1 fire modules.
FIRE_WIDTHS: dict[int, tuple[int, int, int]] = {
    2: (16, 64, 64), 3: (16, 64, 64),
    4: (32, 128, 128), 5: (32, 128, 128),
    6: (48, 192, 192), 7: (48, 192, 192),
    8: (64, 256, 256), 9: (64, 256, 256),
}

#: MATLAB's pool padding for the published network, (top, bottom, left, right).
MATLAB_POOL_PADDING: dict[str, tuple[int, int, int, int]] = {
    "pool1": (0, 0, 0, 0),
    "pool3": (0, 1, 0, 1),
    "pool5": (0, 1, 0, 1),
}

#: Names of the layers whose outputs :meth:`SqueezeNet.forward_layers` can return,
#: in network order. ``data`` is the mean-subtracted input, ``fireN`` the
#: concatenated expand outputs (after their ReLUs), ``conv10`` the final 1x1 conv
#: before its ReLU, ``pool10`` the global average of ``relu_conv10`` (the class
#: scores; ``relu_conv10`` is ``conv10`` itself when ``head_relu=False``) and
#: ``prob`` their softmax.
LAYER_NAMES: tuple[str, ...] = _LAYOUT_LAYER_NAMES

#: Global-average-pooled fire outputs, e.g. ``fire9_gap`` (n, 512).
GAP_NAMES: tuple[str, ...] = tuple(f"fire{i}_gap" for i in FIRE_WIDTHS)


def _check_padding(name: str, pad: Sequence[int]) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(p) for p in pad)
    except (TypeError, ValueError):
        raise ValueError(f"padding of {name} must be 4 integers (top, bottom, left, right), "
                         f"got {pad!r}") from None
    if len(values) != 4 or min(values) < 0:
        raise ValueError(f"padding of {name} must be 4 non-negative integers "
                         f"(top, bottom, left, right), got {pad!r}")
    return values  # type: ignore[return-value]


class PaddedMaxPool2d(nn.Module):
    """3x3/2 max-pool with explicit (top, bottom, left, right) padding by ``-inf``.

    Parameters
    ----------
    padding : sequence of 4 int
        Rows added on top and bottom, columns added on the left and right.
        Padded cells never win the maximum (MATLAB's convention).
    kernel_size, stride : int
        Pool window and step.
    """

    def __init__(self, padding: Sequence[int] = (0, 0, 0, 0), kernel_size: int = 3,
                 stride: int = 2) -> None:
        super().__init__()
        self.padding = _check_padding("max-pool", padding)
        self.pool = nn.MaxPool2d(kernel_size=kernel_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom, left, right = self.padding
        if any(self.padding):
            x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return self.pool(x)

    def extra_repr(self) -> str:
        return f"padding(top,bottom,left,right)={self.padding}"


class Fire(nn.Module):
    """Fire module: 1x1 squeeze + ReLU, then 1x1 and 3x3 expands + ReLU, concatenated.

    Parameters
    ----------
    in_channels : int
        Channels of the input.
    squeeze, expand1x1, expand3x3 : int
        Filters of the three convolutions.
    """

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(s)), F.relu(self.expand3x3(s))], dim=1)


def projector_width(state: Mapping[str, torch.Tensor]) -> int:
    """Width of the projector a SqueezeNet state dict holds (0: none)."""
    weight = state.get("projector.0.weight")
    return 0 if weight is None else int(weight.shape[0])


class SqueezeNet(nn.Module):
    """SqueezeNet v1.1 with a configurable head and MATLAB-compatible pooling.

    Input: float tensor (n, 3, H, W) with values in 0..255 (RGB). The network
    first subtracts its ``mean`` buffer ("zero-centre" normalisation) and
    divides by its ``std`` buffer (ones unless trained so).

    Parameters
    ----------
    n_classes : int
        Filters of the final 1x1 conv (``conv10``), one per class.
    pool_padding : mapping, optional
        ``{"pool1": (top, bottom, left, right), "pool3": ..., "pool5": ...}``;
        missing pools use :data:`MATLAB_POOL_PADDING`.
    dropout : float
        Dropout probability in front of ``conv10`` (training only).
    mean : sequence of 3 float or tensor (3, H, W), optional
        Per-channel mean (R, G, B) or mean image subtracted from the input;
        zeros by default.
    std : sequence of 3 float, optional
        Per-channel divisor applied after the mean (ones by default, as in the
        MATLAB network; training from scratch uses the training images' spread
        so that the first layers see unit-scale inputs).
    head_relu : bool
        Apply the ReLU after ``conv10`` before the global average (SqueezeNet and
        the MATLAB network: True). The engine's own weights are trained with
        False (the class scores are the plain average of ``conv10``), which
        keeps a freshly initialised head from dying (all scores clipped to 0).
    projector : int
        Width of an MLP projector (1x1 conv, batch norm, ReLU) between fire9
        and ``conv10``; 0 (default) for none, as published. Trained with the
        classifier, it keeps more of what varies within a class in the fire
        modules (Wang et al. 2022); it runs inside the ``conv10`` stage, so the
        layer names do not change. Created after the other layers are
        initialised, with PyTorch's default initialisation.

    Raises
    ------
    ValueError
        If ``n_classes`` < 1, ``projector`` < 0, a padding is malformed or
        ``mean`` has a bad shape.
    """

    def __init__(self, n_classes: int = 2,
                 pool_padding: Mapping[str, Sequence[int]] | None = None,
                 dropout: float = 0.5,
                 mean: Sequence[float] | torch.Tensor | None = None,
                 std: Sequence[float] | torch.Tensor | None = None,
                 head_relu: bool = True, projector: int = 0) -> None:
        super().__init__()
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes!r}")
        if int(projector) < 0:
            raise ValueError(f"projector must be >= 0 (0: none), got {projector!r}")
        pads = dict(MATLAB_POOL_PADDING)
        for key, value in (pool_padding or {}).items():
            if key not in pads:
                raise ValueError(f"unknown pool {key!r} in pool_padding; expected one of "
                                 f"{sorted(pads)}")
            pads[key] = _check_padding(key, value)
        self.n_classes = int(n_classes)
        self.pool_padding = pads
        self.head_relu = bool(head_relu)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2)
        self.pool1 = PaddedMaxPool2d(pads["pool1"])
        self.pool3 = PaddedMaxPool2d(pads["pool3"])
        self.pool5 = PaddedMaxPool2d(pads["pool5"])
        channels = 64
        fires = {}
        for i, (s, e1, e3) in FIRE_WIDTHS.items():
            fires[f"fire{i}"] = Fire(channels, s, e1, e3)
            channels = e1 + e3
        self.fires = nn.ModuleDict(fires)
        self.drop9 = nn.Dropout(p=dropout)
        width = int(projector) or channels
        self.conv10 = nn.Conv2d(width, self.n_classes, kernel_size=1)
        self.register_buffer("mean", _mean_tensor(mean))
        self.register_buffer("std", _std_tensor(std))
        self.reset_parameters()
        self.projector: Optional[nn.Sequential] = None
        if projector:
            self.projector = nn.Sequential(nn.Conv2d(channels, width, kernel_size=1),
                                           nn.BatchNorm2d(width), nn.ReLU())

    def reset_parameters(self) -> None:
        """Initialise like torchvision's SqueezeNet (Kaiming uniform, conv10 N(0, 0.01))."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is self.conv10:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def replace_head(self, n_classes: int) -> None:
        """Replace ``conv10`` by a new, freshly initialised 1x1 conv with ``n_classes`` filters."""
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes!r}")
        old = self.conv10
        self.conv10 = nn.Conv2d(old.in_channels, int(n_classes), kernel_size=1).to(
            device=old.weight.device, dtype=old.weight.dtype)
        nn.init.normal_(self.conv10.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.conv10.bias)
        self.n_classes = int(n_classes)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The ``conv10`` stage: the projector, if any, then ``conv10`` (n, classes, h, w)."""
        return self.conv10(x if self.projector is None else self.projector(x))

    def _stages(self):
        yield "data", lambda x: (x - self.mean) / self.std
        yield "conv1", self.conv1
        yield "relu_conv1", F.relu
        yield "pool1", self.pool1
        yield "fire2", self.fires["fire2"]
        yield "fire3", self.fires["fire3"]
        yield "pool3", self.pool3
        yield "fire4", self.fires["fire4"]
        yield "fire5", self.fires["fire5"]
        yield "pool5", self.pool5
        for i in (6, 7, 8, 9):
            yield f"fire{i}", self.fires[f"fire{i}"]
        yield "drop9", self.drop9
        yield "conv10", self.head
        yield "relu_conv10", F.relu if self.head_relu else (lambda x: x)
        yield "pool10", lambda x: x.mean(dim=(2, 3))
        yield "prob", lambda x: torch.softmax(x, dim=1)

    def forward_layers(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Run the network up to the last requested layer and return those activations.

        Parameters
        ----------
        x : torch.Tensor
            Input (n, 3, H, W), values 0..255.
        layers : iterable of str
            Names from :data:`LAYER_NAMES` or :data:`GAP_NAMES`.

        Returns
        -------
        dict
            Name -> tensor; 4-D (n, C, h, w) for conv/pool/fire layers, 2-D (n, C)
            for ``pool10``, ``prob`` and ``fireN_gap``.

        Raises
        ------
        ValueError
            If a name is unknown.
        """
        wanted = list(dict.fromkeys(layers))
        for name in wanted:
            if name not in LAYER_NAMES and name not in GAP_NAMES:
                raise ValueError(f"unknown layer {name!r}; expected one of "
                                 f"{list(LAYER_NAMES) + list(GAP_NAMES)}")
        base = {n[:-4] if n in GAP_NAMES else n for n in wanted}
        last = max(LAYER_NAMES.index(n) for n in base)
        out: dict[str, torch.Tensor] = {}
        for idx, (name, fn) in enumerate(self._stages()):
            x = fn(x)
            if name in wanted:
                out[name] = x
            if f"{name}_gap" in wanted:
                out[f"{name}_gap"] = x.mean(dim=(2, 3))
            if idx == last:
                break
        return {n: out[n] for n in wanted}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores: global average of ``relu_conv10`` (n, n_classes), before softmax."""
        return self.forward_layers(x, ["pool10"])["pool10"]


def _mean_tensor(mean: Sequence[float] | torch.Tensor | None) -> torch.Tensor:
    if mean is None:
        return torch.zeros(3, 1, 1)
    t = torch.as_tensor(mean, dtype=torch.float32)
    if t.ndim == 1 and t.numel() == 3:
        return t.reshape(3, 1, 1).clone()
    if t.ndim == 3 and t.shape[0] == 3:
        return t.clone()
    raise ValueError(f"mean must be 3 per-channel values or a (3, H, W) image, "
                     f"got shape {tuple(t.shape)}")


def _std_tensor(std: Sequence[float] | torch.Tensor | None) -> torch.Tensor:
    if std is None:
        return torch.ones(3, 1, 1)
    t = torch.as_tensor(std, dtype=torch.float32)
    if t.numel() != 3 or not bool((t > 0).all()):
        raise ValueError(f"std must be 3 positive per-channel values, got {std!r}")
    return t.reshape(3, 1, 1).clone()
