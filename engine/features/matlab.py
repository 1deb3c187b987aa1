"""Import a MATLAB DAGNetwork (SqueezeNet v1.1 layout) from a MAT-file.

MATLAB saves a ``DAGNetwork`` as a class object, which SciPy cannot read; the
``mat-io`` package (import name ``matio``) decodes it. What it gives, as
explored on the paper's ``cotopaxi_squeezenet.mat``:

- the variable is a ``matio.utils.matclass.MatlabOpaque`` with
  ``classname == "DAGNetwork"``; ``properties["any"][0, 0]`` is a struct with
  ``Layers`` (an object array of layers) and ``Connections`` (a table);
- each layer is a ``MatlabOpaque`` whose ``properties["any"][0, 0]`` struct
  holds the layer's saved fields (``Name``, ``Weights``, ``Bias``,
  ``PaddingSize`` ...); ``Weights``/``Bias`` are structs whose ``Value`` is the
  array, conv weights H x W x Cin x Cout;
- ``matio`` labels every element of a heterogeneous layer array with the
  array's class (``nnet.cnn.layer.Layer``); the concrete class of each layer
  (``Convolution2DLayer``, ``ReLULayer`` ...) is read here from the MAT-file's
  object table (see :func:`_layer_classes`); if that ever fails the type is
  inferred from the saved fields and the layer order.

The importer checks that the network is a SqueezeNet v1.1 (the layout of
:class:`engine.features.squeezenet.SqueezeNet`) and returns a PyTorch state
dict plus metadata (classes, input mean, input size, pool padding, names).
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.features.squeezenet import FIRE_WIDTHS

#: MATLAB layer classes the importer understands.
SUPPORTED_LAYERS = frozenset({
    "ImageInputLayer", "Convolution2DLayer", "ReLULayer", "MaxPooling2DLayer",
    "DepthConcatenationLayer", "DropoutLayer", "GlobalAveragePooling2DLayer",
    "SoftmaxLayer", "ClassificationOutputLayer",
})


@dataclass
class MatlabNetwork:
    """A MATLAB SqueezeNet converted for :class:`~engine.features.squeezenet.SqueezeNet`.

    Attributes
    ----------
    state_dict : dict
        PyTorch parameters (and the ``mean`` buffer, shape (3, 1, 1) or (3, H, W)).
    classes : list of str
        Class names of the output layer, in score order.
    mean : numpy.ndarray
        Mean subtracted from the input, per channel (3,) or an image (H, W, 3).
    input_size : tuple of int
        (H, W, C) of the input layer.
    pool_padding : dict
        ``pool1``/``pool3``/``pool5`` -> (top, bottom, left, right).
    layer_names : dict
        Engine layer name -> MATLAB layer name (e.g. ``conv10`` -> ``NuevaConv10``).
    source : dict
        File name, SHA-256, variable name and layer count.
    """

    state_dict: dict[str, torch.Tensor]
    classes: list[str]
    mean: np.ndarray
    input_size: tuple[int, int, int]
    pool_padding: dict[str, tuple[int, int, int, int]]
    layer_names: dict[str, str] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """JSON-ready metadata in the engine's weights format."""
        mean = self.mean.tolist() if self.mean.ndim == 1 else "image"
        return {
            "classes": list(self.classes),
            "mean": mean,
            "input_size": list(self.input_size),
            "pool_padding": {k: list(v) for k, v in self.pool_padding.items()},
            "layer_aliases": {v: k for k, v in self.layer_names.items() if v != k},
            "training": {"imported_from": self.source},
        }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_mat(path: Path) -> tuple[dict[str, Any], dict[int, str]]:
    """Read all variables; also return id(layer object) -> concrete MATLAB class name."""
    matio = __import__("matio")
    classes: dict[int, str] = {}
    try:  # private matio API: read the subsystem ourselves to keep its object table
        from matio.utils.matheaders import MAT_FILE_VERSIONS, read_mat_header
        from matio.v5.matreader5 import MatFile5Reader, read_subsystem

        offset, version, byte_order = read_mat_header(str(path))
        if version != MAT_FILE_VERSIONS.V5:
            raise LookupError("not a v5/v7 MAT-file")
        with open(path, "rb") as f:
            subsystem = read_subsystem(f, offset, byte_order, raw_data=False,
                                       add_table_attrs=False)
            reader = MatFile5Reader(f, byte_order=byte_order, subsystem=subsystem)
            variables = reader.get_variables(None)
        if subsystem is not None:
            for object_id, obj in subsystem.mcos_object_cache.items():
                class_id = subsystem.get_object_metadata(object_id)[0]
                classes[id(obj)] = str(subsystem.get_classname(class_id))
        return variables, classes
    except Exception:  # noqa: BLE001  (private API changed or odd file: use the public reader)
        classes = {}
    return matio.load_from_mat(str(path)), classes


def _field(struct: Any, name: str) -> Any:
    names = getattr(getattr(struct, "dtype", None), "names", None) or ()
    if name not in names:
        return None
    return struct[0, 0][name] if struct.ndim == 2 else struct[name]


def _text(value: Any) -> str:
    arr = np.asarray(value)
    return str(arr.reshape(-1)[0]) if arr.size else ""


def _numbers(value: Any) -> list[float]:
    return [float(v) for v in np.asarray(value, dtype=float).reshape(-1)]


def _infer_class(fields: tuple[str, ...], props: dict[str, Any], nxt: str | None) -> str:
    """Guess a layer class from its saved fields (fallback when the object table is lost)."""
    f = set(fields)
    if "Normalization" in f and "InputSize" in f:
        return "ImageInputLayer"
    if {"FilterSize", "NumFilters", "Weights"} <= f:
        return "Convolution2DLayer"
    if "PoolSize" in f:
        return "MaxPooling2DLayer" if "HasUnpoolingOutputs" in f else "AveragePooling2DLayer"
    if "NumInputs" in f:
        return "DepthConcatenationLayer"
    if "Probability" in f:
        return "DropoutLayer"
    if "LossFunction" in props or "Categories" in f:
        return "ClassificationOutputLayer"
    if "ChannelDim" in f:
        return "SoftmaxLayer"
    if f <= {"Version", "Name"}:
        # ReLU and global average pooling both save only their name
        return "GlobalAveragePooling2DLayer" if nxt == "SoftmaxLayer" else "ReLULayer"
    return "UnknownLayer(" + ",".join(sorted(f)) + ")"


def _layers(net: Any, classes: dict[int, str]) -> list[tuple[str, str, Any, dict]]:
    """Return [(name, class, fields struct, properties)] for each layer, in order."""
    top = net.properties.get("any") if isinstance(net.properties, dict) else None
    layers = _field(top, "Layers") if top is not None else None
    if layers is None:
        raise ValueError("the DAGNetwork object has no Layers field; unsupported MATLAB version")
    raw = []
    for obj in np.asarray(layers).reshape(-1, order="F"):
        props = obj.properties if isinstance(getattr(obj, "properties", None), dict) else {}
        st = props.get("any")
        if st is None:
            raise ValueError(f"cannot read a layer of class {getattr(obj, 'classname', '?')}")
        name = _text(_field(st, "Name"))
        cls = classes.get(id(obj), "")
        raw.append([name, cls.rpartition(".")[2], st, props])
    for i in range(len(raw) - 1, -1, -1):  # backwards: the inference looks at the next layer
        if not raw[i][1] or raw[i][1] == "Layer":
            nxt = raw[i + 1][1] if i + 1 < len(raw) else None
            raw[i][1] = _infer_class(raw[i][2].dtype.names or (), raw[i][3], nxt)
    return [tuple(r) for r in raw]  # type: ignore[misc]


def _value(st: Any, name: str) -> np.ndarray:
    holder = _field(st, name)
    value = _field(holder, "Value") if getattr(holder, "dtype", None) is not None \
        and holder.dtype.names else holder
    return np.asarray(value, dtype=np.float32)


def import_matlab(path: str | Path, variable: str | None = None) -> MatlabNetwork:
    """Read a MATLAB SqueezeNet v1.1 ``DAGNetwork`` MAT-file into PyTorch form.

    Parameters
    ----------
    path : str or Path
        The MAT-file (v5/v7, as written by MATLAB's ``save``).
    variable : str, optional
        Name of the network variable; by default the only DAGNetwork/SeriesNetwork
        in the file.

    Returns
    -------
    MatlabNetwork
        State dict for :class:`~engine.features.squeezenet.SqueezeNet` and metadata.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a MAT-file, holds no network, holds a layer type that
        is not supported (the message names the layer and its type) or a
        network that is not a SqueezeNet v1.1.

    Examples
    --------
    >>> net = import_matlab("cotopaxi_squeezenet.mat")  # doctest: +SKIP
    >>> net.classes
    ['LP', 'VT']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MATLAB network file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            variables, classes = _read_mat(path)
    except Exception as exc:  # matio raises many types on garbage input
        raise ValueError(f"{path} is not a readable MAT-file ({type(exc).__name__}: {exc})") \
            from exc
    nets = {k: v for k, v in variables.items()
            if getattr(v, "classname", None) in ("DAGNetwork", "SeriesNetwork")}
    if variable is not None:
        if variable not in variables:
            raise ValueError(f"{path} has no variable {variable!r}; it has {sorted(variables)}")
        if variable not in nets:
            value = variables[variable]
            kind = getattr(value, "classname", None) or type(value).__name__
            raise ValueError(f"variable {variable!r} in {path} is not a MATLAB network "
                             f"(class {kind})")
        name = variable
    elif len(nets) == 1:
        name = next(iter(nets))
    elif not nets:
        found = {k: getattr(v, "classname", type(v).__name__) for k, v in variables.items()}
        raise ValueError(f"{path} holds no MATLAB DAGNetwork/SeriesNetwork (variables: {found})")
    else:
        raise ValueError(f"{path} holds several networks {sorted(nets)}; pass variable=")
    layers = _layers(nets[name], classes)
    for lname, lcls, _, _ in layers:
        if lcls not in SUPPORTED_LAYERS:
            raise ValueError(f"{path}: layer {lname!r} has type {lcls}, which the importer "
                             f"does not support (supported: {sorted(SUPPORTED_LAYERS)})")
    return _convert(path, name, layers)


def _convert(path: Path, variable: str, layers: list) -> MatlabNetwork:
    by_type: dict[str, list] = {}
    for layer in layers:
        by_type.setdefault(layer[1], []).append(layer)
    convs = by_type.get("Convolution2DLayer", [])
    pools = by_type.get("MaxPooling2DLayer", [])
    inputs = by_type.get("ImageInputLayer", [])
    outputs = by_type.get("ClassificationOutputLayer", [])
    expected_convs = 2 + 3 * len(FIRE_WIDTHS)
    if len(convs) != expected_convs or len(pools) != 3 or len(inputs) != 1:
        raise ValueError(f"{path}: not a SqueezeNet v1.1 ({len(convs)} conv layers, "
                         f"{len(pools)} max-pools, {len(inputs)} input layers; expected "
                         f"{expected_convs}, 3 and 1)")
    # engine parameter names, in the order of the MATLAB layer list
    targets = [("conv1", 3, 3, 64, 0, 2)]
    in_ch = 64
    for i, (s, e1, e3) in FIRE_WIDTHS.items():
        targets += [(f"fires.fire{i}.squeeze", 1, in_ch, s, 0, 1),
                    (f"fires.fire{i}.expand1x1", 1, s, e1, 0, 1),
                    (f"fires.fire{i}.expand3x3", 3, s, e3, 1, 1)]
        in_ch = e1 + e3
    state: dict[str, torch.Tensor] = {}
    names: dict[str, str] = {}
    n_classes = None
    for k, (lname, _, st, _) in enumerate(convs):
        w = _value(st, "Weights")
        b = _value(st, "Bias").reshape(-1)
        if w.ndim == 2:
            w = w[:, :, None, None]
        elif w.ndim == 3:
            w = w[:, :, :, None]
        pad = _numbers(_field(st, "PaddingSize"))
        stride = _numbers(_field(st, "Stride"))
        if k < len(targets):
            key, ks, cin, cout, p, s = targets[k]
        else:  # the head
            key, ks, cin, cout, p, s = "conv10", 1, in_ch, w.shape[3], 0, 1
            n_classes = int(w.shape[3])
        if w.shape != (ks, ks, cin, cout) or pad != [p] * 4 or stride != [s, s] \
                or b.shape != (cout,):
            raise ValueError(f"{path}: layer {lname!r} has weights {w.shape}, bias {b.shape}, "
                             f"padding {pad}, stride {stride}; SqueezeNet v1.1 expects "
                             f"{(ks, ks, cin, cout)}, padding {[p] * 4}, stride {[s, s]}")
        state[f"{key}.weight"] = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
        state[f"{key}.bias"] = torch.from_numpy(b.copy())
        if not key.startswith("fires"):
            names[key] = lname
    pool_padding = {}
    for engine_name, (lname, _, st, _) in zip(("pool1", "pool3", "pool5"), pools):
        size = _numbers(_field(st, "PoolSize"))
        stride = _numbers(_field(st, "Stride"))
        if size != [3, 3] or stride != [2, 2]:
            raise ValueError(f"{path}: layer {lname!r} pools {size} with stride {stride}; "
                             f"SqueezeNet v1.1 expects [3, 3] and [2, 2]")
        pad = [int(v) for v in _numbers(_field(st, "PaddingSize"))]  # MATLAB: [t b l r]
        mode = _text(_field(st, "PaddingMode"))
        if mode not in ("manual", "") or len(pad) != 4:
            raise ValueError(f"{path}: layer {lname!r} uses padding mode {mode!r}, "
                             "only explicit ('manual') padding is supported")
        pool_padding[engine_name] = tuple(pad)
        names[engine_name] = lname
    in_st = inputs[0][2]
    input_size = tuple(int(v) for v in _numbers(_field(in_st, "InputSize")))
    norm = _field(in_st, "Normalization")
    kind = _text(_field(norm, "Type")) if norm is not None and norm.dtype.names else "none"
    if kind == "zerocenter":
        avg = np.asarray(_field(norm, "AverageImage"), dtype=np.float32)
        mean = avg.reshape(-1) if avg.size == 3 else avg.reshape(input_size)
    elif kind == "none":
        mean = np.zeros(3, np.float32)
    else:
        raise ValueError(f"{path}: input layer {inputs[0][0]!r} uses normalisation {kind!r}; "
                         "only 'zerocenter' and 'none' are supported")
    state["std"] = torch.ones(3, 1, 1)
    state["mean"] = torch.from_numpy(
        mean.reshape(3, 1, 1).copy() if mean.ndim == 1 else mean.transpose(2, 0, 1).copy())
    if outputs:
        cats = _field(outputs[0][2], "Categories")
        classes = [str(np.asarray(c).reshape(-1)[0]) if np.ndim(c) else str(c)
                   for c in np.asarray(cats).reshape(-1)] if cats is not None else []
    else:
        classes = []
    if not classes:
        classes = [f"class{i}" for i in range(n_classes or 0)]
    if len(classes) != n_classes:
        raise ValueError(f"{path}: {len(classes)} class names {classes} but the last conv "
                         f"has {n_classes} filters")
    names["data"] = inputs[0][0]
    for engine_name, kind_name in (("drop9", "DropoutLayer"),
                                   ("pool10", "GlobalAveragePooling2DLayer"),
                                   ("prob", "SoftmaxLayer")):
        if len(by_type.get(kind_name, [])) == 1:
            names[engine_name] = by_type[kind_name][0][0]
    for i, layer in zip(FIRE_WIDTHS, by_type.get("DepthConcatenationLayer", [])):
        names[f"fire{i}"] = layer[0]
    return MatlabNetwork(
        state_dict=state, classes=classes, mean=mean,
        input_size=input_size,  # type: ignore[arg-type]
        pool_padding=pool_padding, layer_names=names,
        source={"file": path.name, "sha256": _sha256(path), "variable": variable,
                "n_layers": len(layers)})
