"""Feature layouts: which activations of the network become an event's features.

A layout is a ``+``-joined list of parts, each part one layer of
:data:`~engine.features.squeezenet.LAYER_NAMES` (or a MATLAB alias stored with
the weights), either flattened whole or pooled:

``LAYER``
    the whole activation, flattened in MATLAB's column-major order (``conv10``
    gives the paper's 14 x 14 x n_classes numbers);
``LAYER_gap``
    averaged over the whole map: one number per channel (``fire9_gap``: 512);
``LAYER_gridK``
    averaged over a K x K grid of the map (adaptive average pooling): C * K * K
    numbers, channel-major, then frequency rows (high to low, as in the image),
    then time columns;
``LAYER_timeK``
    averaged over frequency and pooled to K time bins: the time profile of each
    channel, C * K numbers (``LAYER_time`` keeps every column of the map);
``LAYER_freqK``
    averaged over time and pooled to K frequency bins (``LAYER_freq``: every row).

The image's vertical axis is frequency (low at the bottom) and its horizontal
axis is time over the event (:mod:`engine.images`), so the pooled parts keep a
coarse time-frequency layout that a plain global average throws away. The parts
of a layout come from one forward pass and are concatenated in the order given.

Examples
--------
>>> [p.name for p in parse_layout("fire7_time7+fire9_grid2")]
['fire7_time7', 'fire9_grid2']
"""
from __future__ import annotations

from dataclasses import dataclass
import re
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch

# the layer names without importing torch: parsing a layout is done at start-up
LAYER_NAMES: tuple[str, ...] = (
    "data", "conv1", "relu_conv1", "pool1", "fire2", "fire3", "pool3", "fire4",
    "fire5", "pool5", "fire6", "fire7", "fire8", "fire9", "drop9", "conv10",
    "relu_conv10", "pool10", "prob",
)

__all__ = ["Part", "parse_layout", "layout_features", "flatten_activation", "POOLINGS"]

#: Pooling words of a part (``LAYER_<word>[K]``).
POOLINGS: tuple[str, ...] = ("gap", "grid", "time", "freq")
#: Layers with a 2-D (n, C) output: they can only be taken whole.
_VECTOR_LAYERS = ("pool10", "prob")
_PART = re.compile(r"^(?P<layer>[A-Za-z0-9_.\-]+?)_(?P<pool>gap|grid|time|freq)(?P<size>\d*)$")


@dataclass(frozen=True)
class Part:
    """One part of a layout: a layer and how it is pooled.

    Attributes
    ----------
    layer : str
        Engine name of the layer (:data:`~engine.features.squeezenet.LAYER_NAMES`).
    pool : str or None
        ``None`` (flattened whole) or one of :data:`POOLINGS`.
    size : int or None
        K of ``grid``/``time``/``freq``; ``None`` for the full extent (``time``
        and ``freq`` only) or for ``gap`` and whole layers.
    """

    layer: str
    pool: str | None = None
    size: int | None = None

    @property
    def name(self) -> str:
        """The part as written in a layout (``fire9_grid2``)."""
        if self.pool is None:
            return self.layer
        return f"{self.layer}_{self.pool}{self.size or ''}"


def _layout_error(spec: str, part: str, why: str) -> ValueError:
    return ValueError(
        f"feature_layer {spec!r}: {why} in part {part!r}; a layout is parts joined by '+', "
        f"each a layer ({', '.join(LAYER_NAMES)}) or a pooled layer LAYER_gap, LAYER_gridK, "
        "LAYER_time[K] or LAYER_freq[K] (e.g. 'conv10', 'fire9_gap', "
        "'fire7_time7+fire9_grid2')")


def parse_layout(spec: str, aliases: Mapping[str, str] | None = None) -> tuple[Part, ...]:
    """Parse a layout string into its parts.

    Parameters
    ----------
    spec : str
        E.g. ``"conv10"``, ``"fire9_gap"``, ``"fire7_time7+fire9_grid2"``.
    aliases : mapping, optional
        Names stored with the weights (MATLAB layer name -> engine name), used
        for whole parts and for the layer of pooled parts.

    Returns
    -------
    tuple of Part

    Raises
    ------
    ValueError
        An empty or repeated part, an unknown layer, a size missing (``grid``),
        given where it means nothing (``gap``) or zero, or a 2-D layer pooled.
    """
    aliases = dict(aliases or {})
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"feature_layer must be a non-empty string, got {spec!r}")
    parts: list[Part] = []
    for raw in spec.split("+"):
        word = raw.strip()
        if not word:
            raise _layout_error(spec, raw, "an empty part")
        whole = aliases.get(word, word)
        if whole in LAYER_NAMES:
            parts.append(Part(whole))
            continue
        m = _PART.match(word)
        if m is None:
            raise _layout_error(spec, word, "an unknown layer")
        layer = aliases.get(m["layer"], m["layer"])
        pool, size = m["pool"], (int(m["size"]) if m["size"] else None)
        if layer not in LAYER_NAMES:
            raise _layout_error(spec, word, f"unknown layer {m['layer']!r}")
        if layer in _VECTOR_LAYERS:
            raise _layout_error(spec, word, f"{layer} is a vector (n, C) and cannot be pooled")
        if pool == "gap" and size is not None:
            raise _layout_error(spec, word, "gap takes no size")
        if pool == "grid" and size is None:
            raise _layout_error(spec, word, "grid needs a size K (e.g. grid2)")
        if size == 0:
            raise _layout_error(spec, word, "a size of 0")
        parts.append(Part(layer, pool, size))
    names = [p.name for p in parts]
    if len(set(names)) < len(names):
        raise _layout_error(spec, next(n for n in names if names.count(n) > 1), "a repeated part")
    return tuple(parts)


def flatten_activation(act: torch.Tensor) -> torch.Tensor:
    """(n, C, h, w) -> (n, C*h*w) in MATLAB column-major order (row fastest); 2-D as is."""
    if act.ndim == 4:
        return act.permute(0, 1, 3, 2).reshape(act.shape[0], -1)
    return act


def pool_part(act: torch.Tensor, part: Part) -> torch.Tensor:
    """Features (n, d) of one part from the activation of its layer.

    Parameters
    ----------
    act : torch.Tensor
        (n, C, h, w) activation (or (n, C) for whole vector layers).
    part : Part

    Returns
    -------
    torch.Tensor
        (n, d), contiguous.
    """
    import torch.nn.functional as F

    if part.pool is None:
        return flatten_activation(act)
    if part.pool == "gap":
        return act.mean(dim=(2, 3))
    h, w = act.shape[2], act.shape[3]
    if part.pool == "grid":
        out = (part.size, part.size)
    elif part.pool == "time":
        out = (1, part.size or w)
    else:  # freq
        out = (part.size or h, 1)
    return F.adaptive_avg_pool2d(act, out).reshape(act.shape[0], -1)


def layout_features(model, x: torch.Tensor, parts: Sequence[Part]) -> torch.Tensor:
    """One forward pass of ``model`` and the concatenated features of ``parts``.

    Parameters
    ----------
    model : SqueezeNet
    x : torch.Tensor
        Input (n, 3, H, W), values 0..255.
    parts : sequence of Part
        From :func:`parse_layout`.

    Returns
    -------
    torch.Tensor
        (n, d) with d the sum of the parts' sizes.
    """
    acts = model.forward_layers(x, [p.layer for p in parts])
    blocks = [pool_part(acts[p.layer], p) for p in parts]
    if len(blocks) == 1:
        return blocks[0]
    import torch

    return torch.cat(blocks, dim=1)
