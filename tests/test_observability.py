"""The access log and tracing (service/observability.py): off by default, each switched back on
for real on a running server, and the HTTP server each worker runs said at start-up."""
from __future__ import annotations

import re

import httpx
import pytest

from service import observability
from tests.images import grey_png
from zoo.errors import ZooError

ACCESS_LINE = re.compile(r"path=/classify,.*\(status=200,")
# BentoML's access log ends with the request's trace when a span was opened for it
TRACED = re.compile(r"trace=([0-9a-f]{32}),span=[0-9a-f]{16},sampled=(\d)")
TRACING_ON = ("services.FashionZoo.tracing.exporter_type=in_memory "
              "services.FashionZoo.tracing.sample_rate=1.0")
PNG = grey_png(20, box=(9, 5, 19, 23), ink=210)   # a light item on a dark 28x28 background


def test_access_log_is_off_unless_asked_for():
    assert observability.access_log({}) == ({"access": {"enabled": False}},
                                            "access log off (the default; FASHION_ZOO_ACCESS_LOG=1 turns it on)")
    for text, on in (("1", True), ("true", True), ("on", True), ("0", False), ("no", False), (" ", False)):
        assert observability.access_log({"FASHION_ZOO_ACCESS_LOG": text})[0]["access"]["enabled"] is on, text
    with pytest.raises(ValueError, match="FASHION_ZOO_ACCESS_LOG='maybe': give 1 or 0"):
        observability.access_log({"FASHION_ZOO_ACCESS_LOG": "maybe"})


def test_tracing_is_paid_for_only_when_an_exporter_is_configured(tmp_path):
    off = {"excluded_urls": observability.EVERY_URL}
    kw, why = observability.tracing({})
    assert kw == off and "no exporter configured" in why
    # BentoML's own settings name an exporter: they apply as BentoML documents them
    assert observability.tracing({"BENTOML_CONFIG_OPTIONS": TRACING_ON})[0] == {}
    config = tmp_path / "bentoml.yaml"
    config.write_text("services:\n  FashionZoo:\n    tracing:\n      exporter_type: zipkin\n")
    kw, why = observability.tracing({"BENTOML_CONFIG": str(config)})
    assert kw == {} and "BENTOML_CONFIG" in why
    # explicit switches
    assert observability.tracing({"FASHION_ZOO_TRACING": "0", "BENTOML_CONFIG_OPTIONS": TRACING_ON})[0] == off
    assert observability.tracing({"FASHION_ZOO_TRACING": "1"}) == (
        {}, "tracing on without an exporter (FASHION_ZOO_TRACING=1: a span per request, BentoML's settings)")
    with pytest.raises(ValueError, match="FASHION_ZOO_TRACING='sometimes': give 1 or 0 or auto"):
        observability.tracing({"FASHION_ZOO_TRACING": "sometimes"})
    # the OpenTelemetry environment
    assert observability.tracing({"OTEL_TRACES_EXPORTER": "none"})[0] == off
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        observability.tracing({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_an_otlp_exporter_from_the_environment_needs_its_package():
    """OTEL_* asks for OTLP: BentoML's OTLP settings if the exporter package is there, else one
    clear error naming the package (this environment does not install it)."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    if not observability.installed("opentelemetry.exporter.otlp.proto.http"):
        with pytest.raises(ZooError, match="pip install opentelemetry-exporter-otlp-proto-http"):
            observability.tracing(env)
    else:
        kw, _ = observability.tracing(env)
        assert kw == {"exporter_type": "otlp", "sample_rate": 0.25, "otlp": {"protocol": "http"}}


def _serve_and_classify(exported_zoo, tmp_path, n: int = 3, **env: str) -> tuple[str, list[float]]:
    """The server's log after n classifications, and /metrics' count of them."""
    from tests.service_server import serve

    _, home = exported_zoo
    with serve(home, tmp_path / "serve.log", **env) as server:
        for _ in range(n):
            r = httpx.post(f"{server.url}/classify?model=batchnorm", files={"image": ("x.png", PNG, "image/png")})
            assert r.status_code == 200, r.text
        metrics = httpx.get(f"{server.url}/metrics").text
        counts = re.findall(r'bentoml_service_request_total\{[^}]*endpoint="/classify"[^}]*http_response_code="200"'
                            r'[^}]*\} ([0-9.e+]+)', metrics)
        return server.output(), [float(c) for c in counts]


def test_by_default_no_access_log_no_span_and_metrics_count(exported_zoo, tmp_path):
    log, counts = _serve_and_classify(exported_zoo, tmp_path)
    assert "access log off (the default" in log and "tracing off (no exporter configured" in log
    assert not ACCESS_LINE.search(log)
    assert sum(counts) == 3  # /metrics stays on and counts every request
    # each worker says which HTTP implementation and event loop it runs
    workers = re.findall(r"fashion-zoo worker \d+: uvicorn [\d.]+, HTTP parser (\S+) [\d.]+, event loop (\S+)", log)
    assert workers == [("httptools", "uvloop")]


def test_access_log_turned_back_on_logs_each_request_without_a_span(exported_zoo, tmp_path):
    log, counts = _serve_and_classify(exported_zoo, tmp_path, FASHION_ZOO_ACCESS_LOG="1")
    lines = [line for line in log.splitlines() if ACCESS_LINE.search(line)]
    assert len(lines) == 3 and sum(counts) == 3
    assert not any(TRACED.search(line) for line in lines)  # tracing is still off


def test_tracing_turned_back_on_samples_every_request(exported_zoo, tmp_path):
    """BentoML's tracing settings with an exporter (its in-memory one, every request sampled):
    each request gets its own recorded span, which the access log line shows."""
    log, counts = _serve_and_classify(exported_zoo, tmp_path, FASHION_ZOO_ACCESS_LOG="1",
                                      BENTOML_CONFIG_OPTIONS=TRACING_ON)
    assert "tracing on (BentoML's tracing settings in BENTOML_CONFIG_OPTIONS)" in log
    traces = [TRACED.search(line) for line in log.splitlines() if ACCESS_LINE.search(line)]
    assert len(traces) == 3 and all(t and t[2] == "1" and int(t[1], 16) for t in traces)
    assert len({t[1] for t in traces}) == 3 and sum(counts) == 3
