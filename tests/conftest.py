"""Shared test fixtures: where the upstream parity fixtures and the demo media live."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cpu_torchvision import stub_registrations_if_needed

stub_registrations_if_needed()

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = (REPO_ROOT / ".." / "shared").resolve()


def parity_dir() -> Path:
    """The parity fixture folder: $LATENTSYNC_PARITY_FIXTURES, else ../shared/fixtures/upstream beside the repo."""
    return Path(os.environ.get("LATENTSYNC_PARITY_FIXTURES", SHARED / "fixtures" / "upstream")).resolve()


def media_dir() -> Path:
    """Real talking-head videos and audio: $LATENTSYNC_MEDIA, else ../shared/media beside the repo."""
    return Path(os.environ.get("LATENTSYNC_MEDIA", SHARED / "media")).resolve()


@pytest.fixture(autouse=True)
def private_job_cache(tmp_path_factory, monkeypatch) -> Path:
    """Each test gets its own job cache folder (the command line records finished jobs; see latentsync.job_cache),
    so no test reads another's results or writes into the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("job_cache")
    monkeypatch.setenv("LATENTSYNC_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(autouse=True)
def private_compile_cache(tmp_path_factory, monkeypatch) -> Path:
    """Compiled U-Net kernels are kept across processes by default (latentsync.pipeline.compile_cache); tests keep
    theirs in a temporary folder, never in the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("compile_cache")
    monkeypatch.setenv("LATENTSYNC_COMPILE_CACHE", str(folder))
    return folder


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    path = parity_dir()
    if not (path / "manifest.json").is_file():
        pytest.fail(
            f"Parity fixtures not found at {path} (no manifest.json). Set LATENTSYNC_PARITY_FIXTURES to the "
            "folder that holds upstream's golden files."
        )
    return path


@pytest.fixture(scope="session")
def manifest(fixtures_dir: Path) -> dict:
    return json.loads((fixtures_dir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def check(manifest: dict) -> dict:
    """Numeric acceptance bounds, manifest["check"]."""
    return manifest["check"]


@pytest.fixture(scope="session")
def media() -> Path:
    path = media_dir()
    if not (path / "demo1_video.mp4").is_file():
        pytest.fail(f"Demo media not found at {path}. Set LATENTSYNC_MEDIA to the folder with demo1_video.mp4.")
    return path
