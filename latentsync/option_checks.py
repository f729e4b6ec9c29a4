"""Every numeric option's allowed range, and one check that refuses NaN, infinities and out-of-range values.

The command line and the ComfyUI nodes check their numbers against the same table, so a value means the same in
both and the message says which option, what range and what was given. NaN compares false with everything, so a
plain ``value < low`` lets it through; everything here goes through :func:`check_number`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Union

Number = Union[int, float]
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 0 .. 2**64 - 1


class OptionError(ValueError):
    """A numeric option outside its range (or not a finite number); the message names it and the range."""


@dataclass(frozen=True)
class NumberSpec:
    """An option's range (inclusive), whether it must be whole, and a hint on what to choose."""

    name: str
    low: Number
    high: Number
    integer: bool = False
    hint: str = ""

    def describe(self) -> str:
        """The range in words, e.g. 'a whole number from 1 to 200'."""
        kind = "a whole number" if self.integer else "a finite number"
        return f"{kind} from {self.low} to {self.high}"


SPECS: dict[str, NumberSpec] = {spec.name: spec for spec in (
    NumberSpec("steps", 1, 200, True, "20 is upstream's default"),
    NumberSpec("guidance", 1.0, 10.0, False, "1.5 is upstream's default; 1.0 turns guidance off"),
    NumberSpec("seed", 0, MAX_SEED, True, "any fixed number repeats a result"),
    NumberSpec("fps", 0.01, 240.0, False, "the video's frame rate, e.g. 25 or 29.97"),
    NumberSpec("crf", 0, 51, True, "lower is better; 18 is visually lossless"),
    NumberSpec("batch_chunks", 1, 16, True, "1 uses the least memory"),
    NumberSpec("encode_threads", 0, 64, True, "0 lets the writer choose: 1.5 per core, at most 8"),
    NumberSpec("face_index", 0, 64, True, "0 is the leftmost face"),
    NumberSpec("frame_offset", 0, 10_000_000, True, "0 for a whole video"),
    NumberSpec("min_sync", 0.0, 100.0, False,
               "a SyncNet confidence; real in-sync talking heads score about 5-9, 3 is a common floor"),
    NumberSpec("sync_retries", 0, 10, True, "2 regenerates a failing segment at most twice"),
)}


def check_number(value: Any, spec: Union[str, NumberSpec], label: str = "") -> Number:
    """``value`` as an int or float when it is a finite number within ``spec``'s range, else OptionError.

    ``label`` is how the option is called in the message (``--steps`` on the command line, ``steps`` in a node).
    Whole numbers written as floats (``3.0``, ``1e3``) are accepted for integer options.
    """
    spec = SPECS[spec] if isinstance(spec, str) else spec
    label = label or spec.name
    hint = f" ({spec.hint})" if spec.hint else ""
    problem = f"{label} must be {spec.describe()}{hint}; got {value!r}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise OptionError(problem)
    if isinstance(value, float) and not math.isfinite(value):
        raise OptionError(problem)
    if spec.integer:
        if isinstance(value, float) and not value.is_integer():
            raise OptionError(problem)
        value = int(value)
    else:
        value = float(value)
    if not spec.low <= value <= spec.high:
        raise OptionError(problem)
    return value


def number_problem(value: Any, spec: Union[str, NumberSpec], label: str = "") -> str | None:
    """The message :func:`check_number` would raise, or None; ``None`` values (linked node inputs) pass."""
    if value is None:
        return None
    try:
        check_number(value, spec, label)
    except OptionError as exc:
        return str(exc)
    return None


def parse_number(text: str) -> Number:
    """A command-line number: an int when written as one, else a float (range checks come later)."""
    try:
        return int(text)
    except ValueError:
        return float(text)  # ValueError for anything else; argparse reports it
