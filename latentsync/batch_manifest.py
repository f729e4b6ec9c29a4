"""The batch manifest: one JSON file listing every job of a batch run and what became of it.

Statuses: ``done`` (written now), ``cached`` (an earlier identical job's output, see ``job_cache``), ``exists``
(the output was there already and was kept), ``no_face`` (written, but no frame had a usable face: the output is
the input's frames unchanged), ``failed`` (with the message). The file is rewritten after every job, through a
temporary file, so it is complete up to the last finished job even if the run is stopped. It only ever replaces
an earlier manifest, never another file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

MARKER = "latentsync_batch_manifest"
STATUSES = ("done", "cached", "exists", "no_face", "failed")


@dataclass
class ManifestEntry:
    """One job's line in the manifest."""

    video: str
    audio: str
    output: str
    status: str
    message: str = ""
    frames: Optional[int] = None
    face_frames: Optional[int] = None
    seconds: Optional[float] = None
    key: Optional[str] = None  # the job cache's key (``latentsync batch``)
    worker: Optional[str] = None  # host:pid of the worker that ran it
    attempts: Optional[int] = None  # > 1 when its worker died and it was retried
    load_seconds: Optional[float] = None  # model loading on that worker, paid by its first job
    gate: Optional[list] = None  # the sync gate's segments with their scores (--min-sync)
    options: Optional[dict] = None  # the job's own options (CSV/JSONL batch)
    sync: Optional[dict] = None  # the output's SyncNet score (``latentsync batch --score``)


@dataclass
class Manifest:
    """The manifest file at ``path`` and its entries, in job order."""

    path: Path
    entries: list[ManifestEntry] = field(default_factory=list)

    def add(self, entry: ManifestEntry) -> None:
        """Append a job's entry and rewrite the file."""
        if entry.status not in STATUSES:
            raise ValueError(f"unknown manifest status {entry.status!r}")
        self.entries.append(entry)
        self.write()

    def counts(self) -> dict[str, int]:
        """How many jobs ended in each status."""
        return {s: sum(e.status == s for e in self.entries) for s in STATUSES}

    def write(self) -> None:
        """Write the whole manifest atomically (temporary file, then rename)."""
        data = {MARKER: 1, "counts": self.counts(), "jobs": [asdict(e) for e in self.entries]}
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temp, self.path)


def default_manifest_path(batch: str, output_dir: Optional[str]) -> Path:
    """``<output-dir>/latentsync_manifest.json``, else in the batch folder, else ``<list file>.manifest.json``."""
    if output_dir:
        return Path(output_dir) / "latentsync_manifest.json"
    spec = Path(batch)
    if spec.is_dir():
        return spec / "latentsync_manifest.json"
    return spec.with_name(spec.name + ".manifest.json")


def manifest_path_problem(path: Path) -> Optional[str]:
    """Why ``path`` cannot take the manifest (it is a folder, or a file that is not an earlier manifest), or None."""
    if path.is_dir():
        return f"the manifest path {path} is a folder; give a file name with --manifest"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or MARKER not in data:
        return f"{path} exists and is not a LatentSync batch manifest; choose another file with --manifest"
    return None
