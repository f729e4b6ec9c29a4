"""One video sharded over two Ray worker processes (CPU) gives the frames of the single-process run, bit for bit:
a real local Ray cluster, the tiny models, demo1's face and speech, five windows spread over the two workers."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from face_points import face_points
from pipeline_capture import written_frames

from latentsync.io import video as vio
from latentsync.pipeline.runner import RunOptions, lipsync_file
from latentsync.pipeline.sampler import SamplerOptions

ray = pytest.importorskip("ray")

FRAMES = 12  # the clip's frames; its speech (0.72 s) asks for 20, so pingpong plays them back
CHUNK = 4  # 20 frames -> five windows of one 4-frame chunk


@pytest.fixture(scope="module")
def ray_cluster():
    """A local two-CPU Ray cluster for this module; afterwards Ray is down and the environment and our logger's
    handlers are as before."""
    env, handlers = dict(os.environ), list(logging.getLogger("latentsync").handlers)
    repo = Path(__file__).resolve().parents[2]
    # The workers import the repo's code, and the test venv's CUDA torchvision needs the CPU stub there too.
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(repo), str(repo / "tests")])},
                          "worker_process_setup_hook": "cpu_torchvision.stub_registrations_if_needed"})
    yield
    ray.shutdown()
    assert not ray.is_initialized()
    for key in set(os.environ) - set(env):
        del os.environ[key]
    os.environ.update(env)
    assert logging.getLogger("latentsync").handlers == handlers


def jittered_points() -> np.ndarray:
    gen = torch.Generator().manual_seed(1)
    base = face_points((128.0, 120.0), 90.0)
    return np.stack([(base + torch.randn(3, 2, generator=gen) * 2.0).numpy() for _ in range(FRAMES)])


def run_video(loaded, clip, out, shards=None, seed=11, batch_chunks=1):
    video, audio = clip
    options = RunOptions(sampler=SamplerOptions(steps=2, seed=seed, chunk_frames=CHUNK, batch_chunks=batch_chunks),
                         window_frames=CHUNK, crf=0, preset="ultrafast")
    return lipsync_file(loaded, loaded.vae, str(video), str(audio), str(out), options, device="cpu",
                        dtype=torch.float32, points=jittered_points(), shards=shards)


def test_two_workers_equal_one_process(ray_cluster, models, loaded, clip, tmp_path, monkeypatch, caplog):
    from latentsync.distributed.shard import ShardPool

    report, single = written_frames(monkeypatch, lambda: run_video(loaded, clip, tmp_path / "one.mp4"))
    assert report.frames == 20 and single.shape[0] == 20
    files = {"unet": str(models["unet"]), "vae": str(models["vae"])}
    with ShardPool(["cpu:0", "cpu:1"], files, version=None, dtype=torch.float32) as pool:
        assert ray.is_initialized() and not pool._started_ray  # the fixture's cluster is used, and left running
        with caplog.at_level(logging.INFO, logger="latentsync"):
            report2, sharded = written_frames(monkeypatch, lambda: run_video(loaded, clip, tmp_path / "two.mp4",
                                                                             pool))
        assert report2.frames == 20 and report2.seed == report.seed
        assert np.array_equal(sharded, single), "the sharded run's frames differ from the single-process run's"
        line = next(r.getMessage() for r in caplog.records if "sharded 5 window(s) over 2 worker(s)" in r.getMessage())
        assert "transfers" in line and "MiB" in line
        # A worker that dies fails the run with a message naming it (the command line then exits 1).
        ray.kill(pool.actors[1])
        with pytest.raises(RuntimeError, match=r"the cpu:1 worker failed on frames"):
            run_video(loaded, clip, tmp_path / "dead.mp4", pool)
    assert ray.is_initialized()  # a pool that did not start Ray leaves it up
    # Not vacuous: every frame's mouth was regenerated (each differs from its source frame).
    from latentsync.pipeline.length import plan_length

    source = np.concatenate([frames for frames, _ in vio.iter_video_frames(str(clip[0]))])
    shown = source[plan_length(FRAMES, 20).source_index.numpy()]
    assert all(not np.array_equal(out, src) for out, src in zip(single, shown))


def test_command_line_devices_equal_one_device(ray_cluster, models, clip, tmp_path, monkeypatch, capsys):
    """``latentsync --devices cpu:0,cpu:1`` (face detection, two windows, one per worker) writes the frames of
    ``--device cpu``; the workers are stopped afterwards."""
    from latentsync import cli
    from latentsync.distributed import shard

    video, audio = clip
    common = ["--video", str(video), "--audio", str(audio), "--unet", str(models["unet"]), "--whisper",
              str(models["whisper"]), "--vae", str(models["vae"]), "--detector", "offline", "--steps", "2",
              "--seed", "5", "--no-cache", "--crf", "0", "--preset", "ultrafast", "--no-download"]
    code, single = written_frames(monkeypatch, lambda: cli.run(common + ["--device", "cpu", "-o",
                                                                         str(tmp_path / "one.mp4")]))
    assert code == 0 and single.shape[0] == 20
    closed: list = []
    original_close = shard.ShardPool.close

    def close(self) -> None:
        closed.append(self)
        original_close(self)

    monkeypatch.setattr(shard.ShardPool, "close", close)
    code, sharded = written_frames(monkeypatch, lambda: cli.run(common + ["--devices", "cpu:0,cpu:1", "-o",
                                                                          str(tmp_path / "two.mp4")]))
    assert code == 0, capsys.readouterr().err
    assert "sharded 2 window(s) over 2 worker(s)" in capsys.readouterr().err
    assert np.array_equal(sharded, single)
    assert closed and not closed[0].actors  # the workers were stopped


class InProcessPool:
    """ShardPool's interface over ChunkWorkers in this process, taking turns (no Ray): the workers' own computation
    checked quickly, with gaps between each worker's windows."""

    depth = 2

    def __init__(self, workers: list):
        self.workers, self.turn = workers, 0

    def submit(self, plan, start, stop, faces, windows, mask, paste, *, vae_batch, dtype):
        from latentsync.distributed.shard_worker import to_wire

        chunk = plan.options.chunk_frames
        worker = self.workers[self.turn % len(self.workers)]
        self.turn += 1
        return worker.generate(plan, start // chunk, -(-stop // chunk),
                               [to_wire(faces), to_wire(windows), to_wire(mask), to_wire(paste)], vae_batch)

    def result(self, job) -> torch.Tensor:
        return torch.from_numpy(job.faces)

    def take_stats(self):
        from latentsync.distributed.shard import ShardStats

        return ShardStats()


def test_chunks_per_call_equal_with_the_same_batch_chunks(models, loaded, clip, tmp_path, monkeypatch):
    """--batch-chunks 2: a window is two chunks, each worker denoises them together as the single run does."""
    from latentsync.distributed.shard_worker import ChunkWorker

    files = {"unet": str(models["unet"]), "vae": str(models["vae"])}
    pool = InProcessPool([ChunkWorker(files, version=None, device="cpu", dtype="fp32") for _ in range(2)])
    _, single = written_frames(monkeypatch, lambda: run_video(loaded, clip, tmp_path / "one.mp4", batch_chunks=2))
    _, sharded = written_frames(monkeypatch, lambda: run_video(loaded, clip, tmp_path / "two.mp4", pool,
                                                               batch_chunks=2))
    assert pool.turn == 3 and np.array_equal(sharded, single)  # windows of 8, 8 and 4 frames


@pytest.mark.parametrize("argv, message", [
    (["--devices", "cpu:0,cpu:0"], "cpu:0 listed more than once"),
    (["--devices", "cuda:0,cuda:0"], "cuda:0 listed more than once"),
    (["--devices", "cpu:0,cuda:0"], "not both"),
    (["--devices", "mps:0,mps:1"], "not 'mps'"),
    (["--devices", "cuda,cuda:1"], "number each device"),
    (["--devices", "gpu0,gpu1"], "'gpu0' is not a device name"),
    (["--devices", "cpu:0,,cpu:1"], "an empty name"),
    (["--devices", "cpu:0,cpu:1", "--device", "cuda:1"], "--devices replaces --device"),
    (["--devices", "cpu:0,cpu:1", "--min-sync", "3"], "--min-sync .* runs on one device"),
])
def test_devices_option_refused_before_loading(argv, message, capsys, monkeypatch):
    """Each refusal exits 2 with its reason before a model file is looked for."""
    from latentsync import cli, cli_runner

    monkeypatch.setattr(cli_runner, "load_everything", lambda *a: pytest.fail("models loaded"))
    assert cli.run(["--quiet", *argv]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert __import__("re").search(message, err), err


def test_devices_need_cuda_and_ray(capsys, monkeypatch):
    from latentsync import cli

    if not torch.cuda.is_available():  # a CPU-only host: GPUs named, or 'all', are refused
        assert cli.run(["--quiet", "--devices", "cuda:0,cuda:1"]) == cli.EXIT_USAGE
        assert "CUDA is not available here" in capsys.readouterr().err
        assert cli.run(["--quiet", "--devices", "all"]) == cli.EXIT_USAGE
        assert "no CUDA GPU here" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # Ray not installed
    assert cli.run(["--quiet", "--devices", "cpu:0,cpu:1"]) == cli.EXIT_USAGE
    assert 'pip install "latentsync-nodes[ray]"' in capsys.readouterr().err


def test_one_device_is_a_plain_run():
    import argparse

    from latentsync.distributed.devices import check_devices

    args = argparse.Namespace(devices="cpu:0", device="auto", min_sync=None)
    assert check_devices(args) is None and args.devices is None and args.device == "cpu"
    args = argparse.Namespace(devices=" cpu:1 , cpu:0 ", device="cpu", min_sync=None)
    assert check_devices(args) == ["cpu:1", "cpu:0"] and args.device == "cpu"
