"""U-Net parity with upstream on the tiny random checkpoint (unet_tiny_* fixtures).

Config, weights, inputs, golden outputs and tolerances all come from the fixture set and its manifest.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from latentsync.models.layers import as_video
from latentsync.models.unet import DeepCacheState, UNet3DConditionModel, load_unet

IO_FILE = "unet_tiny_io.safetensors"


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.fixture(scope="module")
def tiny(fixtures_dir) -> UNet3DConditionModel:
    config = json.loads((fixtures_dir / "unet_tiny_config.json").read_text())
    return load_unet(fixtures_dir / "unet_tiny_weights.safetensors", config, dtype=torch.float32)


@pytest.fixture(scope="module")
def io(fixtures_dir) -> dict[str, torch.Tensor]:
    return load_file(str(fixtures_dir / IO_FILE))


def case_names(io: dict[str, torch.Tensor]) -> list[str]:
    return sorted(k[: -len("_sample")] for k in io if k.endswith("_sample"))


def smallest_case(io: dict[str, torch.Tensor]) -> str:
    return min(case_names(io), key=lambda n: io[f"{n}_sample"].numel())


def inputs(io: dict[str, torch.Tensor], name: str, dtype: torch.dtype = torch.float32):
    return io[f"{name}_sample"].to(dtype), io[f"{name}_timestep"], io[f"{name}_encoder_hidden_states"].to(dtype)


def test_cases_match_manifest(io, manifest):
    params = manifest["files"][IO_FILE]["generation_params"]
    names = case_names(io)
    assert names, f"{IO_FILE} holds no *_sample inputs"
    for name in names:
        sample = io[f"{name}_sample"]
        if name in params:
            p = params[name]
            assert sample.shape[0] == p["batch"] and sample.shape[2] == p["frames"]
            assert list(sample.shape[-2:]) == list(p["latent_hw"])
            assert int(io[f"{name}_timestep"]) == p["timestep"]


@pytest.fixture(scope="module")
def full_steps(tiny, io) -> dict[str, tuple[torch.Tensor, DeepCacheState]]:
    """Each case run once as a DeepCache full step: (output, filled state)."""
    runs = {}
    with torch.no_grad():
        for name in case_names(io):
            state = DeepCacheState()
            runs[name] = tiny(*inputs(io, name), deepcache=state), state
    return runs


def test_outputs_match_upstream(full_steps, io, check):
    tol = check["unet_out"]
    for name, (out, _) in full_steps.items():
        assert out.shape == io[f"{name}_out"].shape and out.dtype == torch.float32
        torch.testing.assert_close(out, io[f"{name}_out"], atol=tol["atol"], rtol=tol["rtol"],
                                   msg=lambda m: f"{name}: {m}")


@torch.no_grad()
def test_intermediates_match_upstream(tiny, io):
    """Module outputs stored as float16 copies: a debugging aid, compared loosely."""
    modules = dict(tiny.named_modules())
    names = sorted({k.split("_intermediate.")[0] for k in io if "_intermediate." in k})
    assert names, "no *_intermediate.* tensors in the fixture"
    for name in names:
        prefix = f"{name}_intermediate."
        wanted = {k[len(prefix):]: v.float() for k, v in io.items() if k.startswith(prefix)}
        missing = sorted(set(wanted) - set(modules))
        assert not missing, f"no module for intermediates {missing}"
        sample, t, audio = inputs(io, name)
        got: dict[str, torch.Tensor] = {}

        def keep(key):
            def hook(_module, _args, output):
                out = output[0] if isinstance(output, tuple) else output
                got[key] = as_video(out, sample.shape[0]) if out.dim() == 4 else out
            return hook

        handles = [modules[key].register_forward_hook(keep(key)) for key in wanted]
        try:
            tiny(sample, t, audio)
        finally:
            for h in handles:
                h.remove()
        for key, ref in wanted.items():
            scale = float(ref.abs().max()) + 1e-6
            assert got[key].shape == ref.shape, f"{name} {key}: shape {tuple(got[key].shape)} vs {tuple(ref.shape)}"
            err = float((got[key] - ref).abs().max())
            assert err <= 2e-3 * scale + 1e-3, f"{name} {key}: max abs diff {err:.3g} (|ref| max {scale:.3g})"


@torch.no_grad()
def test_deepcache_cached_step_reproduces_full_step(tiny, io, full_steps):
    """A cached step fed with the state of a full step on the same inputs gives the full output."""
    for name, (full, state) in full_steps.items():
        b, _, f, h, w = io[f"{name}_sample"].shape
        assert state.cached is not None
        assert tuple(state.cached.shape) == (b, tiny.config["block_out_channels"][0], f, h, w)
        cached = tiny(*inputs(io, name), deepcache=state)
        torch.testing.assert_close(cached, full, atol=1e-6, rtol=0, msg=lambda m: f"{name}: {m}")
        state.clear()
        assert state.cached is None


@torch.no_grad()
def test_batch_items_are_independent(tiny, io, full_steps):
    """GroupNorm statistics are per batch item: a batch equals its items run one by one."""
    name = max(case_names(io), key=lambda n: io[f"{n}_sample"].shape[0])
    sample, t, audio = inputs(io, name)
    if sample.shape[0] < 2:
        pytest.skip("no batched case in this fixture set")
    whole = full_steps[name][0]
    for i in range(sample.shape[0]):
        torch.testing.assert_close(tiny(sample[i : i + 1], t, audio[i : i + 1]), whole[i : i + 1], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_layout_variants_give_the_same_output(tiny, io, check):
    """channels-last input/weights, flattened (B*F, S, D) audio and a (B,) timestep change nothing."""
    tol = check["unet_out"]
    name = smallest_case(io)
    sample, t, audio = inputs(io, name)
    ref = io[f"{name}_out"]
    sample_cl = sample.contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(tiny(sample_cl, t, audio), ref, atol=tol["atol"], rtol=tol["rtol"])
    model_cl = copy.deepcopy(tiny).to(memory_format=torch.channels_last)
    out_cl = model_cl(sample_cl, t, audio)
    assert out_cl.is_contiguous()
    torch.testing.assert_close(out_cl, ref, atol=tol["atol"], rtol=tol["rtol"])
    out_flat = tiny(sample, t.expand(sample.shape[0]), audio.flatten(0, 1))
    torch.testing.assert_close(out_flat, ref, atol=tol["atol"], rtol=tol["rtol"])


@torch.no_grad()
@pytest.mark.parametrize("dtype, bound", [(torch.bfloat16, 5e-2), (torch.float16, 1e-2)])
def test_reduced_precision_close_to_fp32(tiny, io, dtype, bound):
    model = copy.deepcopy(tiny).to(dtype)
    assert all(p.dtype == dtype for p in model.parameters())
    name = smallest_case(io)
    out = model(*inputs(io, name, dtype))
    assert out.dtype == dtype
    err = rel_l2(out, io[f"{name}_out"])
    assert err < bound, f"{name} {dtype}: rel-L2 {err:.3g} vs fp32 golden"
