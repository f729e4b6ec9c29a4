"""Run the pipeline_e2e parity fixture on a device in fp32/fp16/bf16 and print how far it lands from upstream's
CPU fp32 golden data (final latents rel-L2 with DeepCache on/off, output frames uint8 difference).

    python tools/device_checks/check_pipeline_device.py --fixtures ../shared/fixtures/upstream [--device cuda] [--json out.json]
        [--compile] [--batch-chunks N]

``--compile`` runs the U-Net and the VAE through torch.compile (Inductor; on a CPU it needs a C++ compiler), as the
pipeline does, and reports whether the compiled graphs ran or fell back. It then runs everything again twice, with the
short last chunk's steps replayed as CUDA graphs (an experiment) and taking turns with the full chunk's (the
default), against its steps run alone after the full chunk's. Neither should change a bit
(``replay_vs_plain_max_abs``, ``interleave_vs_plain_max_abs``).
``--batch-chunks`` puts several 16-frame chunks into one U-Net call. Each dtype is its own graph, hence its own
compile: ask only for the dtypes you need (``--dtypes fp16``).

Needs torch, safetensors, diffusers (the tiny VAE is a diffusers AutoencoderKL) and this repository.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))  # diffusers_import

from diffusers_import import autoencoder_kl  # noqa: E402  (before anything imports transformers)
from safetensors.torch import load_file  # noqa: E402

from latentsync.audio.windows import frame_window_indices, frame_windows, upstream_frame_count  # noqa: E402
from latentsync.face import align, restore  # noqa: E402
from latentsync.face.mask import mask_from_image  # noqa: E402
from latentsync.models.unet import UNet3DConditionModel, load_unet_state_dict  # noqa: E402
from latentsync.pipeline.compiled import CompiledUNet, maybe_compile, maybe_compile_vae  # noqa: E402
from latentsync.pipeline.length import plan_length  # noqa: E402
from latentsync.pipeline.sampler import LipsyncSampler, SamplerOptions, decode_faces, encode_faces  # noqa: E402
from latentsync.pipeline.vae import DiffusersVAE  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtypes", default="fp32,fp16,bf16")
    ap.add_argument("--json")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--batch-chunks", type=int, default=1)
    args = ap.parse_args()
    fx = args.fixtures
    manifest = json.load(open(os.path.join(fx, "manifest.json")))
    entry = manifest["files"]["pipeline_e2e.safetensors"]
    params = entry["generation_params"]
    data = load_file(os.path.join(fx, "pipeline_e2e.safetensors"))
    masks = load_file(os.path.join(fx, "affine_restore_mask.safetensors"))
    device = torch.device(args.device)

    config = json.load(open(os.path.join(fx, "unet_tiny_config.json")))
    state = {k: v.float() for k, v in load_file(os.path.join(fx, "unet_tiny_weights.safetensors")).items()}
    AutoencoderKL = autoencoder_kl()
    vae_state = {k: v.float() for k, v in load_file(os.path.join(fx, "e2e_vae_tiny_weights.safetensors")).items()}

    resolution = int(params["height_width"])
    features = data["whisper_features"].float()
    n_out = upstream_frame_count(features.shape[0], 25.0)
    plan = plan_length(data["video_frames"].shape[0], n_out, "pingpong")
    matrices = align.matrices_from_points(data["landmarks3"].float(), resolution, smoother=align.AlignmentSmoother())
    frames_src = data["video_frames"].to(device)
    faces = align.warp_faces(frames_src, matrices, resolution)[plan.source_index.to(device)]
    frames = frames_src[plan.source_index.to(device)]
    mats = matrices[plan.source_index]
    windows = frame_windows(features, frame_window_indices(features.shape[0], n_out, 25.0))
    mask = mask_from_image(masks["mask_256_u8"], resolution)
    table = {"torch": torch.__version__, "compile": args.compile, "batch_chunks": args.batch_chunks,
             "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    for name in args.dtypes.split(","):
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]
        unet = UNet3DConditionModel(config)
        load_unet_state_dict(unet, state)
        unet = unet.to(device, dtype).eval()
        unet = maybe_compile(unet, args.compile, device=device, frames=params["num_frames"],
                             fixed_batch=args.batch_chunks)
        vae_model = AutoencoderKL(**entry["stats"]["vae_config"])
        vae_model.load_state_dict(vae_state)
        vae = maybe_compile_vae(DiffusersVAE(vae_model.to(device, dtype).eval()), args.compile, device=device)
        interleave_default = LipsyncSampler.interleave_tail
        for deepcache in (True, False):
            opts = SamplerOptions(steps=params["num_inference_steps"], guidance_scale=params["guidance_scale"],
                                  seed=params["seed"], deepcache=deepcache, noise_device="cpu",
                                  chunk_frames=params["num_frames"], batch_chunks=args.batch_chunks)

            def generate(replay: bool = False, interleave: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
                """Final latents and decoded faces. The short last chunk's experiments: ``replay``, its U-Net steps
                replayed as CUDA graphs (CompiledUNet.replay_short_chunks); ``interleave``, its steps taking turns
                with the full chunk's (LipsyncSampler.interleave_tail, the default); neither: run alone, after it."""
                if isinstance(unet, CompiledUNet):
                    unet.replay_short_chunks = replay
                LipsyncSampler.interleave_tail = interleave
                sampler = LipsyncSampler(unet, opts, latent_hw=(resolution // 8,) * 2, device=device, dtype=dtype)
                encoded = encode_faces(vae, faces, mask.to(device))
                with torch.no_grad():
                    latents = sampler.sample(encoded, windows.to(device))
                return latents, decode_faces(vae, latents, faces, mask.to(device))

            t0 = time.time()
            latents, pasted = generate()
            key = "deepcache_final_latents" if deepcache else "nodeepcache_final_latents"
            want = data[key][0].permute(1, 0, 2, 3).to(device)
            rel = float((latents.float() - want).norm() / want.norm())
            row = {"final_latents_rel_l2": rel, "seconds": time.time() - t0}
            if isinstance(unet, CompiledUNet):
                row["compiled"] = unet.fallback_reason or "ran compiled"
            if args.compile:
                row["vae_compiled"] = vae.fallback_reason or ("ran compiled" if vae.compiled else "eager")
                # both run the kernels that run without them, in the same order per chunk: equal bit for bit
                for experiment in ("replay", "interleave"):
                    other_latents, other_pasted = generate(**{experiment: True})
                    row[f"{experiment}_vs_plain_max_abs"] = max(float((latents - other_latents).abs().max()),
                                                                float((pasted - other_pasted).abs().max()))
                LipsyncSampler.interleave_tail = interleave_default
            if deepcache:
                out = restore.composite(frames, pasted.float(), mats, resolution)
                diff = (out.cpu().int() - data["deepcache_output_frames"].int()).abs()
                row.update(frames_max_abs=int(diff.max()), frames_frac_differing=float((diff > 0).float().mean()))
            table[f"{name}/{'deepcache' if deepcache else 'nodeepcache'}"] = row
            print(name, "deepcache" if deepcache else "nodeepcache", json.dumps(row), flush=True)
            if args.json:  # after every row, so a timeout keeps what was measured
                with open(args.json, "w") as fh:
                    json.dump(table, fh, indent=1)


if __name__ == "__main__":
    main()
