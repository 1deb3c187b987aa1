"""The paper's featurizer: superlet scalogram images -> SqueezeNet activations.

Events are turned into seed-compatible 227 x 227 images (``method.md`` Stages
0-2; image sets keep their images) and passed through a SqueezeNet v1.1
(:class:`~engine.features.extractor.SqueezeNetExtractor`): the engine's own
weights, a MATLAB DAGNetwork, or weights adapted to an archive by
``python -m engine.finetune --self-supervised``. On CUDA the images never
leave the GPU.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from engine.events import Event
from engine.features.base import IMAGE_RECIPE, Featurizer, file_digest, images_of

#: The default layout (:mod:`engine.features.layouts`): fire7 averaged over
#: frequency in 7 time bins (384 x 7) and fire9 on a 2 x 2 time-frequency grid
#: (512 x 4), 4,736 numbers per event. Chosen on the development sets over conv10,
#: global averages and other pooled layouts (README, "Families on real data").
DEFAULT_LAYOUT = "fire7_time7+fire9_grid2"

#: CNN precisions on CUDA ("fp32" disables TF32; "tf32" allows it explicitly)
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
#: accepted weights files
WEIGHT_SUFFIXES = (".mat", ".safetensors", ".pt")

_EXTRACTORS: dict[tuple, Any] = {}
#: events whose images are made in one call (bounds memory: 256 images = 40 MB)
IMAGE_GROUP = 256


class SuperletCNN(Featurizer):
    """Superlet images through a SqueezeNet; features of one layer.

    Parameters
    ----------
    weights : str or None
        MATLAB DAGNetwork ``.mat`` or engine weights (``.safetensors``/``.pt``
        with their ``.json``); ``None``: the engine's default weights.
    feature_layer : str
        A layout (:mod:`engine.features.layouts`): the default
        :data:`DEFAULT_LAYOUT` (fire7's time profile in
        7 bins and fire9 on a 2 x 2 time-frequency grid), ``"conv10"`` (the
        paper's 14 x 14 x n_classes), ``"fireN_gap"``, any named layer, or
        pooled parts joined by ``+``.
    fs : float
        Sampling rate of the waveforms (Hz).
    device : {"cpu", "cuda"}
        Where images and the CNN are computed.
    batch : int
        Images per CNN batch.
    precision : {"fp32", "tf32", "fp16", "bf16"}
        CNN precision on CUDA.
    tensorrt : bool
        Compile the CNN with torch-tensorrt on CUDA.
    images_dir : str or None
        Also write each event's image as ``images_dir/<label>/<event>.png``.
    """

    name = "superlet-cnn"
    description = ("superlet scalogram images (the paper's recipe) through a SqueezeNet; "
                   "--weights, --feature-layer (default: the engine's weights, "
                   f"{DEFAULT_LAYOUT})")
    needs = "either"

    def __init__(self, weights: Optional[str] = None, feature_layer: str = DEFAULT_LAYOUT,
                 fs: float = 100.0, device: str = "cpu", batch: int = 32,
                 precision: str = "fp32", tensorrt: bool = False,
                 images_dir: Optional[str] = None) -> None:
        self.weights = weights
        self.feature_layer = feature_layer
        self.fs = fs
        self.device = device
        self.batch = batch
        self.precision = precision
        self.tensorrt = tensorrt
        self.images_dir = images_dir

    def check(self) -> "SuperletCNN":
        """Validate weights path and suffix, precision, device and batch."""
        if self.weights is not None:
            p = Path(self.weights)
            if p.suffix.lower() not in WEIGHT_SUFFIXES:
                raise ValueError(f"--weights {self.weights}: expected a MATLAB network (.mat) "
                                 "or engine weights (.safetensors, .pt)")
            if not p.is_file():
                raise FileNotFoundError(f"--weights: {self.weights} does not exist")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; "
                             f"got {self.precision!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda'; got {self.device!r}")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"batch must be a positive integer; got {self.batch!r}")
        if self.weights is None or Path(self.weights).suffix.lower() != ".mat":
            # the layout is checked before any event is read; a MATLAB network's layer
            # aliases are only known once it is read, so its layouts are checked then
            from engine.features.layouts import parse_layout

            parse_layout(self.feature_layer, _stored_aliases(self.weights_path()))
        return self

    def weights_path(self) -> Path:
        """The weights file in use (the default weights when ``weights`` is None)."""
        if self.weights is None:
            from engine.features.weights import default_weights_path

            return default_weights_path()
        return Path(self.weights).resolve()

    def _fit(self, events: list[Event] | None) -> None:
        self.extractor_ = _extractor(self)

    def images(self, events: list[Event]):
        """The scalogram images of ``events`` (on the GPU for ``device="cuda"``)."""
        return images_of(events, self.fs, self.device)

    def _transform(self, events: list[Event]) -> np.ndarray:
        from engine._util import quiet

        feats = []
        # images of up to IMAGE_GROUP events at a time (sorted by length inside, so
        # padding is small), then the CNN in batches of ``batch`` (the extractor's)
        step = max(self.batch, IMAGE_GROUP)
        with quiet():
            for i in range(0, len(events), step):
                batch = events[i:i + step]
                t0 = time.perf_counter()
                images = self.images(batch)
                self._timed("images", t0)
                t0 = time.perf_counter()
                feats.append(np.asarray(self.extractor_.transform(images), dtype=np.float32))
                self._timed("cnn", t0)
                if self.images_dir:
                    _save_images(images, batch, self.images_dir)
        return np.concatenate(feats)

    def _fingerprint(self) -> dict[str, Any]:
        return {"weights": file_digest(self.weights_path()), "layer": self.feature_layer,
                "fs": float(self.fs), "images": IMAGE_RECIPE}

    def provenance(self) -> dict[str, Any]:
        """Fingerprint, parameters, the resolved weights file and its classes."""
        prov = super().provenance()
        prov["weights_file"] = str(self.weights_path())
        ext = getattr(self, "extractor_", None)
        if ext is not None:
            prov["classes"] = [str(c) for c in ext.classes_]
        return prov


def _stored_aliases(weights: Path) -> dict:
    """Layer aliases stored in the JSON beside engine weights ({} when absent)."""
    import json

    from engine.features.weights import metadata_path

    try:
        return dict(json.loads(metadata_path(weights).read_text()).get("layer_aliases", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def _extractor(f: SuperletCNN):
    """The SqueezeNet extractor of ``f``, cached per process (Dask workers reuse it)."""
    key = (str(f.weights_path()), f.feature_layer, f.device, f.batch, f.precision, f.tensorrt)
    ext = _EXTRACTORS.get(key)
    if ext is None:
        from engine.features.extractor import SqueezeNetExtractor

        kw = dict(feature_layer=f.feature_layer, device=f.device, batch_size=f.batch,
                  precision=f.precision, tensorrt=f.tensorrt)
        path = f.weights_path()
        if path.suffix.lower() == ".mat":
            ext = SqueezeNetExtractor.from_matlab(path, **kw)
        else:
            ext = SqueezeNetExtractor.load(path, **kw)
        _EXTRACTORS[key] = ext
    return ext


def _save_images(images, events: list[Event], out_dir: str | os.PathLike) -> None:
    from engine.images import write_images

    if not isinstance(images, np.ndarray):  # GPU array: the user asked for files
        images = images.get() if hasattr(images, "get") else images.cpu().numpy()
    write_images(images, [e.id for e in events], [e.label or "unlabelled" for e in events],
                 out_dir)
