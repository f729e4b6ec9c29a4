"""Run the real console entry point (``latentsync.cli.main``: signal handling included) in a child process.

    python tests/e2e/cli_main_child.py ARGS...

Only difference from the installed ``latentsync`` command: PyPI's CUDA torchvision is made importable next to the
CPU torch of the test environment first (see tests/cpu_torchvision.py; diffusers imports it).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cpu_torchvision import stub_registrations_if_needed

    stub_registrations_if_needed()
    from latentsync.cli import main

    sys.argv = ["latentsync"] + sys.argv[1:]
    main()
