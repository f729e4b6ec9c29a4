"""``latentsync score`` and ``latentsync eval``: argument parsing and printing over :mod:`.media` and
:mod:`.evaluate` (the command line only registers them)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

from ..configs import UPSTREAM_FPS
from ..exit_codes import EXIT_INPUT, EXIT_MODELS, EXIT_OK, EXIT_USAGE

log = logging.getLogger("latentsync")


def _common(p: argparse.ArgumentParser) -> None:
    from ..locations import default_models_dir

    p.add_argument("--models-dir", help=f"models root (default here: {default_models_dir()}); the metric files live "
                   "in latentsync/auxiliary/ under it")
    p.add_argument("--no-download", action="store_true", help="never download missing model files")
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:1 ... "
                   "(default %(default)s)")
    p.add_argument("--min-track", type=int, default=50, help="a face track needs more than this many detections "
                   "in one shot (upstream: 50, i.e. clips over 2 s); lower it for short clips (default %(default)s)")


def score_parser(prog: str = "latentsync score") -> argparse.ArgumentParser:
    """Options of ``latentsync score``."""
    p = argparse.ArgumentParser(prog=prog, description="SyncNet sync score of a video, as upstream LatentSync's "
                                "eval_sync_conf.py: confidence (LSE-C), minimum distance (LSE-D), audio offset, a "
                                "per-second curve and the face tracks used. Needs SyncNet v2 and S3FD "
                                "(auxiliary/syncnet_v2.model, auxiliary/sfd_face.pth; downloaded on first use).")
    p.add_argument("video", help="the video to score")
    p.add_argument("--audio", "-a", help="audio to compare with (default: the video's own audio track)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--curve", help="also write the per-window curve as a PNG picture to this path")
    p.add_argument("--shift-audio", type=int, default=0, metavar="FRAMES",
                   help="delay (negative: advance) the audio by this many frames at 25 fps before scoring, padding with "
                        "silence: a check that SyncNet finds the shift (the offset moves by -FRAMES)")
    _common(p)
    return p


def _setup(args: argparse.Namespace) -> Any:
    """The device for ``--device``; raises UsageError."""
    from ..cli_checks import resolve_device

    if args.min_track < 5:
        from ..cli_checks import UsageError

        raise UsageError(f"--min-track {args.min_track}: use 5 or more")
    return resolve_device(args.device)


def load_sync_models_logged(root: Any, device: Any, *, allow_download: bool, prefix: str = "",
                            detector: bool = True) -> tuple[Any, Optional[int]]:
    """SyncNet v2 (+ S3FD unless ``detector`` is off) for a command -> (models, None), or (None, exit code) with the
    reason logged (missing files get the command line's missing-files message); ``prefix`` names the option that
    asked for them."""
    from ..model_files import ModelFilesMissing
    from . import files

    try:
        return files.load_sync_models(root, device=device, allow_download=allow_download, detector=detector), None
    except ModelFilesMissing as exc:
        log.error("%s%s", prefix, exc)
    except (OSError, ValueError) as exc:
        log.error("%scould not load the SyncNet models: %s", prefix, exc)
    return None, EXIT_MODELS


def score_table(name: str, record: dict) -> str:
    """The ``latentsync score`` table of one JSON record."""
    rows = [("video", name)]
    if not record["scorable"]:
        rows.append(("result", record["report"]))
    else:
        rows += [("confidence", f"{record['confidence']:.3f}  (LSE-C, higher is better)"),
                 ("distance", f"{record['distance']:.3f}  (LSE-D, minimum over offsets, lower is better)"),
                 ("offset", f"{record['offset']:+d} frames at 25 fps (positive: the audio is early)")]
    rows.append(("frames", f"{record['frames_25fps']} at 25 fps (source {record['source_fps']:g} fps), "
                           f"a face in {record['faces_found']}"))
    for n, t in enumerate(record["tracks"]):
        rows.append((f"face track {n}", f"frames {t['first_frame']}-{t['last_frame']}, box {t['box_median']}, "
                                        f"confidence {t['confidence']:.3f}, offset {t['offset']:+d}"))
    if record["per_second"]:
        curve = "  ".join(f"{s['second']}s:{'-' if s['confidence'] is None else format(s['confidence'], '.2f')}"
                          for s in record["per_second"])
        rows.append(("per second", curve))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def score_main(argv: Optional[Sequence[str]] = None, prog: str = "latentsync score") -> int:
    """Run ``latentsync score``; returns the exit code (not scorable is a result: 0)."""
    from ..cli_checks import UsageError
    from ..locations import default_models_dir
    from .media import read_clip
    from .score import SyncOptions, score_clip

    from ..cli import cli_logging

    args = score_parser(prog).parse_args(argv)
    with cli_logging(args.json):
        try:
            device = _setup(args)
        except UsageError as exc:
            log.error("%s", exc)
            return EXIT_USAGE
        for label, path in (("video", args.video), ("--audio", args.audio)):
            if path is not None and not Path(path).is_file():
                log.error("%s %s: no such file", label, path)
                return EXIT_USAGE
        models, failed = load_sync_models_logged(args.models_dir or default_models_dir(), device,
                                                 allow_download=not args.no_download)
        if failed is not None:
            return failed
        try:
            clip = read_clip(args.video, args.audio)
        except (OSError, ValueError) as exc:
            log.error("%s", exc)
            return EXIT_INPUT
        wav = clip.wav16k
        if args.shift_audio:
            from .offset import shift_audio

            wav = shift_audio(wav, args.shift_audio * 640)
        result = score_clip(clip.frames, wav, clip.fps, models, SyncOptions(min_track=args.min_track))
        record = {"video": args.video, "audio": args.audio or args.video, "audio_shift_frames": args.shift_audio,
                  **result.as_dict()}
        if args.curve:
            from PIL import Image

            from .plot import draw_curve

            times, values = result.curve
            Image.fromarray(draw_curve(times, values, title=result.report(),
                                       duration=result.num_frames / UPSTREAM_FPS)).save(args.curve)
        if args.json:
            print(json.dumps(record, indent=2))
        else:
            print(score_table(Path(args.video).name, record))
        return EXIT_OK


def eval_parser(prog: str = "latentsync eval") -> argparse.ArgumentParser:
    """Options of ``latentsync eval``."""
    p = argparse.ArgumentParser(prog=prog, description="Upstream LatentSync's evaluation of lip-synced videos "
                                "against their sources (paired by file name): LSE-C and LSE-D (SyncNet v2, "
                                "eval_sync_conf), SyncNet accuracy (StableSyncNet, eval_syncnet_acc; when "
                                "auxiliary/stable_syncnet.pt is present) and PSNR/SSIM outside the face. FVD is "
                                "left out (its I3D file cannot be loaded safely). Prints a Markdown table.")
    p.add_argument("--real", required=True, help="folder of source videos (each with its audio track)")
    p.add_argument("--fake", required=True, help="folder of lip-synced videos, named like their sources")
    p.add_argument("--json", dest="json_out", help="write the full report (every video, every metric) here")
    p.add_argument("--markdown", help="write the Markdown table here")
    p.add_argument("--accuracy-faces", choices=["crops", "frames"], default="crops",
                   help="StableSyncNet input: the SyncNet v2 face-track crops (default) or the frames themselves "
                        "(when the videos already are aligned face videos, as upstream's test set)")
    p.add_argument("--stable-config", help="JSON file with a StableSyncNet config (model towers + data); default: "
                   "the released syncnet_16_pixel_attn")
    _common(p)
    return p


def eval_main(argv: Optional[Sequence[str]] = None, prog: str = "latentsync eval") -> int:
    """Run ``latentsync eval``; returns the exit code."""
    from ..cli import cli_logging
    from ..cli_checks import UsageError
    from ..locations import default_models_dir
    from ..model_files import ModelFilesMissing
    from . import evaluate, files
    from .score import SyncOptions
    from .stable_syncnet import RELEASED, load_stable_syncnet, syncnet_config

    args = eval_parser(prog).parse_args(argv)
    with cli_logging(False):
        try:
            device = _setup(args)
            for label, folder in (("--real", args.real), ("--fake", args.fake)):
                if not Path(folder).is_dir():
                    raise UsageError(f"{label} {folder}: not a folder")
            config = (json.loads(Path(args.stable_config).read_text()) if args.stable_config
                      else syncnet_config(RELEASED))
        except UsageError as exc:
            log.error("%s", exc)
            return EXIT_USAGE
        except (OSError, ValueError) as exc:
            log.error("--stable-config: %s", exc)
            return EXIT_USAGE
        root = args.models_dir or default_models_dir()
        try:
            sync = files.load_sync_models(root, device=device, allow_download=not args.no_download)
            stable_path = files.STABLE_SYNCNET.find(root)
            stable = load_stable_syncnet(stable_path, config, device=device) if stable_path else None
        except ModelFilesMissing as exc:
            log.error("%s", exc)
            return EXIT_MODELS
        except (OSError, ValueError) as exc:
            log.error("could not load the evaluation models: %s", exc)
            return EXIT_MODELS
        if stable is None:
            log.info("SyncNet accuracy skipped: %s is not there", files.STABLE_SYNCNET.dest(root))
        models = evaluate.EvalModels(sync, stable, config)
        options = evaluate.EvalOptions(SyncOptions(min_track=args.min_track), args.accuracy_faces)
        try:
            report = evaluate.evaluate(args.real, args.fake, models, options, log=log.info)
        except (OSError, ValueError) as exc:
            log.error("%s", exc)
            return EXIT_INPUT
        table = evaluate.markdown_table(report)
        print(table)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report, indent=2))
        if args.markdown:
            Path(args.markdown).write_text(table)
        return EXIT_OK
