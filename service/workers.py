"""How many worker processes serve the zoo, and their start-up.

    FASHION_ZOO_WORKERS=4 make serve     # or: make serve WORKERS=4

The default is one worker per CPU core this process may run on: a request's cost is CPU work in the
worker (HTTP, BentoML's middleware, decoding, preprocessing, the JSON answer) far more than the model.
On a GPU, at most GPU_MAX_WORKERS (4): each worker holds its own CUDA context (several hundred MB of
GPU memory with cuDNN and cuBLAS loaded) and its own onnxruntime CUDA memory arena (grown on demand,
unbounded by default); about 2 GB of GPU memory in contexts, not measured on a GPU here.

Readiness: uvicorn runs the ASGI lifespan, where BentoML calls `FashionZoo.__init__`, before it
serves the shared socket, so a worker still loading takes no request and each worker's readiness is
the service's. Checked with 2 workers, 5 starts: 200 requests on fresh connections sent the moment
/readyz first said 200 were all answered 200.

Garbage collection: a worker holds ~135,000 container objects after start-up (BentoML, Starlette,
onnxruntime, numpy, the zoo) that never become garbage; under load, full collections scanning them
all (~5 per 20 s, each a 100-250 ms stall of the event loop) made the p99 latency.
`freeze_startup_heap()` moves them out of the collector's sight (`gc.freeze()`, as the gc module's
documentation suggests for forking servers): a full collection then scans ~400 objects, under 5 ms.
"""
from __future__ import annotations

import gc
import os

ENV = "FASHION_ZOO_WORKERS"
GPU_MAX_WORKERS = 4


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(gpu: bool, env: dict[str, str] | None = None) -> tuple[int, str]:
    """(number of workers, why, in words). `gpu`: whether the zoo will run on a GPU."""
    env = os.environ if env is None else env
    text = env.get(ENV, "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"{ENV}={text!r} is not a number of workers; give a whole number >= 1 "
                             f"or leave it unset for one worker per CPU core")
        return int(text), f"{ENV}={text}"
    cores = cpu_cores()
    if gpu:
        n = min(cores, GPU_MAX_WORKERS)
        return n, (f"one per CPU core ({cores}), at most {GPU_MAX_WORKERS} on a GPU (each holds its own "
                   f"CUDA context); {ENV}=N overrides")
    return cores, f"one per CPU core ({cores} available to this process); {ENV}=N overrides"


def gpu_likely(device: str) -> bool:
    """Whether the zoo will ask for CUDA: cheap checks only (no CUDA library is loaded here);
    the workers decide for real when they load the zoo."""
    if device == "cpu":
        return False
    import onnxruntime as ort

    from .runtime import CUDA, _cuda_devices

    return CUDA in ort.get_available_providers() and _cuda_devices()[0] > 0


def freeze_startup_heap() -> None:
    """At the end of a worker's start-up: collect once, then exempt everything alive from future
    collections (see the module docstring)."""
    gc.collect()
    gc.freeze()
