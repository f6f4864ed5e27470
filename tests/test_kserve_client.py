"""KServe's own V2 client (`kserve.InferenceRESTClient`) against the real served zoo: server live and
ready, model ready (and an unknown model not), inference on a batch of test images for a single
model and the ensemble, tensors as JSON and as binary, logits equal to local ONNX Runtime.

The `kserve` package needs pandas 2, the project pins pandas 3, so the client runs in KServe's own
venv (`make .venv-kserve/.installed`, which `make test` builds first; KSERVE_VENV names another):
CLIENT below, run with that venv's python, prints what it got as JSON. Without that venv the test
fails and says how to make it. KServe's REST client (0.21) has no call for server or model metadata;
tests/test_v2.py reads those with tritonclient.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.peers import kserve_python
from tests.test_service import fmnist_test, manifest, sessions  # noqa: F401

MODELS = ["batchnorm", "ensemble"]
IMAGES = 8

# Run by KServe's venv's python: argv = base URL, a .npy of FP32 [N, 1, 28, 28], model names.
CLIENT = r'''
import asyncio, json, sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


def outputs(response):
    return {o.name: {"shape": list(o.shape), "datatype": o.datatype, "data": o.as_numpy().ravel().tolist()}
            for o in response.outputs}


async def main(url, path, models):
    x = np.load(path)
    out = {"models": {}}
    async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=120)) as client:
        out["server_live"] = await client.is_server_live(url)
        out["server_ready"] = await client.is_server_ready(url)
        out["unknown_model_ready"] = await client.is_model_ready(url, "no-such-model")
        for name in models:
            got = out["models"][name] = {"ready": await client.is_model_ready(url, name)}
            for form, binary in (("json", False), ("binary", True)):
                tensor = InferInput("image", list(x.shape), "FP32")
                tensor.set_data_from_numpy(x, binary_data=binary)
                request = InferRequest(name, [tensor], request_id=f"kserve-{name}-{form}",
                                       parameters={"binary_data_output": True} if binary else None)
                response = await client.infer(url, request, model_name=name)
                got[form] = {"id": response.id, "model_name": response.model_name, "outputs": outputs(response)}
    print(json.dumps(out))


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3].split(",")))
'''


@pytest.fixture(scope="module")
def kserve() -> Path:
    """The python of KServe's venv; the tests fail (not skip) without it: `make test` makes it."""
    python, why = kserve_python()
    if python is None:
        pytest.fail(f"KServe's client is not installed: {why}")
    return python


@pytest.fixture(scope="module")
def kserve_answers(kserve, server, fmnist_test, tmp_path_factory) -> tuple[np.ndarray, dict]:
    """(the tensor sent, what KServe's client got for it from the served zoo)."""
    tmp = tmp_path_factory.mktemp("kserve-client")
    x = fmnist_test[1][:IMAGES].astype(np.float32)
    np.save(tmp / "x.npy", x)
    (tmp / "client.py").write_text(CLIENT)
    run = subprocess.run([str(kserve), str(tmp / "client.py"), server.url, str(tmp / "x.npy"), ",".join(MODELS)],
                         capture_output=True, text=True, timeout=300, cwd=tmp)
    assert run.returncode == 0, f"KServe's client failed:\n{run.stderr[-4000:]}\nserver log:\n{server.output()[-2000:]}"
    return x, json.loads(run.stdout)


def test_health_and_model_ready(kserve_answers):
    _, got = kserve_answers
    assert got["server_live"] is True and got["server_ready"] is True
    assert got["unknown_model_ready"] is False
    assert all(got["models"][name]["ready"] for name in MODELS)


@pytest.mark.parametrize("form", ["json", "binary"])
@pytest.mark.parametrize("name", MODELS)
def test_logits_equal_local_onnxruntime(kserve_answers, sessions, name, form):
    """The batch's logits (and probabilities) through KServe's client are the ONNX file's on the same
    tensor in a local session; the request id and model name come back."""
    x, got = kserve_answers
    answer = got["models"][name][form]
    assert answer["id"] == f"kserve-{name}-{form}" and answer["model_name"] == name
    want = sessions[name].run(None, {"image": x})[0]
    logits, probabilities = answer["outputs"]["logits"], answer["outputs"]["probabilities"]
    assert logits["shape"] == probabilities["shape"] == [IMAGES, 10]
    assert logits["datatype"] == probabilities["datatype"] == "FP32"
    np.testing.assert_allclose(np.array(logits["data"], np.float32).reshape(IMAGES, 10), want, rtol=0, atol=1e-6)
    z = np.exp(want.astype(np.float64) - want.max(axis=1, keepdims=True))
    np.testing.assert_allclose(np.array(probabilities["data"]).reshape(IMAGES, 10), z / z.sum(axis=1, keepdims=True),
                               rtol=0, atol=1e-6)
