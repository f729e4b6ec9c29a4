"""StableSyncNet training samples: 16-frame face windows against mel windows, as upstream's ``SyncNetDataset``.

One sample (upstream ``latentsync/data/syncnet_dataset.py``): pick a clip at random (clips shorter than twice the
window are skipped), a start frame, and a different "wrong" start in the same clip; the mel window always
belongs to the true start; a coin decides whether the frames shown are the true ones (label 1) or the shifted
ones (label 0); a mel window that runs past the audio makes the draw start over. The draws are upstream's
``random.randint`` / ``random.choice`` calls in upstream's order, so a ``random.Random`` seeded as upstream's
global generator gives upstream's samples. Here each sample index has its own generator (``sample_rng``): the
stream is the same for any number of processes, loader workers, and after a resume.

Clips are aligned face videos (upstream's preprocessed ``high_visual_quality`` mp4s) with their own audio.
"""

from __future__ import annotations

import logging
import os
import random
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from ..metrics.syncnet_accuracy import mel_window, mel_window_length, prepare_frames, wav2lip_mel

log = logging.getLogger("latentsync.train")
MAX_DRAWS = 10_000  # draws per sample before giving up (upstream loops forever)


@dataclass(frozen=True)
class Clip:
    """A decoded clip: RGB frames (F, H, W, 3) uint8 and its wav2lip mel (80, T) float64."""

    frames: torch.Tensor
    mel: torch.Tensor


@dataclass(frozen=True)
class Draw:
    """Which clip, the true and the shifted start frame, and the label (1 = frames match the audio)."""

    clip: int
    start: int
    wrong_start: int
    label: int


def clip_from_arrays(frames: torch.Tensor, wav16k: torch.Tensor) -> Clip:
    """A clip from decoded frames (F, H, W, 3) uint8 and its 16 kHz mono waveform (T,) in [-1, 1]."""
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"clip frames must be uint8 (F, H, W, 3), got {frames.dtype} {tuple(frames.shape)}.")
    return Clip(frames=frames, mel=wav2lip_mel(wav16k))


def load_clip(path: str | os.PathLike) -> Clip:
    """Decode an mp4 (frames and its own audio track, 16 kHz mono) into a :class:`Clip`."""
    from ..audio.waveform import load_16k_mono
    from ..io.decode import read_video

    return clip_from_arrays(read_video(path).frames, load_16k_mono(path, quantize=False))


def list_clips(data_dir: str = "", fileslist: str = "") -> list[str]:
    """Clip paths from a files list (one per line) or else every ``.mp4`` under a folder, sorted as upstream."""
    if fileslist:
        with open(fileslist, encoding="utf-8") as handle:
            return [line.rstrip() for line in handle if line.strip()]
    if not data_dir:
        raise ValueError("a files list or a data folder is needed (both are empty).")
    paths: list[str] = []

    def walk(folder: str) -> None:
        for name in sorted(os.listdir(folder)):
            full = os.path.join(folder, name)
            if name.endswith(".mp4"):
                paths.append(full)
            elif os.path.isdir(full):
                walk(full)

    walk(data_dir)
    return paths


def sample_rng(seed: int, index: int, stream: str = "train") -> random.Random:
    """The generator of sample ``index``: a pure function of (seed, stream, index)."""
    return random.Random(f"latentsync-syncnet:{stream}:{seed}:{index}")


def draw(rng: random.Random, count: int, size_of: Callable[[int], tuple[int, int]], num_frames: int = 16,
         fps: float = 25.0) -> Draw:
    """One sample's choices among ``count`` clips (``size_of(i)`` = frames, mel rows), with upstream's calls in
    upstream's order, retrying as upstream does."""
    length = mel_window_length(num_frames)
    for _ in range(MAX_DRAWS):
        idx = rng.randint(0, count - 1)
        total, rows = size_of(idx)
        if total < 2 * num_frames:
            continue
        start = rng.randint(0, total - num_frames)
        while True:
            wrong = rng.randint(0, total - num_frames)
            if wrong != start:
                break
        if int(80.0 * (start / float(fps))) + length > rows:
            continue
        label = 1 if rng.choice([True, False]) else 0
        return Draw(idx, start, wrong, label)
    raise ValueError(f"no usable clip after {MAX_DRAWS} draws: clips need at least {2 * num_frames} frames and "
                     f"audio covering their windows.")


def build_sample(clip: Clip, choice: Draw, num_frames: int, resolution: int, fps: float = 25.0) -> dict[str, torch.Tensor]:
    """Upstream's sample dict: ``frames`` (F, 3, R, R) float32 in [-1, 1], ``audio_samples`` (1, 80, L) float64,
    ``y`` (1,) float32."""
    mel = mel_window(clip.mel, choice.start, num_frames, fps)
    first = choice.start if choice.label else choice.wrong_start
    frames = clip.frames[first:first + num_frames][None]
    pixels = prepare_frames(frames, resolution, lower_half=False).reshape(num_frames, 3, resolution, resolution)
    return {"frames": pixels, "audio_samples": mel, "y": torch.full((1,), float(choice.label))}


class SyncNetSamples(Dataset):
    """Map-style dataset: item ``k`` is training sample ``k`` of the run (drawn by ``sample_rng(seed, k)``)."""

    def __init__(self, paths: Sequence[str], *, num_frames: int, resolution: int, fps: float, seed: int,
                 stream: str = "train", cache_size: int = 8, loader: Callable[[str], Clip] = load_clip,
                 length: int = 2 ** 62):
        self.paths = list(paths)
        if not self.paths:
            raise ValueError("the clip list is empty.")
        self.num_frames, self.resolution, self.fps = num_frames, resolution, fps
        self.seed, self.stream, self.length = seed, stream, length
        self.cache_size, self.loader = max(1, cache_size), loader
        self._cache: OrderedDict[int, Clip] = OrderedDict()
        self._sizes: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return self.length

    def clip(self, index: int) -> Clip:
        """Clip ``index``, decoded once and kept in a small LRU cache."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        try:
            clip = self.loader(self.paths[index])
        except Exception as exc:  # a broken clip names itself
            raise ValueError(f"cannot read training clip {self.paths[index]}: {exc}") from exc
        self._cache[index] = clip
        self._sizes[index] = (clip.frames.shape[0], clip.mel.shape[1])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return clip

    def size(self, index: int) -> tuple[int, int]:
        """Frame count and mel rows of clip ``index`` (read on first use, remembered); an unreadable clip counts
        as empty, so draws skip it (upstream retries with another clip), with one warning."""
        if index not in self._sizes:
            try:
                self.clip(index)
            except ValueError as exc:
                log.warning("skipping a training clip: %s", exc)
                self._sizes[index] = (0, 0)
        return self._sizes[index]

    def draw(self, index: int) -> Draw:
        """The choices of sample ``index``."""
        return draw(sample_rng(self.seed, index, self.stream), len(self.paths), self.size, self.num_frames, self.fps)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        choice = self.draw(index)
        return build_sample(self.clip(choice.clip), choice, self.num_frames, self.resolution, self.fps)


def clip_paths_exist(paths: Sequence[str]) -> list[str]:
    """The listed clips that are missing (for one clear message before training starts)."""
    return [p for p in paths if not Path(p).is_file()]
