"""``latentsync selftest``: the whole pipeline on the bundled sample with tiny random models, without a download.

Tiny models are written in the real file formats (upstream's U-Net .pt with a config sidecar, an openai-whisper
.pt, a diffusers VAE folder) into a temporary folder, loaded by the real loaders, and the bundled photo is
lip-synced to the bundled speech through the same file pipeline as ``latentsync --video ... --audio ...`` (face
detection, Whisper features, DDIM, VAE, paste-back, H.264 + AAC). The output is then checked. It proves that
torch, PyAV, diffusers and the offline face detector work together here; the mouth it paints is noise, since the
models are random. Under a minute on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from .configs import UPSTREAM_FPS

STEPS = 3


@dataclass
class Check:
    """One verified property of the run."""

    name: str
    passed: bool
    detail: str = ""


@dataclass
class SelftestResult:
    """What ran, what was checked and how long it took."""

    device: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    output: Optional[str] = None

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)


def _timed(result: SelftestResult, name: str, action: Callable[[], str]) -> bool:
    """Run ``action`` (returns a detail line) as one check; an exception fails the check with its message."""
    start = time.monotonic()
    try:
        detail = action()
    except Exception as exc:  # any failure is the answer the selftest exists to give
        result.checks.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
        return False
    result.checks.append(Check(name, True, f"{detail} [{time.monotonic() - start:.1f} s]"))
    return True


def _output_checks(result: SelftestResult, out: str, report, image_path: Path, audio_seconds: float) -> None:
    """Frame count, rate, size and audio of the mp4; faces found; pixels outside the face kept."""
    import numpy as np
    from PIL import Image

    from .audio.waveform import load_audio
    from .io.video import iter_video_frames, probe_video

    info = probe_video(out)
    with Image.open(image_path) as im:
        source = np.asarray(im.convert("RGB"))
    wave, sr = load_audio(out)
    seconds = wave.shape[-1] / sr
    expected = round(audio_seconds * UPSTREAM_FPS)
    ok = (info.num_frames == report.frames and abs(info.num_frames - expected) <= 2 and info.fps == UPSTREAM_FPS
          and (info.height, info.width) == source.shape[:2] and info.has_audio
          and abs(seconds - info.num_frames / UPSTREAM_FPS) < 0.1)
    result.checks.append(Check(
        "output video", ok, f"{info.num_frames} frames (audio: {audio_seconds:.2f} s -> ~{expected}) at "
                            f"{float(info.fps):g} fps, {info.width}x{info.height}, audio {seconds:.2f} s"))
    gaps = len(report.missing_face_frames)
    result.checks.append(Check("face in every frame", gaps == 0, f"detector {report.detector}; "
                               f"{report.frames - gaps}/{report.frames} frames with a face"))
    frame = next(iter_video_frames(out, count=1, batch=1))[0][0].astype(np.int16)
    diff = np.abs(frame - source.astype(np.int16)).mean(axis=2)
    corner = float(diff[:64, :64].mean())
    blocks = diff[: diff.shape[0] // 16 * 16, : diff.shape[1] // 16 * 16]
    blocks = blocks.reshape(blocks.shape[0] // 16, 16, blocks.shape[1] // 16, 16).mean(axis=(1, 3))
    strongest = float(blocks.max())
    result.checks.append(Check(
        "paste-back", corner < 4.0 and strongest > 8.0,
        f"away from the face the frame is the input's (mean difference {corner:.1f} levels, H.264 noise); "
        f"the mouth was repainted (up to {strongest:.0f} levels in a 16x16 block)"))


def run_selftest(device: str = "auto", output: Optional[str] = None, steps: int = STEPS,
                 progress: Optional[Callable[[str, int, int], None]] = None) -> SelftestResult:
    """Build tiny models in a temporary folder, lip-sync the bundled sample with them and check the result."""
    from .cli import DEMO_AUDIO, DEMO_IMAGE, resolve_device

    started = time.monotonic()
    dev = resolve_device(device)
    result = SelftestResult(device=str(dev))
    with tempfile.TemporaryDirectory(prefix="latentsync-selftest-") as tmp:
        root = Path(tmp) / "models"
        out = str(Path(tmp) / "selftest.mp4")
        state: dict = {}

        def build() -> str:
            from .tiny_models import write_tiny_models

            state["files"] = files = write_tiny_models(root)
            size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
            return (f"U-Net .pt + config sidecar, openai-whisper .pt, diffusers VAE folder: "
                    f"{size / 1e6:.1f} MB in {root}")

        def load() -> str:
            import torch

            from .pipeline.loading import load_models

            files = state["files"]
            state["models"] = load_models(str(files.unet), str(files.whisper), device=dev, dtype=torch.float32,
                                          vae_path=str(files.vae))
            return f"strict loaders, {dev}, float32, {state['models'].resolution} px faces"

        def lipsync() -> str:
            import torch

            from .pipeline.runner import RunOptions, lipsync_file
            from .pipeline.sampler import SamplerOptions

            models = state["models"]
            options = RunOptions(sampler=SamplerOptions(steps=steps), detector="auto", models_dirs=[str(root)],
                                 preset="veryfast")
            state["report"] = report = lipsync_file(models, models.vae, str(DEMO_IMAGE), str(DEMO_AUDIO), out, options,
                                                    device=dev, dtype=torch.float32, progress=progress)
            return f"{DEMO_IMAGE.name} + {DEMO_AUDIO.name} -> {report.frames} frames, {steps} DDIM steps"

        if _timed(result, "tiny models written", build) and _timed(result, "tiny models loaded", load) \
                and _timed(result, "lip-sync of the bundled sample", lipsync):
            from .audio.waveform import load_audio

            wave, sr = load_audio(str(DEMO_AUDIO))
            _timed(result, "output read back", lambda: _output_checks(result, out, state["report"], DEMO_IMAGE,
                                                                      wave.shape[-1] / sr) or "decoded with PyAV")
            if output:
                shutil.copyfile(out, output)
                result.output = output
    result.seconds = time.monotonic() - started
    return result


def build_parser(prog: str = "latentsync selftest") -> argparse.ArgumentParser:
    """Options of ``latentsync selftest``."""
    p = argparse.ArgumentParser(prog=prog, description="Run the whole pipeline on the bundled sample with tiny random "
                                "models in the real file formats: proves the install works, without a download.")
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, ... (default auto)")
    p.add_argument("--output", "-o", help="keep the resulting mp4 here (its mouth is noise: the models are random)")
    p.add_argument("--quiet", "-q", action="store_true", help="only the verdict")
    return p


def main(argv: Optional[Sequence[str]] = None, prog: str = "latentsync selftest") -> int:
    """Print each check; exit 0 when all pass, 1 when one fails, 2 for bad options."""
    from .cli import EXIT_USAGE, UsageError, cli_logging, log, resolve_device
    from .progress import Progress

    args = build_parser(prog).parse_args(argv)
    with cli_logging(quiet=True):
        if args.output:
            folder = os.path.dirname(os.path.abspath(args.output))
            problem = (f"{args.output} exists; choose another --output" if os.path.exists(args.output) else
                       None if os.path.isdir(folder) else f"the output's folder does not exist: {folder}")
            if problem:
                log.error("%s", problem)
                return EXIT_USAGE
        try:
            resolve_device(args.device)
        except UsageError as exc:
            log.error("%s", exc)
            return EXIT_USAGE
        progress = Progress(not args.quiet, "selftest")
        try:
            result = run_selftest(args.device, args.output, progress=progress)
        finally:
            progress.close()
    if not args.quiet:
        print(f"latentsync selftest on {result.device}: tiny random models in the real file formats, bundled sample")
        for check in result.checks:
            print(f"  {'ok' if check.passed else 'FAIL':<6}{check.name}: {check.detail}")
        if result.output:
            print(f"  kept {result.output}")
    verdict = "PASSED" if result.passed else "FAILED"
    print(f"selftest {verdict} in {result.seconds:.1f} s" + (
        " - this install works without any download" if result.passed else
        " - see the failed check above; 'latentsync doctor' shows what is installed"))
    return 0 if result.passed else 1
