"""Event sources: every way users hold data becomes one stream of ``Event`` objects.

:func:`open_source` picks the source from what it is given:

- ``archive=``: continuous data (SDS tree or folder of miniSEED/SAC...) ->
  :class:`ArchiveSource` (events detected by STA/LTA, or cut at the times of a
  ``catalog=`` CSV);
- ``events=``: event sets -> :class:`HDF5EventSource` (``.h5``/``.hdf5``/v7.3
  ``.mat``), :class:`NumpyEventSource` (``.npy``/``.npz``, optionally labelled
  windows with mask rows) or :class:`WaveformEventSource` (one event per trace);
- ``images=``: folders of class sub-folders of images -> :class:`ImageFolderSource`.

Every source is picklable (paths and parameters, plus the file index once
built), lists stable chunk keys with ``chunks()`` and reads one with
``read_chunk(key)`` (see :mod:`engine.sources.base`).
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Optional, Sequence, Union

from engine.detect import DetectorConfig
from engine.sources.archive import ArchiveSource
from engine.sources.base import ChunkResult, EventSource, SourceSummary
from engine.sources.catalog import CatalogEntry, read_catalog
from engine.sources.eventfiles import (H5_SUFFIXES, NPY_SUFFIXES, HDF5EventSource,
                                       NumpyEventSource, WaveformEventSource)
from engine.sources.imagefolder import ImageFolderSource
from engine.sources._common import NON_WAVEFORM_SUFFIXES, check_path, resample, walk_files

__all__ = [
    "open_source", "DetectorConfig", "EventSource", "ChunkResult", "SourceSummary",
    "ArchiveSource", "HDF5EventSource", "NumpyEventSource", "WaveformEventSource",
    "ImageFolderSource", "CatalogEntry", "read_catalog", "resample", "OVDAS_MASKS",
]

#: mask row names of the OVDAS labelled windows (``mask_labels="ovdas"``)
OVDAS_MASKS: tuple[str, ...] = ("BG", "VT", "LP", "TR", "AV", "IC")

_DETECTOR_NAMES = {f.name for f in fields(DetectorConfig)}


def _event_kind(p: Path) -> str:
    """'h5', 'npy' or 'waveforms' for an ``events=`` path."""
    if p.is_file():
        suf = p.suffix.lower()
        if suf in H5_SUFFIXES:
            return "h5"
        if suf in NPY_SUFFIXES:
            return "npy"
        return "waveforms"
    files = walk_files(p)
    if not files:
        raise ValueError(f"event folder {p} is empty")
    kinds = set()
    for f in files:
        suf = f.suffix.lower()
        if suf in H5_SUFFIXES:
            kinds.add("h5")
        elif suf in NPY_SUFFIXES:
            kinds.add("npy")
        elif suf not in NON_WAVEFORM_SUFFIXES:
            kinds.add("waveforms")
    if not kinds:
        raise ValueError(f"event folder {p} holds no HDF5, NumPy or waveform files "
                         f"(found e.g. {files[0].name})")
    if len(kinds) > 1:
        raise ValueError(f"event folder {p} mixes {sorted(kinds)} files; point events= at one kind")
    return kinds.pop()


def open_source(*, archive=None, events=None, images=None, catalog=None,
                detect: Union[bool, DetectorConfig, dict] = True,
                network: str = "*", station: str = "*", location: str = "*", channel: str = "*Z",
                starttime: Optional[str] = None, endtime: Optional[str] = None,
                target_fs: float = 100.0, chunk_length: float = 3600.0, max_gap: float = 2.0,
                layout: str = "auto", fs: float = 100.0, n_samples: Optional[int] = None,
                datasets: Optional[str] = None,
                mask_labels: Optional[Union[str, Sequence[str]]] = None,
                resize_images: bool = True, **detector) -> EventSource:
    """Open the events a user holds as one :class:`EventSource`.

    Exactly one of ``archive``, ``events`` and ``images`` is given. Every
    parameter is a flag of ``python -m engine.run`` except ``layout``,
    ``n_samples`` and ``resize_images``, which are library-only (the main job
    detects the layout and the sample axis, and resizes odd images with a
    warning).

    Parameters
    ----------
    archive : path, optional
        Continuous data: an SDS tree (``YEAR/NET/STA/CHAN.D/NET.STA.LOC.CHAN.D.YEAR.DOY``)
        or any folder (or file) of miniSEED/SAC/... that ObsPy reads.
    events : path, optional
        Event sets: HDF5 file(s) (Llaima layout: one dataset per class, e.g.
        ``/LP``, shape ``N x 6000 x 1``), ``.npy``/``.npz`` arrays
        (``n_events x n_samples``) or a folder of waveform files (one event per
        trace; sub-folder name = label).
    images : path, optional
        Folder of class sub-folders of 227 x 227 RGB PNG/JPG images.
    catalog : path, optional
        With ``archive``: CSV ``time[,duration][,label|type][,station]``; windows
        are cut at these times instead of detecting.
    detect : bool or DetectorConfig or dict
        With ``archive``: detection parameters (``True``: defaults, updated by
        ``**detector``). ``False`` needs ``catalog``.
    network, station, location, channel : str
        Stream selection for archives and waveform event files; wildcards
        ``*``/``?``, comma-separated alternatives; location ``--`` = empty.
        Default all, vertical channels ``*Z``.
    starttime, endtime : str, optional
        Archive time range (ISO UTC); events with onset in ``[starttime, endtime)``.
    target_fs : float
        Sampling rate of every emitted event (default 100 Hz); other rates are
        resampled with an anti-alias filter.
    chunk_length : float
        Archive seconds per chunk (default 3600); memory per chunk is bounded by it.
    max_gap : float
        Archive gaps up to this many seconds are filled by linear interpolation;
        longer gaps split the data (default 2 s).
    layout : {"auto", "sds", "folder"}
        Archive layout (default: detected).
    fs : float
        Sampling rate of HDF5/NumPy event arrays that do not state it (default 100 Hz).
    n_samples : int, optional
        Trace length of HDF5 event arrays, naming their sample axis.
    datasets : str, optional
        Wildcard on HDF5 dataset names (default all).
    mask_labels : str or sequence, optional
        NumPy labelled-window mode: names of the trailing mask rows
        (comma-separated, or ``"ovdas"`` for BG,VT,LP,TR,AV,IC).
    resize_images : bool
        Resize images that are not 227 x 227 RGB with a warning (default) or raise.
    **detector
        :class:`DetectorConfig` fields (``sta``, ``lta``, ``on``, ``off``,
        ``freqmin``, ``freqmax``, ``min_duration``, ``max_duration``, ``pre``,
        ``post``, ``max_window``, ``min_stations``, ``coincidence_window``).

    Returns
    -------
    EventSource
        Validated (bad paths and empty selections fail here, not later).

    Raises
    ------
    FileNotFoundError
        If a given path does not exist.
    ValueError
        For a bad parameter, an empty folder, an empty selection (the message
        says what was looked for), a bad catalogue line or an HDF5 file without
        event datasets.
    """
    given = [n for n, v in (("archive", archive), ("events", events), ("images", images)) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of archive=, events=, images= "
                         f"(got {', '.join(given) if given else 'none'})")
    unknown = set(detector) - _DETECTOR_NAMES
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}; detector parameters are "
                         f"{sorted(_DETECTOR_NAMES)}")
    if isinstance(detect, DetectorConfig):
        cfg = DetectorConfig.from_dict({**detect.to_dict(), **detector})
    elif isinstance(detect, dict):
        cfg = DetectorConfig.from_dict({**detect, **detector})
    elif detect is True or detect is False:
        cfg = DetectorConfig(**detector)
    else:
        raise ValueError(f"detect must be True/False, a DetectorConfig or a dict, got {detect!r}")
    cfg.validate()
    if not (isinstance(target_fs, (int, float)) and target_fs > 0):
        raise ValueError(f"target_fs must be a positive number, got {target_fs!r}")

    if archive is not None:
        if detect is False and catalog is None:
            raise ValueError("archive with detect=False needs a catalog= CSV of event times")
        src: EventSource = ArchiveSource(
            archive, layout=layout, network=network, station=station, location=location,
            channel=channel, starttime=starttime, endtime=endtime, target_fs=target_fs,
            chunk_length=chunk_length, detector=cfg, catalog=catalog, max_gap=max_gap)
    else:
        if catalog is not None:
            raise ValueError("catalog= applies to archive= only")
        if images is not None:
            src = ImageFolderSource(images, resize=resize_images)
        else:
            p = check_path(events, "event file or folder")
            kind = _event_kind(p)
            if kind == "h5":
                src = HDF5EventSource(p, fs=fs, target_fs=target_fs, n_samples=n_samples,
                                      datasets=datasets)
            elif kind == "npy":
                masks = OVDAS_MASKS if isinstance(mask_labels, str) and mask_labels.lower() == "ovdas" \
                    else mask_labels
                src = NumpyEventSource(p, fs=fs, target_fs=target_fs, mask_labels=masks,
                                       pre=cfg.pre, post=cfg.post, max_window=cfg.max_window)
            else:
                src = WaveformEventSource(p, network=network, station=station, location=location,
                                          channel=channel, target_fs=target_fs)
    return src.check()
