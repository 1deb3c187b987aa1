"""CNN features of scalogram images (method.md, Stage 3).

- :class:`SqueezeNetExtractor`: scikit-learn style transformer, images -> features.
- :class:`SqueezeNet`: the network (SqueezeNet v1.1, MATLAB-compatible pooling).
- :func:`import_matlab`: read the paper's MATLAB DAGNetwork MAT-file.
- :func:`load_default`: the extractor with the engine's own weights.
"""
from __future__ import annotations

from engine.features.extractor import SqueezeNetExtractor
from engine.features.matlab import import_matlab
from engine.features.squeezenet import SqueezeNet
from engine.features.weights import load_default

__all__ = ["SqueezeNetExtractor", "SqueezeNet", "import_matlab", "load_default"]
