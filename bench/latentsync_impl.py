"""This pack as an implementation for the shared LatentSync benchmark harness (../shared/tools/baseline), and the
random full-size models both drivers use.

Harness use (upstream and this pack timed side by side, same inputs, fresh process per case), through the
import-safe entry ``bench/harness/latentsync_pack_bench.py``:
    bash bench/side_by_side.sh 560 "demo1=256:off,512:on" --impl upstream_impl --impl latentsync_pack_bench:Impl
Standalone: bench/bench_pipeline.py.

Face detection is replaced by the harness's precomputed alignment points (as for upstream), so both sides time
the same work. Models are random at full size (no weights can be downloaded on the benchmark machines).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from latentsync.configs import RESOLUTION_BY_VERSION, unet_config  # noqa: E402
from latentsync.models.attention import FeedForward  # noqa: E402
from latentsync.pipeline.loading import LipsyncModels  # noqa: E402
from latentsync.pipeline.runner import RunOptions, lipsync_file  # noqa: E402
from latentsync.pipeline.sampler import SamplerOptions  # noqa: E402
from latentsync.tiny_models import tiny_unet_config  # noqa: E402

FF_MAX_HIDDEN = FeedForward.max_hidden  # the library's part size; a case may set another (ff_max_hidden)


def random_models(resolution: int, device: torch.device, dtype: torch.dtype, seed: int = 0,
                  smoke: bool = False, vae_batch: int | None = None,
                  vae_pixel_budget: int | None = None) -> LipsyncModels:
    """Full-size U-Net (stage2), Whisper tiny encoder and sd-vae-ft-mse-shaped VAE with random weights
    (``smoke``: narrow versions of the same architectures, to check the plumbing on a CPU)."""
    from diffusers import AutoencoderKL

    from latentsync.models.unet import UNet3DConditionModel
    from latentsync.models.whisper import WhisperDims, WhisperEncoder
    from latentsync.pipeline.vae import DiffusersVAE

    torch.manual_seed(seed)
    config = tiny_unet_config() if smoke else unet_config("stage2")
    # the smoke VAE keeps sd-vae-ft-mse's two layers per block (tiny_models' VAE has one): only narrower
    vae_channels = [32, 32, 32, 32] if smoke else [128, 256, 512, 512]
    with torch.device(device):
        unet = UNet3DConditionModel(config)
        whisper = WhisperEncoder(WhisperDims())
        vae = AutoencoderKL(block_out_channels=vae_channels, down_block_types=["DownEncoderBlock2D"] * 4,
                            up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4,
                            sample_size=256)
    for module in (unet, vae):  # default inits leave some layers zero; give every weight a small random value
        with torch.no_grad():
            for p in module.parameters():
                if p.dim() > 1 and not bool(p.any()):
                    p.normal_(0, 0.02)
    unet = unet.to(dtype).eval().requires_grad_(False)
    vae = vae.to(dtype).eval().requires_grad_(False)
    return LipsyncModels(unet=unet, whisper=whisper.eval().requires_grad_(False), resolution=resolution,
                         vae=DiffusersVAE(vae, batch_size=vae_batch,
                                          **({"pixel_budget": vae_pixel_budget} if vae_pixel_budget else {})))


class Impl:
    """Harness adapter: builds the models once (not timed); ``run`` is one full lip-sync call."""

    group_of = {"audio": "audio_features", "decode_wait": "video_read", "align": "affine", "vae_encode": "vae_encode",
                "sample": "unet_loop", "vae_decode": "vae_decode", "composite": "restore", "encode_wait": "write_mux",
                "write_close": "write_mux"}

    def __init__(self, case: dict, rec, workdir: str):
        self.case, self.rec = case, rec
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[case.get("dtype", "fp16")]
        resolution = int(case.get("resolution", RESOLUTION_BY_VERSION["1.6"]))
        # speed settings: the case, then LATENTSYNC_BENCH_OPTS (JSON), then defaults (compiled, 2 chunks per call at 256)
        extra = {**json.loads(os.environ.get("LATENTSYNC_BENCH_OPTS", "{}")), **case}
        self.models = random_models(resolution, self.device, self.dtype, smoke=bool(case.get("smoke", False)),
                                    vae_batch=extra.get("vae_batch"),
                                    vae_pixel_budget=extra.get("vae_pixel_budget"))
        batch_chunks = int(extra.get("batch_chunks", 2 if resolution <= 256 else 1))
        self.options = RunOptions(
            sampler=SamplerOptions(steps=int(case.get("steps", 20)), guidance_scale=float(case.get("guidance", 1.5)),
                                   seed=int(case.get("seed", 1247)), deepcache=bool(case.get("deepcache", False)),
                                   batch_chunks=batch_chunks),
            length_policy="pingpong", crf=int(extra.get("crf", 18)), preset=extra.get("preset", "medium"),
            overwrite=True, window_frames=int(extra.get("window_frames", 32)), compile=bool(extra.get("compile", True)),
            encode_threads=int(extra.get("encode_threads", 0)),
            release_cache=extra.get("release_cache"),  # None: the pack's choice (bench_pipeline --keep/--release-cache)
            trim_host_heap=not extra.get("keep_host_heap", False),
        )
        # to compare the feed-forward's parts with one whole call (e.g. 1 << 62); every case sets it
        FeedForward.max_hidden = int(extra.get("ff_max_hidden") or FF_MAX_HIDDEN)
        self.compile_mode = extra.get("compile_mode")  # torch.compile's mode for the U-Net and VAE (None: default)
        if extra.get("compile_vae", True) is False:  # --compile covers the VAE; this keeps it eager (to compare)
            self.models.vae.fallback_reason = "kept eager (benchmark option compile_vae=false)"
        self.compile_s = self._warm_up(resolution) if self.options.compile else 0.0
        if extra.get("replay_tail") and hasattr(self.models.unet, "replay_short_chunks"):  # an experiment
            self.models.unet.replay_short_chunks = True  # the short last chunk's steps replayed as CUDA graphs
        if extra.get("tail_alone"):  # to compare, for this benchmark process
            from latentsync.pipeline.sampler import LipsyncSampler

            LipsyncSampler.interleave_tail = False  # the tail's steps after the last full group's, as before
        self.report = None

    def _warm_up(self, resolution: int) -> float:
        """Compile ahead of the timed call (the harness's warm-up clip has too few chunks to hit every shape)."""
        import time

        from latentsync.pipeline.compiled import maybe_compile, maybe_compile_vae
        from latentsync.pipeline.sampler import LipsyncSampler

        t0 = time.perf_counter()
        sampler_opts = self.options.sampler
        self.models.unet = maybe_compile(self.models.unet, True, device=self.device, frames=sampler_opts.chunk_frames,
                                         fixed_batch=sampler_opts.batch_chunks, mode=self.compile_mode)
        sampler = LipsyncSampler(self.models.unet, sampler_opts, latent_hw=(resolution // 8,) * 2, device=self.device,
                                 dtype=self.dtype)
        sampler.warm_up((50, 384))
        maybe_compile_vae(self.models.vae, True, device=self.device, mode=self.compile_mode)
        self.models.vae.warm_up(resolution)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    def run(self, video_path: str, audio_path: str, out_path: str, landmarks) -> dict:
        from latentsync.io.video import probe_video

        frames = probe_video(video_path).num_frames
        points = np.asarray([landmarks.for_frame(i) for i in range(frames)], np.float32)
        self.report = lipsync_file(self.models, self.models.vae, video_path, audio_path, out_path, self.options,
                                   device=self.device, dtype=self.dtype, points=points, timer=self.rec.stage)
        return {"n_out_frames": self.report.frames}

    def details(self) -> dict:
        unet = self.models.unet
        return {"seconds_inside": self.report.seconds if self.report else None, "compile_warm_up_s": self.compile_s,
                "compile_fallback": getattr(unet, "fallback_reason", None), "compiled": hasattr(unet, "fallback_reason"),
                "batch_chunks": self.options.sampler.batch_chunks, "window_frames": self.options.window_frames,
                "vae_compiled": self.models.vae.compiled,
                "vae_compile_fallback": getattr(self.models.vae, "fallback_reason", None)}
