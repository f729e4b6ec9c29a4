"""First-run compile time of the U-Net and the VAE in a fresh process, without and with the saved kernels (GPU).

For each resolution, two child processes compile the full-size (random-weight) U-Net through ``maybe_compile``
and the VAE through ``maybe_compile_vae``:
"cold" starts with empty Inductor and Triton caches and an empty artifact folder (a user's very first run);
"warm" starts with new, empty Inductor and Triton caches but the artifact file the cold process saved (a new
process after a reboot or in another environment of the same versions). Each reports the seconds of its first
full and first DeepCache step (compile + run), of the VAE's first encode + decode, and the steady step times.
Example (GPU machine, repo root):

    python bench/compile_first_run.py --res 256,512 --json $OUT/compile_first_run.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(res: int, batch: int, kernels: str, ff_max_hidden: int = 0) -> dict:
    """One fresh process's view: compile seconds and steady step times."""
    import torch

    sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tools" / "device_checks")]
    from check_unet_device import random_model

    from latentsync.configs import unet_config
    from latentsync.models.unet import DeepCacheState
    from latentsync.pipeline.compiled import maybe_compile, maybe_compile_vae

    import logging

    from torch._dynamo.utils import counters

    notes: list[str] = []
    keys_seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if "ypass" in text or "cache" in text.lower():
                notes.append(text[:300])
            if "for key" in text:
                keys_seen.append(text[:160])

    for name in ("torch._inductor.codecache", "torch._functorch._aot_autograd.autograd_cache"):
        logging.getLogger(name).addHandler(Keep())
        logging.getLogger(name).setLevel(logging.DEBUG)
    if ff_max_hidden:
        from latentsync.models.attention import FeedForward

        FeedForward.max_hidden = ff_max_hidden
    dev = torch.device("cuda")
    unet = random_model(unet_config("stage2"), dev, torch.float16)
    wrapper = maybe_compile(unet, True, device=dev, frames=16, fixed_batch=batch, cache_dir=kernels, keep_kernels=True)
    h = res // 8
    sample = torch.randn(2 * batch, 13, 16, h, h, device=dev, dtype=torch.float16)
    audio = torch.randn(2 * batch, 16, 50, 384, device=dev, dtype=torch.float16)
    t = torch.tensor(500, device=dev)

    def timed(fn) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            fn()
        torch.cuda.synchronize()
        return time.perf_counter() - start

    state = DeepCacheState()
    first_full = timed(lambda: wrapper(sample, t, audio, deepcache=state))
    first_cached = timed(lambda: wrapper(sample, t, audio, deepcache=state))
    full = [timed(lambda: wrapper(sample, t, audio, deepcache=DeepCacheState())) for _ in range(5)]
    cached = [timed(lambda: wrapper(sample, t, audio, deepcache=state)) for _ in range(5)]
    from diffusers_import import prefer_image_diffusers

    prefer_image_diffusers()  # the GPU image's diffusers, without its broken transformers / peft
    from latentsync_impl import random_models

    vae = random_models(res, dev, torch.float16).vae
    maybe_compile_vae(vae, True, device=dev, cache_dir=kernels, keep_kernels=True)
    first_vae = timed(lambda: vae.warm_up(res))
    vae_steady = timed(lambda: vae.warm_up(res))
    return {
        "first_full_s": round(first_full, 2), "first_cached_s": round(first_cached, 2),
        "steady_full_ms": round(1000 * statistics.median(full), 2),
        "steady_cached_ms": round(1000 * statistics.median(cached), 2),
        "first_vae_s": round(first_vae, 2), "steady_vae_batch_ms": round(1000 * vae_steady, 2),
        "vae_artifacts_loaded": bool(vae.artifacts and vae.artifacts.loaded), "vae_fallback": vae.fallback_reason,
        "artifacts_loaded": bool(wrapper.artifacts and wrapper.artifacts.loaded),
        "fallback": wrapper.fallback_reason,
        "counters": {k: dict(v) for k, v in counters.items() if k in ("inductor", "aot_autograd")},
        "cache_notes": notes[:12],
        "lookups": keys_seen[:40],
        "loaded_keys": [_keys(info) for info in wrapper.artifacts.loaded_info] if wrapper.artifacts else None,
        "saved_keys": _keys(wrapper.artifacts.saved_info) if wrapper.artifacts else None,
        "artifact_mb": {p.name: round(os.path.getsize(p) / 1e6, 1) for p in Path(kernels).glob("*.bin")},
        "host_memory": host_memory(),
    }


def host_memory() -> dict:
    """This process's host memory after its compiles: resident now and at its peak (GiB), and the artifact content
    PyTorch's process-wide store still holds (MB; records and serialised form), which ``first_run`` drops."""
    from proc_status import status_gib

    status = {name: round(gib, 3) for name, gib in status_gib("VmRSS", "VmHWM").items()}
    try:
        from torch.compiler._cache import CacheArtifactManager as store

        records = sum(len(a.content) for a in store._seen_artifacts if isinstance(a.content, (bytes, bytearray)))
        status["artifact_store_mb"] = round((records + len(store._serializer.to_bytes())) / 1e6, 1)
    except (ImportError, AttributeError):
        status["artifact_store_mb"] = None
    return status


def _keys(info) -> dict | None:
    """Which cache entries a CacheInfo names, per kind (first 12 characters of each key)."""
    if info is None:
        return None
    return {kind: sorted(str(k)[:40] for k in keys) for kind, keys in info.artifacts.items()}


def run_child(res: int, batch: int, kernels: Path, scratch: Path, label: str, timeout: int, ff: int = 0) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(scratch / f"inductor-{label}"),
               TRITON_CACHE_DIR=str(scratch / f"triton-{label}"))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", str(res), str(batch), str(kernels), str(ff)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = round(time.perf_counter() - start, 1)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--res", default="256,512")
    p.add_argument("--batch", default="256:2,512:1", help="chunks per U-Net call per resolution (the CLI's defaults)")
    p.add_argument("--timeout", type=int, default=280, help="seconds per child process")
    p.add_argument("--json")
    p.add_argument("--ff-max-hidden", type=int, default=0,
                   help="the feed-forward's part size in projected values (1 << 62: one whole call, as before)")
    p.add_argument("--warm-only", action="store_true", help="skip the cold child (kernels kept by an earlier run)")
    p.add_argument("--kernels", help="folder of kept kernels (default: a new temporary one)")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        res, batch, kernels, ff = args.child
        print(json.dumps(child(int(res), int(batch), kernels, int(ff))))
        return
    batches = {int(k): int(v) for k, v in (item.split(":") for item in args.batch.split(","))}
    results = {}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        for res in (int(r) for r in args.res.split(",")):
            kernels = Path(args.kernels) / f"kernels-{res}" if args.kernels else scratch / f"kernels-{res}"
            row = {"batch": batches.get(res, 1), "ff_max_hidden": args.ff_max_hidden or None}
            for label in ("warm",) if args.warm_only else ("cold", "warm"):
                row[label] = run_child(res, row["batch"], kernels, scratch, f"{res}-{label}", args.timeout,
                                       args.ff_max_hidden)
                print(res, label, row[label], flush=True)
            results[res] = row
            if args.json:  # after every resolution, so a timeout keeps what was measured
                Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
