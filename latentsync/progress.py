"""Progress bars on stderr for the command line: one tqdm bar per stage, with real units and rates."""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

UNITS = {"detect": "frame", "sample": "step", "write": "frame"}


class Progress:
    """``progress(stage, done, total)`` callback drawing one bar per stage (tqdm when installed).

    A bar starts at the count of its first report, so the rate counts only work done while it was shown (no
    millions per second from a first tick that arrives with work already done). Stages of one item (the audio)
    draw nothing.
    """

    def __init__(self, enabled: bool, label: str, also: Optional[Callable[[str, int, int], None]] = None):
        self.enabled = enabled
        self.label = label
        self.also = also  # another listener of every report (a batch worker's progress for its driver)
        self.bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.also is not None:
            self.also(stage, done, total)
        if not self.enabled or total <= 1:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            if done >= total:
                print(f"{self.label}: {stage} {done}/{total}", file=sys.stderr)
            return
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, initial=done, desc=f"{self.label} {stage}",
                                          unit=UNITS.get(stage, "it"), leave=False, file=sys.stderr,
                                          dynamic_ncols=True)
        else:
            bar.total = total
            bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        """Close every bar (after an error or at the end of an item)."""
        for bar in self.bars.values():
            bar.close()
