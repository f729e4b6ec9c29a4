"""The custom socket types that travel between the LatentSync nodes.

Objects in these types live in ComfyUI's output cache and are shared by every downstream node and later
runs: nodes read them and never modify them in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

MODEL = "LATENTSYNC_MODEL"
AUDIO_FEATURES = "LATENTSYNC_AUDIO"
FACES = "LATENTSYNC_FACES"

# Keys the pack adds to a LATENT dict (core nodes ignore them). "samples" stays an unscaled [F,4,h,w] tensor.
KEY_MASKED_MEAN = "latentsync_masked_mean"
KEY_MASKED_LOGVAR = "latentsync_masked_logvar"
KEY_REF_MEAN = "latentsync_ref_mean"
KEY_REF_LOGVAR = "latentsync_ref_logvar"
KEY_MASK_LATENT = "latentsync_mask_latent"  # (1, h, w): 1 keep, 0 regenerate
KEY_REF_PIXELS = "latentsync_ref_pixels"  # (F, 3, R, R) uint8 aligned faces (the reference images)
KEY_FACE_MASK = "latentsync_face_mask"  # (R, R) float32 fixed mask at face resolution
KEY_FOUND = "latentsync_found"  # (F,) bool: frames with a usable face
KEY_SILENT = "latentsync_silent"  # (F,) bool: frames whose original mouth is kept (silent audio)
ENCODE_KEYS = (KEY_MASKED_MEAN, KEY_MASKED_LOGVAR, KEY_REF_MEAN, KEY_REF_LOGVAR, KEY_MASK_LATENT)


@dataclass(eq=False)
class LatentSyncModel:
    """A loaded LatentSync model: U-Net and Whisper encoder, each inside a ComfyUI ModelPatcher."""

    unet: Any  # comfy.model_patcher.ModelPatcher around the U-Net
    whisper: Any  # ModelPatcher around the Whisper encoder
    config: dict
    resolution: int
    version: Optional[str]
    dtype: Any  # torch.dtype the U-Net computes in
    whisper_dtype: Any
    files: dict[str, str]
    models_dirs: list[str]  # where face detector files are looked up (ComfyUI's models root first)
    detectors: dict = field(default_factory=dict)  # the model's own cache, name -> detector: use detector()
    compiled: dict = field(default_factory=dict)  # the model's own cache, (frames, chunks) -> compiled U-Net
    allow_download: bool = False  # the loader's "download" switch (also for the insightface files)

    def detector(self, name: str, create: Callable[[], Any]) -> Any:
        """The face detector ``name``, made by ``create()`` on first use and kept by the model for later runs
        (the model's own cache, like its patchers' load state: nodes never write into the model)."""
        found = self.detectors.get(name)
        if found is None:
            found = self.detectors[name] = create()
        return found

    def compiled_unet(self, key: tuple[int, int], create: Callable[[], Any], keep: Callable[[Any], bool]) -> Any:
        """The U-Net wrapper compiled for ``key`` = (frames, chunks per call): made by ``create()`` unless kept from
        an earlier run, and kept when ``keep(wrapper)`` (it lives and dies with the loaded model, so a later queue
        run reuses the compiled graphs and a reloaded model starts afresh)."""
        found = self.compiled.get(key)
        if found is None:
            found = create()
            if keep(found):
                self.compiled[key] = found
        return found

    def load_unet(self, memory_required: int = 0) -> Any:
        """The U-Net module, loaded to its device by ComfyUI's memory manager with room for ``memory_required``
        activation bytes (the model loads itself, as core's audio encoders do; nodes never call load_models_gpu)."""
        from . import comfy_compat as cc

        cc.load_models([self.unet], memory_required=memory_required)
        return cc.module_of(self.unet)

    def load_whisper(self, memory_required: int = 0) -> Any:
        """The Whisper encoder module, loaded to its device (room for ``memory_required`` activation bytes)."""
        from . import comfy_compat as cc

        cc.load_models([self.whisper], memory_required=memory_required)
        return cc.module_of(self.whisper)

    def load_all(self, vae: Any, memory_required: int = 0) -> tuple[Any, Any]:
        """U-Net, Whisper and ``vae`` (a core VAE) loaded together, so none evicts another mid-run (the streaming
        node); returns the U-Net and Whisper modules."""
        from . import comfy_compat as cc

        cc.load_models([self.unet, self.whisper, vae.patcher], memory_required=memory_required)
        return cc.module_of(self.unet), cc.module_of(self.whisper)

    def describe(self) -> str:
        names = ", ".join(f"{k}={v}" for k, v in self.files.items())
        return f"LatentSync {self.version or 'custom'} @ {self.resolution}px ({names})"


def _audio_rate() -> int:
    """The library's audio rate (read when an audio object is made: importing the pack stays light)."""
    from ..latentsync.configs import AUDIO_SAMPLE_RATE

    return AUDIO_SAMPLE_RATE


@dataclass(eq=False)
class LatentSyncAudio:
    """Whisper features of one audio clip and the frame rate they will be cut into windows for."""

    features: Any  # (N, L+1, D) float32 CPU, 50 rows per second
    fps: float
    num_frames: int  # frames the audio covers at fps (upstream's count: two more than its duration)
    duration: float  # seconds
    waveform16k: Any  # (T,) float32 16 kHz mono
    sample_rate: int = field(default_factory=_audio_rate)


@dataclass(eq=False)
class LatentSyncFaces:
    """Per-frame alignment of the chosen face, plus what compositing needs to paste faces back."""

    matrices: Any  # (F, 2, 3) float32: frame pixels -> crop pixels
    found: Any  # (F,) bool
    resets: Any  # (F,) bool: cut detected, smoother restarted
    points: Any  # (F, 3, 2) float32 alignment points (eyebrow centres, nose)
    frame_size: tuple[int, int]  # (H, W)
    resolution: int
    detector: str
    report: dict
    images: Any  # the source IMAGE (F, H, W, C) the faces came from
    mask: Any  # (R, R) float32 fixed mask, 1 keep / 0 mouth

    @property
    def num_frames(self) -> int:
        return int(self.matrices.shape[0])


SYNCNET = "LATENTSYNC_SYNCNET"


@dataclass(eq=False)
class LatentSyncSyncNet:
    """SyncNet v2 and the S3FD face detector for sync scores, each inside a ComfyUI ModelPatcher."""

    syncnet: Any  # ModelPatcher around latentsync.metrics.syncnet_v2.SyncNetV2
    s3fd: Any  # ModelPatcher around latentsync.metrics.s3fd.S3FD
    files: dict[str, str]
