"""The HTTP interface: POST /classify, POST /classify/batch, GET /models (docs/serving.md, "The API").

A small FastAPI app that the BentoML service mounts (BentoML adds /livez, /readyz, /metrics and its
API docs at /, with this app's OpenAPI paths, service/openapi.py). The routes read the request body
themselves (`RawRoute`), so every bad upload gets a precise 400/404/413 JSON answer and none reaches
a 500. The service puts its loaded `runtime.Zoo` in `app.state.zoo`.
"""
from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI
from fastapi.routing import APIRoute
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

from zoo.auto import AUTO
from zoo.manifest import PROJECT

from . import openapi
from .forms import Part, parse_plain
from .imaging import MAX_BYTES, ImageError, load, open_all, open_image
from .inference import Batch, UnknownModel, answering, unconvertible
from .params import (ALL, DEFAULT_TOP_K, FALSE, FORM_SLACK, IMAGE, INCLUDE_INPUT, MAX_BATCH_BYTES,
                     MAX_BATCH_IMAGES, MODEL, RAW_TYPES, TOP_K, TRUE)
from .results import JSON
from .runtime import Zoo
from .v2_tensors import TensorError
from .workers import cpu_cores

# An image this small (a Fashion-MNIST image is 784 pixels, a Kaggle photo 4,800) is decoded and
# classified on the event loop: that takes less time than handing it to a thread.
INLINE_PIXELS = 128 * 128
HOW_SINGLE = ("send the image as the multipart field 'image' (curl -F image=@photo.png) or as the raw "
              "body with an image/* Content-Type (curl --data-binary @photo.png -H 'Content-Type: image/png'); "
              "for many images use POST /classify/batch")
HOW_BATCH = (f"send up to {MAX_BATCH_IMAGES} images as repeated multipart fields 'image' "
             f"(curl -F image=@a.png -F image=@b.png)")

logger = logging.getLogger("bentoml.fashion_zoo")
_limiter: anyio.CapacityLimiter | None = None


class RequestError(Exception):
    """A request this service answers with `status` and a JSON body {"error": message, **extra}:
    raised anywhere in a route, the app's exception handler (`answer_error`) sends that answer."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


@dataclass
class Upload:
    images: list[tuple[str | None, bytes]] = field(default_factory=list)  # (filename, bytes)
    fields: dict[str, str] = field(default_factory=dict)


def served_zoo(request: Request) -> Zoo:
    zoo = getattr(request.app.state, "zoo", None)
    if zoo is None or not zoo.ready:
        raise RequestError(503, "the models are still loading; try again shortly (GET /readyz says when)")
    return zoo


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than `limit` bytes whether or not Content-Length says so."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, f"invalid Content-Length {declared!r}")
        if int(declared) > limit:
            raise RequestError(413, f"request body is {int(declared):,} bytes, over the limit of {limit:,}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"request body is over the limit of {limit:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestError(400, "the client went away before sending the whole request") from None
    return b"".join(chunks)


async def read_upload(request: Request, batch: bool) -> Upload:
    """Images and form fields from a multipart form, or one image from a raw body."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    how = HOW_BATCH if batch else HOW_SINGLE
    if media_type == "multipart/form-data":
        body = await read_body(request, MAX_BATCH_BYTES if batch else MAX_BYTES + FORM_SLACK)
        limits = dict(max_files=MAX_BATCH_IMAGES if batch else 1, max_fields=8)
        parts = parse_plain(body, content_type, max_field_bytes=FORM_SLACK, **limits)
        if parts is None:  # not a plain form, or over a limit: the full parser reads it or says why not
            parts = await _parse_form(request, body, how, limits, batch)
        upload = Upload()
        for part in parts:
            if part.name == IMAGE:
                if part.filename is None:
                    raise RequestError(400, f"the field 'image' is text, not a file; {how}")
                upload.images.append((part.filename, part.value))
            elif part.filename is None:
                upload.fields.setdefault(part.name, part.value)
        return upload
    if batch:
        raise RequestError(400, f"expected multipart/form-data, got {media_type or 'no Content-Type'}; {how}")
    if media_type and not media_type.startswith(RAW_TYPES):
        raise RequestError(400, f"expected an image, got Content-Type {media_type}; {how}")
    return Upload(images=[(None, await read_body(request, MAX_BYTES))])


async def _parse_form(request: Request, body: bytes, how: str, limits: dict[str, int],
                      batch: bool) -> list[Part]:
    """Any multipart form, through Starlette's parser (python-multipart)."""
    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_part_size=FORM_SLACK, **limits)
    except HTTPException as e:
        status = 413 if batch and "Too many files" in str(e.detail) else 400
        raise RequestError(status, f"bad multipart form ({e.detail}); {how}") from None
    try:
        return [Part(key, value.filename, await value.read()) if isinstance(value, UploadFile)
                else Part(key, None, value) for key, value in form.multi_items()]
    finally:
        await form.close()


@dataclass
class Options:
    names: list[str]             # the models to run (with auto: those it may pick)
    top_k: int
    include_input: bool = False  # add each model's input image ("input_png", base64 PNG)
    auto: dict[str, Any] | None = None  # model=auto: the zoo's rule, which picks one model per image


def request_options(zoo: Zoo, request: Request, upload: Upload) -> Options:
    """What the request asks for, from the query or the form: model (auto if not given), top_k,
    include_input."""
    params = request.query_params

    def param(name: str) -> str | None:
        # An empty value counts as not given (an HTML form, or the API docs' "Try it out", sends
        # every field, filled in or not).
        query, form = params.get(name) or None, upload.fields.get(name) or None
        if query is not None and form is not None and query != form:
            raise RequestError(400, f"{name} given twice with different values ({query!r} in the query, "
                                    f"{form!r} in the form); give it once")
        return query if query is not None else form

    try:
        names, auto = answering(zoo, param(MODEL))
    except UnknownModel as e:
        raise RequestError(404, str(e), models=e.valid) from None
    n_classes = min(len(zoo.models[n].classes) for n in names)
    top_k = param(TOP_K)
    k = min(DEFAULT_TOP_K, n_classes)
    if top_k is not None:
        try:
            k = int(top_k)
        except ValueError:
            k = 0
        if not 1 <= k <= n_classes:
            raise RequestError(400, f"{TOP_K} must be an integer from 1 to {n_classes}, got {top_k!r}")
    include = (param(INCLUDE_INPUT) or "0").lower()
    if include not in TRUE + FALSE:
        raise RequestError(400, f"{INCLUDE_INPUT} must be 1 or 0, got {include!r}")
    return Options(names, k, include in TRUE, auto)


def _png(pixels: np.ndarray) -> str:
    """A model's uint8 input, (H, W) grey or (3, H, W) colour, as a base64 PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.moveaxis(pixels, 0, -1)) if pixels.ndim == 3 else pixels).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def classify_images(zoo: Zoo, options: Options, images: list[tuple[str | None, Image.Image]]) -> list[dict[str, Any]]:
    """(filename or None, `imaging.open_image`'s image) -> decoded, preprocessed per model as its
    manifest says and classified (with model=auto, by the model the zoo's rule picks); one result each."""
    batch = Batch(zoo, options.names, options.auto)
    for i, (filename, data) in enumerate(images):
        which = f"image {i + 1} ({filename})" if len(images) > 1 else "the image"
        try:
            batch.add(load(data))
        except ImageError as e:
            raise RequestError(e.status, f"{which}: {e}" if len(images) > 1 else str(e)) from None
        except Exception as e:  # e.g. a pixel mode PIL cannot convert to grey
            logger.warning("cannot preprocess %s: %r", which, e)
            raise RequestError(400, f"{which} {unconvertible(e)}") from None
    out = []
    for i, ((filename, _), per_model) in enumerate(zip(images, batch.results(options.top_k))):
        if options.include_input:
            shown: dict[str, str] = {}  # one PNG per preprocessing, shared by the models that have it
            for r in per_model:
                key = batch.key_of[r["model"]]
                if key not in shown:
                    shown[key] = _png(batch.input_pixels(i, r["model"]))
                r["input_png"] = shown[key]
        if options.auto:
            per_model[0]["chosen_by"] = AUTO
        one = per_model[0] if len(per_model) == 1 else {"model": ALL, "default": zoo.default, "results": per_model}
        if filename is not None:
            one = {"filename": filename, **one}
        out.append(one)
    return out


async def in_thread(func, *args):
    """Run a large image's decoding and inference off the event loop."""
    global _limiter
    if _limiter is None:  # decoding and inference are CPU work: one thread per core
        _limiter = anyio.CapacityLimiter(max(2, cpu_cores()))
    return await anyio.to_thread.run_sync(func, *args, limiter=_limiter)


async def _read_request(request: Request, batch: bool) -> tuple[Zoo, Upload, Options]:
    """The served zoo, the uploaded images and what the request asks for: the routes' common start."""
    zoo = served_zoo(request)
    upload = await read_upload(request, batch)
    options = request_options(zoo, request, upload)
    if not upload.images:
        raise RequestError(400, f"no image in the request; {HOW_BATCH if batch else HOW_SINGLE}")
    return zoo, upload, options


async def classify(request: Request) -> JSON:
    """POST /classify: one image, one model (or ?model=all)."""
    zoo, upload, options = await _read_request(request, batch=False)
    image = open_image(upload.images[0][1])  # the header only: its size says where to decode it
    if image.width * image.height <= INLINE_PIXELS:
        (one,) = classify_images(zoo, options, [(None, image)])
    else:
        (one,) = await in_thread(classify_images, zoo, options, [(None, image)])
    return JSON(one)


async def classify_batch(request: Request) -> JSON:
    """POST /classify/batch: many images in one request, each model run once on all of them."""
    zoo, upload, options = await _read_request(request, batch=True)
    images = open_all(upload.images)  # every header first: over the pixel limit, refused before decoding
    results = await in_thread(classify_images, zoo, options, images)
    model = AUTO if options.auto else options.names[0] if len(options.names) == 1 else ALL
    return JSON({"model": model, "count": len(results), "results": results})


async def models(request: Request) -> JSON:
    """GET /models: the served models, their manifest entries and the provider each runs on."""
    return JSON(served_zoo(request).describe())


class RawRoute(APIRoute):
    """A FastAPI route whose endpoint takes the plain `Request`, as a Starlette route's does (FastAPI's
    handler would answer a bad input 422 in its own words), and still carries its OpenAPI description,
    which BentoML merges into its docs. `openapi_extra` may be a function of the served zoo (its model
    names), called each time the document is made."""

    def get_route_handler(self):
        return self.endpoint

    @property
    def openapi_extra(self) -> dict[str, Any] | None:
        extra = self._openapi_extra
        return extra(getattr(app.state, "zoo", None)) if callable(extra) else extra

    @openapi_extra.setter
    def openapi_extra(self, value) -> None:
        self._openapi_extra = value


async def answer_error(request: Request, exc: RequestError | ImageError | TensorError) -> JSON:
    """A refused request (raised as one of the three): its status, {"error": message, **extra}."""
    return JSON({"error": str(exc), **getattr(exc, "extra", {})}, status_code=exc.status)


async def unknown_route(request: Request, exc: HTTPException) -> JSON:
    """404 and 405 for a path or method this app does not have, in the service's {"error": ...} shape."""
    what = "no such route" if exc.status_code == 404 else exc.detail
    return JSON({"error": f"{what}: {request.method} {request.url.path}; the API is described at / "
                          "and /docs.json"}, status_code=exc.status_code, headers=exc.headers)


# openapi_url=None: the API is described by BentoML's /docs.json (shown at /), not by this app.
# No telemetry of FastAPI's own: BentoML already traces every request and keeps its metrics; inside
# BentoML (which configures OpenTelemetry) FastAPI would otherwise add a second span per request.
app = FastAPI(title=PROJECT, openapi_url=None, docs_url=None, redoc_url=None,
              telemetry={"tracing": False, "metrics": False, "logs": False},
              exception_handlers={RequestError: answer_error, ImageError: answer_error, TensorError: answer_error,
                                  HTTPException: unknown_route})
app.router.route_class = RawRoute
app.add_api_route("/classify", classify, methods=["POST"], **openapi.CLASSIFY)
app.add_api_route("/classify/batch", classify_batch, methods=["POST"], **openapi.CLASSIFY_BATCH)
app.add_api_route("/models", models, methods=["GET"], **openapi.MODELS)
