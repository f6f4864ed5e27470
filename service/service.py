"""The BentoML service: every model of the exported zoo behind one HTTP endpoint.

    bentoml serve service.service:FashionZoo --port 3000      # what `make serve` runs

Serves the `fashion-zoo` model of the BentoML model store (written by `make export`): the tag in
FASHION_ZOO_MODEL, else the one a built bento was made with, else the latest. The routes are
`service.routes`'s, `service.v2`'s (/v2) and `service.ui`'s (/ui/); BentoML adds /livez, /readyz,
/metrics and its API docs at /. docs/serving.md has the other switches (FASHION_ZOO_DEVICE, _WORKERS,
_ACCESS_LOG, _TRACING). This module never imports torch.
"""
from __future__ import annotations

import logging
import os

import bentoml

from zoo.manifest import PROJECT, STORE_NAME, ZooLoadError, read_verified

from . import bentoml_fixes, observability, ui, v2, workers
from .routes import app
from .runtime import choose_device, load_zoo

MODEL_TAG = os.environ.get("FASHION_ZOO_MODEL", f"{STORE_NAME}:latest")
DEVICE = os.environ.get("FASHION_ZOO_DEVICE", "auto")
logger = logging.getLogger("bentoml.fashion_zoo")
WORKERS, WORKERS_WHY = workers.worker_count(gpu=workers.gpu_likely(DEVICE))  # FASHION_ZOO_WORKERS=N overrides
OBSERVABILITY, OBSERVABILITY_WHY = observability.service_kwargs()  # FASHION_ZOO_ACCESS_LOG, FASHION_ZOO_TRACING
bentoml_fixes.apply()  # BentoML's request-timeout middleware leaks a timer per request
v2.add_routes(app)  # the Open Inference Protocol (KServe V2, Triton) beside /classify


def _served_tag() -> str:
    """FASHION_ZOO_MODEL if set; else the version a built bento holds; else the latest."""
    if "FASHION_ZOO_MODEL" in os.environ:
        return MODEL_TAG
    bento = FashionZoo.bento
    models = bento.info.all_models if bento is not None else []
    return next((str(info.tag) for info in models if info.tag.name == STORE_NAME), MODEL_TAG)


def _stored_model() -> bentoml.Model:
    tag = _served_tag()
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise ZooLoadError(f"no model {tag} in the BentoML model store "
                           f"({os.environ.get('BENTOML_HOME', '~/bentoml')}); run `make export` first, "
                           f"or set FASHION_ZOO_MODEL to a tag `bentoml models list` shows") from None


# Further ASGI apps (a web page, static files) mount here too, under their own path.
@bentoml.service(workers=WORKERS, traffic={"timeout": 60}, **OBSERVABILITY)
@bentoml.asgi_app(app, path="/", name=PROJECT)
@bentoml.asgi_app(ui.app, path=ui.PATH, name="ui")  # the web page, /ui/
class FashionZoo:
    # Declares the store model so that `bentoml build` packs it into the bento.
    zoo_model = bentoml.models.BentoModel(MODEL_TAG)

    @bentoml.on_deployment
    def check_store() -> None:
        """Once, before any worker starts: a missing or corrupt model stops `bentoml serve` with
        one clear error (a worker failing in __init__ would only be restarted)."""
        stored = _stored_model()
        read_verified(stored.path, str(stored.tag))
        if DEVICE != "auto":  # a bad value, or CUDA demanded where it cannot run
            choose_device(DEVICE)
        logger.info("fashion-zoo: %d worker process(es): %s", WORKERS, WORKERS_WHY)
        logger.info("fashion-zoo: %s", OBSERVABILITY_WHY)

    def __init__(self) -> None:
        stored = _stored_model()
        self.zoo = load_zoo(stored.path, str(stored.tag), DEVICE)
        app.state.zoo = self.zoo  # the routes' zoo; GET /v2/health/ready answers what /readyz does
        logger.info("fashion-zoo worker %d: %s", os.getpid(), observability.http_server())
        workers.freeze_startup_heap()

    def __is_ready__(self) -> bool:
        """Ready when this worker's zoo is loaded and verified (`service.workers` says why that is
        the service's readiness)."""
        return self.zoo.ready
