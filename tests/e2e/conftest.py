"""Shared fixtures for the end-to-end tests: tiny random models in the real file formats, a face clip, media variants."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "integration"))

import tiny_models  # noqa: E402
from media_variants import session_variants, write_wav  # noqa: E402

CLIP_FRAMES = 12
SPEECH_SECONDS = 0.72  # 36 whisper rows -> upstream's 20 output frames at 25 fps


@pytest.fixture(scope="session")
def models(tmp_path_factory, fixtures_dir):
    """Tiny U-Net (upstream .pt + sidecar config, 64 px faces), small whisper .pt, and two VAEs: the fixture set's
    tiny diffusers AutoencoderKL as a diffusers folder (fast) and, lazily, a full-size sd-vae-ft-mse-format file."""
    root = tmp_path_factory.mktemp("models")
    ls_dir = root / "latentsync"
    unet = ls_dir / tiny_models.write_unet(ls_dir, fixtures_dir)
    config = json.loads((fixtures_dir / "unet_tiny_config.json").read_text())
    whisper = ls_dir / tiny_models.write_whisper(ls_dir, width=int(config["cross_attention_dim"]))

    from diffusers import AutoencoderKL
    from safetensors.torch import load_file

    manifest = json.loads((fixtures_dir / "manifest.json").read_text())
    vae = AutoencoderKL(**manifest["files"]["pipeline_e2e.safetensors"]["stats"]["vae_config"])
    vae.load_state_dict({k: v.float() for k, v in load_file(str(fixtures_dir / "e2e_vae_tiny_weights.safetensors")).items()})
    tiny_vae = root / "vae" / "tiny_vae"
    vae.save_pretrained(str(tiny_vae))

    def full_vae() -> Path:
        path = root / "vae" / tiny_models.VAE_NAME
        if not path.exists():
            tiny_models.write_vae(root / "vae")
        return path

    return {"root": root, "unet": unet, "whisper": whisper, "vae": tiny_vae, "full_vae": full_vae}


@pytest.fixture(scope="session")
def clip(tmp_path_factory, media):
    """12 frames of demo1's face region (256 px, 25 fps) and 0.72 s of its speech (16 kHz mono wav)."""
    from latentsync.audio.waveform import load_audio

    folder = tmp_path_factory.mktemp("clip")
    video = folder / "face.mp4"
    with av.open(str(media / "demo1_video.mp4")) as src, av.open(str(video), "w") as dst:
        stream = dst.add_stream("libx264", rate=25)
        stream.width = stream.height = 256
        stream.pix_fmt = "yuv420p"
        for n, frame in enumerate(src.decode(video=0)):
            if n == CLIP_FRAMES:
                break
            img = frame.to_image().crop((352, 480, 800, 928)).resize((256, 256))
            for packet in stream.encode(av.VideoFrame.from_image(img)):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    wave, sr = load_audio(str(media / "demo1_audio.wav"))
    audio = folder / "speech.wav"
    write_wav(audio, (wave[:, : int(SPEECH_SECONDS * sr)].numpy() * 32767).astype(np.int16), sr)
    return video, audio


@pytest.fixture(scope="session")
def variants(media, tmp_path_factory):
    return session_variants(media, tmp_path_factory)


@pytest.fixture(scope="session")
def loaded(models):
    """The tiny models loaded once (CPU, fp32) for in-process runs of the file pipeline."""
    from latentsync.pipeline.loading import load_models

    return load_models(str(models["unet"]), str(models["whisper"]), device="cpu", dtype=torch.float32,
                       vae_path=str(models["vae"]))
