"""VAE encode/decode speed and peak memory per face on the GPU: plain layout, channels-last, and compiled.

    python bench/vae_speed.py [--cases 256:8,256:4,512:2] [--compile 256:8] [--variants plain,compiled] [--json F]

sd-vae-ft-mse-shaped AutoencoderKL with random weights, fp16, through :class:`latentsync.pipeline.vae.DiffusersVAE`
(what the file pipeline calls). ``--cases`` are resolution:faces-per-call; ``--compile`` lists the cases also timed
with the encoder and decoder compiled (``DiffusersVAE.compile``; each compiles for a while). Median of 7 CUDA-event
timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    from diffusers_import import prefer_image_diffusers

    prefer_image_diffusers()  # the GPU image's diffusers, without its broken transformers / peft
    from latentsync_impl import random_models
    from unet_speed import median_ms

    from latentsync.pipeline.vae import DiffusersVAE

    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="256:8,256:4,512:2")
    ap.add_argument("--compile", default="256:8")
    ap.add_argument("--variants", default="plain,channels_last,compiled",
                    help="of plain, channels_last, compiled, compiled_channels_last")
    ap.add_argument("--json")
    args = ap.parse_args()
    dev, dtype = torch.device("cuda"), torch.float16
    module = random_models(256, dev, dtype).vae.vae
    rows = []
    compiled_cases = set(filter(None, args.compile.split(",")))
    known = {"plain": (False, False), "channels_last": (True, False), "compiled": (False, True),
             "compiled_channels_last": (True, True)}
    variants = [(name, *known[name]) for name in args.variants.split(",")
                if not (known[name][1] and not compiled_cases)]
    for name, cl, comp in variants:
        layout = torch.channels_last if cl else torch.contiguous_format  # DiffusersVAE follows the module's layout
        module.to(memory_format=layout)
        vae = DiffusersVAE(module)
        if comp:
            vae.compile()  # what --compile runs in the pipeline: static shapes, eager fallback
        for case in args.cases.split(","):
            if comp and case not in compiled_cases:
                continue
            res, n = (int(v) for v in case.split(":"))
            vae.batch_size = n
            x = (torch.rand(n, 3, res, res, device=dev, dtype=dtype) * 2 - 1).contiguous(memory_format=layout)
            z = torch.randn(n, 4, res // 8, res // 8, device=dev, dtype=dtype).contiguous(memory_format=layout)
            with torch.inference_mode():
                t0 = time.perf_counter()
                vae.encode_moments(x)
                vae.decode(z)
                torch.cuda.synchronize()
                first_s = time.perf_counter() - t0
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                enc = median_ms(lambda: vae.encode_moments(x), iters=7)
                dec = median_ms(lambda: vae.decode(z), iters=7)
                peak = (torch.cuda.max_memory_allocated() - base) / 2**20
            row = {"variant": name, "res": res, "faces": n, "encode_ms_per_face": enc / n,
                   "decode_ms_per_face": dec / n, "peak_extra_MiB": round(peak, 1), "first_call_s": round(first_s, 2),
                   "compile_fallback": vae.fallback_reason}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
