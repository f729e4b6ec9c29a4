"""Where the data pipeline's files live under OUT, how inputs are found under SRC, and atomic writes.

Every output is written under a hidden temporary name beside its final name and renamed when complete, so a
file under its final name is always whole; a step's record (JSON) is written the same way after its outputs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from ..io.partial import PartialFile, remove_stale_partials

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".m4v", ".webm", ".avi")
RECORDS = "records"
MANIFEST = "manifest.json"
# Output folder of each step, upstream's names (data_processing_pipeline.py); shots live in their records.
FOLDERS = {
    "resample": "resampled",
    "segment": "segmented",
    "faces": "affine_transformed",
    "sync": "av_synced",
    "quality": "high_visual_quality",
}


def find_videos(src: Path) -> Iterator[Path]:
    """Video files under ``src`` (recursive, sorted, hidden names skipped), as paths relative to ``src``."""
    for root, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS):
                yield (Path(root) / name).relative_to(src)


def output_name(rel: Path) -> Path:
    """The relative name of an input's outputs: its path with ``.mp4`` (every output is an mp4)."""
    return rel.with_suffix(".mp4")


def step_output(out: Path, step: str, rel: Path) -> Path:
    """The output file of ``step`` for the input or segment ``rel``."""
    return out / FOLDERS[step] / output_name(rel)


def record_path(out: Path, step: str, rel: Path) -> Path:
    """Where the record of ``step`` for ``rel`` (an input or a segment) is kept."""
    return out / RECORDS / step / f"{rel.as_posix()}.json"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary name, then rename); a crash leaves the old file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    partial = PartialFile(path)
    try:
        with open(partial.path, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(partial.path, path)
    except BaseException:
        partial.discard()
        raise
    partial.release()


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or unreadable (then the step runs again)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class AtomicFile:
    """A locked hidden partial file for ``final``; ``commit()`` renames it into place, ``discard()`` deletes it."""

    def __init__(self, final: Path):
        self.final = Path(final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.final)
        self._partial = PartialFile(self.final)
        self.path = self._partial.path

    def commit(self) -> Path:
        """Move the finished partial file to the final name (replacing a file left by an unrecorded run)."""
        os.replace(self.path, self.final)
        self._partial.release()
        return self.final

    def discard(self) -> None:
        """Delete the partial file."""
        self._partial.discard()

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def copy_atomic(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` through a partial file."""
    with AtomicFile(dst) as tmp:
        shutil.copyfile(src, tmp.path)
    return dst
