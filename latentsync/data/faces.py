"""Step 5, affine-aligned faces (upstream's ``affine_transform.py`` through ``VideoProcessor.affine_transform_video``):
in every frame the largest face (after upstream's face filter), its three alignment points, the similarity
transform with upstream's smoothing of the translation across frames, the warp and the LANCZOS4 resize to
``resolution``; a segment with a frame without a face is dropped ("Face not detected"). The faces are encoded at
25 fps with libx264 crf 13 (upstream's ``write_video``) and the segment's own audio. The library's detectors,
alignment and warp are the lip-sync pipeline's (``face.detectors``, ``face.align``), so the crops are the ones
inference sees. Upstream keeps the smoother's state from one video to the next within a worker; here it starts
fresh with each segment."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import FOLDERS, output_name, step_output
from .media import FACES_X264, FPS
from .records import StepRecord, dropped, kept

STEP = "faces"
BATCH = 16


def align_segment(segment: Path, dst: Path, detector: Any, resolution: int) -> tuple[int, int | None]:
    """Write the aligned faces of ``segment`` to ``dst``: (frames written, first frame without a face or None)."""
    from ..audio.waveform import load_audio
    from ..face.align import AlignmentSmoother, matrices_from_points, warp_faces
    from ..io.decode import iter_video_frames
    from ..io.encode import VideoWriter

    wave, rate = load_audio(segment)
    smoother = AlignmentSmoother()
    writer = VideoWriter(dst, Fraction(FPS), audio=(wave, rate), overwrite=True, **FACES_X264)
    done = 0
    try:
        for frames, _ in iter_video_frames(segment, batch=BATCH):
            detections = detector.detect(frames)
            for i, faces in enumerate(detections):
                if not faces:
                    writer.abort()
                    return done, done + i
            points = torch.from_numpy(np.stack([faces[0].points3 for faces in detections]).astype(np.float32))
            matrices = matrices_from_points(points, resolution, smoother)
            crops = warp_faces(torch.from_numpy(frames), matrices, resolution)  # (b, 3, R, R) uint8
            writer.write(crops.permute(0, 2, 3, 1).contiguous())
            done += len(frames)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return done, None


def align_faces(out: Path, rel: Path, detector: Any, resolution: int = 256) -> StepRecord:
    """Aligned faces of one segment (``rel`` relative to the segment folder) -> OUT/affine_transformed/<rel>."""
    item = rel.as_posix()
    dst = step_output(out, STEP, rel)
    dst.parent.mkdir(parents=True, exist_ok=True)
    frames, missing = align_segment(step_output(out, "segment", rel), dst, detector, resolution)
    if missing is not None:
        return dropped(STEP, item, f"face not detected in frame {missing}", detector=detector.describe())
    return kept(STEP, item, outputs=[f"{FOLDERS[STEP]}/{output_name(rel).as_posix()}"], frames=frames,
                size=resolution, detector=detector.describe())
