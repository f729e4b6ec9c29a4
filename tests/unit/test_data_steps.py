"""The data pipeline's pure parts: PySceneDetect 0.6.1's adaptive detector rule (against the real detector's
output, recorded in tests/fixtures/scenedetect_adaptive.json), the CLI's scene list, the 25 fps re-timing of
upstream's ``-r 25`` and the segment plan."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from latentsync.data.resample import frames_at_fps
from latentsync.data.segments import plan_segments, segment_name
from latentsync.data.shots import adaptive_cuts, scene_list
from latentsync.metrics.score import frames_at_25fps

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "scenedetect_adaptive.json").read_text())


@pytest.mark.parametrize("case", FIXTURE["synthetic"], ids=lambda c: f"t{c['threshold']}-w{c['window']}")
def test_adaptive_cuts_equal_pyscenedetect(case):
    """Spikes, clustered spikes, frozen stretches (mean 0 around a frame), two parameter sets."""
    cuts = adaptive_cuts(case["scores"], case["threshold"], case["min_content_val"], case["window"],
                         case["min_scene_len"])
    assert cuts == case["cuts"]


@pytest.mark.parametrize("video", FIXTURE["videos"], ids=lambda v: v["video"])
def test_scene_lists_equal_the_scenedetect_cli(video):
    """Real videos' frame scores -> the scene list scenedetect's split-video would cut (threshold 2, 15 frames)."""
    scenes = scene_list(len(video["content_val"]), adaptive_cuts(video["content_val"]))
    assert [list(s) for s in scenes] == video["scenes"]


def test_scene_list_without_cuts_is_the_whole_video_but_the_last_frame():
    assert scene_list(250, []) == [(0, 249)]
    assert scene_list(150, [75]) == [(0, 75), (75, 149)]


def _batches(stamps: np.ndarray, batch: int = 7):
    frames = np.arange(len(stamps), dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    for i in range(0, len(stamps), batch):
        yield frames[i:i + batch], stamps[i:i + batch]


def _shown(stamps: np.ndarray, fps: Fraction) -> list[int]:
    return [int(f[0, 0, 0]) for chunk in frames_at_fps(_batches(stamps), fps) for f in chunk]


@pytest.mark.parametrize("fps", [Fraction(30), Fraction(24), Fraction(30000, 1001), Fraction(50), Fraction(15),
                                 Fraction(60), Fraction(25)])
def test_25_fps_retiming_is_the_scorers_ffmpeg_rule(fps):
    """On real-looking timestamps (float seconds) the frames shown are those of ``frames_at_25fps`` (ffmpeg -r 25)."""
    count = 97
    stamps = np.array([float(i / fps) for i in range(count)]) + 3.0  # a start offset is ignored
    assert _shown(stamps, fps) == frames_at_25fps(count, fps).tolist()


def test_25_fps_retiming_of_variable_frame_rate():
    stamps = np.array([0.0, 0.04, 0.12, 0.125, 0.2, 0.4])  # a gap, a burst, a long last frame
    assert _shown(stamps, Fraction(25)) == [0, 1, 1, 3, 3, 4, 4, 4, 4, 4, 5]


def test_segment_plan_and_names():
    plan = plan_segments([(0, 249), (249, 300)], 125)
    assert plan == [(1, 0, 0, 125), (1, 1, 125, 249), (2, 0, 249, 300)]
    assert segment_name(Path("a/b.mov"), 2, 0) == Path("a/b_shot_002_000.mp4")


def test_cli_checks_paths(tmp_path):
    """OUT inside SRC is refused (SRC is searched), SRC inside OUT is fine unless it is an output folder."""
    from latentsync.data.cli import check, parser

    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)

    def problem(src: Path, out: Path, *extra: str):
        return check(parser().parse_args(["prepare", str(src), str(out), *extra]))

    assert problem(raw, tmp_path / "data") is None  # upstream's layout: outputs beside the raw folder
    assert "inside SRC" in problem(raw, raw / "out")
    (tmp_path / "data" / "segmented").mkdir()
    assert "output folders" in problem(tmp_path / "data" / "segmented", tmp_path / "data")
    assert "does not exist" in problem(tmp_path / "nope", tmp_path / "o")
    assert "--workers 0" in problem(raw, tmp_path / "o", "--workers", "0")
    assert "finite" in problem(raw, tmp_path / "o", "--min-sync", "nan")


def test_step_records_resume_and_errors(tmp_path):
    """A saved record is not recomputed; a bad file's error becomes a drop; a full disk stops the run unrecorded."""
    import errno

    from latentsync.data.records import kept, run_step

    calls = []

    def ok():
        calls.append(1)
        return kept("resample", "a.mp4", fps=25.0)

    assert run_step(tmp_path, "resample", Path("a.mp4"), ok)[1] is True
    record, ran = run_step(tmp_path, "resample", Path("a.mp4"), ok)
    assert ran is False and record.scores == {"fps": 25.0} and calls == [1]

    def broken():
        raise ValueError("moov atom not found")

    record, _ = run_step(tmp_path, "resample", Path("b.mp4"), broken)
    assert record.status == "dropped" and "moov atom" in record.reason

    def disk_full():
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        run_step(tmp_path, "resample", Path("c.mp4"), disk_full)
    assert not (tmp_path / "records" / "resample" / "c.mp4.json").exists()
