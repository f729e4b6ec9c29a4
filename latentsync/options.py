"""The lip-sync options, declared once: name, type, default, range, help; rendered into CLI flags, node inputs and
docs/options.md (``python -m latentsync.options --markdown docs/options.md``).

Adding a sampler option is one row here (plus its use in the library); ``cli.py`` adds the flag with
:func:`add_cli_argument`, a node takes the input from :func:`node_input`, and tests/unit/test_option_defaults.py
fails when a node, the command line and the library dataclasses disagree on a default. Ranges come from
:mod:`.option_checks` (the one range table), quality presets from :mod:`.presets`. Importing this module is light
(no torch): the command line's ``--help`` and the nodes' inputs read it.

Node input names and choice labels are frozen (saved workflows store them), so a few options are shown to nodes
differently from the library (:data:`NODE_VALUES`): ``face_index`` "largest" is the node's -1, ``posterior``
"sample" is the node's "sample (upstream)", no ``quality`` preset (None) is the node's "custom", the sync gate off
(``min_sync`` None) is the node's 0.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from .configs import (DEFAULT_DEEPCACHE, DEFAULT_GUIDANCE, DEFAULT_SEED, DEFAULT_STEPS, LENGTH_POLICIES,
                      SYNC_GATE_RETRIES, UPSTREAM_FPS)
from .face.detector_registry import choices as detector_choices
from .option_checks import SPECS, parse_number
from .presets import PRESETS
from .presets import describe as describe_preset

LARGEST_FACE_NODE = -1  # the nodes' face_index for "largest" (an INT widget)
POSTERIOR_NODE_LABELS = {"sample": "sample (upstream)", "mean": "mean"}  # library value -> node label (frozen)
NO_PRESET_NODE = "custom"  # the nodes' quality for "no preset" (the command line's default None)
GATE_OFF_NODE = 0.0  # the nodes' min_sync for "gate off" (the library's and the command line's None)
NODE_VALUES: dict[str, dict[Any, Any]] = {  # option -> {library value: node value} where they differ (frozen)
    "face_index": {"largest": LARGEST_FACE_NODE},
    "posterior": POSTERIOR_NODE_LABELS,
    "quality": {None: NO_PRESET_NODE},
    "min_sync": {None: GATE_OFF_NODE},
}


@dataclass(frozen=True)
class Option:
    """One option: its name (the node input's and, unless ``field`` says otherwise, the library's), type, default,
    range (``option_checks.SPECS[spec]``), choices, help, CLI flag (None: not on the command line) and where the
    library keeps it (``sampler.<attr>`` of SamplerOptions or ``<attr>`` of RunOptions; None: nowhere)."""

    name: str
    kind: type
    default: Any
    help: str
    spec: Optional[str] = None
    choices: tuple = ()
    flag: Optional[str] = None
    field: Optional[str] = None
    step: Optional[float] = None
    cli_help: str = ""  # what only the command line adds (another accepted spelling, a 0 = auto)
    node_help: str = ""  # what only the nodes add (a widget value that means "off", another input it needs)
    preset: bool = False  # set by --quality when not given (the CLI's argparse default is then None)
    requires: Optional[str] = None  # only together with this option; on the command line its default applies then
    metavar: Optional[str] = None  # the command line's placeholder in --help (argparse's own when None)

    @property
    def low(self) -> Any:
        return SPECS[self.spec].low if self.spec else None

    @property
    def high(self) -> Any:
        return SPECS[self.spec].high if self.spec else None

    def range_text(self) -> str:
        """'1..200', the choices, or '' for a switch."""
        if self.spec:
            return f"{self.low}..{self.high}" if self.spec != "seed" else "0..2^64-1"
        return ", ".join(str(c) for c in self.choices)


OPTIONS: dict[str, Option] = {o.name: o for o in (
    Option("seed", int, DEFAULT_SEED, "Noise seed; the same seed repeats a result (upstream's default is 1247).",
           spec="seed", flag="--seed", field="sampler.seed", cli_help="-1 for a random one"),
    Option("steps", int, DEFAULT_STEPS, "DDIM steps per 16-frame chunk (upstream: 20).", spec="steps",
           flag="--steps", field="sampler.steps", preset=True),
    Option("guidance", float, DEFAULT_GUIDANCE, "Audio guidance scale (upstream: 1.5); 1.0 turns guidance off and "
           "halves the work.", spec="guidance", flag="--guidance", field="sampler.guidance_scale", step=0.05,
           preset=True),
    Option("deepcache", bool, DEFAULT_DEEPCACHE, "DeepCache: reuse deep U-Net features on 2 of every 3 steps "
           "(interval 3, branch 0), about 2x faster, slightly different output; on as upstream's inference.sh and "
           "gradio app.", flag="--deepcache", field="sampler.deepcache", preset=True),
    Option("batch_chunks", int, 1, "16-frame chunks denoised together in one U-Net call: same result, more VRAM "
           "(about that many times the activations); 2 helps at 256 px.", spec="batch_chunks", flag="--batch-chunks",
           field="sampler.batch_chunks", cli_help="0 = auto: 2 at 256 px on a GPU, else 1; halved automatically when "
           "the device runs out of memory"),
    Option("posterior", str, "sample", "How the face latents enter the U-Net: a random sample of the VAE posterior "
           "(as upstream) or its mean (deterministic).", choices=("sample", "mean"), flag="--posterior-mean",
           field="sampler.posterior"),
    Option("keep_silent_mouth", bool, False, "Keep the original mouth where the audio is silent (voice-activity "
           "detection): no mouth flapping in pauses, and silent 16-frame chunks are not computed.",
           flag="--keep-silent-mouth", field="keep_silent_mouth"),
    Option("compile", bool, False, "torch.compile the U-Net (and, outside ComfyUI, the VAE): the first run of a "
           "shape compiles for 1-2 minutes (about 20 s once its kernels are kept), later runs are about 1.6x faster "
           "per step. Needs Triton; without it, or if compiling fails, the model runs uncompiled with a warning.",
           flag="--compile", field="compile"),
    Option("detector", str, "auto", "Face detector. auto: insightface (upstream's detector) when its files are in "
           "the models folder, else the offline dlib detector (no download); insightface: upstream's (files "
           "downloaded when missing).", choices=detector_choices(), flag="--detector",
           field="detector", cli_help="'dlib' is accepted for offline"),
    Option("face_index", str, "largest", "Which face to lip-sync: the largest (as upstream), or 0, 1, ... counted "
           "left to right where several are first seen; the choice is tracked across frames.", spec="face_index",
           flag="--face-index", field="face_index", cli_help="'speaker': per shot the face whose lips move with "
           "the audio (SyncNet; needs auxiliary/syncnet_v2.model and sfd_face.pth)"),
    Option("smooth", bool, True, "Upstream's alignment smoothing across frames (restarted at detected cuts).",
           field="smooth"),
    Option("length_policy", str, "pingpong", "How the video follows the audio's length: pingpong (upstream: a "
           "longer video is cut, a shorter one plays forward and backward), loop, trim, hold_last, pad_audio; a "
           "still image is always held.", choices=LENGTH_POLICIES, flag="--length-policy", field="length_policy"),
    Option("quality", str, None, "Quality preset (steps, guidance, DeepCache and the release it is meant for); "
           "options set explicitly win over it: " + "; ".join(describe_preset(n) for n in PRESETS) + ".",
           choices=tuple(PRESETS), flag="--quality", node_help="custom: no preset, the widgets as set; widgets "
           "changed from their defaults win over the preset, and the release is the loader's (a mismatch is "
           "reported).", cli_help="--version is set from the preset unless given"),
    Option("min_sync", float, None, "Sync gate: every ~3 s segment of the result is scored with SyncNet; one below "
           "this confidence is generated again with new seeds (up to the sync retries), and when none reaches it "
           "the original frames are kept; every decision is reported. Real in-sync talking heads score about 5-9.",
           spec="min_sync", flag="--min-sync", field="min_sync", step=0.1, metavar="X",
           cli_help="needs auxiliary/syncnet_v2.model", node_help="0 = off. Needs the syncnet input (LatentSync "
           "Load SyncNet)."),
    Option("sync_retries", int, SYNC_GATE_RETRIES, "Sync gate: new seeds tried per segment below min_sync before "
           "its original frames pass through.", spec="sync_retries", flag="--sync-retries", field="sync_retries",
           requires="min_sync", metavar="N", cli_help="only with --min-sync"),
    Option("cut_log", str, None, "Append one JSON line per cut (per segment with the sync gate, else per job) to "
           "this file: version, steps, guidance, seed, DeepCache, sync score, gate decision, timings.",
           flag="--cut-log", metavar="PATH"),
    Option("crf", int, 18, "H.264 quality, lower is better (18 is visually lossless).", spec="crf", flag="--crf",
           field="crf"),
    Option("fps", float, UPSTREAM_FPS, "Frame rate for still-image inputs.", spec="fps", flag="--fps",
           field="still_fps", step=0.001),
    Option("encode_threads", int, 0, "x264 frame threads for the output video: more encode faster on a many-core "
           "host, each holding frames in host memory (about 20 MB apiece at 1080x1920); 0 lets the writer choose "
           "(1.5 per core, at most 8).", spec="encode_threads", flag="--encode-threads", field="encode_threads"),
    Option("require_face", bool, False, "Fail (and write nothing) when no frame has a usable face; otherwise such "
           "a video is passed through unchanged and reported.", flag="--require-face", field="require_face"),
    Option("frame_offset", int, 0, "Index of this batch's first frame in the whole video, for meta-batching "
           "(e.g. Meta Batch Manager): the audio windows start there. 0 for a whole video.", spec="frame_offset"),
)}


def node_input(name: str, *, tooltip: Optional[str] = None, **extra: Any) -> tuple:
    """The ComfyUI input of option ``name`` (type, default, range, tooltip from :data:`OPTIONS`); ``extra`` adds
    widget settings (e.g. ``min=-2`` for Face Align Crop's speaker choice)."""
    o = OPTIONS[name]
    shown = NODE_VALUES.get(name, {})
    info: dict[str, Any] = {"default": shown.get(o.default, o.default)}
    if name == "face_index":  # an INT widget: -1 = largest
        kind = "INT"
        info.update(min=LARGEST_FACE_NODE, max=o.high)
    elif o.choices:  # a default outside the choices (no quality preset) is the first choice
        kind = [shown.get(c, c) for c in ((() if o.default in o.choices else (o.default,)) + o.choices)]
    elif o.kind is bool:
        kind = "BOOLEAN"
    elif o.kind is str:
        kind = "STRING"
    else:
        kind = "INT" if o.kind is int else "FLOAT"
        if o.spec:
            info.update(min=o.low, max=o.high)
        if o.step is not None:
            info["step"] = o.step
    info.update(extra)
    info["tooltip"] = tooltip or " ".join(t for t in (o.help, o.node_help) if t)
    return (kind, info)


def node_default(name: str, value: Any) -> Any:
    """A node widget's value in the library's terms (face_index -1 -> "largest", "sample (upstream)" -> "sample",
    quality "custom" -> None, min_sync 0 -> None)."""
    return {shown: key for key, shown in NODE_VALUES.get(name, {}).items()}.get(value, value)


def add_cli_argument(group: Any, name: str, *aliases: str, **extra: Any) -> None:
    """Add option ``name``'s flag to an argparse group: type, default, choices and help from :data:`OPTIONS`."""
    o = OPTIONS[name]
    text = o.help.rstrip(".") + (f"; {o.cli_help}" if o.cli_help else "")
    kwargs: dict[str, Any] = {}
    later = o.preset or o.requires  # the argparse default is None: --quality or the check fills it in
    if o.kind is bool and o.default:
        kwargs.update(action=argparse.BooleanOptionalAction, default=None if later else o.default)
    elif o.kind is bool or name == "posterior":  # off by default: a switch (--posterior-mean picks "mean")
        kwargs.update(action="store_true")
    elif o.choices:
        kwargs.update(default=o.default, choices=list(o.choices))
    elif name == "face_index" or o.kind is str:
        kwargs.update(default=o.default)
    else:
        kwargs.update(type=parse_number, default=None if later else o.default)
        text += f" ({o.range_text()})"
    if o.metavar:
        kwargs["metavar"] = o.metavar
    default = "on" if o.default is True else "off" if o.default is False or o.default is None else o.default
    kwargs["help"] = f"{text} (default {default})".replace("%", "%%")
    kwargs.update(extra)
    group.add_argument(o.flag, *aliases, **kwargs)


def cli_value(args: argparse.Namespace, name: str) -> Any:
    """Option ``name``'s value in the library's terms from parsed (and preset-resolved) command-line arguments."""
    if name == "posterior":
        return "mean" if args.posterior_mean else "sample"
    return getattr(args, OPTIONS[name].flag.lstrip("-").replace("-", "_"))


def markdown() -> str:
    """docs/options.md: the table of every option, where it appears and its default."""
    lines = ["# Lip-sync options", "",
             "Generated by `python -m latentsync.options --markdown docs/options.md` from `latentsync/options.py`; "
             "tests/unit/test_option_defaults.py fails when this file is out of date or a node, the command line "
             "and the library disagree on a default.", "",
             "Nodes show `face_index` \"largest\" as -1, `posterior` \"sample\" as \"sample (upstream)\", no "
             "`quality` preset (off) as \"custom\" and `min_sync` off as 0. Quality presets change steps, guidance "
             "and DeepCache; options set explicitly win.", "",
             "| option | type | default | range / choices | command line | library | help |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for o in OPTIONS.values():
        flag = f"`{o.flag}`" if o.flag else ""
        where = f"`{'SamplerOptions.' + o.field[8:] if o.field.startswith('sampler.') else 'RunOptions.' + o.field}`" \
            if o.field else ""
        help_text = o.help + (f" Command line: {o.cli_help}." if o.cli_help else "") + (
            f" Nodes: {o.node_help}" if o.node_help else "")
        default = "off" if o.default is None else o.default
        lines.append(f"| `{o.name}` | {o.kind.__name__} | `{default}` | {o.range_text()} | {flag} | {where} | "
                     f"{help_text} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m latentsync.options --markdown [FILE]``: print or write the options table."""
    parser = argparse.ArgumentParser(prog="python -m latentsync.options", description=main.__doc__)
    parser.add_argument("--markdown", nargs="?", const="-", default="-", metavar="FILE",
                        help="write the Markdown table to FILE (default: stdout)")
    args = parser.parse_args(argv)
    text = markdown()
    if args.markdown == "-":
        sys.stdout.write(text)
    else:
        with open(args.markdown, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
