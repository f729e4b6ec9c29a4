"""Length policies: output lengths, source frame indices and audio sample counts, to the frame/sample."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from safetensors.torch import load_file

from latentsync.pipeline.length import POLICIES, apply_to_frames, apply_to_waveform, plan_length


def ids(plan) -> list[int]:
    return plan.source_index.tolist()


def test_pingpong_matches_upstream_pattern_for_short_video():
    # 6 frames, 18 audio frames: forward, reversed (turning frame repeated), forward.
    plan = plan_length(6, 18, "pingpong")
    assert ids(plan) == [0, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 5]
    assert (plan.num_frames, plan.audio_pad_frames, plan.audio_trim_frames) == (18, 0, 0)


def test_pingpong_partial_last_pass_and_long_video():
    assert ids(plan_length(4, 10, "pingpong")) == [0, 1, 2, 3, 3, 2, 1, 0, 0, 1]
    assert ids(plan_length(4, 7, "pingpong")) == [0, 1, 2, 3, 3, 2, 1]
    long = plan_length(10, 4, "pingpong")  # video longer: the first frames
    assert ids(long) == [0, 1, 2, 3] and long.num_frames == 4


def test_loop_repeats_forward():
    plan = plan_length(3, 8, "loop")
    assert ids(plan) == [0, 1, 2, 0, 1, 2, 0, 1]
    assert ids(plan_length(8, 3, "loop")) == [0, 1, 2]


def test_trim_takes_the_shorter():
    short_audio = plan_length(10, 4, "trim")
    assert ids(short_audio) == [0, 1, 2, 3]
    assert (short_audio.audio_pad_frames, short_audio.audio_trim_frames) == (0, 0)
    short_video = plan_length(4, 10, "trim")
    assert ids(short_video) == [0, 1, 2, 3]
    assert (short_video.num_frames, short_video.audio_trim_frames, short_video.audio_pad_frames) == (4, 6, 0)


def test_hold_last_pads_with_last_frame_or_cuts():
    assert ids(plan_length(3, 6, "hold_last")) == [0, 1, 2, 2, 2, 2]
    assert ids(plan_length(6, 3, "hold_last")) == [0, 1, 2]


def test_pad_audio_keeps_video_length():
    longer_video = plan_length(7, 4, "pad_audio")
    assert ids(longer_video) == list(range(7))
    assert (longer_video.num_frames, longer_video.audio_pad_frames, longer_video.audio_trim_frames) == (7, 3, 0)
    longer_audio = plan_length(4, 7, "pad_audio")
    assert ids(longer_audio) == [0, 1, 2, 3]
    assert (longer_audio.audio_pad_frames, longer_audio.audio_trim_frames) == (0, 3)


@pytest.mark.parametrize("policy", POLICIES)
def test_still_image_is_held_for_the_audio_under_every_policy(policy):
    plan = plan_length(1, 37, policy)
    assert plan.num_frames == 37
    assert ids(plan) == [0] * 37
    assert (plan.audio_pad_frames, plan.audio_trim_frames) == (0, 0)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("video,audio", [(1, 1), (5, 5), (5, 12), (12, 5), (250, 242), (6, 1000)])
def test_every_plan_is_consistent(policy, video, audio):
    plan = plan_length(video, audio, policy)
    assert plan.source_index.dtype == torch.long
    assert plan.source_index.shape == (plan.num_frames,)
    assert int(plan.source_index.min()) >= 0 and int(plan.source_index.max()) < video
    assert plan.num_frames == audio + plan.audio_pad_frames - plan.audio_trim_frames
    assert min(plan.audio_pad_frames, plan.audio_trim_frames) == 0
    if video == 1 or policy != "pad_audio":
        assert plan.audio_pad_frames == 0


@pytest.mark.parametrize("args", [(0, 5), (5, 0), (-1, 5), (5, 2.0), (True, 5)])
def test_bad_lengths_are_rejected(args):
    with pytest.raises(ValueError, match="num_(video|audio)_frames"):
        plan_length(*args)


def test_unknown_policy_is_rejected():
    with pytest.raises(ValueError, match="pingpong"):
        plan_length(3, 3, "bounce")


def test_apply_to_frames_gathers_any_per_frame_tensor():
    frames = torch.arange(4 * 2 * 2 * 3, dtype=torch.uint8).reshape(4, 2, 2, 3)
    plan = plan_length(4, 6, "pingpong")
    out = apply_to_frames(frames, plan)
    assert out.shape == (6, 2, 2, 3)
    for j, i in enumerate(ids(plan)):
        assert torch.equal(out[j], frames[i])
    matrices = torch.randn(4, 2, 3)
    assert torch.equal(apply_to_frames(matrices, plan)[4], matrices[3])
    with pytest.raises(ValueError, match="only 2 frames"):
        apply_to_frames(frames[:2], plan)


@pytest.mark.parametrize("fps,rate,frames,expected", [
    (Fraction(25), 16000, 18, 11520),
    (Fraction(25), 16000, 242, 154880),
    (Fraction(30000, 1001), 48000, 30, 48048),
    (Fraction(30000, 1001), 44100, 31, 45615),  # floor(45615.57)
    (24, 44100, 1, 1837),  # floor(1837.5)
])
def test_apply_to_waveform_pads_or_cuts_to_the_output_duration(fps, rate, frames, expected):
    plan = plan_length(frames, frames, "trim")
    short = torch.ones(2, expected - 100)
    padded = apply_to_waveform(short, rate, plan, fps)
    assert padded.shape == (2, expected)
    assert torch.equal(padded[:, : expected - 100], short) and not padded[:, expected - 100:].any()
    long = torch.randn(1, 2, expected + 999)  # ComfyUI AUDIO layout (B, C, T)
    cut = apply_to_waveform(long, rate, plan, fps)
    assert cut.shape == (1, 2, expected) and torch.equal(cut, long[..., :expected])


def test_pingpong_matches_the_upstream_pipeline_fixture(fixtures_dir, manifest):
    """Upstream's output frames equal the input frame its loop picked outside the face: find it for each."""
    entry = manifest["files"]["pipeline_e2e.safetensors"]
    params = entry["generation_params"]
    golden = load_file(str(fixtures_dir / "pipeline_e2e.safetensors"))
    inputs, outputs = golden["video_frames"], golden["deepcache_output_frames"]
    assert inputs.shape[0] == len(params["frame_ids_25fps"])
    plan = plan_length(inputs.shape[0], params["n_output_frames"], "pingpong")
    assert plan.num_frames == outputs.shape[0] == params["n_output_frames"]
    same = (outputs[:, None] == inputs[None]).all(-1).flatten(2).float().mean(-1)  # (F_out, F_in)
    assert same.argmax(dim=1).tolist() == ids(plan)
    # Upstream cut the written audio to int(n / 25 * 16000) samples (its fixed fps and rate).
    wave = torch.zeros(1, 10**6)
    assert apply_to_waveform(wave, 16000, plan, 25).shape[-1] == entry["stats"]["audio_samples_written"]
