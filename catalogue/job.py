"""The Ray Data pipeline of a catalogue job (docs/catalogue.md, "How it runs"):

    paths --from_arrow--> map_batches(Classifier, ActorPoolStrategy): read, decode, classify -->
    rows --iter_batches--> the driver --> appended to a part of OUT, complete every PART_ROWS rows or PART_SECONDS
"""
from __future__ import annotations

import math
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .classifier import Classifier
from .output import Output
from .ray_fixes import settle_iterator_threads
from .sources import Sources
from .zoos import ZooFiles

if TYPE_CHECKING:
    import pyarrow as pa

BATCH_SIZE = 1024         # images per actor call (--batch-size): on 60,000 28x28 PNGs (2 cores) 7,800
                          # images/s at 256, 13,000 at 1,024, where the bare loop does 14,000 at either
PART_ROWS = 20_000        # a part of OUT at least this often, in rows (--part-rows) ...
PART_SECONDS = 30.0       # ... or in seconds: what an interruption can cost
PLAIN_EVERY = 5.0         # seconds between plain progress lines when stderr is not a terminal


@dataclass
class Plan:
    names: list[str]
    auto: dict[str, Any] | None
    top_k: int
    device: str            # "cpu" or "cuda", as the actors will load the zoo
    batch_size: int
    cpus_per_actor: float
    actors: int | None     # None: as many as fit
    part_rows: int = PART_ROWS


@dataclass
class Tally:
    images: int = 0
    failed: int = 0
    seconds: float = 0.0   # from the first file read to the last part written (Ray's start-up apart)
    startup: float = 0.0   # ray.init and connecting to the cluster
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (seconds, images so far) per block
    actors: int = 0
    nodes: int = 0

    @property
    def first_result(self) -> float:
        """Seconds from the job's start to the first block of rows: the actor pool's start-up."""
        return self.arrivals[0][0] if self.arrivals else 0.0

    @property
    def steady_rate(self) -> float:
        """Images/s between 10% and 90% done (the pool's rate once up, before the last blocks trail in):
        the slope of a least-squares line through the blocks' arrivals, which come in bunches."""
        total = self.images
        middle = [(t, n) for t, n in self.arrivals if 0.1 * total <= n <= 0.9 * total]
        if len(middle) < 3:
            return total / self.seconds if self.seconds else 0.0
        return statistics.linear_regression(*zip(*middle)).slope


class Interruption:
    """Ctrl-C (SIGINT) or SIGTERM for the length of a job, Ray's start and shutdown included: the
    first asks the job to finish the block in hand, write what is pending and stop; a second stops at
    once (KeyboardInterrupt). `exit_code` is the shell's 128 + the first signal. Held by the driver
    because, with Ray 2.60, a SIGINT while `iter_batches` streams did not stop the job, `ray.init`
    sets its own SIGTERM handler (`take` takes it back), and a signal during the shutdown met
    Python's or Ray's handler, so a complete job exited 1 or 130 (tests/test_catalogue.py)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.old: dict[int, Any] = {}
        self.shutting_down = False  # set before Ray's shutdown: no KeyboardInterrupt can cut it short then

    def __enter__(self) -> Interruption:
        self.take()
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.old.items():
            signal.signal(s, handler)

    def take(self) -> None:
        """(Re)install the handlers; the first call's are the ones put back on exit."""
        for s in (signal.SIGINT, signal.SIGTERM):
            self.old.setdefault(s, signal.signal(s, self._handle))

    def _handle(self, signum, frame) -> None:
        if self.signal is not None and not self.shutting_down:  # a second signal: stop now, no block awaited
            raise KeyboardInterrupt
        self.signal = self.signal or signum

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal or signal.SIGINT)


def start_ray(address: str | None) -> tuple[float, dict[str, float]]:
    """ray.init: a local Ray on this machine's cores, or the cluster at `address` (or RAY_ADDRESS)."""
    import logging
    import os

    import ray

    # Ray Data 2.60 otherwise polls a Prometheus server (localhost:9090) for usage metrics; with
    # none there, its failures were logged after an interrupted job's last line.
    os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")
    t0 = time.perf_counter()
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
    return time.perf_counter() - t0, ray.cluster_resources()


def pool_size(plan: Plan, resources: dict[str, float]) -> int:
    if plan.actors:
        return plan.actors
    if plan.device == "cuda":
        return max(1, int(resources.get("GPU", 0)))
    return max(1, math.floor(resources.get("CPU", 1) / plan.cpus_per_actor))


def run(zoo: ZooFiles, sources: Sources, todo: pa.Array, out: Output, plan: Plan,
        resources: dict[str, float], progress: bool, stop: Interruption) -> Tally:
    """Classify the files `todo` of `sources` into `out` on the Ray that `start_ray` started. Returns
    early, every block in hand written, once `stop` has a signal: `tally.images < len(todo)`."""
    import pyarrow as pa
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    tally = Tally()
    tally.nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    tally.actors = pool_size(plan, resources)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = progress
    gpu = plan.device == "cuda"
    # Each actor loads only the models that may answer (model=auto: two of the zoo's ten).
    manifest = {**zoo.manifest, "models": {n: zoo.manifest["models"][n] for n in plan.names}}
    files = {n: zoo.files[n] for n in plan.names}
    # Only the paths go into the dataset, one block a batch so that the batches spread over the pool;
    # each actor reads its files (read_binary_files cost ~2 ms of CPU a file: docs/catalogue.md).
    paths = pa.table({"path": todo})
    ds = ray.data.from_arrow([paths.slice(i, plan.batch_size) for i in range(0, len(todo), plan.batch_size)])
    ds = ds.map_batches(
        Classifier, batch_size=plan.batch_size, batch_format="numpy",
        fn_constructor_kwargs=dict(manifest=manifest, files=files, tag=zoo.tag, names=plan.names,
                                   auto=plan.auto, top_k=plan.top_k, device=plan.device,
                                   filesystem=sources.filesystem, scheme=sources.scheme),
        # Four batches queued at each actor (Ray Data's default: two): the next batch is there when a
        # call ends (60,000 PNGs: the actors' share of the two cores 0.78 -> 0.87 in their busiest 3 s).
        compute=ActorPoolStrategy(size=tally.actors, max_tasks_in_flight_per_actor=4),
        num_cpus=0 if gpu else plan.cpus_per_actor, num_gpus=1 if gpu else 0)
    t0 = last_part = last_line = time.perf_counter()
    total = len(todo)
    if stop.signal:  # while Ray started: nothing to wait for
        return tally
    # The iterator itself (a generator), not the iterable `iter_batches` returns, so it can be closed.
    batches = iter(ds.iter_batches(batch_size=None, batch_format="pyarrow"))
    try:
        for block in batches:
            # Taken again on every block: taken once after ray.init, 4 of 15 SIGTERMs sent mid-job
            # ended the driver with status 1 and no message.
            stop.take()
            out.add(block)
            now = time.perf_counter()
            tally.images += len(block.column("path").unique())
            tally.arrivals.append((now - t0, tally.images))
            tally.failed += block.column("error").is_valid().to_numpy(zero_copy_only=False).sum().item()
            if out.pending_rows >= plan.part_rows or now - last_part >= PART_SECONDS:
                out.seal()
                last_part = now
            if not progress and now - last_line >= PLAIN_EVERY:
                print(f"catalogue: {tally.images:,} of {total:,} images ({100 * tally.images / total:.1f}%), "
                      f"{tally.images / (now - t0):,.0f} images/s, {tally.failed:,} failed",
                      file=sys.stderr, flush=True)
                last_line = now
            if stop.signal:
                break
    finally:
        batches.close()  # its prefetching stops now, not when Ray is shut down under it
        settle_iterator_threads()  # and its threads end before Ray is shut down (ray_fixes.py)
        out.seal()  # what was classified before an interruption is kept
        tally.seconds = time.perf_counter() - t0
    return tally
