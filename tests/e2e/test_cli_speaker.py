"""``latentsync --face-index speaker`` on a two-face video (demo1's face beside its time-reversed copy) with tiny
random models: the per-shot choice is reported and the run finishes; missing SyncNet files give the CLI's
missing-files message naming them, and exit 3."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sync_media  # noqa: E402
from test_cli import args_for  # noqa: E402

from latentsync import cli  # noqa: E402
from latentsync.io.video import probe_video  # noqa: E402

FRAMES = 40
S3FD_BIAS = 4.0  # these random S3FD weights give face-sized tracks on this 240 x 480 clip


def test_cli_speaker(models, media, tmp_path, capsys):
    face = sync_media.face_frames(media, FRAMES, size=240)
    video = sync_media.write_video(tmp_path / "two.mp4", np.ascontiguousarray(np.concatenate([face, face[::-1]], 2)))
    audio = sync_media.write_audio(tmp_path / "speech.wav", sync_media.speech(media, FRAMES))
    out = tmp_path / "out.mp4"
    base = [a for a in args_for(models, "--video", str(video), "--audio", str(audio), "--output", str(out),
                                "--face-index", "speaker", "--length-policy", "trim") if a != "--quiet"]
    code = cli.run(base)  # no SyncNet files in the models folder, downloads off
    err = capsys.readouterr().err
    assert code == cli.EXIT_MODELS and not out.exists()
    assert "--face-index speaker" in err and "syncnet_v2.model" in err and "sfd_face.pth" in err
    base[base.index("--models-dir") + 1] = str(sync_media.metric_models(tmp_path / "metric_models",
                                                                         s3fd_bias=S3FD_BIAS))
    code = cli.run(base)
    err = capsys.readouterr().err
    assert code == cli.EXIT_OK, err
    line = next(x for x in err.splitlines() if "two.mp4: speaker frames 0-39: " in x)
    assert " speaks (confidence " in line, line  # a candidate was chosen by SyncNet
    assert probe_video(str(out)).num_frames == FRAMES
