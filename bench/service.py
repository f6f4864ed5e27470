"""The service under load: single-image /classify at several concurrencies, the batch route, and
the same load on a no-op BentoML service (bench/noop_service.py) as the framework's ceiling.

Both servers run side by side (`bentoml serve`, one process each, on free local ports) and the load
alternates between them, repetition by repetition, so a change in machine load hits both alike. The
load generator is bench/loadgen.py (asyncio raw sockets, keep-alive, closed loop) in this process;
it shares the machine's cores with the server, as any client on the same machine would.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

from .loadgen import load, multipart
from .server import Server
from .stats import summary

CONCURRENCY = (1, 16, 64)
REQUESTS = {False: {1: 1000, 16: 3000, 64: 6000}, True: {1: 150, 16: 400, 64: 800}}  # by quick
BATCH_IMAGES = 64
BATCH_REQUESTS = {False: 100, True: 20}
STORE_MODEL = os.environ.get("FASHION_ZOO_MODEL", "fashion-zoo:latest")


def sample_pngs(data_dir: str, n: int) -> tuple[list[bytes], str]:
    """n Fashion-MNIST test images as PNG files (synthetic stripes when the data is absent)."""
    import numpy as np
    from PIL import Image

    source = "Fashion-MNIST test images"
    try:
        from training.data import load_pixels

        pixels = load_pixels(data_dir, train=False)[0][:n].numpy()
    except Exception:
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
        pixels[:, 8:20, 4:24] = 200
        source = "synthetic 28x28 images (no Fashion-MNIST in the data directory)"
    out = []
    for p in pixels:
        buf = io.BytesIO()
        Image.fromarray(p, "L").save(buf, format="PNG")
        out.append(buf.getvalue())
    return out, source


def store_default_model() -> tuple[str | None, str]:
    """(the zoo's default model name, the store tag), or (None, why not) when nothing is stored."""
    import json

    try:
        import bentoml

        stored = bentoml.models.get(STORE_MODEL)
    except Exception as e:
        home = os.environ.get("BENTOML_HOME", "~/bentoml")
        return None, (f"no {STORE_MODEL} in the BentoML model store ({home}): {type(e).__name__}; "
                      f"run `make export` first")
    try:
        manifest = json.loads((Path(stored.path) / "manifest.json").read_text())
        return manifest["default"], str(stored.tag)
    except (OSError, ValueError, KeyError) as e:
        return None, f"{stored.tag} has no readable manifest.json ({type(e).__name__})"


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rps": summary(r["rps"] for r in runs),
        "p50_ms": summary(r["p50_ms"] for r in runs if r["p50_ms"] is not None) if any(r["p50_ms"] for r in runs) else None,
        "p99_ms": summary(r["p99_ms"] for r in runs if r["p99_ms"] is not None) if any(r["p99_ms"] for r in runs) else None,
        "client_cpu_share": summary(r["client_cpu_share"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "error_samples": [s for r in runs for s in r["error_samples"]][:3],
    }


def run(data_dir: str, quick: bool, reps: int | None = None, concurrency: tuple[int, ...] = CONCURRENCY,
        requests: dict[int, int] | None = None, batch_requests: int | None = None, real: bool = True,
        log=print) -> dict[str, Any]:
    """Load both servers; returns the `service` section of bench.json."""
    reps = reps or 3
    requests = requests or REQUESTS[quick]
    batch_requests = batch_requests or BATCH_REQUESTS[quick]
    pngs, image_source = sample_pngs(data_dir, BATCH_IMAGES)
    single, single_type = multipart([("image", "item.png", pngs[0], "image/png")])
    batch, batch_type = multipart([("image", f"item{i}.png", p, "image/png") for i, p in enumerate(pngs)])
    batch_concurrency = min(4, max(1, len(os.sched_getaffinity(0))))

    model, why = store_default_model() if real else (None, "not requested")
    out: dict[str, Any] = {
        "settings": {
            "load_generator": "bench.loadgen: asyncio raw sockets, HTTP/1.1 keep-alive, closed loop, "
                              "in the benchmark process on the same machine",
            "image": f"{image_source}, 28x28 PNG, {len(pngs[0])} bytes, multipart field 'image'",
            "requests": {str(c): requests[c] for c in concurrency}, "repetitions": reps,
            "batch": {"images_per_request": len(pngs), "concurrency": batch_concurrency,
                      "requests": batch_requests},
            "noop": "bench.noop_service:Noop (same BentoML configuration and routes, answers a constant)",
        },
    }
    with tempfile.TemporaryDirectory(prefix="fashion-zoo-bench-") as tmp:  # server logs, for errors
        logs = Path(tmp)
        servers = {"noop": Server("bench.noop_service:Noop", logs / "noop.log")}
        if model is None:
            out["skipped"] = f"zoo service not measured: {why}"
            log(f"  service: {out['skipped']} (no-op ceiling only)")
        else:
            out["store_tag"], out["model"] = why, model
            servers["zoo"] = Server("service.service:FashionZoo", logs / "service.log")
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
            query = f"?model={model}" if model else ""
            runs: dict[str, dict[int, list]] = {k: {c: [] for c in concurrency} for k in urls}
            for c in concurrency:
                for _ in range(reps):
                    for k, url in urls.items():
                        runs[k][c].append(load(f"{url}/classify{query}", single, single_type, c, requests[c]))
                line = ", ".join(f"{k} {sorted(r['rps'] for r in runs[k][c])[len(runs[k][c]) // 2]:,.0f} rps"
                                 for k in urls)
                log(f"  service concurrency {c}: {line}")
            batch_runs: dict[str, list] = {k: [] for k in urls}
            for _ in range(reps):
                for k, url in urls.items():
                    batch_runs[k].append(load(f"{url}/classify/batch{query}", batch, batch_type,
                                              batch_concurrency, batch_requests))
        finally:
            for s in servers.values():
                s.stop()

    noop = {str(c): _summarise(runs["noop"][c]) for c in concurrency}
    out["noop"] = noop
    out["noop_rps"] = {c: v["rps"] for c, v in noop.items()}
    out["noop_batch_images_per_s"] = summary(r["rps"] * len(pngs) for r in batch_runs["noop"])
    if "zoo" in urls:
        zoo = {str(c): _summarise(runs["zoo"][c]) for c in concurrency}
        out["single"] = zoo
        out["rps"] = {c: v["rps"] for c, v in zoo.items()}
        out["p50_ms"] = {c: v["p50_ms"] for c, v in zoo.items()}
        out["p99_ms"] = {c: v["p99_ms"] for c, v in zoo.items()}
        out["errors"] = sum(v["errors"] for v in zoo.values()) + sum(r["errors"] for r in batch_runs["zoo"])
        out["errors_by_concurrency"] = {c: v["errors"] for c, v in zoo.items()}
        out["vs_noop"] = {str(c): summary(z["rps"] / n["rps"] for z, n in zip(runs["zoo"][c], runs["noop"][c])
                                          if n["rps"]) for c in concurrency}
        out["batch"] = _summarise(batch_runs["zoo"])
        out["batch_images_per_s"] = summary(r["rps"] * len(pngs) for r in batch_runs["zoo"])
        top = str(max(concurrency))
        log(f"  service: {out['rps'][top]['median']:,.0f} rps at concurrency {top} = "
            f"{out['vs_noop'][top]['median']:.0%} of the no-op ceiling, p99 {out['p99_ms'][top]['median']:.0f} ms, "
            f"{out['errors']} errors; batch route {out['batch_images_per_s']['median']:,.0f} images/s")
    return out
