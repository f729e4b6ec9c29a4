"""U-Net training samples as upstream's ``UNetDataset`` draws them, with whisper windows per frame.

One sample (upstream ``latentsync/data/unet_dataset.py`` + the audio crop in ``train_unet.py``): pick a clip at
random (clips shorter than three windows are skipped), a start frame, and a reference start whose window does not
overlap it; the mel window (SyncNet loss) starts at the true frame and must fit in the audio, else the draw starts
over. Sample ``k`` has its own generator (``sample_rng``), so the stream is the same for any number of processes
and after a resume. Frames: ``x / 255`` normalised to [-1, 1]; the masked frames are the frames times the fixed
mouth mask.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from ..metrics.syncnet_accuracy import mel_window, mel_window_length

MAX_DRAWS = 10_000


@dataclass(frozen=True)
class UNetClip:
    """A decoded clip: faces (T, R, R, 3) uint8, wav2lip mel (80, rows), per-frame whisper windows (T, S, D)."""

    frames: torch.Tensor
    mel: torch.Tensor
    audio_windows: torch.Tensor | None


def sample_rng(seed: int, index: int, stream: str = "train") -> random.Random:
    """The generator of sample ``index``: a pure function of (seed, stream, index)."""
    return random.Random(f"latentsync-unet:{stream}:{seed}:{index}")


def to_pixels(frames_u8: torch.Tensor) -> torch.Tensor:
    """(F, R, R, 3) uint8 -> (F, 3, R, R) float32 in [-1, 1] (upstream: normalize(x / 255, 0.5, 0.5))."""
    return (frames_u8.permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5


class UNetSamples(Dataset):
    """Sample ``k`` -> upstream's dict (gt / masked / ref pixels, masks, mel, audio_embeds) for its draws."""

    def __init__(self, paths: Sequence[str], loader: Callable[[str], UNetClip], *, num_frames: int, resolution: int,
                 fps: float, seed: int, mask: torch.Tensor, need_mel: bool, stream: str = "train",
                 cache_size: int = 8, length: int = 1 << 40):
        self.paths, self.loader, self.num_frames, self.resolution = list(paths), loader, num_frames, resolution
        self.fps, self.seed, self.mask, self.need_mel, self.stream = fps, seed, mask.float(), need_mel, stream
        self.cache: OrderedDict[int, UNetClip] = OrderedDict()
        self.cache_size, self.length = cache_size, length
        if not self.paths:
            raise ValueError("no training clips.")

    def __len__(self) -> int:
        """Endless in practice: samples are indexed by the run's position."""
        return self.length

    def clip(self, index: int) -> UNetClip:
        """Clip ``index``, decoded once and kept in a small LRU cache."""
        if index in self.cache:
            self.cache.move_to_end(index)
            return self.cache[index]
        clip = self.loader(self.paths[index])
        if tuple(clip.frames.shape[1:]) != (self.resolution, self.resolution, 3):
            raise ValueError(f"{self.paths[index]}: faces are {tuple(clip.frames.shape[1:3])}, the config's "
                             f"data.resolution is {self.resolution}; prepare the clips at that size.")
        self.cache[index] = clip
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return clip

    def draw(self, index: int) -> tuple[int, int, int]:
        """(clip, start, reference start) of sample ``index``, upstream's calls in upstream's order."""
        rng, f = sample_rng(self.seed, index, self.stream), self.num_frames
        length = mel_window_length(f)
        for _ in range(MAX_DRAWS):
            idx = rng.randint(0, len(self.paths) - 1)
            clip = self.clip(idx)
            total = clip.frames.shape[0]
            if total < 3 * f:
                continue
            start = rng.randint(0, total - f)
            while True:
                ref = rng.randint(0, total - f)
                if not start - f < ref < start + f:
                    break
            if self.need_mel and int(80.0 * (start / float(self.fps))) + length > clip.mel.shape[1]:
                continue
            return idx, start, ref
        raise ValueError(f"no usable clip after {MAX_DRAWS} draws: clips need at least {3 * self.num_frames} "
                         f"frames and audio covering their windows.")

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """The sample's tensors (float32; mel float32 (1, 80, L))."""
        idx, start, ref = self.draw(index)
        clip, f = self.clip(idx), self.num_frames
        gt = to_pixels(clip.frames[start:start + f])
        mask = self.mask[None, None].expand(f, 1, self.resolution, self.resolution)
        out = {"gt_pixel_values": gt, "masked_pixel_values": gt * mask, "masks": mask.clone(),
               "ref_pixel_values": to_pixels(clip.frames[ref:ref + f])}
        if self.need_mel:
            out["mel"] = mel_window(clip.mel, start, f, self.fps).float()
        if clip.audio_windows is not None:
            out["audio_embeds"] = clip.audio_windows[start:start + f].float()
        return out


def whisper_clip_loader(whisper_path: str, *, fps: float, feat_length: Sequence[int],
                        device: str | torch.device = "cpu") -> Callable[[str], UNetClip]:
    """A loader decoding an aligned-face mp4 with its audio: frames, wav2lip mel and whisper windows per frame."""
    from ..audio.features import whisper_features
    from ..audio.waveform import load_16k_mono
    from ..audio.windows import frame_window_indices, frame_windows
    from ..io.decode import read_video
    from ..metrics.syncnet_accuracy import wav2lip_mel
    from ..models.whisper import load_whisper_encoder

    encoder = load_whisper_encoder(whisper_path, device=device)

    def load(path: str) -> UNetClip:
        """Decode one clip and compute its audio features."""
        frames = read_video(path).frames
        wav = load_16k_mono(path, quantize=False)
        feats = whisper_features(encoder, wav)
        idx = frame_window_indices(feats.shape[0], frames.shape[0], fps, feat_length=feat_length)
        return UNetClip(frames, wav2lip_mel(wav), frame_windows(feats, idx))

    return load
