"""The run's manifest (OUT/manifest.json): every input and every segment, kept or dropped, at which step and why,
with the scores of every step that ran. It is rebuilt from the step records, and rewritten only when it changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .files import MANIFEST, write_json
from .options import STEPS

PENDING = "pending"
INPUT_STEPS = STEPS[:4]
SEGMENT_STEPS = STEPS[4:]


def _follow(records: dict[str, dict], steps: tuple[str, ...]) -> dict[str, Any]:
    """Status, step, reason, scores and final output of one item from its records in step order."""
    entry: dict[str, Any] = {"status": PENDING, "step": None, "reason": None, "scores": {}, "output": None}
    for step in steps:
        record = records.get(step)
        if record is None:
            entry["status"] = PENDING
            return entry
        entry["step"], entry["status"] = step, record["status"]
        entry["reason"] = record.get("reason") or None
        entry["scores"][step] = record.get("scores", {})
        if record["status"] != "kept":
            return entry
        entry["output"] = (record.get("outputs") or [entry["output"]])[-1]
    return entry


def input_entry(rel: str, records: dict[str, dict]) -> dict[str, Any]:
    """The manifest entry of one input: its records through the segment step, and its segments' names."""
    entry = {"input": rel, **_follow(records, INPUT_STEPS)}
    entry["output"] = None
    segment = records.get("segment")
    listed = segment is not None and entry["status"] == "kept"
    entry["segments"] = [s["name"] for s in segment["data"]["segments"]] if listed else []
    return entry


def segment_entry(name: str, input_rel: str, plan: dict, records: dict[str, dict]) -> dict[str, Any]:
    """The manifest entry of one segment: where it comes from and its records from the faces step on."""
    return {"segment": name, "input": input_rel, "shot": plan["shot"], "first_frame": plan["start"],
            "frames": plan["stop"] - plan["start"], **_follow(records, SEGMENT_STEPS)}


def build(source: str, options: dict, inputs: list[dict], segments: list[dict]) -> dict[str, Any]:
    """The whole manifest with its counts."""
    def count(items: list[dict], status: str) -> int:
        """How many of ``items`` have ``status``."""
        return sum(1 for i in items if i["status"] == status)

    dropped_at: dict[str, int] = {}
    for item in inputs + segments:
        if item["status"] == "dropped":
            dropped_at[item["step"]] = dropped_at.get(item["step"], 0) + 1
    return {
        "source": source,
        "options": options,
        "counts": {"inputs": len(inputs), "inputs_kept": count(inputs, "kept"),
                   "inputs_dropped": count(inputs, "dropped"), "inputs_pending": count(inputs, PENDING),
                   "segments": len(segments), "segments_kept": count(segments, "kept"),
                   "segments_dropped": count(segments, "dropped"), "segments_pending": count(segments, PENDING),
                   "dropped_by_step": dict(sorted(dropped_at.items()))},
        "inputs": inputs,
        "segments": segments,
    }


def save(out: Path, manifest: dict[str, Any]) -> bool:
    """Write OUT/manifest.json when its content changed; True when written."""
    path = out / MANIFEST
    try:
        if json.loads(path.read_text(encoding="utf-8")) == json.loads(json.dumps(manifest)):
            return False
    except (OSError, ValueError):
        pass
    write_json(path, manifest)
    return True
