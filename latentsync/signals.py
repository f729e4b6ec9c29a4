"""SIGTERM (and SIGHUP) handled like Ctrl-C for the length of a command, so every cleanup path runs.

Python ends a process on SIGTERM without unwinding, which left the hidden ``.partial`` video behind. Inside
:func:`terminate_as_interrupt` the signal raises :class:`Terminated` (a KeyboardInterrupt) in the main thread
instead; the writers' context managers then delete their partial files as they do for Ctrl-C. The previous
handlers are restored on exit: nothing is installed at import, and library callers are not affected.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal (``signum``); handled like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + int(self.signum)


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP raise :class:`Terminated`; outside the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_terminated) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
