"""Stopping a run: SIGTERM cleans up like Ctrl-C (no hidden .partial.mp4 left), and a partial left by a run that
died is removed by the next run of the same output, while the partial of a live run is left alone."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from latentsync import cli
from media_variants import write_wav

CHILD = Path(__file__).resolve().with_name("cli_main_child.py")


def tiny_args(models, *extra: str) -> list[str]:
    return ["--unet", str(models["unet"]), "--whisper", str(models["whisper"]), "--vae", str(models["vae"]),
            "--models-dir", str(models["root"]), "--device", "cpu", "--detector", "dlib", "--no-download", "--quiet",
            "--no-cache", *extra]


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


@pytest.fixture
def long_speech(tmp_path, media) -> Path:
    """2.5 s of demo speech: 64 frames at 25 fps, four 16-frame windows."""
    import av

    with av.open(str(media / "demo1_audio.wav")) as src:
        stream = src.streams.audio[0]
        rate = stream.rate
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in src.decode(stream)])
    path = tmp_path / "long_speech.wav"
    write_wav(path, pcm[: int(2.5 * rate)], rate)
    return path


def test_sigterm_removes_the_partial_video(models, clip, long_speech, tmp_path):
    video, _ = clip
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "synced.mp4"
    proc = subprocess.Popen([sys.executable, str(CHILD), *tiny_args(models, "--video", str(video), "--audio",
                             str(long_speech), "--output", str(out), "--steps", "40")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.monotonic() + 240
        while not partials(out_dir) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert partials(out_dir), f"no partial file appeared (exit {proc.poll()})"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err and "Traceback" not in err
    assert partials(out_dir) == [] and not out.exists()


def test_a_dead_runs_partial_is_removed_and_a_live_ones_kept(models, clip, tmp_path):
    video, audio = clip
    out = tmp_path / "synced.mp4"
    dead = tmp_path / ".synced.0123abcd.partial.mp4"
    dead.write_bytes(b"left by a run that was killed")
    live = tmp_path / ".synced.89abcdef.partial.mp4"
    live.write_bytes(b"being written by another run")
    other = tmp_path / ".other.0123abcd.partial.mp4"  # another output's: not this run's business
    other.write_bytes(b"x")
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a live writer holds
        code = cli.run(tiny_args(models, "--video", str(video), "--audio", str(audio), "--output", str(out),
                                 "--steps", "1"))
    finally:
        os.close(fd)
    assert code == cli.EXIT_OK
    assert out.is_file()
    assert not dead.exists()
    assert live.read_bytes() == b"being written by another run"
    assert other.exists()
