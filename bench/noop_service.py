"""A BentoML service that does no work: the framework's ceiling for the service benchmark.

    bentoml serve bench.noop_service:Noop --host 127.0.0.1 --port 3001

Built like `service.service:FashionZoo` (a Starlette app mounted with `bentoml.asgi_app`, the same
service configuration: workers, traffic) with the same routes, but each route only reads the
request body and answers a constant: no form parsing, decoding, preprocessing or inference. The
requests per second it serves are the most a BentoML service of this shape serves on this machine.
"""
from __future__ import annotations

from typing import Any

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service import bentoml_fixes

bentoml_fixes.apply()  # as the zoo service does: the ceiling is measured with the same fix
RESULT = {"model": "noop", "label": "T-shirt/top", "index": 0, "probability": 1.0}


def _zoo_config() -> dict[str, Any]:
    """The zoo service's BentoML configuration, so that both run the same way."""
    try:
        from service.service import FashionZoo

        return dict(FashionZoo.config)
    except Exception:  # the service cannot be imported: BentoML's defaults
        return {}


async def classify(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse(RESULT)


async def classify_batch(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"model": "noop", "count": 0, "results": []})


app = Starlette(routes=[
    Route("/classify", classify, methods=["POST"]),
    Route("/classify/batch", classify_batch, methods=["POST"]),
])


@bentoml.service(**_zoo_config())
@bentoml.asgi_app(app, path="/", name="noop")
class Noop:
    def __init__(self) -> None:
        from service import workers

        workers.freeze_startup_heap()  # as the zoo's workers do
