"""The BentoML service over HTTP: a real `bentoml serve` of a small exported zoo in a temporary
BENTOML_HOME, every model, every kind of upload, every bad input, and `bentoml build`."""
from __future__ import annotations

import base64
import concurrent.futures
import ctypes.util
import http.server
import io
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import psutil
import pytest
import yaml
from PIL import Image, ImageOps

from conftest import REAL_FASHION_MNIST
from bench.server import free_port
from service_server import BENTOML, REPO, bentoml_env, serve
from tests.images import bomb_png, dress, encode, png_of, uploads
from zoo.registry import list_models
from zoo.spec import CLASSES, preprocess, to_pixels

MODELS = list_models("fashion-mnist")   # what a Fashion-MNIST-only export holds
MiB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def manifest(exported_zoo) -> dict:
    artifacts, _ = exported_zoo
    return json.loads((artifacts / "manifest.json").read_text())


@pytest.fixture(scope="module")
def sessions(exported_zoo, manifest) -> dict[str, ort.InferenceSession]:
    """The exported ONNX files run directly: the reference for what the service answers."""
    artifacts, _ = exported_zoo
    return {n: ort.InferenceSession(str(artifacts / "onnx" / e["onnx"]), providers=["CPUExecutionProvider"])
            for n, e in manifest["models"].items()}


@pytest.fixture(scope="module")
def fmnist_test(fmnist_dir) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 28, 28), the training pipeline's tensor (N, 1, 28, 28)) of the test split."""
    from training.data.fashion_mnist import load_fashion_mnist, load_pixels

    pixels, _ = load_pixels(fmnist_dir, train=False)
    return pixels.numpy(), load_fashion_mnist(fmnist_dir)["test"].x.numpy()


def post_image(client: httpx.Client, data: bytes, path: str = "/classify", **params) -> httpx.Response:
    return client.post(path, params=params, files={"image": ("upload", data, "application/octet-stream")})


def reference_logits(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return session.run(None, {"image": x.astype(np.float32)})[0]


def assert_serves(client: httpx.Client, fmnist_test) -> None:
    """The server answers a good request normally (after a bad one)."""
    r = post_image(client, png_of(fmnist_test[0][0]))
    assert r.status_code == 200, r.text
    assert r.json()["label"] in CLASSES


# ---------------------------------------------------------------------------------------------
# classification

@pytest.mark.parametrize("name", MODELS)
def test_every_model_classifies(client, fmnist_test, name):
    r = post_image(client, png_of(fmnist_test[0][3]), model=name)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == name
    probs = body["probabilities"]
    assert list(probs) == list(CLASSES) and abs(sum(probs.values()) - 1) < 1e-9
    assert len(body["top"]) == 3
    assert [t["probability"] for t in body["top"]] == sorted(probs.values(), reverse=True)[:3]
    best = int(np.argmax(body["logits"]))
    assert body["class_id"] == best and body["label"] == CLASSES[best] == body["top"][0]["label"]
    assert body["confidence"] == probs[CLASSES[best]] == body["top"][0]["probability"]


@pytest.mark.parametrize("name", MODELS)
def test_png_gets_exactly_the_training_pipelines_logits(client, manifest, sessions, fmnist_test, name):
    """A test image saved as PNG and sent over HTTP gets, bit for bit, the logits the ONNX model
    gives on the tensor the training pipeline (training.data.fashion_mnist.load_fashion_mnist) makes of it."""
    pixels, x = fmnist_test
    for i in range(4):
        data = png_of(pixels[i])
        # The shared preprocessing, in-process, first: it must equal training's tensor exactly.
        assert np.array_equal(preprocess(Image.open(io.BytesIO(data)), manifest["models"][name]["preprocess"]), x[i])
        r = post_image(client, data, model=name, top_k=10)
        assert r.status_code == 200, r.text
        got = np.array(r.json()["logits"], dtype=np.float64)
        want = reference_logits(sessions[name], x[i:i + 1])[0].astype(np.float64)
        assert np.array_equal(got, want), f"{name} image {i}: {np.abs(got - want).max()}"


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(), reason=f"{REAL_FASHION_MNIST} not installed")
def test_real_fashion_mnist_png_gets_exactly_the_training_pipelines_logits(client, manifest, sessions, tmp_path):
    from training.data.fashion_mnist import load_fashion_mnist, load_pixels, prepare

    prepare(tmp_path)
    pixels, _ = load_pixels(tmp_path, train=False)
    x = load_fashion_mnist(tmp_path)["test"].x[:8].numpy()
    for i in range(8):
        data = png_of(pixels[i].numpy())
        for name in (manifest["default"], MODELS[-1]):
            r = post_image(client, data, model=name)
            assert r.status_code == 200, r.text
            want = reference_logits(sessions[name], x[i:i + 1])[0].astype(np.float64)
            assert np.array_equal(np.array(r.json()["logits"]), want)


def test_default_model_is_the_manifests(client, manifest, fmnist_test):
    """No model named: auto, which sends a Fashion-MNIST image to the best Fashion-MNIST model
    (tests/test_auto_service.py has the photo model's side)."""
    r = post_image(client, png_of(fmnist_test[0][1]))
    assert r.status_code == 200 and r.json()["model"] == manifest["default"] == manifest["auto"]["models"]["fashion-mnist"]
    assert r.json()["chosen_by"] == "auto"


def test_all_models_side_by_side(client, manifest, fmnist_test):
    data = png_of(fmnist_test[0][2])
    both = [post_image(client, data, model="all", top_k=2),
            client.post("/classify", data={"model": "all", "top_k": "2"},
                        files={"image": ("a.png", data, "image/png")})]
    for r in both:
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "all" and body["default"] == manifest["default"]
        assert [m["model"] for m in body["results"]] == list(manifest["models"])
        for result in body["results"]:
            single = post_image(client, data, model=result["model"], top_k=2).json()
            assert result == single
    assert both[0].json() == both[1].json()


def test_raw_body_and_form_fields(client, fmnist_test):
    data = png_of(fmnist_test[0][5])
    multipart = post_image(client, data, model=MODELS[1]).json()
    for content_type in ("image/png", "application/octet-stream"):
        raw = client.post("/classify", params={"model": MODELS[1]}, content=data,
                          headers={"Content-Type": content_type})
        assert raw.status_code == 200, raw.text
        assert raw.json() == multipart
    form = client.post("/classify", data={"model": MODELS[1], "top_k": "3"},
                       files={"image": ("x.png", data, "image/png")})
    assert form.status_code == 200 and form.json() == multipart
    # Empty form fields (a browser form, or the API docs' "Try it out", sends every field) are not given.
    empty = client.post("/classify", params={"model": MODELS[1]}, data={"model": "", "top_k": ""},
                        files={"image": ("x.png", data, "image/png")})
    assert empty.status_code == 200 and empty.json() == multipart


def test_include_input_shows_what_each_model_sees(client, manifest, fmnist_test):
    pixels = fmnist_test[0][4]
    r = post_image(client, png_of(pixels), model="all", include_input=1)
    assert r.status_code == 200, r.text
    for result in r.json()["results"]:
        seen = Image.open(io.BytesIO(base64.b64decode(result["input_png"])))
        assert seen.mode == "L" and np.array_equal(np.asarray(seen), pixels)
    photo = UPLOADS["photo-jpeg-on-white"]
    r = post_image(client, photo, include_input="true")
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["input_png"]))))
    spec = manifest["models"][manifest["default"]]["preprocess"]
    # The service decodes this 1600x1200 JPEG at half scale (service.imaging, Image.draft): the
    # input it shows is that decode's, within one grey level of a full-scale decode's.
    from service.imaging import decode

    assert np.array_equal(seen, to_pixels(decode(photo), spec))
    full = to_pixels(Image.open(io.BytesIO(photo)), spec).astype(int)
    assert np.abs(seen.astype(int) - full).max() <= 1
    assert "input_png" not in post_image(client, photo).json()
    assert "input_png" not in post_image(client, photo, include_input=0).json()


@pytest.mark.parametrize("k", [1, 3, 10])
def test_top_k(client, fmnist_test, k):
    r = post_image(client, png_of(fmnist_test[0][0]), top_k=k)
    assert r.status_code == 200, r.text
    top = r.json()["top"]
    assert len(top) == k and len({t["class_id"] for t in top}) == k
    assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)


# ---------------------------------------------------------------------------------------------
# the images people upload: any format, size and mode

UPLOADS = uploads()   # tests/images.py


@pytest.mark.parametrize("kind", list(UPLOADS))
def test_any_upload_a_person_makes(client, manifest, sessions, kind):
    """Each is classified with exactly the logits of the manifest's preprocessing applied to the
    decoded image (first frame, EXIF orientation applied)."""
    from service.imaging import DRAFT_MIN_SIDE

    data = UPLOADS[kind]
    image = Image.open(io.BytesIO(data))
    assert image.format in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
    if image.format == "JPEG":  # a large JPEG is decoded at reduced scale (tests/test_imaging.py)
        image.draft(image.mode, (DRAFT_MIN_SIDE, DRAFT_MIN_SIDE))
    image.seek(0)
    image = ImageOps.exif_transpose(image)
    name = manifest["default"]
    want = reference_logits(sessions[name], preprocess(image, manifest["models"][name]["preprocess"])[None])[0]
    r = post_image(client, data)
    assert r.status_code == 200, r.text
    assert np.array_equal(np.array(r.json()["logits"]), want.astype(np.float64))


def test_gif_first_frame_and_exif_orientation_matter(client):
    """The cases above would pass by accident if the frame or the orientation were ignored."""
    gif = Image.open(io.BytesIO(UPLOADS["animated-gif"]))
    gif.seek(1)
    second = post_image(client, encode(gif.convert("RGB"))).json()["logits"]
    assert post_image(client, UPLOADS["animated-gif"]).json()["logits"] != second
    unrotated = Image.open(io.BytesIO(UPLOADS["exif-rotated-jpeg"]))
    assert post_image(client, encode(unrotated, "PNG")).json()["logits"] != \
        post_image(client, UPLOADS["exif-rotated-jpeg"]).json()["logits"]


# ---------------------------------------------------------------------------------------------
# bad input: a precise 4xx, never a 500, and the next good request is answered

def _huge_gif() -> bytes:
    """A tiny GIF whose header claims a 30000 x 30000 canvas."""
    data = bytearray(encode(Image.new("L", (10, 10)), "GIF"))
    data[6:10] = (30000).to_bytes(2, "little") * 2
    at = data.index(b",", 13)  # image descriptor: left, top, width, height
    data[at + 5:at + 9] = (30000).to_bytes(2, "little") * 2
    return bytes(data)


def _truncated(kind: str) -> bytes:
    data = UPLOADS["photo-jpeg-on-white"] if kind == "jpeg" else encode(dress(size=(200, 200)))
    return data[:len(data) // 2]


BAD = {
    # name: (request keyword arguments, status, words the error must contain)
    "unknown-model": (dict(params={"model": "resnet50"}), 404, "unknown model 'resnet50'"),
    "model-as-path": (dict(params={"model": "../manifest"}), 404, "unknown model"),
    "model-as-file": (dict(params={"model": "baseline.onnx"}), 404, "unknown model"),
    "model-absolute-path": (dict(params={"model": "/etc/passwd"}), 404, "unknown model"),
    "model-twice": (dict(params={"model": "baseline"}, data={"model": "dropout"}), 400, "given twice"),
    "no-image-field": (dict(files={"model": (None, "baseline")}), 400, "no image"),
    "image-as-text-field": (dict(files={"image": (None, "a picture")}), 400, "not a file"),
    "empty-file": (dict(files={"image": ("e.png", b"", "image/png")}), 400, "empty"),
    "empty-raw-body": (dict(content=b"", headers={"Content-Type": "image/png"}), 400, "empty"),
    "not-an-image": (dict(files={"image": ("a.png", b"hello, world\n" * 50, "image/png")}), 400, "not an image"),
    "pdf": (dict(files={"image": ("a.pdf", b"%PDF-1.4\n%...\n", "application/pdf")}), 400, "not an image"),
    "truncated-png": (dict(files={"image": ("t.png", _truncated("png"), "image/png")}), 400, "truncated"),
    "truncated-jpeg": (dict(files={"image": ("t.jpg", _truncated("jpeg"), "image/jpeg")}), 400, "truncated"),
    "json-body": (dict(json={"image": "shoe.png"}), 400, "expected an image"),
    "no-boundary": (dict(content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}), 400, "multipart"),
    "two-images": (dict(files=[("image", ("a.png", UPLOADS["one-pixel-png"], "image/png"))] * 2), 400,
                   "/classify/batch"),
    "top-k-zero": (dict(params={"top_k": "0"}), 400, "top_k"),
    "top-k-eleven": (dict(params={"top_k": "11"}), 400, "top_k"),
    "top-k-negative": (dict(params={"top_k": "-1"}), 400, "top_k"),
    "top-k-word": (dict(params={"top_k": "three"}), 400, "top_k"),
    "top-k-fraction": (dict(data={"top_k": "2.5"}), 400, "top_k"),
    "include-input-maybe": (dict(params={"include_input": "maybe"}), 400, "include_input"),
    "over-10-mib-raw": (dict(content=b"\0" * (10 * MiB + 1), headers={"Content-Type": "image/png"}), 413,
                        "over the limit"),
    "over-10-mib-file": (dict(files={"image": ("big.png", b"\0" * (10 * MiB + 1), "image/png")}), 413,
                         "over the limit"),
    "over-10-mib-chunked": (dict(content=(b"\0" * MiB for _ in range(11)), headers={"Content-Type": "image/png"}),
                            413, "over the limit"),
    "over-40-megapixels": (dict(files={"image": ("bomb.png", bomb_png(), "image/png")}), 413, "pixels"),
    "decompression-bomb-gif": (dict(files={"image": ("bomb.gif", _huge_gif(), "image/gif")}), 413, "too large"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(client, manifest, fmnist_test, case):
    kwargs, status, words = BAD[case]
    kwargs = dict(kwargs)
    if "files" not in kwargs and "content" not in kwargs and "json" not in kwargs:
        kwargs["files"] = {"image": ("ok.png", png_of(fmnist_test[0][0]), "image/png")}
    if case == "over-10-mib-chunked":  # a generator is used up by one request
        kwargs["content"] = (b"\0" * MiB for _ in range(11))
    r = client.post("/classify", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert words in body["error"], body
    if status == 404:
        assert body["models"] == ["auto", *manifest["models"], "all"]
        for name in manifest["models"]:
            assert name in body["error"]
    if status == 400 and case not in ("model-twice", "include-input-maybe") and not case.startswith("top-k"):
        assert "send" in body["error"]  # says what to send instead
    assert_serves(client, fmnist_test)


def test_a_url_is_never_fetched(client, fmnist_test):
    """A URL where an image belongs is refused with a 400, and nothing fetches it: a local HTTP
    server that would serve a real PNG there records every request it gets."""
    hits: list[str] = []
    image = png_of(fmnist_test[0][0])

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(f"{self.command} {self.path}")
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(image)))
            self.end_headers()
            self.wfile.write(image)

        do_HEAD = do_POST = do_GET

        def log_message(self, *args):
            pass

    recorder = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{recorder.server_port}/shoe.png"
        assert httpx.get(url).content == image and hits == ["GET /shoe.png"]  # the recorder records
        hits.clear()
        attempts = {
            "image field as text": ("/classify", dict(files={"image": (None, url)})),
            "url-encoded form": ("/classify", dict(data={"image": url})),
            "file holding the url": ("/classify", dict(files={"image": ("link.txt", url.encode(), "text/plain")})),
            "raw body": ("/classify", dict(content=url.encode(), headers={"Content-Type": "image/png"})),
            "json": ("/classify", dict(json={"image": url})),
            "query": ("/classify", dict(params={"image": url, "url": url}, files={"model": (None, "baseline")})),
            "batch image field as text": ("/classify/batch", dict(files={"image": (None, url)})),
        }
        for name, (path, kwargs) in attempts.items():
            r = client.post(path, **kwargs)
            assert r.status_code == 400, (name, r.text)
            assert "send" in r.json()["error"], (name, r.json())
        assert hits == []
    finally:
        recorder.shutdown()
        recorder.server_close()
    assert_serves(client, fmnist_test)


def test_wrong_method_and_route(client, fmnist_test):
    assert client.get("/classify").status_code == 405
    assert client.post("/classify/../models").status_code in (404, 405)
    assert client.get("/no-such-route").status_code == 404
    assert_serves(client, fmnist_test)


# ---------------------------------------------------------------------------------------------
# the batch route

def test_batch_route(client, manifest, fmnist_test):
    pixels = fmnist_test[0]
    images = [("image", (f"{i}.png", png_of(pixels[i]), "image/png")) for i in range(6)]
    images.append(("image", ("photo.jpg", UPLOADS["photo-jpeg-on-white"], "image/jpeg")))
    for model in (MODELS[0], "all"):
        r = client.post("/classify/batch", params={"model": model, "top_k": 2}, files=images)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == model and body["count"] == len(images) == len(body["results"])
        for (_, (filename, data, _)), result in zip(images, body["results"]):
            assert result["filename"] == filename
            single = post_image(client, data, model=model, top_k=2).json()
            pairs = zip(result["results"], single["results"]) if model == "all" else [(result, single)]
            for got, want in pairs:
                assert got["model"] == want["model"] and got["label"] == want["label"]
                # One batched run may round differently from single runs, but only just.
                np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-5, atol=1e-5)


def test_batch_route_bad_input(client, fmnist_test):
    ok = ("image", ("ok.png", png_of(fmnist_test[0][0]), "image/png"))
    bad = ("image", ("bad.png", b"not an image", "image/png"))
    r = client.post("/classify/batch", files=[ok, ok, bad, ok])
    assert r.status_code == 400 and "image 3 (bad.png)" in r.json()["error"]
    r = client.post("/classify/batch", files=[ok] * 257)
    assert r.status_code == 413 and "256" in r.json()["error"]
    r = client.post("/classify/batch", content=png_of(fmnist_test[0][0]), headers={"Content-Type": "image/png"})
    assert r.status_code == 400 and "multipart" in r.json()["error"]
    r = client.post("/classify/batch", files={"model": (None, "baseline")})
    assert r.status_code == 400 and "no image" in r.json()["error"]
    r = client.post("/classify/batch", params={"model": "nope"}, files=[ok])
    assert r.status_code == 404
    assert_serves(client, fmnist_test)


# ---------------------------------------------------------------------------------------------
# models, health, metrics, runtime

def test_models_route(client, manifest, exported_zoo):
    _, home = exported_zoo
    r = client.get("/models")
    assert r.status_code == 200
    body = r.json()
    assert body["default"] == "auto" and body["auto"] == manifest["auto"]
    version = (home / "models" / "fashion-zoo" / "latest").read_text().strip()
    assert body["store_tag"] == f"fashion-zoo:{version}"
    assert list(body["models"]) == list(manifest["models"])
    # No NVIDIA driver here means CPU; with one, the CUDA provider must really have been taken.
    expected = "CUDAExecutionProvider" if ctypes.util.find_library("cuda") else "CPUExecutionProvider"
    for name, entry in body["models"].items():
        provider = entry.pop("provider")
        assert provider == expected, body["device_reason"]
        assert entry == manifest["models"][name]
    assert body["device_reason"]


def test_health_and_metrics(client, fmnist_test):
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert_serves(client, fmnist_test)
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'endpoint="/classify"' in metrics.text and "bentoml_service_request_total" in metrics.text


def test_concurrent_requests(client, fmnist_test):
    data = png_of(fmnist_test[0][7])
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: post_image(client, data, model="all"), range(48)))
    assert {r.status_code for r in responses} == {200}
    assert all(r.json() == responses[0].json() for r in responses)


def test_server_never_imports_torch(server):
    """No process of the running server has loaded libtorch, and importing the service doesn't."""
    procs = [psutil.Process(server.proc.pid), *psutil.Process(server.proc.pid).children(recursive=True)]
    assert len(procs) >= 2  # the server and at least one worker
    for p in procs:
        assert not [m.path for m in p.memory_maps() if "libtorch" in m.path], p.cmdline()
    check = ("import sys, service.service, service.routes, service.runtime, service.imaging; "
             "loaded = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]; "
             "assert not loaded, loaded")
    out = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------------------------------------
# start-up errors and the bento

def _store_copy(home: Path, tmp_path: Path) -> tuple[Path, Path]:
    copy = tmp_path / "bentoml"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns("bentos"))
    version = (copy / "models" / "fashion-zoo" / "latest").read_text().strip()
    return copy, copy / "models" / "fashion-zoo" / version


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_damaged_model_stops_the_server_naming_the_file(exported_zoo, tmp_path, damage):
    _, home = exported_zoo
    copy, model_dir = _store_copy(home, tmp_path)
    onnx = model_dir / "numfilters.onnx"
    if damage == "changed":
        onnx.write_bytes(onnx.read_bytes()[:-1] + b"\0")
    else:
        onnx.unlink()
    out = subprocess.run([BENTOML, "serve", "service.service:FashionZoo", "--host", "127.0.0.1",
                          "--port", str(free_port())],
                         cwd=REPO, env=bentoml_env(copy), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    why = "does not match its manifest" if damage == "changed" else "cannot read"
    lines = (out.stdout + out.stderr).splitlines()
    assert any(str(onnx) in line and why in line for line in lines), out.stderr[-3000:]


@pytest.mark.parametrize("device, why", [
    ("gpu", "Unknown device 'gpu'; choose one of: auto, cuda, cpu"),
    pytest.param("cuda", "FASHION_ZOO_DEVICE=cuda but CUDA cannot run: no NVIDIA driver",
                 marks=pytest.mark.skipif(bool(ctypes.util.find_library("cuda")), reason="a driver is here")),
])
def test_impossible_device_stops_the_server(exported_zoo, device, why):
    _, home = exported_zoo
    out = subprocess.run([BENTOML, "serve", "service.service:FashionZoo", "--host", "127.0.0.1",
                          "--port", str(free_port())], cwd=REPO, env=bentoml_env(home, FASHION_ZOO_DEVICE=device),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and why in out.stdout + out.stderr, out.stderr[-3000:]


def test_build_packs_the_model_and_the_service(exported_zoo, tmp_path, fmnist_test):
    _, home = exported_zoo
    copy, model_dir = _store_copy(home, tmp_path)
    out = subprocess.run([BENTOML, "build"], cwd=REPO, env=bentoml_env(copy), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    bento_dir = copy / "bentos" / "fashion-zoo-service"
    bento = bento_dir / (bento_dir / "latest").read_text().strip()
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["service"] == "service.service:FashionZoo"
    built_with = f"fashion-zoo:{model_dir.name}"
    assert [m["tag"] for s in info["services"] for m in s["models"]] == [built_with]
    src = {p.relative_to(bento / "src").as_posix() for p in (bento / "src").rglob("*.py")}
    assert {"service/service.py", "service/routes.py", "service/runtime.py", "service/imaging.py",
            "zoo/spec.py", "zoo/registry.py"} <= src
    assert not [p for p in src if p.split("/")[0] in ("training", "export", "tests", "bench")]
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "onnxruntime-gpu[cuda,cudnn]==1.31.1" in requirements and "torch" not in requirements

    # A newer export in the store does not change what the built bento serves.
    newer = subprocess.run([sys.executable, "-c", NEW_VERSION], cwd=REPO, env=bentoml_env(copy),
                           capture_output=True, text=True)
    assert newer.returncode == 0, newer.stderr
    newer_tag = newer.stdout.strip()
    assert newer_tag != built_with
    with serve(copy, tmp_path / "bento.log", target=f"fashion-zoo-service:{bento.name}") as s:
        assert httpx.get(f"{s.url}/models").json()["store_tag"] == built_with
        r = httpx.post(f"{s.url}/classify", files={"image": ("x.png", png_of(fmnist_test[0][0]), "image/png")})
        assert r.status_code == 200, r.text
    # ...unless FASHION_ZOO_MODEL names a version.
    with serve(copy, tmp_path / "override.log", FASHION_ZOO_MODEL=newer_tag) as s:
        body = httpx.get(f"{s.url}/models").json()
        assert body["store_tag"] == newer_tag and body["auto"]["models"]["fashion-mnist"] == MODELS[-1]


# Saves the latest store version again with another default model: a newer version of the zoo.
NEW_VERSION = f"""
import json, shutil
from pathlib import Path
import bentoml
latest = bentoml.models.get("fashion-zoo:latest")
manifest = json.loads((Path(latest.path) / "manifest.json").read_text())
manifest["default"] = manifest["auto"]["models"]["fashion-mnist"] = {MODELS[-1]!r}
with bentoml.models.create("fashion-zoo") as ref:
    for entry in manifest["models"].values():
        shutil.copyfile(Path(latest.path) / entry["onnx"], Path(ref.path) / entry["onnx"])
    (Path(ref.path) / "manifest.json").write_text(json.dumps(manifest))
print(ref.tag)
"""
