"""Replaying a function as a CUDA graph while its input shapes repeat: the same kernels, launched once.

Small calls that the host cannot launch as fast as the GPU runs them (the U-Net on a video's short last chunk, which
stays uncompiled) spend most of their time in launches. :class:`ShapeGraph` runs such a call eagerly the first time
(lazy set-up and autotuning happen outside a capture), captures it the second time, and replays the captured kernels
from then on. The kernels are those the call launches anyway, so the results should be the same bit for bit
(``tests/unit/test_cuda_graphs.py`` and ``tools/device_checks/check_pipeline_device.py --compile`` check this on a
GPU). The graph's memory is its own pool, held until the :class:`ShapeGraph` goes, so callers keep one only for a
run of equal calls. An experiment, off in the pipeline: see docs/performance.md, session 14.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import torch

log = logging.getLogger(__name__)


def clone_outputs(out: Any) -> Any:
    """``out`` (a tensor, or tuples and lists of them) with every tensor copied: a graph's next replay overwrites its
    own outputs in place."""
    return torch.utils._pytree.tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, out)


def _signature(tensors: tuple[torch.Tensor, ...]) -> tuple:
    return tuple((tuple(t.shape), t.stride(), t.dtype, t.device) for t in tensors)


class ShapeGraph:
    """``fn(*tensors)``, replayed from a CUDA graph once a call with the same input shapes has run (see module doc).

    Outputs are copies, so a caller may keep them across calls. Off CUDA, or after a capture failed (the reason is in
    :attr:`failure`), every call runs ``fn`` directly. Inputs of new shapes drop the graph and start over.
    """

    def __init__(self, fn: Callable[..., Any], *, name: str = "call",
                 before_capture: Optional[Callable[[], None]] = None):
        self.fn = fn
        self.name = name
        self.before_capture = before_capture  # e.g. torch.cuda.empty_cache: the graph's memory is its own pool
        self.failure: Optional[str] = None
        self.replays = 0
        self._key: Optional[tuple] = None
        self._seen = False  # a call of this signature ran eagerly (the warm-up)
        self._graph: Optional[torch.cuda.CUDAGraph] = None
        self._inputs: tuple[torch.Tensor, ...] = ()
        self._outputs: Any = None

    def __call__(self, *tensors: torch.Tensor) -> Any:
        if self.failure is not None or not tensors or any(t.device.type != "cuda" for t in tensors):
            return self.fn(*tensors)
        key = _signature(tensors)
        if key != self._key:
            self.reset()
            self._key = key
        if self._graph is None:
            if not self._seen:
                self._seen = True
                return self.fn(*tensors)
            if not self._capture(tensors):
                return self.fn(*tensors)
        for static, given in zip(self._inputs, tensors):
            static.copy_(given)
        self._graph.replay()
        self.replays += 1
        return clone_outputs(self._outputs)

    def reset(self) -> None:
        """Drop the graph (its memory goes back to PyTorch's allocator) and the warm-up mark."""
        self._graph, self._inputs, self._outputs, self._key, self._seen = None, (), None, None, False

    def _capture(self, tensors: tuple[torch.Tensor, ...]) -> bool:
        device = tensors[0].device
        if self.before_capture is not None:
            self.before_capture()
        inputs = tuple(torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device).copy_(t) for t in tensors)
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        try:
            with torch.cuda.device(device), torch.cuda.stream(stream):
                # thread_local: the pipeline's other threads may wait on CUDA events meanwhile
                graph.capture_begin(capture_error_mode="thread_local")
                try:
                    outputs = self.fn(*inputs)
                except BaseException:
                    try:
                        graph.capture_end()
                    except Exception:  # the capture is invalid anyway; the first error is the one to report
                        pass
                    raise
                graph.capture_end()
        except (KeyboardInterrupt, torch.cuda.OutOfMemoryError):
            torch.cuda.current_stream(device).wait_stream(stream)
            raise
        except Exception as exc:  # an operation that a graph cannot hold: run as before, eagerly
            torch.cuda.current_stream(device).wait_stream(stream)
            self.failure = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            log.warning("Replaying %s as a CUDA graph failed (%s); it runs as before.", self.name, self.failure)
            return False
        torch.cuda.current_stream(device).wait_stream(stream)
        self._graph, self._inputs, self._outputs = graph, inputs, outputs
        return True
