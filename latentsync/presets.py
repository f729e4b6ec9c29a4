"""Quality presets: one choice that sets the release (face resolution), steps, guidance and DeepCache.

| preset   | release (faces) | steps | guidance | DeepCache | for |
| -------- | --------------- | ----- | -------- | --------- | --- |
| draft    | 1.5 (256 px)    | 10    | 1.5      | on        | quick previews, checking timing and face choice |
| standard | 1.6 (512 px)    | 20    | 1.5      | on        | upstream's app defaults; most videos |
| close-up | 1.6 (512 px)    | 30    | 2.0      | off       | large faces where the mouth fills the frame |

Options given explicitly always win over the preset's value (``--quality draft --steps 15`` runs 15 steps).
Without a preset, the defaults of latentsync/options.py apply (1.6, 20 steps, guidance 1.5, DeepCache on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional


@dataclass(frozen=True)
class Preset:
    """The settings one quality preset stands for."""

    name: str
    version: str
    steps: int
    guidance: float
    deepcache: bool
    purpose: str


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("draft", "1.5", 10, 1.5, True, "quick previews, checking timing and face choice"),
    Preset("standard", "1.6", 20, 1.5, True, "upstream's app defaults; most videos"),
    Preset("close-up", "1.6", 30, 2.0, False, "large faces where the mouth fills the frame"),
)}
PRESET_FIELDS = ("version", "steps", "guidance", "deepcache")


def describe(name: str) -> str:
    """E.g. 'draft: 1.5 (256 px), 10 steps, guidance 1.5, DeepCache on'."""
    p = PRESETS[name]
    size = 256 if p.version == "1.5" else 512
    return (f"{p.name}: {p.version} ({size} px), {p.steps} steps, guidance {p.guidance:g}, "
            f"DeepCache {'on' if p.deepcache else 'off'}")


def resolve(preset: Optional[str], explicit: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Values for :data:`PRESET_FIELDS`: the explicit ones (not None), else the preset's, else ``defaults``."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown quality preset {preset!r}; choose one of {', '.join(PRESETS)}")
    chosen = PRESETS.get(preset) if preset else None
    out = {}
    for key in PRESET_FIELDS:
        value = explicit.get(key)
        if value is None:
            value = getattr(chosen, key) if chosen is not None else defaults[key]
        out[key] = value
    return out
