"""The Open Inference Protocol (KServe V2, Triton's HTTP/REST API) under /v2 on the zoo's own app:
the same BentoML service, port, workers, sessions and numbers as POST /classify, so `tritonclient`,
KServe's clients and V2 gateways call the zoo unchanged. docs/serving.md lists the routes, the two
inputs (`image`, preprocessed FP32; `image_bytes`, encoded files classified by /classify's own code,
`routes.classify_images`) and the outputs; the tensors in and out are service/v2_tensors.py's.
Specification: kserve/open-inference-protocol `specification/protocol/inference_rest.md`.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from zoo.auto import AUTO
from zoo.manifest import PROJECT, installed_version

from . import openapi
from .imaging import open_all
from .inference import UnknownModel, answering
from .params import IMAGE, MAX_BATCH_BYTES, MAX_BATCH_IMAGES
from .results import JSON, softmax
from .routes import INLINE_PIXELS, Options, RequestError, classify_images, in_thread, read_body, served_zoo
from .runtime import Zoo
from .v2_tensors import BYTES, FP32, HEADER_LENGTH, HOW_JSON, TensorError, encode_answer, parse_request

IMAGE_BYTES = "image_bytes"        # the BYTES input: one encoded image file per element
LOGITS, PROBABILITIES, CHOSEN = "logits", "probabilities", "model"   # the outputs (`model`: auto's only)
PLATFORM = "onnx_onnxv1"           # the spec's name for an ONNX model
AUTO_PLATFORM = "ensemble"         # Triton's name for a model made of others: auto picks one per image
CONFIG_PLATFORM = "onnxruntime_onnx"  # Triton's model configuration names the ONNX backend so
EXTENSIONS = ["binary_tensor_data", "model_configuration"]  # Triton's names for what /v2 adds to the spec
TRITON_TYPES = {FP32: "TYPE_FP32", BYTES: "TYPE_STRING"}
HOW_INPUT = (f"send one input: '{IMAGE}', FP32 of the model's shape ([N, 1, 28, 28]; [N, 3, 40, 30] for "
             f"colour), preprocessed as GET /v2/models/<name> and GET /models say; or '{IMAGE_BYTES}', BYTES "
             f"of shape [N], one PNG/JPEG/... file per element; N from 1 to {MAX_BATCH_IMAGES}")


def _dims(shape: list[Any]) -> list[int]:
    """A manifest shape (['batch', 1, 28, 28]) in V2's words: -1 for a named, variable axis."""
    return [d if isinstance(d, int) else -1 for d in shape]


def _tensor(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape}


def metadata(zoo: Zoo, name: str) -> dict[str, Any]:
    """GET /v2/models/{name}: inputs and outputs from the manifest (auto: those of the models it picks)."""
    names, auto = answering(zoo, name)
    first = zoo.models[names[0]].entry
    n_classes = _dims(first["output"]["shape"])[1:]
    inputs = [_tensor(IMAGE_BYTES, BYTES, [-1])]
    outputs = [_tensor(LOGITS, FP32, [-1, *n_classes]), _tensor(PROBABILITIES, FP32, [-1, *n_classes])]
    if auto:
        outputs.append(_tensor(CHOSEN, BYTES, [-1]))
    else:
        inputs.insert(0, _tensor(first["input"]["name"], FP32, _dims(first["input"]["shape"])))
    return {"name": name, "versions": [zoo.version], "platform": AUTO_PLATFORM if auto else PLATFORM,
            "inputs": inputs, "outputs": outputs}


def config(zoo: Zoo, name: str) -> dict[str, Any]:
    """GET /v2/models/{name}/config: the part of Triton's model configuration load tools read. The
    batch axis is max_batch_size's, so `dims` leave it out; a BYTES input of shape [N] is dims [1]
    reshaped to [] (Triton's way to say one element per batch item)."""
    meta = metadata(zoo, name)

    def tensor(t: dict[str, Any]) -> dict[str, Any]:
        dims = t["shape"][1:]
        out = {"name": t["name"], "data_type": TRITON_TYPES[t["datatype"]], "dims": dims or [1]}
        return out if dims else {**out, "reshape": {"shape": []}}

    return {"name": name, "platform": AUTO_PLATFORM if meta["platform"] == AUTO_PLATFORM else CONFIG_PLATFORM,
            "max_batch_size": MAX_BATCH_IMAGES, "input": [tensor(t) for t in meta["inputs"]],
            "output": [tensor(t) for t in meta["outputs"]]}


def _model(zoo: Zoo, request: Request) -> str:
    """The V2 model named in the path (the manifest's models and auto), at the served version if named."""
    name = request.path_params["model_name"]
    valid = [AUTO, *zoo.models]
    if name not in valid:
        raise RequestError(404, str(UnknownModel(name, valid)), models=valid)
    version = request.path_params.get("model_version")
    if version is not None and version != zoo.version:
        raise RequestError(404, f"model {name!r} has no version {version!r}; the served version is "
                                f"{zoo.version!r} (or leave /versions/... out)")
    return name


async def server_metadata(request: Request) -> JSON:
    return JSON({"name": PROJECT, "version": installed_version(), "extensions": EXTENSIONS})


async def server_live(request: Request) -> JSON:
    return JSON({"live": True})


async def server_ready(request: Request) -> JSON:
    zoo = getattr(request.app.state, "zoo", None)  # ready as /readyz is (`FashionZoo.__is_ready__`)
    ready = zoo is not None and zoo.ready
    return JSON({"ready": ready}, status_code=200 if ready else 503)


async def model_metadata(request: Request) -> JSON:
    zoo = served_zoo(request)
    return JSON(metadata(zoo, _model(zoo, request)))


async def model_config(request: Request) -> JSON:
    zoo = served_zoo(request)
    return JSON(config(zoo, _model(zoo, request)))


async def model_ready(request: Request) -> JSON:
    try:
        zoo = served_zoo(request)  # 503 while the models load: answered as "not ready"
    except RequestError:
        return JSON({"name": request.path_params["model_name"], "ready": False}, status_code=503)
    return JSON({"name": _model(zoo, request), "ready": True})


def _input_check(meta: dict[str, Any]) -> Callable[[str, str, list[int]], None]:
    """Vets a request input against the model's metadata: its name, datatype and shape, and the batch
    limit (v2_tensors.parse_request calls it before reading the input's data)."""
    accepted = {t["name"]: t for t in meta["inputs"]}

    def check(name: str, datatype: str, shape: list[int]) -> None:
        if name not in accepted:
            only = (" (auto looks at each image to pick its model, so it takes encoded images only)"
                    if meta["name"] == AUTO else "")
            raise TensorError(f"model {meta['name']!r} has no input {name!r}; it takes "
                              f"{' or '.join(map(repr, accepted))}{only}; {HOW_INPUT}")
        want = accepted[name]
        if datatype != want["datatype"]:
            raise TensorError(f"input {name!r} must be {want['datatype']}, got {datatype}; {HOW_INPUT}")
        if len(shape) != len(want["shape"]) or any(w not in (-1, s) for w, s in zip(want["shape"], shape)):
            raise TensorError(f"input {name!r} must have shape {want['shape']} (-1: the batch, 1 to "
                              f"{MAX_BATCH_IMAGES}), got {shape}")
        if shape[0] > MAX_BATCH_IMAGES:
            raise TensorError(f"a batch of {shape[0]} images is over the limit of {MAX_BATCH_IMAGES} per "
                              "request; send them in several requests", 413)
        if shape[0] == 0:
            raise TensorError(f"input {name!r} has no images (shape {shape}); {HOW_INPUT}")

    return check


def _classify_files(zoo: Zoo, name: str, files: list[bytes]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Encoded images -> (per image the model that answered, logits, probabilities), through
    /classify/batch's own decoding, preprocessing and classification."""
    names, auto = answering(zoo, name)
    # every header first: a request over the pixel limit is refused before decoding
    images = open_all([(f"{IMAGE_BYTES}[{i}]", data) for i, data in enumerate(files)])
    results = classify_images(zoo, Options(names, top_k=1, auto=auto), images)
    logits = np.array([r["logits"] for r in results], np.float32)  # float32 values, exactly
    classes = [zoo.models[r["model"]].classes for r in results]
    probabilities = np.array([[r["probabilities"][c] for c in cs] for r, cs in zip(results, classes)], np.float32)
    return [r["model"] for r in results], logits, probabilities


def _classify_tensor(zoo: Zoo, name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = zoo.logits(name, x)
    return logits, softmax(logits).astype(np.float32)


async def infer(request: Request) -> Response:
    """POST /v2/models/{name}[/versions/{v}]/infer."""
    zoo = served_zoo(request)
    name = _model(zoo, request)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding != "identity":
        raise RequestError(400, f"Content-Encoding {encoding} is not read here; send the body uncompressed")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data" or media_type.startswith("image/"):
        raise RequestError(400, f"this route takes an inference request, not {media_type}; for an image "
                                f"file use POST /classify, or send the file as the BYTES input "
                                f"'{IMAGE_BYTES}'; {HOW_JSON}")
    body = await read_body(request, MAX_BATCH_BYTES)
    meta = metadata(zoo, name)
    parsed = parse_request(body, request.headers.get(HEADER_LENGTH), _input_check(meta))
    if len(parsed.inputs) != 1:
        raise RequestError(400, f"got {len(parsed.inputs)} inputs "
                                f"({', '.join(t.name for t in parsed.inputs)}); {HOW_INPUT}")
    (tensor,) = parsed.inputs
    produced = [t["name"] for t in meta["outputs"]]
    unknown = [o for o in parsed.outputs or () if o not in produced]
    if unknown:
        raise RequestError(400, f"model {name!r} has no output {', '.join(map(repr, unknown))}; its outputs "
                                f"are {', '.join(map(repr, produced))} (or leave outputs out for all)")
    if tensor.name == IMAGE_BYTES:
        chosen, logits, probabilities = await in_thread(_classify_files, zoo, name, tensor.value)
    else:
        x = tensor.value
        if not np.isfinite(x).all():
            raise RequestError(400, f"input {tensor.name!r} holds {int((~np.isfinite(x)).sum())} NaN or "
                                    "infinite values; send the preprocessed image's finite values")
        if x.size <= INLINE_PIXELS:  # as /classify: a small batch costs less than a thread hand-off
            logits, probabilities = _classify_tensor(zoo, name, x)
        else:
            logits, probabilities = await in_thread(_classify_tensor, zoo, name, x)
        chosen = [name] * len(x)
    values = {LOGITS: logits, PROBABILITIES: probabilities, CHOSEN: [n.encode() for n in chosen]}
    wanted = list(parsed.outputs) if parsed.outputs else produced
    content, headers = encode_answer(name, zoo.version, parsed, {o: values[o] for o in wanted})
    return Response(content, headers=headers)


def add_routes(app: FastAPI) -> None:
    """Add the V2 routes to the zoo's app (service/routes.py's), each with its OpenAPI description."""
    for path, endpoint in (("/v2", server_metadata), ("/v2/health/live", server_live),
                           ("/v2/health/ready", server_ready)):
        app.add_api_route(path, endpoint, methods=["GET"], **openapi.V2_SERVER_ROUTES[path])
    model = "/v2/models/{model_name}"
    for base, versioned in ((model, False), (model + "/versions/{model_version}", True)):
        for end, endpoint, method in (("", model_metadata, "GET"), ("/ready", model_ready, "GET"),
                                      ("/config", model_config, "GET"), ("/infer", infer, "POST")):
            app.add_api_route(base + end, endpoint, methods=[method], **openapi.v2_model_route(end, versioned))
