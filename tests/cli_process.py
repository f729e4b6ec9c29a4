"""Run the real command line in a fresh interpreter, from a folder outside the clone, and time it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@dataclass
class Finished:
    """Exit code, output and wall time of one run."""

    code: int
    stdout: str
    stderr: str
    seconds: float


def run_cli(args: list[str], cwd: Path, env: Optional[dict[str, str]] = None, *, timeout: float = 300,
            executable: Optional[list[str]] = None) -> Finished:
    """``python -m latentsync ARGS`` (the library from this clone, via PYTHONPATH) or ``executable ARGS``.

    The offline variables are removed unless ``env`` sets them, so each test states the network it expects.
    """
    full = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARIABLES}
    full["COLUMNS"] = "200"  # argparse wraps --help at the terminal width
    if executable is None:
        full["PYTHONPATH"] = os.pathsep.join([str(REPO), full.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        executable = [sys.executable, "-m", "latentsync"]
    full.update(env or {})
    start = time.monotonic()
    proc = subprocess.run(executable + args, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)
    return Finished(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
