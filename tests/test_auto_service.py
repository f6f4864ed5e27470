"""model=auto over HTTP: a real `bentoml serve` of a small zoo that has photo models.

The zoo: two Fashion-MNIST models, the grey photo model and the colour one (auto's choice for
photos), trained briefly on small data (synthetic
Fashion-MNIST, a tiny Kaggle layout of generated product photos), exported by the real exporter.
"""
from __future__ import annotations

import base64
import io
import json
import shutil

import httpx
import numpy as np
import pytest
from PIL import Image

from service_server import serve
from tests.conftest import run_export
from tests.images import png_of
from tests.test_kaggle import make_kaggle
from zoo.spec import to_pixels


@pytest.fixture(scope="module")
def photo_zoo(tmp_path_factory, fmnist_dir, trained_zoo):
    """(artifacts, BENTOML_HOME, kaggle_dir) of an exported zoo: baseline and batchnorm (the shared
    tiny zoo's checkpoints), photo, colour."""
    from training.config import TrainConfig
    from training.train import train

    kaggle = tmp_path_factory.mktemp("kaggle")
    make_kaggle(kaggle)
    artifacts = tmp_path_factory.mktemp("photo-zoo")
    (artifacts / "checkpoints").mkdir()
    for name in ("baseline", "batchnorm"):
        shutil.copy(trained_zoo / "checkpoints" / f"{name}.pt", artifacts / "checkpoints")
    for name in ("photo", "colour"):
        train(TrainConfig(model=name, epochs=2, data_dir=str(fmnist_dir),
                          kaggle_dir=str(kaggle), artifacts=str(artifacts)), quiet=True)
    home = tmp_path_factory.mktemp("bentoml")
    out = run_export(artifacts, home)
    assert out.returncode == 0, out.stderr
    return artifacts, home, kaggle


@pytest.fixture(scope="module")
def manifest(photo_zoo) -> dict:
    return json.loads((photo_zoo[0] / "manifest.json").read_text())


@pytest.fixture(scope="module")
def client(photo_zoo, tmp_path_factory):
    with serve(photo_zoo[1], tmp_path_factory.mktemp("serve") / "serve.log") as s:
        with httpx.Client(base_url=s.url, timeout=60) as c:
            yield c


def fashion_pngs(fmnist_dir, n: int = 200) -> tuple[list[bytes], np.ndarray]:
    from training.data.fashion_mnist import load_pixels

    pixels, labels = load_pixels(fmnist_dir, train=False)
    return [png_of(p) for p in pixels[:n].numpy()], labels[:n].numpy()


def kaggle_test_photos(kaggle_dir) -> tuple[list[bytes], np.ndarray]:
    """The Kaggle test split's original JPEGs, as a user would upload them."""
    from training.data.kaggle import load

    splits, _, _ = load(kaggle_dir, quiet=True)
    test = splits["test"]
    return [(kaggle_dir / "images" / f"{pid}.jpg").read_bytes() for pid in test.ids.tolist()], test.y.numpy()


def classify(client, data: bytes, **params) -> dict:
    r = client.post("/classify", params=params, files={"image": ("x", data, "application/octet-stream")})
    assert r.status_code == 200, r.text
    return r.json()


def accuracy(answers: list[dict], labels: np.ndarray) -> float:
    return float(np.mean([a["class_id"] == y for a, y in zip(answers, labels)]))


def test_the_manifest_names_the_models_auto_picks(manifest):
    assert manifest["auto"]["models"] == {"fashion-mnist": manifest["default"], "photo": "colour"}
    assert manifest["default"] in ("baseline", "batchnorm")


def test_default_on_fashion_mnist_images_is_the_best_fashion_mnist_model(client, manifest, fmnist_dir):
    """No model named: every Fashion-MNIST test PNG is answered by the best Fashion-MNIST model,
    which says so, and auto scores what that model scores (within 0.5 points: here, exactly)."""
    images, labels = fashion_pngs(fmnist_dir)
    auto = [classify(client, data) for data in images]
    best = manifest["default"]
    single = [classify(client, data, model=best) for data in images]
    assert {a["model"] for a in auto} == {best} and {a["chosen_by"] for a in auto} == {"auto"}
    assert all("chosen_by" not in s for s in single)
    assert abs(accuracy(auto, labels) - accuracy(single, labels)) <= 0.005
    assert [a["logits"] for a in auto] == [s["logits"] for s in single]


def test_default_on_photos_is_the_colour_photo_model(client, photo_zoo):
    images, labels = kaggle_test_photos(photo_zoo[2])
    auto = [classify(client, data) for data in images]
    single = [classify(client, data, model="colour") for data in images]
    assert {a["model"] for a in auto} == {"colour"} and {a["chosen_by"] for a in auto} == {"auto"}
    assert abs(accuracy(auto, labels) - accuracy(single, labels)) <= 0.005
    assert [a["logits"] for a in auto] == [s["logits"] for s in single]


def test_auto_by_name_and_in_a_batch(client, manifest, fmnist_dir, photo_zoo):
    """model=auto is the default by name; a batch mixes the two kinds, each image with its model,
    and include_input shows the input of the model that answered."""
    fashion, _ = fashion_pngs(fmnist_dir, 3)
    photos, _ = kaggle_test_photos(photo_zoo[2])
    assert classify(client, fashion[0], model="auto") == classify(client, fashion[0])
    files = [("image", ("f.png", fashion[0], "image/png")), ("image", ("p.jpg", photos[0], "image/jpeg")),
             ("image", ("f2.png", fashion[1], "image/png"))]
    r = client.post("/classify/batch", params={"include_input": 1}, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "auto" and body["count"] == 3
    assert [x["model"] for x in body["results"]] == [manifest["default"], "colour", manifest["default"]]
    assert [x["filename"] for x in body["results"]] == ["f.png", "p.jpg", "f2.png"]
    for x, data in zip(body["results"], [fashion[0], photos[0], fashion[1]]):
        assert x["chosen_by"] == "auto"
        seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(x["input_png"]))))
        spec = manifest["models"][x["model"]]["preprocess"]
        want = to_pixels(Image.open(io.BytesIO(data)), spec)
        assert np.array_equal(seen, want.transpose(1, 2, 0) if want.ndim == 3 else want)
        alone = classify(client, data, model=x["model"])
        assert x["logits"] == alone["logits"]


def test_explicit_model_and_all_are_unchanged(client, manifest, photo_zoo):
    photos, _ = kaggle_test_photos(photo_zoo[2])
    one = classify(client, photos[0], model="baseline")
    assert one["model"] == "baseline" and "chosen_by" not in one
    every = classify(client, photos[0], model="all")
    assert every["model"] == "all" and every["default"] == manifest["default"]
    assert [x["model"] for x in every["results"]] == list(manifest["models"])
    assert all("chosen_by" not in x for x in every["results"])
    r = client.post("/classify", params={"model": "nope"}, files={"image": ("x.jpg", photos[0], "image/jpeg")})
    assert r.status_code == 404 and r.json()["models"] == ["auto", *manifest["models"], "all"]
    assert "auto" in r.json()["error"]


def test_models_route_shows_auto(client, manifest):
    body = client.get("/models").json()
    assert body["default"] == "auto" and body["auto"] == manifest["auto"]
    assert "dark" in body["auto"]["rule"]["description"]


def test_auto_eval_over_http(client, manifest, fmnist_dir, photo_zoo):
    """`python -m training.auto_eval --url ...`: the figures the README quotes, on small data."""
    from training.auto_eval import evaluate_http

    out = evaluate_http(str(client.base_url), fmnist_dir, photo_zoo[2], fashion_images=50)
    fm, photos = out["fashion-mnist"], out["kaggle"]
    assert fm["images"] == 50 and fm["routed"] == {manifest["default"]: 50}
    assert fm["auto"] == fm[manifest["default"]]
    assert photos["routed"] == {"colour": photos["images"]} and photos["auto"] == photos["colour"]


def test_the_colour_model_answers_what_its_onnx_file_answers_on_the_shared_preprocessing(client, manifest, photo_zoo):
    """The colour model through /classify (the service decodes the JPEG) and through V2 (a client sends
    the 3x40x30 tensor zoo.spec makes): the logits of onnxruntime on zoo.spec.preprocess of the file."""
    import onnxruntime as ort

    from zoo.spec import preprocess

    artifacts, _, kaggle = photo_zoo
    entry = manifest["models"]["colour"]
    assert entry["input"]["shape"] == ["batch", 3, 40, 30] and entry["preprocess"]["channels"] == 3
    photos, _ = kaggle_test_photos(kaggle)
    photos = photos[:8]
    x = np.stack([preprocess(Image.open(io.BytesIO(p)), entry["preprocess"]) for p in photos])
    session = ort.InferenceSession(str(artifacts / "onnx" / entry["onnx"]), providers=["CPUExecutionProvider"])
    want = session.run(None, {"image": x})[0]
    got = np.array([classify(client, p, model="colour")["logits"] for p in photos], np.float32)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    meta = client.get("/v2/models/colour").json()
    assert [i["shape"] for i in meta["inputs"] if i["name"] == "image"] == [[-1, 3, 40, 30]]
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}],
            "outputs": [{"name": "logits"}]}
    r = client.post("/v2/models/colour/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["shape"] == [len(photos), 10]
    np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(len(photos), 10), want, rtol=0, atol=1e-5)
    wrong = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [0.0] * 784}]}
    r = client.post("/v2/models/colour/infer", json=wrong)
    assert r.status_code == 400 and "[-1, 3, 40, 30]" in r.json()["error"]
