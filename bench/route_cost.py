"""What the zoo's own route costs per request, in-process: CPU time, not requests/s.

    python -m bench.route_cost                          # the bench's request: one 28x28 PNG, ?model=<default>
    python -m bench.route_cost --query 'model=all' --requests 2000
    python -m bench.route_cost --query '' --image photo.jpg   # model=auto on your own image

`make bench` measures the service through HTTP, where BentoML's middleware and the socket cost about
two thirds of a small request on this machine and the load generator shares the cores. This drives
the same ASGI apps without any of that: the zoo's FastAPI app (service.routes.app, with the zoo from
the BentoML store, else the shipped weights) and the no-op's (bench/noop_service.py), each called
directly with `--requests` requests per repetition, the repetitions alternating between the two so
that a change in machine load hits both alike. It prints the process CPU time per request of each
(median and range over the repetitions) and their difference, which is the zoo's own work; then
the same request taken apart into its stages (reading the form, opening and decoding the image,
model=auto's choice, preprocessing, ONNX Runtime, building and encoding the answer), each timed on
its own over the same number of calls. CPU time hardly depends on what else the machine runs;
wall-clock throughput does.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from zoo.cli import ArgumentParser, cli

from . import loadgen


def load_served_zoo(root: str | None = None):
    """The zoo in `root` (a directory with manifest.json), else the one `make bench` serves: the
    store's fashion-zoo:latest (FASHION_ZOO_MODEL), else the shipped weights."""
    from service.runtime import load_zoo

    from .service import STORE_MODEL

    if root is None:
        try:
            import bentoml

            stored = bentoml.models.get(STORE_MODEL)
            return load_zoo(stored.path, str(stored.tag), "cpu")
        except Exception:
            root = str(Path(__file__).resolve().parent.parent / "weights")
    return load_zoo(root, root, "cpu")


def asgi_caller(app: Any, path: str, query: str, body: bytes, content_type: str) -> Callable[[], Any]:
    """A coroutine function that sends one POST to `app` as an HTTP server would and returns
    (status, body)."""
    headers = [(b"host", b"127.0.0.1"), (b"content-type", content_type.encode()),
               (b"content-length", str(len(body)).encode())]

    async def call() -> tuple[int, bytes]:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
                 "query_string": query.encode(), "headers": headers, "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 3000), "state": {}}
        sent = False
        status, chunks = 0, []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        return status, b"".join(chunks)

    return call


def cpu_per_call(loop: asyncio.AbstractEventLoop, call: Callable[[], Any], n: int) -> float:
    """Process CPU seconds per call over n sequential calls on `loop`."""
    async def many() -> None:
        for _ in range(n):
            await call()

    t0 = time.process_time()
    loop.run_until_complete(many())
    return (time.process_time() - t0) / n


def stages(zoo, query: str, body: bytes, content_type: str, n: int) -> dict[str, float]:
    """CPU seconds per call of each stage of one /classify request, each stage timed on its own
    (with model=all or auto: for the first model it would run)."""
    from starlette.requests import Request

    from service import routes
    from service.forms import parse_plain
    from service.imaging import load, open_image
    from service.params import FORM_SLACK
    from service.results import JSON, result
    from zoo.auto import route
    from zoo.spec import normalize, to_pixels

    def request() -> Request:  # what `choose` reads: the query
        return Request({"type": "http", "method": "POST", "query_string": query.encode(), "headers": []})

    parts = parse_plain(body, content_type, max_files=1, max_fields=8, max_field_bytes=FORM_SLACK)
    data = parts[0].value
    upload = routes.Upload(images=[(parts[0].filename, data)])
    options = routes.request_options(zoo, request(), upload)
    image = load(open_image(data))
    name = route(image, options.auto) if options.auto else options.names[0]
    spec = zoo.models[name].preprocess
    pixels = to_pixels(image, spec)
    batch = normalize(pixels[None], spec)[:, None]
    logits = zoo.logits(name, batch)
    answer = result(name, logits[0], zoo.models[name].classes, options.top_k)

    def timed(fn: Callable[[], Any]) -> float:
        fn()
        t0 = time.process_time()
        for _ in range(n):
            fn()
        return (time.process_time() - t0) / n

    out = {
        "read the form (parse_plain)": timed(lambda: parse_plain(body, content_type, max_files=1, max_fields=8,
                                                                 max_field_bytes=FORM_SLACK)),
        "query and options (request_options)": timed(lambda: routes.request_options(zoo, request(), upload)),
        "open the image (header; a small grey PNG is decoded too)": timed(lambda: open_image(data)),
        "open and decode the image": timed(lambda: load(open_image(data))),
    }
    if options.auto:
        out["model=auto's choice (route)"] = timed(lambda: route(image, options.auto))
    out["preprocess to pixels (to_pixels)"] = timed(lambda: to_pixels(image, spec))
    out["normalise (normalize)"] = timed(lambda: normalize(pixels[None], spec)[:, None])
    out["ONNX Runtime (zoo.logits)"] = timed(lambda: zoo.logits(name, batch))
    out["answer dict (result)"] = timed(lambda: result(name, logits[0], zoo.models[name].classes, options.top_k))
    out["answer bytes (JSON)"] = timed(lambda: JSON(answer))
    out["the whole route body (classify_images, from the opened image)"] = timed(
        lambda: routes.classify_images(zoo, options, [(None, open_image(data))]))
    return out


def run(image: bytes, query: str | None, requests: int, reps: int, zoo_dir: str | None = None) -> dict[str, Any]:
    """The figures `main` prints; `query` None: model=<the zoo's default>."""
    from service import routes

    from . import noop_service

    zoo = load_served_zoo(zoo_dir)
    routes.app.state.zoo = zoo
    if query is None:
        query = f"model={zoo.default}"
    body, content_type = loadgen.multipart([("image", "item.png", image, "image/png")])
    loop = asyncio.new_event_loop()
    calls = {"zoo": asgi_caller(routes.app, "/classify", query, body, content_type),
             "noop": asgi_caller(noop_service.app, "/classify", query, body, content_type)}
    for name, call in calls.items():  # warm: both answer, every lazy import and cache is done
        status, answer = loop.run_until_complete(call())
        if status != 200:
            raise RuntimeError(f"{name} answered {status}: {answer[:300]!r}")
        cpu_per_call(loop, call, max(1, requests // 10))
    zoo_answer = json.loads(loop.run_until_complete(calls["zoo"]())[1])
    gc.collect()
    gc.freeze()  # as a worker does after start-up: full collections do not rescan the loaded zoo
    per: dict[str, list[float]] = {k: [] for k in calls}
    try:
        for rep in range(reps):
            for name in (calls if rep % 2 == 0 else reversed(calls)):  # alternate which goes first
                per[name].append(cpu_per_call(loop, calls[name], requests))
    finally:
        gc.unfreeze()
        loop.close()
    diffs = [z - n for z, n in zip(per["zoo"], per["noop"])]
    out: dict[str, Any] = {
        "zoo": zoo.tag, "query": query, "image_bytes": len(image), "requests_per_rep": requests, "reps": reps,
        "model": zoo_answer.get("model"), "load_1min": round(os.getloadavg()[0], 2),
        "us_per_request": {k: _summary(v) for k, v in per.items()},
        "zoo_minus_noop_us": _summary(diffs),
        "stages_us": {k: round(v * 1e6, 1) for k, v in stages(zoo, query, body, content_type, requests).items()},
    }
    return out


def _summary(seconds: list[float]) -> dict[str, float]:
    us = [s * 1e6 for s in seconds]
    return {"median": round(statistics.median(us), 1), "min": round(min(us), 1), "max": round(max(us), 1)}


def report(out: dict[str, Any]) -> str:
    lines = [f"POST /classify?{out['query']}, a {out['image_bytes']}-byte image as multipart 'image' "
             f"(model {out['model']} of {out['zoo']}); {out['reps']} alternating repetitions of {out['requests_per_rep']} "
             f"requests, in-process ASGI, load average {out['load_1min']}",
             "CPU per request (us), median (min-max):"]
    for k, v in out["us_per_request"].items():
        lines.append(f"  {k:<6} {v['median']:8.1f} ({v['min']:.1f}-{v['max']:.1f})")
    d = out["zoo_minus_noop_us"]
    lines.append(f"  zoo - noop: {d['median']:.1f} ({d['min']:.1f}-{d['max']:.1f}): the zoo's own work")
    lines.append("stages, each on its own (us per call):")
    for k, v in out["stages_us"].items():
        lines.append(f"  {v:8.1f}  {k}")
    return "\n".join(lines)


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m bench.route_cost", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="", help="an image file (default: the first Fashion-MNIST "
                                                    "test image as PNG, as make bench sends)")
    parser.add_argument("--data-dir", default="data", help="Fashion-MNIST in <data-dir>/FashionMNIST/raw")
    parser.add_argument("--query", default=None, help="the query string (default: model=<the default model>)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per repetition")
    parser.add_argument("--reps", type=int, default=6, help="repetitions, alternating zoo and no-op")
    parser.add_argument("--zoo", default=None, help="a zoo directory with manifest.json, e.g. weights "
                                                    "(default: the store's fashion-zoo:latest, else weights)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.image:
        image = Path(args.image).read_bytes()
    else:
        from .service import sample_pngs

        image = sample_pngs(args.data_dir, 1)[0][0]
    out = run(image, args.query, args.requests, args.reps, args.zoo)
    print(json.dumps(out, indent=1) if args.json else report(out))


if __name__ == "__main__":
    main()
