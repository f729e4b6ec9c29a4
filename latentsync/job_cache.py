"""A cache of finished lip-sync jobs: the same inputs and settings give back the earlier output at once.

The key is a SHA-256 over the inputs' content (BLAKE2 digests of the video and audio files), the identity of the
model files (resolved path, size and modification time: hashing 5 GB on every run would not be instant) and
every setting that changes the result (see :func:`job_key`); the library version is part of it, so an update
recomputes. An entry is a small JSON file ``<key>.json`` in the cache folder (``$LATENTSYNC_CACHE_DIR``, else
``~/.cache/latentsync/jobs``) that points at the output the job wrote, with that file's size and modification
time: videos are not copied into the cache, and an entry whose output was changed or deleted no longer counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from . import __version__

CACHE_ENV = "LATENTSYNC_CACHE_DIR"
DEFAULT_CACHE = Path("~") / ".cache" / "latentsync" / "jobs"
_BLOCK = 1 << 20


def default_cache_dir() -> Path:
    """``$LATENTSYNC_CACHE_DIR``, else ``~/.cache/latentsync/jobs``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE.expanduser())


def file_digest(path: str | os.PathLike) -> str:
    """BLAKE2b digest of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def model_identity(path: str | os.PathLike) -> list[list[Any]]:
    """[resolved path, size, mtime_ns] of a model file, or of every file in a model folder (a diffusers VAE)."""
    root = Path(os.path.realpath(path))
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    out = []
    for p in files:
        st = p.stat()
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def job_key(video: str, audio: str, models: Mapping[str, str], settings: Mapping[str, Any]) -> str:
    """The job's cache key: inputs' content, model files' identity, result-changing settings, library version."""
    payload = {
        "latentsync": __version__,
        "video": file_digest(video),
        "audio": file_digest(audio),
        "models": {name: model_identity(path) for name, path in sorted(models.items())},
        "settings": dict(sorted(settings.items())),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """A finished job: where its output is, that file's size and mtime when written, and its summary."""

    output: str
    size: int
    mtime_ns: int
    summary: str
    no_face: bool = False

    def still_valid(self) -> bool:
        """True while the output is still the file the job wrote (same size and modification time)."""
        try:
            st = os.stat(self.output)
        except OSError:
            return False
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns


class JobCache:
    """The index of finished jobs in ``folder`` (one JSON file per key)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def _entry_path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def lookup(self, key: str) -> Optional[CacheEntry]:
        """The entry for ``key`` whose output is still unchanged, else None."""
        try:
            data = json.loads(self._entry_path(key).read_text(encoding="utf-8"))
            entry = CacheEntry(**data)
        except (OSError, ValueError, TypeError):
            return None
        return entry if entry.still_valid() else None

    def record(self, key: str, output: str, summary: str, no_face: bool = False) -> CacheEntry:
        """Remember that ``key`` produced ``output`` (as it is on disk now)."""
        st = os.stat(output)
        entry = CacheEntry(os.path.realpath(output), st.st_size, st.st_mtime_ns, summary, no_face)
        self.folder.mkdir(parents=True, exist_ok=True)
        temp = self._entry_path(key).with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps(asdict(entry)), encoding="utf-8")
        os.replace(temp, self._entry_path(key))
        return entry


def deliver(entry: CacheEntry, output: str, overwrite: bool) -> bool:
    """Make ``output`` hold the cached result: nothing to do when it is that file, else a copy (written under a
    hidden name, then renamed; an existing file is replaced only with ``overwrite``). Returns True if it copied."""
    from .io.partial import PartialFile
    from .safe_paths import same_file

    if same_file(entry.output, output):
        return False
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite or choose another --output")
    partial = PartialFile(Path(output))
    try:
        shutil.copyfile(entry.output, partial.path)
        if overwrite:
            os.replace(partial.path, output)
        else:
            try:
                os.link(partial.path, output)  # fails if the name was taken meanwhile
            except FileExistsError:
                raise FileExistsError(f"{output} appeared meanwhile; not replacing it.") from None
            except OSError:  # a file system without hard links
                if os.path.exists(output):
                    raise FileExistsError(f"{output} appeared meanwhile; not replacing it.") from None
                os.replace(partial.path, output)
    finally:
        partial.discard()
    return True
