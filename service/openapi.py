"""The OpenAPI description of the zoo's routes, which BentoML shows at / and serves as /docs.json.

The routes read their requests themselves (`routes.RawRoute`), so their parameters and bodies are
declared here (`openapi_extra`, a function of the served zoo for its model names) and their answers
as service/schemas.py's typed dicts, from the names and limits the routes enforce (service/params.py);
the examples are made by `results.result`. tests/test_openapi.py checks the document against a live server.
"""
from __future__ import annotations

from typing import Any, Union

import numpy as np

from zoo.auto import AUTO, RULE
from zoo.manifest import PROJECT
from zoo.spec import CLASSES

from .imaging import FORMATS, MAX_BYTES, MAX_PIXELS, MAX_REQUEST_PIXELS, WHAT_TO_SEND
from .params import ALL, DEFAULT_TOP_K, IMAGE, INCLUDE_INPUT, MAX_BATCH_BYTES, MAX_BATCH_IMAGES, MODEL, RAW_TYPES, TOP_K
from .results import result
from .runtime import Zoo
from .schemas import (AllResults, BatchResults, Error, ModelsInfo, Result, V2InferResponse, V2Live, V2Model,
                      V2ModelConfig, V2ModelReady, V2Ready, V2Server)

TAGS = [PROJECT]
V2_TAGS = ["Open Inference Protocol (KServe V2, Triton)"]
MiB = 1024 * 1024

# ---------------------------------------------------------------------------------------------
# parameters and request bodies, for the zoo being served

# model and top_k may be query parameters or form fields; given in both with different values they
# are refused (400), since neither place can be trusted to be the one the client meant. Said on
# each parameter, each form field and the 400 answer.
TWICE = ("may also be given as the form field of the same name; given in both places, the two values "
         "must be equal, else the answer is 400")
TWICE_FORM = "instead of the query parameter {name}; given in both places, the two values must be equal, else 400"
TWICE_EXAMPLE = "top_k given twice with different values ('2' in the query, '3' in the form); give it once"

HELP = {MODEL: (f"`{AUTO}` (the default) picks a model per image: {RULE['description']}; or a served "
                f"model's name; or `{ALL}` for every model side by side; {TWICE}"),
        TOP_K: f"how many of the most probable classes to list in `top`; {TWICE}",
        INCLUDE_INPUT: ("add `input_png`: the image the model receives (28x28 grey; 40x30 colour for `colour`), as a "
                        "base64 PNG (the service's own preprocessing)")}
BINARY = {"type": "string", "format": "binary"}
# One image file: maxLength is its limit in bytes; x-max-pixels (an OpenAPI extension) in pixels.
IMAGE_FILE = {**BINARY, "maxLength": MAX_BYTES, "x-max-pixels": MAX_PIXELS,
              "description": f"an image file: {', '.join(FORMATS)}, at most {MAX_BYTES // MiB} MiB and "
                             f"{MAX_PIXELS // 1_000_000} megapixels, of any size and colour mode"}


def _options(zoo: Zoo | None) -> dict[str, dict[str, Any]]:
    """The schemas of model, top_k and include_input: the served models' names (and `all`), the
    default model, top_k's range."""
    model: dict[str, Any] = {"type": "string"}
    n_classes = len(CLASSES)
    if zoo is not None:  # None only before the zoo has loaded
        model.update(enum=[AUTO, *zoo.models, ALL], default=AUTO)
        n_classes = min(len(m.classes) for m in zoo.models.values())
    return {MODEL: model,
            TOP_K: {"type": "integer", "minimum": 1, "maximum": n_classes, "default": min(DEFAULT_TOP_K, n_classes)},
            INCLUDE_INPUT: {"type": "boolean", "default": False}}


def _request(description: str, image: dict[str, Any], raw: tuple[str, ...] = ()):
    """A classify route's `openapi_extra`: its query parameters and its body, a multipart form (the
    image field, and model and top_k as optional fields) or a raw body of one of the `raw` types."""
    def extra(zoo: Zoo | None) -> dict[str, Any]:
        options = _options(zoo)
        # No defaults in the form: a form field filled in with its default would contradict the query parameter.
        fields = {name: {**{k: v for k, v in options[name].items() if k != "default"},
                         "description": TWICE_FORM.format(name=name)} for name in (MODEL, TOP_K)}
        form = {"schema": {"type": "object", "required": [IMAGE], "properties": {IMAGE: image, **fields}}}
        return {"parameters": [{"name": name, "in": "query", "required": False, "description": HELP[name],
                                "schema": schema} for name, schema in options.items()],
                "requestBody": {"required": True, "description": description, "content": {
                    "multipart/form-data": form, **{t: {"schema": IMAGE_FILE} for t in raw}}}}

    return extra


classify_request = _request(
    f"one image, as the multipart field `{IMAGE}` (`curl -F {IMAGE}=@photo.png`) or as the raw body with an image "
    "Content-Type (`curl --data-binary @photo.png -H 'Content-Type: image/png'`); the options may also be form "
    "fields, but not with different values in both places",
    IMAGE_FILE, tuple(t + "*" if t.endswith("/") else t for t in RAW_TYPES))
classify_batch_request = _request(
    f"up to {MAX_BATCH_IMAGES} images as repeated multipart fields `{IMAGE}` (`curl -F {IMAGE}=@a.png -F "
    f"{IMAGE}=@b.png`), at most {MAX_BATCH_BYTES // MiB} MiB in all",
    {"type": "array", "items": IMAGE_FILE, "minItems": 1, "maxItems": MAX_BATCH_IMAGES,
     "description": f"1 to {MAX_BATCH_IMAGES} image files"})


# ---------------------------------------------------------------------------------------------
# answers (the shapes are service/schemas.py's; the examples are made by results.result)

_LOGITS = np.array([0.375, -2.125, 1.25, -0.25, 0.875, -4.0, 2.625, -3.5, 0.125, -5.25], dtype=np.float32)
_ONE = result("numfilters", _LOGITS, list(CLASSES), DEFAULT_TOP_K)
_OTHER = result("baseline", _LOGITS[::-1].copy(), list(CLASSES), DEFAULT_TOP_K)
EXAMPLES = {
    "model=auto (the default)": {"value": {**result("photo", _LOGITS, list(CLASSES), DEFAULT_TOP_K),
                                           "chosen_by": AUTO}},
    "one model": {"value": _ONE},
    "model=all": {"value": {"model": ALL, "default": "baseline", "results": [_OTHER, _ONE]}},
}


def _error(description: str, example: str, *more: tuple[str, str], **extra: Any) -> dict[str, Any]:
    """An error answer; with `more` (name, message) pairs, named examples."""
    if not more:
        return {"model": Error, "description": description,
                "content": {"application/json": {"example": {"error": example, **extra}}}}
    examples = {name: {"value": {"error": message}} for name, message in (("a bad upload", example), *more)}
    return {"model": Error, "description": description, "content": {"application/json": {"examples": examples}}}


LOADING = {503: _error("the models are still loading",
                       "the models are still loading; try again shortly (GET /readyz says when)")}
ERRORS = {
    400: _error("missing, empty, truncated or non-image upload, or a bad option (out of range, or "
                f"`{MODEL}` or `{TOP_K}` given in the query and in the form with different values)",
                f"the upload is empty; {WHAT_TO_SEND}", ("an option given twice", TWICE_EXAMPLE)),
    404: _error("unknown model", f"unknown model 'resnet50'; choose one of: {AUTO}, baseline, numfilters, {ALL}",
                models=[AUTO, "baseline", "numfilters", ALL]),
    413: _error(f"over {MAX_BYTES // MiB} MiB per image or {MAX_PIXELS // 1_000_000} megapixels (for a batch: "
                f"over {MAX_BATCH_IMAGES} images, {MAX_BATCH_BYTES // MiB} MiB or "
                f"{MAX_REQUEST_PIXELS // 1_000_000} megapixels decoded in all)",
                f"request body is over the limit of {MAX_BYTES:,} bytes"),
    **LOADING,
}

CLASSIFY = dict(
    summary="Classify one image",
    description=("Decodes the image, applies each chosen model's own preprocessing (from the manifest) "
                 "and answers the model's classes, most probable first. Without `model` (or with "
                 f"`{MODEL}={AUTO}`) the service picks the model for the image and says so "
                 f"(`\"chosen_by\": \"{AUTO}\"`); `{MODEL}={ALL}` answers every model side by side."),
    tags=TAGS, operation_id="classify",
    openapi_extra=classify_request,
    responses={200: {"model": Union[Result, AllResults], "description": "the answer",
                     "content": {"application/json": {"examples": EXAMPLES}}}, **ERRORS},
)
CLASSIFY_BATCH = dict(
    summary="Classify many images in one request",
    description=f"Up to {MAX_BATCH_IMAGES} images; each model runs once on all of them. One result per image, "
                "in order, with its filename.",
    tags=TAGS, operation_id="classify_batch",
    openapi_extra=classify_batch_request,
    responses={200: {"model": BatchResults, "description": "one result per image"}, **ERRORS},
)
MODELS = dict(
    summary="The served models",
    description="Every served model's manifest entry and the onnxruntime provider it runs on.",
    tags=TAGS, operation_id="models",
    responses={200: {"model": ModelsInfo, "description": "the zoo"}, **LOADING},
)


# ---------------------------------------------------------------------------------------------
# the Open Inference Protocol (service/v2.py): KServe V2, Triton's HTTP/REST API

V2_SPEC = ("the Open Inference Protocol's (kserve/open-inference-protocol, "
           "specification/protocol/inference_rest.md)")
V2_IMAGE = [[0.0] * 28] * 28  # one preprocessed 28x28 image (nested as the shape, or flat, both work)
V2_EXAMPLES = {
    "a preprocessed image (JSON)": {"value": {
        "id": "42", "inputs": [{"name": IMAGE, "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [[V2_IMAGE]]}]}},
    "an encoded image (JSON, base64)": {"value": {
        "inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                    "data": ["iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAFklEQVR4nGOMYsANmPDIjUqOSo4wSQB5KQCSuxhJsAAAAABJRU5ErkJggg=="]}],
        "outputs": [{"name": "logits"}]}},
}
V2_TENSOR = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
    "name": {"type": "string", "enum": [IMAGE, "image_bytes"]},
    "datatype": {"type": "string", "enum": ["FP32", "BYTES"]},
    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    "parameters": {"type": "object", "properties": {"binary_data_size": {
        "type": "integer", "description": "with the binary tensor data extension: this input's bytes after the JSON"}}},
    "data": {"type": "array", "description": "FP32: the values, flat in row-major order or nested as the shape; "
                                             "BYTES: one base64 string per element"}}}
V2_REQUEST = {"type": "object", "required": ["inputs"], "properties": {
    "id": {"type": "string", "description": "echoed in the answer"},
    "parameters": {"type": "object", "properties": {"binary_data_output": {
        "type": "boolean", "default": False, "description": "every output as binary data after the JSON"}}},
    "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": V2_TENSOR,
               "description": f"one input: `{IMAGE}`, FP32 [N, 1, 28, 28], preprocessed as the model's manifest "
                              "entry says (GET /models); or `image_bytes`, BYTES [N], one encoded image file per "
                              f"element (as /classify takes it); N from 1 to {MAX_BATCH_IMAGES}"},
    "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "enum": ["logits", "probabilities", "model"]},
        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}}}},
        "description": "the outputs to answer (default: all): logits, probabilities, and for auto model"}}}
V2_BINARY = ("the JSON request followed by the raw little-endian tensor bytes (Triton's binary tensor data "
             "extension, what tritonclient sends): the Inference-Header-Content-Length header gives the JSON's "
             "length, each binary input's parameters.binary_data_size its bytes; a BYTES element is a 4-byte "
             "little-endian length and the bytes. Any Content-Type, or none, is read the same")
V2_INFER_BODY = {"requestBody": {"required": True, "description": f"{V2_SPEC.capitalize()} inference request",
                                 "content": {"application/json": {"schema": V2_REQUEST, "examples": V2_EXAMPLES},
                                             "application/octet-stream": {"schema": {**BINARY,
                                                                                     "description": V2_BINARY}}}}}
V2_ERRORS = {
    400: _error("a bad request: not JSON, or an input of the wrong name, datatype, shape or element count, "
                "or binary sizes that do not add up (the message says what to send)",
                "input 'image' must have shape [-1, 1, 28, 28] (-1: the batch, 1 to 256), got [1, 28, 28]"),
    404: _error("unknown model or version", f"unknown model 'resnet50'; choose one of: {AUTO}, baseline",
                models=[AUTO, "baseline"]),
    413: _error(f"over {MAX_BATCH_IMAGES} images, {MAX_BATCH_BYTES // MiB} MiB in all, or an image file over "
                f"{MAX_BYTES // MiB} MiB or {MAX_PIXELS // 1_000_000} megapixels",
                "a batch of 300 images is over the limit of 256 per request; send them in several requests"),
    **LOADING,
}
V2_SERVER_ROUTES = {  # by path
    "/v2": dict(summary="Server metadata", description=f"Name, version and extensions, as {V2_SPEC} says.",
                tags=V2_TAGS, operation_id="v2_server",
                responses={200: {"model": V2Server, "description": "the server"}}),
    "/v2/health/live": dict(summary="Server live", description="200 while the server answers.", tags=V2_TAGS,
                            operation_id="v2_live", responses={200: {"model": V2Live, "description": "live"}}),
    "/v2/health/ready": dict(summary="Server ready", description="200 exactly when /readyz is: every worker has "
                                                                 "loaded and verified every model; else 503.",
                             tags=V2_TAGS, operation_id="v2_ready",
                             responses={200: {"model": V2Ready, "description": "ready"},
                                        503: {"model": V2Ready, "description": "not ready yet"}}),
}
# the end of a /v2/models/{model_name}[/versions/{model_version}] path -> (operation, summary, description, answers)
V2_MODEL_ROUTES = {
    "": ("model", "Model metadata",
         "Inputs and outputs with datatype and shape (-1: the batch axis), from the manifest.",
         {200: {"model": V2Model, "description": "the model"}, 404: V2_ERRORS[404], **LOADING}),
    "/ready": ("model_ready", "Model ready", "200 when the model can be asked; else 503.",
               {200: {"model": V2ModelReady, "description": "ready"}, 404: V2_ERRORS[404], **LOADING}),
    "/config": ("model_config", "Model configuration (Triton)",
                "The part of Triton's model configuration load tools read: name, platform, max_batch_size, "
                "input, output.",
                {200: {"model": V2ModelConfig, "description": "the configuration"}, 404: V2_ERRORS[404], **LOADING}),
    "/infer": ("infer", "Inference",
               "The model's logits and probabilities for a batch, with the sessions and numbers of /classify (an "
               "encoded image gets /classify's logits); auto also answers the model it picked per image. Each output "
               "as JSON, or as binary after the JSON when asked (`binary_data_output`, or an output's `binary_data`).",
               {200: {"model": V2InferResponse, "description": "the outputs"}, **V2_ERRORS}),
}


def v2_model_route(end: str, versioned: bool) -> dict[str, Any]:
    """The description of a model's route; its path parameters name the served models and version."""
    operation, summary, description, responses = V2_MODEL_ROUTES[end]

    def extra(zoo: Zoo | None) -> dict[str, Any]:
        model: dict[str, Any] = {"type": "string"}
        version: dict[str, Any] = {"type": "string"}
        if zoo is not None:
            model["enum"], version["enum"] = [AUTO, *zoo.models], [zoo.version]
        params = [{"name": "model_name", "in": "path", "required": True, "schema": model,
                   "description": f"a served model, or `{AUTO}` (encoded images only: it picks the model per image)"}]
        if versioned:
            params.append({"name": "model_version", "in": "path", "required": True, "schema": version,
                           "description": "the served version (the store tag's)"})
        return {"parameters": params, **(V2_INFER_BODY if end == "/infer" else {})}

    return dict(summary=summary + (" (a version)" if versioned else ""), description=description, tags=V2_TAGS,
                operation_id=f"v2_{operation}{'_version' if versioned else ''}", openapi_extra=extra,
                responses=responses)
