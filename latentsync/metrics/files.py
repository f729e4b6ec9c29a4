"""The metric networks' model files: where they come from and where they live under the models folder.

Upstream fetches the SyncNet v2 and S3FD files from ``ByteDance/LatentSync-1.5`` (``check_model_and_download``'s
default repository, paths ``auxiliary/...``) and StableSyncNet from ``ByteDance/LatentSync-1.6``. They live in
``models/latentsync/auxiliary`` here, so they never show up among the U-Net checkpoints. FVD's
``auxiliary/i3d_torchscript.pt`` is deliberately absent: it is a TorchScript archive, which cannot be read with
``torch.load(weights_only=True)`` and runs code from the file when loaded (see docs/sync_score.md).
"""

from __future__ import annotations

from ..model_files import ModelFile

AUXILIARY = "latentsync/auxiliary"

SYNCNET_V2 = ModelFile("syncnet-v2", "ByteDance/LatentSync-1.5", "auxiliary/syncnet_v2.model", AUXILIARY,
                       note="SyncNet v2 (sync confidence)", approx_bytes=54_000_000)
S3FD_FACE = ModelFile("s3fd-face", "ByteDance/LatentSync-1.5", "auxiliary/sfd_face.pth", AUXILIARY,
                      note="S3FD face detector for the sync score", approx_bytes=90_000_000)
STABLE_SYNCNET = ModelFile("stable-syncnet", "ByteDance/LatentSync-1.6", "stable_syncnet.pt", AUXILIARY,
                           note="StableSyncNet (LatentSync's SyncNet, SyncNet accuracy in latentsync eval)", approx_bytes=1_600_000_000)
# HyperIQA (KonIQ-10k): the image-quality filter of `latentsync data prepare` (upstream fetches it with the same
# check_model_and_download default repository); a plain state dict, read with weights_only.
KONIQ_HYPERIQA = ModelFile("hyperiqa-koniq", "ByteDance/LatentSync-1.5", "auxiliary/koniq_pretrained.pkl", AUXILIARY,
                           note="HyperIQA on KonIQ-10k (image quality, latentsync data prepare)",
                           approx_bytes=110_000_000)

SYNC_SCORE_FILES = (SYNCNET_V2, S3FD_FACE)
ALL_FILES = (SYNCNET_V2, S3FD_FACE, STABLE_SYNCNET)


def find_or_fetch(specs, models_root: str, *, allow_download: bool) -> dict[str, str]:
    """{key: path} of the metric files under ``models_root`` (downloaded when allowed); ModelFilesMissing names
    every file still missing, where to put it and where it comes from."""
    from ..model_files import ensure_files

    return ensure_files(list(specs), models_root, allow_download=allow_download)


def load_sync_models(models_root: str, *, device="cpu", allow_download: bool = True, detector: bool = True):
    """SyncNet v2 (and S3FD unless ``detector`` is off) from ``models_root`` -> :class:`score.SyncModels`."""
    from .s3fd import load_s3fd
    from .score import SyncModels
    from .syncnet_v2 import load_syncnet_v2

    specs = SYNC_SCORE_FILES if detector else (SYNCNET_V2,)
    paths = find_or_fetch(specs, models_root, allow_download=allow_download)
    s3fd = load_s3fd(paths[S3FD_FACE.key], device=device) if detector else None
    return SyncModels(load_syncnet_v2(paths[SYNCNET_V2.key], device=device), s3fd)
