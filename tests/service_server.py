"""Start the real BentoML server for tests: `bentoml serve` on 127.0.0.1 and a free port, with its
own BENTOML_HOME, waited on until /readyz answers 200, stopped (with its workers) afterwards."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx

REPO = Path(__file__).resolve().parents[1]
BENTOML = str(Path(sys.executable).with_name("bentoml"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bentoml_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASHION_ZOO_", "BENTOML_"))}
    return {**env, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", **extra}


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serve(home: Path, log: Path, target: str = "service.service:FashionZoo", timeout: float = 120,
          workers: int | None = 1, **env: str) -> Iterator[Server]:
    """`bentoml serve target` with `workers` worker processes (FASHION_ZOO_WORKERS; one keeps the
    tests quick; None: the service's default, one per core); yields once /readyz says ready."""
    port = free_port()
    if workers is not None:
        env = {"FASHION_ZOO_WORKERS": str(workers), **env}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [BENTOML, "serve", target, "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, env=bentoml_env(home, **env), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: stopping it stops its workers
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited ({proc.returncode}):\n{server.output()[-4000:]}")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"bentoml serve not ready after {timeout}s:\n{server.output()[-4000:]}")
            time.sleep(0.3)
        yield server
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
