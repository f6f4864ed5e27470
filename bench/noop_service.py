"""A BentoML service that does no work: the framework's ceiling for the service benchmark.

    bentoml serve bench.noop_service:Noop --host 127.0.0.1 --port 3001

Built like `service.service:FashionZoo` (a FastAPI app of the same kind, `service.routes.RawRoute`
endpoints, mounted with `bentoml.asgi_app`; the same service configuration: workers, traffic; the
same BentoML fix and start-up garbage-collection freeze; the same JSON response class) with the same
routes, but each route only reads the request body and answers a constant of the zoo's shape (a
result made by `service.results.results`, so its JSON encoding costs what the zoo's does): no form
parsing, decoding, preprocessing or inference. The requests per second it serves are the most a
BentoML service of this shape serves on this machine.
"""
from __future__ import annotations

from typing import Any

import bentoml
from fastapi import FastAPI
from starlette.requests import Request

import numpy as np

from service import bentoml_fixes
from service.results import JSON, results
from service.routes import RawRoute
from zoo.spec import CLASSES

bentoml_fixes.apply()  # as the zoo service does: the ceiling is measured with the same fix
RESULT = results("noop", np.linspace(-4, 5, len(CLASSES), dtype=np.float32)[None], list(CLASSES), 3)[0]


def _zoo_config() -> dict[str, Any]:
    """The zoo service's BentoML configuration, so that both run the same way."""
    try:
        from service.service import FashionZoo

        return dict(FashionZoo.config)
    except Exception:  # the service cannot be imported: BentoML's defaults
        return {}


async def classify(request: Request) -> JSON:
    await request.body()
    return JSON(RESULT)


async def classify_batch(request: Request) -> JSON:
    await request.body()
    return JSON({"model": "noop", "count": 0, "results": []})


app = FastAPI(title="noop", openapi_url=None, docs_url=None, redoc_url=None,
              telemetry={"tracing": False, "metrics": False, "logs": False})
app.router.route_class = RawRoute
app.add_api_route("/classify", classify, methods=["POST"])
app.add_api_route("/classify/batch", classify_batch, methods=["POST"])


@bentoml.service(**_zoo_config())
@bentoml.asgi_app(app, path="/", name="noop")
class Noop:
    def __init__(self) -> None:
        from service import workers

        workers.freeze_startup_heap()  # as the zoo's workers do
