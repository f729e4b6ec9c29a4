"""Model and sampling constants of LatentSync 1.5 / 1.6 (the ``model:`` section of upstream's stage2 yaml).

Both releases share one U-Net architecture; they differ only in the face resolution they were trained at.
"""

from __future__ import annotations

import copy
from typing import Any

# The `model:` section of configs/unet/stage2.yaml (== stage2_512.yaml). "attention_head_dim" is the head count.
UNET_STAGE2: dict[str, Any] = {
    "act_fn": "silu",
    "add_audio_layer": True,
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 384,
    "down_block_types": ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"],
    "mid_block_type": "UNetMidBlock3DCrossAttn",
    "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 13,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "resnet_time_scale_shift": "default",
    "use_motion_module": True,
    "motion_module_resolutions": [1, 2, 4, 8],
    "motion_module_mid_block": False,
    "motion_module_decoder_only": False,
    "motion_module_type": "Vanilla",
    "motion_module_kwargs": {
        "num_attention_heads": 8,
        "num_transformer_block": 1,
        "attention_block_types": ["Temporal_Self", "Temporal_Self"],
        "temporal_position_encoding": True,
        "temporal_position_encoding_max_len": 24,
        "temporal_attention_dim_div": 1,
        "zero_initialize": True,
    },
}

# stage2_efficient.yaml: the training recipe without motion modules in the down blocks.
UNET_STAGE2_EFFICIENT: dict[str, Any] = {**copy.deepcopy(UNET_STAGE2), "motion_module_decoder_only": True}

# Release -> face resolution (the only difference between 1.5 and 1.6).
RESOLUTION_BY_VERSION: dict[str, int] = {"1.5": 256, "1.6": 512}
DEFAULT_VERSION = "1.6"  # the release the command line, the presets' default and the loader node pick

# configs/scheduler_config.json (diffusers DDIMScheduler).
SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}

VAE_SCALING_FACTOR = 0.18215
VAE_SHIFT_FACTOR = 0.0
LATENT_CHANNELS = 4
VAE_DOWNSCALE = 8

NUM_FRAMES_PER_CHUNK = 16  # data.num_frames
AUDIO_SAMPLE_RATE = 16000  # whisper's and SyncNet's rate: every waveform is resampled to it
SYNC_GATE_RETRIES = 2  # the sync gate's new seeds per failing segment (CLI --sync-retries, Video File node)
UPSTREAM_FPS = 25.0  # upstream's video rate: still images, unconnected fps inputs, SyncNet's evaluation grid
AUDIO_FEAT_LENGTH = (2, 2)  # data.audio_feat_length: feature rows = 2*left before ... 2*(right+1) after

# Sampling defaults of inference.sh / gradio_app.py.
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 1.5
DEFAULT_SEED = 1247
DEFAULT_DEEPCACHE = True  # inference.sh and gradio_app.py pass enable_deepcache; the nodes and presets agree
LENGTH_POLICIES: tuple[str, ...] = ("pingpong", "loop", "trim", "hold_last", "pad_audio")  # pipeline.length
DEEPCACHE_INTERVAL = 3
DEEPCACHE_BRANCH = 0


def unet_config(variant: str = "stage2") -> dict[str, Any]:
    """A fresh copy of a released U-Net config ("stage2" for 1.5/1.6, or "stage2_efficient")."""
    table = {"stage2": UNET_STAGE2, "stage2_512": UNET_STAGE2, "stage2_efficient": UNET_STAGE2_EFFICIENT}
    if variant not in table:
        raise ValueError(f"Unknown U-Net config {variant!r}; expected one of {sorted(table)}")
    return copy.deepcopy(table[variant])
