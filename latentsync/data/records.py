"""A step's record for one input or segment (kept / dropped, why, scores, outputs) and the resumable step runner:
a step whose record exists (with its outputs) is not run again, so a rerun does nothing and a killed run loses at
most the file in flight."""

from __future__ import annotations

import errno
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .files import read_json, record_path, write_json

log = logging.getLogger(__name__)

KEPT = "kept"
# Errors of the machine rather than of the input (disk full, quota, read-only, permissions): never recorded as a drop.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})
DROPPED = "dropped"


@dataclass
class StepRecord:
    """What one step did to one item: ``status`` kept / dropped, the ``reason`` for a drop, ``scores`` measured,
    ``outputs`` (paths relative to OUT) and ``data`` the step hands to the next (e.g. the scene list)."""

    step: str
    item: str
    status: str
    reason: str = ""
    scores: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> bool:
        """Whether the item goes on to the next step."""
        return self.status == KEPT

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


class SetupError(RuntimeError):
    """A model or detector cannot be loaded: the run stops (nothing is recorded, a rerun tries again)."""


def kept(step: str, item: str, *, outputs: Optional[list[str]] = None, **scores: Any) -> StepRecord:
    """A kept record."""
    return StepRecord(step, item, KEPT, scores=scores, outputs=outputs or [])


def dropped(step: str, item: str, reason: str, **scores: Any) -> StepRecord:
    """A dropped record with its reason."""
    return StepRecord(step, item, DROPPED, reason=reason, scores=scores)


def load_record(out: Path, step: str, rel: Path) -> Optional[StepRecord]:
    """The finished record of ``step`` for ``rel``; None when absent, unreadable or an output is missing."""
    data = read_json(record_path(out, step, rel))
    if not isinstance(data, dict):
        return None
    try:
        record = StepRecord(**data)
    except TypeError:
        return None
    if not all((out / p).is_file() for p in record.outputs):
        return None
    return record


def run_step(out: Path, step: str, rel: Path, compute: Callable[[], StepRecord]) -> tuple[StepRecord, bool]:
    """The record of ``step`` for ``rel``: the saved one, else ``compute()`` saved after its outputs; and whether
    it ran. An exception inside the step drops the item with the error as the reason (upstream skips it too)."""
    record = load_record(out, step, rel)
    if record is not None:
        return record, False
    try:
        record = compute()
    except (MemoryError, KeyboardInterrupt, SystemExit, SetupError):
        raise
    except OSError as exc:
        if exc.errno in ENVIRONMENT_ERRNOS:  # the disk, not the file: stop, nothing recorded
            raise
        log.warning("%s: %s failed: %s", rel, step, exc)
        record = dropped(step, rel.as_posix(), f"error: {type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run; the reason is recorded
        log.warning("%s: %s failed: %s", rel, step, exc)
        record = dropped(step, rel.as_posix(), f"error: {type(exc).__name__}: {exc}")
    write_json(record_path(out, step, rel), record.as_dict())
    return record, True
