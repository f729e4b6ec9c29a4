"""Per-chunk noise: any chunk of a video plan computed on its own equals that chunk of the one-shot run, bit for
bit, so a video can be sharded over processes or devices (tiny random models, real frames and speech)."""

from __future__ import annotations

import dataclasses

import av
import numpy as np
import pytest
import torch

from latentsync.audio.features import whisper_features
from latentsync.audio.waveform import load_audio, to_16k_mono
from latentsync.face.mask import fixed_mask
from latentsync.pipeline import stages
from latentsync.pipeline.loading import load_models
from latentsync.pipeline.sampler import SamplerOptions
from latentsync.tiny_models import write_tiny_models

FRAMES = 40  # chunks of 16, 16 and 8 frames


@pytest.fixture(scope="module")
def setup(tmp_path_factory, media):
    """Tiny models, 40 aligned faces from demo1's frames and the per-frame windows of its speech."""
    paths = write_tiny_models(tmp_path_factory.mktemp("tiny"))
    loaded = load_models(str(paths.unet), str(paths.whisper), device="cpu", dtype=torch.float32,
                         vae_path=str(paths.vae))
    frames = []
    with av.open(str(media / "demo1_video.mp4")) as src:
        for frame in src.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == FRAMES:
                break
    frames_t = torch.from_numpy(np.stack(frames))
    res = loaded.resolution
    # A fixed similarity transform onto the face region of demo1 (the alignment itself is tested elsewhere).
    scale = res / 448.0
    matrix = torch.tensor([[scale, 0.0, -352 * scale], [0.0, scale, -480 * scale]], dtype=torch.float32)
    faces = stages.align_faces(frames_t, matrix.expand(FRAMES, 2, 3).contiguous(), res)
    wave, sr = load_audio(str(media / "demo1_audio.wav"))
    features = whisper_features(loaded.whisper, to_16k_mono(wave, sr)[: 16000 * 2])
    windows = stages.audio_windows(features, FRAMES, 25)
    return loaded, faces, windows, fixed_mask(res)


def plan_of(loaded, **options) -> stages.VideoPlan:
    defaults = dict(steps=2, guidance_scale=1.5, seed=77, deepcache=True)
    return stages.plan_video(FRAMES, SamplerOptions(**{**defaults, **options}), loaded.resolution)


def run(loaded, plan, faces, windows, mask, first, stop, paste=None):
    a, b = plan.frames_of(first, stop)
    return stages.generate_chunks(loaded.unet, loaded.vae, plan, faces[a:b], windows[a:b], mask,
                                  first_chunk=first, stop_chunk=stop, device="cpu", dtype=torch.float32,
                                  paste=None if paste is None else paste[a:b])


@pytest.mark.parametrize("posterior", ["sample", "mean"])
def test_each_chunk_alone_equals_the_one_shot_run(setup, posterior):
    loaded, faces, windows, mask = setup
    plan = plan_of(loaded, posterior=posterior)
    assert [b - a for a, b in plan.chunks] == [16, 16, 8]
    whole = run(loaded, plan, faces, windows, mask, 0, len(plan.chunks))
    assert whole.shape == (FRAMES, 3, loaded.resolution, loaded.resolution)
    for k, (a, b) in enumerate(plan.chunks):
        alone = run(loaded, plan, faces, windows, mask, k, k + 1)
        assert torch.equal(alone, whole[a:b]), f"chunk {k} alone differs from the one-shot run"


def test_interleaved_shards_gathered_equal_the_one_shot_run(setup):
    """Two 'workers' take the even and the odd chunks, in reverse order, with a chunk nobody sees (skipped)."""
    loaded, faces, windows, mask = setup
    plan = plan_of(loaded)
    paste = torch.ones(FRAMES, dtype=torch.bool)
    paste[16:32] = False  # chunk 1 has no face: not denoised, its draws still taken
    whole = run(loaded, plan, faces, windows, mask, 0, len(plan.chunks), paste)
    gathered = torch.empty_like(whole)
    for worker in (0, 1):
        for k in reversed(range(worker, len(plan.chunks), 2)):
            a, b = plan.chunks[k]
            gathered[a:b] = run(loaded, plan, faces, windows, mask, k, k + 1, paste)
    assert torch.equal(gathered, whole)
    a, b = plan.frames_of(1, 3)  # a range of two chunks from the middle
    assert torch.equal(run(loaded, plan, faces, windows, mask, 1, 3, paste), whole[a:b])


def test_the_seed_and_the_start_matter(setup):
    """The equality above is not vacuous: another seed, or a sampler not fast-forwarded, gives other frames."""
    loaded, faces, windows, mask = setup
    plan = plan_of(loaded)
    a, b = plan.chunks[2]
    want = run(loaded, plan, faces, windows, mask, 2, 3)
    other_seed = dataclasses.replace(plan, options=dataclasses.replace(plan.options, seed=78))
    assert not torch.equal(run(loaded, other_seed, faces, windows, mask, 2, 3), want)
    sampler = stages.new_sampler(loaded.unet, plan, device="cpu", dtype=torch.float32)  # at frame 0, not 32
    encoded = stages.encode(loaded.vae, faces[a:b], mask)
    latents = sampler.sample_vae_latents(encoded, windows[a:b])
    assert not torch.equal(stages.decode(loaded.vae, latents, faces[a:b], mask), want)


def test_a_range_must_start_on_a_chunk(setup):
    loaded, faces, windows, mask = setup
    plan = plan_of(loaded)
    with pytest.raises(ValueError, match="outside this plan"):
        plan.frames_of(2, 4)
    with pytest.raises(ValueError, match="chunk boundary"):
        stages.new_sampler(loaded.unet, plan, device="cpu", dtype=torch.float32, start_frame=8)
