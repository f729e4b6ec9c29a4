"""Peak host RAM of the streaming file pipeline at several video lengths (720p portrait, looped demo1, tiny models).

    python bench/pipeline_memory.py --models /tmp/models --frames 2250,4500 [--json out.json]

``--models`` is a folder holding latentsync/tiny/unet_tiny.pt (+ .json sidecar), latentsync/whisper/whisper_tiny_test.pt
and vae/tiny_vae (what tests/e2e/conftest.py writes). Each length runs in a fresh process
(tests/e2e/rss_child.py); the model size is irrelevant to the question (does RSS grow with length?).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True, type=Path)
    ap.add_argument("--frames", default="2250,4500")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    for frames in [int(x) for x in args.frames.split(",")]:
        with tempfile.TemporaryDirectory() as work:
            proc = subprocess.run(
                [sys.executable, str(REPO / "tests/e2e/rss_child.py"), work, str(frames),
                 str(args.models / "latentsync/tiny/unet_tiny.pt"),
                 str(args.models / "latentsync/whisper/whisper_tiny_test.pt"), str(args.models / "vae/tiny_vae")],
                capture_output=True, text=True, check=True,
            )
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['frames']:6d} frames ({row['frames'] / 25 / 60:.1f} min at 25 fps): peak RSS {row['peak_rss_mb']:.0f} MB, "
              f"{row['seconds']:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
