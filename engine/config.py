"""The run configuration: one object, validated in one place, saved with every run.

Every field of :class:`RunConfig` is a command-line flag of ``python -m
engine.run`` (``--field-name``) and a key of the optional TOML file given with
``--config``. Precedence: defaults < TOML file < command line. The resolved
configuration is written to ``OUT/config.toml`` at the start of each run.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from engine.cluster.factory import METHODS as _METHOD_TABLE
from engine.detect import DetectorConfig
from engine.features import FEATURIZERS, make_featurizer
from engine.features.superlet_cnn import DEFAULT_LAYOUT, PRECISIONS

_DET = DetectorConfig()

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: input flags, at most one of which may be given (none: the embedded synthetic archive)
INPUT_FIELDS = ("archive", "events", "images")
DEVICES = ("cpu", "cuda", "auto")


def _f(default: Any, help: str, group: str, metavar: str | None = None, choices=None,
       fingerprint: bool = False):
    """A config field: its flag's help, group, metavar and choices.

    ``fingerprint=True`` marks the fields the stored features depend on (besides
    the featurizer's own fingerprint): a store made with other values is refused.
    """
    return field(default=default, metadata={"help": help, "group": group,
                                             "metavar": metavar, "choices": choices,
                                             "fingerprint": fingerprint})


def _fp(default: Any, help: str, group: str, metavar: str | None = None, choices=None):
    return _f(default, help, group, metavar, choices, fingerprint=True)


@dataclass
class RunConfig:
    """Configuration of one run of the main job (see ``python -m engine.run --help``)."""

    # --- input -----------------------------------------------------------------------
    archive: Optional[str] = _fp(
        None, "continuous archive: an SDS tree (YEAR/NET/STA/CHAN.D/...) or a folder of "
        "miniSEED/SAC files; 'synthetic' (or no input flag at all) generates the embedded "
        "synthetic archive into OUT/synthetic_archive", "input", "PATH")
    events: Optional[str] = _fp(
        None, "event files: an HDF5 event set (Llaima layout, one dataset per class), a "
        "folder of them, a .npy/.npz array, or a folder of miniSEED/SAC event files "
        "(sub-folder names are labels)", "input", "PATH")
    events_fs: float = _fp(100.0, "sampling rate (Hz) of --events arrays that do not carry "
                          "one (HDF5 / NumPy event sets)", "input", "HZ")
    images: Optional[str] = _fp(
        None, "folder of 227x227 scalogram images (class sub-folders are labels), e.g. the "
        "published Llaima images", "input", "DIR")
    catalog: Optional[str] = _fp(
        None, "CSV catalogue (time[,duration,label][,station]) of events to cut from "
        "--archive instead of STA/LTA detection", "input", "CSV")
    mask_labels: Optional[str] = _fp(
        None, "--events .npy/.npz files are labelled windows: names of their trailing "
        "per-sample 0/1 mask rows, comma-separated, or 'ovdas' for BG,VT,LP,TR,AV,IC; each "
        "labelled stretch becomes one event", "input", "NAMES")
    datasets: Optional[str] = _fp(None, "wildcard on the dataset names read from --events "
                                  "HDF5 files (default: all)", "input", "PATTERN")
    max_gap: float = _fp(2.0, "archive gaps up to this many seconds are filled by linear "
                         "interpolation; longer gaps split the data", "selection", "S")
    out: str = _f("microquake_out", "output folder (feature store, figures, report); "
                  "re-running with the same folder resumes", "input", "DIR")
    network: str = _fp("*", "network code(s) to read from the archive (wildcards)", "selection")
    station: str = _fp("*", "station code(s) to read (wildcards, comma-separated list)",
                      "selection")
    location: str = _fp("*", "location code(s) to read (wildcards)", "selection")
    channel: str = _fp("*Z", "channel code(s) to read (wildcards; vertical components by "
                      "default)", "selection")
    starttime: Optional[str] = _fp(None, "first time to read (UTC, ISO 8601)", "selection",
                                  "TIME")
    endtime: Optional[str] = _fp(None, "last time to read (UTC, ISO 8601)", "selection",
                                "TIME")
    fs: float = _fp(100.0, "sampling rate (Hz) all data are resampled to, with an "
                   "anti-alias filter", "selection", "HZ")
    chunk_length: float = _fp(3600.0, "length (s) of the archive chunks read at a time; "
                             "memory is bounded by one chunk per worker", "selection", "S")
    # --- detection (defaults are engine.detect.DetectorConfig's) ----------------------
    sta: float = _fp(_DET.sta, "STA window (s) of the recursive STA/LTA detector",
                    "detection", "S")
    lta: float = _fp(_DET.lta, "LTA window (s) of the recursive STA/LTA detector",
                    "detection", "S")
    trigger_on: float = _fp(_DET.on, "STA/LTA ratio that opens a trigger", "detection", "X")
    trigger_off: float = _fp(_DET.off, "STA/LTA ratio that closes a trigger", "detection",
                            "X")
    freqmin: float = _fp(_DET.freqmin, "band-pass low corner (Hz) before detection "
                        "(0: no high-pass)", "detection", "HZ")
    freqmax: float = _fp(_DET.freqmax, "band-pass high corner (Hz) before detection "
                        "(0: no low-pass; lowered to 0.45 fs when needed)", "detection",
                        "HZ")
    min_duration: float = _fp(_DET.min_duration, "shortest trigger (s) kept as an event",
                             "detection", "S")
    max_duration: float = _fp(_DET.max_duration, "longest trigger (s); longer ones are cut",
                             "detection", "S")
    pre: float = _fp(_DET.pre, "seconds kept before each trigger onset", "detection", "S")
    post: float = _fp(_DET.post, "seconds kept after each trigger end", "detection", "S")
    max_window: float = _fp(_DET.max_window, "cap (s) on an event window, padding "
                           "included (images use at most 60 s at 100 Hz)", "detection", "S")
    min_stations: int = _fp(_DET.min_stations, "coincidence: stations that must trigger "
                           "within --coincidence-window for an event to be kept",
                           "detection", "N")
    coincidence_window: float = _fp(_DET.coincidence_window, "largest spread (s) of the "
                                   "onsets of one coincident event", "detection", "S")
    # --- features --------------------------------------------------------------------
    features: str = _f(
        next(iter(FEATURIZERS)), "featurizer that turns events into features "
        "(--list-features prints them with a description)", "features", None,
        FEATURIZERS)
    weights: Optional[str] = _f(
        None, "network weights of the superlet-cnn featurizer: a MATLAB DAGNetwork "
        "MAT-file (.mat) or engine weights (.safetensors or .pt, with their .json); "
        "default: the engine's own weights", "features", "FILE")
    feature_layer: str = _f(DEFAULT_LAYOUT, "activations that are the features: parts "
                            "joined by '+', each a layer or a pooled layer LAYER_gap, "
                            "LAYER_gridK, LAYER_time[K], LAYER_freq[K]; the default is fire7's time "
                            "profile in 7 bins plus fire9 on a 2x2 time-frequency grid (4,736 "
                            "numbers); 'conv10' is the paper's final conv before its ReLU",
                            "features", "NAME")
    batch: int = _f(32, "events per batch through images and the CNN", "features", "N")
    precision: str = _f("fp32", "CNN precision on CUDA ('fp32' is strict fp32: TF32 off; "
                        "'tf32' allows TF32 tensor cores)", "features", None, PRECISIONS)
    tensorrt: bool = _f(False, "compile the CNN with torch-tensorrt on CUDA (engine "
                        "cached on disk)", "features")
    adapt: bool = _f(False, "adapt the superlet-cnn weights to this input without labels "
                     "first (self-supervised VICReg on a sample of its events, see "
                     "python -m engine.finetune --self-supervised), then extract features "
                     "with them; the adapted weights are kept in OUT/adapted_squeezenet.*",
                     "features")
    adapt_events: int = _f(3600, "events sampled for --adapt (from chunks taken "
                           "in a seeded random order, so the sample spans the input)",
                           "features", "N")
    adapt_budget: float = _f(600.0, "time budget (s) of the --adapt training loop",
                             "features", "S")
    save_images: bool = _f(False, "also write every event image as OUT/images/<label or "
                           "unlabelled>/<event>.png", "features")
    # --- clustering ------------------------------------------------------------------
    method: str = _f("lda-kmeans", "clustering method", "clustering", None, _METHOD_TABLE)
    k: str = _f("auto", "number of clusters: 'auto' (2..8, chosen by --k-criterion), "
                "one value ('4'), or a range chosen by --k-criterion ('2:12')", "clustering",
                "K")
    k_criterion: str = _f(
        "auto", "how k is chosen from a range: 'auto' (the smaller of the highest mean "
        "silhouette's k and the largest k whose every cluster is reproducible under "
        "resampling; that largest reproducible k alone when the silhouette's best is the "
        "smallest k scanned), 'stability' (that largest reproducible k), 'gap' (gap "
        "statistic), 'bic' (Gaussian mixture) or 'silhouette' (mean silhouette, the "
        "paper's); the report shows every curve and why k was chosen", "clustering", None,
        ("auto", "stability", "gap", "bic", "silhouette"))
    k_resample_size: int = _f(
        200, "events in each resample of the stability rule (at most four fifths of the "
        "events): fixed, so that the rule means the same at every archive size; raise it "
        "to resolve rare families in large archives", "clustering", "N")
    condition: str = _f(
        "standardize+pca50+l2", "feature conditioning before clustering, stored with the "
        "model so --assign-to applies it too: '+'-joined steps of station (per-station "
        "centring), standardize, pcaN, whiten, l2; 'none' for raw features",
        "clustering", "SPEC")
    seed: int = _f(0, "random seed (clustering, t-SNE, sampling, synthetic archive)",
                   "clustering", "N")
    assign_to: Optional[str] = _f(
        None, "assign the events to the saved clustering of an earlier run (its "
        "OUT/model.npz) instead of clustering anew; events far from every known family "
        "get cluster -1 ('none of the known families')", "clustering", "MODEL")
    report: bool = _f(True, "write figures and report.html (--no-report to skip)",
                      "clustering")
    # --- execution -------------------------------------------------------------------
    device: str = _f("auto", "where to compute ('auto': CUDA when a GPU and CuPy are "
                     "available)", "execution", None, DEVICES)
    workers: int = _f(0, "worker processes of the feature stage (0: automatic; on the CPU "
                      "one per core, each reading, detecting and featurizing groups of "
                      "chunks on its own cores; on CUDA cores - 1 reader processes feeding "
                      "the GPU; 1: all in this process)", "execution", "N")
    scheduler: Optional[str] = _f(None, "address of a Dask scheduler: per-chunk work "
                                  "runs as distributed tasks", "execution", "ADDRESS")
    dask_local: int = _f(0, "start a local Dask cluster with N worker processes "
                         "(LocalCUDACluster when --device cuda)", "execution", "N")
    fresh: bool = _f(False, "discard an existing feature store in OUT instead of "
                     "resuming", "execution")
    synthetic_days: float = _f(1.0, "days of the embedded synthetic archive (fractions "
                               "allowed)", "synthetic", "D")
    synthetic_stations: int = _f(2, "stations of the embedded synthetic archive",
                                 "synthetic", "N")
    synthetic_rate: float = _f(6.0, "planted events per hour of the embedded synthetic "
                               "archive", "synthetic", "R")

    # ------------------------------------------------------------------------------
    def validate(self) -> "RunConfig":
        """Check every field; raise ValueError naming the flag and the problem."""
        given = [n for n in INPUT_FIELDS if getattr(self, n)]
        if len(given) > 1:
            raise ValueError("give only one of --archive, --events, --images; got "
                             + ", ".join("--" + g for g in given))
        if self.catalog and self.images:
            raise ValueError("--catalog cuts events from --archive; it cannot be used "
                             "with --images")
        if self.catalog and not self.archive:
            raise ValueError("--catalog needs --archive (the continuous data to cut from)")
        for name in ("archive", "events", "images", "catalog", "weights", "assign_to"):
            value = getattr(self, name)
            if value and not (name == "archive" and value == "synthetic"):
                if not Path(value).exists():
                    raise FileNotFoundError(f"--{name.replace('_', '-')}: {value} does "
                                            "not exist")
        for name in ("starttime", "endtime"):
            value = getattr(self, name)
            if value is not None:
                from engine.sources.catalog import parse_time

                parse_time(value, f"--{name}")
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"--{_flag(f.name)} must be one of {', '.join(choices)}; "
                                 f"got {getattr(self, f.name)!r}")
        if self.adapt and self.features != "superlet-cnn":
            raise ValueError(f"--adapt adapts the superlet-cnn network; --features "
                             f"{self.features} has none to adapt")
        positive = ("adapt_events", "adapt_budget", "fs", "events_fs", "chunk_length", "sta",
                    "lta", "trigger_on", "trigger_off",
                    "max_duration", "batch", "synthetic_days", "synthetic_stations",
                    "synthetic_rate", "min_stations", "max_window", "coincidence_window")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"--{_flag(name)} must be a positive number; got {v!r}")
        for name in ("freqmin", "freqmax", "min_duration", "pre", "post", "dask_local",
                     "max_gap", "workers"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"--{_flag(name)} must be >= 0; got {v!r}")
        if self.lta <= self.sta:
            raise ValueError(f"--lta ({self.lta}) must be longer than --sta ({self.sta})")
        if self.trigger_off >= self.trigger_on:
            raise ValueError(f"--trigger-off ({self.trigger_off}) must be below "
                             f"--trigger-on ({self.trigger_on})")
        if self.freqmax and self.freqmin and self.freqmax <= self.freqmin:
            raise ValueError(f"--freqmax ({self.freqmax}) must exceed --freqmin "
                             f"({self.freqmin})")
        if self.scheduler and self.dask_local:
            raise ValueError("give --scheduler or --dask-local, not both")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ValueError(f"--out {self.out} is a file, not a folder; give a new or "
                             "existing folder")
        from engine.cluster.kchoice import MIN_RESAMPLE_SIZE

        if (not isinstance(self.k_resample_size, int) or isinstance(self.k_resample_size, bool)
                or self.k_resample_size < MIN_RESAMPLE_SIZE):
            raise ValueError(f"--k-resample-size must be an integer >= {MIN_RESAMPLE_SIZE}; "
                             f"got {self.k_resample_size!r}")
        self.k_values()  # raises on a bad --k
        from engine.cluster.conditioning import FeatureConditioner

        try:
            FeatureConditioner.from_spec(self.condition)
        except ValueError as exc:
            raise ValueError(f"--condition {self.condition!r}: {exc}") from None
        self.detector()  # cross-checks of the detection flags
        self.featurizer().check()  # the featurizer's own parameters (weights file...)
        return self

    def featurizer(self, device: str = "cpu", images_dir: Optional[str] = None):
        """The run's unfitted featurizer (:func:`engine.features.make_featurizer`).

        Every field of the ``features`` group is offered to it, with the sampling
        rate and device; a featurizer takes the parameters it has and ignores
        the others.
        """
        params = {f.name: getattr(self, f.name) for f in fields(self)
                  if f.metadata["group"] == "features" and f.name != "features"
                  and not f.name.startswith("adapt")}
        params.update(fs=self.fs, device=device, images_dir=images_dir)
        return make_featurizer(self.features, **params)

    def fingerprint_fields(self) -> dict[str, Any]:
        """Values of the fields marked ``fingerprint`` (input, selection, detection).

        Paths are resolved, so that the same input spelled another way (relative
        vs absolute) gives the same fingerprint.
        """
        fp = {}
        for f in fields(self):
            if not f.metadata.get("fingerprint"):
                continue
            v = getattr(self, f.name)
            if f.metadata.get("metavar") in ("PATH", "DIR", "CSV") and v and v != "synthetic":
                v = str(Path(v).resolve())
            fp[f.name] = v
        return fp

    def k_values(self) -> list[int]:
        """The k values to scan, parsed from ``k`` ('4' or '2:8', inclusive)."""
        text = str(self.k).strip()
        if text == "auto":
            return list(range(2, 9))
        try:
            if ":" in text:
                lo, hi = (int(p) for p in text.split(":", 1))
            else:
                lo = hi = int(text)
        except ValueError:
            raise ValueError(f"--k must be 'auto', an integer or a range like 2:8; got "
                             f"{self.k!r}") \
                from None
        if lo < 2 or hi < lo:
            raise ValueError(f"--k needs 2 <= first <= last; got {self.k!r}")
        return list(range(lo, hi + 1))

    @property
    def input_kind(self) -> str:
        """'archive', 'events', 'images' or 'synthetic'."""
        if self.archive and self.archive != "synthetic":
            return "archive"
        for name in ("events", "images"):
            if getattr(self, name):
                return name
        return "synthetic"

    def detector(self):
        """The :class:`engine.detect.DetectorConfig` of these flags (validated)."""
        return DetectorConfig(
            sta=self.sta, lta=self.lta, on=self.trigger_on, off=self.trigger_off,
            freqmin=self.freqmin or None, freqmax=self.freqmax or None,
            min_duration=self.min_duration, max_duration=self.max_duration, pre=self.pre,
            post=self.post, max_window=self.max_window, min_stations=self.min_stations,
            coincidence_window=self.coincidence_window).validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (None values kept)."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """TOML text of the resolved configuration (unset optional values omitted)."""
        lines = ["# resolved configuration of a microquake-engine run",
                 "# re-run with: python -m engine.run --config THIS_FILE", ""]
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                lines.append(f"# {f.name} = (not set)")
                continue
            lines.append(f"{f.name} = {_toml_value(v)}")
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_toml` to ``path`` atomically."""
        from engine._util import atomic_write

        atomic_write(path, self.to_toml())


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML run configuration; unknown keys raise ValueError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"--config: {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--config: {path} is not valid TOML: {exc}") from None
    known = {f.name for f in fields(RunConfig)}
    data = {k.replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"--config: {path} has unknown key(s): {', '.join(unknown)}")
    return data


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m engine.run``: one flag per config field."""
    parser = argparse.ArgumentParser(
        prog=("microquake-run" if Path(sys.argv[0]).name.startswith("microquake-run")
              else "python -m engine.run"),
        description="Find families of volcanic microearthquakes: events -> superlet "
        "images -> CNN features -> clustering -> report. With no input flag the engine "
        "generates and processes its embedded synthetic archive.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", metavar="TOML", default=None,
                        help="TOML file setting any of the flags below (flags win)")
    parser.add_argument("--list-features", action="store_true",
                        help="print the featurizers (name, then a description), one per "
                        "line, and exit")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(RunConfig):
        g = f.metadata["group"]
        if g not in groups:
            groups[g] = parser.add_argument_group(g)
        flag = "--" + _flag(f.name)
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS,
                              "help": f.metadata["help"] + f" (default: {f.default})"}
        if isinstance(f.default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        else:
            typ = {"int": int, "float": float}.get(
                type(f.default).__name__ if f.default is not None else "str", str)
            kw["type"] = typ
            if f.metadata.get("metavar"):
                kw["metavar"] = f.metadata["metavar"]
            if f.metadata.get("choices"):
                kw["choices"] = f.metadata["choices"]
        groups[g].add_argument(flag, **kw)
    # ArgumentDefaultsHelpFormatter would print SUPPRESS; defaults are in the help text.
    parser.formatter_class = argparse.HelpFormatter
    return parser


def parse_args(argv: list[str] | None = None) -> RunConfig:
    """Parse command-line flags (and ``--config`` TOML) into a validated RunConfig."""
    parser = build_parser()
    ns = vars(parser.parse_args(argv))
    if ns.pop("list_features", False):
        from engine.features import describe_featurizers

        for name, text in describe_featurizers():
            print(f"{name:<18} {text}")
        raise SystemExit(0)
    toml_path = ns.pop("config", None)
    values: dict[str, Any] = {}
    if toml_path:
        values.update(load_toml(toml_path))
    values.update(ns)
    try:
        cfg = RunConfig(**values)
    except TypeError as exc:  # wrong types from TOML
        raise ValueError(f"bad configuration: {exc}") from None
    for f in fields(cfg):  # coerce TOML ints given for float fields etc.
        v = getattr(cfg, f.name)
        if f.name == "k" and isinstance(v, int) and not isinstance(v, bool):
            cfg.k = v = str(v)
        if isinstance(f.default, float) and isinstance(v, int) and not isinstance(v, bool):
            setattr(cfg, f.name, float(v))
        elif f.default is not None and v is not None and type(v) is not type(f.default) \
                and not (isinstance(f.default, float) and isinstance(v, float)):
            raise ValueError(f"--{_flag(f.name)} must be {type(f.default).__name__}; "
                             f"got {v!r}")
    return cfg.validate()
