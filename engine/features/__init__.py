"""Features of events: the featurizer table and the CNN behind the paper's featurizer.

- :data:`FEATURIZERS`: name -> :class:`~engine.features.base.Featurizer` class;
  ``python -m engine.run --list-features`` prints it, ``--features NAME`` picks one.
- :func:`make_featurizer`, :func:`load_run_featurizer`.
- :class:`SqueezeNetExtractor`: scikit-learn style transformer, images -> features.
- :class:`SqueezeNet`: the network (SqueezeNet v1.1, MATLAB-compatible pooling).
- :func:`import_matlab`: read the paper's MATLAB DAGNetwork MAT-file.
- :func:`load_default`: the extractor with the engine's own weights.

Adding a featurizer: write a module with a :class:`Featurizer` subclass and add
one line to :data:`FEATURIZERS` below.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from engine.features.base import Featurizer
from engine.features.pixels import ScalogramPixels
from engine.features.scalostats import ScalogramStats
from engine.features.superlet_cnn import SuperletCNN

#: heavy names (they import torch) loaded on first use
_LAZY = {"SqueezeNetExtractor": "engine.features.extractor",
         "SqueezeNet": "engine.features.squeezenet",
         "import_matlab": "engine.features.matlab",
         "load_default": "engine.features.weights"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.features' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

#: the featurizer table: name -> class (the first entry is the default of the main job)
FEATURIZERS: dict[str, type[Featurizer]] = {
    SuperletCNN.name: SuperletCNN,
    ScalogramPixels.name: ScalogramPixels,
    ScalogramStats.name: ScalogramStats,
}

#: file in a run folder naming the run's featurizer and its parameters
RUN_FEATURIZER_FILE = "featurizer.json"

__all__ = ["FEATURIZERS", "Featurizer", "ScalogramPixels", "ScalogramStats", "SqueezeNet",
           "SqueezeNetExtractor", "SuperletCNN", "describe_featurizers", "import_matlab",
           "load_default", "load_run_featurizer", "make_featurizer", "save_run_featurizer"]


def make_featurizer(name: str, **params: Any) -> Featurizer:
    """An unfitted featurizer from its name; parameters it does not take are ignored.

    Parameters
    ----------
    name : str
        A key of :data:`FEATURIZERS`.
    **params
        Parameters; those the featurizer does not have (e.g. ``weights`` for
        ``pixels``) are dropped, so one set of run flags serves every featurizer.

    Returns
    -------
    Featurizer

    Raises
    ------
    ValueError
        Unknown name.
    """
    cls = FEATURIZERS.get(name)
    if cls is None:
        raise ValueError(f"unknown featurizer {name!r}; choose one of "
                         f"{', '.join(FEATURIZERS)} (python -m engine.run --list-features)")
    accepted = set(cls._get_param_names())
    return cls(**{k: v for k, v in params.items() if k in accepted})


def describe_featurizers() -> list[tuple[str, str]]:
    """``(name, description)`` of every featurizer, the default first."""
    return [(name, cls.description) for name, cls in FEATURIZERS.items()]


def save_run_featurizer(featurizer: Featurizer, run_dir: str | os.PathLike) -> Path:
    """Write ``RUN_DIR/featurizer.json``: name, parameters, fingerprint (atomically)."""
    from engine._util import atomic_write
    from engine._util import jsonable

    params = jsonable(featurizer.get_params())
    if params.get("weights"):
        params["weights"] = str(Path(params["weights"]).resolve())
    params.pop("images_dir", None)
    doc = {"name": featurizer.name, "params": params,
           "fingerprint": featurizer.fingerprint()}
    return atomic_write(Path(run_dir) / RUN_FEATURIZER_FILE, json.dumps(doc, indent=1))


def load_run_featurizer(run_dir: str | os.PathLike, device: str = "cpu") -> Featurizer:
    """The fitted featurizer a run used (from ``RUN_DIR/featurizer.json``).

    Parameters
    ----------
    run_dir : path
        An ``--out`` folder of ``python -m engine.run``.
    device : {"cpu", "cuda"}
        Where the featurizer computes now.

    Returns
    -------
    Featurizer

    Raises
    ------
    FileNotFoundError
        The folder has no ``featurizer.json`` (not a run folder, or made by an
        older engine).
    ValueError
        The file is malformed, or the featurizer's weights changed since the run
        (its fingerprint differs).
    """
    path = Path(run_dir) / RUN_FEATURIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {RUN_FEATURIZER_FILE}: not a run folder of "
                                "this engine version")
    try:
        doc = json.loads(path.read_text())
        name, params = doc["name"], dict(doc["params"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a featurizer description ({exc})") from None
    params["device"] = device
    f = make_featurizer(name, **params)
    want = doc.get("fingerprint")
    if want is not None and f.fingerprint() != want:
        raise ValueError(f"{path}: the featurizer's inputs changed since the run "
                         f"(was {want}, now {f.fingerprint()})")
    return f.fit()
