"""Short derived test media made on the fly from the demo files with plain PyAV, once per test session.

Every variant comes with what a correct reader must report (frames, fps, size, rotation, timestamps) and
the RGB frames it was encoded from, so tests can check decoding against known truth. The encoders here are
written directly against PyAV, independently of ``latentsync.io``, so a reader bug cannot hide behind a
matching writer bug.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np

SOURCE_FRAMES = 50  # 2 s of demo1 at 25 fps
AUDIO_SECONDS = 3
PORTRAIT = (320, 180)  # H, W of the base clip
ODD = (241, 321)


@dataclass
class Variant:
    path: Path
    num_frames: int
    fps: Fraction
    width: int
    height: int
    codec: str
    frames: np.ndarray  # the upright RGB frames that were encoded (F, H, W, 3)
    timestamps: np.ndarray  # presentation times in seconds (F,)
    rotation: int = 0
    vfr: bool = False
    audio_rate: int | None = None
    audio_channels: int | None = None


@dataclass
class AudioVariant:
    path: Path
    sample_rate: int
    channels: int
    num_samples: int  # exact for PCM, approximate for lossy codecs
    waveform: np.ndarray = field(repr=False)  # float32 (C, T) that was encoded


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    """All samples of the first audio stream as float32 planar (C, T) and the rate (PyAV, no resampling)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        pieces = []
        for frame in container.decode(stream):
            data = frame.to_ndarray()
            if not frame.format.is_planar:
                data = data.reshape(-1, frame.layout.nb_channels).T
            pieces.append(data.astype(np.float32) / (32768.0 if data.dtype == np.int16 else 1.0))
        return np.concatenate(pieces, axis=1), stream.rate


def x264_settings(path: Path) -> str:
    """The settings line x264 writes into its stream (an SEI message): ``... threads=8 ... sliced_threads=0 ...``."""
    return re.search(rb"x264 - core .*? options: ([^\x00]*)", Path(path).read_bytes()).group(1).decode()


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """16-bit PCM wav from int16 samples ``(T,)`` or ``(C, T)`` (mono or stereo), written with plain PyAV."""
    pcm = np.asarray(samples, np.int16)
    pcm = pcm[None] if pcm.ndim == 1 else pcm
    layout = "mono" if pcm.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.T.reshape(1, -1)), format="s16", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    layout = "stereo" if wave.shape[0] == 2 else "mono"
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave), format="fltp", layout=layout)
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=target)
    out = [f.to_ndarray() for f in resampler.resample(frame)] + [f.to_ndarray() for f in resampler.resample(None)]
    return np.concatenate(out, axis=1)


def mux_audio(out, stream, wave: np.ndarray, rate: int, fmt: str = "fltp", frame_size: int = 1024) -> None:
    """Encode ``wave`` (C, T) into ``stream`` in frames of the codec's size (``frame_size`` until it is opened:
    1024 for AAC, 1152 for MP3) and flush it; planar float, or packed s16 for mono."""
    size = stream.codec_context.frame_size or frame_size
    for start in range(0, wave.shape[1], size):
        chunk = np.ascontiguousarray(wave[:, start:start + size])
        frame = av.AudioFrame.from_ndarray(chunk, format=fmt, layout=stream.layout)
        frame.sample_rate, frame.pts = rate, start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def encode_rgb(path: Path, frames: np.ndarray, *, codec: str, fmt: str, rate: Fraction, pts: np.ndarray | None = None,
            time_base: Fraction | None = None, options: dict | None = None, audio: tuple | None = None) -> None:
    """Plain PyAV encode of RGB frames (pts in ``time_base`` ticks, default 1/rate) with optional AAC audio."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = options or {}
        stream.codec_context.thread_count = 2
        time_base = time_base or 1 / rate
        stream.codec_context.time_base = time_base
        astream = None
        if audio is not None:
            astream = out.add_stream("aac", rate=audio[1], layout="stereo" if audio[0].shape[0] == 2 else "mono")
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i if pts is None else int(pts[i])
            frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            mux_audio(out, astream, *audio)


class MediaVariants:
    """Lazily builds each variant in ``out_dir`` on first use; ``get(name)`` returns its Variant."""

    def __init__(self, media_dir: Path, out_dir: Path):
        self.media_dir = Path(media_dir)
        self.out_dir = Path(out_dir)
        self._cache: dict[str, Variant | AudioVariant] = {}
        self._portrait: np.ndarray | None = None
        self._audio: tuple[np.ndarray, int] | None = None
        self._builders: dict[str, Callable[[], Variant | AudioVariant]] = {
            "h264_25": lambda: self._cfr("h264_25.mp4", Fraction(25), with_audio=True),
            "h264_ntsc": lambda: self._cfr("h264_ntsc.mp4", Fraction(30000, 1001), with_audio=True),
            "h264_30": lambda: self._cfr("h264_30.mp4", Fraction(30)),
            "h264_24": lambda: self._cfr("h264_24.mp4", Fraction(24)),
            "hevc": lambda: self._cfr("hevc.mp4", Fraction(25), codec="libx265", name="hevc",
                                      options={"preset": "ultrafast", "x265-params": "log-level=error"}),
            "av1": lambda: self._cfr("av1.mp4", Fraction(25), codec="libsvtav1", name="av1", options={"preset": "12"}),
            "vp9_odd": self._vp9_odd,
            "landscape": self._landscape,
            "vfr": self._vfr,
            "rotated": self._rotated,
            "still_png": self._still,
            "wav_44k_stereo": lambda: self._wav("audio_44k_stereo.wav", 44100),
            "wav_48k_stereo": lambda: self._wav("audio_48k_stereo.wav", 48000),
            "mp3": self._mp3,
        }

    @property
    def names(self) -> list[str]:
        return list(self._builders)

    def get(self, name: str) -> Variant | AudioVariant:
        if name not in self._cache:
            self._cache[name] = self._builders[name]()
        return self._cache[name]

    # ------------------------------------------------------------------ sources
    def portrait_frames(self) -> np.ndarray:
        """The first SOURCE_FRAMES frames of demo1, scaled to 180x320 RGB."""
        if self._portrait is None:
            with av.open(str(self.media_dir / "demo1_video.mp4")) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                out = []
                for frame in container.decode(stream):
                    out.append(frame.to_ndarray(format="rgb24", width=PORTRAIT[1], height=PORTRAIT[0]))
                    if len(out) == SOURCE_FRAMES:
                        break
            self._portrait = np.stack(out)
        return self._portrait

    def source_audio(self) -> tuple[np.ndarray, int]:
        """AUDIO_SECONDS of demo1's own AAC track (44.1 kHz stereo), float32 (2, T)."""
        if self._audio is None:
            wave, rate = decode_audio(self.media_dir / "demo1_video.mp4")
            self._audio = (np.ascontiguousarray(wave[:, : AUDIO_SECONDS * rate]), rate)
        return self._audio

    # ------------------------------------------------------------------ video variants
    def _cfr(self, filename: str, fps: Fraction, *, codec: str = "libx264", name: str = "h264",
             options: dict | None = None, with_audio: bool = False) -> Variant:
        frames = self.portrait_frames()
        audio = None
        if with_audio:
            wave, rate = self.source_audio()
            audio = (wave[:, : int(len(frames) / fps * rate)], rate)
        path = self.out_dir / filename
        encode_rgb(path, frames, codec=codec, fmt="mp4", rate=fps, options=options or {"preset": "ultrafast"},
                audio=audio)
        return Variant(path, len(frames), fps, PORTRAIT[1], PORTRAIT[0], name, frames,
                       np.arange(len(frames)) / float(fps), audio_rate=audio[1] if audio else None,
                       audio_channels=2 if audio else None)

    def _vp9_odd(self) -> Variant:
        frames = np.ascontiguousarray(self.landscape_frames()[:, :ODD[0], :ODD[1]])
        path = self.out_dir / "vp9_odd.webm"
        encode_rgb(path, frames, codec="libvpx-vp9", fmt="webm", rate=Fraction(25),
                options={"deadline": "realtime", "cpu-used": "8"})
        return Variant(path, len(frames), Fraction(25), ODD[1], ODD[0], "vp9", frames, np.arange(len(frames)) / 25)

    def landscape_frames(self) -> np.ndarray:
        """Landscape 360x250 crops of demo1 (from a 360x640 portrait scale), 25 frames."""
        with av.open(str(self.media_dir / "demo1_video.mp4")) as container:
            out = []
            for frame in container.decode(video=0):
                out.append(frame.to_ndarray(format="rgb24", width=360, height=640)[140:390])
                if len(out) == 25:
                    break
        return np.stack(out)

    def _landscape(self) -> Variant:
        frames = self.landscape_frames()
        path = self.out_dir / "landscape.mp4"
        encode_rgb(path, frames, codec="libx264", fmt="mp4", rate=Fraction(25), options={"preset": "ultrafast"})
        return Variant(path, len(frames), Fraction(25), 360, 250, "h264", frames, np.arange(len(frames)) / 25)

    def _vfr(self) -> Variant:
        """Irregular frame intervals (1/30, 1/15, 1/20 s at random) at a 1/90000 time base."""
        frames = self.portrait_frames()[:40]
        intervals = np.random.default_rng(7).choice([3000, 6000, 4500], size=len(frames) - 1)
        ticks = np.concatenate([[0], np.cumsum(intervals)])
        mean_rate = Fraction(len(frames) - 1) / (Fraction(int(ticks[-1]), 90000))
        path = self.out_dir / "vfr.mp4"
        encode_rgb(path, frames, codec="libx264", fmt="mp4", rate=Fraction(20), pts=ticks,
                time_base=Fraction(1, 90000), options={"preset": "ultrafast"})
        return Variant(path, len(frames), mean_rate, PORTRAIT[1], PORTRAIT[0], "h264", frames, ticks / 90000.0,
                       vfr=True)

    def _rotated(self) -> Variant:
        """h264_25's packets remuxed with a display matrix asking for a 90 degree clockwise turn."""
        base = self.get("h264_25")
        path = self.out_dir / "rotated.mp4"
        with av.open(str(base.path)) as src, av.open(str(path), "w", format="mp4") as dst:
            template = src.streams.video[0]
            stream = dst.add_stream_from_template(template)
            if not hasattr(stream, "set_display_rotation"):
                raise NotImplementedError("this PyAV cannot write a display matrix")
            stream.set_display_rotation(-90)  # PyAV's angle is counter-clockwise
            for packet in src.demux(template):
                if packet.dts is None:
                    continue
                packet.stream = stream
                dst.mux(packet)
        upright = np.ascontiguousarray(np.rot90(base.frames, k=-1, axes=(1, 2)))
        return Variant(path, base.num_frames, base.fps, base.height, base.width, "h264", upright, base.timestamps,
                       rotation=90)

    def _still(self) -> Variant:
        from PIL import Image

        frame = self.portrait_frames()[0]
        path = self.out_dir / "still.png"
        Image.fromarray(frame).save(path)
        return Variant(path, 1, Fraction(25), PORTRAIT[1], PORTRAIT[0], "png", frame[None], np.zeros(1))

    # ------------------------------------------------------------------ audio variants
    def _wav(self, filename: str, rate: int) -> AudioVariant:
        wave, source_rate = self.source_audio()
        if rate != source_rate:
            wave = _resample(wave, source_rate, rate)
        wave = np.clip(wave, -1.0, 1.0)
        path = self.out_dir / filename
        with av.open(str(path), "w", format="wav") as out:
            stream = out.add_stream("pcm_s16le", rate=rate, layout="stereo")
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = rate, 0
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        return AudioVariant(path, rate, 2, wave.shape[1], wave)

    def _mp3(self) -> AudioVariant:
        wave, rate = self.source_audio()
        path = self.out_dir / "audio.mp3"
        with av.open(str(path), "w", format="mp3") as out:
            stream = out.add_stream("libmp3lame", rate=rate, layout="stereo")
            mux_audio(out, stream, wave, rate, frame_size=1152)
        return AudioVariant(path, rate, 2, wave.shape[1], wave)


_SESSION: dict[Path, MediaVariants] = {}


def session_variants(media_dir: Path, tmp_path_factory) -> MediaVariants:
    """One MediaVariants per media folder for the whole pytest session (shared by every test module)."""
    key = Path(media_dir).resolve()
    if key not in _SESSION:
        _SESSION[key] = MediaVariants(key, tmp_path_factory.mktemp("media_variants"))
    return _SESSION[key]
