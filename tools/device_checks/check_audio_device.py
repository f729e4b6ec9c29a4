"""Whisper features on a device vs the upstream golden data, next to upstream's own H200 numbers.

    python tools/device_checks/check_audio_device.py            # CUDA: fp32, fp16 (upstream's GPU default), bf16
    python tools/device_checks/check_audio_device.py --cpu      # CPU fp32 + bf16 (sanity run without a GPU)

Fixtures: --fixtures or $LATENTSYNC_PARITY_FIXTURES (default ../shared/fixtures/upstream);
demo wavs for the long clip: --media or $LATENTSYNC_MEDIA (default ../shared/media).
Prints one line per (dtype, clip) with max/mean |ours - golden| and the value upstream measured for the same
setting in device_checks_observed.json["audio/cuda"], then a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import wave
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from latentsync.audio.features import whisper_features  # noqa: E402
from latentsync.models.whisper import load_whisper_encoder  # noqa: E402

OBSERVED_KEYS = {"float32": "fp32", "float16": "default(fp16 on GPU)"}


def _wav16(path: Path) -> torch.Tensor:
    """A 16 kHz mono s16 wav with the standard library (the GPU image has no PyAV)."""
    with wave.open(str(path)) as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit PCM")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return torch.from_numpy(pcm.astype(np.float32) / 32768)


def _clip_from_spec(spec: str, media: Path) -> torch.Tensor:
    pieces = []
    for item in spec.split(","):
        name, start, stop = re.fullmatch(r"\s*([^\[\]]+)\[(\d*):(\d*)\]\s*", item).groups()
        with wave.open(str(media / name)) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        pieces.append(pcm[int(start or 0): int(stop) if stop else None])
    return torch.from_numpy(np.concatenate(pieces).astype(np.float32) / 32768)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU instead of CUDA")
    parser.add_argument("--fixtures", type=Path, default=Path(os.environ.get("LATENTSYNC_PARITY_FIXTURES", REPO.parent / "shared/fixtures/upstream")))
    parser.add_argument("--media", type=Path, default=Path(os.environ.get("LATENTSYNC_MEDIA", REPO.parent / "shared/media")))
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per setting (best is printed)")
    args = parser.parse_args()

    if not args.cpu and not torch.cuda.is_available():
        sys.exit("CUDA is not available; use --cpu")
    device = torch.device("cpu" if args.cpu else "cuda")
    dtypes = [torch.float32, torch.bfloat16] if args.cpu else [torch.float32, torch.float16, torch.bfloat16]

    from safetensors.torch import load_file

    manifest = json.loads((args.fixtures / "manifest.json").read_text())
    entry = manifest["files"]["audio_features.safetensors"]
    golden = load_file(str(args.fixtures / "audio_features.safetensors"))
    observed = json.loads((args.fixtures / "device_checks_observed.json").read_text()).get("audio/cuda", {})
    clips = {
        "short": _wav16(args.fixtures / entry["stats"]["short"]["wav"]),
        "long": _clip_from_spec(entry["generation_params"]["long_spec"], args.media),
    }
    encoder = load_whisper_encoder(args.fixtures / entry["stats"]["checkpoint"]["file"], device=device)
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}")

    summary = {}
    for dtype in dtypes:
        name = str(dtype).removeprefix("torch.")
        for clip, wav in clips.items():
            whisper_features(encoder, wav, device=device, dtype=dtype)  # warm-up
            best = float("inf")
            for _ in range(max(1, args.repeats)):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                features = whisper_features(encoder, wav, device=device, dtype=dtype)
                best = min(best, time.perf_counter() - start)
            diff = (features - golden[f"{clip}_features"]).abs()
            upstream = observed.get(f"{OBSERVED_KEYS.get(name, name)}/{clip}", {})
            summary[f"{name}/{clip}"] = {
                "max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "seconds": best,
                "upstream_observed_max_abs": upstream.get("max_abs"),
            }
            print(
                f"{name:>9} {clip:>5}: max_abs {float(diff.max()):.3e}  mean_abs {float(diff.mean()):.3e}  "
                f"(upstream on H200: max_abs {upstream.get('max_abs', float('nan')):.3e})  {best * 1000:.1f} ms"
            )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
