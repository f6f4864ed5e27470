"""What the service records about each request besides /metrics: BentoML's access log and its
OpenTelemetry tracing, each a keyword argument of `@bentoml.service` chosen here, and the HTTP
server each worker runs (said once at start-up).

    FASHION_ZOO_ACCESS_LOG=1 make serve      # one log line per request (off by default)
    FASHION_ZOO_TRACING=1 make serve         # a span per request even without an exporter
    OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 make serve

Both cost every request server CPU whether or not anything reads them, so neither is on unless asked
for; tracing is on exactly when an exporter is configured (else BentoML's middleware would open an
unrecorded span per request). docs/serving.md, "Observability", has every switch, which setting wins
and what each costs.
"""
from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path
from typing import Any, Mapping

from zoo.errors import ZooError
from zoo.manifest import installed_version

from .params import FALSE, TRUE

ACCESS_ENV, TRACING_ENV = "FASHION_ZOO_ACCESS_LOG", "FASHION_ZOO_TRACING"
EVERY_URL = [""]  # excluded_urls are regular expressions searched in the URL: "" matches every one
# Where a user's BentoML configuration comes from (bentoml/_internal/configuration/__init__.py).
BENTOML_CONFIG_SOURCES = ("BENTOML_CONFIG", "BENTOML_CONFIG_OPTIONS", "BENTOML_CONFIG_OVERRIDES")
OTLP_PACKAGES = {"http": "opentelemetry-exporter-otlp-proto-http", "grpc": "opentelemetry-exporter-otlp-proto-grpc"}


def _switch(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    text = env.get(name, "").strip().lower() or default
    if text in TRUE:
        return "1"
    if text in FALSE:
        return "0"
    if text in choices:
        return text
    raise ValueError(f"{name}={env[name]!r}: give {' or '.join(('1', '0') + choices)}")


def access_log(env: Mapping[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """(`@bentoml.service`'s `logging` argument, the choice in words)."""
    env = os.environ if env is None else env
    on = _switch(env, ACCESS_ENV, "0", ()) == "1"
    why = f"{ACCESS_ENV}={env[ACCESS_ENV]}" if env.get(ACCESS_ENV, "").strip() else f"the default; {ACCESS_ENV}=1 turns it on"
    return {"access": {"enabled": on}}, f"access log {'on' if on else 'off'} ({why})"


def _bentoml_names_exporter(env: Mapping[str, str]) -> str | None:
    """Which of BentoML's configuration sources names a tracing exporter, if any (a textual check:
    whatever a user sets there about exporters, BentoML then applies as it documents)."""
    for name in BENTOML_CONFIG_SOURCES:
        text = env.get(name, "")
        if name == "BENTOML_CONFIG" and text:
            try:
                text = Path(text).read_text()
            except OSError:
                continue  # BentoML itself says what is wrong with the file
        if "exporter_type" in text:
            return name
    return None


def installed(module: str) -> bool:
    """Whether `module` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _otel_exporter(env: Mapping[str, str]) -> dict[str, Any] | None:
    """BentoML's tracing settings for the exporter the standard OTEL_* environment configures."""
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if exporter in ("", "none") and not (exporter == "" and endpoint):
        return None
    if exporter not in ("", "otlp"):
        raise ValueError(f"OTEL_TRACES_EXPORTER={exporter!r}: the service exports traces with OTLP "
                         f"(OTEL_TRACES_EXPORTER=otlp); for zipkin or jaeger use BentoML's tracing settings")
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip().lower()
    protocol = "grpc" if protocol == "grpc" else "http"
    if not installed(f"opentelemetry.exporter.otlp.proto.{protocol}"):
        raise ZooError(f"OTEL_TRACES_EXPORTER/OTEL_EXPORTER_OTLP_* ask for an OTLP exporter over {protocol}, but "
                       f"{OTLP_PACKAGES[protocol]} is not installed; pip install {OTLP_PACKAGES[protocol]}")
    rate = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        sample_rate = float(rate) if rate else 1.0
    except ValueError:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG={rate!r} is not a sampling ratio from 0 to 1") from None
    return {"exporter_type": "otlp", "sample_rate": sample_rate, "otlp": {"protocol": protocol}}


def tracing(env: Mapping[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """(`@bentoml.service`'s `tracing` argument, the choice in words)."""
    env = os.environ if env is None else env
    mode = _switch(env, TRACING_ENV, "auto", ("auto",))
    if mode == "0":
        return {"excluded_urls": EVERY_URL}, f"tracing off ({TRACING_ENV}=0)"
    source = _bentoml_names_exporter(env)
    if source:
        return {}, f"tracing on (BentoML's tracing settings in {source})"
    otel = _otel_exporter(env)
    if otel:
        return otel, (f"tracing on (OTLP over {otel['otlp']['protocol']} from the OTEL_* environment, "
                      f"sample rate {otel['sample_rate']:g})")
    if mode == "1":
        return {}, f"tracing on without an exporter ({TRACING_ENV}=1: a span per request, BentoML's settings)"
    return {"excluded_urls": EVERY_URL}, (f"tracing off (no exporter configured; an OTEL_* exporter, BentoML's "
                                          f"tracing settings or {TRACING_ENV}=1 turn it on)")


def service_kwargs(env: Mapping[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """The `@bentoml.service` arguments for the access log and tracing, and one line saying them."""
    logging_kw, log_why = access_log(env)
    tracing_kw, trace_why = tracing(env)
    return {"logging": logging_kw, "tracing": tracing_kw}, f"{log_why}; {trace_why}"


def http_server() -> str:
    """The HTTP implementation and event loop of this worker, in words. BentoML's worker
    (`_bentoml_impl/worker/service.py`) runs uvicorn with its default `http="auto"` and
    `loop="auto"`: httptools and uvloop when they are installed, else h11 and asyncio (pure Python).
    Called inside the worker's running event loop."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    parser = {"HttpToolsProtocol": "httptools", "H11Protocol": "h11"}[AutoHTTPProtocol.__name__]  # uvicorn's two
    try:
        loop = type(asyncio.get_running_loop())
        name = f"{loop.__module__}.{loop.__qualname__}"
    except RuntimeError:  # not in the event loop (a worker started another way)
        name = "unknown (no running event loop)"
    if name.startswith("uvloop"):
        name = f"uvloop {installed_version('uvloop', '?')} ({name})"
    return (f"uvicorn {installed_version('uvicorn', '?')}, HTTP parser {parser} {installed_version(parser, '?')}, "
            f"event loop {name}")
