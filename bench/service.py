"""The service under load (`python -m bench --sections service`): /classify at several concurrencies
and the batch route, with one worker and with the default workers, each against a no-op BentoML service
with the same workers (bench/noop_service.py), the framework's ceiling. Both are warmed up at once, then
the wrk runs alternate; with the default workers also the costliest requests and (`soak`) the soak.
docs/benchmarks.md, "Service", has the why.
"""
from __future__ import annotations

import concurrent.futures
import io
import os
import tempfile
import time
from pathlib import Path
from statistics import median_high
from typing import Any, Callable

from service.workers import worker_count
from zoo.manifest import STORE_NAME, ZooLoadError, read_manifest

from . import wrk
from .server import Server
from .stats import summary

CONCURRENCY = (1, 16, 64)
SECONDS = {False: {1: 3, 16: 4, 64: 5}, True: {1: 1, 16: 1, 64: 2}}  # per run, by quick
WARMUP_S = {False: 120, True: 5}
BATCH_IMAGES = 64
BATCH_SECONDS = {False: 4, True: 1}
REPS = {False: 3, True: 2}
SOAK_AT, SOAK_CONCURRENCY = (10_000, 50_000), 64
STORE_MODEL = os.environ.get("FASHION_ZOO_MODEL", f"{STORE_NAME}:latest")
WORKER_SCRIPT = "_bentoml_impl.worker.service"


def sample_pngs(data_dir: str, n: int) -> tuple[list[bytes], str]:
    """n Fashion-MNIST test images as PNG files (synthetic stripes when the data is absent), and what they are."""
    import numpy as np
    from PIL import Image

    source = "Fashion-MNIST test images"
    try:
        from training.data.fashion_mnist import load_pixels

        pixels = load_pixels(data_dir, train=False)[0][:n].numpy()
    except Exception:
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
        pixels[:, 8:20, 4:24] = 200
        source = "synthetic 28x28 images (no Fashion-MNIST in the data directory)"
    out = [_encode(Image.fromarray(p, "L"), "PNG") for p in pixels]
    return out, f"{source}, 28x28 PNG, {len(out[0])} bytes, multipart field 'image'"


def _encode(image: Any, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def store_dir() -> tuple[Path | None, str]:
    """(the directory of the stored `fashion-zoo` the zoo serves, its tag) or (None, why not)."""
    try:
        import bentoml

        stored = bentoml.models.get(STORE_MODEL)
    except Exception as e:
        home = os.environ.get("BENTOML_HOME", "~/bentoml")
        return None, (f"no {STORE_MODEL} in the BentoML model store ({home}): {type(e).__name__}; "
                      f"run `make export` or `python -m release.shipped` first")
    return Path(stored.path), str(stored.tag)


def worker_rss_mb(server: Server) -> list[float]:
    """Resident memory (MB) of each worker process of a `bentoml serve`, by pid."""
    return server.each_process(lambda p: round(p.memory_info().rss / 2**20, 1), WORKER_SCRIPT)


def measured(cpu_s: Callable[[], float], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """One wrk run (`wrk.load(*args, **kwargs)`) with the server's CPU (`cpu_s()`, seconds so far) per
    request (ms: unlike requests/s it hardly depends on what else the machine does) and in cores."""
    before = cpu_s()
    r = wrk.load(*args, **kwargs)
    cpu = cpu_s() - before
    return {**r, "server_cpu_ms_per_request": round(cpu * 1000 / (r["requests"] or 1), 4),
            "server_cpu_cores": round(cpu / r["seconds"], 2) if r["seconds"] else None}


def summarise(runs: list[dict[str, Any]], *more: str) -> dict[str, Any]:
    """Rounds of one load -> medians and ranges (bench.stats.summary, also of the fields `more`),
    totals and error samples."""
    ok = [r for r in runs if r["p50_ms"] is not None]
    return {
        "rps": summary(r["rps"] for r in runs),
        "p50_ms": summary(r["p50_ms"] for r in ok) if ok else None,
        "p99_ms": summary(r["p99_ms"] for r in ok) if ok else None,
        "p99_over_p50": summary(r["p99_ms"] / r["p50_ms"] for r in ok if r["p50_ms"]) if ok else None,
        "client_cpu_share": summary(r["client_cpu_share"] for r in runs),
        "server_cpu_ms_per_request": summary(r["server_cpu_ms_per_request"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "error_samples": [s for r in runs for s in r["error_samples"]][:3],
        **{k: summary(r[k] or 0 for r in runs) for k in more},
    }


def _image(fmt: str, side: int, noise: float = 0) -> bytes:
    """A side x side RGB image of smooth gradients (a PNG of it is small and decodes at full cost),
    with Gaussian noise of `noise` grey levels (a detailed photo: the dearest JPEG to decode)."""
    import numpy as np
    from PIL import Image

    ramp = (np.arange(side, dtype=np.uint16) * 255 // max(1, side - 1)).astype(np.uint8)
    grey = np.add.outer(ramp // 2, ramp // 2).astype(np.uint8)
    rgb = np.stack([grey, grey[::-1], grey.T], axis=-1)
    if noise:
        rgb = np.clip(rgb + np.random.default_rng(0).normal(0, noise, (side, side, 1)), 0, 255).astype(np.uint8)
    return _encode(Image.fromarray(rgb, "RGB"), fmt, **({"quality": 90} if fmt == "JPEG" else {}))


def worst_requests(url: str, server: Server, log=print) -> dict[str, Any]:
    """Server CPU seconds (all workers) of single requests at the service's limits, one at a time:
    the largest images it accepts, with every model, and requests it refuses."""
    import httpx

    from service import imaging
    from service.params import MAX_BATCH_BYTES

    side = int(imaging.MAX_REQUEST_PIXELS ** 0.5)       # one image at the request's pixel limit
    small = int((imaging.MAX_REQUEST_PIXELS / 256) ** 0.5)  # 256 images that together reach it
    big = _image("PNG", side)
    jpeg = _image("JPEG", 3464, noise=30)  # 12 MP: a sixth of it counts against the pixel limit
    n_jpeg = min(imaging.MAX_REQUEST_PIXELS // imaging.pixel_cost(imaging.open_image(jpeg)),
                 (MAX_BATCH_BYTES - 2**20) // len(jpeg))  # as many as the request's limits allow
    cases = {
        f"/classify?model=all, one {side}x{side} RGB PNG ({len(big) / 2**20:.1f} MiB)":
            ("/classify?model=all", [("image", "big.png", big)]),
        f"/classify/batch?model=all, 256 {small}x{small} RGB PNGs":
            ("/classify/batch?model=all", [("image", "small.png", _image("PNG", small))] * 256),
        f"/classify/batch?model=all, {n_jpeg} detailed 3464x3464 JPEGs ({len(jpeg) / 2**20:.1f} MiB each)":
            ("/classify/batch?model=all", [("image", "photo.jpg", jpeg)] * n_jpeg),
        f"/classify/batch, 3 {side}x{side} RGB PNGs (refused: 413)":
            ("/classify/batch", [("image", f"{i}.png", big) for i in range(3)]),
    }
    out: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        for name, (path, files) in cases.items():
            times = []
            for _ in range(2):  # the smaller of two: the request's own cost
                before = server.cpu_s(WORKER_SCRIPT)
                r = client.post(path, files=[(f, (n, d, "application/octet-stream")) for f, n, d in files])
                time.sleep(0.3)  # the worker's CPU counters settle
                times.append(server.cpu_s(WORKER_SCRIPT) - before)
            out[name] = {"status": r.status_code, "server_cpu_s": round(min(times), 3),
                         "answer": r.text[:160] if r.status_code != 200 else "200"}
            log(f"  worst requests: {name}: HTTP {r.status_code}, {min(times):.2f} s of server CPU")
    accepted = [v["server_cpu_s"] for v in out.values() if v["status"] == 200]
    return {"cases": out, "max_accepted_cpu_s": max(accepted) if accepted else None}


def soak(url: str, body: bytes, ctype: str, server: Server, at_requests: tuple[int, ...] = SOAK_AT,
         log=print) -> dict[str, Any]:
    """At least at_requests[-1] requests at SOAK_CONCURRENCY; every worker's resident memory once each
    of at_requests is reached. wrk runs for a time, not a count: each stretch lasts what the requests
    still to send take at the last rate, so a count is passed by a second's requests at most."""
    out: dict[str, Any] = {"requests": 0, "errors": 0, "rss_mb": {}, "requests_at": {}, "error_samples": []}
    rps, t0 = 0.0, time.perf_counter()
    for at in at_requests:
        p99 = None
        while out["requests"] < at:
            seconds = min(60.0, max(1.0, (at - out["requests"]) / rps)) if rps else 1.0
            r = wrk.load(url, body, ctype, SOAK_CONCURRENCY, seconds)
            rps, p99 = r["rps"], r["p99_ms"]
            out["requests"] += r["requests"]
            out["errors"] += r["errors"]
            out["error_samples"] += r["error_samples"][:3]
        out["rss_mb"][str(at)] = worker_rss_mb(server)
        out["requests_at"][str(at)] = out["requests"]
        out.setdefault("p99_ms", {})[str(at)] = p99
        log(f"  soak: {out['requests']:,} requests, worker memory {out['rss_mb'][str(at)]} MB, {out['errors']} errors")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    first, last = out["rss_mb"][str(at_requests[0])], out["rss_mb"][str(at_requests[-1])]
    out["rss_growth"] = [round(b / a - 1, 4) for a, b in zip(first, last)] if len(first) == len(last) else None
    return out


def run_workers(n_workers: int, model: str | None, bodies: dict[str, tuple[bytes, str]], reps: int,
                concurrency: tuple[int, ...], seconds: dict[int, float], warmup_s: float, batch_seconds: float,
                logs: Path, is_default: bool, do_soak: bool, log=print) -> dict[str, Any]:
    """The zoo and the no-op with `n_workers` workers each: warm-up, alternating runs, memory; with
    the default workers also the cost of the largest requests and (`do_soak`) the soak."""
    env = {"FASHION_ZOO_WORKERS": str(n_workers)}
    servers = {"noop": Server("bench.noop_service:Noop", logs / f"noop-{n_workers}.log", env=env)}
    out: dict[str, Any] = {"workers": n_workers, "batch_concurrency": min(4, max(1, n_workers * 2))}
    if model is not None:
        servers["zoo"] = Server("service.service:FashionZoo", logs / f"zoo-{n_workers}.log", env=env)
    query = f"?model={model}" if model else ""
    # What is measured: /classify at each concurrency, then the batch route.
    loads = {**{c: ("/classify", *bodies["single"], c, seconds[c]) for c in concurrency},
             "batch": ("/classify/batch", *bodies["batch"], out["batch_concurrency"], batch_seconds)}
    try:
        for s in servers.values():
            s.start()  # both start at once; their start-up overlaps
        urls = {"noop": servers["noop"].wait_ready()}
        if "zoo" in servers:
            try:
                urls["zoo"] = servers["zoo"].wait_ready()
            except RuntimeError as e:  # the ceiling is still worth measuring
                out["skipped"] = f"zoo service did not start: {e}"
                log(f"  service: {out['skipped']}")
                servers.pop("zoo").stop()
        top = max(concurrency)
        rss: dict[str, dict[str, list[float]]] = {k: {"start": worker_rss_mb(servers[k])} for k in urls}
        log(f"  {n_workers} worker(s): warm-up, {warmup_s:.0f} s of concurrency {top} on "
            f"{' and '.join(urls)} at once")
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:  # each wrk is a process of its own
            warm = {k: pool.submit(wrk.load, f"{u}/classify{query}", *bodies["single"], top, warmup_s)
                    for k, u in urls.items()}
        # A warm-up's failure is reported, not raised: it shows in the runs after it.
        warm = {k: {"error": f"{type(w.exception()).__name__}: {w.exception()}"} if w.exception() else w.result()
                for k, w in warm.items()}
        out["warmup"] = {"seconds": round(time.perf_counter() - t0, 1), "concurrency": top,
                         **{k: {f: w.get(f) for f in ("requests", "errors", "rps", "p99_ms", "error")}
                            for k, w in warm.items()}}
        for k in urls:
            rss[k]["after_warmup"] = worker_rss_mb(servers[k])
        runs: dict[str, dict[Any, list]] = {k: {load: [] for load in loads} for k in urls}
        for load, (path, body, ctype, c, secs) in loads.items():
            for _ in range(reps):
                for k, url in urls.items():
                    runs[k][load].append(measured(lambda: servers[k].cpu_s(WORKER_SCRIPT), f"{url}{path}{query}",
                                                  body, ctype, c, secs))
            if load != "batch":
                log(f"  {n_workers} worker(s), concurrency {c}: " + ", ".join(
                    f"{k} {median_high(r['rps'] for r in runs[k][c]):,.0f} rps "
                    f"p99 {median_high(r['p99_ms'] or 0 for r in runs[k][c]):.0f} ms" for k in urls))
        for k in urls:
            rss[k]["end"] = worker_rss_mb(servers[k])
        if is_default and do_soak and "zoo" in urls:
            out["soak"] = soak(f"{urls['zoo']}/classify{query}", *bodies["single"], servers["zoo"], log=log)
        if is_default and "zoo" in urls:  # last: a 40-megapixel image leaves a worker's heap large
            out["worst_requests"] = worst_requests(urls["zoo"], servers["zoo"], log=log)
            out["rss_after_worst_requests_mb"] = worker_rss_mb(servers["zoo"])
    finally:
        for s in servers.values():
            s.stop()

    out["rss_mb"] = rss
    out["noop"] = {str(c): summarise(runs["noop"][c]) for c in concurrency}
    out["noop_batch_images_per_s"] = summary(r["rps"] * BATCH_IMAGES for r in runs["noop"]["batch"])
    if "zoo" in urls:
        zoo, noop = runs["zoo"], runs["noop"]
        out["single"] = {str(c): summarise(zoo[c]) for c in concurrency}
        out["errors"] = sum(r["errors"] for rs in zoo.values() for r in rs)
        out["vs_noop"] = {str(c): summary(z["rps"] / n["rps"] for z, n in zip(zoo[c], noop[c]) if n["rps"])
                          for c in concurrency}
        # The same ratio from the workers' CPU per request: what the requests/s ratio is on a machine
        # where the workers have every core to themselves.
        out["vs_noop_by_cpu"] = {str(c): summary(n["server_cpu_ms_per_request"] / z["server_cpu_ms_per_request"]
                                                 for z, n in zip(zoo[c], noop[c]) if z["server_cpu_ms_per_request"])
                                 for c in concurrency}
        out["batch"] = summarise(zoo["batch"])
        out["batch_images_per_s"] = summary(r["rps"] * BATCH_IMAGES for r in zoo["batch"])
        t, single = str(top), out["single"][str(top)]
        log(f"  {n_workers} worker(s): {single['rps']['median']:,.0f} rps at concurrency {t} = "
            f"{out['vs_noop'][t]['median']:.0%} of the no-op, p99/p50 {single['p99_over_p50']['median']:.1f}, "
            f"{out['errors']} errors; batch route {out['batch_images_per_s']['median']:,.0f} images/s")
    return out


def run(data_dir: str, quick: bool, reps: int | None = None, concurrency: tuple[int, ...] = CONCURRENCY,
        seconds: dict[int, float] | None = None, warmup_s: float | None = None,
        batch_seconds: float | None = None, workers: tuple[int, ...] | None = None, do_soak: bool = False,
        log=print) -> dict[str, Any]:
    """Load both servers with each worker count; returns the `service` section of bench.json."""
    reps = reps or REPS[quick]
    seconds = seconds or SECONDS[quick]
    warmup_s = WARMUP_S[quick] if warmup_s is None else warmup_s
    batch_seconds = batch_seconds or BATCH_SECONDS[quick]
    if not wrk.available():
        return {"skipped": wrk.MISSING}
    n_default, why_default = worker_count(gpu=False, env={})  # the service's default here, and why
    workers = workers or tuple(dict.fromkeys((1, n_default)))
    pngs, image = sample_pngs(data_dir, BATCH_IMAGES)
    bodies = {"single": wrk.multipart([("image", "item.png", pngs[0], "image/png")]),
              "batch": wrk.multipart([("image", f"item{i}.png", p, "image/png") for i, p in enumerate(pngs)])}
    root, why = store_dir()
    try:  # the zoo's default model, or None with why not
        model = read_manifest(root, why)["default"] if root else None
    except ZooLoadError as e:
        model, why = None, str(e)
    out: dict[str, Any] = {
        "settings": {
            "load_generator": wrk.describe(), "image": image,
            "seconds_per_run": {str(c): seconds[c] for c in concurrency}, "repetitions": reps,
            "warmup_s": warmup_s, "workers": list(workers), "default_workers": n_default,
            "default_workers_why": why_default,
            "batch": {"images_per_request": len(pngs), "seconds_per_run": batch_seconds},
            "noop": "bench.noop_service:Noop (same BentoML configuration, workers and routes, answers a constant)",
        },
    }
    if model is None:
        out["skipped"] = f"zoo service not measured: {why}"
        log(f"  service: {out['skipped']} (no-op ceiling only)")
    else:
        out["store_tag"], out["model"] = why, model
    with tempfile.TemporaryDirectory(prefix="fashion-zoo-bench-") as tmp:  # server logs, for errors
        out["by_workers"] = {
            str(n): run_workers(n, model, bodies, reps, concurrency, seconds, warmup_s, batch_seconds,
                                Path(tmp), n == n_default, do_soak, log)
            for n in workers}
    return out
