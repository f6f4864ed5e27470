"""service/client.py against a real `bentoml serve` of a small zoo: the same answers as plain HTTP
requests, for every kind of image it takes, and one exception type for every refusal."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from service.client import ClientError, ZooClient
from bench.server import free_port
from tests.images import grey_png


@pytest.fixture(scope="module")
def zoo(server):
    with ZooClient(server.url) as c:
        yield c


def http_classify(client, data: bytes, **params) -> dict:
    r = client.post("/classify", params=params, files={"image": ("x.png", data, "image/png")})
    assert r.status_code == 200, r.text
    return r.json()


def test_classify_a_path_bytes_or_a_pil_image(zoo, client, tmp_path):
    data = grey_png(120)
    path = tmp_path / "shoe.png"
    path.write_bytes(data)
    want = http_classify(client, data, model="numfilters", top_k=2)
    for image in (path, str(path), data, Image.open(io.BytesIO(data))):
        assert zoo.classify(image, model="numfilters", top_k=2) == want
    assert zoo.classify(data) == http_classify(client, data)  # the zoo's default model, top 3
    assert zoo.classify(data, model="all")["results"] == http_classify(client, data, model="all")["results"]
    assert "input_png" in zoo.classify(data, include_input=True)


def test_classify_batch_and_models(zoo, client):
    images = [grey_png(30), grey_png(200)]
    answer = zoo.classify_batch(images, model="baseline", top_k=1)
    assert answer["model"] == "baseline" and answer["count"] == 2
    for image, item in zip(images, answer["results"]):
        single = http_classify(client, image, model="baseline", top_k=1)
        assert item["label"] == single["label"] and item["filename"].startswith("image-")
    assert zoo.models() == client.get("/models").json()


def test_refusals_raise_zoo_error_with_the_services_message(zoo, client):
    with pytest.raises(ClientError) as e:
        zoo.classify(grey_png(120), model="resnet50")
    assert e.value.status == 404 and "unknown model 'resnet50'" in e.value.message
    assert e.value.body["models"][-1] == "all"
    with pytest.raises(ClientError) as e:
        zoo.classify(b"this is not an image")
    assert e.value.status == 400 and "send a PNG" in e.value.message
    with pytest.raises(ClientError) as e:
        zoo.classify(grey_png(120), top_k=11)
    assert e.value.status == 400 and "top_k" in e.value.message
    with pytest.raises(ClientError) as e:
        zoo.classify_batch([grey_png(120)] * 257)
    assert e.value.status == 413 and "256" in e.value.message
    with pytest.raises(TypeError, match="path, bytes or a PIL image"):
        zoo.classify(12345)


def test_unreachable_service_raises_zoo_error():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with ZooClient(url, timeout=5) as c, pytest.raises(ClientError) as e:
        c.models()
    assert e.value.status is None and url in e.value.message
