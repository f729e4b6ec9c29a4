"""The speed paths compute what the plain ones do: chunk batching, compiled U-Net graphs (and their fallback),
explicit-score temporal attention. Tiny U-Net from the fixture set, float32 on the CPU."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from fixture_unet import fixture_unet
from latentsync.models.attention import small_sequence_attention
from latentsync.models.unet import DeepCacheState
from latentsync.pipeline.compiled import CompiledUNet, compile_unavailable_reason, maybe_compile
from latentsync.pipeline.sampler import EncodedFaces, LipsyncSampler, SamplerOptions

CHUNK = 4
FRAMES = 3 * CHUNK + 2  # three full chunks and a short tail
HW = (8, 8)


@pytest.fixture(scope="module")
def unet(fixtures_dir):
    return fixture_unet(fixtures_dir)


@pytest.fixture(scope="module")
def inputs(unet):
    g = torch.Generator().manual_seed(7)
    moments = [torch.randn(FRAMES, 4, *HW, generator=g) * s for s in (1.0, 0.1, 1.0, 0.1)]
    mask = (torch.rand(1, *HW, generator=g) > 0.5).float()
    audio = torch.randn(FRAMES, 5, unet.config["cross_attention_dim"], generator=g)
    return EncodedFaces(*moments, mask_latent=mask), audio


@contextlib.contextmanager
def compiled(unet, cls=CompiledUNet, **kwargs):
    """A CompiledUNet over ``unet``; afterwards the module's attention is back to SDPA for the plain references."""
    try:
        yield cls(unet, frames=CHUNK, **kwargs)
    finally:
        for m in unet.modules():
            if hasattr(m, "small_sequence_kernel"):
                m.small_sequence_kernel = False


def assert_same(got: torch.Tensor, want: torch.Tensor, tol: float = 1e-5) -> None:
    """Equal up to float32 summation order (batched GEMMs block differently): rel-L2 within ``tol``.

    Paths through the explicit-score temporal attention get 5e-5: a different (equally exact) summation."""
    assert got.shape == want.shape
    err = float((got - want).norm() / want.norm())
    assert err < tol, f"rel-L2 {err:.2e}"


def run(unet, inputs, *, skip=None, **options) -> tuple[torch.Tensor, list[int]]:
    encoded, audio = inputs
    opts = SamplerOptions(steps=4, guidance_scale=1.5, seed=3, chunk_frames=CHUNK, **options)
    sampler = LipsyncSampler(unet, opts, latent_hw=HW, device="cpu", dtype=torch.float32)
    seen = []
    out = sampler.sample(encoded, audio, skip_chunk=skip, callback=lambda done, total: seen.append(done))
    assert seen[-1] == sampler.steps_total(FRAMES)
    return out, seen


@pytest.mark.parametrize("deepcache", [False, True])
@pytest.mark.parametrize("batch_chunks", [2, 3])
def test_batched_chunks_equal_one_chunk_at_a_time(unet, inputs, deepcache, batch_chunks):
    plain, _ = run(unet, inputs, deepcache=deepcache)
    batched, _ = run(unet, inputs, deepcache=deepcache, batch_chunks=batch_chunks)
    assert batched.shape == plain.shape == (FRAMES, 4, *HW)
    assert_same(batched, plain)


def test_skipped_chunk_in_a_batch_keeps_every_other_chunk(unet, inputs):
    skip = lambda a, b: a == CHUNK  # noqa: E731  (the second chunk)
    plain, _ = run(unet, inputs, skip=skip)
    batched, _ = run(unet, inputs, skip=skip, batch_chunks=2)
    assert_same(batched, plain)
    encoded, _ = inputs  # a skipped chunk returns its reference latents untouched by the U-Net
    assert not torch.allclose(plain[CHUNK : 2 * CHUNK], plain[:CHUNK])


def test_explicit_score_attention_equals_sdpa():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(6, 4, 16, 40, generator=g) * 3 for _ in range(3))
    assert torch.allclose(small_sequence_attention(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-5)


def _steps(model, sample, t, audio):
    state = DeepCacheState()
    full = model(sample, t, audio, deepcache=state)
    cached = model(sample * 0.5, t, audio, deepcache=state)
    return full, cached, model(sample, t, audio)


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])  # the latter: outputs copied (CUDA graphs on a GPU)
def test_compiled_wrapper_equals_eager_for_every_step_kind(unet, mode):
    g = torch.Generator().manual_seed(2)
    sample = torch.randn(2, 13, CHUNK, *HW, generator=g)
    audio = torch.randn(2, CHUNK, 5, unet.config["cross_attention_dim"], generator=g)
    t = torch.tensor(500)
    want = _steps(unet, sample, t, audio)
    with compiled(unet, backend="eager", mode=mode) as wrapper:  # dynamo graphs, no code generation
        got = _steps(wrapper, sample, t, audio)
        tail = wrapper(sample[:, :, :2], t, audio[:, :2])  # another frame count: eager path
        assert wrapper.fallback_reason is None
    for a, b in zip(got, want):
        assert_same(a, b, 5e-5)
    assert_same(tail, unet(sample[:, :, :2], t, audio[:, :2]), 5e-5)


def test_sampler_pads_groups_to_the_compiled_batch_and_not_the_eager_tail(unet, inputs):
    plain, _ = run(unet, inputs, deepcache=True)
    eager_calls = []  # the short chunk's steps, which run uncompiled (replayed as CUDA graphs on a GPU)

    class Recording(CompiledUNet):
        def short_chunk_steps(self):
            steps = super().short_chunk_steps()

            def record(sample, *args, **kwargs):
                eager_calls.append(tuple(sample.shape[:3]))
                return steps(sample, *args, **kwargs)
            return record

    with compiled(unet, cls=Recording, fixed_batch=2, backend="eager") as wrapper:
        got, _ = run(wrapper, inputs, deepcache=True, batch_chunks=2)  # 3 full chunks: 2 + (1 padded to 2)
    assert_same(got, plain, 5e-5)
    # the 2-frame tail: CFG's 2 copies of its one chunk, not of a second, padded chunk (4 steps, DeepCache on)
    assert eager_calls == [(2, 13, 2)] * 4


def test_a_failing_compiler_falls_back_to_eager(unet, caplog):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no kernels today")

    g = torch.Generator().manual_seed(4)
    sample = torch.randn(2, 13, CHUNK, *HW, generator=g)
    with compiled(unet, backend=broken_backend) as wrapper, caplog.at_level("WARNING"):
        got = wrapper(sample, 10, None)
        reason = wrapper.fallback_reason
    assert reason and "no kernels today" in reason
    assert "uncompiled" in caplog.text
    assert_same(got, unet(sample, 10, None), 5e-5)


def test_maybe_compile_is_a_no_op_when_off_or_impossible(unet, monkeypatch):
    assert maybe_compile(unet, False, device="cpu", frames=CHUNK) is unet
    monkeypatch.setattr("latentsync.pipeline.compiled.compile_unavailable_reason", lambda device: "no Triton")
    assert maybe_compile(unet, True, device="cuda", frames=CHUNK) is unet
    assert compile_unavailable_reason("meta") is not None


@pytest.mark.skipif(compile_unavailable_reason("cpu") is not None, reason="no C++ compiler for Inductor's CPU kernels")
def test_compiled_kernels_are_kept_unless_turned_off(unet, monkeypatch, tmp_path):
    monkeypatch.setenv("LATENTSYNC_COMPILE_CACHE", str(tmp_path / "kernels"))
    kept = maybe_compile(unet, True, device="cpu", frames=CHUNK)
    assert isinstance(kept, CompiledUNet) and kept.artifacts.directory == tmp_path / "kernels"
    for off in ("off", "0", "false"):
        monkeypatch.setenv("LATENTSYNC_COMPILE_CACHE", off)
        assert maybe_compile(unet, True, device="cpu", frames=CHUNK).artifacts is None
    assert maybe_compile(unet, True, device="cpu", frames=CHUNK, keep_kernels=True,
                         cache_dir=tmp_path / "explicit").artifacts.directory == tmp_path / "explicit"


@pytest.mark.parametrize("deepcache", [False, True])
@pytest.mark.parametrize("batch_chunks", [1, 2])
def test_the_tail_taking_turns_with_the_last_full_group_changes_nothing(unet, inputs, deepcache, batch_chunks,
                                                                          monkeypatch):
    monkeypatch.setattr(LipsyncSampler, "interleave_tail", False)
    plain, plain_progress = run(unet, inputs, deepcache=deepcache, batch_chunks=batch_chunks)
    order = []  # the frame count of each U-Net call, to see the turns
    hook = unet.register_forward_pre_hook(lambda module, args: order.append(args[0].shape[2]))
    monkeypatch.setattr(LipsyncSampler, "interleave_tail", True)
    try:
        turns, progress = run(unet, inputs, deepcache=deepcache, batch_chunks=batch_chunks)
    finally:
        hook.remove()
    assert torch.equal(turns, plain)  # the groups share nothing but the noise: bit for bit
    assert progress == sorted(progress) and progress[-1] == plain_progress[-1]
    steps = 4
    full_calls = len(order) - steps  # the last full group's steps alternate with the 2-frame tail's
    assert order[full_calls - steps:] == [CHUNK, 2] * steps
    assert order[:full_calls - steps] == [CHUNK] * (full_calls - steps)
