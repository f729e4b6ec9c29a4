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
                       note="SyncNet v2 (sync confidence, about 55 MB)")
S3FD_FACE = ModelFile("s3fd-face", "ByteDance/LatentSync-1.5", "auxiliary/sfd_face.pth", AUXILIARY,
                      note="S3FD face detector for the sync score (about 90 MB)")
STABLE_SYNCNET = ModelFile("stable-syncnet", "ByteDance/LatentSync-1.6", "stable_syncnet.pt", AUXILIARY,
                           note="StableSyncNet (LatentSync's SyncNet, accuracy evaluation, about 1.6 GB)")

SYNC_SCORE_FILES = (SYNCNET_V2, S3FD_FACE)
ALL_FILES = (SYNCNET_V2, S3FD_FACE, STABLE_SYNCNET)
