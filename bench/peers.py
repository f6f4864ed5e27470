"""The zoo against the servers a user would run instead, one server at a time, alternating rounds.

    python -m bench --sections peers              # the section alone (about 15 minutes)
    python -m bench --sections peers --quick 1    # a short check (about 2 minutes)

Servers, each with the same number of worker processes (the service's default, one per core), the
same ONNX file (`batchnorm` of the stored `fashion-zoo`, the directory the zoo itself loads), the
same onnxruntime session options and the same answer body (bench/peer_model.py):

- zoo: `bentoml serve service.service:FashionZoo` as shipped, measured on `/classify?model=batchnorm`
  and on `/classify` (the default, `auto`: the ensemble for a Fashion-MNIST image);
- zoo + access log (`FASHION_ZOO_ACCESS_LOG=1`) and zoo + tracing (BentoML's in-memory exporter,
  every request sampled): what each observability feature costs when it is on (`batchnorm`);
- fastapi: a hand-written FastAPI app on `uvicorn[standard] --workers N --no-access-log`
  (bench/peer_fastapi.py; the zoo's access log is off by default, so is this one's);
- litserve: LitServe with `workers_per_device=N` (bench/peer_litserve.py);
- noop: the BentoML no-op (bench/noop_service.py), the framework's ceiling, answering a constant
  body of the zoo's shape.

Only one server runs at a time: each round starts a server, checks its answer against the zoo's,
warms it up, measures each of its routes for SECONDS with wrk at concurrency 64 and stops it; the
next round runs the servers in the reverse order, so a drift in the machine's load hits all alike.
Server CPU per request counts every process of the server (supervisors, workers, helpers).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from . import wrk
from .server import Server
from .service import summarise
from .stats import summary

CONCURRENCY = 64
SECONDS = {False: 60, True: 3}          # the headline figures: a minute per server per round
OBSERVABILITY_SECONDS = {False: 20, True: 3}
WARMUP_S = {False: 10, True: 2}
ROUNDS = {False: 2, True: 1}
MODEL = "batchnorm"
PEERS = ("fastapi", "litserve")        # the servers a user would write or use instead
# In-memory span exporter, every request sampled: the cost of making and recording each span
# (an exporter's own serialisation and network come on top).
TRACING_ON = ("services.FashionZoo.tracing.exporter_type=in_memory "
              "services.FashionZoo.tracing.sample_rate=1.0")


def store_dir() -> tuple[Path | None, str]:
    """(the directory of the stored `fashion-zoo` the zoo serves, its tag) or (None, why not)."""
    from .service import STORE_MODEL

    try:
        import bentoml

        stored = bentoml.models.get(STORE_MODEL)
    except Exception as e:
        return None, (f"no {STORE_MODEL} in the BentoML model store ({type(e).__name__}); run `make export` "
                      f"or `python -m release.shipped` first")
    return Path(stored.path), str(stored.tag)


def servers(n_workers: int, root: Path, logs: Path) -> dict[str, dict[str, Any]]:
    """name -> {server, routes: {measurement: (path, seconds key)}, body: how its answer compares}."""
    py = sys.executable
    zoo_env = {"FASHION_ZOO_WORKERS": str(n_workers)}
    peer_env = {"FASHION_ZOO_PEER_DIR": str(root), "FASHION_ZOO_PEER_MODEL": MODEL}
    q = f"/classify?model={MODEL}"
    return {
        "zoo": {"server": Server("service.service:FashionZoo", logs / "zoo.log", env=zoo_env),
                "routes": {f"zoo {MODEL}": (q, "headline"), "zoo auto": ("/classify", "headline")}},
        "zoo+access_log": {"server": Server("service.service:FashionZoo", logs / "zoo-access.log",
                                            env={**zoo_env, "FASHION_ZOO_ACCESS_LOG": "1"}),
                           "routes": {f"zoo {MODEL} + access log": (q, "observability")}},
        "zoo+tracing": {"server": Server("service.service:FashionZoo", logs / "zoo-tracing.log",
                                         env={**zoo_env, "BENTOML_CONFIG_OPTIONS": TRACING_ON}),
                        "routes": {f"zoo {MODEL} + tracing": (q, "observability")}},
        "fastapi": {"server": Server("fastapi", logs / "fastapi.log", env=peer_env, ready_path="/readyz",
                                     cmd=[py, "-m", "uvicorn", "bench.peer_fastapi:app", "--host", "127.0.0.1",
                                          "--port", "{port}", "--workers", str(n_workers), "--no-access-log"]),
                    "routes": {"fastapi": ("/classify", "headline")}},
        "litserve": {"server": Server("litserve", logs / "litserve.log", env=peer_env, ready_path="/health",
                                      cmd=[py, "-m", "bench.peer_litserve", "--host", "127.0.0.1", "--port",
                                           "{port}", "--workers", str(n_workers)]),
                     "routes": {"litserve": ("/classify", "headline")}},
        "noop": {"server": Server("bench.noop_service:Noop", logs / "noop.log", env=zoo_env),
                 "routes": {"noop": ("/classify", "headline")}},
    }


def _post(url: str, body: bytes, ctype: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:200].decode(errors="replace")


def compare_body(answer: Any, reference: dict[str, Any]) -> str:
    """How a server's answer compares with the zoo's: identical (the same JSON values), the same
    fields (another result, same shape), or what differs."""
    if answer == reference:
        return "identical"
    if isinstance(answer, dict) and list(answer) == list(reference):
        return "same fields"
    keys = list(answer) if isinstance(answer, dict) else type(answer).__name__
    return f"differs: {keys}"


def _measure(server: Server, url: str, body: bytes, ctype: str, seconds: float) -> dict[str, Any]:
    before = server.cpu_s()
    r = wrk.load(url, body, ctype, CONCURRENCY, seconds)
    cpu = server.cpu_s() - before
    return {**r, "server_cpu_ms_per_request": round(cpu * 1000 / (r["requests"] or 1), 4),
            "server_cpu_cores": round(cpu / r["seconds"], 2) if r["seconds"] else None}


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """bench.service's summary of the rounds, plus the server's cores and the machine's load."""
    return {**summarise(runs),
            "server_cpu_cores": summary(r["server_cpu_cores"] or 0 for r in runs),
            "load_1min": summary(r["load_1min"] for r in runs)}


def run(data_dir: str, quick: bool, rounds: int | None = None, seconds: float | None = None,
        observability_seconds: float | None = None, warmup_s: float | None = None,
        only: tuple[str, ...] | None = None, root: Path | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """The `peers` section of bench.json. `root`: the stored zoo's directory (default: the store's
    `fashion-zoo`, which the zoo serves); `only`: some of the servers."""
    from .service import default_workers, sample_pngs
    from . import loadgen

    if not wrk.available():
        return {"skipped": "wrk is not installed (apt-get install wrk): the peers are loaded with wrk only"}
    root, tag = (root, root.name) if root is not None else store_dir()
    if root is None:
        return {"skipped": tag}
    rounds = rounds or ROUNDS[quick]
    secs = {"headline": seconds or SECONDS[quick],
            "observability": observability_seconds or OBSERVABILITY_SECONDS[quick]}
    warmup_s = WARMUP_S[quick] if warmup_s is None else warmup_s
    n_workers, why = default_workers()
    pngs, source = sample_pngs(data_dir, 1)
    body, ctype = loadgen.multipart([("image", "item.png", pngs[0], "image/png")])
    out: dict[str, Any] = {"settings": {
        "store_tag": tag, "model": MODEL, "workers": n_workers, "workers_why": why,
        "concurrency": CONCURRENCY, "rounds": rounds, "seconds": secs, "warmup_s": warmup_s,
        "load_generator": f"{wrk.version()}, one thread, keep-alive, closed loop, on the same machine",
        "image": f"{source}, 28x28 PNG, {len(pngs[0])} bytes, multipart field 'image'",
        "tracing_on": f"BENTOML_CONFIG_OPTIONS='{TRACING_ON}'",
    }, "bodies": {}, "runs": {}, "starts_s": {}}
    runs: dict[str, list[dict[str, Any]]] = {}
    reference: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="fashion-zoo-peers-") as tmp:
        plan = servers(n_workers, root, Path(tmp))
        names = [n for n in plan if only is None or n in only]
        if "zoo" in names:  # first: its answer is the reference
            names.remove("zoo")
            names.insert(0, "zoo")
        for i in range(rounds):
            order = names if i % 2 == 0 else names[::-1]
            log(f"  peers, round {i + 1} of {rounds}: {', '.join(order)}")
            for name in order:
                entry, server = plan[name], plan[name]["server"]
                t0 = time.perf_counter()
                try:
                    server.start()
                    url = server.wait_ready()
                except RuntimeError as e:
                    server.stop()
                    out.setdefault("failed", {})[name] = str(e)
                    log(f"  {name}: did not start: {e}")
                    continue
                try:
                    out["starts_s"].setdefault(name, []).append(round(time.perf_counter() - t0, 1))
                    first_path = next(iter(entry["routes"].values()))[0]
                    status, answer = _post(url + first_path, body, ctype)
                    if name == "zoo":
                        reference = answer if status == 200 else None
                    out["bodies"][name] = (f"HTTP {status}" if status != 200 else
                                           compare_body(answer, reference) if reference else "no reference")
                    wrk.load(url + first_path, body, ctype, CONCURRENCY, warmup_s)  # warm-up
                    for label, (path, kind) in entry["routes"].items():
                        r = _measure(server, url + path, body, ctype, secs[kind])
                        r["load_1min"] = round(os.getloadavg()[0], 2)
                        r["round"] = i + 1
                        runs.setdefault(label, []).append(r)
                        log(f"    {label}: {r['rps']:,.0f} rps, p50 {r['p50_ms'] or 0:.1f} ms, p99 "
                            f"{r['p99_ms'] or 0:.1f} ms, {r['server_cpu_ms_per_request']:.3f} ms server CPU "
                            f"per request, {r['errors']} errors, load {r['load_1min']}")
                finally:
                    server.stop()
    out["runs"] = runs
    out["results"] = {label: _summarise(rs) for label, rs in runs.items()}
    out.update(compare(runs))
    return out


def _paired(runs: dict[str, list[dict[str, Any]]], a: str, b: str, field: str) -> list[float]:
    """a's over b's `field`, round by round (the two measured in the same round)."""
    by_round = {r["round"]: r[field] for r in runs.get(b, [])}
    return [r[field] / by_round[r["round"]] for r in runs.get(a, []) if by_round.get(r["round"])]


def compare(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The zoo against the best peer, and what each observability feature costs."""
    out: dict[str, Any] = {}
    peers = [p for p in PEERS if runs.get(p)]
    if not peers:
        return out
    best = max(peers, key=lambda p: summary(r["rps"] for r in runs[p])["median"])
    out["best_peer"] = best
    for zoo in (f"zoo {MODEL}", "zoo auto"):
        if runs.get(zoo):
            rps = _paired(runs, zoo, best, "rps")
            # CPU: the peer's CPU per request over the zoo's, the rps ratio with the cores to themselves
            cpu = [1 / x for x in _paired(runs, zoo, best, "server_cpu_ms_per_request") if x]
            out.setdefault("vs_best_peer", {})[zoo] = {"rps": summary(rps) if rps else None,
                                                       "by_cpu": summary(cpu) if cpu else None}
    base = f"zoo {MODEL}"
    for feature in ("access log", "tracing"):
        label = f"{base} + {feature}"
        if runs.get(label) and runs.get(base):
            extra = [r["server_cpu_ms_per_request"] for r in runs[label]]
            plain = summary(r["server_cpu_ms_per_request"] for r in runs[base])["median"]
            out.setdefault("observability_cost", {})[feature] = {
                "server_cpu_ms_per_request_extra": summary(x - plain for x in extra),
                "rps_vs_off": summary(_paired(runs, label, base, "rps")) if _paired(runs, label, base, "rps") else None,
            }
    return out
