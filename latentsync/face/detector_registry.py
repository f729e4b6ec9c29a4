"""The face detectors, one row each: name, aliases, display name, and where its builder, status check and model
files live. The command line (``--detector``), the nodes' ``detector`` input, ``create_detector``, the doctor and
``model_files.ensure_detector_files`` all read this table, so a new detector is its module under
``face/detectors/`` (``build(models_dirs, device, **options)``, ``status(models_dirs)`` and, when it needs
downloads, ``model_files()`` / ``find_files(models_dirs)``) plus one row here.

Importing this module is light (no torch, no numpy): the command line's choices and the nodes' inputs come from
it. ``auto`` is not a detector: it takes the first row, in order, that can run here.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Iterable, Optional

AUTO = "auto"


@dataclass(frozen=True)
class DetectorEntry:
    """One detector: its one name, older names still accepted (saved workflows, scripts), how it is shown, and
    its module under ``latentsync.face.detectors`` (which has ``build``, ``status`` and optionally
    ``model_files`` / ``find_files``)."""

    name: str
    display: str
    module: str
    aliases: tuple[str, ...] = ()
    downloads: bool = False  # its files come through model_files (else they come with a pip package)

    def load(self) -> Any:
        """The detector's module (imported on demand: torch, onnxruntime, dlib load only here)."""
        return importlib.import_module(f".detectors.{self.module}", __package__)  # relative: the pack's own copy

    def build(self, models_dirs: Iterable[str | os.PathLike], device: str, **options: Any) -> Any:
        return self.load().build(list(models_dirs), device, **options)

    def status(self, models_dirs: Iterable[str | os.PathLike]) -> Optional[str]:
        """None when it can run here, else why not (cheap checks, nothing built)."""
        return self.load().status(list(models_dirs))

    def model_files(self) -> list:
        """Its downloadable files (``model_files.ModelFile``), empty when it downloads nothing."""
        return list(self.load().model_files()) if self.downloads else []


# Order matters: ``auto`` takes the first one that can run.
DETECTORS: dict[str, DetectorEntry] = {e.name: e for e in (
    DetectorEntry("insightface", "insightface (upstream's SCRFD + 2d106, ONNX)", "insightface_onnx", downloads=True),
    DetectorEntry("offline", "offline (dlib HOG + 68 landmarks, no download)", "dlib_hog", aliases=("dlib",)),
)}


def choices() -> tuple[str, ...]:
    """The names offered (CLI choices, the nodes' dropdown): auto, then each detector."""
    return (AUTO,) + tuple(DETECTORS)


def accepted() -> tuple[str, ...]:
    """Every name accepted anywhere: the choices and the aliases."""
    return choices() + tuple(a for e in DETECTORS.values() for a in e.aliases)


def canonical(name: str) -> str:
    """The one name of a detector (``dlib`` -> ``offline``); ValueError listing the choices for an unknown one."""
    if name == AUTO or name in DETECTORS:
        return name
    for entry in DETECTORS.values():
        if name in entry.aliases:
            return entry.name
    raise ValueError(f"Unknown face detector {name!r}; choose one of {', '.join(choices())}.")


def entry(name: str) -> DetectorEntry:
    """The row of a detector (aliases accepted); ValueError for ``auto`` or an unknown name."""
    key = canonical(name)
    if key == AUTO:
        raise ValueError("'auto' is not one detector; resolve it with create_detector or detector_status.")
    return DETECTORS[key]
