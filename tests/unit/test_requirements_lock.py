"""The CI lock (.ci/requirements.lock) pins a version inside every range the project's requirement files ask for.

A requirement added or narrowed without running `bash .ci/lock` fails here, before CI installs something else.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / ".ci" / "requirements.lock"
SOURCES = ["requirements.txt", "requirements-dev.txt", "requirements-comfy-test.txt", ".ci/requirements.in",
           ".ci/requirements-nodeps.in"]


def requirement_lines(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def locked() -> dict[str, Version]:
    pins = {}
    for line in requirement_lines(LOCK):
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{LOCK.name}: {line!r} is not an exact pin"
        pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def test_lock_pins_are_exact_and_unique():
    names = [canonicalize_name(Requirement(line).name) for line in requirement_lines(LOCK)]
    assert len(names) == len(set(names)), "a package is pinned twice"
    assert locked()["torch"].local == "cpu", "CI must install the CPU build of torch"


@pytest.mark.parametrize("source", SOURCES)
def test_every_requirement_is_locked_inside_its_range(source):
    pins = locked()
    for line in requirement_lines(ROOT / source):
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"{source}: {req.name} is not in .ci/requirements.lock; run `bash .ci/lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{source}: {line!r} excludes the locked {req.name}=={pins[name]}; run `bash .ci/lock`"
        )
