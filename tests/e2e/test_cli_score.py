"""``latentsync score``: the table and the JSON record on a real clip with tiny random models, not-scorable clips,
missing model files (the CLI's message and exit code), bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sync_media  # noqa: E402
from cli_process import run_cli  # noqa: E402

from latentsync.exit_codes import EXIT_INPUT, EXIT_MODELS, EXIT_OK, EXIT_USAGE  # noqa: E402

FRAMES = 40


@pytest.fixture(scope="module")
def scored(tmp_path_factory, media):
    """A 40-frame clip of demo1's face (480 px mp4), its speech as a wav, and a models root with tiny files."""
    folder = tmp_path_factory.mktemp("score")
    video = sync_media.write_video(folder / "face.mp4", sync_media.face_frames(media, FRAMES))
    audio = sync_media.write_audio(folder / "speech.wav", sync_media.speech(media, FRAMES))
    models = sync_media.metric_models(folder / "models")
    return folder, video, audio, models


def test_json_record(scored):
    folder, video, audio, models = scored
    done = run_cli(["score", str(video), "--audio", str(audio), "--json", "--models-dir", str(models),
                    "--no-download", "--device", "cpu", "--min-track", "20"], folder)
    assert done.code == EXIT_OK, done.stderr
    record = json.loads(done.stdout)
    assert record["scorable"] and record["reason"] is None
    assert isinstance(record["confidence"], float) and isinstance(record["distance"], float)
    assert -15 <= record["offset"] <= 15 and record["frames_25fps"] == FRAMES
    assert record["tracks"] and all(t["last_frame"] - t["first_frame"] > 20 for t in record["tracks"])
    assert [s["second"] for s in record["per_second"]] == [0, 1] and record["audio_shift_frames"] == 0
    curve = folder / "curve.png"
    table = run_cli(["score", str(video), "-a", str(audio), "--models-dir", str(models), "--no-download",
                     "--device", "cpu", "--min-track", "20", "--curve", str(curve)], folder)
    assert table.code == EXIT_OK, table.stderr
    lines = dict(line.split(None, 1) for line in table.stdout.splitlines() if not line.startswith(("face", "per")))
    assert lines["confidence"].startswith(f"{record['confidence']:.3f}  (LSE-C")
    for word in ("distance", "offset", "face track 0", "per second"):
        assert word in table.stdout
    assert curve.stat().st_size > 1000


def test_shifted_audio_is_scored_differently(scored):
    folder, video, audio, models = scored
    common = [str(video), "--audio", str(audio), "--json", "--models-dir", str(models), "--no-download",
              "--device", "cpu", "--min-track", "20"]
    plain = json.loads(run_cli(["score"] + common, folder).stdout)
    shifted = run_cli(["score"] + common + ["--shift-audio", "3"], folder)
    assert shifted.code == EXIT_OK, shifted.stderr
    record = json.loads(shifted.stdout)
    assert record["audio_shift_frames"] == 3 and record["scorable"]
    assert record["distance"] != plain["distance"]  # the audio really moved (random weights: no claim on offsets)


def test_not_scorable_is_a_result(scored):
    folder, video, audio, models = scored
    done = run_cli(["score", str(video), "--audio", str(audio), "--json", "--models-dir", str(models),
                    "--no-download", "--device", "cpu"], folder)  # min_track 50 > 40 frames: no track
    assert done.code == EXIT_OK, done.stderr
    record = json.loads(done.stdout)
    assert record["scorable"] is False and record["confidence"] is None
    assert record["report"].startswith("not scorable: no face track")


def test_missing_model_files(scored, tmp_path):
    folder, video, audio, _ = scored
    done = run_cli(["score", str(video), "--audio", str(audio), "--models-dir", str(tmp_path), "--no-download"],
                   folder)
    assert done.code == EXIT_MODELS
    for name in ("syncnet_v2.model", "sfd_face.pth", "ByteDance/LatentSync-1.5", "downloads"):
        assert name in done.stderr


def test_bad_input(scored, tmp_path):
    folder, video, audio, models = scored
    common = ["--models-dir", str(models), "--no-download", "--device", "cpu"]
    assert run_cli(["score", str(tmp_path / "nope.mp4")] + common, folder).code == EXIT_USAGE
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    done = run_cli(["score", str(broken), "--audio", str(audio)] + common, folder)
    assert done.code == EXIT_INPUT and "broken.mp4" in done.stderr
    silent_video = run_cli(["score", str(video)] + common, folder)  # no --audio and the mp4 has no sound
    assert silent_video.code == EXIT_INPUT and "no audio track" in silent_video.stderr
    assert run_cli(["score", str(video)] + common + ["--device", "tpu"], folder).code == EXIT_USAGE
