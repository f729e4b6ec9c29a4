"""``latentsync data prepare SRC OUT`` on real media (the shared demos' faces, real decoders and encoders, CPU):
every step's output checked (fps, sample rate, scene cut, segment count and length, aligned crops), the manifest
complete, SRC untouched, a rerun does nothing, a killed run resumes and ends equal to an uninterrupted one.

The SyncNet filter runs with the real-format SyncNet v2 / S3FD files filled with random weights (``sync_media``):
this proves the step runs end to end on real clips and applies its rule (kept exactly when confidence >= --min-sync
and |offset| <= --max-offset, with the offset correction recorded), not that the scores mean anything. With random
weights every confidence is far below upstream's 3, so the run uses --min-sync 0 to let clips through to the
quality step; the default's drops are checked on the same records. The quality filter runs HyperIQA (the model
proven equal to upstream's in tests/unit/test_hyper_iqa.py) with random weights in the real file format, so again
the step, its rule and its records are what is tested (--min-quality 0 keeps the random scores, about 0.4).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import data_media  # noqa: E402
import sync_media  # noqa: E402
from cli_process import REPO, run_cli  # noqa: E402

from latentsync.exit_codes import EXIT_OK, EXIT_USAGE  # noqa: E402
from latentsync.io.decode import read_video  # noqa: E402
from latentsync.io.probe import probe_video  # noqa: E402

WORKERS = "2"


def _args(src: Path, out: Path, models: Path) -> list[str]:
    return ["data", "prepare", str(src), str(out), "--workers", WORKERS, "--device", "cpu", "--detector", "offline",
            "--models-dir", str(models), "--no-download", "--min-track", "20", "--min-sync", "0", "--min-quality", "0",
            "--quiet"]


def _tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every non-hidden file under ``root``: (mtime_ns, sha256)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            out[path.relative_to(root).as_posix()] = (path.stat().st_mtime_ns,
                                                      hashlib.sha256(path.read_bytes()).hexdigest())
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, media):
    """SRC made from the demos, tiny metric models, and one uninterrupted run of the command."""
    root = tmp_path_factory.mktemp("data")
    src, out, models = root / "src", root / "out", root / "models"
    data_media.make_source(media, src)
    sync_media.metric_models(models)
    data_media.write_tiny_hyperiqa(models)
    before = _tree(src)
    done = run_cli(_args(src, out, models), root, timeout=600)
    assert done.code == EXIT_OK, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    return root, src, out, models, before, manifest, done


def _inputs(manifest: dict) -> dict[str, dict]:
    return {entry["input"]: entry for entry in manifest["inputs"]}


def _segments(manifest: dict) -> dict[str, dict]:
    return {entry["segment"]: entry for entry in manifest["segments"]}


def test_unreadable_and_silent_inputs_are_dropped_with_reasons(prepared):
    _, src, _, _, before, manifest, _ = prepared
    inputs = _inputs(manifest)
    assert sorted(inputs) == ["broken.mp4", "silent.mp4", "sub/cut30.mp4", "talk.mp4"]  # notes.txt is no video
    assert inputs["broken.mp4"]["status"] == "dropped" and inputs["broken.mp4"]["step"] == "readable"
    assert "unreadable video" in inputs["broken.mp4"]["reason"]
    assert inputs["silent.mp4"]["status"] == "dropped" and "no audio" in inputs["silent.mp4"]["reason"]
    assert inputs["talk.mp4"]["status"] == inputs["sub/cut30.mp4"]["status"] == "kept"
    assert _tree(src) == before  # SRC is only read, the broken file included


def test_resampled_to_25_fps_and_16_khz(prepared):
    _, _, out, _, _, manifest, _ = prepared
    talk, cut = probe_video(out / "resampled/talk.mp4"), probe_video(out / "resampled/sub/cut30.mp4")
    assert talk.fps == 25 and cut.fps == 25 and talk.audio_sample_rate == cut.audio_sample_rate == 16000
    assert talk.num_frames == 150  # 25 fps: the video stream copied
    assert cut.num_frames == 50  # 60 frames at 30 fps = 2 s
    scores = _inputs(manifest)["talk.mp4"]["scores"]
    assert scores["readable"]["sample_rate"] == 44100 and scores["resample"]["video_copied"] is True
    assert _inputs(manifest)["sub/cut30.mp4"]["scores"]["resample"]["video_copied"] is False


def test_scene_cut_and_segments(prepared):
    _, _, out, _, _, manifest, _ = prepared
    inputs = _inputs(manifest)
    # the demo1 -> demo2 cut at 30 fps frame 30 (1.2 s) is 25 fps frame 25; talk has none
    assert inputs["sub/cut30.mp4"]["scores"]["shots"]["cuts"] == [25]
    assert inputs["talk.mp4"]["scores"]["shots"]["cuts"] == []
    # talk: one shot of frames 0..148 (the CLI's last scene ends at the last frame's position) -> 125 + 24
    assert inputs["talk.mp4"]["segments"] == ["talk_shot_001_000.mp4", "talk_shot_001_001.mp4"]
    assert inputs["sub/cut30.mp4"]["segments"] == ["sub/cut30_shot_001_000.mp4", "sub/cut30_shot_002_000.mp4"]
    expected = {"talk_shot_001_000.mp4": 125, "talk_shot_001_001.mp4": 24, "sub/cut30_shot_001_000.mp4": 25,
                "sub/cut30_shot_002_000.mp4": 24}
    for name, frames in expected.items():
        info = probe_video(out / "segmented" / name)
        assert (info.num_frames, info.fps, info.audio_sample_rate) == (frames, 25, 16000), name
        assert _segments(manifest)[name]["frames"] == frames
    assert probe_video(out / "segmented/talk_shot_001_000.mp4").duration == pytest.approx(5.0, abs=0.01)


def test_aligned_faces_are_the_pipelines_crops(prepared):
    """The crops are 256 px faces at 25 fps with the segment's audio, and equal (within the encoders' loss) to the
    library's own detection + alignment + warp of the segment's frames."""
    from latentsync.face.align import matrices_from_points, warp_faces
    from latentsync.face.detectors import create_detector

    _, _, out, _, _, manifest, _ = prepared
    for name, entry in _segments(manifest).items():
        assert entry["scores"]["faces"]["frames"] == entry["frames"], name
        info = probe_video(out / "affine_transformed" / name)
        assert (info.width, info.height, info.fps, info.num_frames) == (256, 256, 25, entry["frames"])
        assert info.audio_sample_rate == 16000
    frames = read_video(out / "segmented/talk_shot_001_000.mp4", count=6).frames
    detections = create_detector("offline").detect(frames)
    points = torch.stack([torch.from_numpy(faces[0].points3) for faces in detections])
    expected = warp_faces(frames, matrices_from_points(points, 256), 256).permute(0, 2, 3, 1).float()
    written = read_video(out / "affine_transformed/talk_shot_001_000.mp4", count=6).frames.float()
    assert (written - expected).abs().mean() < 3.0


def test_sync_filter_rule_and_offset_record(prepared):
    _, _, out, _, _, manifest, _ = prepared
    for name, entry in _segments(manifest).items():
        sync = entry["scores"]["sync"]
        if sync["sync_confidence"] is None:  # not scorable (too short for a track): dropped with the reason
            assert entry["status"] == "dropped" and entry["step"] == "sync" and "not scorable" in entry["reason"]
            continue
        inside = abs(sync["sync_offset"]) <= 6
        assert (entry["step"] != "sync") == inside, name  # confidence >= 0 always: only the offset can drop
        if inside:
            record = json.loads((out / "records/sync" / f"{name}.json").read_text())
            assert record["scores"]["audio_shift_frames"] == sync["sync_offset"]
            assert (out / "av_synced" / name).is_file()
        # upstream's default (3) drops every clip of random weights, and says why in the same terms
        assert sync["sync_confidence"] < 3
    assert any(e["status"] == "kept" for e in manifest["segments"])


def test_quality_filter_scores_every_synced_clip(prepared):
    _, _, out, _, _, manifest, _ = prepared
    scored = [e for e in manifest["segments"] if "quality" in e["scores"]]
    assert scored and len(scored) == sum(1 for e in manifest["segments"] if e["step"] == "quality")
    for entry in scored:
        quality = entry["scores"]["quality"]["quality"]
        assert isinstance(quality, float) and entry["status"] == "kept"  # --min-quality 0
        assert (out / "high_visual_quality" / entry["segment"]).read_bytes() == \
            (out / "av_synced" / entry["segment"]).read_bytes()
        assert quality < 40  # upstream's default would drop these random-weight scores


def test_manifest_is_complete(prepared):
    _, src, out, _, _, manifest, _ = prepared
    assert {e["input"] for e in manifest["inputs"]} == {p.relative_to(src).as_posix() for p in src.rglob("*.mp4")}
    on_disk = {p.relative_to(out / "segmented").as_posix() for p in (out / "segmented").rglob("*.mp4")}
    assert set(_segments(manifest)) == on_disk
    for entry in manifest["inputs"] + manifest["segments"]:
        assert entry["status"] in ("kept", "dropped") and entry["step"]
        assert (entry["status"] == "dropped") == bool(entry["reason"])
    for entry in manifest["segments"]:
        if entry["status"] == "kept":
            assert entry["step"] == "quality" and (out / entry["output"]).is_file()
            assert entry["output"].startswith("high_visual_quality/")
    counts = manifest["counts"]
    assert counts["inputs"] == 4 and counts["segments"] == 4 and counts["inputs_pending"] == 0
    assert counts["segments_kept"] + counts["segments_dropped"] == 4
    assert manifest["options"]["min_sync"] == 0 and manifest["options"]["max_offset"] == 6
    assert manifest["options"]["min_quality"] == 0 and manifest["options"]["scene_threshold"] == 2


def test_rerun_does_nothing(prepared):
    root, _, out, models, _, _, _ = prepared
    before = _tree(out)
    done = run_cli(_args(root / "src", out, models)[:-1], root)  # not --quiet: the summary line is logged
    assert done.code == EXIT_OK, done.stderr
    assert "; 0 steps run;" in done.stderr
    assert _tree(out) == before  # nothing rewritten, the manifest included


def test_killed_run_resumes_and_ends_equal(prepared):
    root, src, out, models, _, manifest, _ = prepared
    out2 = root / "killed"
    env = {k: v for k, v in os.environ.items()}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen([sys.executable, "-m", "latentsync", *_args(src, out2, models)], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list((out2 / "records" / "faces").rglob("*.json")):  # killed once the first face crop is done
            assert proc.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out2 / "manifest.json").exists()
    done = run_cli(_args(src, out2, models), root, timeout=600)
    assert done.code == EXIT_OK, done.stderr
    resumed = json.loads((out2 / "manifest.json").read_text())
    keys = ("status", "step", "segments", "frames", "output", "first_frame", "shot")

    def outline(entries: list[dict]) -> list[dict]:
        return [{k: e.get(k) for k in keys} for e in entries]

    assert outline(resumed["inputs"]) == outline(manifest["inputs"])
    assert outline(resumed["segments"]) == outline(manifest["segments"])
    assert resumed["counts"] == manifest["counts"]
    first, second = _tree(out), _tree(out2)
    assert sorted(second) == sorted(first)  # no partial file left under a final name, nothing missing
    # Same pictures, within a bound: outputs are not always byte-reproducible between two runs (seen: a segment
    # re-encoded differently once in a few runs, and once in CI a resumed face crop 2.5 levels off on average, a
    # sub-pixel shift of the alignment; the cause is open), so decoded frames are compared.
    for name in (k for k in first if k.endswith(".mp4")):
        if first[name][1] == second[name][1]:
            continue
        a, b = read_video(out / name).frames.float(), read_video(out2 / name).frames.float()
        assert a.shape == b.shape and (a - b).abs().mean() < 4.0, name


def test_bad_arguments_name_the_input_and_the_fix(prepared, tmp_path):
    root, src, _, models, _, _, _ = prepared
    missing = run_cli(["data", "prepare", str(tmp_path / "nope"), str(tmp_path / "o")], root)
    assert missing.code == EXIT_USAGE and "does not exist" in missing.stderr and "nope" in missing.stderr
    inside = run_cli(["data", "prepare", str(src), str(src / "out"), "--models-dir", str(models), "--no-download"],
                     root)
    assert inside.code == EXIT_USAGE and "inside SRC" in inside.stderr
    workers = run_cli(["data", "prepare", str(src), str(tmp_path / "o"), "--workers", "0"], root)
    assert workers.code == EXIT_USAGE and "--workers 0" in workers.stderr
