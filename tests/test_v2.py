"""The Open Inference Protocol (KServe V2, Triton's HTTP/REST API) on the real served zoo, called with
Triton's own client (`tritonclient[http]`) and plain HTTP: health, metadata, configuration, inference
on every model with JSON and binary tensors, encoded images equal to POST /classify, and every bad
input a 4xx JSON error after which the server still answers.

KServe's own client (`kserve.InferenceRESTClient`) calls the same server in tests/test_kserve_client.py,
from a venv of its own: the `kserve` package needs pandas 2, the project pins pandas 3."""
from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.test_openapi import conforms
from tests.images import bomb_png, png_of, uploads
from tests.test_service import fmnist_test, manifest, sessions  # noqa: F401
from zoo.registry import list_models

MODELS = list_models("fashion-mnist")   # what a Fashion-MNIST-only export holds
V2_MODELS = ["auto", *MODELS]
OUTPUTS = ("logits", "probabilities")
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def triton_client(server):
    """tritonclient's HTTP client for `server` (it takes host:port, no scheme)."""
    c = triton.InferenceServerClient(server.url.split("://", 1)[1], network_timeout=120)
    yield c
    c.close()


@pytest.fixture(scope="module")
def version(client) -> str:
    return client.get("/v2/models/auto").json()["versions"][0]


def tensor_input(x: np.ndarray, binary: bool) -> triton.InferInput:
    i = triton.InferInput("image", list(x.shape), "FP32")
    i.set_data_from_numpy(x.astype(np.float32), binary_data=binary)
    return i


def files_input(files: list[bytes], binary: bool) -> triton.InferInput:
    """An `image_bytes` input; in JSON each file goes as base64 (JSON carries text, not bytes)."""
    i = triton.InferInput("image_bytes", [len(files)], "BYTES")
    values = files if binary else [base64.b64encode(f) for f in files]
    i.set_data_from_numpy(np.array(values, dtype=np.object_), binary_data=binary)
    return i


def classify(client, data: bytes, model: str) -> dict:
    r = client.post("/classify", params={"model": model}, files={"image": ("x", data, "application/octet-stream")})
    assert r.status_code == 200, r.text
    return r.json()


def infer_json(client, model: str, inputs: list[dict], **body) -> dict:
    r = client.post(f"/v2/models/{model}/infer", content=json.dumps({"inputs": inputs, **body}))
    assert r.status_code == 200, r.text
    return r.json()


def image_input(x: np.ndarray, nested: bool = False) -> dict:
    return {"name": "image", "datatype": "FP32", "shape": list(x.shape),
            "data": x.tolist() if nested else x.ravel().tolist()}


def assert_serves(client, fmnist_test) -> None:
    """A good V2 request is answered normally (after a bad one)."""
    x = fmnist_test[1][:1]
    out = infer_json(client, MODELS[0], [image_input(x)])["outputs"]
    assert out[0]["name"] == "logits" and out[0]["shape"] == [1, 10]


# ---------------------------------------------------------------------------------------------
# health and metadata

def test_server_health_and_metadata(triton_client, client):
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert client.get("/readyz").status_code == client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/health/live").json() == {"live": True}
    meta = triton_client.get_server_metadata()
    assert meta["name"] == "fashion-zoo" and meta["version"]
    assert {"binary_tensor_data", "model_configuration"} <= set(meta["extensions"])


@pytest.mark.parametrize("name", V2_MODELS)
def test_model_metadata_and_config(triton_client, manifest, version, name):
    assert triton_client.is_model_ready(name) and triton_client.is_model_ready(name, version)
    meta = triton_client.get_model_metadata(name)
    assert meta == triton_client.get_model_metadata(name, version)
    assert meta["name"] == name and meta["versions"] == [version]
    inputs = {t["name"]: t for t in meta["inputs"]}
    outputs = {t["name"]: t for t in meta["outputs"]}
    assert inputs["image_bytes"] == {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]}
    for output in OUTPUTS:
        assert outputs[output] == {"name": output, "datatype": "FP32", "shape": [-1, 10]}
    if name == "auto":  # it looks at each image to pick a model: encoded images only
        assert list(inputs) == ["image_bytes"] and meta["platform"] == "ensemble"
        assert outputs["model"] == {"name": "model", "datatype": "BYTES", "shape": [-1]}
    else:
        entry = manifest["models"][name]
        assert meta["platform"] == "onnx_onnxv1" and "model" not in outputs
        assert inputs[entry["input"]["name"]] == {"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}
    config = triton_client.get_model_config(name)
    assert config["name"] == name and config["max_batch_size"] == 256
    assert [t["name"] for t in config["input"]] == list(inputs)
    assert [t["name"] for t in config["output"]] == list(outputs)


# ---------------------------------------------------------------------------------------------
# inference

@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("name", MODELS)
def test_tensor_logits_equal_local_onnxruntime(triton_client, sessions, fmnist_test, name, binary):
    """A batch of preprocessed test images gets the logits the ONNX file gives on the same tensor
    in a local onnxruntime session, as JSON and as binary tensors (tritonclient's default)."""
    x = fmnist_test[1][:8]
    want = sessions[name].run(None, {"image": x})[0]
    outputs = [triton.InferRequestedOutput(o, binary_data=binary) for o in OUTPUTS]
    r = triton_client.infer(name, [tensor_input(x, binary)], outputs=outputs, request_id=f"req-{name}")
    assert r.get_response()["id"] == f"req-{name}" and r.get_response()["model_name"] == name
    logits, probabilities = r.as_numpy("logits"), r.as_numpy("probabilities")
    assert logits.dtype == np.float32 and logits.shape == (8, 10)
    np.testing.assert_allclose(logits, want, rtol=0, atol=1e-6)
    z = np.exp(want.astype(np.float64) - want.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probabilities, z / z.sum(axis=1, keepdims=True), rtol=0, atol=1e-6)
    # No outputs named: tritonclient asks for all of them as binary (binary_data_output).
    r = triton_client.infer(name, [tensor_input(x, binary)])
    np.testing.assert_allclose(r.as_numpy("logits"), want, rtol=0, atol=1e-6)
    assert r.as_numpy("probabilities").shape == (8, 10)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("name", V2_MODELS)
def test_encoded_images_get_the_logits_of_classify(triton_client, client, fmnist_test, name, binary):
    """Real PNG and JPEG files as BYTES elements: decoded and preprocessed by the service's own code,
    so each gets what POST /classify answers for the same file (auto: the same model, too)."""
    files = [png_of(fmnist_test[0][0]), png_of(fmnist_test[0][1]), uploads()["photo-jpeg-on-white"],
             uploads()["grayscale-jpeg"], uploads()["rgba-png"]]
    outputs = [triton.InferRequestedOutput(o, binary_data=binary) for o in OUTPUTS]
    if name == "auto":
        outputs.append(triton.InferRequestedOutput("model", binary_data=binary))
    r = triton_client.infer(name, [files_input(files, binary)], outputs=outputs)
    logits = r.as_numpy("logits")
    for i, data in enumerate(files):
        answer = classify(client, data, name)
        np.testing.assert_allclose(logits[i], answer["logits"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(r.as_numpy("probabilities")[i], list(answer["probabilities"].values()),
                                   rtol=0, atol=1e-6)
        if name == "auto":
            chosen = r.as_numpy("model")[i]
            assert (chosen.decode() if isinstance(chosen, bytes) else chosen) == answer["model"]


def test_json_without_content_type_flat_or_nested(client, sessions, fmnist_test, version):
    """tritonclient sends no Content-Type: a JSON body without one is read; `data` may be flat or
    nested as the shape; the versioned path is the same model; the request id comes back."""
    x = fmnist_test[1][:3]
    want = sessions[MODELS[0]].run(None, {"image": x})[0]
    for nested in (False, True):
        r = client.post(f"/v2/models/{MODELS[0]}/versions/{version}/infer",
                        content=json.dumps({"id": "7", "inputs": [image_input(x, nested)]}))
        assert "content-type" not in r.request.headers and r.status_code == 200, r.text
        body = r.json()
        assert body["id"] == "7" and body["model_name"] == MODELS[0] and body["model_version"] == version
        logits = next(o for o in body["outputs"] if o["name"] == "logits")
        assert logits["shape"] == [3, 10] and logits["datatype"] == "FP32"
        np.testing.assert_allclose(np.array(logits["data"], np.float32).reshape(3, 10), want, rtol=0, atol=1e-6)


def test_binary_answer_layout(client, fmnist_test):
    """The answer's binary outputs follow its JSON in output order, each binary_data_size long;
    an output's own binary_data overrides the request's binary_data_output."""
    x = fmnist_test[1][:2]
    r = client.post(f"/v2/models/{MODELS[0]}/infer", content=json.dumps({
        "inputs": [image_input(x)], "parameters": {"binary_data_output": True},
        "outputs": [{"name": "probabilities"}, {"name": "logits", "parameters": {"binary_data": False}}]}))
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    head = json.loads(r.content[:n])
    probabilities, logits = head["outputs"]
    assert probabilities["parameters"]["binary_data_size"] == 2 * 10 * 4 == len(r.content) - n
    assert "data" in logits and "parameters" not in logits
    p = np.frombuffer(r.content[n:], "<f4").reshape(2, 10)
    assert np.allclose(p.sum(axis=1), 1, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# bad input: a 4xx JSON error saying what to send, and the server keeps serving

def _body(inputs=None, **more) -> bytes:
    return json.dumps({"inputs": inputs if inputs is not None else [image_input(np.zeros((1, 1, 28, 28)))],
                       **more}).encode()


def _binary(meta: dict, raw: bytes, header_length: int | None = None) -> tuple[bytes, dict]:
    """A binary tensor request: the JSON, then `raw`."""
    head = json.dumps({"inputs": [meta]}).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head) if header_length is None else header_length)}


def _fp32(shape, size) -> dict:
    return {"name": "image", "datatype": "FP32", "shape": shape, "parameters": {"binary_data_size": size}}


_ONE = np.zeros((1, 1, 28, 28), np.float32).tobytes()
_PNG = uploads()["one-pixel-png"]
_BYTES_ONE = struct.pack("<I", len(_PNG)) + _PNG
BAD = {
    # name: (model, body, headers, status, words the error must contain)
    "unknown-model": ("resnet50", _body(), {}, 404, "unknown model 'resnet50'"),
    "all-is-no-v2-model": ("all", _body(), {}, 404, "unknown model"),
    "not-json": (None, b"{inputs: nope", {}, 400, "not valid JSON"),
    "empty-body": (None, b"", {}, 400, "empty"),
    "json-array": (None, b"[1, 2]", {}, 400, "JSON object"),
    "multipart-form": (None, b"--x\r\n\r\n", {"Content-Type": "multipart/form-data; boundary=x"}, 400, "send"),
    "no-inputs": (None, _body([]), {}, 400, "no inputs"),
    "two-inputs": (None, _body([image_input(np.zeros((1, 1, 28, 28)))] * 2), {}, 400, "one input"),
    "wrong-input-name": (None, _body([{**image_input(np.zeros((1, 1, 28, 28))), "name": "x"}]), {}, 400,
                         "no input 'x'"),
    "wrong-datatype": (None, _body([{**image_input(np.zeros((1, 1, 28, 28))), "datatype": "FP64"}]), {}, 400,
                       "FP64"),
    "bytes-datatype-for-image": (None, _body([{**image_input(np.zeros((1, 1, 28, 28))), "datatype": "BYTES"}]),
                                 {}, 400, "must be FP32"),
    "wrong-rank": (None, _body([image_input(np.zeros((1, 28, 28)))]), {}, 400, "must have shape"),
    "wrong-size": (None, _body([image_input(np.zeros((1, 1, 27, 27)))]), {}, 400, "must have shape"),
    "no-image": (None, _body([image_input(np.zeros((0, 1, 28, 28)))]), {}, 400, "no images"),
    "element-count": (None, _body([{**image_input(np.zeros((1, 1, 28, 28))), "shape": [2, 1, 28, 28]}]), {}, 400,
                      "elements"),
    "nested-wrong": (None, _body([{**image_input(np.zeros((1, 1, 28, 28)), nested=True), "shape": [2, 1, 28, 28]}]),
                     {}, 400, "nested"),
    "strings-in-data": (None, _body([{**image_input(np.zeros((1, 1, 2, 2))), "shape": [1, 1, 28, 28],
                                      "data": ["0"] * 784}]), {}, 400, "numbers only"),
    "nulls-in-data": (None, _body([{**image_input(np.zeros((1, 1, 2, 2))), "shape": [1, 1, 28, 28],
                                    "data": [None] * 784}]), {}, 400, "numbers only"),
    "no-data": (None, _body([{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28]}]), {}, 400, "neither"),
    "bad-shape": (None, _body([{**image_input(np.zeros((1, 1, 28, 28))), "shape": [1, -1, 28, 28]}]), {}, 400,
                  "non-negative integers"),
    "id-not-string": (None, _body(id=42), {}, 400, "id must be a string"),
    "unknown-output": (None, _body(outputs=[{"name": "softmax"}]), {}, 400, "no output 'softmax'"),
    "binary-flag-not-bool": (None, _body(parameters={"binary_data_output": "yes"}), {}, 400, "true or false"),
    "infinite-values": (None, *_binary(_fp32([1, 1, 28, 28], len(_ONE)),
                                       np.full((1, 1, 28, 28), np.inf, np.float32).tobytes()), 400, "infinite"),
    "auto-takes-no-tensor": ("auto", _body(), {}, 400, "encoded images only"),
    "header-length-past-body": (None, *_binary(_fp32([1, 1, 28, 28], len(_ONE)), _ONE, 10 ** 6), 400, "truncated"),
    "header-length-not-number": (None, *_binary(_fp32([1, 1, 28, 28], len(_ONE)), _ONE, -1), 400, "byte count"),
    "binary-size-past-body": (None, *_binary(_fp32([1, 1, 28, 28], len(_ONE)), _ONE[:-4]), 400, "goes past"),
    "binary-size-not-shape": (None, *_binary(_fp32([1, 1, 28, 28], len(_ONE) - 4), _ONE[:-4]), 400,
                              "binary_data_size is"),
    "bytes-after-inputs": (None, *_binary(_fp32([1, 1, 28, 28], len(_ONE)), _ONE + b"\0" * 8), 400,
                           "belong to no input"),
    "binary-without-header": (None, _binary(_fp32([1, 1, 28, 28], len(_ONE)), _ONE)[0], {}, 400, "not valid JSON"),
    "bytes-element-truncated": (None, *_binary({"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                                                "parameters": {"binary_data_size": len(_BYTES_ONE) - 5}},
                                               _BYTES_ONE[:-5]), 400, "truncated"),
    "bytes-count-not-shape": (None, *_binary({"name": "image_bytes", "datatype": "BYTES", "shape": [2],
                                              "parameters": {"binary_data_size": len(_BYTES_ONE)}}, _BYTES_ONE),
                              400, "elements"),
    "bytes-not-base64": (None, _body([{"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                                       "data": ["not base64!"]}]), {}, 400, "base64"),
    "bytes-not-an-image": (None, _body([{"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                                         "data": [base64.b64encode(b"hello, world").decode()]}]), {}, 400,
                           "not an image"),
    "bytes-empty-file": (None, _body([{"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": [""]}]),
                         {}, 400, "empty"),
    "gzip": (None, _body(), {"Content-Encoding": "gzip"}, 400, "uncompressed"),
    "over-256-images": (None, *_binary(_fp32([257, 1, 28, 28], 257 * len(_ONE)), _ONE * 257), 413, "256"),
    "over-40-megapixels": (None, _body([{"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                                         "data": [base64.b64encode(bomb_png()).decode()]}]), {}, 413, "pixels"),
    "over-64-mib": (None, b"{" + b" " * (64 * MiB), {}, 413, "over the limit"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(client, manifest, fmnist_test, case):
    model, body, headers, status, words = BAD[case]
    r = client.post(f"/v2/models/{model or MODELS[0]}/infer", content=body, headers=headers)
    assert r.status_code == status, r.text[:500]
    error = r.json()["error"]
    assert words in error, error
    if status == 404:
        assert r.json()["models"] == ["auto", *manifest["models"]]
    assert_serves(client, fmnist_test)


def test_unknown_model_version_and_route(client, triton_client, fmnist_test, version):
    for path in ("/v2/models/resnet50", "/v2/models/resnet50/ready", "/v2/models/resnet50/config",
                 f"/v2/models/{MODELS[0]}/versions/1", f"/v2/models/{MODELS[0]}/versions/1/ready"):
        r = client.get(path)
        assert r.status_code == 404 and "error" in r.json(), (path, r.text)
    r = client.post(f"/v2/models/{MODELS[0]}/versions/1/infer", content=_body())
    assert r.status_code == 404 and version in r.json()["error"]
    assert client.get("/v2/models").status_code == 404 and client.get(f"/v2/models/{MODELS[0]}/infer").status_code == 405
    with pytest.raises(InferenceServerException) as e:  # tritonclient shows the service's message
        triton_client.infer(MODELS[0], [tensor_input(np.zeros((1, 28, 28)), True)])
    assert e.value.status() == "400" and "must have shape [-1, 1, 28, 28]" in e.value.message()
    assert_serves(client, fmnist_test)


# ---------------------------------------------------------------------------------------------
# the API document

def test_v2_routes_are_documented_and_answer_as_documented(client, manifest, fmnist_test, version):
    docs = client.get("/docs.json").json()
    v2 = {path: item for path, item in docs["paths"].items() if path.startswith("/v2")}
    model, versioned = "/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}"
    assert set(v2) == {"/v2", "/v2/health/live", "/v2/health/ready",
                       *(f"{base}{end}" for base in (model, versioned) for end in ("", "/ready", "/config", "/infer"))}
    for path, item in v2.items():
        for method, operation in item.items():
            params = {p["name"]: p for p in operation.get("parameters", [])}
            assert {p for p in ("model_name", "model_version") if "{" + p + "}" in path} == set(params), path
            if "model_name" in params:
                assert params["model_name"]["schema"]["enum"] == ["auto", *manifest["models"]]
            if "model_version" in params:
                assert params["model_version"]["schema"]["enum"] == [version]
            url = path.replace("{model_name}", MODELS[0]).replace("{model_version}", version)
            if method == "get":
                answers = [client.get(url)]
            else:
                examples = operation["requestBody"]["content"]["application/json"]["examples"]
                answers = [client.post(url, content=json.dumps(e["value"])) for e in examples.values()]
            for r in answers:
                assert r.status_code == 200, (path, r.text)
                schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
                assert conforms(docs, schema, r.json(), path) == []
    r = client.post(f"/v2/models/{MODELS[0]}/infer", content=_body(), params={})
    assert conforms(docs, v2[model + "/infer"]["post"]["responses"]["200"]["content"]["application/json"]["schema"],
                    r.json()) == []
    assert_serves(client, fmnist_test)
