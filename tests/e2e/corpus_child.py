"""Child process of the bad-input corpus test: run each case through the real command line (``cli.run``).

    python tests/e2e/corpus_child.py PLAN.json RESULTS.jsonl

PLAN.json is a list of {"name", "argv", "cwd"}. Each case's stdout and stderr are captured, and one JSON line
{"name", "code", "stdout", "stderr", "escaped"} is appended to RESULTS.jsonl as soon as it finishes, after a
{"name", "started": true} line: a case that kills the process (a crash in a native decoder) is the one that
started last. ``escaped`` holds the traceback of an exception that got out of ``cli.run`` (there must be none).
One process for every case keeps the suite fast (Python, torch and diffusers are imported once).
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import os
import sys
import traceback
from pathlib import Path


def main() -> None:
    plan_path, results_path = Path(sys.argv[1]), Path(sys.argv[2])
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cpu_torchvision import stub_registrations_if_needed

    stub_registrations_if_needed()
    faulthandler.enable()
    from latentsync import cli

    plan = json.loads(plan_path.read_text())
    with open(results_path, "a", encoding="utf-8") as results:
        for case in plan:
            results.write(json.dumps({"name": case["name"], "started": True}) + "\n")
            results.flush()
            out, err = io.StringIO(), io.StringIO()
            code, escaped = None, ""
            os.chdir(case["cwd"])
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = cli.run(case["argv"])
                except BaseException:  # noqa: BLE001 - recorded: the test fails on any escaped exception
                    escaped = traceback.format_exc()
            results.write(json.dumps({"name": case["name"], "code": code, "stdout": out.getvalue(),
                                      "stderr": err.getvalue(), "escaped": escaped}) + "\n")
            results.flush()


if __name__ == "__main__":
    main()
