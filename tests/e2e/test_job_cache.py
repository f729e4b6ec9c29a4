"""The finished-job cache through the command line: a rerun of a finished job (same inputs' content, same
settings) returns the earlier output without loading a model; anything that changes the result runs again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from latentsync import cli

LOADING = "Loaded whisper encoder"  # logged when the models load


def tiny_args(models, *extra: str) -> list[str]:
    return ["--unet", str(models["unet"]), "--whisper", str(models["whisper"]), "--vae", str(models["vae"]),
            "--models-dir", str(models["root"]), "--device", "cpu", "--detector", "dlib", "--no-download",
            "--steps", "1", "--preset", "ultrafast", *extra]


@pytest.fixture
def pair(clip, tmp_path) -> tuple[Path, Path]:
    video, audio = clip
    inputs = tmp_path / "in"
    inputs.mkdir()
    return Path(shutil.copy(video, inputs / "face.mp4")), Path(shutil.copy(audio, inputs / "speech.wav"))


def run(capsys, models, *args: str) -> tuple[int, str, str]:
    code = cli.run(tiny_args(models, *args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_rerun_of_a_finished_job_returns_its_output_at_once(models, pair, tmp_path, capsys):
    video, audio = pair
    out = tmp_path / "synced.mp4"
    code, stdout, err = run(capsys, models, "--video", str(video), "--audio", str(audio), "--output", str(out))
    assert code == cli.EXIT_OK and LOADING in err
    assert str(out) in stdout
    stamp, data = out.stat().st_mtime_ns, out.read_bytes()

    # The same command again: no "exists, pass --overwrite" refusal, no model loaded, the file untouched.
    code, stdout, err = run(capsys, models, "--video", str(video), "--audio", str(audio), "--output", str(out))
    assert code == cli.EXIT_OK, err
    assert LOADING not in err and "cached result" in stdout and "already there" in stdout
    assert out.stat().st_mtime_ns == stamp

    # Another output name: the earlier result is copied there, still without loading anything.
    other = tmp_path / "copy.mp4"
    code, stdout, err = run(capsys, models, "--video", str(video), "--audio", str(audio), "--output", str(other))
    assert code == cli.EXIT_OK and LOADING not in err and "copied from" in stdout
    assert other.read_bytes() == data

    # A setting that changes the result runs again.
    code, _, err = run(capsys, models, "--video", str(video), "--audio", str(audio), "--output",
                       str(tmp_path / "two_steps.mp4"), "--steps", "2")
    assert code == cli.EXIT_OK and LOADING in err


def test_changed_content_or_output_is_not_taken_from_the_cache(models, pair, tmp_path, capsys):
    video, audio = pair
    out = tmp_path / "synced.mp4"
    assert run(capsys, models, "--video", str(video), "--audio", str(audio), "--output", str(out))[0] == cli.EXIT_OK
    # The earlier output was edited: it no longer stands for the job.
    with open(out, "ab") as f:
        f.write(b"\0")
    code, _, err = run(capsys, models, "--video", str(video), "--audio", str(audio), "--output",
                       str(tmp_path / "again.mp4"))
    assert code == cli.EXIT_OK and LOADING in err
    # Same file name, other content (the audio cut shorter): a new job.
    data = audio.read_bytes()
    audio.write_bytes(data[: 44 + (len(data) - 44) // 2])
    code, _, err = run(capsys, models, "--video", str(video), "--audio", str(audio), "--output",
                       str(tmp_path / "shorter.mp4"))
    assert code == cli.EXIT_OK and LOADING in err
    # --no-cache neither reads nor trusts the cache: an existing output is refused as before.
    code, _, err = run(capsys, models, "--video", str(video), "--audio", str(audio), "--output",
                       str(tmp_path / "shorter.mp4"), "--no-cache")
    assert code == cli.EXIT_USAGE and "--overwrite" in err


def test_batch_into_another_folder_takes_every_finished_job_from_the_cache(models, pair, tmp_path, capsys):
    video, audio = pair
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a", "b"):
        shutil.copy(video, folder / f"{name}.mp4")
        shutil.copy(audio, folder / f"{name}.wav")
    first = tmp_path / "first"
    assert run(capsys, models, "--batch", str(folder), "--output-dir", str(first))[0] == cli.EXIT_OK
    second = tmp_path / "second"
    code, stdout, err = run(capsys, models, "--batch", str(folder), "--output-dir", str(second))
    assert code == cli.EXIT_OK and LOADING not in err
    for name in ("a", "b"):
        assert (second / f"{name}_lipsync.mp4").read_bytes() == (first / f"{name}_lipsync.mp4").read_bytes()
    manifest = json.loads((second / "latentsync_manifest.json").read_text())
    assert [job["status"] for job in manifest["jobs"]] == ["cached", "cached"]
    assert "2 cached" in stdout
