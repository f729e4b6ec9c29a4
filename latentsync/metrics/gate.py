"""The sync gate (library core; the runner wires it per segment): score a generated segment with SyncNet, generate
it again with new seeds while its confidence is below ``min_sync``, else pass the original frames through; and a
JSON-lines log with one record per cut.

Seed rule: attempt ``k`` (0 = the first generation) uses ``(base_seed + k * SEED_STRIDE) mod 2**64``, so attempt 0
is the run's own seed and a retry never reuses a neighbouring segment's or a plain ``seed + 1`` rerun's seed.

Decisions: ``accepted`` (an attempt reached ``min_sync``: its frames are used), ``passed_through`` (none did in
``1 + max_retries`` attempts: the original frames are used), ``not_scorable`` (the segment is too short, silent or
has no face track: the original frames are used, without further attempts; too short and silent are known
before generating anything).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from .score import SyncModels, SyncOptions, SyncScore, clip_problem, frames_at_25fps, score_clip

SEED_STRIDE = 1_000_003  # a prime: retries of neighbouring segments never collide for fewer than 1e6 segments
SEED_MOD = 2 ** 64
LOG_SCHEMA = 1


def attempt_seed(base_seed: int, attempt: int) -> int:
    """The seed of attempt ``attempt`` (0 = the first generation): ``(base + attempt * SEED_STRIDE) mod 2**64``."""
    return (int(base_seed) + int(attempt) * SEED_STRIDE) % SEED_MOD


@dataclass
class GateAttempt:
    """One generation and its score."""

    attempt: int
    seed: int
    confidence: Optional[float]
    distance: Optional[float]
    offset: int
    scorable: bool
    generate_seconds: float
    score_seconds: float
    report: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class GateDecision:
    """What the gate did with one segment."""

    decision: str  # "accepted", "passed_through" or "not_scorable"
    min_sync: float
    max_retries: int
    base_seed: int
    attempts: list[GateAttempt] = field(default_factory=list)
    reason: str = ""

    @property
    def seed(self) -> Optional[int]:
        """The seed whose frames are used (None when the original frames pass through)."""
        return self.attempts[-1].seed if self.decision == "accepted" else None

    @property
    def used_original(self) -> bool:
        return self.decision != "accepted"

    @property
    def final(self) -> Optional[GateAttempt]:
        """The last scored attempt (the accepted one when accepted)."""
        return self.attempts[-1] if self.attempts else None

    def report(self) -> str:
        """One line for people."""
        tried = len(self.attempts)
        if self.decision == "accepted":
            a = self.attempts[-1]
            return (f"accepted attempt {a.attempt + 1} of up to {self.max_retries + 1} (seed {a.seed}, confidence "
                    f"{a.confidence:.2f} >= {self.min_sync:g})")
        if self.decision == "passed_through":
            best = max(a.confidence for a in self.attempts)
            return (f"original frames passed through: {tried} attempt{'s' if tried != 1 else ''} below "
                    f"{self.min_sync:g} (best confidence {best:.2f})")
        return f"original frames passed through: not scorable: {self.reason}"

    def as_dict(self) -> dict:
        return {"decision": self.decision, "seed": self.seed, "min_sync": self.min_sync, "max_retries": self.max_retries,
                "base_seed": self.base_seed, "attempt_seeds": [a.seed for a in self.attempts],
                "scores": [a.confidence for a in self.attempts], "reason": self.reason or None,
                "report": self.report(), "attempts": [a.as_dict() for a in self.attempts]}


def _number(x: float) -> Optional[float]:
    return float(x) if math.isfinite(x) else None


def gate_segment(generate: Callable[[int], torch.Tensor], original: torch.Tensor, wav16k: torch.Tensor,
                 fps: float | Fraction, models: SyncModels, *, min_sync: float, max_retries: int, base_seed: int,
                 options: Optional[SyncOptions] = None, detect: bool = True,
                 boxes: Optional[Sequence[np.ndarray]] = None, cuts: Optional[Sequence[int]] = None,
                 clock: Callable[[], float] = time.perf_counter) -> tuple[torch.Tensor, GateDecision]:
    """Run the gate on one segment: ``generate(seed)`` gives its frames (n, H, W, C) for a seed, ``original`` the
    source frames, ``wav16k`` its 16 kHz mono audio from the first frame, ``fps`` its rate, ``boxes`` (optional, one
    array of face boxes per frame) and ``cuts`` (optional, frames that start a shot) what is already known, so that
    no S3FD pass or cut scan runs. Returns the frames to use and the decision record."""
    if max_retries < 0:
        raise ValueError(f"max_retries must be 0 or more, got {max_retries}.")
    if not math.isfinite(float(min_sync)):
        raise ValueError(f"min_sync must be a finite number (a SyncNet confidence, e.g. 3), got {min_sync!r}.")
    options = options or SyncOptions()
    decision = GateDecision("passed_through", float(min_sync), int(max_retries), int(base_seed))
    count = len(frames_at_25fps(int(original.shape[0]), fps))
    problem = clip_problem(count, wav16k, options.vshift)
    if problem:  # known before generating anything
        decision.decision, decision.reason = "not_scorable", problem
        return original, decision
    for attempt in range(max_retries + 1):
        seed = attempt_seed(base_seed, attempt)
        t0 = clock()
        frames = generate(seed)
        t1 = clock()
        score: SyncScore = score_clip(frames, wav16k, fps, models, options, detect=detect, boxes=boxes, cuts=cuts)
        t2 = clock()
        decision.attempts.append(GateAttempt(attempt, seed, _number(score.confidence), _number(score.distance),
                                             int(score.offset), score.scorable, t1 - t0, t2 - t1, score.report()))
        if not score.scorable:
            decision.decision, decision.reason = "not_scorable", score.reason
            return original, decision
        if score.confidence >= min_sync:
            decision.decision = "accepted"
            return frames, decision
    return original, decision


class CutLog:
    """JSON-lines log, one record per cut (segment): version, steps, guidance, seed, DeepCache, sync score, gate
    decision, timings. Appends; every record is flushed, so a killed batch keeps the cuts done."""

    def __init__(self, path: str | os.PathLike, *, version: str, steps: int, guidance: float, deepcache: bool,
                 extra: Optional[dict] = None):
        self.path = os.fspath(path)
        self.settings = {"version": str(version), "steps": int(steps), "guidance": float(guidance),
                         "deepcache": bool(deepcache), **(extra or {})}

    def record(self, cut: Any, decision: Optional[GateDecision] = None, *, seed: Optional[int] = None,
               score: Optional[SyncScore] = None, timings: Optional[dict] = None, **fields: Any) -> dict:
        """Append one cut's record and return it. ``seed``: the seed used (default: the gate's); ``score``: a score
        of the result when there is no gate; ``timings``: seconds per stage."""
        sync = None
        if decision is not None and decision.final is not None:
            a = decision.final
            sync = {"confidence": a.confidence, "distance": a.distance, "offset": a.offset, "scorable": a.scorable}
        elif score is not None:
            d = score.as_dict()
            sync = {k: d[k] for k in ("confidence", "distance", "offset", "scorable")}
        gate_seconds = sum(a.generate_seconds + a.score_seconds for a in decision.attempts) if decision else None
        entry = {
            "schema": LOG_SCHEMA,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "cut": cut,
            **self.settings,
            "seed": seed if seed is not None else (decision.seed if decision is not None else None),
            "sync": sync,
            "gate": None if decision is None else decision.as_dict(),
            "timings": {**({"gate_seconds": round(gate_seconds, 4)} if gate_seconds is not None else {}),
                        **{k: round(float(v), 4) for k, v in (timings or {}).items()}},
            **fields,
        }
        folder = os.path.dirname(self.path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, allow_nan=False) + "\n")
            fh.flush()
        return entry


def read_log(path: str | os.PathLike) -> list[dict]:
    """The records of a cut log."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
