"""The hidden ``.partial`` file a video is written to before it gets its final name, and stale ones left by a crash.

A writer names its file ``.<stem>.<8 hex>.partial<suffix>`` beside the final name and holds an exclusive lock on
it while writing (``flock``; the kernel drops it when the process dies, however it dies). Before writing the same
output again, partials of that name whose lock can be taken are left-overs of a dead run and are deleted; a
partial still locked belongs to a live run and is left alone. Without ``fcntl`` (Windows) a partial counts as
stale once nobody has written to it for ``STALE_AFTER_S`` seconds.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from pathlib import Path
from typing import Optional

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

STALE_AFTER_S = 24 * 3600


def _pattern(final: Path) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(final.stem)}\.[0-9a-f]{{8}}\.partial{re.escape(final.suffix)}$")


class PartialFile:
    """A fresh, locked partial file for ``final``; ``release()`` drops the lock (after renaming or deleting it)."""

    def __init__(self, final: Path):
        self.final = Path(final)
        self.path = self.final.with_name(f".{self.final.stem}.{secrets.token_hex(4)}.partial{self.final.suffix}")
        self._fd: Optional[int] = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        """Close the lock handle (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Delete the partial file (if still there) and release the lock."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            self.release()


def _is_stale(path: Path) -> bool:
    """True when no live process holds ``path`` (its lock can be taken, or it has not changed for a day)."""
    if fcntl is None:
        try:
            return time.time() - path.stat().st_mtime > STALE_AFTER_S
        except OSError:
            return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_stale_partials(final: str | os.PathLike) -> list[Path]:
    """Delete the partial files of ``final`` that no live writer holds; returns what was removed."""
    final = Path(final)
    pattern = _pattern(final)
    try:
        names = os.listdir(final.parent)
    except OSError:
        return []
    removed = []
    for name in names:
        path = final.parent / name
        if pattern.match(name) and path.is_file() and not path.is_symlink() and _is_stale(path):
            try:
                path.unlink()
            except OSError:
                continue
            log.info("removed %s, left by an earlier run of %s that did not finish", path, final.name)
            removed.append(path)
    return removed
