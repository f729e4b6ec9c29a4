"""CUDA graph replay of the short last chunk's U-Net steps (latentsync.pipeline.cuda_graphs; an experiment, off in the
pipeline).

Replaying launches the kernels that the plain call launches, so the results must be equal bit for bit. On the CPU
the wrappers call through (what CI checks: the step kinds and DeepCache's state are handled as the U-Net's own
forward handles them); on a GPU the same tests check the replay itself, and that it happened."""

from __future__ import annotations

import pytest
import torch

from fixture_unet import fixture_unet
from latentsync.models.unet import DeepCacheState
from latentsync.pipeline.compiled import CompiledUNet, ShortChunkSteps
from latentsync.pipeline.cuda_graphs import ShapeGraph

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


@pytest.fixture(scope="module")
def unet(fixtures_dir):
    return fixture_unet(fixtures_dir)


def step_inputs(unet, device, frames=2, steps=7):
    g = torch.Generator().manual_seed(frames)
    samples = [torch.randn(2, 13, frames, 8, 8, generator=g).to(device) for _ in range(steps)]
    audio = torch.randn(1, frames, 5, unet.config["cross_attention_dim"], generator=g).to(device)  # CFG: 2nd half
    times = torch.tensor([981, 931, 881, 831, 781, 731, 681], device=device)[:steps]
    return samples, audio, times


def denoise_like_the_sampler(model, samples, audio, times, *, deepcache: bool, interval: int = 3):
    """The sampler's calls for one chunk group: a full step every ``interval`` steps, DeepCache steps between."""
    state = DeepCacheState() if deepcache else None
    out = []
    for j, (x, t) in enumerate(zip(samples, times)):
        if state is not None and j % interval == 0:
            state.cached = None
        out.append(model(x, t, audio, deepcache=state) if state is not None else model(x, t, audio))
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("deepcache", [True, False])
@torch.no_grad()
def test_short_chunk_steps_equal_the_unet_bit_for_bit(unet, device, deepcache):
    model = unet.to(device)
    samples, audio, times = step_inputs(model, device)
    want = denoise_like_the_sampler(model, samples, audio, times, deepcache=deepcache)
    steps = ShortChunkSteps(model)
    got = denoise_like_the_sampler(steps, samples, audio, times, deepcache=deepcache)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    replays = sum(graph.replays for graph in steps._graphs.values())
    failures = [graph.failure for graph in steps._graphs.values() if graph.failure]
    assert not failures
    # on a GPU, every step after each kind's first two is a replay (7 steps: full at 0, 3, 6; DeepCache between)
    assert replays == ((7 - 4) if deepcache else (7 - 1)) * (device == "cuda")
    unet.to("cpu")


def test_a_compiled_unet_gives_short_chunks_their_own_steps(unet):
    wrapper = CompiledUNet(unet, frames=4, backend="eager")
    try:
        assert wrapper.short_chunk_steps() is wrapper  # off by default: the eager path
        wrapper.replay_short_chunks = True
        first, second = wrapper.short_chunk_steps(), wrapper.short_chunk_steps()
        assert isinstance(first, ShortChunkSteps) and first is not second  # one per chunk group: graphs go with it
    finally:
        for m in unet.modules():
            if hasattr(m, "small_sequence_kernel"):
                m.small_sequence_kernel = False


def test_shape_graph_off_cuda_calls_through():
    calls = []
    graph = ShapeGraph(lambda x: calls.append(1) or x * 2)
    x = torch.arange(4.0)
    for _ in range(3):
        assert torch.equal(graph(x), x * 2)
    assert len(calls) == 3 and graph.replays == 0


@needs_cuda
def test_shape_graph_replays_new_shapes_and_copies_outputs():
    graph = ShapeGraph(lambda a, b: (a @ b).relu() + 1)
    g = torch.Generator(device="cuda").manual_seed(0)
    outs = []
    for n in (8, 8, 8, 8, 16, 16, 16):
        a, b = (torch.randn(n, n, device="cuda", generator=g) for _ in range(2))
        outs.append((graph(a, b), (a @ b).relu() + 1))
    assert all(torch.equal(got, want) for got, want in outs)  # kept outputs are copies, not the graph's buffers
    assert graph.replays == 3  # 8: eager, capture + replay, replay, replay; 16: eager, capture + replay, replay
    assert graph.failure is None


@needs_cuda
def test_a_call_that_a_graph_cannot_hold_runs_as_before(caplog):
    def synchronising(x):
        return x * float(x.sum())  # reads a value back to the host: not allowed while capturing

    graph = ShapeGraph(synchronising, name="a reading call")
    x = torch.arange(1.0, 5.0, device="cuda")
    with caplog.at_level("WARNING"):
        results = [graph(x) for _ in range(3)]
    assert all(torch.equal(r, x * 10) for r in results)
    assert graph.failure and "a reading call" in caplog.text
    assert graph.replays == 0
