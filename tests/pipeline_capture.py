"""What a pipeline run hands to its video writer, for tests that compare two runs' frames exactly, and the stages
it goes through."""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import numpy as np

from latentsync.io import video as vio


def written_frames(monkeypatch, run: Callable[[], Any]) -> tuple[Any, np.ndarray]:
    """``run()``'s result and the uint8 frames it handed to the video writer (before H.264), in order."""
    frames: list[np.ndarray] = []
    original = vio.VideoWriter.write

    def keep(self, batch, *args, **kwargs):
        frames.append(np.array(batch))
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(vio.VideoWriter, "write", keep)
    report = run()
    monkeypatch.setattr(vio.VideoWriter, "write", original)
    return report, np.concatenate(frames)


def stage_log(names: list[str]) -> Callable[[str], contextlib.AbstractContextManager]:
    """A profiling timer for ``lipsync_file(timer=...)`` that appends the name of each stage entered to ``names``."""

    @contextlib.contextmanager
    def timer(name: str):
        names.append(name)
        yield

    return timer
