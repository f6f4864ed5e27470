"""How many worker processes serve the zoo, and their start-up.

    FASHION_ZOO_WORKERS=4 make serve     # or: make serve WORKERS=4

The default is one worker per CPU core this process may run on. A request's cost is CPU work in
the worker (HTTP, BentoML's middleware, decoding, preprocessing, the JSON answer); the model itself
is a small part of it, so one process per core is what uses the machine. With a GPU the same holds
for that CPU work, but each worker creates its own CUDA context and its own onnxruntime CUDA memory
arena (onnxruntime's CUDA execution provider: one arena per session's device allocator, grown on
demand, `gpu_mem_limit` unbounded by default); a CUDA context with cuDNN and cuBLAS loaded takes
several hundred MB of GPU memory per process. So on a GPU the default is one worker per core up to
GPU_MAX_WORKERS (4: about 2 GB of GPU memory in contexts, not measured on a GPU here), plenty for
models of this size. FASHION_ZOO_WORKERS=N overrides either.

Readiness: a worker starts accepting connections only once BentoML has created its service instance
(uvicorn runs the ASGI lifespan, where BentoML calls `FashionZoo.__init__`, before it serves the shared
socket), so a worker that answers GET /readyz has its zoo loaded and a worker still loading takes no
request: each worker's own readiness is the service's. Checked with 2 workers, 5 starts: 200
requests on fresh connections sent the moment /readyz first said 200 were all answered 200.

Garbage collection: a worker holds ~135,000 container objects after start-up (BentoML, Starlette,
onnxruntime, numpy, the zoo), none of which ever become garbage, and a full collection scans them all:
under load that was ~5 full collections per 20 s, each a 100-250 ms stall of the event loop (the
p99 latency). `freeze_startup_heap()` moves them out of the collector's sight once the worker is
loaded (`gc.freeze()`, as the gc module's documentation suggests for forking servers); full
collections then scan only what requests allocate (~400 objects, under 5 ms per collection).
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
    from .runtime import CUDA, _cuda_devices

    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return CUDA in ort.get_available_providers() and _cuda_devices()[0] > 0


def freeze_startup_heap() -> None:
    """At the end of a worker's start-up: collect once, then exempt everything alive from future
    collections (see the module docstring)."""
    gc.collect()
    gc.freeze()
