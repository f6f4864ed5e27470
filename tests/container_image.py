"""The service's CPU image, built once per test session, and what checks through it share.

tests/test_container.py (`-m container`: the image run with podman or docker) and
tests/test_k8s_play.py (`-m k8s`: the image as a Kubernetes pod, `podman kube play`) both use
the `container_backend` and `built_image` fixtures, which tests/conftest.py imports, so a session
that runs both builds the image once.

By default the CPU image (bentofile-cpu.yaml) of a small export made here is built with
deploy/containerize.py, in a temporary BENTOML_HOME, with the first container backend that works
(skipped, with the reason, when none does). `make container-test` and `make k8s-play` instead check
an image that `make container` built from the real export: FASHION_ZOO_IMAGE names it,
FASHION_ZOO_IMAGE_DEVICE says which bentofile it came from (gpu or cpu), and ARTIFACTS is the export
it must agree with (an export's artifacts directory, or the model directory the bento packed).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from deploy.containerize import ContainerError, backend_env, choose_backend, registry_reachable
from service_server import REPO, bentoml_env
from tests.once import made_once, shared_dir

RUNTIME_PACKAGE = {"cpu": "onnxruntime", "gpu": "onnxruntime-gpu"}
TEST_IMAGE = "localhost/fashion-zoo-container-test"   # built here; kept so a rerun reuses its layers
BASE_IMAGE = "docker.io/library/python:3.11-slim"
IMAGE_DIR = "container-image"


@pytest.fixture(scope="session")
def container_backend() -> str:
    try:
        backend = choose_backend(os.environ.get("CONTAINER_BACKEND") or None)
    except ContainerError as e:
        pytest.skip(str(e))
    if not os.environ.get("FASHION_ZOO_IMAGE") and (os.geteuid() != 0 or not shutil.which("debootstrap")):
        has_base = subprocess.run([backend, "image", "inspect", BASE_IMAGE], capture_output=True,
                                  env=backend_env(backend)).returncode == 0
        if not has_base and not registry_reachable():
            pytest.skip(f"no container registry answers and there is no {BASE_IMAGE} image; "
                        f"deploy/base_image.sh makes one as root with debootstrap")
    return backend


@pytest.fixture(scope="session")
def built_image(container_backend, request, tmp_path_factory):
    """(image, device, artifacts): the image under test, its bentofile's device, its export."""
    if os.environ.get("FASHION_ZOO_IMAGE"):
        yield (os.environ["FASHION_ZOO_IMAGE"], os.environ.get("FASHION_ZOO_IMAGE_DEVICE", "gpu"),
               Path(os.environ.get("ARTIFACTS", "artifacts")).resolve())
        return
    artifacts, home = request.getfixturevalue("exported_zoo")
    made = made_once(tmp_path_factory, IMAGE_DIR, lambda to: build(to, home, container_backend))
    image = (made / "image").read_text()
    yield image, "cpu", artifacts
    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # else once all workers are done: remove_built_image
        remove_image(container_backend, image)


def build(to: Path, home: Path, backend: str) -> None:
    """Build the CPU image of the export in `home` into `to`: its name in `image`, the log in build.log."""
    log, start = to / "build.log", time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, str(REPO / "deploy" / "containerize.py"), "--device", "cpu",
                               "--backend", backend, "--name", TEST_IMAGE],
                              cwd=REPO, env=bentoml_env(home), stdout=out, stderr=subprocess.STDOUT, timeout=1200)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"building the CPU image failed:\n{text[-6000:]}"
    (to / "image").write_text(text.strip().splitlines()[-1])
    (to / "backend").write_text(backend)
    print(f"\nbuilt {(to / 'image').read_text()} in {time.monotonic() - start:.0f} s (log: {log})")


def remove_image(backend: str, image: str) -> None:
    """Keep only `:latest`, whose layers the next run reuses; each run's bento version is new."""
    subprocess.run([backend, "rmi", image], capture_output=True, env=backend_env(backend))


def remove_built_image(session_temp: Path) -> None:
    """At the end of a session run by xdist workers: remove the image they shared, if one was built."""
    made = shared_dir(session_temp, IMAGE_DIR)
    if (made / "image").exists():
        remove_image((made / "backend").read_text(), (made / "image").read_text())


def export_manifest(artifacts: Path) -> dict:
    return json.loads((artifacts / "manifest.json").read_text())


def onnx_file(artifacts: Path, entry: dict) -> Path:
    """A model's ONNX file: in onnx/ of an export's artifacts, or beside the manifest in a model
    directory (the BentoML store's, weights/)."""
    nested = artifacts / "onnx" / entry["onnx"]
    return nested if nested.exists() else artifacts / entry["onnx"]


def onnx_sessions(artifacts: Path, manifest: dict) -> dict:
    """The export's ONNX files, run here: the reference the image must agree with."""
    import onnxruntime as ort

    return {n: ort.InferenceSession(str(onnx_file(artifacts, e)), providers=["CPUExecutionProvider"])
            for n, e in manifest["models"].items()}


def local_logits(sessions, manifest, name: str, data: bytes) -> np.ndarray:
    """What the same ONNX file gives here on the service's own decoding and preprocessing."""
    from service.imaging import decode
    from zoo.spec import preprocess

    x = preprocess(decode(data), manifest["models"][name]["preprocess"])[None]
    return sessions[name].run(None, {"image": x.astype(np.float32)})[0][0]


def classify(client: httpx.Client, data: bytes, **params) -> httpx.Response:
    return client.post("/classify", params=params, files={"image": ("upload", data, "application/octet-stream")})


def check_labels(client: httpx.Client, manifest: dict, sessions: dict, data: bytes) -> None:
    """Every model and `model=all` label `data` through `client` as the local ONNX run does,
    with the same logits."""
    want = {}
    for name in manifest["models"]:
        logits = local_logits(sessions, manifest, name, data)
        want[name] = manifest["models"][name]["classes"][int(np.argmax(logits))]
        r = classify(client, data, model=name)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["label"] == want[name], f"{name}: served {body['label']}, local {want[name]}"
        np.testing.assert_allclose(body["logits"], logits, rtol=1e-5, atol=1e-5)
    r = classify(client, data, model="all")
    assert r.status_code == 200, r.text
    assert {res["model"]: res["label"] for res in r.json()["results"]} == want
