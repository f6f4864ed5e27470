"""The benchmarks' load: wrk (https://github.com/wg/wrk, Debian: apt-get install wrk), a C load
generator, keep-alive connections in a closed loop sending one pre-built request.

On 2 cores the load generator takes its CPU from the server it measures: at concurrency 64 wrk used 0.16
of a core and the zoo answered 3,259 requests/s; a Python asyncio generator used 0.30 and left it 2,754.
"""
from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

MISSING = "wrk is not installed (apt-get install wrk): the benchmarks load servers with wrk"

# wrk runs this script: the request body and type, and one JSON line of results at the end.
SCRIPT = """
wrk.method = "POST"
local f = io.open("{body}", "rb"); wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = "{content_type}"
{more_headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_RESULT {{"requests": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"timeouts": %d, "micros": %d, "p50_us": %d, "p99_us": %d}}\\n', summary.requests, e.status,
    e.connect + e.read + e.write, e.timeout, summary.duration, latency:percentile(50),
    latency:percentile(99)))
end
"""


def multipart(fields: list[tuple[str, str, bytes, str]]) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data upload of (name, filename, data, type) parts."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
             f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n" for name, filename, data, ctype in fields]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def available() -> bool:
    return shutil.which("wrk") is not None


def describe() -> str:
    """The load generator as the reports name it: wrk's version and how it loads."""
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    version = ((out.stdout + out.stderr).strip().splitlines() or ["wrk"])[0].split(" Copyright")[0]
    return f"{version}, one thread, keep-alive, closed loop, on the same machine"


def load(url: str, body: bytes, content_type: str, concurrency: int, seconds: float,
         timeout_s: int = 30, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """`seconds` of closed-loop load on `url` from `concurrency` connections (one wrk thread);
    `headers`: more request headers (a V2 binary request's Inference-Header-Content-Length)."""
    with tempfile.TemporaryDirectory(prefix="fashion-zoo-wrk-") as tmp:
        body_path, script = Path(tmp) / "body", Path(tmp) / "post.lua"
        body_path.write_bytes(body)
        more = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items())
        script.write_text(SCRIPT.format(body=body_path, content_type=content_type, more_headers=more))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
                               f"--timeout={timeout_s}s", "-s", str(script), url],
                              capture_output=True, text=True, timeout=seconds + timeout_s + 30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRK_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-300:]}")
    r = json.loads(line[len("WRK_RESULT "):])
    secs = r["micros"] / 1e6
    errors = r["non_2xx"] + r["socket_errors"] + r["timeouts"]
    ok = r["requests"] - r["non_2xx"]
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    samples = [f"{k} {r[k]}" for k in ("non_2xx", "socket_errors", "timeouts") if r[k]]
    return {"concurrency": concurrency, "requests": r["requests"], "errors": errors, "seconds": round(secs, 3),
            "rps": round(ok / secs, 1) if secs else 0.0,
            "p50_ms": r["p50_us"] / 1000 if ok else None, "p99_ms": r["p99_us"] / 1000 if ok else None,
            "client_cpu_share": round(cpu / secs, 3) if secs else None, "error_samples": samples}
