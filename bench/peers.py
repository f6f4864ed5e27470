"""The zoo against the servers a user would run instead, one server at a time, in alternating rounds.

    python -m bench --sections peers              # the section alone (about 25 minutes)
    python -m bench --sections peers --quick 1    # a short check (about 3 minutes)

The zoo as shipped, with its access log and with tracing on, FastAPI (bench/peer_fastapi.py), LitServe
(bench/peer_litserve.py), the BentoML no-op and, on the V2 protocol, KServe (bench/peer_kserve.py, from
its own venv KSERVE_VENV): the same workers, ONNX file, session options and answer (bench/peer_model.py).
Server CPU per request counts every process of a server. docs/benchmarks.md, "Peers", has the setup.
"""
from __future__ import annotations

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

from service.workers import worker_count

from . import wrk
from .peer_model import DIR_ENV, MODEL_ENV, PeerModel
from .server import ROOT, NotReady, Server
from .service import measured, sample_pngs, store_dir, summarise
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
    """(the python of KServe's venv, "") or (None, why not): KSERVE_VENV (default .venv-kserve), complete
    once `make` has stamped it `.installed` (`kserve` needs pandas 2, beside the project's pins)."""
    name = os.environ.get("KSERVE_VENV", ".venv-kserve")
    venv = ROOT / name
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists() or not python.exists():
        make = f"make {name}/.installed" if name == ".venv-kserve" else f"make KSERVE_VENV={name} {name}/.installed"
        return None, f"no KServe venv at {venv}: `{make}` creates it (make bench and make test do)"
    return python, ""


def servers(n_workers: int, root: Path, logs: Path, kserve: Path | None = None) -> dict[str, tuple[Server, dict]]:
    """name -> (server, {measurement: (path, seconds key, request)}); `kserve`: the python of KServe's
    venv (no kserve server without it)."""
    zoo_env = {"FASHION_ZOO_WORKERS": str(n_workers)}
    q, plain = f"/classify?model={MODEL}", ("/classify", "headline", "classify")

    def bentoml(log: str, target: str = "service.service:FashionZoo", **env: str) -> Server:
        return Server(target, logs / f"{log}.log", env={**zoo_env, **env})

    def peer(name: str, ready_path: str, *cmd: str) -> Server:
        return Server(name, logs / f"{name}.log", ready_path=ready_path, cmd=list(cmd),
                      env={DIR_ENV: str(root), MODEL_ENV: MODEL})

    def v2(server: str) -> dict[str, tuple[str, str, str]]:
        return {f"{server} V2 {form}": (f"/v2/models/{MODEL}/infer", "headline", f"v2 {form}") for form in V2_FORMS}

    py, workers = sys.executable, str(n_workers)
    plan = {
        "zoo": (bentoml("zoo"), {f"zoo {MODEL}": (q, "headline", "classify"), "zoo auto": plain}),
        "zoo+access_log": (bentoml("zoo-access", FASHION_ZOO_ACCESS_LOG="1"),
                           {f"zoo {MODEL} + access log": (q, "observability", "classify")}),
        "zoo+tracing": (bentoml("zoo-tracing", BENTOML_CONFIG_OPTIONS=TRACING_ON),
                        {f"zoo {MODEL} + tracing": (q, "observability", "classify")}),
        "fastapi": (peer("fastapi", "/readyz", py, "-m", "uvicorn", "bench.peer_fastapi:app", "--host", "127.0.0.1",
                         "--port", "{port}", "--workers", workers, "--no-access-log"), {"fastapi": plain}),
        "litserve": (peer("litserve", "/health", py, "-m", "bench.peer_litserve", "--host", "127.0.0.1",
                          "--port", "{port}", "--workers", workers), {"litserve": plain}),
        "noop": (bentoml("noop", "bench.noop_service:Noop"), {"noop": plain}),
        "zoo v2": (bentoml("zoo-v2"), v2(f"zoo {MODEL}")),
    }
    if kserve is not None:
        # KServe's ModelServer flags (it reads them from sys.argv). Its access log and per-request
        # trace lines, which it has no flag for: bench/peer_kserve.LOG_CONFIG.
        plan["kserve"] = (peer("kserve", "/v2/health/ready", str(kserve), "-m", "bench.peer_kserve", "--http_port",
                               "{port}", "--workers", workers, "--enable_grpc", "false",
                               "--enable_latency_logging", "false"), v2("kserve"))
    return plan


def v2_requests(png: bytes, root: Path) -> tuple[dict[str, tuple[bytes, str, dict[str, str]]],
                                                    dict[str, Any]]:
    """The V2 infer requests for one image preprocessed as the manifest says, {"v2 JSON"|"v2 binary":
    (body, content type, more headers)}, and the outputs a server should answer (the local session's).
    Binary: as tritonclient sends it, Triton's binary tensor extension both ways."""
    import numpy as np
    import tritonclient.http as triton

    from service.results import softmax

    model = PeerModel(root, MODEL)
    x = model.tensor(png)  # (1, 1, 28, 28)
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


def _post(url: str, body: bytes, ctype: str, headers: dict[str, str]) -> tuple[int, Any]:
    """POST -> (200, the JSON answer, or a V2 answer's {output name: array}) or (status, the start of the error)."""
    from tritonclient.http import InferResult

    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype, **headers}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, data, n = r.status, r.read(), r.headers.get("Inference-Header-Content-Length")
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:200].decode(errors="replace")
    if "/v2/" not in url:
        return status, json.loads(data)
    answer = InferResult.from_response_body(data, header_length=int(n) if n else None)
    return status, {o["name"]: answer.as_numpy(o["name"]) for o in answer.get_response()["outputs"]}


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
    n_workers, why = worker_count(gpu=False, env={})  # the service's default here, and why
    pngs, image = sample_pngs(data_dir, 1)
    requests, expected = v2_requests(pngs[0], root)
    requests["classify"] = (*wrk.multipart([("image", "item.png", pngs[0], "image/png")]), {})
    kserve, no_kserve = kserve_python() if only is None or "kserve" in only else (None, "")
    out: dict[str, Any] = {"settings": {
        "store_tag": tag, "model": MODEL, "workers": n_workers, "workers_why": why,
        "concurrency": CONCURRENCY, "rounds": rounds, "seconds": secs, "warmup_s": warmup_s,
        "load_generator": wrk.describe(), "image": image, "tracing_on": f"BENTOML_CONFIG_OPTIONS='{TRACING_ON}'",
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
        names = sorted((n for n in plan if only is None or n in only), key=lambda n: n != "zoo")  # the reference first
        for i in range(rounds):
            order = names if i % 2 == 0 else names[::-1]
            log(f"  peers, round {i + 1} of {rounds}: {', '.join(order)}")
            for name in order:
                server, routes = plan[name]
                t0 = time.perf_counter()
                try:
                    with server as url:
                        out["starts_s"].setdefault(name, []).append(round(time.perf_counter() - t0, 1))
                        first_path, _, first_request = next(iter(routes.values()))
                        if first_request == "classify":
                            status, answer = _post(url + first_path, *requests["classify"])
                            if name == "zoo":
                                reference = answer if status == 200 else None
                            out["bodies"][name] = (f"HTTP {status}" if status != 200 else
                                                   compare_body(answer, reference) if reference else "no reference")
                        else:  # each V2 route's answer, against the local session's
                            for label, (path, _, request) in routes.items():
                                status, answer = _post(url + path, *requests[request])
                                out["bodies"][label] = f"HTTP {status}: {answer}" if status != 200 else \
                                    compare_v2(answer, expected)
                        if warmup_s:  # 0: none (the tests)
                            body, ctype, headers = requests[first_request]
                            wrk.load(url + first_path, body, ctype, CONCURRENCY, warmup_s, headers=headers)
                        for label, (path, kind, request) in routes.items():
                            body, ctype, headers = requests[request]
                            r = measured(server.cpu_s, url + path, body, ctype, CONCURRENCY, secs[kind],
                                         headers=headers)
                            r["load_1min"] = round(os.getloadavg()[0], 2)
                            r["round"] = i + 1
                            runs.setdefault(label, []).append(r)
                            log(f"    {label}: {r['rps']:,.0f} rps, p50 {r['p50_ms'] or 0:.1f} ms, p99 "
                                f"{r['p99_ms'] or 0:.1f} ms, {r['server_cpu_ms_per_request']:.3f} ms server CPU "
                                f"per request, {r['errors']} errors, load {r['load_1min']}")
                except NotReady as e:
                    out.setdefault("failed", {})[name] = str(e)
                    log(f"  {name}: did not start: {e}")
                    continue
                if name == "kserve":  # workers KServe killed as hung and started again (see peer_kserve)
                    restarts = len(re.findall(r"Child process \[\d+\] died", server.output()))
                    out.setdefault("kserve_worker_restarts", []).append(restarts)
    out["runs"] = runs
    out["results"] = {label: summarise(rs, "server_cpu_cores", "load_1min") for label, rs in runs.items()}
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
            plain = summary(r["server_cpu_ms_per_request"] for r in runs[base])["median"]
            out.setdefault("observability_cost", {})[feature] = {
                "server_cpu_ms_per_request_extra": summary(r["server_cpu_ms_per_request"] - plain for r in runs[label]),
                "rps_vs_off": _versus(runs, label, base)["rps"]}
    return out
