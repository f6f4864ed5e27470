"""The zoo against the servers a user would run instead, one server at a time, alternating rounds.

    python -m bench --sections peers              # the section alone (about 25 minutes)
    python -m bench --sections peers --quick 1    # a short check (about 3 minutes)

Every server gets the same number of worker processes (the service's default, one per core), the
same ONNX file (`batchnorm` of the stored `fashion-zoo`, the directory the zoo itself loads), the
same onnxruntime session options and the same answer body (bench/peer_model.py), so no peer does
less work than the zoo: the zoo as shipped (`?model=batchnorm` and the default, auto), the zoo with
its access log and with tracing on (what each costs), a hand-written FastAPI app
(bench/peer_fastapi.py), LitServe (bench/peer_litserve.py), the BentoML no-op
(bench/noop_service.py), and on the Open Inference Protocol the zoo's `/v2/models/batchnorm/infer`
against KServe's own model server (bench/peer_kserve.py), the same FP32 tensor sent as JSON and as
Triton's binary tensor extension. KServe runs from its own venv (KSERVE_VENV, default .venv-kserve:
`make .venv-kserve/.installed`); without it the section says so and runs the rest.

Only one server runs at a time: each round starts a server, checks its answer against the zoo's
(a V2 answer against the local ONNX Runtime session's), warms it up, measures each of its routes
with wrk at concurrency 64 and stops it; the next round runs the servers in the reverse order, so a
drift in the machine's load hits all alike. Server CPU per request counts every process of the
server. docs/benchmarks.md, "Peers", has the setup in full and the figures.
"""
from __future__ import annotations

import io
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from . import wrk
from .server import ROOT, Server
from .service import default_workers, measured, sample_pngs, store_dir, summarise
from .stats import summary

CONCURRENCY = 64
SECONDS = {False: 60, True: 3}          # the headline figures: a minute per server per round
OBSERVABILITY_SECONDS = {False: 20, True: 3}
WARMUP_S = {False: 10, True: 2}
ROUNDS = {False: 2, True: 1}
MODEL = "batchnorm"
PEERS = ("fastapi", "litserve")        # the servers a user would write or use instead
V2_FORMS = ("JSON", "binary")          # the V2 request's two encodings
V2_TOLERANCE = 1e-5                    # an answer's outputs against the local session's
# In-memory span exporter, every request sampled: the cost of making and recording each span
# (an exporter's own serialisation and network come on top).
TRACING_ON = ("services.FashionZoo.tracing.exporter_type=in_memory "
              "services.FashionZoo.tracing.sample_rate=1.0")


def kserve_python() -> tuple[Path | None, str]:
    """(the python of KServe's venv, "") or (None, why not). The `kserve` package does not install
    beside the project's pins (it needs pandas 2), so it has a venv of its own: KSERVE_VENV (the
    Makefile's, default .venv-kserve), complete once `make` has stamped it `.installed`."""
    name = os.environ.get("KSERVE_VENV", ".venv-kserve")
    venv = ROOT / name
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists() or not python.exists():
        make = f"make {name}/.installed" if name == ".venv-kserve" else f"make KSERVE_VENV={name} {name}/.installed"
        return None, f"no KServe venv at {venv}: `{make}` creates it (make bench and make test do)"
    return python, ""


def servers(n_workers: int, root: Path, logs: Path, kserve: Path | None = None) -> dict[str, dict[str, Any]]:
    """name -> {server, routes: {measurement: (path, seconds key, request)}}; `kserve`: the python of
    KServe's venv (no kserve server without it)."""
    py = sys.executable
    zoo_env = {"FASHION_ZOO_WORKERS": str(n_workers)}
    peer_env = {"FASHION_ZOO_PEER_DIR": str(root), "FASHION_ZOO_PEER_MODEL": MODEL}
    q, v2 = f"/classify?model={MODEL}", f"/v2/models/{MODEL}/infer"
    plan = {
        "zoo": {"server": Server("service.service:FashionZoo", logs / "zoo.log", env=zoo_env),
                "routes": {f"zoo {MODEL}": (q, "headline", "classify"),
                           "zoo auto": ("/classify", "headline", "classify")}},
        "zoo+access_log": {"server": Server("service.service:FashionZoo", logs / "zoo-access.log",
                                            env={**zoo_env, "FASHION_ZOO_ACCESS_LOG": "1"}),
                           "routes": {f"zoo {MODEL} + access log": (q, "observability", "classify")}},
        "zoo+tracing": {"server": Server("service.service:FashionZoo", logs / "zoo-tracing.log",
                                         env={**zoo_env, "BENTOML_CONFIG_OPTIONS": TRACING_ON}),
                        "routes": {f"zoo {MODEL} + tracing": (q, "observability", "classify")}},
        "fastapi": {"server": Server("fastapi", logs / "fastapi.log", env=peer_env, ready_path="/readyz",
                                     cmd=[py, "-m", "uvicorn", "bench.peer_fastapi:app", "--host", "127.0.0.1",
                                          "--port", "{port}", "--workers", str(n_workers), "--no-access-log"]),
                    "routes": {"fastapi": ("/classify", "headline", "classify")}},
        "litserve": {"server": Server("litserve", logs / "litserve.log", env=peer_env, ready_path="/health",
                                      cmd=[py, "-m", "bench.peer_litserve", "--host", "127.0.0.1", "--port",
                                           "{port}", "--workers", str(n_workers)]),
                     "routes": {"litserve": ("/classify", "headline", "classify")}},
        "noop": {"server": Server("bench.noop_service:Noop", logs / "noop.log", env=zoo_env),
                 "routes": {"noop": ("/classify", "headline", "classify")}},
        "zoo v2": {"server": Server("service.service:FashionZoo", logs / "zoo-v2.log", env=zoo_env),
                   "routes": {f"zoo {MODEL} V2 {form}": (v2, "headline", f"v2 {form}") for form in V2_FORMS}},
    }
    if kserve is not None:
        # KServe's ModelServer flags (it reads them from sys.argv). Its access log and per-request
        # trace lines, which it has no flag for: bench/peer_kserve.LOG_CONFIG.
        plan["kserve"] = {
            "server": Server("kserve", logs / "kserve.log", env=peer_env, ready_path="/v2/health/ready",
                             cmd=[str(kserve), "-m", "bench.peer_kserve", "--http_port", "{port}",
                                  "--workers", str(n_workers), "--enable_grpc", "false",
                                  "--enable_latency_logging", "false"]),
            "routes": {f"kserve V2 {form}": (v2, "headline", f"v2 {form}") for form in V2_FORMS}}
    return plan


def _post(url: str, body: bytes, ctype: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:200].decode(errors="replace")


def v2_requests(png: bytes, root: Path) -> tuple[dict[str, tuple[bytes, str, dict[str, str]]],
                                                    dict[str, Any]]:
    """The V2 infer request for one image, {"v2 JSON"|"v2 binary": (body, content type, more
    headers)}, and the outputs a server should answer ({name: array}, from the local session).

    The tensor is the PNG preprocessed as the manifest says (what /classify does to the file), with
    the session options of the peers (bench/peer_model.py). JSON: the tensor's `data` flat and the
    answer in JSON (no outputs named: all of them). Binary: built by tritonclient as it sends it by
    default, Triton's binary tensor extension both ways (the raw float32 bytes after the JSON
    header, `binary_data_output`); Content-Type application/octet-stream, as KServe wants for it."""
    import numpy as np
    import tritonclient.http as triton
    from PIL import Image

    from service.results import softmax
    from zoo.spec import preprocess

    from .peer_model import PeerModel

    model = PeerModel(root, MODEL)
    with Image.open(io.BytesIO(png)) as image:
        x = preprocess(image, model.spec)[None].astype(np.float32)  # (1, 1, 28, 28)
    logits = model.session.run([model.output], {model.input: x})[0]
    expected = {"logits": logits, "probabilities": softmax(logits).astype(np.float32)}
    as_json = json.dumps({"inputs": [{"name": model.input, "shape": list(x.shape), "datatype": "FP32",
                                      "data": x.ravel().tolist()}]}).encode()
    tensor = triton.InferInput(model.input, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    binary, header_length = triton.InferenceServerClient.generate_request_body([tensor])
    return {"v2 JSON": (as_json, "application/json", {}),
            "v2 binary": (binary, "application/octet-stream",
                          {"Inference-Header-Content-Length": str(header_length)})}, expected


def _post_v2(url: str, body: bytes, ctype: str, headers: dict[str, str]) -> tuple[int, Any]:
    """POST a V2 infer request -> (200, {output name: array}) or (status, the start of the error)."""
    from tritonclient.http import InferResult

    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype, **headers}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            n = r.headers.get("Inference-Header-Content-Length")
            answer = InferResult.from_response_body(r.read(), header_length=int(n) if n else None)
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:200].decode(errors="replace")
    return r.status, {o["name"]: answer.as_numpy(o["name"]) for o in answer.get_response()["outputs"]}


def compare_v2(outputs: dict[str, Any], expected: dict[str, Any]) -> str:
    """How a V2 answer's outputs compare with the local session's: the same (to V2_TOLERANCE, the
    largest difference said) or what differs."""
    import numpy as np

    if sorted(outputs) != sorted(expected):
        return f"differs: outputs {sorted(outputs)}, expected {sorted(expected)}"
    if any(np.shape(outputs[k]) != np.shape(v) for k, v in expected.items()):
        return "differs: shapes " + ", ".join(f"{k} {list(np.shape(v))}" for k, v in outputs.items())
    diff = max(float(np.abs(np.asarray(outputs[k], np.float64) - v).max()) for k, v in expected.items())
    what = ", ".join(sorted(expected))
    return (f"same {what} (max abs diff {diff:.1g})" if diff <= V2_TOLERANCE else
            f"differs: {what} max abs diff {diff:.3g}")


def compare_body(answer: Any, reference: dict[str, Any]) -> str:
    """How a server's answer compares with the zoo's: identical (the same JSON values), the same
    fields (another result, same shape), or what differs."""
    if answer == reference:
        return "identical"
    if isinstance(answer, dict) and list(answer) == list(reference):
        return "same fields"
    keys = list(answer) if isinstance(answer, dict) else type(answer).__name__
    return f"differs: {keys}"


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
    if not wrk.available():
        return {"skipped": wrk.MISSING}
    root, tag = (root, root.name) if root is not None else store_dir()
    if root is None:
        return {"skipped": tag}
    rounds = rounds or ROUNDS[quick]
    secs = {"headline": seconds or SECONDS[quick],
            "observability": observability_seconds or OBSERVABILITY_SECONDS[quick]}
    warmup_s = WARMUP_S[quick] if warmup_s is None else warmup_s
    n_workers, why = default_workers()
    pngs, source = sample_pngs(data_dir, 1)
    body, ctype = wrk.multipart([("image", "item.png", pngs[0], "image/png")])
    requests = {"classify": (body, ctype, {})}
    v2, expected = v2_requests(pngs[0], root)
    requests.update(v2)
    kserve, no_kserve = kserve_python() if only is None or "kserve" in only else (None, "")
    out: dict[str, Any] = {"settings": {
        "store_tag": tag, "model": MODEL, "workers": n_workers, "workers_why": why,
        "concurrency": CONCURRENCY, "rounds": rounds, "seconds": secs, "warmup_s": warmup_s,
        "load_generator": f"{wrk.version()}, one thread, keep-alive, closed loop, on the same machine",
        "image": f"{source}, 28x28 PNG, {len(pngs[0])} bytes, multipart field 'image'",
        "tracing_on": f"BENTOML_CONFIG_OPTIONS='{TRACING_ON}'",
        "v2_request": (f"POST /v2/models/{MODEL}/infer, the image preprocessed as the manifest says: one FP32 "
                       f"tensor 'image' [1, 1, 28, 28]; JSON: {len(requests['v2 JSON'][0]):,} bytes, "
                       f"application/json, the answer in JSON; binary (Triton's binary tensor extension, as "
                       f"tritonclient sends it): {len(requests['v2 binary'][0]):,} bytes, "
                       f"application/octet-stream, binary outputs; answers checked against local ONNX "
                       f"Runtime to {V2_TOLERANCE:g}"),
    }, "bodies": {}, "runs": {}, "starts_s": {}}
    if no_kserve:
        out["kserve_skipped"] = no_kserve
        log(f"  kserve skipped: {no_kserve}")
    runs: dict[str, list[dict[str, Any]]] = {}
    reference: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="fashion-zoo-peers-") as tmp:
        plan = servers(n_workers, root, Path(tmp), kserve)
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
                    first_path, _, first_request = next(iter(entry["routes"].values()))
                    if first_request == "classify":
                        status, answer = _post(url + first_path, body, ctype)
                        if name == "zoo":
                            reference = answer if status == 200 else None
                        out["bodies"][name] = (f"HTTP {status}" if status != 200 else
                                               compare_body(answer, reference) if reference else "no reference")
                    else:  # each V2 route's answer, against the local session's
                        for label, (path, _, request) in entry["routes"].items():
                            status, answer = _post_v2(url + path, *requests[request])
                            out["bodies"][label] = f"HTTP {status}: {answer}" if status != 200 else \
                                compare_v2(answer, expected)
                    warm_body, warm_ctype, warm_headers = requests[first_request]
                    wrk.load(url + first_path, warm_body, warm_ctype, CONCURRENCY, warmup_s, headers=warm_headers)
                    for label, (path, kind, request) in entry["routes"].items():
                        req_body, req_ctype, req_headers = requests[request]
                        r = measured(server.cpu_s, url + path, req_body, req_ctype, CONCURRENCY, secs[kind],
                                     headers=req_headers)
                        r["load_1min"] = round(os.getloadavg()[0], 2)
                        r["round"] = i + 1
                        runs.setdefault(label, []).append(r)
                        log(f"    {label}: {r['rps']:,.0f} rps, p50 {r['p50_ms'] or 0:.1f} ms, p99 "
                            f"{r['p99_ms'] or 0:.1f} ms, {r['server_cpu_ms_per_request']:.3f} ms server CPU "
                            f"per request, {r['errors']} errors, load {r['load_1min']}")
                finally:
                    server.stop()
                    if name == "kserve":  # workers KServe killed as hung and started again (see peer_kserve)
                        restarts = len(re.findall(r"Child process \[\d+\] died", server.output()))
                        out.setdefault("kserve_worker_restarts", []).append(restarts)
    out["runs"] = runs
    out["results"] = {label: _summarise(rs) for label, rs in runs.items()}
    out.update(compare(runs))
    return out


def _paired(runs: dict[str, list[dict[str, Any]]], a: str, b: str, field: str) -> list[float]:
    """a's over b's `field`, round by round (the two measured in the same round)."""
    by_round = {r["round"]: r[field] for r in runs.get(b, [])}
    return [r[field] / by_round[r["round"]] for r in runs.get(a, []) if by_round.get(r["round"])]


def _versus(runs: dict[str, list[dict[str, Any]]], a: str, b: str) -> dict[str, Any]:
    """a against b, round by round: requests/s a over b, and by CPU: b's server CPU per request over
    a's, the requests/s ratio the two would reach with the cores to themselves."""
    rps = _paired(runs, a, b, "rps")
    cpu = [1 / x for x in _paired(runs, a, b, "server_cpu_ms_per_request") if x]
    return {"rps": summary(rps) if rps else None, "by_cpu": summary(cpu) if cpu else None}


def compare(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The zoo against the best peer and against KServe on V2, its V2 route against its /classify,
    and what each observability feature costs."""
    out: dict[str, Any] = {}
    base = f"zoo {MODEL}"
    for form in V2_FORMS:
        zoo_v2 = f"zoo {MODEL} V2 {form}"
        if runs.get(zoo_v2) and runs.get(f"kserve V2 {form}"):
            out.setdefault("vs_kserve", {})[form] = _versus(runs, zoo_v2, f"kserve V2 {form}")
        if runs.get(zoo_v2) and runs.get(base):
            out.setdefault("v2_vs_classify", {})[form] = _versus(runs, zoo_v2, base)
    peers = [p for p in PEERS if runs.get(p)]
    if not peers:
        return out
    best = max(peers, key=lambda p: summary(r["rps"] for r in runs[p])["median"])
    out["best_peer"] = best
    for zoo in (base, "zoo auto"):
        if runs.get(zoo):
            out.setdefault("vs_best_peer", {})[zoo] = _versus(runs, zoo, best)
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
