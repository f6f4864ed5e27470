"""Does the container cost speed? The same bento served inside its image and directly on the host,
started side by side and loaded in turn with POST /classify at the same concurrency.

    python -m bench.compare_host                                    # fashion-zoo-service-cpu:latest
    python -m bench.compare_host --bento fashion-zoo-service:latest --rounds 5 -n 10000

The image is `<bento name>:<bento version>`, as `make container` tags it; the host server is
`bentoml serve <bento>` with this project's virtual environment. Both get the host's network and
their default worker count. Each round loads one then the other (the order alternates), with
bench.loadgen; the report gives every round, the medians, the container/host ratio, seconds from
start to /readyz for each, and the cores other processes used before each run (a shared machine).

On a busy machine, mind where the CPU goes: the container's processes live in their own cgroup,
which the kernel weighs as one task against every other process (cpu.shares), while the host
server's processes count one each. `--equal-cgroups` (root) gives the host server a cgroup of its
own with the same weight, so that the comparison measures the container, not its placement.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from deploy.containerize import backend_env, choose_backend

from .loadgen import load, multipart
from .machine import others_now
from .server import free_port, wait_ready

REPO = Path(__file__).resolve().parents[1]

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def own_cgroup(name: str) -> Path:
    """A new cpu cgroup at the top level (cgroup v1 `cpu` hierarchy, else v2), default weight."""
    v1 = Path("/sys/fs/cgroup/cpu")
    path = (v1 if v1.is_dir() else Path("/sys/fs/cgroup")) / name
    path.mkdir(exist_ok=True)
    return path


def test_png() -> bytes:
    """The first Fashion-MNIST test image (Debian's file), else a grey square, as PNG."""
    if FASHION_MNIST.exists():
        pixels = np.frombuffer(gzip.open(FASHION_MNIST).read(16 + 784)[16:], np.uint8).reshape(28, 28)
    else:
        pixels = np.full((28, 28), 128, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, format="PNG")
    return buf.getvalue()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bento", default="fashion-zoo-service-cpu:latest")
    p.add_argument("--backend", default=os.environ.get("CONTAINER_BACKEND") or None)
    p.add_argument("-c", "--concurrency", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("-n", "--requests", type=int, default=4000, help="requests per run")
    p.add_argument("--model", default="", help="?model= (default: the manifest's default)")
    p.add_argument("--equal-cgroups", action="store_true",
                   help="run the host server in a cgroup of its own, as the container is (root)")
    args = p.parse_args()

    import bentoml

    bento = str(bentoml.bentos.get(args.bento).tag)
    backend = choose_backend(args.backend)
    env = backend_env(backend)
    ports = {"container": free_port(), "host": free_port()}
    name = f"fashion-zoo-compare-{os.getpid()}"
    report: dict = {"bento": bento, "image": bento, "backend": backend, "concurrency": args.concurrency,
                    "requests": args.requests, "runs": []}

    # One after the other, so that neither start-up slows the other's.
    urls = {k: f"http://127.0.0.1:{v}" for k, v in ports.items()}
    host = None
    cgroup = own_cgroup(name) if args.equal_cgroups else None
    report["host_cgroup"] = str(cgroup) if cgroup else "the caller's"
    # The server and the workers it starts join the cgroup before bentoml runs.
    join = (lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid()))) if cgroup else None
    try:
        start = time.monotonic()
        subprocess.run([backend, "run", "-d", "--name", name, "--network", "host", bento, "--host",
                        "127.0.0.1", "--port", str(ports["container"])], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        running = lambda: subprocess.run([backend, "inspect", "--format", "{{.State.Running}}", name],
                                         capture_output=True, text=True, env=env).stdout.strip() == "true"
        ready = wait_ready(urls["container"], running, start, 300, what="the container", poll=0.1)
        report["ready_s"] = {"container": round(ready, 2)}
        start = time.monotonic()
        host = subprocess.Popen([str(Path(sys.executable).with_name("bentoml")), "serve", bento, "--host",
                                 "127.0.0.1", "--port", str(ports["host"])], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=join)
        ready = wait_ready(urls["host"], lambda: host.poll() is None, start, 300, what="the host's server",
                           poll=0.1)
        report["ready_s"]["host"] = round(ready, 2)

        body, ctype = multipart([("image", "x.png", test_png(), "image/png")])
        query = f"/classify?model={args.model}" if args.model else "/classify"
        for target in urls:  # warm both: first requests, connection set-up
            load(urls[target] + query, body, ctype, args.concurrency, 500)
        for i in range(args.rounds):
            for target in (("container", "host") if i % 2 == 0 else ("host", "container")):
                others = others_now(1.0)
                r = load(urls[target] + query, body, ctype, args.concurrency, args.requests)
                report["runs"].append({"round": i, "target": target, "others_cores": others, **r})
                print(f"round {i} {target:9s} {r['rps']:8.1f} requests/s  p50 {r['p50_ms']:.1f} ms  "
                      f"p99 {r['p99_ms']:.1f} ms  errors {r['errors']}  (others: {others} cores)", flush=True)
    finally:
        subprocess.run([backend, "rm", "-f", "-t", "10", name], capture_output=True, env=env)
        if host is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(host.pid, signal.SIGTERM)
            host.wait(timeout=30)
        if cgroup is not None:
            time.sleep(1)  # the workers' exit
            with contextlib.suppress(OSError):
                cgroup.rmdir()

    med = {t: round(statistics.median(r["rps"] for r in report["runs"] if r["target"] == t), 1)
           for t in ("container", "host")}
    report["median_rps"] = med
    report["container_vs_host"] = round(med["container"] / med["host"], 3)
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
