"""Step 7, the image-quality filter (upstream's ``filter_visual_quality.py``): HyperIQA trained on KonIQ-10k
(``auxiliary/koniq_pretrained.pkl``) scores the first, middle and last frames of the synced clip (224 centre crop,
ImageNet normalisation) and the clip is kept when the mean score is at least ``min_quality`` (40)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from .files import FOLDERS, copy_atomic, output_name, step_output
from .records import StepRecord, dropped, kept

STEP = "quality"


def quality_filter(out: Path, rel: Path, scorer: Optional[Any], min_quality: float = 40.0) -> StepRecord:
    """Score one synced segment; keep it in OUT/high_visual_quality/<rel> or drop it. Without a scorer
    (``--no-quality``) the clip is kept unscored and the record says so."""
    item = rel.as_posix()
    source = step_output(out, "sync", rel)
    outputs = [f"{FOLDERS[STEP]}/{output_name(rel).as_posix()}"]
    if scorer is None:
        copy_atomic(source, step_output(out, STEP, rel))
        record = kept(STEP, item, outputs=outputs, quality=None)
        record.reason = "quality filter skipped (--no-quality)"
        return record
    score = float(scorer.score_file(source))
    if score < min_quality:
        return dropped(STEP, item, f"HyperIQA quality {score:.2f} < {min_quality:g}", quality=round(score, 4))
    copy_atomic(source, step_output(out, STEP, rel))
    return kept(STEP, item, outputs=outputs, quality=round(score, 4))
