"""The sync gate on real media with tiny random SyncNet weights (behaviour, not quality): the seed rule, accepting
the first attempt that reaches min_sync, passing the original frames through after max_retries, not-scorable
segments passed through (before generating when too short or silent), and the JSON-lines cut log."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sync_media  # noqa: E402

from latentsync.metrics import tiny  # noqa: E402
from latentsync.metrics.gate import SEED_STRIDE, CutLog, attempt_seed, gate_segment, read_log  # noqa: E402
from latentsync.metrics.s3fd import load_s3fd  # noqa: E402
from latentsync.metrics.score import SyncModels, score_clip  # noqa: E402
from latentsync.metrics.syncnet_v2 import load_syncnet_v2  # noqa: E402

FRAMES = 40


@pytest.fixture(scope="module")
def segment(media):
    """demo1's face crops (128 px) with their speech, and a time-reversed copy (the lips do not match)."""
    frames = torch.from_numpy(sync_media.face_frames(media, FRAMES, size=128))
    return frames, frames.flip(0).contiguous(), sync_media.speech(media, FRAMES)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return SyncModels(load_syncnet_v2(tiny.write_syncnet_v2(tmp_path_factory.mktemp("sn") / "s.model", seed=3)))


@pytest.fixture(scope="module")
def good_bad(segment, models):
    """Which of the two versions the random SyncNet scores higher ("good"), and a threshold between them."""
    real, reversed_, wav = segment
    a = score_clip(real, wav, 25, models, detect=False).confidence
    b = score_clip(reversed_, wav, 25, models, detect=False).confidence
    assert a != b
    good, bad = (real, reversed_) if a > b else (reversed_, real)
    return good, bad, (a + b) / 2, max(a, b)


def test_seed_rule():
    assert attempt_seed(7, 0) == 7 and attempt_seed(7, 2) == 7 + 2 * SEED_STRIDE
    assert attempt_seed(2 ** 64 - 1, 1) == SEED_STRIDE - 1  # wraps like a 64-bit seed


def test_first_attempt_accepted(segment, models):
    real, _, wav = segment
    original = torch.zeros_like(real)
    seeds = []

    def generate(seed):
        seeds.append(seed)
        return real

    frames, d = gate_segment(generate, original, wav, 25, models, min_sync=-100.0, max_retries=3, base_seed=11,
                             detect=False)
    assert frames is real and d.decision == "accepted" and seeds == [11] and d.seed == 11
    assert d.report().startswith("accepted attempt 1 of up to 4 (seed 11")


def test_retries_until_a_seed_passes(good_bad, segment, models):
    good, bad, threshold, best = good_bad
    _, _, wav = segment
    lucky = attempt_seed(5, 2)

    def generate(seed):
        return good if seed == lucky else bad

    frames, d = gate_segment(generate, bad, wav, 25, models, min_sync=threshold, max_retries=3, base_seed=5,
                             detect=False)
    assert frames is good and d.decision == "accepted" and d.seed == lucky
    assert [a.seed for a in d.attempts] == [attempt_seed(5, k) for k in range(3)]
    assert d.attempts[-1].confidence == pytest.approx(best) and all(a.confidence < threshold for a in d.attempts[:2])
    again = gate_segment(generate, bad, wav, 25, models, min_sync=threshold, max_retries=3, base_seed=5, detect=False)[1]
    assert again.as_dict()["scores"] == d.as_dict()["scores"]  # deterministic


def test_original_passes_through_after_max_retries(good_bad, segment, models):
    good, bad, _, best = good_bad
    original, _, wav = segment
    frames, d = gate_segment(lambda seed: good, original, wav, 25, models, min_sync=best + 1.0, max_retries=2,
                             base_seed=0, detect=False)
    assert frames is original and d.decision == "passed_through" and d.seed is None and len(d.attempts) == 3
    assert "3 attempts below" in d.report()


def test_not_scorable_segments_pass_through(segment, models, tmp_path):
    real, _, wav = segment
    calls = []

    def generate(seed):
        calls.append(seed)
        return real

    for audio, word in ((torch.zeros_like(wav), "silent"), (wav[:20 * 640], "too short")):
        frames, d = gate_segment(generate, real, audio, 25, models, min_sync=0.0, max_retries=2, base_seed=1,
                                 detect=False)
        assert frames is real and d.decision == "not_scorable" and word in d.reason and not d.attempts
    assert calls == []  # known before generating
    blind = SyncModels(models.syncnet, load_s3fd(tiny.write_s3fd(tmp_path / "s3fd.pth", seed=1, face_bias=-30.0)))
    big = torch.nn.functional.interpolate(real.permute(0, 3, 1, 2).float(), size=(256, 256)).permute(0, 2, 3, 1)
    frames, d = gate_segment(lambda seed: big.to(torch.uint8), real, wav, 25, blind, min_sync=0.0, max_retries=2,
                             base_seed=1)
    assert frames is real and d.decision == "not_scorable" and "no face track" in d.reason and len(d.attempts) == 1
    with pytest.raises(ValueError, match="min_sync"):
        gate_segment(generate, real, wav, 25, models, min_sync=math.nan, max_retries=1, base_seed=1)


def test_cut_log(good_bad, segment, models, tmp_path):
    good, bad, threshold, _ = good_bad
    _, _, wav = segment
    log = CutLog(tmp_path / "logs" / "cuts.jsonl", version="1.6", steps=20, guidance=1.5, deepcache=True)
    _, accepted = gate_segment(lambda s: good, bad, wav, 25, models, min_sync=threshold, max_retries=1, base_seed=9,
                               detect=False)
    _, silent = gate_segment(lambda s: good, bad, torch.zeros_like(wav), 25, models, min_sync=threshold,
                             max_retries=1, base_seed=9, detect=False)
    log.record(0, accepted, timings={"sampling": 1.25})
    log.record("cut-2", silent)
    log.record(3, None, seed=4, score=score_clip(good, wav, 25, models, detect=False))
    rows = read_log(tmp_path / "logs" / "cuts.jsonl")
    assert [r["cut"] for r in rows] == [0, "cut-2", 3]
    for r in rows:
        assert r["schema"] == 1 and r["version"] == "1.6" and r["steps"] == 20 and r["guidance"] == 1.5
        assert r["deepcache"] is True and r["time"].endswith("+00:00")
    assert rows[0]["seed"] == 9 and rows[0]["gate"]["decision"] == "accepted" and rows[0]["sync"]["scorable"]
    assert rows[0]["timings"]["sampling"] == 1.25 and rows[0]["timings"]["gate_seconds"] >= 0
    assert rows[1]["seed"] is None and rows[1]["gate"]["decision"] == "not_scorable" and rows[1]["sync"] is None
    assert "silent" in rows[1]["gate"]["reason"]
    assert rows[2]["gate"] is None and rows[2]["seed"] == 4 and isinstance(rows[2]["sync"]["confidence"], float)
