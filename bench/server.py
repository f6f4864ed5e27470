"""The project's one server runner: start `bentoml serve` (or any server command) on a free local
port, wait until it answers, stop it and its workers after. The benchmarks and the tests use it;
`wait_ready` alone waits on a server started some other way (a container, a Kubernetes pod)."""
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
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NotReady(RuntimeError):
    """The server stopped, or did not answer in time; the message ends with its log."""


def wait_ready(url: str, alive: Callable[[], bool], start: float, timeout: float = 120,
               logs: Callable[[], str] = lambda: "", what: str = "the server",
               ready_path: str = "/readyz", poll: float = 0.25) -> float:
    """Seconds from `start` (a time.monotonic()) until GET `url``ready_path` answers 200; NotReady, with
    the end of `logs()`, once `alive()` says the server stopped or after `timeout` seconds."""
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(f"{url}{ready_path}", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, OSError):
            pass
        if not alive():
            raise NotReady(f"{what} stopped before it was ready:\n{logs()[-4000:]}")
        time.sleep(poll)
    raise NotReady(f"{what} not ready after {timeout:.0f} s:\n{logs()[-4000:]}")


class Server:
    """`with Server("service.service:FashionZoo", log) as url:` serves until the block ends.

    `cmd` runs another server than `bentoml serve target` ("{port}" in it: the free port) that answers
    200 on `ready_path` once it serves. `env` is added to this process's environment (or is the whole
    of it: `inherit_env=False`). The server gets its own session: stopping it stops its workers too.
    """

    def __init__(self, target: str, log: Path, env: dict[str, str] | None = None, start_timeout: float = 120,
                 cmd: list[str] | None = None, ready_path: str = "/readyz", inherit_env: bool = True):
        self.target, self.log, self.start_timeout = target, log, start_timeout
        self.env = {**(os.environ if inherit_env else {}), **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = cmd or [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1", "--port", "{port}"]
        self.ready_path = ready_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        cmd = [a.replace("{port}", str(self.port)) for a in self.cmd]
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def wait_ready(self) -> str:
        """Block until the server answers on `ready_path`; NotReady with its log if it dies or stalls."""
        assert self.proc is not None
        proc = self.proc
        try:
            wait_ready(self.url, lambda: proc.poll() is None, time.monotonic(), self.start_timeout,
                       self.output, self.target, self.ready_path)
        except NotReady as e:
            if proc.poll() is not None:
                raise NotReady(f"{self.target} exited with status {proc.returncode}: {e}") from None
            raise
        return self.url

    def each_process(self, read: Callable[[Any], Any], cmd_has: str = "") -> list[Any]:
        """`read(process)` (psutil) of each live process of the server, the root and its descendants,
        whose command line contains `cmd_has`, in pid order (processes gone meanwhile left out)."""
        import psutil

        assert self.proc is not None
        out = []
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return out
        for p in procs:
            try:
                if not cmd_has or cmd_has in " ".join(p.cmdline()):
                    out.append((p.pid, read(p)))
            except psutil.Error:
                continue
        return [value for _, value in sorted(out)]

    def cpu_s(self, cmd_has: str = "") -> float:
        """CPU seconds (user + system) used so far by the server's live processes (those whose command
        line contains `cmd_has`); all of them by default (a supervisor, its workers, helpers): what
        serving costs, whatever the server's shape."""
        return sum(self.each_process(lambda p: sum(p.cpu_times()[:2]), cmd_has))

    def output(self) -> str:
        """Everything the server has logged so far."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(wait)
                return
            except ProcessLookupError:
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
