"""The JSON shapes the service answers with, as typed dicts: one definition for the OpenAPI document
(service/openapi.py turns them into its schemas) and for the Python client's return types
(service/client.py). The answers themselves are built by `results.result` and
`routes.classify_images`; tests/test_openapi.py checks real answers against these shapes."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field
from typing_extensions import NotRequired, TypedDict  # pydantic needs this TypedDict before Python 3.12

_EXACT = ConfigDict(extra="forbid")  # documented as additionalProperties: false


class TopClass(TypedDict):
    __pydantic_config__ = _EXACT
    label: str
    class_id: int
    probability: float


class Result(TypedDict):
    """One model's answer for one image."""
    __pydantic_config__ = _EXACT
    model: Annotated[str, Field(description="the model that answered")]
    label: Annotated[str, Field(description="the most probable class")]
    class_id: Annotated[int, Field(description="its index in the model's classes")]
    confidence: Annotated[float, Field(description="its probability")]
    top: Annotated[list[TopClass], Field(description="the top_k most probable classes, most probable first")]
    probabilities: Annotated[dict[str, float], Field(description="every class's probability, by label")]
    logits: Annotated[list[float], Field(description="the model's raw output, in class order")]
    input_png: NotRequired[Annotated[str, Field(description="with include_input: the model's input image "
                                                            "(28x28 grey, or 40x30 colour), a base64 PNG")]]
    chosen_by: NotRequired[Annotated[Literal["auto"], Field(description="with model=auto (the default): the "
                                                                        "model was picked for this image")]]


class AllResults(TypedDict):
    """model=all: every served model's answer for one image."""
    __pydantic_config__ = _EXACT
    model: Literal["all"]
    default: Annotated[str, Field(description="the zoo's default model")]
    results: list[Result]


class BatchResult(Result):
    filename: str


class BatchAllResults(AllResults):
    filename: str


class BatchResults(TypedDict):
    __pydantic_config__ = _EXACT
    model: Annotated[str, Field(description="the model asked for: auto, a model's name, or all")]
    count: int
    results: Annotated[list[Union[BatchResult, BatchAllResults]], Field(description="one per image, in order")]


class ModelsInfo(TypedDict):
    """The served zoo: each model's manifest entry (metrics, parameters, parity, preprocessing,
    sha256, ...) and the onnxruntime provider it runs on."""
    store_tag: str
    default: Annotated[str, Field(description="what a request that names no model gets: auto")]
    auto: Annotated[dict[str, Any], Field(description="model=auto: its rule, and the model for each kind "
                                                      "of image (fashion-mnist, photo)")]
    created: Union[str, None]
    opset: Union[int, None]
    device_reason: Union[str, None]
    runtime: Any
    models: dict[str, dict[str, Any]]


class Error(TypedDict):
    error: Annotated[str, Field(description="what is wrong and what to send instead")]
    models: NotRequired[Annotated[list[str], Field(description="with 404 for an unknown model: the valid names")]]


# ---------------------------------------------------------------------------------------------
# the Open Inference Protocol (service/v2.py), as its specification words them

class V2Server(TypedDict):
    name: str
    version: str
    extensions: Annotated[list[str], Field(description="Triton's names for what the server adds to the "
                                                       "protocol: binary_tensor_data, model_configuration")]


class V2Live(TypedDict):
    live: bool


class V2Ready(TypedDict):
    ready: bool


class V2ModelReady(TypedDict):
    name: str
    ready: bool


class V2TensorMetadata(TypedDict):
    name: str
    datatype: Annotated[str, Field(description="FP32, or BYTES (one encoded image file, or one model name, "
                                               "per element)")]
    shape: Annotated[list[int], Field(description="-1: any size (the batch)")]


class V2Model(TypedDict):
    name: str
    versions: Annotated[list[str], Field(description="the served version: the store tag's")]
    platform: Annotated[str, Field(description="onnx_onnxv1; auto: ensemble (it picks one of the ONNX "
                                               "models per image)")]
    inputs: Annotated[list[V2TensorMetadata], Field(description="send one of them per request")]
    outputs: list[V2TensorMetadata]


class V2ConfigTensor(TypedDict):
    name: str
    data_type: str
    dims: list[int]
    reshape: NotRequired[dict[str, list[int]]]


class V2ModelConfig(TypedDict):
    """The part of Triton's model configuration that load tools read."""
    name: str
    platform: str
    max_batch_size: int
    input: list[V2ConfigTensor]
    output: list[V2ConfigTensor]


class V2OutputTensor(TypedDict):
    name: str
    datatype: str
    shape: list[int]
    data: NotRequired[Annotated[list[Union[float, str]], Field(description="the values, flat in row-major "
                                                                           "order (as JSON)")]]
    parameters: NotRequired[Annotated[dict[str, int], Field(description="binary_data_size: the output's "
                                                                        "bytes after the JSON (as binary)")]]


class V2InferResponse(TypedDict):
    model_name: str
    model_version: str
    id: NotRequired[Annotated[str, Field(description="the request's id, when it had one")]]
    outputs: list[V2OutputTensor]
