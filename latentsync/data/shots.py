"""Step 3, scene cuts (upstream's ``detect_shot.py``: ``scenedetect detect-adaptive --threshold 2 split-video``).

PySceneDetect 0.6.1's ``AdaptiveDetector`` on ``ContentDetector``'s frame scores (:mod:`..metrics.scenes`: the
same downscale, OpenCV HSV and mean of the H, S, V differences; the first frame scores 0): frame ``i`` is a cut
when its score is at least ``min_content_val`` (15) and at least ``threshold`` (2) times the mean score of the
``window`` (2) frames on each side (255 when that mean is 0), and the previous cut is ``min_scene_len`` (15)
frames back (the first cut may come anywhere). The CLI lists scenes with ``start_in_scene``: without a cut the
whole video is one scene, and the last scene ends at the last frame's position (frame ``N - 1``, as 0.6.1's
OpenCV backend reports it), so split-video leaves the last frame out. Here the scene list is the step's output
(in its record); the segment step writes the files, so shots are not encoded twice.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .files import step_output
from .records import StepRecord, kept

STEP = "shots"
MAX_RATIO = 255.0


def adaptive_cuts(scores: torch.Tensor | list[float], threshold: float = 2.0, min_content_val: float = 15.0,
                  window: int = 2, min_scene_len: int = 15) -> list[int]:
    """Frames that start a new scene by PySceneDetect 0.6.1's AdaptiveDetector rule (see the module docstring)."""
    values = [float(v) for v in torch.as_tensor(scores, dtype=torch.float64).tolist()]
    cuts: list[int] = []
    last = None
    for i in range(window, len(values) - window):
        target = values[i]
        around = values[i - window:i] + values[i + 1:i + window + 1]
        mean = sum(around) / (2.0 * window)
        if abs(mean) >= 0.00001:
            ratio = min(target / mean, MAX_RATIO)
        else:
            ratio = MAX_RATIO if target >= min_content_val else 0.0
        if ratio >= threshold and target >= min_content_val and (last is None or i - last >= min_scene_len):
            cuts.append(i)
            last = i
    return cuts


def scene_list(num_frames: int, cuts: list[int]) -> list[tuple[int, int]]:
    """Scenes ``[start, end)`` as the scenedetect CLI splits them: cut to cut, the last ending at ``N - 1``."""
    bounds = [0, *cuts, max(num_frames - 1, 0)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def frame_scores(path: Path) -> torch.Tensor:
    """ContentDetector scores (F,) of every frame of a video, decoded with OpenCV's BT.601 as scenedetect does."""
    from ..io.decode import iter_video_frames
    from ..metrics.scenes import content_scores

    parts, previous = [], None
    for frames, _ in iter_video_frames(path, batch=32, color_matrix="bt601"):
        scores, previous = content_scores(torch.from_numpy(frames), previous)
        parts.append(scores)
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def detect_shots(out: Path, rel: Path, threshold: float = 2.0, min_content_val: float = 15.0, window: int = 2,
                 min_scene_len: int = 15) -> StepRecord:
    """The scene list of the resampled video (in the record's ``data``), with the cut frames and their scores."""
    scores = frame_scores(step_output(out, "resample", rel))
    cuts = adaptive_cuts(scores, threshold, min_content_val, window, min_scene_len)
    scenes = scene_list(len(scores), cuts)
    record = kept(STEP, rel.as_posix(), frames=len(scores), cuts=cuts, scenes=len(scenes),
                  cut_scores=[round(float(scores[c]), 3) for c in cuts])
    record.data = {"scenes": [list(s) for s in scenes]}
    return record
