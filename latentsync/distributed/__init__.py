"""Runners that spread one video, or a batch of jobs, over several devices or processes.

What goes here: multi-GPU / Ray runners. They build on ``latentsync.pipeline.stages``: a ``VideoPlan`` splits a
video into chunks, and ``generate_chunks(..., first_chunk=i, stop_chunk=j)`` computes any range of chunks in any
process with exactly the frames of the one-shot run (the noise of chunk k is derived from the seed alone; exact
with one chunk per U-Net call), so a runner only has to hand out chunk ranges, gather the faces in order, and
composite and encode them.

``shard.py`` (with ``shard_worker.py``, ``devices.py``, ``shard_cli.py``): one video over the devices of a host,
``latentsync --devices`` (docs/distributed.md).
"""
