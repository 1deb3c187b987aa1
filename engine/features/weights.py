"""Weights files of the feature extractor: a tensor file plus a JSON of metadata.

A weights file is ``NAME.safetensors`` (preferred: no pickle) or ``NAME.pt``
(a plain ``torch.save`` of the state dict, read with ``weights_only=True``),
with ``NAME.json`` beside it::

    {"format": "microquake-engine-squeezenet", "format_version": 1,
     "classes": ["LP", "VT", ...], "mean": [R, G, B] or "image",
     "input_size": [227, 227, 3], "pool_padding": {"pool1": [t, b, l, r], ...},
     "layer_aliases": {"NuevaConv10": "conv10", ...},
     "training": {... how the weights were made: command, data, seed, scores ...}}

The engine's own weights live in ``engine/data/default_squeezenet.*`` and are
made by ``python -m engine.finetune`` from scratch on synthetic events (see
README); :func:`load_default` opens them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

from engine._util import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from engine.features.extractor import SqueezeNetExtractor

FORMAT = "microquake-engine-squeezenet"
FORMAT_VERSION = 1
SUFFIXES = (".safetensors", ".pt")
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
DEFAULT_STEM = "default_squeezenet"
_REQUIRED = ("classes", "input_size", "pool_padding")


def metadata_path(path: str | Path) -> Path:
    """The JSON beside a weights file (``x.safetensors`` -> ``x.json``)."""
    return Path(path).with_suffix(".json")


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` and rename the result over ``path``."""
    with atomic_path(path) as tmp:
        write(str(tmp))


def save_weights(path: str | Path, state_dict: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write a state dict and its metadata JSON atomically (temp file + ``os.replace``).

    Parameters
    ----------
    path : str or Path
        Target ending in ``.safetensors`` or ``.pt``.
    state_dict : mapping
        Tensors of the network (moved to CPU, made contiguous).
    metadata : mapping
        JSON-serialisable metadata; must hold ``classes``, ``input_size`` and
        ``pool_padding``. ``format`` and ``format_version`` are added.

    Returns
    -------
    (Path, Path)
        The weights file and the JSON file.

    Raises
    ------
    ValueError
        If the suffix is not supported or metadata misses a required key.
    """
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"weights file {path} must end in one of {SUFFIXES}")
    missing = [k for k in _REQUIRED if k not in metadata]
    if missing:
        raise ValueError(f"metadata for {path} misses {missing}")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **dict(metadata)}
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    else:
        _atomic_write(path, lambda tmp: torch.save(tensors, tmp))
    meta_path = metadata_path(path)
    _atomic_write(meta_path, lambda tmp: Path(tmp).write_text(text))
    return path, meta_path


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a weights file and its metadata JSON.

    Parameters
    ----------
    path : str or Path
        A ``.safetensors`` or ``.pt`` file written by :func:`save_weights`.

    Returns
    -------
    (dict, dict)
        State dict (CPU tensors) and metadata.

    Raises
    ------
    FileNotFoundError
        If the weights file or its JSON is missing.
    ValueError
        If either file is unreadable or not in the engine's format.
    """
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"weights file {path} must end in one of {SUFFIXES} "
                         "(MATLAB networks: use SqueezeNetExtractor.from_matlab)")
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    meta_path = metadata_path(path)
    if not meta_path.is_file():
        raise FileNotFoundError(f"metadata file {meta_path} missing beside weights {path}")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"metadata file {meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path} is not microquake-engine weights metadata "
                         f"(format {meta.get('format') if isinstance(meta, dict) else None!r})")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"metadata file {meta_path} misses {missing}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt files raise many types
        raise ValueError(f"weights file {path} is unreadable ({type(exc).__name__}: {exc})") \
            from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {path} does not hold a state dict of tensors")
    return dict(state), meta


def default_weights_path() -> Path:
    """Path of the engine's own weights (``engine/data/default_squeezenet.*``).

    Raises
    ------
    FileNotFoundError
        If no default weights are installed.
    """
    for suffix in SUFFIXES:
        candidate = DATA_DIR / f"{DEFAULT_STEM}{suffix}"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no default weights in {DATA_DIR} ({DEFAULT_STEM}.safetensors or .pt); train them "
        "with 'python -m engine.finetune' (see README) or pass a weights file")


def load_default(**params: Any) -> "SqueezeNetExtractor":
    """The feature extractor with the engine's own weights.

    Parameters
    ----------
    **params
        Other :class:`~engine.features.extractor.SqueezeNetExtractor` parameters
        (``feature_layer``, ``device``, ...).

    Returns
    -------
    SqueezeNetExtractor
        Fitted (ready) extractor.

    Raises
    ------
    FileNotFoundError
        If the default weights are missing.
    ValueError
        If they are unreadable.
    """
    from engine.features.extractor import SqueezeNetExtractor

    return SqueezeNetExtractor.load(default_weights_path(), **params)


def default_weights_id() -> str:
    """A short identity of the default weights (file name and SHA-256 prefix).

    Used in run fingerprints so that stored features are recomputed when the
    default weights change. Returns ``"default:missing"`` when none are installed.
    """
    import hashlib

    try:
        path = default_weights_path()
    except FileNotFoundError:
        return "default:missing"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"default:{path.name}:{digest}"
