"""Start the real BentoML server for tests: `bentoml serve` on 127.0.0.1 and a free port, with its
own BENTOML_HOME, waited on until /readyz answers 200, stopped (with its workers) afterwards.
The runner is the benchmarks' own (bench/server.py); this adds the tests' clean environment."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from bench.server import Server

REPO = Path(__file__).resolve().parents[1]
BENTOML = str(Path(sys.executable).with_name("bentoml"))


def bentoml_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without the caller's FASHION_ZOO_* and BENTOML_* settings, plus `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASHION_ZOO_", "BENTOML_"))}
    return {**env, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", **extra}


@contextlib.contextmanager
def serve(home: Path, log: Path, target: str = "service.service:FashionZoo", timeout: float = 120,
          workers: int | None = 1, **env: str) -> Iterator[Server]:
    """`bentoml serve target` with `workers` worker processes (FASHION_ZOO_WORKERS; one keeps the
    tests quick; None: the service's default, one per core); yields the running bench.server.Server
    (`.url`, `.proc`, `.output()`) once /readyz says ready."""
    if workers is not None:
        env = {"FASHION_ZOO_WORKERS": str(workers), **env}
    server = Server(target, log, bentoml_env(home, **env), start_timeout=timeout, inherit_env=False,
                    cmd=[BENTOML, "serve", target, "--host", "127.0.0.1", "--port", "{port}"])
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
