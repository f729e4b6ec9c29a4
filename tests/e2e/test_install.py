"""``pip install <repo>[cli]`` installs only the library (with its bundled sample) and a ``latentsync`` command that
works from any folder. The wheel is built from a copy of the clone's files, so the checkout itself is untouched."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cli_process import REPO, run_cli

JUNK = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", "build", "dist", "*.egg-info", "_carry*", ".carry",
                              ".venv", "venv")


def _copy_clone(dest: Path) -> Path:
    """The files a fresh clone has (git's list when this is a checkout), else the tree without build junk."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                                text=True, check=True, timeout=60).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(REPO, dest, ignore=JUNK)
        return dest
    for rel in listed:
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """The wheel, and the clone copy it was built from."""
    src = _copy_clone(tmp_path_factory.mktemp("clone") / "ComfyUI-LatentSync")
    out = tmp_path_factory.mktemp("wheel")
    # With setuptools here, build without fetching it (fast, offline); otherwise pip fetches it from the index.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (found,) = out.glob("*.whl")
    return found, src


def test_the_wheel_holds_only_the_library_and_its_data(built):
    wheel, src = built
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert {n.split("/")[0] for n in names} == {"latentsync", dist_info}
    for needed in ("latentsync/__main__.py", "latentsync/cli.py", "latentsync/selftest.py", "latentsync/doctor.py",
                   "latentsync/assets/astronaut.jpg", "latentsync/assets/demo_speech.flac",
                   "latentsync/face/detectors/dlib_hog.py", "latentsync/models/unet_model.py"):
        assert needed in names, needed
    library = {p.relative_to(src).as_posix() for p in (src / "latentsync").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert library <= set(names), sorted(library - set(names))  # every module and data file of the library
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "latentsync = latentsync.cli:main" in entry_points
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert "Provides-Extra: cli" in metadata and 'diffusers>=0.27; extra == "cli"' in metadata


def test_the_installed_command_runs_from_any_folder(built, tmp_path):
    wheel, _ = built
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    script = target / "bin" / "latentsync"
    if not script.is_file():  # Windows
        script = target / "Scripts" / "latentsync.exe"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(target)}
    done = run_cli(["--help"], cwd=elsewhere, env=env, executable=[str(script)])
    assert done.code == 0, done.stderr
    assert done.stdout.startswith("usage: latentsync ")
    done = run_cli(["doctor", "--no-hash", "--no-network", "--models-dir", str(tmp_path / "models")], cwd=elsewhere,
                   env=env, executable=[str(script)])
    assert f"at {target / 'latentsync'}" in done.stdout, done.stdout + done.stderr
    done = run_cli(["-c", "import latentsync.cli as c; print(c.ASSETS); print(c.DEMO_IMAGE.is_file())"], cwd=elsewhere,
                   env=env, executable=[sys.executable])
    assert done.stdout.split() == [str(target / "latentsync" / "assets"), "True"], done.stderr
