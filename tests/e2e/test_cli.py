"""`python -m latentsync` end to end on a real face clip with tiny random models in the real file formats:
output frame count / fps / audio alignment, length policies, exit codes, batch resume and a failing batch item."""

from __future__ import annotations

import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from latentsync import cli
from latentsync.audio.waveform import load_audio
from latentsync.io.video import probe_video

REPO = Path(__file__).resolve().parents[2]
CLIP_FRAMES = 12


def args_for(models, *extra: str, vae=None) -> list[str]:
    return ["--unet", str(models["unet"]), "--whisper", str(models["whisper"]), "--vae", str(vae or models["vae"]),
            "--models-dir", str(models["root"]), "--steps", "2", "--device", "cpu", "--detector", "dlib",
            "--no-download", "--quiet", *extra]


def audio_seconds(path: Path) -> float:
    wave, sr = load_audio(str(path))
    return wave.shape[-1] / sr


@pytest.mark.parametrize("policy,frames", [("pingpong", 20), ("trim", CLIP_FRAMES)])
def test_cli_writes_synced_video(models, clip, tmp_path, policy, frames):
    video, audio = clip
    out = tmp_path / f"out_{policy}.mp4"
    # The first case loads the full-size sd-vae-ft-mse-format file, as a real install does.
    vae = models["full_vae"]() if policy == "pingpong" else None
    code = cli.run(args_for(models, "--video", str(video), "--audio", str(audio), "--output", str(out),
                            "--length-policy", policy, vae=vae))
    assert code == cli.EXIT_OK
    info = probe_video(str(out))
    assert info.num_frames == frames
    assert info.fps == Fraction(25)
    assert info.width == info.height == 256
    # The muxed audio lasts exactly as long as the frames (padded / trimmed to the video), within one AAC frame.
    assert abs(audio_seconds(out) - frames / 25) < 1024 / 16000 + 1e-3
    assert info.has_audio


def test_cli_refuses_to_overwrite_and_rejects_a_missing_input(models, clip, tmp_path):
    video, audio = clip
    out = tmp_path / "exists.mp4"
    out.write_bytes(b"user data")
    assert cli.run(args_for(models, "--video", str(video), "--audio", str(audio), "--output", str(out))) == cli.EXIT_USAGE
    assert out.read_bytes() == b"user data"
    missing = tmp_path / "nope.mp4"
    assert cli.run(args_for(models, "--video", str(missing), "--audio", str(audio),
                            "--output", str(tmp_path / "o.mp4"))) == cli.EXIT_USAGE
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1024)  # exists, but no decoder can read it: found only while running
    assert cli.run(args_for(models, "--video", str(broken), "--audio", str(audio),
                            "--output", str(tmp_path / "o.mp4"))) == cli.EXIT_INPUT


def test_batch_folder_rerun_is_quiet_about_its_outputs_and_loads_nothing(models, clip, tmp_path, capsys):
    video, audio = clip
    folder = tmp_path / "batch"
    folder.mkdir()
    shutil.copy(video, folder / "take1.mp4")
    shutil.copy(audio, folder / "take1.wav")
    assert cli.run(args_for(models, "--batch", str(folder))) == cli.EXIT_OK
    out = folder / "take1_lipsync.mp4"
    stamp = out.stat().st_mtime_ns
    capsys.readouterr()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")  # loading it would fail (exit 3): the rerun must not load at all
    code = cli.run([a for a in args_for(models, "--batch", str(folder)) if a != "--quiet"] + ["--unet", str(garbage)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_OK, err
    assert "no audio file with the same name" not in err
    assert "nothing to do" in err
    assert out.stat().st_mtime_ns == stamp


def test_batch_carries_on_past_a_failure_and_resumes(models, clip, tmp_path):
    video, audio = clip
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1024)
    outs = [tmp_path / f"job{i}.mp4" for i in range(3)]
    listing = tmp_path / "jobs.txt"
    listing.write_text("\n".join(f"{v}\t{audio}\t{o}" for v, o in zip([video, broken, video], outs)) + "\n")
    assert cli.run(args_for(models, "--batch", str(listing))) == cli.EXIT_BATCH
    assert outs[0].is_file() and outs[2].is_file() and not outs[1].exists()
    stamps = [o.stat().st_mtime_ns for o in (outs[0], outs[2])]
    # A second run skips the finished jobs (same files untouched) and still reports the broken one.
    assert cli.run(args_for(models, "--batch", str(listing))) == cli.EXIT_BATCH
    assert [o.stat().st_mtime_ns for o in (outs[0], outs[2])] == stamps


def test_missing_models_offline_exit_code(tmp_path):
    """The demo with an empty models folder and downloads off: exit 3 and one message listing the files."""
    proc = subprocess.run(
        [sys.executable, "-m", "latentsync", "--models-dir", str(tmp_path), "--no-download", "--device", "cpu",
         "--output", str(tmp_path / "demo.mp4")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == cli.EXIT_MODELS, proc.stderr
    assert "latentsync_unet.pt" in proc.stderr and "tiny.pt" in proc.stderr
    assert str(tmp_path) in proc.stderr
    assert not (tmp_path / "demo.mp4").exists()


def test_usage_errors_exit_2(capsys):
    assert cli.run(["--video", "x.mp4"]) == cli.EXIT_USAGE
    assert cli.run(["--steps", "many"]) == cli.EXIT_USAGE
    assert "--steps" in capsys.readouterr().err
