"""A BentoML service that does no work: the framework's ceiling for the service benchmark.

    bentoml serve bench.noop_service:Noop --host 127.0.0.1 --port 3001

Built like `service.service:FashionZoo` (the same kind of app, configuration, fix and start-up) with the
same routes, each of which only reads the body and answers a constant of the zoo's shape.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

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


def constant(answer: dict[str, Any]) -> Callable[[Request], Awaitable[JSON]]:
    """A route that reads the request's body and answers `answer`."""
    async def route(request: Request) -> JSON:
        await request.body()
        return JSON(answer)

    return route


app = FastAPI(title="noop", openapi_url=None, docs_url=None, redoc_url=None,
              telemetry={"tracing": False, "metrics": False, "logs": False})
app.router.route_class = RawRoute
app.add_api_route("/classify", constant(RESULT), methods=["POST"])
app.add_api_route("/classify/batch", constant({"model": "noop", "count": 0, "results": []}), methods=["POST"])


@bentoml.service(**_zoo_config())
@bentoml.asgi_app(app, path="/", name="noop")
class Noop:
    def __init__(self) -> None:
        from service import workers

        workers.freeze_startup_heap()  # as the zoo's workers do
