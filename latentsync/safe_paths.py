"""Never write over an input: is an output path, however spelled, the same file as one of the inputs?

"Same" is what the file system says: symlinks, ``..``, hard links and another letter case on a case-insensitive
file system all lead to one file, which ``os.path.samefile`` (device and inode) recognises. When the output does
not exist yet it cannot be an existing input, but the resolved paths are still compared (an input that does not
exist either is refused too, as the run could only create it).
"""

from __future__ import annotations

import os
from typing import Iterable, Optional, Tuple


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name one file (by device and inode when both exist, else by resolved path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def overwrite_problem(output: str | os.PathLike, inputs: Iterable[Tuple[str, Optional[str]]]) -> Optional[str]:
    """Why writing ``output`` would replace an input, or None; ``inputs`` are (what, path) pairs, None paths skipped."""
    for what, path in inputs:
        if path and same_file(output, path):
            return (f"the output {os.fspath(output)} is the {what} {os.fspath(path)}: it would be written over. "
                    "Choose another output name (an input is never replaced, even when overwriting is allowed).")
    return None
