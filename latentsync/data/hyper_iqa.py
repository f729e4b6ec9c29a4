"""HyperIQA quality scorer (upstream's ``eval/hyper_iqa.py`` + ``filter_visual_quality.py``): not implemented yet."""

from __future__ import annotations

from typing import Any, Optional


def load_scorer(models_root: str, device: str) -> tuple[Optional[Any], Optional[str]]:
    """(scorer, None), or (None, why the quality filter cannot run)."""
    return None, "the HyperIQA model is not implemented in this version; clips are kept unscored"
