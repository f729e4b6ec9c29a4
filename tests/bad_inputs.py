"""A deterministic corpus of bad and odd inputs, written at test time: small files, seeded content, plain PyAV/PIL.

Each :class:`Case` says which input it spoils (a file, an option, the output path), what the command line must
answer (exit code, message fragments: the input's name and the fix) and, where it applies, what the file nodes in
ComfyUI must do. ``write_case(case, folder, base)`` writes the case's files into ``folder/in`` and returns the
command-line arguments; outputs go to ``folder/out``. Nothing here depends on the code under test.

Base media (``BaseMedia``): 12 frames of demo1's face (256 px, 25 fps) and 0.24 s of its speech (8 output frames).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import av
import numpy as np
from PIL import Image

FACE_FRAMES = 12
FACE_SIZE = 256
FPS = 25
SPEECH_SECONDS = 0.24  # 12 whisper rows -> 8 output frames at 25 fps
SEED = 13

OK, EXIT_USAGE, EXIT_MODELS, EXIT_INPUT, EXIT_BATCH, EXIT_NO_FACE = 0, 2, 3, 4, 5, 6


# ----------------------------------------------------------------------------------------------- writers
def write_wav_bytes(path: Path, pcm: np.ndarray, rate: int, *, fmt_tag: int = 1, data_size: Optional[int] = None) -> None:
    """A RIFF/WAVE file by hand: ``pcm`` (T, C) int16 or float32 (``fmt_tag`` 3); ``data_size`` may lie."""
    pcm = np.ascontiguousarray(pcm)
    channels, width = pcm.shape[1], pcm.dtype.itemsize
    data = pcm.tobytes()
    size = len(data) if data_size is None else data_size
    header = (b"RIFF" + struct.pack("<I", min(36 + size, 0xFFFFFFFF)) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, fmt_tag, channels, rate, rate * channels * width, channels * width, 8 * width)
              + b"data" + struct.pack("<I", size))
    path.write_bytes(header + data)


def tone(seconds: float, rate: int = 16000, channels: int = 1) -> np.ndarray:
    """A 220 Hz tone, int16 (T, C)."""
    t = np.arange(int(seconds * rate))
    wave = (np.sin(2 * np.pi * 220 * t / rate) * 8000).astype(np.int16)
    return np.repeat(wave[:, None], channels, axis=1)


def encode_video(path: Path, frames: np.ndarray, *, fps: int = FPS, codec: str = "libx264", pix_fmt: str = "yuv420p",
                 container_options: Optional[dict] = None, fmt: Optional[str] = None) -> None:
    """Plain PyAV encode of RGB uint8 frames (F, H, W, 3), no audio."""
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def png_bomb(path: Path, width: int, height: int) -> None:
    """A valid 1-bit grayscale PNG of ``width`` x ``height`` zeros (a few dozen KB for hundreds of megapixels)."""
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------------------------- base media
@dataclass
class BaseMedia:
    """The valid face clip, its first frame and a short speech clip every case starts from."""

    face_video: Path
    face_image: Path
    speech: Path

    @classmethod
    def build(cls, media_dir: Path, folder: Path) -> "BaseMedia":
        """Write the base files from the demo media into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        frames = []
        with av.open(str(media_dir / "demo1_video.mp4")) as src:
            for frame in src.decode(video=0):
                img = frame.to_image().crop((352, 480, 800, 928)).resize((FACE_SIZE, FACE_SIZE))
                frames.append(np.asarray(img))
                if len(frames) == FACE_FRAMES:
                    break
        frames = np.stack(frames)
        video = folder / "face.mp4"
        encode_video(video, frames, container_options={"movflags": "+faststart"})
        image = folder / "face.png"
        Image.fromarray(frames[0]).save(image)
        with av.open(str(media_dir / "demo1_audio.wav")) as src:
            stream = src.streams.audio[0]
            rate = stream.rate
            pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in src.decode(stream)])
        speech = folder / "speech.wav"
        write_wav_bytes(speech, pcm[: int(SPEECH_SECONDS * rate)].astype(np.int16)[:, None], rate)
        return cls(video, image, speech)


# ----------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One bad or odd input and what must happen to it.

    ``make(inputs, base)`` writes the case's files into ``inputs`` and returns (video, audio, extra CLI args, the
    name the message must mention). ``cli_exit``/``cli_says``: the command line's exit code and message fragments
    (lower case). ``writes``: whether the output video must exist afterwards. ``node``: which file node gets the
    case in ComfyUI ("LoadVideo", "LoadAudio", "VideoFile") and ``node_ok`` whether it must succeed there.
    """

    name: str
    make: Callable[[Path, BaseMedia], tuple[Path, Path, list, str]]
    cli_exit: int
    cli_says: tuple[str, ...]
    writes: bool = False
    node: Optional[str] = None
    node_ok: bool = False
    node_says: tuple[str, ...] = ()
    node_inputs: dict = field(default_factory=dict)


def _copy(src: Path, dest: Path) -> Path:
    dest.write_bytes(src.read_bytes())
    return dest


def _pair(inputs: Path, base: BaseMedia) -> tuple[Path, Path]:
    return _copy(base.face_video, inputs / "face.mp4"), _copy(base.speech, inputs / "speech.wav")


def audio_case(writer: Callable[[Path], None], name: str):
    def make(inputs: Path, base: BaseMedia):
        audio = inputs / name
        writer(audio)
        return _copy(base.face_video, inputs / "face.mp4"), audio, [], name
    return make


def video_case(writer: Callable[[Path, BaseMedia], None], name: str, args: tuple = ()):
    def make(inputs: Path, base: BaseMedia):
        video = inputs / name
        writer(video, base)
        return video, _copy(base.speech, inputs / "speech.wav"), list(args), name
    return make


def option_case(*args: str, named: str = ""):
    def make(inputs: Path, base: BaseMedia):
        video, audio = _pair(inputs, base)
        return video, audio, list(args), named or args[0]
    return make


def output_case(kind: str):
    """--output naming an input through some spelling, with --overwrite."""
    def make(inputs: Path, base: BaseMedia):
        video, audio = _pair(inputs, base)
        if kind == "video":
            target = video
        elif kind == "audio":
            target = audio
        elif kind == "symlink":
            target = inputs / "link.mp4"
            target.symlink_to(video)
        elif kind == "dotdot":
            (inputs / "sub").mkdir()
            target = inputs / "sub" / ".." / video.name
        else:  # a hard link: what another letter case is on a case-insensitive file system (same inode)
            target = inputs / "FACE.MP4"
            os.link(video, target)
        return video, audio, ["--output", str(target), "--overwrite"], "written over"
    return make


def _nine_channels(path: Path) -> None:
    write_wav_bytes(path, tone(0.3, channels=9), 16000)


def _eight_channels(path: Path) -> None:
    write_wav_bytes(path, tone(SPEECH_SECONDS, channels=8), 16000)


def _ten_hour_flac(path: Path) -> None:
    """0.2 s of FLAC whose STREAMINFO says 10 hours: what a compressed bomb's header looks like (checked first)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone(0.2).T), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            out.mux(packet)
    data = bytearray(path.read_bytes())
    offset = 8 + 10  # "fLaC", the block header, then block sizes (4) and frame sizes (6) of STREAMINFO
    fields = int.from_bytes(data[offset:offset + 8], "big")
    total_mask = (1 << 36) - 1  # the last 36 of these 64 bits count the samples
    fields = (fields & ~total_mask) | (16000 * 3600 * 10)
    data[offset:offset + 8] = fields.to_bytes(8, "big")
    path.write_bytes(bytes(data))


def _no_samples(path: Path) -> None:
    write_wav_bytes(path, np.zeros((0, 1), np.int16), 16000)


def _nan_samples(path: Path) -> None:
    wave = tone(SPEECH_SECONDS).astype(np.float32) / 32768
    wave[100:200] = np.nan
    write_wav_bytes(path, wave, 16000, fmt_tag=3)


def _text(path: Path, *_) -> None:
    path.write_text("this is not media\n" * 50)


def _audio_without_track(inputs: Path, base: BaseMedia):
    """The face clip (which has no sound) given as the audio."""
    silent = _copy(base.face_video, inputs / "silent.mp4")
    return _copy(base.face_video, inputs / "face.mp4"), silent, [], "silent.mp4"


def _video_is_audio(inputs: Path, base: BaseMedia):
    """A wav given as the video."""
    return _copy(base.speech, inputs / "voice.wav"), _copy(base.speech, inputs / "speech.wav"), [], "voice.wav"


def _truncated(path: Path, base: BaseMedia) -> None:
    data = base.face_video.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # faststart: the index lists every frame, the data stops early


def _empty(path: Path, *_) -> None:
    path.write_bytes(b"")


def _noise(path: Path, *_) -> None:
    rng = np.random.RandomState(SEED)
    encode_video(path, rng.randint(0, 256, (8, 128, 128, 3), dtype=np.uint8))


def _landscape(path: Path, *_) -> None:
    y, x = np.mgrid[0:144, 0:256]
    sky = np.stack([x % 256, 120 + y // 2, np.full_like(x, 200)], -1).astype(np.uint8)
    encode_video(path, np.repeat(sky[None], 8, axis=0))


def _one_pixel(path: Path, *_) -> None:
    encode_video(path, np.full((8, 1, 1, 3), 128, np.uint8), pix_fmt="yuv444p")  # 4:2:0 needs even sizes


def _huge_png(path: Path, *_) -> None:
    png_bomb(path, 20000, 20000)


def _big_jpeg(path: Path, *_) -> None:
    Image.new("L", (9000, 9000), 128).save(path, quality=20)


EXIF_UPRIGHT = (FACE_SIZE + 64, FACE_SIZE)  # (width, height) of the rotated case as displayed


def _exif_rotated(path: Path, base: BaseMedia) -> None:
    """The face (padded to 320x256) stored turned a quarter counter-clockwise, with EXIF orientation 6 (turn 90
    degrees clockwise to display): read as stored, the face lies on its side and the frame is 256x320."""
    with Image.open(base.face_image) as im:
        upright = Image.new("RGB", EXIF_UPRIGHT, (40, 40, 40))
        upright.paste(im.convert("RGB"), (0, 0))
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, exif=exif, quality=95)


def _truncated_png(path: Path, base: BaseMedia) -> None:
    data = base.face_image.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _whisper_wrong_width(inputs: Path, base: BaseMedia):
    video, audio = _pair(inputs, base)
    return video, audio, ["@whisper256"], "expects 384"


CASES: list[Case] = [
    # audio that crashed, lied or was empty
    Case("audio_9_channels", audio_case(_nine_channels, "nine.wav"), EXIT_INPUT, ("9 audio channels", "mix it down"),
         node="LoadAudio", node_says=("9 audio channels", "mix it down")),
    Case("audio_8_channels", audio_case(_eight_channels, "seven_one.wav"), OK, (), writes=True, node="LoadAudio",
         node_ok=True),
    Case("audio_10_hours_flac", audio_case(_ten_hour_flac, "long.flac"), EXIT_INPUT, ("10.0 hours", "cut it into parts"),
         node="LoadAudio", node_says=("hours", "cut it into parts")),
    Case("audio_no_samples", audio_case(_no_samples, "empty_track.wav"), EXIT_INPUT, ("no samples", "speech"),
         node="LoadAudio", node_says=("no samples",)),
    Case("audio_nan_samples", audio_case(_nan_samples, "nan.wav"), EXIT_INPUT, ("nan", "export")),
    Case("audio_not_media", audio_case(_text, "notes.wav"), EXIT_INPUT, ("could not open", "media file"),
         node="LoadAudio", node_says=("could not open",)),
    Case("audio_without_track", _audio_without_track, EXIT_INPUT, ("no audio track", "give an audio file"),
         node="LoadAudio", node_says=("no audio track",)),
    # video and image files
    Case("video_truncated_faststart", video_case(_truncated, "cut.mp4"), OK, ("truncated", "re-encode"), writes=True,
         node="VideoFile", node_ok=True, node_says=("truncated",)),
    Case("video_empty_file", video_case(_empty, "empty.mp4"), EXIT_INPUT, ("empty", "complete file"),
         node="LoadVideo", node_says=("not a readable video",)),
    Case("video_not_media", video_case(_text, "notes.mp4"), EXIT_INPUT, ("not a readable video", "check that"),
         node="LoadVideo", node_says=("not a readable video",)),
    Case("video_is_audio", _video_is_audio, EXIT_INPUT, ("no video stream", "give a video")),
    Case("image_png_20000x20000", video_case(_huge_png, "huge.png"), EXIT_INPUT, ("pixels", "scale it down"),
         node="VideoFile", node_says=("pixels", "scale it down")),
    Case("image_jpeg_9000x9000", video_case(_big_jpeg, "big.jpg"), EXIT_INPUT, ("9000x9000", "scale it down"),
         node="LoadVideo", node_says=("9000x9000", "scale it down")),
    Case("image_png_truncated", video_case(_truncated_png, "half.png"), EXIT_INPUT, ("cannot be decoded", "export")),
    Case("image_exif_rotated", video_case(_exif_rotated, "rotated.jpg"), OK, (), writes=True),
    # no face: passed through, always said; a failure on request
    Case("no_face_noise", video_case(_noise, "noise.mp4"), OK, ("no usable face", "no face was detected"),
         writes=True, node="VideoFile", node_ok=True, node_says=("no face",)),
    Case("no_face_landscape", video_case(_landscape, "landscape.mp4"), OK, ("no usable face", "crop"), writes=True),
    Case("no_face_1x1_video", video_case(_one_pixel, "dot.mp4"), OK, ("no usable face",), writes=True,
         node="VideoFile", node_ok=True, node_says=("no face",)),
    Case("no_face_required", video_case(_noise, "noise.mp4", ("--require-face",)), EXIT_NO_FACE,
         ("no usable face", "--require-face"), node="VideoFile", node_says=("no usable face",),
         node_inputs={"require_face": True}),
    Case("face_index_7_of_1", option_case("--face-index", "7", named="face.mp4"), OK,
         ("face index 7", "use face index 0"), writes=True,
         node="VideoFile", node_ok=True, node_says=("no face",), node_inputs={"face_index": 7}),
    # numbers
    Case("guidance_inf", option_case("--guidance", "inf"), EXIT_USAGE, ("--guidance", "1.0 to 10.0"),
         node="VideoFile", node_says=("guidance",), node_inputs={"guidance": float("inf")}),
    Case("guidance_nan", option_case("--guidance", "nan"), EXIT_USAGE, ("--guidance", "finite"),
         node="VideoFile", node_says=("guidance", "finite"), node_inputs={"guidance": float("nan")}),
    Case("seed_1e23", option_case("--seed", "1e23"), EXIT_USAGE, ("--seed", "-1 for a random seed"),
         node="VideoFile", node_says=("seed",), node_inputs={"seed": 10**23}),
    Case("seed_minus_5", option_case("--seed", "-5"), EXIT_USAGE, ("--seed",)),
    Case("fps_nan", option_case("--fps", "nan"), EXIT_USAGE, ("--fps", "frame rate")),
    Case("fps_inf", option_case("--fps", "inf"), EXIT_USAGE, ("--fps",)),
    Case("steps_0", option_case("--steps", "0"), EXIT_USAGE, ("--steps", "1 to 200"),
         node="VideoFile", node_says=("steps",), node_inputs={"steps": 0}),
    Case("steps_1e9", option_case("--steps", "1e9"), EXIT_USAGE, ("--steps", "1 to 200")),
    Case("steps_2_5", option_case("--steps", "2.5"), EXIT_USAGE, ("--steps", "whole number")),
    Case("crf_99", option_case("--crf", "99"), EXIT_USAGE, ("--crf", "0 to 51")),
    Case("encode_threads_minus_1", option_case("--encode-threads", "-1"), EXIT_USAGE, ("--encode-threads", "0 to 64")),
    Case("batch_chunks_nan", option_case("--batch-chunks", "nan"), EXIT_USAGE, ("--batch-chunks",)),
    Case("face_index_minus_3", option_case("--face-index", "-3"), EXIT_USAGE, ("--face-index", "largest")),
    # devices
    Case("device_bogus", option_case("--device", "bogus"), EXIT_USAGE, ("--device", "cpu")),
    Case("device_cuda_absent", option_case("--device", "cuda"), EXIT_USAGE, ("--device cuda", "--device cpu")),
    Case("device_meta", option_case("--device", "meta"), EXIT_USAGE, ("--device meta", "cpu")),
    Case("device_vulkan", option_case("--device", "vulkan"), EXIT_USAGE, ("--device vulkan", "cpu")),
    Case("device_xpu_absent", option_case("--device", "xpu"), EXIT_USAGE, ("--device xpu", "cpu")),
    # the output must never be an input
    Case("output_is_video", output_case("video"), EXIT_USAGE, ("written over", "another output")),
    Case("output_is_audio", output_case("audio"), EXIT_USAGE, ("written over", "another output")),
    Case("output_symlink_to_video", output_case("symlink"), EXIT_USAGE, ("written over",)),
    Case("output_dotdot_to_video", output_case("dotdot"), EXIT_USAGE, ("written over",)),
    Case("output_hardlink_to_video", output_case("hardlink"), EXIT_USAGE, ("written over",)),
    # models
    Case("whisper_wrong_width", _whisper_wrong_width, EXIT_MODELS, ("expects 384", "tiny.pt")),
]


def write_case(case: Case, folder: Path, base: BaseMedia) -> tuple[list[str], str, Path]:
    """Write ``case`` into ``folder/in``; returns (its CLI arguments, the name its message must mention, the
    output path). ``@whisper256`` in the arguments stands for a whisper file of the wrong width (the caller's)."""
    inputs, out = folder / "in", folder / "out"
    inputs.mkdir(parents=True, exist_ok=True)
    out.mkdir(exist_ok=True)
    video, audio, args, named = case.make(inputs, base)
    output = out / "result.mp4"
    argv = ["--video", str(video), "--audio", str(audio)]
    if "--output" not in args:
        argv += ["--output", str(output)]
    return argv + args, named, output


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``folder`` (links not followed) -> (size, digest), to prove inputs unchanged."""
    import hashlib

    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if path.is_symlink():
                out[str(path)] = (-1, os.readlink(path))
                continue
            out[str(path)] = (path.stat().st_size, hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest())
    return out
