"""U-Net structure: state-dict keys/shapes of the released configs, config checks, input checks, layer factory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from latentsync.configs import unet_config
from latentsync.models.unet import DeepCacheState, UNet3DConditionModel, unet_state_dict_shapes
from latentsync.tiny_models import tiny_unet_config

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Key/shape tables of the real checkpoint: $LATENTSYNC_REFERENCE_DIR, else ../shared/reference beside the repo."""
    path = Path(os.environ.get("LATENTSYNC_REFERENCE_DIR", REPO_ROOT / ".." / "shared" / "reference")).resolve()
    if not (path / "unet_keys_summary.json").is_file():
        pytest.fail(f"U-Net reference tables not found at {path}; set LATENTSYNC_REFERENCE_DIR.")
    return path


def read_key_table(path: Path) -> dict[str, tuple[int, ...]]:
    table = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, shape, _dtype = line.split("\t")
        table[name] = tuple(int(d) for d in shape.split("x"))
    return table


@pytest.fixture(scope="module")
def tiny() -> UNet3DConditionModel:
    torch.manual_seed(0)
    return UNet3DConditionModel(tiny_unet_config()).eval()


@pytest.mark.parametrize(
    "variant, table, summary_key",
    [
        ("stage2", "unet_keys_256.tsv", "256"),
        ("stage2_512", "unet_keys_512.tsv", "512"),
        ("stage2_efficient", "unet_keys_efficient.tsv", "efficient"),
    ],
)
def test_state_dict_matches_released_checkpoint(reference_dir, variant, table, summary_key):
    expected = read_key_table(reference_dir / table)
    summary = json.loads((reference_dir / "unet_keys_summary.json").read_text())[summary_key]
    shapes = unet_state_dict_shapes(unet_config(variant))
    assert sorted(set(expected) - set(shapes)) == []
    assert sorted(set(shapes) - set(expected)) == []
    assert {k: v for k, v in shapes.items() if expected[k] != v} == {}
    assert len(shapes) == summary["state_dict_entries"]

    with torch.device("meta"):
        model = UNet3DConditionModel(unet_config(variant))
    params = dict(model.named_parameters())
    buffers = {k for k in shapes if k not in params}
    assert sum(p.numel() for p in params.values()) == summary["parameters"]
    assert len(buffers) == summary["persistent_buffer_keys"]
    assert all(k.endswith(".pos_encoder.pe") for k in buffers)
    motion = sum(p.numel() for k, p in params.items() if ".motion_modules." in k)
    audio = sum(p.numel() for k, p in params.items() if ".attn2." in k)
    assert motion == summary["motion_module_param_count"]
    assert audio == summary["audio_cross_attn_param_count"]


def test_position_tables_are_sinusoids(tiny):
    pe = dict(tiny.named_buffers())["down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0"
                                    ".attention_blocks.0.pos_encoder.pe"]
    assert pe.shape == (1, 24, 32)
    p, i = 5, 3
    angle = torch.tensor(p * 10000.0 ** (-2 * i / 32))
    torch.testing.assert_close(pe[0, p, 2 * i], torch.sin(angle))
    torch.testing.assert_close(pe[0, p, 2 * i + 1], torch.cos(angle))


def test_every_layer_is_built_through_operations():
    made = []

    def tracked(base):
        class Tracked(base):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                made.append(self)
        return Tracked

    ops = SimpleNamespace(**{n: tracked(getattr(nn, n)) for n in ("Linear", "Conv2d", "GroupNorm", "LayerNorm")})
    with torch.device("meta"):
        model = UNet3DConditionModel(tiny_unet_config(), operations=ops)
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.GroupNorm, nn.LayerNorm))]
    assert layers and len(layers) == len(made)
    assert all(any(m is x for x in made) for m in layers)
    owned = {id(p) for m in made for p in m.parameters(recurse=False)}
    assert {id(p) for p in model.parameters()} == owned


def test_operations_without_required_classes_is_refused():
    with pytest.raises(TypeError, match="GroupNorm"):
        UNet3DConditionModel(tiny_unet_config(), operations=SimpleNamespace(Linear=nn.Linear, Conv2d=nn.Conv2d,
                                                                       LayerNorm=nn.LayerNorm))


@pytest.mark.parametrize(
    "overrides, word",
    [
        ({"act_fn": "gelu"}, "act_fn"),
        ({"use_linear_projection": True}, "use_linear_projection"),
        ({"down_block_types": ["CrossAttnDownBlock3D"] * 3 + ["Weird"]}, "Weird"),
        ({"motion_module_type": "Other"}, "motion_module_type"),
        ({"attention_head_dim": [2, 2]}, "attention_head_dim"),
    ],
)
def test_unsupported_config_is_refused(overrides, word):
    with pytest.raises(ValueError, match=word):
        UNet3DConditionModel(tiny_unet_config(**overrides))


def _inputs(batch=1, frames=3, h=16, w=16, audio=True):
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(batch, 13, frames, h, w, generator=g)
    ehs = torch.randn(batch, frames, 50, 384, generator=g) if audio else None
    return sample, torch.tensor(501), ehs


@torch.no_grad()
@pytest.mark.parametrize("hw", [(12, 20), (13, 18), (8, 8)])
def test_any_latent_size_runs(tiny, hw):
    """Sizes that are not multiples of 8 use forced upsampling sizes, as upstream."""
    sample, t, ehs = _inputs(frames=2, h=hw[0], w=hw[1])
    out = tiny(sample, t, ehs)
    assert out.shape == (1, 4, 2, *hw)
    assert torch.isfinite(out).all()


@torch.no_grad()
def test_without_audio_skips_cross_attention(tiny):
    sample, t, ehs = _inputs()
    silent = tiny(sample, t, None)
    assert silent.shape == (1, 4, 3, 16, 16) and torch.isfinite(silent).all()
    assert not torch.allclose(silent, tiny(sample, t, torch.zeros_like(ehs)))


@torch.no_grad()
def test_timestep_forms_agree(tiny):
    sample, _, ehs = _inputs(batch=2)
    a = tiny(sample, 501, ehs)
    b = tiny(sample, torch.tensor([501, 501]), ehs)
    c = tiny(sample, torch.tensor(501.0), ehs)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(a, c, atol=0, rtol=0)


def test_bad_inputs_are_refused_with_a_clear_message(tiny):
    sample, t, ehs = _inputs()
    with pytest.raises(ValueError, match="at most 24 frames"):
        tiny(torch.zeros(1, 13, 25, 8, 8), t, None)
    with pytest.raises(ValueError, match="sample must be"):
        tiny(torch.zeros(1, 9, 3, 8, 8), t, None)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        tiny(sample, t, ehs[:, :2])
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        tiny(sample, t, ehs[..., :100])
    with pytest.raises(ValueError, match="timestep"):
        tiny(sample, torch.tensor([1, 2, 3]), ehs)


@torch.no_grad()
def test_deepcache_state_from_another_shape_is_refused(tiny):
    sample, t, ehs = _inputs()
    state = DeepCacheState()
    tiny(sample, t, ehs, deepcache=state)
    with pytest.raises(ValueError, match="clear the state"):
        tiny(sample[:, :, :2], t, ehs[:, :2], deepcache=state)


@torch.no_grad()
def test_deepcache_cached_step_uses_the_cache(tiny):
    """A cached step depends on the cache and on the fresh input (through conv_in), not on the rest."""
    sample, t, ehs = _inputs()
    state = DeepCacheState()
    full = tiny(sample, t, ehs, deepcache=state)
    saved = state.cached.clone()
    cached = tiny(sample, t, ehs, deepcache=state)
    torch.testing.assert_close(cached, full, atol=1e-6, rtol=0)
    state.cached = saved * 0.5
    assert not torch.allclose(tiny(sample, t, ehs, deepcache=state), full)
    state.cached = saved
    assert not torch.allclose(tiny(sample + 1.0, t, ehs, deepcache=state), full)
