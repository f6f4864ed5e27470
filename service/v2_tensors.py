"""Open Inference Protocol (KServe V2, Triton's HTTP API) request and answer bodies: tensors in and out.

`parse_request` reads a request, JSON optionally followed by raw tensor bytes (Triton's binary
tensor data extension), into named numpy tensors, checking every size against what the JSON
declares; `encode_answer` writes each output as JSON `data` or as binary after the JSON, as the
request asks. Nothing here knows the models: service/v2.py checks the tensors against their metadata.
Specifications: kserve/open-inference-protocol `specification/protocol/inference_rest.md`; Triton's
`docs/protocol/extension_binary_data.md`.
"""
from __future__ import annotations

import base64
import binascii
import math
import struct
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import orjson

HEADER_LENGTH = "inference-header-content-length"
FP32, BYTES = "FP32", "BYTES"  # the datatypes this service takes and gives
F4 = np.dtype("<f4")          # FP32's bytes: little-endian, as the extension says
HOW_JSON = ('send a JSON object {"inputs": [{"name": ..., "datatype": ..., "shape": [...], "data": [...]}]}, '
            "or that JSON followed by the raw tensor bytes with the Inference-Header-Content-Length header "
            "and each binary input's parameters.binary_data_size (what tritonclient sends)")


class TensorError(ValueError):
    """A request body this service answers with `status` (400, or 413 over a limit) and the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Tensor:
    name: str
    value: np.ndarray | list[bytes]  # FP32: an array of the input's shape; BYTES: one bytes object per element


@dataclass
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: dict[str, bool] | None = None  # asked-for outputs -> binary?, in order; None: every output
    binary_default: bool = False            # binary_data_output: outputs not named are binary


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TensorError(f"{what} must be a JSON object, got {type(value).__name__}; {HOW_JSON}")
    return value


def _flag(parameters: dict[str, Any], name: str, what: str) -> bool | None:
    value = parameters.get(name)
    if value is not None and not isinstance(value, bool):
        raise TensorError(f"{what}: parameter {name} must be true or false, got {value!r}")
    return value


def _shape(value: Any, name: str) -> list[int]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value)):
        raise TensorError(f"input {name!r}: shape must be a non-empty list of non-negative integers, "
                          f"got {value!r}")
    return value


def _count(name: str, shape: list[int], n: int, what: str = "data") -> None:
    """Raise unless `shape` holds the n elements that `what` has."""
    if n != math.prod(shape):
        raise TensorError(f"input {name!r}: shape {shape} holds {math.prod(shape):,} elements but {what} has {n:,}")


def _bytes_elements(raw: bytes, name: str) -> list[bytes]:
    """The extension's BYTES tensor: each element a 4-byte little-endian length, then that many bytes."""
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise TensorError(f"input {name!r}: its binary data ends inside an element's 4-byte length")
        (n,) = struct.unpack_from("<I", raw, pos)
        if pos + 4 + n > len(raw):
            raise TensorError(f"input {name!r}: element {len(out)} says {n:,} bytes but only "
                              f"{len(raw) - pos - 4:,} follow (a truncated body?)")
        out.append(raw[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out


def _json_numbers(data: Any, name: str, shape: list[int]) -> np.ndarray:
    """`data` as the spec allows it: flat in row-major order, or nested as `shape`."""
    if not isinstance(data, list):
        raise TensorError(f"input {name!r}: data must be a list of numbers, got {type(data).__name__}")
    try:
        array = np.array(data)
    except ValueError:  # ragged nesting
        raise TensorError(f"input {name!r}: data is nested unevenly; send it flat in row-major order, "
                          f"or nested exactly as shape {shape}") from None
    if array.dtype.kind not in "iuf":
        raise TensorError(f"input {name!r}: data must hold numbers only (no strings, booleans or nulls)")
    if array.ndim > 1 and list(array.shape) != shape:
        raise TensorError(f"input {name!r}: data is nested as {list(array.shape)} but shape says {shape}; "
                          "nest it as the shape, or send it flat")
    _count(name, shape, array.size)
    return array.astype(F4).reshape(shape)


def _json_bytes(data: Any, name: str, shape: list[int]) -> list[bytes]:
    """A BYTES tensor in JSON: one base64 string per element (a file is not text JSON could carry)."""
    if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
        raise TensorError(f"input {name!r}: BYTES data in JSON must be a flat list of base64 strings, one "
                          "per element; or send the bytes as binary data (tritonclient's binary_data=True)")
    _count(name, shape, len(data))
    try:
        return [base64.b64decode(s, validate=True) for s in data]
    except (binascii.Error, ValueError):
        raise TensorError(f"input {name!r}: an element is not valid base64; in JSON, encode each file "
                          "with base64, or send the bytes as binary data") from None


def parse_request(body: bytes, header_length: str | None,
                  check: Callable[[str, str, list[int]], None]) -> InferRequest:
    """An inference request body (JSON, then any binary tensor data) -> InferRequest. `check(name,
    datatype, shape)` vets each input before its data is read, so a wrong name, datatype or shape is
    reported as such rather than as data that does not fit it. Raises TensorError."""
    if header_length is None:
        head, rest = body, b""
    else:
        if not header_length.strip().isdigit():
            raise TensorError(f"Inference-Header-Content-Length must be a byte count, got {header_length!r}")
        n = int(header_length)
        if n > len(body):
            raise TensorError(f"Inference-Header-Content-Length says the JSON is {n:,} bytes but the body is "
                              f"{len(body):,} (a truncated body?)")
        head, rest = body[:n], body[n:]
    if not head.strip():
        raise TensorError(f"the request body is empty; {HOW_JSON}")
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as e:
        raise TensorError(f"the request is not valid JSON ({e}); {HOW_JSON}") from None
    doc = _object(doc, "the request")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise TensorError(f"id must be a string, got {request_id!r}")
    parameters = _object(doc.get("parameters"), "parameters")
    binary_default = bool(_flag(parameters, "binary_data_output", "the request"))
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise TensorError(f"the request has no inputs; {HOW_JSON}")

    tensors, pos = [], 0
    for i, spec in enumerate(inputs):
        spec = _object(spec, f"inputs[{i}]")
        name, datatype = spec.get("name"), spec.get("datatype")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise TensorError(f"inputs[{i}] needs a string name and datatype; {HOW_JSON}")
        shape = _shape(spec.get("shape"), name)
        check(name, datatype, shape)  # so the datatype is FP32 or BYTES
        size = _object(spec.get("parameters"), f"input {name!r} parameters").get("binary_data_size")
        if size is None:
            if "data" not in spec:
                raise TensorError(f"input {name!r} has neither data nor parameters.binary_data_size")
            value = (_json_bytes(spec["data"], name, shape) if datatype == BYTES
                     else _json_numbers(spec["data"], name, shape))
        else:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise TensorError(f"input {name!r}: binary_data_size must be a byte count, got {size!r}")
            if pos + size > len(rest):
                raise TensorError(f"input {name!r}: binary_data_size {size:,} goes past the {len(rest):,} "
                                  "bytes after the JSON (send Inference-Header-Content-Length with the "
                                  "JSON's length, and every binary input's bytes, in input order)")
            raw = rest[pos:pos + size]
            pos += size
            if datatype == BYTES:
                value = _bytes_elements(raw, name)
                _count(name, shape, len(value), "its binary data")
            else:
                want = math.prod(shape) * F4.itemsize
                if size != want:
                    raise TensorError(f"input {name!r}: shape {shape} of {datatype} is {want:,} bytes but "
                                      f"binary_data_size is {size:,}")
                value = np.frombuffer(raw, F4).reshape(shape)
        tensors.append(Tensor(name, value))
    if pos != len(rest):
        raise TensorError(f"{len(rest) - pos:,} bytes after the JSON belong to no input (the binary inputs' "
                          f"binary_data_size add up to {pos:,}; Inference-Header-Content-Length must be "
                          "the JSON's length)")

    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise TensorError(f"outputs must be a list of {{\"name\": ...}}, got {doc['outputs']!r}")
        outputs = {}
        for i, spec in enumerate(doc["outputs"]):
            spec = _object(spec, f"outputs[{i}]")
            if not isinstance(spec.get("name"), str):
                raise TensorError(f"outputs[{i}] needs a string name")
            flag = _flag(_object(spec.get("parameters"), f"output {spec['name']!r} parameters"),
                         "binary_data", f"output {spec['name']!r}")
            outputs[spec["name"]] = binary_default if flag is None else flag
    return InferRequest(request_id, tensors, outputs, binary_default)


def encode_answer(model: str, version: str, request: InferRequest,
                  outputs: dict[str, np.ndarray | list[bytes]]) -> tuple[bytes, dict[str, str]]:
    """The inference answer's body and headers: each output (FP32: an array; BYTES: a list of bytes)
    as JSON data, or binary after the JSON."""
    described, tail = [], []
    for name, value in outputs.items():
        strings = isinstance(value, list)
        one: dict[str, Any] = {"name": name, "datatype": BYTES if strings else FP32,
                               "shape": [len(value)] if strings else list(value.shape)}
        if (request.outputs or {}).get(name, request.binary_default):  # as binary data after the JSON
            raw = (b"".join(struct.pack("<I", len(v)) + v for v in value) if strings
                   else np.ascontiguousarray(value, F4).tobytes())
            one["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        elif strings:
            one["data"] = [v.decode("utf-8") for v in value]
        else:
            # float32 -> Python float is exact, and orjson writes each so it reads back as the same float.
            one["data"] = value.ravel().tolist()
        described.append(one)
    answer: dict[str, Any] = {"model_name": model, "model_version": version}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = described
    head = orjson.dumps(answer)
    if not tail:
        return head, {"content-type": "application/json"}
    return head + b"".join(tail), {"content-type": "application/octet-stream",
                                   "inference-header-content-length": str(len(head))}
