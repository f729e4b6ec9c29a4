"""Audio offset fix: the sign convention (upstream's offset and -itsoffset), sample-exact shifts that keep the
length, and the fix on real media with tiny random SyncNet weights (behaviour, not quality)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sync_media  # noqa: E402

from latentsync.metrics import tiny  # noqa: E402
from latentsync.metrics.offset import fix_offset, shift_audio, shift_samples  # noqa: E402
from latentsync.metrics.score import SyncModels  # noqa: E402
from latentsync.metrics.sync import offset_distances, sync_result  # noqa: E402
from latentsync.metrics.syncnet_v2 import load_syncnet_v2  # noqa: E402


def test_positive_offset_means_early_audio_and_delaying_fixes_it():
    """Lip window i sounds like audio window i - 3 (the audio is 3 frames early): upstream's offset is +3, and
    delaying the audio by 3 frames, as the fix does, brings it to 0."""
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(80, 16, generator=g)
    early = 3
    lips = audio[20 - early:60 - early]  # lips of windows 20..59
    assert sync_result(offset_distances(lips, audio[20:60])).offset == early
    delayed = torch.cat([torch.zeros(early, 16), audio])  # the same signal, 3 windows later
    assert sync_result(offset_distances(lips, delayed[20:60])).offset == 0


def test_shift_is_sample_exact_and_keeps_the_length():
    wave = torch.arange(1, 11, dtype=torch.float32).repeat(2, 1)  # (2, 10)
    assert torch.equal(shift_audio(wave, 3)[0], torch.tensor([0, 0, 0, 1, 2, 3, 4, 5, 6, 7.0]))
    assert torch.equal(shift_audio(wave, -3)[1], torch.tensor([4, 5, 6, 7, 8, 9, 10, 0, 0, 0.0]))
    assert torch.equal(shift_audio(wave, 0), wave) and shift_audio(wave, 0) is not wave
    assert torch.equal(shift_audio(wave, 25), torch.zeros_like(wave))
    assert shift_samples(2, 16000) == 1280 and shift_samples(-1, 44100) == -1764
    assert shift_samples(1, 22050) == 882 and shift_samples(3, 11025) == 1323
    assert shift_samples(1, 48000, fps=30) == 1600


@pytest.fixture(scope="module")
def clip(media):
    return torch.from_numpy(sync_media.face_frames(media, 60, size=128)), sync_media.speech(media, 60)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return SyncModels(load_syncnet_v2(tiny.write_syncnet_v2(tmp_path_factory.mktemp("sn") / "s.model", seed=3)))


def test_fix_applies_the_measured_offset(clip, models):
    frames, speech = clip
    stereo = torch.stack([speech, 0.5 * speech])  # any channel count; 16 kHz here
    shifted, record = fix_offset(frames, stereo, 16000, 25, models, detect=False)
    assert record.score.scorable and record.frames == record.score.offset
    assert record.frames != 0, "the fixture's random SyncNet measures a non-zero offset on this clip"
    assert record.applied and record.samples == record.frames * 640
    assert shifted.shape == stereo.shape and torch.equal(shifted, shift_audio(stereo, record.samples))
    assert f"by {abs(record.frames)} frame" in record.report()
    again, same = fix_offset(frames, stereo, 16000, 25, models, detect=False)
    assert torch.equal(again, shifted) and same.frames == record.frames  # deterministic


def test_unscorable_or_untrusted_clips_keep_their_audio(clip, models):
    frames, speech = clip
    silent = torch.zeros(1, 60 * 640)
    out, record = fix_offset(frames, silent, 16000, 25, models, detect=False)
    assert torch.equal(out, silent) and not record.applied and "silent" in record.report()
    out, record = fix_offset(frames[:20], speech[None], 16000, 25, models, detect=False)
    assert torch.equal(out, speech[None]) and record.report().startswith("audio unchanged: not scorable: the clip is too short")
    out, record = fix_offset(frames, speech[None], 16000, 25, models, detect=False, min_confidence=50.0)
    assert torch.equal(out, speech[None]) and "below 50" in record.report()
    assert record.as_dict()["applied"] is False and record.as_dict()["score"]["scorable"] is True
