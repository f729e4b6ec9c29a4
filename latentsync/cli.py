"""``python -m latentsync``: lip-sync a video (or still image) to an audio file, one pair or a whole batch.

The same pipeline as the ComfyUI nodes, without ComfyUI. With no inputs it runs a demo on the bundled sample
(a public-domain photo and a short synthesised speech clip).

Exit codes: 0 done; 2 bad arguments; 3 model files missing (offline or downloads off); 4 an input could not be
used; 5 a batch finished with failed items; 130 interrupted; 1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_MODELS, EXIT_INPUT, EXIT_BATCH, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
ASSETS = Path(__file__).resolve().parent / "assets"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus")

log = logging.getLogger("latentsync")


def default_models_dir() -> str:
    """$LATENTSYNC_MODELS, else ComfyUI's models folder when the pack sits in custom_nodes, else ~/.cache."""
    env = os.environ.get("LATENTSYNC_MODELS")
    if env:
        return env
    pack = Path(__file__).resolve().parents[1]
    comfy_models = pack.parent.parent / "models"
    if pack.parent.name == "custom_nodes" and comfy_models.is_dir():
        return str(comfy_models)
    return str(Path.home() / ".cache" / "latentsync" / "models")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m latentsync",
        description="LatentSync 1.5/1.6 lip-sync: repaint the mouth of a talking-head video to match an audio track.",
        epilog="With no --video/--audio/--batch, runs a demo on the bundled sample and writes latentsync_demo.mp4.",
    )
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("--video", "-v", help="input video file, or a still image (png/jpg/webp)")
    io.add_argument("--audio", "-a", help="driving audio file (wav, mp3, m4a, flac, ogg, or a video's audio track)")
    io.add_argument("--output", "-o", help="output mp4 (default: <video stem>_lipsync.mp4 beside the video)")
    io.add_argument("--batch", help="a folder of videos (each with a same-stem audio file beside it) or a list file "
                    "with one 'video<TAB>audio[<TAB>output]' line per job")
    io.add_argument("--output-dir", help="where batch outputs go (default: beside each video)")
    io.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip / refuse)")
    m = p.add_argument_group("models")
    m.add_argument("--models-dir", default=None, help="models root (ComfyUI layout: latentsync/1.6/latentsync_unet.pt, "
                   "latentsync/whisper/tiny.pt, vae/sd-vae-ft-mse.safetensors); default: %(default)s")
    m.add_argument("--version", choices=["1.5", "1.6"], default="1.6", help="LatentSync release: 1.5 (256 px) or 1.6 (512 px)")
    m.add_argument("--unet", help="explicit U-Net checkpoint (overrides --version's default file)")
    m.add_argument("--whisper", help="explicit whisper checkpoint (default: latentsync/whisper/tiny.pt)")
    m.add_argument("--vae", help="explicit VAE (diffusers folder or .safetensors)")
    m.add_argument("--no-download", action="store_true", help="never download missing model files")
    s = p.add_argument_group("sampling")
    s.add_argument("--steps", type=int, default=20, help="DDIM steps (default 20)")
    s.add_argument("--guidance", type=float, default=1.5, help="classifier-free guidance scale; 1.0 turns it off (default 1.5)")
    s.add_argument("--seed", type=int, default=1247, help="random seed; -1 for a random one (default 1247)")
    s.add_argument("--deepcache", action="store_true", help="DeepCache (interval 3, branch 0), ~2x faster, as upstream's app")
    s.add_argument("--noise-on-cpu", action="store_true", help="draw noise on the CPU (same result on any device)")
    s.add_argument("--length-policy", default="pingpong", choices=["pingpong", "loop", "trim", "hold_last", "pad_audio"],
                   help="when audio and video lengths differ (default pingpong, as upstream)")
    s.add_argument("--keep-silent-mouth", action="store_true", help="keep the original mouth where the audio is silent")
    s.add_argument("--posterior-mean", action="store_true",
                   help="use the VAE posterior mean instead of a random sample (upstream samples)")
    f = p.add_argument_group("faces")
    f.add_argument("--detector", default="auto", help="auto (insightface when its files are present, else the bundled "
                   "offline detector), insightface, or the offline detector's name")
    f.add_argument("--face-index", default="largest", help="'largest' or the index of the face, left to right")
    r = p.add_argument_group("runtime")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps ...")
    r.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"], help="weights dtype (auto: fp16 on modern GPUs)")
    r.add_argument("--compile", action="store_true",
                   help="torch.compile the U-Net: ~1.6x faster steps after a one-time compile of 1-2 min (needs Triton on "
                        "GPUs; falls back to uncompiled when it cannot)")
    r.add_argument("--batch-chunks", type=int, default=0,
                   help="16-frame chunks per U-Net call; same result, more VRAM (default 0 = auto: 2 at 256 px on a GPU, else 1)")
    r.add_argument("--crf", type=int, default=18, help="H.264 quality, lower is better (default 18)")
    r.add_argument("--preset", default="medium", help="x264 preset: ultrafast ... veryslow (default medium)")
    r.add_argument("--fps", type=float, default=25.0, help="frame rate for still-image inputs (default 25)")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar, errors only")
    return p


class Progress:
    """A one-line progress bar on stderr (tqdm when available)."""

    def __init__(self, enabled: bool, label: str):
        self.enabled = enabled
        self.label = label
        self.bars: dict[str, object] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            if done == total:
                print(f"{self.label}: {stage} {done}/{total}", file=sys.stderr)
            return
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=f"{self.label} {stage}", unit="", leave=False, file=sys.stderr)
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def batch_jobs(spec: str, output_dir: Optional[str]) -> list[tuple[str, str, str]]:
    """Jobs from a folder (video + same-stem audio) or a list file (video, audio[, output] per line)."""
    jobs = []
    path = Path(spec)
    if path.is_dir():
        for video in sorted(path.iterdir()):
            if video.suffix.lower() not in VIDEO_SUFFIXES + (".png", ".jpg", ".jpeg", ".webp"):
                continue
            audio = next((video.with_suffix(s) for s in AUDIO_SUFFIXES if video.with_suffix(s).is_file()), None)
            if audio is None:
                log.warning("skipping %s: no audio file with the same name", video)
                continue
            out_dir = Path(output_dir) if output_dir else video.parent
            jobs.append((str(video), str(audio), str(out_dir / f"{video.stem}_lipsync.mp4")))
    elif path.is_file():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [x.strip() for x in (line.split("\t") if "\t" in line else line.split(","))]
            if len(parts) < 2:
                raise ValueError(f"{spec}:{n}: expected 'video<TAB>audio[<TAB>output]', got {line!r}")
            video, audio = parts[0], parts[1]
            out = parts[2] if len(parts) > 2 else str(Path(output_dir or Path(video).parent) / f"{Path(video).stem}_lipsync.mp4")
            jobs.append((video, audio, out))
    else:
        raise FileNotFoundError(f"--batch {spec}: no such folder or list file")
    return jobs


def resolve_device(name: str):
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def load_everything(args: argparse.Namespace, device, dtype):
    """Find (or download) the model files and load them; returns (models, vae)."""
    from . import model_files as mf
    from .pipeline.models import load_models

    root = args.models_dir or default_models_dir()
    specs, chosen = [], {}
    unet_spec = mf.UNET_FILES[args.version]
    for spec, explicit in ((unet_spec, args.unet), (mf.WHISPER_TINY, args.whisper), (mf.VAE_FT_MSE, args.vae)):
        if explicit:
            if not os.path.exists(explicit):
                raise FileNotFoundError(f"model file not found: {explicit}")
            chosen[spec.key] = explicit
        else:
            specs.append(spec)
    paths = dict(chosen)
    paths.update(mf.ensure_files(specs, root, allow_download=not args.no_download))
    mf.ensure_detector_files(args.detector, [root], allow_download=not args.no_download)
    models = load_models(paths[unet_spec.key], paths[mf.WHISPER_TINY.key], version=args.version, device=device,
                         dtype=dtype, vae_path=paths[mf.VAE_FT_MSE.key])
    return models, models.vae


def run(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")

    if args.batch and (args.video or args.audio):
        parser.error("use either --batch or --video/--audio")
    if bool(args.video) != bool(args.audio):
        parser.error("--video and --audio go together")
    if args.steps < 1 or args.guidance < 1.0 or not 0 <= args.crf <= 51 or args.fps <= 0:
        parser.error("need --steps >= 1, --guidance >= 1.0, --crf within 0..51, --fps > 0")
    face_index: object = args.face_index
    if face_index != "largest":
        try:
            face_index = int(face_index)
        except ValueError:
            parser.error("--face-index must be 'largest' or an integer")

    if args.batch:
        try:
            jobs = batch_jobs(args.batch, args.output_dir)
        except (OSError, ValueError) as exc:
            log.error("%s", exc)
            return EXIT_USAGE
    elif args.video:
        out = args.output or str(Path(args.video).with_name(Path(args.video).stem + "_lipsync.mp4"))
        jobs = [(args.video, args.audio, out)]
    else:
        demo_out = args.output or "latentsync_demo.mp4"
        log.info("No inputs given: running the demo (%s + %s) -> %s", "astronaut.jpg", "demo_speech.flac", demo_out)
        jobs = [(str(ASSETS / "astronaut.jpg"), str(ASSETS / "demo_speech.flac"), demo_out)]

    import torch

    from .model_files import ModelFilesMissing
    from .pipeline.models import pick_dtype
    from .pipeline.runner import RunOptions, lipsync_file
    from .pipeline.sampler import SamplerOptions

    device = resolve_device(args.device)
    dtype = pick_dtype(device, args.dtype)
    try:
        models, vae = load_everything(args, device, dtype)
    except ModelFilesMissing as exc:
        log.error("%s", exc)
        return EXIT_MODELS
    except (OSError, ValueError) as exc:
        log.error("could not load the models: %s", exc)
        return EXIT_MODELS
    except ImportError as exc:
        log.error("%s", exc)
        return EXIT_ERROR

    seed = None if args.seed == -1 else args.seed
    batch_chunks = args.batch_chunks or (2 if models.resolution <= 256 and torch.device(device).type == "cuda" else 1)
    options = RunOptions(
        sampler=SamplerOptions(steps=args.steps, guidance_scale=args.guidance, seed=seed, deepcache=args.deepcache,
                               noise_device="cpu" if args.noise_on_cpu else None,
                               posterior="mean" if args.posterior_mean else "sample", batch_chunks=batch_chunks),
        length_policy=args.length_policy, detector=args.detector, face_index=face_index,
        keep_silent_mouth=args.keep_silent_mouth, crf=args.crf, preset=args.preset, still_fps=args.fps, overwrite=args.overwrite,
        models_dirs=[args.models_dir or default_models_dir()], compile=args.compile,
    )
    if args.compile:  # one compiled wrapper for every job of a batch
        from .pipeline.compiled import maybe_compile

        models.unet = maybe_compile(models.unet, True, device=device, frames=options.sampler.chunk_frames,
                                    fixed_batch=batch_chunks)
    failed = 0
    for n, (video, audio, out) in enumerate(jobs, 1):
        label = f"[{n}/{len(jobs)}] {Path(video).name}"
        if os.path.exists(out) and not args.overwrite:
            if args.batch:
                log.info("%s: %s exists, skipping (finished earlier)", label, out)
                continue
            log.error("%s exists; pass --overwrite or choose another --output", out)
            return EXIT_INPUT
        progress = Progress(not args.quiet, label)
        try:
            report = lipsync_file(models, vae, video, audio, out, options, device=device, dtype=dtype, progress=progress)
            log.info("%s", report.summary())
        except KeyboardInterrupt:
            progress.close()
            log.error("interrupted")
            return EXIT_INTERRUPTED
        except (OSError, ValueError, RuntimeError) as exc:
            progress.close()
            failed += 1
            log.error("%s failed: %s", label, exc)
            if not args.batch:
                return EXIT_INPUT if isinstance(exc, (OSError, ValueError)) else EXIT_ERROR
        finally:
            progress.close()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if failed:
        log.error("%d of %d jobs failed", failed, len(jobs))
        return EXIT_BATCH
    return EXIT_OK


def main() -> None:
    start = time.monotonic()
    code = run()
    log.debug("finished in %.1f s", time.monotonic() - start)
    sys.exit(code)
