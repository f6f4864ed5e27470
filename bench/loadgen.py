"""A lean HTTP/1.1 load generator: asyncio raw sockets, keep-alive, closed loop.

Each of `concurrency` connections sends the next request as soon as the previous response has
been read, until `requests` have completed. A pre-built request (bytes) is written as is and the
response is parsed just enough (status, Content-Length or chunked) to time it, so the client takes
as little of the machine's CPU as possible from the server it is measuring. Also runnable alone:

    python -m bench.loadgen --url http://127.0.0.1:3000/classify?model=baseline --image x.png -c 64 -n 5000
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


def multipart(fields: list[tuple[str, str, bytes, str]]) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data upload of (name, filename, data, type) parts."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, filename, data, ctype in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def build_request(url: str, body: bytes = b"", content_type: str = "", method: str = "POST") -> tuple[str, int, bytes]:
    """(host, port, raw request bytes) for `url`."""
    u = urlsplit(url)
    path = u.path + (f"?{u.query}" if u.query else "")
    head = [f"{method} {path or '/'} HTTP/1.1", f"Host: {u.hostname}:{u.port}", "Connection: keep-alive",
            "Accept: application/json"]
    if content_type:
        head.append(f"Content-Type: {content_type}")
    if body or method == "POST":
        head.append(f"Content-Length: {len(body)}")
    return u.hostname or "127.0.0.1", u.port or 80, ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Result:
    concurrency: int
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    client_cpu_s: float = 0.0  # CPU time this process spent while the load ran
    latencies_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        s = sorted(self.latencies_ms)
        return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]

    def summary(self) -> dict[str, Any]:
        ok = len(self.latencies_ms)
        return {"concurrency": self.concurrency, "requests": self.requests, "errors": self.errors,
                "seconds": round(self.seconds, 3), "rps": round(ok / self.seconds, 1) if self.seconds else 0.0,
                "p50_ms": self.percentile(50), "p99_ms": self.percentile(99),
                "client_cpu_share": round(self.client_cpu_s / self.seconds, 3) if self.seconds else None,
                "error_samples": self.error_samples[:3]}


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, close = None, False, False
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v)
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
        elif k == b"connection" and v.strip().lower() == b"close":
            close = True
    if chunked:
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
        return status, bytes(body), not close
    if length is None:
        return status, await reader.read(), False
    return status, await reader.readexactly(length), not close


async def _run(host: str, port: int, request: bytes, concurrency: int, requests: int, warmup: int,
               timeout: float, seconds: float | None = None) -> Result:
    res = Result(concurrency)
    remaining = requests
    deadline = float("inf")

    async def connect():
        return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)

    async def one(conn) -> tuple[Any, int, bytes]:
        reader, writer = conn
        writer.write(request)
        status, body, keep = await asyncio.wait_for(_read_response(reader), timeout)
        if not keep:
            writer.close()
            conn = await connect()
        return conn, status, body

    async def worker(barrier: asyncio.Event, ready: list[int]) -> None:
        nonlocal remaining
        conn = await connect()
        for _ in range(warmup):  # untimed: connection set-up, server-side first-call costs
            try:
                conn, _, _ = await one(conn)
            except Exception:
                conn = await connect()
        ready.append(1)
        if len(ready) == concurrency:
            barrier.set()
        await barrier.wait()
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                conn, status, body = await one(conn)
            except Exception as e:  # refused, reset, timed out: an error, and a fresh connection
                res.requests += 1
                res.errors += 1
                res.error_samples.append(f"{type(e).__name__}: {e}"[:200])
                try:
                    conn[1].close()
                    conn = await connect()
                except Exception:
                    await asyncio.sleep(0.05)
                continue
            res.requests += 1
            if 200 <= status < 300:
                res.latencies_ms.append((time.perf_counter() - t0) * 1000)
            else:
                res.errors += 1
                res.error_samples.append(f"HTTP {status}: {body[:200]!r}")
        conn[1].close()

    barrier, ready = asyncio.Event(), []
    tasks = [asyncio.create_task(worker(barrier, ready)) for _ in range(concurrency)]
    await barrier.wait()
    t_start, cpu_start = time.perf_counter(), time.process_time()
    if seconds is not None:
        deadline = t_start + seconds
    await asyncio.gather(*tasks)
    res.seconds = time.perf_counter() - t_start
    res.client_cpu_s = time.process_time() - cpu_start
    return res


def load(url: str, body: bytes, content_type: str, concurrency: int, requests: int | None = None,
         warmup: int = 2, timeout: float = 30.0, seconds: float | None = None) -> dict[str, Any]:
    """Closed-loop load on `url` until `requests` have completed or `seconds` have passed (either or
    both): rps, p50/p99 latency (ms, successful requests), errors."""
    assert requests is not None or seconds is not None
    host, port, request = build_request(url, body, content_type)
    return asyncio.run(_run(host, port, request, concurrency, requests if requests is not None else 2**62,
                            warmup, timeout, seconds)).summary()


def main() -> None:
    from zoo.cli import ArgumentParser

    parser = ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--image", required=True, help="file sent as the multipart field `image`")
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("-n", "--requests", type=int, default=2000)
    args = parser.parse_args()
    with open(args.image, "rb") as f:
        body, ctype = multipart([("image", args.image, f.read(), "application/octet-stream")])
    print(json.dumps(load(args.url, body, ctype, args.concurrency, args.requests), indent=2))


if __name__ == "__main__":
    main()
