"""``latentsync --fix-offset``: the audio is measured and shifted before the run (FileOffsetFixer, the command's
worker, on a real 480 px clip with tiny random SyncNet/S3FD), a clip too short to score runs with its audio as
given, and missing SyncNet files give the CLI's missing-files message and exit code."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sync_media  # noqa: E402
from test_cli import args_for  # noqa: E402

from latentsync import cli  # noqa: E402
from latentsync.audio.waveform import load_audio  # noqa: E402
from latentsync.metrics.offset import FileOffsetFixer, shift_audio  # noqa: E402
from latentsync.metrics.score import SyncOptions  # noqa: E402


def test_fixer_writes_the_shifted_audio(media, tmp_path):
    frames = sync_media.face_frames(media, 40)
    video = sync_media.write_video(tmp_path / "face.mp4", frames)
    audio = sync_media.write_audio(tmp_path / "speech.wav", sync_media.speech(media, 60))  # longer than the video
    root = sync_media.metric_models(tmp_path / "models")
    fixer = FileOffsetFixer(str(root), "cpu", allow_download=False, options=SyncOptions(min_track=20))
    record = fixer.fix(video, audio, tmp_path / "fixed.wav")
    assert record.score.scorable and record.frames == record.score.offset
    original, rate = load_audio(audio)
    fixed, fixed_rate = load_audio(tmp_path / "fixed.wav")
    assert fixed_rate == rate and fixed.shape == original.shape  # the whole audio, same length
    assert torch.equal(fixed, shift_audio(original, record.samples) if record.applied else original)
    assert record.samples == record.frames * 640 or not record.applied


def test_cli_fix_offset(models, clip, tmp_path, capsys):
    video, audio = clip
    out = tmp_path / "out.mp4"
    base = [a for a in args_for(models, "--video", str(video), "--audio", str(audio), "--output", str(out))
            if a != "--quiet"]
    code = cli.run(base + ["--fix-offset"])  # no SyncNet files in the models folder, downloads off
    err = capsys.readouterr().err
    assert code == cli.EXIT_MODELS and not out.exists()
    assert "--fix-offset" in err and "syncnet_v2.model" in err and "sfd_face.pth" in err
    metric_root = sync_media.metric_models(tmp_path / "metric_models")  # U-Net, Whisper and VAE are explicit
    base[base.index("--models-dir") + 1] = str(metric_root)
    code = cli.run(base + ["--fix-offset"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_OK, err
    assert "--fix-offset: audio unchanged: not scorable: the clip is too short" in err and out.exists()
