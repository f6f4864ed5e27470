"""Start a `bentoml serve` process (or any server command) on a free local port for a benchmark,
and stop it after."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`with Server("service.service:FashionZoo", log) as url:` serves until the block ends.

    `cmd` runs another server instead of `bentoml serve target`: its arguments, with "{port}"
    replaced by the free port; `ready_path` is what answers 200 once it serves. The process gets
    its own session, so stopping it stops its workers too (and nothing else).
    """

    def __init__(self, target: str, log: Path, env: dict[str, str] | None = None, start_timeout: float = 120,
                 cmd: list[str] | None = None, ready_path: str = "/readyz"):
        self.target, self.log, self.start_timeout = target, log, start_timeout
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd, self.ready_path = cmd, ready_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        cmd = [sys.executable, "-m", "bentoml", "serve", self.target, "--host", "127.0.0.1",
               "--port", str(self.port)]
        if self.cmd is not None:
            cmd = [a.replace("{port}", str(self.port)) for a in self.cmd]
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def wait_ready(self) -> str:
        """Block until GET /readyz answers 200; raise with the log's tail if the server dies or stalls."""
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.target} exited with status {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}{self.ready_path}", timeout=2) as r:
                    if r.status == 200:
                        return self.url
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.target} not ready after {self.start_timeout:.0f}s: {self.tail()}")

    def cpu_s(self) -> float:
        """CPU seconds (user + system) used so far by the server's live processes, all of them
        (a supervisor, its workers, helpers): what serving costs, whatever the server's shape."""
        import psutil

        assert self.proc is not None
        total = 0.0
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return total
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:  # gone meanwhile
                continue
        return total

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> str:
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
