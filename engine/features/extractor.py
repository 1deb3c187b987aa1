"""CNN features of scalogram images: a scikit-learn style SqueezeNet transformer.

Feature layouts (``feature_layer``, parsed by :mod:`engine.features.layouts`):

- ``"conv10"``: the final 1x1 conv before its ReLU (MATLAB's
  ``NuevaConv10`` for the paper's network), (n, h * w * n_classes); for
  227 x 227 inputs h = w = 14, so 392 numbers with 2 classes. Flattened in
  MATLAB's column-major order of the H x W x C activation (row index fastest,
  then column, then channel: ``feature[c*h*w + j*h + i] = act[c, i, j]``), the
  order of MATLAB ``activations(..., 'OutputAs', 'rows')``.
- ``"fireN_gap"`` (N = 2..9): fire module N averaged over space, e.g.
  ``"fire9_gap"`` (n, 512).
- pooled parts joined by ``+``, e.g. ``"fire7_time7+fire9_grid2"`` (the
  engine's default, 384 x 7 + 512 x 2 x 2 = 4,736 numbers): see
  :mod:`engine.features.layouts`.
- any other name of :data:`engine.features.squeezenet.LAYER_NAMES` (or a MATLAB
  alias stored with the weights, e.g. ``"NuevaConv10"``): 4-D activations are
  flattened as above, 2-D ones (``pool10``, ``prob``) are returned as they are.

Numerical agreement between paths (same weights, same images), as max
absolute difference divided by the max absolute feature. CPU fp32 is the
reference; on the CPU a different batch size changes features by < 1e-5
(other conv kernels, other summation order), save/load and the numpy / torch
inputs give identical features at the same batch size. GPU targets: fp32
(cuDNN, TF32 tensor-core maths switched off for the forward pass) <= 1e-4,
tf32 (TF32 allowed in convolutions and matrix products: fp32 storage, 10-bit
mantissa products; measured 1.3e-3 on an H200) <= 3e-3, fp16 autocast <= 1e-2,
bf16 autocast <= 3e-2, TensorRT the tolerance of its precision;
``tests/test_features.py::test_gpu_matches_cpu`` asserts them when a CUDA GPU
is present.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from numbers import Integral
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions

from engine._util import available_cores, progress, require
from engine.features.layouts import layout_features, parse_layout
from engine.features.squeezenet import SqueezeNet, projector_width

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32,
           "tf32": torch.float32}
#: Precisions that run without autocast (fp32 storage and arithmetic).
_FP32_LIKE = ("fp32", "tf32")


class SqueezeNetExtractor(TransformerMixin, BaseEstimator):
    """Features (and class scores) of 227 x 227 RGB images from a SqueezeNet v1.1.

    Parameters
    ----------
    weights : str, Path or None
        ``None``: the engine's default weights (:func:`engine.features.weights.load_default`);
        a MATLAB DAGNetwork ``.mat``; engine weights ``.safetensors``/``.pt``
        (with their ``.json``); or ``"random"`` for an untrained network
        (seeded by ``random_state``; for tests and benchmarks).
    n_classes : int or None
        Classes of the head. ``None``: taken from the weights (2 for ``"random"``);
        if given it must match the weights.
    feature_layer : str
        ``"conv10"``, ``"fireN_gap"``, any named layer or a layout of pooled
        parts such as ``"fire7_time7+fire9_grid2"`` (see module docstring).
    device : {"cpu", "cuda", "auto"}
        Where inference runs; ``"auto"`` picks CUDA when available.
    batch_size : int
        Images per forward pass (bounds memory).
    precision : {"fp32", "tf32", "fp16", "bf16"}
        Arithmetic on CUDA: ``"fp32"`` is strict fp32 (TF32 tensor-core maths
        switched off during inference, the flags restored afterwards),
        ``"tf32"`` allows TF32 in convolutions and matrix products (faster,
        ~1e-3 relative), ``"fp16"``/``"bf16"`` autocast.  The CPU runs fp32 only.
    tensorrt : bool
        Compile the network with ``torch_tensorrt`` (CUDA only; the engine is
        cached on disk keyed by weights, layer, input shape, precision and GPU name).
    output : {"numpy", "torch"}
        Return type of :meth:`transform`: numpy (host) or a torch tensor left on
        the device.
    n_jobs : int or None
        CPU threads (``None``: all cores available to the process).
    tensorrt_cache : str, Path or None
        Folder of cached TensorRT engines (default ``~/.cache/microquake-engine/tensorrt``).
    random_state : int
        Seed of ``weights="random"``.

    Attributes
    ----------
    model_ : SqueezeNet
        The network (eval mode) on ``device_``.
    classes_ : numpy.ndarray of str
        Class names, in score order.
    metadata_ : dict
        Metadata of the weights (classes, mean, input size, provenance).
    input_size_ : tuple of int
        (H, W) expected for input images.
    device_ : torch.device
        Resolved device.
    layer_ : str
        ``feature_layer`` with MATLAB aliases resolved to engine names.

    Examples
    --------
    >>> ext = SqueezeNetExtractor.from_matlab("cotopaxi_squeezenet.mat")  # doctest: +SKIP
    >>> ext.transform(images).shape  # images: (n, 227, 227, 3) uint8
    (n, 392)
    """

    _parameter_constraints: dict = {
        "weights": [str, os.PathLike, None],
        "n_classes": [Interval(Integral, 1, None, closed="left"), None],
        "feature_layer": [str],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "precision": [StrOptions({"fp32", "tf32", "fp16", "bf16"})],
        "tensorrt": ["boolean"],
        "output": [StrOptions({"numpy", "torch"})],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), None],
        "tensorrt_cache": [str, os.PathLike, None],
        "random_state": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(self, weights: str | os.PathLike | None = None, n_classes: int | None = None,
                 feature_layer: str = "conv10", device: str = "cpu", batch_size: int = 64,
                 precision: str = "fp32", tensorrt: bool = False, output: str = "numpy",
                 n_jobs: int | None = None, tensorrt_cache: str | os.PathLike | None = None,
                 random_state: int = 0) -> None:
        self.weights = weights
        self.n_classes = n_classes
        self.feature_layer = feature_layer
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self.tensorrt = tensorrt
        self.output = output
        self.n_jobs = n_jobs
        self.tensorrt_cache = tensorrt_cache
        self.random_state = random_state

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_matlab(cls, path: str | os.PathLike, **params: Any) -> "SqueezeNetExtractor":
        """Extractor with the network of a MATLAB DAGNetwork MAT-file (fitted).

        Parameters
        ----------
        path : str or Path
            MAT-file (see :func:`engine.features.matlab.import_matlab`).
        **params
            Other constructor parameters.

        Returns
        -------
        SqueezeNetExtractor

        Raises
        ------
        FileNotFoundError, ValueError
            Missing file, not a network, unsupported layer.
        """
        if not str(path).lower().endswith(".mat"):
            raise ValueError(f"from_matlab expects a .mat file, got {path}")
        return cls(weights=str(path), **params).fit()

    @classmethod
    def load(cls, path: str | os.PathLike, **params: Any) -> "SqueezeNetExtractor":
        """Extractor with engine weights written by :meth:`save` or ``engine.finetune`` (fitted).

        Parameters
        ----------
        path : str or Path
            ``.safetensors`` or ``.pt`` file with its ``.json`` beside it.
        **params
            Other constructor parameters.

        Returns
        -------
        SqueezeNetExtractor

        Raises
        ------
        FileNotFoundError, ValueError
            Missing or malformed files.
        """
        return cls(weights=str(path), **params).fit()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the network as engine weights (tensor file + JSON), atomically.

        Parameters
        ----------
        path : str or Path
            Ends in ``.safetensors`` or ``.pt``; the JSON goes beside it.

        Returns
        -------
        Path
            The weights file.
        """
        from engine.features.weights import save_weights

        self._ensure_fitted()
        state = {k: v.float() for k, v in self.model_.state_dict().items()}
        return save_weights(path, state, self.metadata_)[0]

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any = None, y: Any = None) -> "SqueezeNetExtractor":
        """Validate the parameters and load the network; no training (sklearn compatibility).

        Parameters
        ----------
        X, y : ignored

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Bad parameters, weights or layer name; CUDA asked for but absent.
        """
        self._validate_params()
        device = self._resolve_device()
        model, meta = self._build_model()
        aliases = dict(meta.get("layer_aliases", {}))
        layer = "+".join(p.name for p in parse_layout(self.feature_layer, aliases))
        model.eval().to(device)
        if device.type == "cpu":
            model = model.to(memory_format=torch.channels_last)
        self.model_ = model
        self.metadata_ = meta
        self.classes_ = np.asarray(meta["classes"], dtype=str)
        size = meta["input_size"]
        self.input_size_ = (int(size[0]), int(size[1]))
        self.device_ = device
        self.layer_ = layer
        self._compiled = {}
        self._fitted_params = {k: getattr(self, k) for k in self._MODEL_PARAMS}
        return self

    def _resolve_device(self) -> torch.device:
        cuda = torch.cuda.is_available()
        if self.device == "cuda" and not cuda:
            raise ValueError("device='cuda' but torch sees no CUDA GPU "
                             f"(torch {torch.__version__}); use device='cpu' or 'auto'")
        device = torch.device("cuda" if (self.device == "cuda" or
                                         (self.device == "auto" and cuda)) else "cpu")
        if device.type == "cpu" and self.precision != "fp32":
            raise ValueError(f"precision={self.precision!r} needs CUDA; the CPU path runs fp32 "
                             f"(use precision='fp32')")
        if device.type == "cpu" and self.tensorrt:
            raise ValueError("tensorrt=True needs device='cuda' (TensorRT runs on NVIDIA GPUs)")
        if self.tensorrt:
            require("torch_tensorrt", "gpu", "tensorrt=True")
        return device

    def _build_model(self) -> tuple[SqueezeNet, dict]:
        w = self.weights
        if w is None:
            from engine.features.weights import default_weights_path, load_weights

            state, meta = load_weights(default_weights_path())
        elif str(w) == "random":
            n = self.n_classes or 2
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.random_state)
                model = SqueezeNet(n)
            meta = {"classes": [f"class{i}" for i in range(n)], "mean": [0.0, 0.0, 0.0],
                    "input_size": [227, 227, 3],
                    "pool_padding": {k: list(v) for k, v in model.pool_padding.items()},
                    "layer_aliases": {},
                    "training": {"init": "random", "seed": self.random_state}}
            return model, meta
        elif str(w).lower().endswith(".mat"):
            from engine.features.matlab import import_matlab

            net = import_matlab(w)
            state, meta = net.state_dict, net.metadata()
        else:
            from engine.features.weights import load_weights

            state, meta = load_weights(w)
        return _model_from_state(state, meta, self.n_classes, w), meta

    _MODEL_PARAMS = ("weights", "n_classes", "feature_layer", "device", "precision", "tensorrt",
                     "random_state")

    def _ensure_fitted(self) -> None:
        """Fit on first use, and again if a model parameter changed since (set_params)."""
        current = {k: getattr(self, k) for k in self._MODEL_PARAMS}
        if not hasattr(self, "model_") or getattr(self, "_fitted_params", None) != current:
            self.fit()

    # ------------------------------------------------------------------ inference
    def transform(self, X: Any) -> np.ndarray | torch.Tensor:
        """Features of images.

        Parameters
        ----------
        X : array-like
            uint8 numpy (n, H, W, 3) RGB (or one image (H, W, 3)), with (H, W) the
            network's input size (227 x 227 for the published network); or a
            torch tensor (n, H, W, 3), uint8 or float in 0..255, on any device; or
            a CuPy array (read through DLPack, no host copy).

        Returns
        -------
        numpy.ndarray or torch.Tensor
            (n, d) float32; a torch tensor on the model's device if ``output="torch"``.

        Raises
        ------
        ValueError
            Wrong shape, size or dtype.
        """
        self._ensure_fitted()
        return self._run(X, self.layer_)

    def predict_proba(self, X: Any) -> np.ndarray | torch.Tensor:
        """Softmax class probabilities (n, n_classes) of the global-average class scores."""
        return self._run(X, "prob")

    def predict(self, X: Any) -> np.ndarray:
        """Class names (n,) of the highest score (argmax of ``pool10``)."""
        scores = self._run(X, "pool10")
        idx = scores.argmax(1)
        idx = idx.cpu().numpy() if isinstance(idx, torch.Tensor) else idx
        return self.classes_[idx]

    def _run(self, X: Any, layer: str) -> np.ndarray | torch.Tensor:
        self._ensure_fitted()
        images = self._check_images(X)
        n = images.shape[0]
        device = self.device_
        bs = self.batch_size
        out: np.ndarray | torch.Tensor | None = None
        for start in progress(range(0, n, bs), desc="CNN features", total=-(-n // bs),
                              unit="batch"):
            batch = images[start:start + bs]
            feats = self._forward(batch, layer)
            if out is None:
                shape = (n, feats.shape[1])
                out = (torch.empty(shape, dtype=torch.float32, device=device)
                       if self.output == "torch" else np.empty(shape, np.float32))
            if isinstance(out, torch.Tensor):
                out[start:start + len(batch)] = feats
            else:
                out[start:start + len(batch)] = feats.cpu().numpy()
        if out is None:  # no images
            d = self._dim(layer)
            out = (torch.empty((0, d), dtype=torch.float32, device=device)
                   if self.output == "torch" else np.empty((0, d), np.float32))
        return out

    def _dim(self, layer: str) -> int:
        with self._inference():
            x = torch.zeros((1, 3, *self.input_size_), device=self.device_)
            return int(layout_features(self.model_, x, parse_layout(layer)).shape[1])

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        old = torch.get_num_threads()
        cpu = self.device_.type == "cpu"
        if cpu:
            torch.set_num_threads(int(self.n_jobs or available_cores()))
        try:
            with torch.inference_mode(), _tf32_allowed(None if cpu else
                                                       self.precision == "tf32"):
                if not cpu and self.precision not in _FP32_LIKE and not self.tensorrt:
                    with torch.autocast("cuda", dtype=_DTYPES[self.precision]):
                        yield
                else:
                    yield
        finally:
            if cpu:
                torch.set_num_threads(old)

    def _forward(self, batch: np.ndarray | torch.Tensor, layer: str) -> torch.Tensor:
        """One batch (m, H, W, 3) -> (m, d) float32 on the device."""
        x = torch.from_numpy(np.ascontiguousarray(batch)) if isinstance(batch, np.ndarray) \
            else batch
        x = x.to(self.device_, non_blocking=True).permute(0, 3, 1, 2).float()
        x = x.contiguous(memory_format=torch.channels_last)
        with self._inference():
            if self.tensorrt:
                return self._forward_tensorrt(x, layer)
            return layout_features(self.model_, x, parse_layout(layer)).float()

    # ------------------------------------------------------------------ TensorRT
    def _forward_tensorrt(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        m = x.shape[0]
        bs = self.batch_size
        if m < bs:  # one static-shape engine: pad the last batch
            x = torch.cat([x, x.new_zeros((bs - m, *x.shape[1:]))])
        module = self._compiled.get(layer)
        if module is None:
            module = self._compiled[layer] = self._compile_tensorrt(layer, tuple(x.shape))
        return module(x.contiguous())[:m].float()

    def tensorrt_cache_path(self, layer: str, shape: tuple[int, ...]) -> Path:
        """Cache file of the TensorRT engine for ``layer`` and input ``shape``.

        The key hashes the weights, the layer, the input shape, the precision,
        the GPU name and the torch / torch_tensorrt versions.
        """
        self._ensure_fitted()
        h = hashlib.sha256()
        for v in self.model_.state_dict().values():
            h.update(v.detach().cpu().float().numpy().tobytes())
        dev = (torch.cuda.get_device_name(self.device_) if self.device_.type == "cuda"
               else "cpu")
        try:
            import torch_tensorrt  # noqa: F401  (version only)
            trt_version = torch_tensorrt.__version__
        except ImportError:
            trt_version = "none"
        key = json.dumps({"weights": h.hexdigest(), "layer": layer, "shape": list(shape),
                          "precision": self.precision, "device": dev,
                          "torch": torch.__version__, "torch_tensorrt": trt_version},
                         sort_keys=True)
        root = Path(self.tensorrt_cache or Path.home() / ".cache" / "microquake-engine"
                    / "tensorrt")
        return root / f"squeezenet-{hashlib.sha256(key.encode()).hexdigest()[:24]}.ep"

    def _compile_tensorrt(self, layer: str, shape: tuple[int, ...]) -> torch.nn.Module:
        trt = require("torch_tensorrt", "gpu", "tensorrt=True")
        path = self.tensorrt_cache_path(layer, shape)
        if path.is_file():
            return trt.load(str(path)).module()
        wrapper = _LayerOutput(self.model_, layer).eval()
        example = torch.zeros(shape, device=self.device_).contiguous()
        precisions = {torch.float32} | {_DTYPES[self.precision]}
        compiled = trt.compile(wrapper, ir="dynamo", inputs=[example],
                               enabled_precisions=precisions)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        trt.save(compiled, str(tmp), inputs=[example])
        os.replace(tmp, path)
        return compiled

    # ------------------------------------------------------------------ input checks
    def _check_images(self, X: Any) -> np.ndarray | torch.Tensor:
        if not isinstance(X, (np.ndarray, torch.Tensor)) and hasattr(X, "__dlpack__"):
            X = torch.from_dlpack(X)  # CuPy and friends: zero-copy
        if isinstance(X, (list, tuple)):
            if not X:
                X = np.empty((0, *self.input_size_, 3), np.uint8)
            else:
                shapes = {np.shape(x) for x in X}
                if len(shapes) != 1:
                    raise ValueError(f"images have different shapes {sorted(shapes)}")
                X = np.stack([np.asarray(x) for x in X])
        if isinstance(X, torch.Tensor):
            if X.dtype != torch.uint8 and not X.dtype.is_floating_point:
                raise ValueError(f"image tensor must be uint8 or float (0..255), got {X.dtype}")
        else:
            X = np.asarray(X)
            if X.dtype != np.uint8:
                raise ValueError(f"images must be uint8 RGB (0..255), got dtype {X.dtype}; "
                                 "convert with np.asarray(PIL.Image.open(f).convert('RGB'))")
        if X.ndim == 3:
            X = X[None]
        h, w = self.input_size_
        if X.ndim != 4 or tuple(X.shape[1:]) != (h, w, 3):
            raise ValueError(f"images must have shape (n, {h}, {w}, 3) (RGB, height x width "
                             f"of the network input), got {tuple(X.shape)}")
        return X


class _LayerOutput(torch.nn.Module):
    """The network cut at one layer, flattened (what TensorRT compiles)."""

    def __init__(self, model: SqueezeNet, layer: str) -> None:
        super().__init__()
        self.model = model
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layout_features(self.model, x, parse_layout(self.layer))


@contextlib.contextmanager
def _tf32_allowed(allow: bool | None) -> Iterator[None]:
    """Set torch's TF32 switches (cuDNN convolutions, CUDA matrix products) for the
    duration of the block and restore them after; ``None`` leaves them alone."""
    if allow is None:
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = matmul.allow_tf32 = bool(allow)
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


def _model_from_state(state: dict[str, torch.Tensor], meta: dict, n_classes: int | None,
                      source: Any) -> SqueezeNet:
    classes = list(meta["classes"])
    head = state.get("conv10.weight")
    if head is None or "mean" not in state:
        raise ValueError(f"weights {source} lack conv10.weight or mean; not a SqueezeNet state")
    if head.shape[0] != len(classes):
        raise ValueError(f"weights {source}: {len(classes)} classes in the metadata but "
                         f"conv10 has {head.shape[0]} filters")
    if n_classes is not None and n_classes != len(classes):
        raise ValueError(f"n_classes={n_classes} but the weights {source} have "
                         f"{len(classes)} classes {classes}")
    state = dict(state)
    state.setdefault("std", torch.ones(3, 1, 1))  # files written before the std buffer
    model = SqueezeNet(len(classes), pool_padding=meta["pool_padding"], mean=state["mean"],
                       std=state["std"], head_relu=bool(meta.get("head_relu", True)),
                       projector=projector_width(state))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"weights {source} do not fit a SqueezeNet v1.1: {exc}") from exc
    return model
