"""The data pipeline's options, with upstream's defaults (``preprocess/*.py`` at a229c39)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STEPS = ("readable", "resample", "shots", "segment", "faces", "sync", "quality")


@dataclass(frozen=True)
class PrepareOptions:
    """Thresholds and settings of ``latentsync data prepare``; every default is upstream's."""

    scene_threshold: float = 2.0  # detect_shot.py: detect-adaptive --threshold 2
    scene_min_content: float = 15.0  # PySceneDetect 0.6.1 detect-adaptive --min-content-val default
    scene_window: int = 2  # detect-adaptive --frame-window default
    scene_min_len: int = 15  # frames: the CLI's --min-scene-len 0.6 s at 25 fps
    segment_seconds: float = 5.0  # segment_videos.py: -segment_time 5
    resolution: int = 256  # data_processing_pipeline.py --resolution
    detector: str = "auto"
    min_sync: float = 3.0  # sync_av.py: conf >= sync_conf_threshold (3)
    max_offset: int = 6  # sync_av.py: abs(av_offset) <= 6
    min_track: int = 50  # eval_sync_conf.py: syncnet_detector(min_track=50)
    min_quality: float = 40.0  # filter_visual_quality.py: quality_score >= 40
    quality: bool = True  # run the HyperIQA filter (needs koniq_pretrained.pkl)
    models_dirs: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the manifest records the options a run used)."""
        data = asdict(self)
        data["models_dirs"] = list(self.models_dirs)
        return data
